//! The answer in OpenAI's terms: a `chat.completion`, or `chat.completion.chunk` events ending
//! with `data: [DONE]`. Function calls become `tool_calls` (finish reason `tool_calls`), an
//! answer cut at the token limit `length`, and one withheld by Gemini's content filters
//! `content_filter`, as OpenAI reports them, never an error.

use std::cell::Cell;

use serde_json::{Value, json};

use crate::chat::{Chat, StreamEnd, StreamFormat};
use crate::error::{ApiError, UpstreamError};
use crate::gemini::{self, Answer, ToolCall, Usage};
use crate::response::ApiResponse;
use crate::sse;

use super::error::openai_error;
use super::tools;

/// What every completion names: its id, when, the model asked for, and the seed of its tool
/// call ids.
#[derive(Debug, Clone)]
pub struct Header {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Tool call `n` of this completion is `call_{ids + n}` (random per completion).
    pub ids: u64,
}

impl Header {
    fn call_id(&self, n: usize, call: &ToolCall) -> String {
        tools::call_id(self.ids.wrapping_add(n as u64), call.signature.as_deref())
    }
}

/// A whole `chat.completion`.
pub fn completion(header: &Header, chat: &Chat, answer: &Answer, attempts: u32) -> Value {
    let calls: Vec<Value> = answer
        .calls
        .iter()
        .enumerate()
        .map(|(n, call)| tools::call_json(call, &header.call_id(n, call), None))
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if calls.is_empty() || !answer.text.is_empty() { json!(answer.text) } else { Value::Null },
        "refusal": null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let finish = if answer.calls.is_empty() {
        finish_reason(&answer.finish_reason)
    } else {
        "tool_calls"
    };
    body(
        header,
        message,
        finish,
        answer.usage,
        ion_metadata(chat, attempts, answer.model_version.as_deref()),
    )
}

/// A `chat.completion` whose answer Gemini's content filters withheld: no content, finish
/// reason `content_filter`, and in `ion` what blocked it.
pub fn filtered(header: &Header, chat: &Chat, reason: &str, stage: &str, attempts: u32) -> Value {
    let ion = filtered_metadata(chat, reason, stage, attempts);
    body(
        header,
        json!({ "role": "assistant", "content": null, "refusal": null }),
        "content_filter",
        Usage::default(),
        ion,
    )
}

fn body(header: &Header, message: Value, finish: &str, usage: Usage, ion: Value) -> Value {
    json!({
        "id": header.id,
        "object": "chat.completion",
        "created": header.created,
        "model": header.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": usage_json(usage),
        "system_fingerprint": null,
        "ion": ion,
    })
}

/// The content filter's verdict, when `error` is one.
pub fn content_filter(error: &ApiError) -> Option<(&str, &'static str)> {
    match error {
        ApiError::Upstream(UpstreamError::Blocked { reason, stage })
        | ApiError::UpstreamAfter {
            error: UpstreamError::Blocked { reason, stage },
            ..
        } => Some((reason, stage)),
        _ => None,
    }
}

/// [`ion_metadata`] with what withheld the answer.
fn filtered_metadata(chat: &Chat, reason: &str, stage: &str, attempts: u32) -> Value {
    let mut ion = ion_metadata(chat, attempts, None);
    ion["content_filter"] = json!({ "block_reason": reason, "stage": stage });
    ion
}

/// What this service adds: who answered and how.
fn ion_metadata(chat: &Chat, attempts: u32, model_version: Option<&str>) -> Value {
    json!({
        "persona": chat.persona().name(),
        "resonance_key": chat.resonance.key(),
        "gemini_model": chat.model(model_version),
        "attempts": attempts,
    })
}

/// OpenAI counts reasoning tokens as completion tokens.
fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens + u.thoughts_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cached_tokens },
        "completion_tokens_details": { "reasoning_tokens": u.thoughts_tokens },
    })
}

fn finish_reason(gemini: &str) -> &'static str {
    match gemini {
        gemini::MAX_TOKENS => "length",
        _ => "stop",
    }
}

/// The streamed form: `chat.completion.chunk` events, then `data: [DONE]`.
pub struct CompletionChunks {
    pub header: Header,
    pub include_usage: bool,
    /// Tool calls sent so far (their stream index).
    calls_sent: Cell<usize>,
}

impl CompletionChunks {
    pub fn new(header: Header, include_usage: bool) -> Self {
        CompletionChunks {
            header,
            include_usage,
            calls_sent: Cell::new(0),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Vec<u8> {
        sse::data(
            &json!({
                "id": self.header.id,
                "object": "chat.completion.chunk",
                "created": self.header.created,
                "model": self.header.model,
                "system_fingerprint": null,
                "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
            })
            .to_string(),
        )
    }

    /// The last events: the finish, the usage chunk when asked for, and `[DONE]`.
    fn ending(&self, finish: &str, end: &StreamEnd, ion: Option<Value>) -> Vec<u8> {
        let mut bytes = self.chunk(json!({}), Some(finish));
        if self.include_usage {
            let mut chunk = json!({
                "id": self.header.id,
                "object": "chat.completion.chunk",
                "created": self.header.created,
                "model": self.header.model,
                "choices": [],
                "usage": usage_json(end.usage.unwrap_or_default()),
            });
            if let Some(ion) = ion {
                chunk["ion"] = ion;
            }
            bytes.extend(sse::data(&chunk.to_string()));
        }
        bytes.extend(sse::data("[DONE]"));
        bytes
    }

    /// A stream whose answer was withheld before it began, sent whole: the opening, the
    /// `content_filter` finish and `[DONE]`.
    pub fn filtered_stream(
        &self,
        chat: &Chat,
        reason: &str,
        stage: &str,
        attempts: u32,
    ) -> ApiResponse {
        let mut body = self.opening(chat);
        let end = StreamEnd {
            attempts,
            ..StreamEnd::default()
        };
        let ion = filtered_metadata(chat, reason, stage, attempts);
        body.extend(self.ending("content_filter", &end, Some(ion)));
        let mut response = sse::head();
        response.body = body;
        response
    }
}

impl StreamFormat for CompletionChunks {
    fn opening(&self, _chat: &Chat) -> Vec<u8> {
        self.chunk(json!({ "role": "assistant", "content": "" }), None)
    }

    fn delta(&self, _chat: &Chat, text: &str) -> Vec<u8> {
        self.chunk(json!({ "content": text }), None)
    }

    fn calls(&self, _chat: &Chat, calls: &[ToolCall]) -> Vec<u8> {
        let first = self.calls_sent.get();
        self.calls_sent.set(first + calls.len());
        let deltas: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let n = first + i;
                tools::call_json(call, &self.header.call_id(n, call), Some(n))
            })
            .collect();
        self.chunk(json!({ "tool_calls": deltas }), None)
    }

    fn done(&self, chat: &Chat, end: &StreamEnd) -> Vec<u8> {
        let finish = if end.calls.is_empty() {
            finish_reason(end.finish_reason.as_deref().unwrap_or(""))
        } else {
            "tool_calls"
        };
        let ion = ion_metadata(chat, end.attempts, end.model_version.as_deref());
        self.ending(finish, end, Some(ion))
    }

    fn failed(&self, _chat: &Chat, error: &ApiError) -> Vec<u8> {
        // Withheld part-way: what was sent stands, and the stream ends as OpenAI's would.
        if content_filter(error).is_some() {
            return self.ending("content_filter", &StreamEnd::default(), None);
        }
        sse::data(&openai_error(error, None).to_string())
    }
}
