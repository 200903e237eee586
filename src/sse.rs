//! Server-Sent Events as `/chat` sends them: `meta`, then `delta`s, then `done` (or `error`).

use serde_json::{Value, json};

use crate::chat::{Chat, StreamEnd, StreamFormat};
use crate::error::ApiError;

/// Headers of every event-stream response.
pub const HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    // Proxies that buffer (nginx and the like) would hold the deltas back.
    ("x-accel-buffering", "no"),
];

/// One event: `event: NAME` and a single `data:` line (compact JSON has no raw newlines).
pub fn event(name: &str, data: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// A `data:`-only event, as OpenAI-style streams send them.
pub fn data(data: &str) -> Vec<u8> {
    format!("data: {data}\n\n").into_bytes()
}

/// The `/chat` event stream.
pub struct ChatEvents;

impl StreamFormat for ChatEvents {
    fn opening(&self, chat: &Chat) -> Vec<u8> {
        event(
            "meta",
            &json!({
                "persona_used": chat.persona().name(),
                "resonance_key": chat.resonance.key(),
                "confidence": chat.routing.confidence,
                "conversation_id": chat.state.conversation_id(),
                "metadata": crate::api::analysis_metadata(chat),
            }),
        )
    }

    fn delta(&self, _chat: &Chat, text: &str) -> Vec<u8> {
        event("delta", &json!({ "text": text }))
    }

    fn done(&self, chat: &Chat, end: &StreamEnd) -> Vec<u8> {
        event(
            "done",
            &json!({
                "finish_reason": end.finish_reason,
                "truncated": end.truncated(),
                "usage": end.usage.unwrap_or_default(),
                "conversation_id": chat.state.conversation_id(),
                "metadata": {
                    "attempts": end.attempts,
                    "model": chat.model(end.model_version.as_deref()),
                    "cache": crate::api::cache_status(chat),
                },
            }),
        )
    }

    fn failed(&self, _chat: &Chat, error: &ApiError) -> Vec<u8> {
        event("error", &error.answer().body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_data_line_each() {
        let e = event("delta", &json!({"text": "a\nb"}));
        assert_eq!(
            String::from_utf8(e).unwrap(),
            "event: delta\ndata: {\"text\":\"a\\nb\"}\n\n"
        );
        assert_eq!(data("[DONE]"), b"data: [DONE]\n\n");
    }
}
