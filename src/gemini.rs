//! Gemini `generateContent` wire types (Vertex AI REST, lowerCamelCase JSON) and the reading
//! of a reply into an answer or an honest error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Settings;
use crate::error::UpstreamError;
use crate::validation::{ChatRequest, Role};

/// Request body of `:generateContent`. Only fields this service sets are modelled: Google
/// rejects unknown fields, so nothing is sent that is not meant.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    pub contents: Vec<Content>,
    pub system_instruction: Content,
    pub generation_config: GenerationConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    /// Left out when none are configured: Vertex AI's defaults apply.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub safety_settings: Vec<SafetySetting>,
}

/// Functions the model may call.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub function_declarations: Vec<FunctionDeclaration>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeclaration {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Standard JSON Schema (what OpenAI clients send), not the older OpenAPI subset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_json_schema: Option<Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    pub function_calling_config: FunctionCallingConfig,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig {
    /// `AUTO`, `ANY` or `NONE`.
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_function_names: Vec<String>,
}

/// One harm category's blocking threshold.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SafetySetting {
    pub category: String,
    pub threshold: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Content {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Set on reasoning parts of thinking models: not part of the answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thought: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse>,
    /// Gemini 3's opaque record of its reasoning at a function call: it must come back, unchanged,
    /// on that call's part in the next request of the same turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<String>,
}

impl Part {
    pub fn text(text: impl Into<String>) -> Part {
        Part {
            text: Some(text.into()),
            ..Part::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FunctionResponse {
    pub name: String,
    pub response: Value,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    /// Left out unless configured: Gemini 3.x is tuned for its default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Thinking and answer tokens together.
    pub max_output_tokens: u32,
    pub candidate_count: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    pub thinking_config: ThinkingConfig,
    /// `application/json` for structured output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_json_schema: Option<Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    pub thinking_level: &'static str,
}

/// Per-request generation options layered over the configured [`Settings`] (`/v1` sets them;
/// `/chat` uses the defaults).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub seed: Option<i64>,
    pub stop_sequences: Vec<String>,
    /// The conversation as `/v1` gives it, function calls and results included; `None` builds
    /// it from the request's history and message.
    pub contents: Option<Vec<Content>>,
    pub tools: Vec<Tool>,
    pub tool_config: Option<ToolConfig>,
    pub response_mime_type: Option<&'static str>,
    pub response_json_schema: Option<Value>,
}

/// Builds the request for a conversation under a system instruction: earlier turns in order,
/// then the new message. Consecutive turns of one role become one content with several parts,
/// because Gemini expects the roles to alternate.
pub fn build_request(
    settings: &Settings,
    system_instruction: String,
    chat: &ChatRequest,
    options: &Options,
) -> GenerateContentRequest {
    let contents = match &options.contents {
        Some(contents) => contents.clone(),
        None => text_contents(chat),
    };
    GenerateContentRequest {
        contents,
        system_instruction: Content {
            role: None,
            parts: vec![Part::text(system_instruction)],
        },
        generation_config: GenerationConfig {
            temperature: options.temperature.or(settings.temperature),
            top_p: options.top_p,
            presence_penalty: options.presence_penalty,
            frequency_penalty: options.frequency_penalty,
            seed: options.seed,
            max_output_tokens: chat.max_output_tokens.unwrap_or(settings.max_output_tokens),
            candidate_count: 1,
            stop_sequences: options.stop_sequences.clone(),
            thinking_config: ThinkingConfig {
                thinking_level: chat
                    .thinking_level
                    .unwrap_or(settings.thinking_level)
                    .wire_name(),
            },
            response_mime_type: options.response_mime_type,
            response_json_schema: options.response_json_schema.clone(),
        },
        tools: options.tools.clone(),
        tool_config: options.tool_config.clone(),
        safety_settings: settings.safety_settings.clone(),
    }
}

/// The history's turns in order, then the new message.
fn text_contents(chat: &ChatRequest) -> Vec<Content> {
    let turns = chat
        .history
        .iter()
        .map(|t| (t.role, t.content.as_str()))
        .chain(std::iter::once((Role::User, chat.message.as_str())));
    let mut contents: Vec<Content> = Vec::with_capacity(chat.history.len() + 1);
    for (role, text) in turns {
        let role = match role {
            Role::User => "user",
            Role::Assistant => "model",
        };
        let part = Part::text(text);
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.push(part),
            _ => contents.push(Content {
                role: Some(role.into()),
                parts: vec![part],
            }),
        }
    }
    contents
}

/// Response body of `:generateContent` (and of each streamed chunk).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    pub prompt_feedback: Option<PromptFeedback>,
    pub usage_metadata: Option<UsageMetadata>,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub content: Option<Content>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    pub block_reason: Option<String>,
    pub block_reason_message: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u32,
    #[serde(default)]
    pub candidates_token_count: u32,
    #[serde(default)]
    pub total_token_count: u32,
    #[serde(default)]
    pub thoughts_token_count: u32,
    /// Prompt tokens served from Gemini's implicit context cache (billed at a discount).
    #[serde(default)]
    pub cached_content_token_count: u32,
}

/// Token counts as this service reports them: `total = prompt + completion + thoughts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub thoughts_tokens: u32,
    pub total_tokens: u32,
    /// The part of `prompt_tokens` Gemini read from its implicit cache.
    pub cached_tokens: u32,
}

impl From<UsageMetadata> for Usage {
    fn from(u: UsageMetadata) -> Self {
        Usage {
            prompt_tokens: u.prompt_token_count,
            completion_tokens: u.candidates_token_count,
            thoughts_tokens: u.thoughts_token_count,
            total_tokens: u
                .prompt_token_count
                .saturating_add(u.candidates_token_count)
                .saturating_add(u.thoughts_token_count),
            cached_tokens: u.cached_content_token_count,
        }
    }
}

/// The answer extracted from a successful reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    /// The functions the model asked to call (tools), in order.
    pub calls: Vec<ToolCall>,
    pub finish_reason: String,
    pub usage: Usage,
    pub model_version: Option<String>,
    /// Vertex AI's `responseId`.
    pub response_id: Option<String>,
}

/// The finish reason of an answer cut at `maxOutputTokens`.
pub const MAX_TOKENS: &str = "MAX_TOKENS";
/// The finish reason of a complete answer.
pub const STOP: &str = "STOP";

impl Answer {
    /// The answer stopped at the output-token limit, not where the model meant to end it.
    pub fn truncated(&self) -> bool {
        self.finish_reason == MAX_TOKENS
    }
}

/// What one streamed reply chunk adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    /// Answer text (thoughts left out); may be empty.
    pub text: String,
    /// Function calls; Gemini sends each one whole, in one chunk.
    pub calls: Vec<ToolCall>,
    /// Set on the last chunk.
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
}

/// A function call the model asked for, with the signature that must come back with it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolCall {
    pub name: String,
    pub args: Value,
    pub signature: Option<String>,
}

impl Chunk {
    /// Answer text or a function call arrived.
    pub fn has_output(&self) -> bool {
        !self.text.is_empty() || !self.calls.is_empty()
    }
}

/// Finish reasons that mean the answer was withheld by a content filter.
const BLOCKING_FINISH_REASONS: &[&str] = &[
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "MODEL_ARMOR",
];

/// Reads a 200 reply body into an [`Answer`].
///
/// A blocked prompt (`promptFeedback.blockReason`) or a candidate stopped by a content filter is
/// [`UpstreamError::Blocked`]; a reply with neither answer text nor a function call is
/// [`UpstreamError::EmptyAnswer`], unless it stopped at the output-token limit: that is the
/// request's own budget spent (often all on thinking), an answer cut to nothing. Nothing is
/// ever made up in their place.
pub fn read_reply(body: &[u8]) -> Result<Answer, UpstreamError> {
    let chunk = read_chunk(body)?;
    if chunk.finish_reason.is_none() && !chunk.has_output() {
        return Err(UpstreamError::EmptyAnswer {
            finish_reason: None,
        });
    }
    let finish_reason = chunk
        .finish_reason
        .unwrap_or_else(|| "FINISH_REASON_UNSPECIFIED".into());
    if chunk.text.trim().is_empty() && chunk.calls.is_empty() && finish_reason != MAX_TOKENS {
        return Err(UpstreamError::EmptyAnswer {
            finish_reason: Some(finish_reason),
        });
    }
    Ok(Answer {
        text: chunk.text,
        calls: chunk.calls,
        finish_reason,
        usage: chunk.usage.unwrap_or_default(),
        model_version: chunk.model_version,
        response_id: chunk.response_id,
    })
}

/// Reads one `GenerateContentResponse` (a unary reply, or one streamed chunk). Blocked prompts
/// and answers stopped by a content filter are errors.
pub fn read_chunk(body: &[u8]) -> Result<Chunk, UpstreamError> {
    let reply: GenerateContentResponse =
        serde_json::from_slice(body).map_err(|e| UpstreamError::InvalidResponse {
            detail: format!("reply is not a GenerateContentResponse: {e}"),
        })?;

    if let Some(reason) = reply
        .prompt_feedback
        .as_ref()
        .and_then(|f| f.block_reason.clone())
    {
        return Err(UpstreamError::Blocked {
            reason,
            stage: "prompt",
        });
    }

    let mut chunk = Chunk {
        usage: reply.usage_metadata.map(Usage::from),
        model_version: reply.model_version,
        response_id: reply.response_id,
        ..Chunk::default()
    };
    if let Some(candidate) = reply.candidates.into_iter().next() {
        if let Some(reason) = &candidate.finish_reason
            && BLOCKING_FINISH_REASONS.contains(&reason.as_str())
        {
            return Err(UpstreamError::Blocked {
                reason: reason.clone(),
                stage: "response",
            });
        }
        chunk.finish_reason = candidate.finish_reason;
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            if part.thought {
                continue;
            }
            if let Some(call) = part.function_call {
                chunk.calls.push(ToolCall {
                    name: call.name,
                    args: call.args,
                    signature: part.thought_signature,
                });
            } else if let Some(text) = part.text {
                chunk.text.push_str(&text);
            }
        }
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vars;
    use serde_json::json;

    fn settings() -> Settings {
        Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("temperature", "0.3"),
            ("max_output_tokens", "256"),
        ]))
        .unwrap()
    }

    fn chat(message: &str) -> ChatRequest {
        ChatRequest {
            message: message.into(),
            ..ChatRequest::default()
        }
    }

    #[test]
    fn request_shape_matches_the_rest_api() {
        let req = build_request(
            &settings(),
            "You are Elro.".into(),
            &chat("hi?"),
            &Options::default(),
        );
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({
                "contents": [{"role": "user", "parts": [{"text": "hi?"}]}],
                "systemInstruction": {"parts": [{"text": "You are Elro."}]},
                "generationConfig": {"temperature": 0.3, "maxOutputTokens": 256, "candidateCount": 1,
                                     "thinkingConfig": {"thinkingLevel": "LOW"}},
                "safetySettings": [
                    {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_MEDIUM_AND_ABOVE"},
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_MEDIUM_AND_ABOVE"},
                    {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_MEDIUM_AND_ABOVE"},
                    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "threshold": "BLOCK_MEDIUM_AND_ABOVE"}
                ]
            })
        );
    }

    #[test]
    fn defaults_send_no_temperature() {
        let s = Settings::load(&vars(&[("project_id", "p"), ("access_token", "t")])).unwrap();
        let req = build_request(&s, "sys".into(), &chat("hi"), &Options::default());
        let config = &serde_json::to_value(&req).unwrap()["generationConfig"];
        assert!(config.get("temperature").is_none(), "{config}");
        assert_eq!(config["maxOutputTokens"], 8192);
    }

    #[test]
    fn history_becomes_alternating_contents() {
        use crate::config::ThinkingLevel;
        use crate::validation::Turn;
        let turn = |role, content: &str| Turn {
            role,
            content: content.into(),
        };
        let request = ChatRequest {
            message: "and then?".into(),
            history: vec![
                turn(Role::User, "first"),
                turn(Role::Assistant, "answer"),
                turn(Role::User, "second"),
            ],
            thinking_level: Some(ThinkingLevel::High),
            max_output_tokens: Some(4000),
            ..ChatRequest::default()
        };
        let req = build_request(&settings(), "sys".into(), &request, &Options::default());
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v["contents"],
            json!([
                {"role": "user", "parts": [{"text": "first"}]},
                {"role": "model", "parts": [{"text": "answer"}]},
                {"role": "user", "parts": [{"text": "second"}, {"text": "and then?"}]}
            ])
        );
        assert_eq!(
            v["generationConfig"]["thinkingConfig"]["thinkingLevel"],
            "HIGH"
        );
        assert_eq!(v["generationConfig"]["maxOutputTokens"], 4000);
    }

    #[test]
    fn chunks_carry_deltas_and_the_last_carries_the_finish() {
        let first = read_chunk(
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}],
                   "usageMetadata": {"promptTokenCount": 5}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(first.text, "Hel");
        assert_eq!(first.finish_reason, None);
        let last = read_chunk(
            json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "MAX_TOKENS"}],
                   "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2,
                                     "thoughtsTokenCount": 30, "totalTokenCount": 37}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(last.finish_reason.as_deref(), Some("MAX_TOKENS"));
        assert_eq!(
            last.usage,
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 2,
                thoughts_tokens: 30,
                total_tokens: 37,
                cached_tokens: 0,
            })
        );
        assert!(matches!(
            read_chunk(br#"{"candidates": [{"finishReason": "SAFETY"}]}"#),
            Err(UpstreamError::Blocked {
                stage: "response",
                ..
            })
        ));
    }

    #[test]
    fn concatenates_text_parts_and_skips_thoughts() {
        let body = json!({
            "candidates": [{"index": 0, "content": {"role": "model", "parts": [
                {"text": "thinking...", "thought": true},
                {"text": "Hello, "},
                {"text": "world."}
            ]}, "finishReason": "STOP", "safetyRatings": []}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 20,
                              "totalTokenCount": 40, "thoughtsTokenCount": 8},
            "modelVersion": "gemini-3.5-flash",
            "createTime": "2026-11-26T08:00:00.123456Z",
            "responseId": "abc"
        });
        let answer = read_reply(body.to_string().as_bytes()).unwrap();
        assert_eq!(answer.text, "Hello, world.");
        assert_eq!(answer.finish_reason, "STOP");
        assert_eq!(answer.usage.prompt_tokens, 12);
        assert_eq!(answer.usage.completion_tokens, 20);
        assert_eq!(answer.usage.thoughts_tokens, 8);
        assert_eq!(answer.usage.total_tokens, 40);
        assert_eq!(answer.model_version.as_deref(), Some("gemini-3.5-flash"));
        assert_eq!(answer.response_id.as_deref(), Some("abc"));
    }

    #[test]
    fn max_tokens_is_still_an_answer() {
        let body = json!({"candidates": [{"content": {"parts": [{"text": "partial"}]},
                                          "finishReason": "MAX_TOKENS"}]});
        let answer = read_reply(body.to_string().as_bytes()).unwrap();
        assert_eq!(answer.finish_reason, "MAX_TOKENS");
        assert!(answer.truncated());
        // Thinking used the whole budget the request set: an answer cut to nothing.
        let body = json!({"candidates": [{"finishReason": "MAX_TOKENS"}],
                          "usageMetadata": {"promptTokenCount": 5, "thoughtsTokenCount": 1024}});
        let answer = read_reply(body.to_string().as_bytes()).unwrap();
        assert_eq!(answer.text, "");
        assert!(answer.truncated());
        assert_eq!(answer.usage.thoughts_tokens, 1024);
    }

    #[test]
    fn function_calls_are_an_answer_with_their_signatures() {
        let body = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"text": "plan", "thought": true},
            {"functionCall": {"name": "weather", "args": {"city": "Seoul"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "time", "args": {}}}
        ]}, "finishReason": "STOP"}]});
        let answer = read_reply(body.to_string().as_bytes()).unwrap();
        assert_eq!(answer.text, "");
        assert_eq!(
            answer.calls,
            [
                ToolCall {
                    name: "weather".into(),
                    args: json!({"city": "Seoul"}),
                    signature: Some("c2ln".into()),
                },
                ToolCall {
                    name: "time".into(),
                    args: json!({}),
                    signature: None,
                }
            ]
        );
        let sent = serde_json::to_value(Part {
            function_call: Some(FunctionCall {
                name: "weather".into(),
                args: json!({}),
            }),
            thought_signature: Some("c2ln".into()),
            ..Part::default()
        })
        .unwrap();
        assert_eq!(
            sent,
            json!({"functionCall": {"name": "weather", "args": {}}, "thoughtSignature": "c2ln"})
        );
    }

    #[test]
    fn blocked_prompt_is_an_error() {
        let body = json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                          "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}});
        match read_reply(body.to_string().as_bytes()) {
            Err(UpstreamError::Blocked { reason, stage }) => {
                assert_eq!(reason, "PROHIBITED_CONTENT");
                assert_eq!(stage, "prompt");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn safety_finish_is_an_error_even_with_partial_text() {
        let body = json!({"candidates": [{"content": {"parts": [{"text": "some"}]},
                                          "finishReason": "SAFETY"}]});
        assert!(matches!(
            read_reply(body.to_string().as_bytes()),
            Err(UpstreamError::Blocked {
                stage: "response",
                ..
            })
        ));
    }

    #[test]
    fn empty_or_garbage_replies_are_errors() {
        assert!(matches!(
            read_reply(b"{}"),
            Err(UpstreamError::EmptyAnswer { .. })
        ));
        let body = json!({"candidates": [{"content": {"parts": []}, "finishReason": "OTHER"}]});
        assert!(matches!(
            read_reply(body.to_string().as_bytes()),
            Err(UpstreamError::EmptyAnswer { .. })
        ));
        assert!(matches!(
            read_reply(b"<html>"),
            Err(UpstreamError::InvalidResponse { .. })
        ));
    }
}
