//! The deterministic answer to a valid request, its token usage, and the response JSON
//! (one object for `generateContent`, a list of delta chunks for `streamGenerateContent`).
//!
//! The reply text echoes what arrived so tests can check it:
//! `[Vertex AI emulator · {model} · turn {N}] {first line of the system instruction} — you said: {last user text}`,
//! where N is the number of `contents` entries (1 without history); after function responses
//! `tool results: {name}={response JSON}; …` replaces `you said: …`. A request for JSON gets it
//! in the form [`crate::structured`] describes, and a request whose functions the emulator
//! calls gets the calls instead of text ([`crate::tools::planned_calls`]).
//!
//! Tokens are characters / 4, rounded up ([`tokens`]). Thought tokens (see [`crate::thinking`])
//! come out of `maxOutputTokens` first (65536 when unset, as on Vertex AI): if they use it all
//! up the candidate has no `content` and finishes with `MAX_TOKENS`; otherwise the answer is
//! cut to the tokens left (4 characters each), also with `MAX_TOKENS`. Function calls are
//! billed by the characters of their compact JSON (`{"name":…,"args":…}` each); calls that do
//! not fit are left out whole (no `content`, `MAX_TOKENS`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::faults::Steering;
use crate::protocol::GenerateContentRequest;
use crate::thinking::Thinking;
use crate::{structured, tools};

/// Longest system-instruction excerpt echoed in the reply, in characters.
pub const SYSTEM_EXCERPT_CHARS: usize = 160;

/// `maxOutputTokens` when the request leaves it unset: the most Gemini 3 models allow.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = crate::protocol::MAX_OUTPUT_TOKENS_LIMIT as u64;

/// Roughly four characters per token, like Google's rule of thumb; rounded up.
pub fn tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

/// What kind of answer to give; everything but `Text` comes from a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Text,
    PromptBlocked(String),
    FinishSafety,
    Empty,
}

/// A complete answer, ready to be rendered as unary JSON or stream chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub model: String,
    pub prompt_tokens: u64,
    /// The part of the prompt implicit caching served ([`cached_tokens`]).
    pub cached_tokens: u64,
    pub answer: Answer,
    /// The (possibly cut, possibly empty) answer text and its finish reason, for `Answer::Text`.
    pub text: String,
    /// The `functionCall` parts (the first with its `thoughtSignature`) when the answer calls
    /// functions instead of saying `text`.
    pub calls: Vec<Value>,
    /// Characters of the calls' JSON, which their tokens are counted from.
    pub call_chars: usize,
    pub finish_reason: &'static str,
    /// Thought tokens spent (capped by `maxOutputTokens`); 0 for fault answers.
    pub thoughts: u64,
    /// The `"thought": true` part sent first when the request asked for `includeThoughts`.
    pub thought_summary: Option<String>,
    pub create_time: String,
    pub response_id: String,
}

/// The plain reply text (before any structured-output form and `maxOutputTokens` cut).
pub fn reply_text(model: &str, request: &GenerateContentRequest) -> String {
    let system = request
        .system_instruction
        .as_ref()
        .map(|content| {
            let joined: Vec<&str> = content
                .parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect();
            joined.join("\n")
        })
        .and_then(|text| first_line(&text))
        .unwrap_or_else(|| "(no system instruction)".to_string());
    let said = match tools::tool_results(request) {
        Some(results) => format!("tool results: {results}"),
        None => format!("you said: {}", request.last_user_text()),
    };
    format!(
        "[Vertex AI emulator · {model} · turn {}] {system} — {said}",
        request.contents.len(),
    )
}

/// The first non-blank line, trimmed and cut to [`SYSTEM_EXCERPT_CHARS`].
fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(|line| line.chars().take(SYSTEM_EXCERPT_CHARS).collect())
}

/// Prompt tokens Vertex AI's implicit caching would have served: a request that continues a
/// conversation repeats its previous request's prompt (the function declarations, the system
/// instruction and the turns before the last answer), which counts as cached. Without history,
/// none.
pub fn cached_tokens(request: &GenerateContentRequest) -> u64 {
    let n = request.contents.len();
    if n < 3 {
        return 0;
    }
    let system = request.system_instruction.as_ref().map_or(0, |c| c.chars());
    let earlier: usize = request.contents[..n - 2].iter().map(|c| c.chars()).sum();
    tokens(request.tools_chars() + system + earlier)
}

/// Prompt tokens: the function declarations, every text of the system instruction and the
/// contents (function calls and responses as JSON), at least 1.
pub fn prompt_tokens(request: &GenerateContentRequest) -> u64 {
    let system = request.system_instruction.as_ref().map_or(0, |c| c.chars());
    let contents: usize = request.contents.iter().map(|c| c.chars()).sum();
    tokens(request.tools_chars() + system + contents).max(1)
}

/// The parts of the calls the emulator makes, and the characters they are billed by. Only the
/// first carries a signature, as with Gemini's parallel calls.
fn call_parts(model: &str, planned: &[(String, Value)]) -> (Vec<Value>, usize) {
    let mut chars = 0;
    let parts = planned
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            let call = json!({"name": name, "args": args});
            chars += call.to_string().chars().count();
            let mut part = json!({"functionCall": call});
            if i == 0 {
                part["thoughtSignature"] = json!(tools::thought_signature(model, name, args));
            }
            part
        })
        .collect();
    (parts, chars)
}

/// `usageMetadata`; like Google's proto3 JSON, zero counts other than the prompt's are left out.
fn usage(prompt: u64, cached: u64, candidates: u64, thoughts: u64) -> Value {
    let mut usage = json!({
        "promptTokenCount": prompt,
        "totalTokenCount": prompt + candidates + thoughts,
        "trafficType": "ON_DEMAND",
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    });
    if cached > 0 {
        usage["cachedContentTokenCount"] = json!(cached);
        usage["cacheTokensDetails"] = json!([{"modality": "TEXT", "tokenCount": cached}]);
    }
    if candidates > 0 {
        usage["candidatesTokenCount"] = json!(candidates);
        usage["candidatesTokensDetails"] = json!([{"modality": "TEXT", "tokenCount": candidates}]);
    }
    if thoughts > 0 {
        usage["thoughtsTokenCount"] = json!(thoughts);
    }
    usage
}

impl Reply {
    pub fn new(
        model: &str,
        request: &GenerateContentRequest,
        thinking: &Thinking,
        answer: Answer,
        steering: Steering,
        create_time: String,
        response_id: String,
    ) -> Reply {
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut call_chars = 0;
        let mut finish_reason = "STOP";
        let mut thoughts = 0;
        let mut thought_summary = None;
        if answer == Answer::Text {
            let max = request
                .generation_config
                .max_output_tokens
                .map_or(DEFAULT_MAX_OUTPUT_TOKENS, |max| max.max(1) as u64);
            thoughts = thinking.tokens.min(max);
            let left = max - thoughts;
            let planned = tools::planned_calls(request, steering);
            if planned.is_empty() {
                text = structured::answer_text(model, request);
                if tokens(text.chars().count()) > left {
                    text = text.chars().take((left * 4) as usize).collect();
                    finish_reason = "MAX_TOKENS";
                }
            } else {
                let (parts, chars) = call_parts(model, &planned);
                if tokens(chars) > left {
                    finish_reason = "MAX_TOKENS";
                } else {
                    (calls, call_chars) = (parts, chars);
                }
            }
            if thinking.include_thoughts && thoughts > 0 {
                let level = thinking.level.map_or("a budget", |level| level.name());
                thought_summary = Some(format!(
                    "**Emulated thinking** at {level}: {thoughts} thought tokens spent."
                ));
            }
        }
        Reply {
            model: model.to_string(),
            prompt_tokens: prompt_tokens(request),
            cached_tokens: cached_tokens(request),
            answer,
            text,
            calls,
            call_chars,
            finish_reason,
            thoughts,
            thought_summary,
            create_time,
            response_id,
        }
    }

    pub fn candidate_tokens(&self) -> u64 {
        if self.calls.is_empty() {
            tokens(self.text.chars().count())
        } else {
            tokens(self.call_chars)
        }
    }

    fn envelope(&self, mut body: Value) -> Value {
        body["modelVersion"] = json!(self.model);
        body["createTime"] = json!(self.create_time);
        body["responseId"] = json!(self.response_id);
        body
    }

    fn full_usage(&self) -> Value {
        usage(
            self.prompt_tokens,
            self.cached_tokens,
            self.candidate_tokens(),
            self.thoughts,
        )
    }

    fn prompt_only_usage(&self) -> Value {
        let mut usage = json!({
            "promptTokenCount": self.prompt_tokens,
            "totalTokenCount": self.prompt_tokens,
            "trafficType": "ON_DEMAND",
        });
        if self.cached_tokens > 0 {
            usage["cachedContentTokenCount"] = json!(self.cached_tokens);
        }
        usage
    }

    fn thought_part(&self) -> Option<Value> {
        self.thought_summary
            .as_ref()
            .map(|summary| json!({"text": summary, "thought": true}))
    }

    /// The final candidate of a text answer: no `content` at all when there is no part.
    fn final_candidate(&self, parts: Vec<Value>) -> Value {
        let mut candidate = json!({
            "index": 0,
            "finishReason": self.finish_reason,
            "safetyRatings": negligible_ratings(),
        });
        if !parts.is_empty() {
            candidate["content"] = json!({"role": "model", "parts": parts});
        }
        candidate
    }

    /// The `generateContent` response.
    pub fn unary_json(&self) -> Value {
        match &self.answer {
            Answer::Text => {
                let mut parts: Vec<Value> = self.thought_part().into_iter().collect();
                parts.extend(self.calls.iter().cloned());
                if !self.text.is_empty() {
                    parts.push(json!({"text": self.text}));
                }
                self.envelope(json!({
                    "candidates": [self.final_candidate(parts)],
                    "usageMetadata": self.full_usage(),
                }))
            }
            Answer::PromptBlocked(reason) => self.envelope(json!({
                "promptFeedback": {
                    "blockReason": reason,
                    "blockReasonMessage": "The prompt was blocked by the Vertex AI emulator on request.",
                },
                "usageMetadata": self.prompt_only_usage(),
            })),
            // Vertex AI leaves `content` out entirely when it stops for safety.
            Answer::FinishSafety => self.envelope(json!({
                "candidates": [{
                    "index": 0,
                    "finishReason": "SAFETY",
                    "safetyRatings": blocking_ratings(),
                }],
                "usageMetadata": self.prompt_only_usage(),
            })),
            Answer::Empty => self.envelope(json!({
                "candidates": [{
                    "index": 0,
                    "content": {"role": "model"},
                    "finishReason": "STOP",
                    "safetyRatings": negligible_ratings(),
                }],
                "usageMetadata": self.prompt_only_usage(),
            })),
        }
    }

    /// The `streamGenerateContent` chunks. A text answer is split into deltas (the thought
    /// summary, if any, first): intermediate chunks carry the usage so far (prompt, thoughts,
    /// the candidate tokens sent up to then), the last one the finish reason and full usage.
    /// Function calls come whole in one chunk, the last (after the thought summary, if any).
    /// Other answers, and a text answer with nothing to say, are a single chunk equal to the
    /// unary response.
    pub fn stream_chunks(&self) -> Vec<Value> {
        if self.answer != Answer::Text {
            return vec![self.unary_json()];
        }
        let mut deltas: Vec<(Vec<Value>, usize)> = self
            .thought_part()
            .map(|part| (vec![part], 0))
            .into_iter()
            .collect();
        if !self.calls.is_empty() {
            deltas.push((self.calls.clone(), self.call_chars));
        }
        if !self.text.is_empty() {
            deltas.extend(
                split_chunks(&self.text)
                    .into_iter()
                    .map(|piece| (vec![json!({"text": piece})], piece.chars().count())),
            );
        }
        if deltas.is_empty() {
            return vec![self.unary_json()];
        }
        let last = deltas.len() - 1;
        let mut chars_sent = 0;
        deltas
            .into_iter()
            .enumerate()
            .map(|(i, (parts, chars))| {
                chars_sent += chars;
                if i < last {
                    self.envelope(json!({
                        "candidates": [{"content": {"role": "model", "parts": parts}}],
                        "usageMetadata": usage(self.prompt_tokens, self.cached_tokens, tokens(chars_sent), self.thoughts),
                    }))
                } else {
                    self.envelope(json!({
                        "candidates": [self.final_candidate(parts)],
                        "usageMetadata": self.full_usage(),
                    }))
                }
            })
            .collect()
    }
}

const HARM_CATEGORIES: [&str; 4] = [
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
];

fn negligible_ratings() -> Value {
    HARM_CATEGORIES
        .iter()
        .map(|category| {
            json!({
                "category": category,
                "probability": "NEGLIGIBLE",
                "probabilityScore": 0.01,
                "severity": "HARM_SEVERITY_NEGLIGIBLE",
                "severityScore": 0.01,
            })
        })
        .collect()
}

fn blocking_ratings() -> Value {
    let mut ratings = negligible_ratings();
    ratings[2] = json!({
        "category": "HARM_CATEGORY_HARASSMENT",
        "probability": "HIGH",
        "probabilityScore": 0.97,
        "severity": "HARM_SEVERITY_HIGH",
        "severityScore": 0.92,
        "blocked": true,
    });
    ratings
}

/// Splits text at word starts into pieces that concatenate back to it exactly: one piece
/// per word for fewer than 3 words, otherwise between 3 and 32 pieces of about 8 words.
pub fn split_chunks(text: &str) -> Vec<&str> {
    let mut word_starts = Vec::new();
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        if !c.is_whitespace() && prev_space {
            word_starts.push(i);
        }
        prev_space = c.is_whitespace();
    }
    let words = word_starts.len();
    if words <= 1 {
        return vec![text];
    }
    let pieces = if words < 3 {
        words
    } else {
        words.div_ceil(8).clamp(3, 32)
    };
    // Cut before the first word of each piece but the first (leading blanks stay in piece 0).
    let mut cuts: Vec<usize> = (1..pieces)
        .map(|k| word_starts[k * words / pieces])
        .collect();
    cuts.push(text.len());
    let mut out = Vec::with_capacity(pieces);
    let mut from = 0;
    for cut in cuts {
        out.push(&text[from..cut]);
        from = cut;
    }
    out
}

/// 64-bit FNV-1a of the parts, each followed by a 0xff byte (so `["a", "b"]` ≠ `["ab"]`).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// A stable id derived from the request: 64-bit FNV-1a, as 16 hex digits.
pub fn response_id(parts: &[&[u8]]) -> String {
    format!("{:016x}", fnv1a(parts))
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-26T08:00:00.123456Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_request;
    use std::time::Duration;

    fn request(value: Value) -> GenerateContentRequest {
        parse_request(value.to_string().as_bytes()).unwrap()
    }

    const MODEL: &str = "gemini-3.5-flash";

    /// A reply from `MODEL`, with the thinking its request asks for.
    fn reply(value: Value, answer: Answer) -> Reply {
        let request = request(value);
        let thinking =
            crate::thinking::plan(MODEL, request.generation_config.thinking_config.as_ref())
                .unwrap();
        Reply::new(
            MODEL,
            &request,
            &thinking,
            answer,
            Steering::default(),
            "2026-01-01T00:00:00.000000Z".into(),
            "abc".into(),
        )
    }

    fn no_thinking(mut value: Value) -> Value {
        value["generationConfig"]["thinkingConfig"] = json!({"thinkingBudget": 0});
        value
    }

    #[test]
    fn token_count_rounds_up() {
        assert_eq!(tokens(0), 0);
        assert_eq!(tokens(1), 1);
        assert_eq!(tokens(4), 1);
        assert_eq!(tokens(5), 2);
        assert_eq!(tokens(8), 2);
    }

    #[test]
    fn prompt_tokens_count_system_and_all_contents_chars() {
        let req = request(json!({
            "systemInstruction": {"parts": [{"text": "abcd"}, {"text": "ef"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "é😀"}]},
                {"role": "model", "parts": [{"text": "x"}]},
                {"role": "user", "parts": [{"text": "y"}]}
            ]
        }));
        // 6 + 2 (chars, not bytes) + 1 + 1 = 10 chars
        assert_eq!(prompt_tokens(&req), 3);
        let tiny = request(json!({"contents": [{"parts": [{"text": "a"}]}]}));
        assert_eq!(prompt_tokens(&tiny), 1);
    }

    #[test]
    fn text_echoes_model_system_line_and_last_user_text() {
        let req = request(json!({
            "systemInstruction": {"parts": [{"text": "\n  You are Elro.  \nSecond line"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "first"}]},
                {"role": "model", "parts": [{"text": "ok"}]},
                {"role": "user", "parts": [{"text": "How do I "}, {"text": "start?"}]}
            ]
        }));
        assert_eq!(
            reply_text("gemini-3.5-flash", &req),
            "[Vertex AI emulator · gemini-3.5-flash · turn 3] You are Elro. — you said: How do I start?"
        );
        let bare = request(json!({"contents": [{"parts": [{"text": "hi"}]}]}));
        assert_eq!(
            reply_text("gemini-x", &bare),
            "[Vertex AI emulator · gemini-x · turn 1] (no system instruction) — you said: hi"
        );
        let long = "é".repeat(200);
        let req = request(json!({"systemInstruction": {"parts": [{"text": long}]},
                                 "contents": [{"parts": [{"text": "q"}]}]}));
        let text = reply_text("m", &req);
        assert!(text.contains(&format!("] {} — you said", "é".repeat(160))));
    }

    #[test]
    fn unary_shape_and_usage() {
        let r = reply(
            json!({"contents": [{"parts": [{"text": "hello there"}]}]}),
            Answer::Text,
        );
        let body = r.unary_json();
        let candidate = &body["candidates"][0];
        assert_eq!(candidate["index"], 0);
        assert_eq!(candidate["content"]["role"], "model");
        assert_eq!(candidate["finishReason"], "STOP");
        assert_eq!(candidate["safetyRatings"][0]["probability"], "NEGLIGIBLE");
        let text = candidate["content"]["parts"][0]["text"].as_str().unwrap();
        assert!(text.ends_with("you said: hello there"));
        assert_eq!(candidate["content"]["parts"].as_array().unwrap().len(), 1);
        let usage = &body["usageMetadata"];
        let candidates = tokens(text.chars().count());
        assert_eq!(usage["promptTokenCount"], 3);
        assert_eq!(usage["candidatesTokenCount"], candidates);
        // Flash thinks at MEDIUM unless told otherwise.
        assert_eq!(usage["thoughtsTokenCount"], 512);
        assert_eq!(usage["totalTokenCount"], 3 + candidates + 512);
        assert_eq!(body["modelVersion"], "gemini-3.5-flash");
        assert_eq!(body["responseId"], "abc");

        let unthinking = reply(
            no_thinking(json!({"contents": [{"parts": [{"text": "hello there"}]}]})),
            Answer::Text,
        )
        .unary_json();
        let usage = &unthinking["usageMetadata"];
        assert!(usage.get("thoughtsTokenCount").is_none(), "{usage}");
        assert_eq!(usage["totalTokenCount"], 3 + candidates);
    }

    #[test]
    fn thoughts_come_out_of_max_output_tokens() {
        let ask = |max: u64, level: &str| {
            reply(
                json!({"contents": [{"parts": [{"text": "hello"}]}],
                       "generationConfig": {"maxOutputTokens": max,
                                            "thinkingConfig": {"thinkingLevel": level}}}),
                Answer::Text,
            )
        };
        let full = reply_text(
            MODEL,
            &request(json!({"contents": [{"parts": [{"text": "hello"}]}]})),
        );
        let answer_tokens = tokens(full.chars().count());

        // Room for both: the whole answer.
        let roomy = ask(64 + answer_tokens, "low");
        assert_eq!((roomy.finish_reason, roomy.thoughts), ("STOP", 64));
        assert_eq!(roomy.text, full);

        // Thoughts leave 3 tokens: the answer is cut to 12 characters.
        let cut = ask(64 + 3, "LOW");
        assert_eq!((cut.finish_reason, cut.thoughts), ("MAX_TOKENS", 64));
        assert_eq!(cut.text, full.chars().take(12).collect::<String>());
        let usage = &cut.unary_json()["usageMetadata"];
        assert_eq!(usage["candidatesTokenCount"], 3);
        assert_eq!(usage["totalTokenCount"], 2 + 3 + 64);

        // Thoughts use everything: no content at all, no candidate tokens.
        for max in [512, 100] {
            let starved = ask(max, "medium");
            assert_eq!(starved.finish_reason, "MAX_TOKENS");
            assert_eq!(starved.thoughts, max);
            let body = starved.unary_json();
            let candidate = &body["candidates"][0];
            assert!(candidate.get("content").is_none(), "{candidate}");
            assert_eq!(candidate["finishReason"], "MAX_TOKENS");
            let usage = &body["usageMetadata"];
            assert!(usage.get("candidatesTokenCount").is_none(), "{usage}");
            assert_eq!(usage["thoughtsTokenCount"], max);
            assert_eq!(usage["totalTokenCount"], 2 + max);
            assert_eq!(starved.stream_chunks(), vec![body]);
        }
    }

    #[test]
    fn default_max_output_tokens_leaves_room_for_high_thinking() {
        let r = reply(
            json!({"contents": [{"parts": [{"text": "hi"}]}],
                   "generationConfig": {"thinkingConfig": {"thinkingLevel": "HIGH"}}}),
            Answer::Text,
        );
        assert_eq!((r.finish_reason, r.thoughts), ("STOP", 2048));
        assert!(DEFAULT_MAX_OUTPUT_TOKENS > 2048 + r.candidate_tokens());
    }

    #[test]
    fn include_thoughts_adds_a_thought_part_first() {
        let r = reply(
            json!({"contents": [{"parts": [{"text": "one two three"}]}],
                   "generationConfig": {"thinkingConfig": {"thinkingLevel": "low", "includeThoughts": true}}}),
            Answer::Text,
        );
        let body = r.unary_json();
        let parts = body["candidates"][0]["content"]["parts"]
            .as_array()
            .unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0]["thought"], true);
        assert!(parts[0]["text"].as_str().unwrap().contains("LOW"));
        assert!(parts[1].get("thought").is_none());
        assert_eq!(parts[1]["text"], r.text);
        // Thought text is billed as thoughts, not as candidates.
        assert_eq!(
            body["usageMetadata"]["candidatesTokenCount"],
            r.candidate_tokens()
        );

        let chunks = r.stream_chunks();
        assert_eq!(
            chunks[0]["candidates"][0]["content"]["parts"][0]["thought"],
            true
        );
        let answer: String = chunks[1..]
            .iter()
            .map(|c| {
                c["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(answer, r.text);

        let without = reply(
            json!({"contents": [{"parts": [{"text": "one two three"}]}]}),
            Answer::Text,
        );
        assert!(without.thought_summary.is_none());
        assert!(!without.unary_json().to_string().contains("\"thought\""));
    }

    #[test]
    fn max_output_tokens_cuts_the_text() {
        let r = reply(
            no_thinking(
                json!({"contents": [{"parts": [{"text": "hello"}]}], "generationConfig": {"maxOutputTokens": 3}}),
            ),
            Answer::Text,
        );
        assert_eq!(r.finish_reason, "MAX_TOKENS");
        assert_eq!(r.text, "[Vertex AI e");
        assert_eq!(r.unary_json()["usageMetadata"]["candidatesTokenCount"], 3);
        let roomy = reply(
            json!({"contents": [{"parts": [{"text": "hello"}]}], "generationConfig": {"maxOutputTokens": 1000}}),
            Answer::Text,
        );
        assert_eq!(roomy.finish_reason, "STOP");
    }

    #[test]
    fn stream_chunks_are_deltas_with_usage_on_the_last() {
        let r = reply(
            json!({"contents": [{"parts": [{"text": "one two three four five"}]}]}),
            Answer::Text,
        );
        let chunks = r.stream_chunks();
        assert!(chunks.len() >= 3);
        let joined: String = chunks
            .iter()
            .map(|c| {
                c["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(joined, r.text);
        let mut sent = String::new();
        for chunk in &chunks[..chunks.len() - 1] {
            sent.push_str(
                chunk["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap(),
            );
            // Usage so far: the prompt, the thoughts, and the candidate tokens sent up to here.
            let usage = &chunk["usageMetadata"];
            let candidates = tokens(sent.chars().count());
            assert_eq!(usage["promptTokenCount"], r.prompt_tokens);
            assert_eq!(usage["thoughtsTokenCount"], r.thoughts);
            assert_eq!(usage["candidatesTokenCount"], candidates);
            assert_eq!(
                usage["totalTokenCount"],
                r.prompt_tokens + r.thoughts + candidates
            );
            assert!(candidates < r.candidate_tokens());
            assert!(chunk["candidates"][0].get("finishReason").is_none());
        }
        let last = chunks.last().unwrap();
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(last["usageMetadata"], r.unary_json()["usageMetadata"]);
    }

    #[test]
    fn fault_answers() {
        let req = json!({"contents": [{"parts": [{"text": "hello"}]}]});
        let blocked = reply(
            req.clone(),
            Answer::PromptBlocked("PROHIBITED_CONTENT".into()),
        )
        .unary_json();
        assert!(blocked.get("candidates").is_none());
        assert_eq!(
            blocked["promptFeedback"]["blockReason"],
            "PROHIBITED_CONTENT"
        );
        assert_eq!(blocked["usageMetadata"]["promptTokenCount"], 2);
        assert!(
            blocked["usageMetadata"]
                .get("candidatesTokenCount")
                .is_none()
        );

        let safety = reply(req.clone(), Answer::FinishSafety).unary_json();
        assert_eq!(safety["candidates"][0]["finishReason"], "SAFETY");
        assert!(safety["candidates"][0]["content"]["parts"].is_null());

        let empty = reply(req.clone(), Answer::Empty);
        let body = empty.unary_json();
        assert_eq!(body["candidates"][0]["finishReason"], "STOP");
        assert!(body["candidates"][0]["content"]["parts"].is_null());
        assert_eq!(empty.stream_chunks(), vec![body]);
    }

    fn weather_request(extra: Value) -> Value {
        let mut body = json!({
            "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
            "tools": [{"functionDeclarations": [
                {"name": "get_weather", "parameters": {"type": "OBJECT", "properties": {
                    "city": {"type": "STRING"}, "days": {"type": "INTEGER", "minimum": 2}}}},
                {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {
                    "zone": {"type": "string", "enum": ["CET", "UTC"]}}}},
                {"name": "ping"}
            ]}]
        });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    }

    fn steered(value: Value, steering: Steering) -> Reply {
        let request = request(value);
        let thinking =
            crate::thinking::plan(MODEL, request.generation_config.thinking_config.as_ref())
                .unwrap();
        Reply::new(
            MODEL,
            &request,
            &thinking,
            Answer::Text,
            steering,
            "t".into(),
            "id".into(),
        )
    }

    #[test]
    fn declared_functions_are_called_with_a_signature() {
        let r = reply(weather_request(json!({})), Answer::Text);
        assert!(r.text.is_empty());
        let body = r.unary_json();
        let candidate = &body["candidates"][0];
        assert_eq!(candidate["finishReason"], "STOP");
        let parts = candidate["content"]["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 1);
        let args = json!({"city": "Weather in Paris?", "days": 2});
        assert_eq!(
            parts[0],
            json!({"functionCall": {"name": "get_weather", "args": args},
                   "thoughtSignature": tools::thought_signature(MODEL, "get_weather", &args)})
        );
        assert!(tools::signature_is_valid(
            parts[0]["thoughtSignature"].as_str().unwrap()
        ));
        let call_chars = parts[0]["functionCall"].to_string().chars().count();
        let usage = &body["usageMetadata"];
        assert_eq!(usage["candidatesTokenCount"], tokens(call_chars));
        assert_eq!(usage["thoughtsTokenCount"], 512);
        // The declarations count as prompt.
        let request = request(weather_request(json!({})));
        assert!(request.tools_chars() > 0);
        assert_eq!(
            usage["promptTokenCount"],
            tokens(request.tools_chars() + "Weather in Paris?".len())
        );
        // A stream sends the call whole, in one chunk equal to the unary answer.
        assert_eq!(r.stream_chunks(), vec![body]);
    }

    #[test]
    fn parallel_calls_sign_only_the_first() {
        let both = Steering {
            parallel_calls: true,
            no_tool: false,
        };
        let r = steered(weather_request(json!({})), both);
        let parts = r.unary_json()["candidates"][0]["content"]["parts"].clone();
        assert_eq!(parts.as_array().unwrap().len(), 2);
        assert_eq!(parts[0]["functionCall"]["name"], "get_weather");
        assert_eq!(parts[1]["functionCall"]["name"], "get_time");
        assert_eq!(parts[1]["functionCall"]["args"], json!({"zone": "CET"}));
        assert!(parts[0].get("thoughtSignature").is_some());
        assert!(parts[1].get("thoughtSignature").is_none());
        // allowedFunctionNames picks and orders them.
        let config = json!({"toolConfig": {"functionCallingConfig": {
            "mode": "ANY", "allowedFunctionNames": ["ping", "get_weather"]}}});
        let r = steered(weather_request(config), both);
        let parts = r.unary_json()["candidates"][0]["content"]["parts"].clone();
        assert_eq!(
            parts[0]["functionCall"],
            json!({"name": "ping", "args": {}})
        );
        assert_eq!(parts[1]["functionCall"]["name"], "get_weather");
    }

    #[test]
    fn modes_and_no_tool_decide_between_calls_and_text() {
        let no_tool = Steering {
            parallel_calls: false,
            no_tool: true,
        };
        let calls = |mode: &str, steering: Steering| {
            let config = json!({"toolConfig": {"functionCallingConfig": {"mode": mode}}});
            steered(weather_request(config), steering).calls.len()
        };
        for mode in ["AUTO", "MODE_UNSPECIFIED", "ANY", "VALIDATED"] {
            assert_eq!(calls(mode, Steering::default()), 1, "{mode}");
        }
        assert_eq!(calls("NONE", Steering::default()), 0);
        assert_eq!(calls("AUTO", no_tool), 0);
        assert_eq!(calls("MODE_UNSPECIFIED", no_tool), 0);
        assert_eq!(calls("ANY", no_tool), 1);
        let text = steered(weather_request(json!({})), no_tool).text;
        assert!(text.ends_with("you said: Weather in Paris?"), "{text}");
    }

    #[test]
    fn function_responses_get_a_text_answer_showing_them() {
        let sig = tools::thought_signature(MODEL, "get_weather", &json!({}));
        let body = weather_request(json!({"contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather"}, "thoughtSignature": sig},
                                        {"functionCall": {"name": "get_time"}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21, "sky": "clear"}}},
                {"functionResponse": {"name": "get_time", "response": {"time": "12:00"}}}]}
        ]}));
        let r = reply(body.clone(), Answer::Text);
        assert!(r.calls.is_empty());
        assert_eq!(
            r.text,
            format!(
                "[Vertex AI emulator · {MODEL} · turn 3] (no system instruction) — tool results: \
                 get_weather={{\"sky\":\"clear\",\"temp\":21}}; get_time={{\"time\":\"12:00\"}}"
            )
        );
        assert_eq!(reply_text(MODEL, &request(body)), r.text);
    }

    #[test]
    fn thinking_and_limits_apply_to_calls() {
        let thoughts = weather_request(json!({"generationConfig": {
            "thinkingConfig": {"thinkingLevel": "LOW", "includeThoughts": true}}}));
        let r = reply(thoughts, Answer::Text);
        let body = r.unary_json();
        let parts = body["candidates"][0]["content"]["parts"]
            .as_array()
            .unwrap();
        assert_eq!(parts[0]["thought"], true);
        assert_eq!(parts[1]["functionCall"]["name"], "get_weather");
        let chunks = r.stream_chunks();
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            chunks[0]["candidates"][0]["content"]["parts"][0]["thought"],
            true
        );
        assert_eq!(chunks[1]["candidates"][0]["content"]["parts"][0], parts[1]);
        assert_eq!(chunks[1]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(chunks[1]["usageMetadata"], body["usageMetadata"]);

        // Thoughts that use up maxOutputTokens leave no content, as for text.
        let starved = reply(
            weather_request(json!({"generationConfig": {"maxOutputTokens": 512}})),
            Answer::Text,
        );
        assert_eq!(starved.finish_reason, "MAX_TOKENS");
        assert!(
            starved.unary_json()["candidates"][0]
                .get("content")
                .is_none()
        );
        // Calls that do not fit in what is left are dropped whole.
        let tight = reply(
            weather_request(json!({"generationConfig": {"maxOutputTokens": 515}})),
            Answer::Text,
        );
        assert_eq!((tight.finish_reason, tight.thoughts), ("MAX_TOKENS", 512));
        assert!(tight.calls.is_empty() && tight.text.is_empty());
        let body = tight.unary_json();
        assert!(body["candidates"][0].get("content").is_none());
        assert!(body["usageMetadata"].get("candidatesTokenCount").is_none());
    }

    #[test]
    fn json_answers_are_cut_like_text() {
        let r = reply(
            no_thinking(json!({"contents": [{"parts": [{"text": "hi"}]}],
                               "generationConfig": {"responseMimeType": "application/json"}})),
            Answer::Text,
        );
        let parsed: Value = serde_json::from_str(&r.text).unwrap();
        assert_eq!(
            parsed["answer"],
            reply_text(
                MODEL,
                &request(json!({"contents": [{"parts": [{"text": "hi"}]}]}))
            )
        );
        let cut = reply(
            no_thinking(json!({"contents": [{"parts": [{"text": "hi"}]}],
                               "generationConfig": {"responseMimeType": "application/json", "maxOutputTokens": 2}})),
            Answer::Text,
        );
        assert_eq!(
            (cut.finish_reason, cut.text.as_str()),
            ("MAX_TOKENS", "{\"answer")
        );
    }

    #[test]
    fn split_keeps_every_character() {
        for text in [
            "a",
            "a b",
            "a b c",
            "  lead  and   trailing  ",
            "[Vertex AI emulator · gemini] (no system instruction) — you said: ünï cødé",
            "",
        ] {
            let pieces = split_chunks(text);
            assert_eq!(pieces.concat(), text);
            let words = text.split_whitespace().count();
            if words >= 3 {
                assert!(pieces.len() >= 3, "{text:?} -> {pieces:?}");
            } else {
                assert_eq!(pieces.len(), words.max(1), "{text:?} -> {pieces:?}");
            }
        }
        let long = "word ".repeat(1000);
        let pieces = split_chunks(&long);
        assert_eq!(pieces.len(), 32);
        assert_eq!(pieces.concat(), long);
    }

    #[test]
    fn response_id_is_stable_and_input_sensitive() {
        assert_eq!(response_id(&[b"a", b"b"]), response_id(&[b"a", b"b"]));
        assert_ne!(response_id(&[b"a", b"b"]), response_id(&[b"ab"]));
        assert_eq!(response_id(&[b"x"]).len(), 16);
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_795_680_000_123_456);
        assert_eq!(rfc3339(t), "2026-11-26T08:00:00.123456Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }
}
