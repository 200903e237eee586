//! The one structured log line written per chat: what an operator needs for metrics and alerts
//! (model, persona, tokens, attempts, latencies, outcome), never the message or answer text.
//!
//! It is a JSON object on the component's stdout. ion-host reads such lines as structured
//! entries (severity, message, and the `chat` fields) and adds request id and trace; under Spin
//! it is a plain JSON line in the component's log.

use serde::Serialize;
use serde_json::json;

use crate::gemini::Usage;
use crate::response::ApiResponse;

/// Fields of the per-chat log line (`chat` in the log entry).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRecord {
    /// `/chat` or `/v1/chat/completions`.
    pub route: &'static str,
    pub stream: bool,
    pub model: Option<String>,
    pub persona: Option<&'static str>,
    pub resonance_key: Option<String>,
    /// `ok`, or the error `code` the client was given.
    pub outcome: String,
    /// The HTTP status the client was given (200 for a stream that failed part-way).
    pub status: u16,
    pub finish_reason: Option<String>,
    /// Upstream attempts; 0 when the chat never reached Vertex AI.
    pub attempts: u32,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub thoughts_tokens: Option<u32>,
    pub total_tokens: Option<u32>,
    /// Prompt tokens Gemini read from its implicit cache.
    pub cached_tokens: Option<u32>,
    pub upstream_latency_ms: Option<u64>,
    pub total_latency_ms: u64,
    /// The conversation's first 8 id digits (never the whole id: it grants access).
    pub conversation: Option<String>,
    /// `hit` or `miss` when the response cache applied.
    pub cache: Option<&'static str>,
    /// `unavailable` when a store call failed or timed out.
    pub store: Option<&'static str>,
    /// `anonymous` or `key:<id>` (the key's public id, never the key).
    pub caller: Option<String>,
    /// `instance` when the shared limits could not be read and only per-instance ones applied.
    pub limits: Option<&'static str>,
}

impl ChatRecord {
    pub fn new(route: &'static str) -> Self {
        ChatRecord {
            route,
            stream: false,
            model: None,
            persona: None,
            resonance_key: None,
            outcome: "ok".into(),
            status: 200,
            finish_reason: None,
            attempts: 0,
            prompt_tokens: None,
            completion_tokens: None,
            thoughts_tokens: None,
            total_tokens: None,
            cached_tokens: None,
            upstream_latency_ms: None,
            total_latency_ms: 0,
            conversation: None,
            cache: None,
            store: None,
            caller: None,
            limits: None,
        }
    }

    /// Tokens to count against a budget: prompt, answer and thinking, as Vertex AI reported.
    pub fn billed_tokens(&self) -> u64 {
        [
            self.prompt_tokens,
            self.completion_tokens,
            self.thoughts_tokens,
        ]
        .iter()
        .map(|t| u64::from(t.unwrap_or(0)))
        .sum()
    }

    pub fn set_usage(&mut self, usage: Option<Usage>) {
        if let Some(u) = usage {
            self.prompt_tokens = Some(u.prompt_tokens);
            self.completion_tokens = Some(u.completion_tokens);
            self.thoughts_tokens = Some(u.thoughts_tokens);
            self.total_tokens = Some(u.total_tokens);
            self.cached_tokens = Some(u.cached_tokens);
        }
    }

    /// Takes status and `code` from the error response the client got.
    pub fn set_failure(&mut self, response: &ApiResponse) {
        self.status = response.status;
        self.outcome = error_code(response);
    }

    /// The line to write: `{"severity", "message": "chat", "chat": {...}}`.
    pub fn to_line(&self) -> String {
        let severity = match self.status {
            500.. => "ERROR",
            400.. => "WARNING",
            _ if self.outcome != "ok" => "ERROR", // a stream that failed after its 200
            _ => "INFO",
        };
        json!({ "severity": severity, "message": "chat", "chat": self }).to_string()
    }
}

/// The stable `code` of an error response; FastAPI-shaped 422s have none of their own.
pub fn error_code(response: &ApiResponse) -> String {
    serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|b| b["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| match response.status {
            422 => "validation_error".into(),
            status => format!("http_{status}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use serde_json::Value;

    #[test]
    fn the_line_has_every_field_and_no_text() {
        let mut record = ChatRecord::new("/chat");
        record.persona = Some("Elro");
        record.attempts = 2;
        record.set_usage(Some(Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            thoughts_tokens: 3,
            total_tokens: 6,
            cached_tokens: 0,
        }));
        let line: Value = serde_json::from_str(&record.to_line()).unwrap();
        assert_eq!(line["severity"], "INFO");
        assert_eq!(line["message"], "chat");
        let chat = line["chat"].as_object().unwrap();
        for field in [
            "route",
            "stream",
            "model",
            "persona",
            "resonance_key",
            "outcome",
            "status",
            "finish_reason",
            "attempts",
            "prompt_tokens",
            "completion_tokens",
            "thoughts_tokens",
            "total_tokens",
            "upstream_latency_ms",
            "total_latency_ms",
        ] {
            assert!(chat.contains_key(field), "missing {field}");
        }
        assert_eq!(chat["thoughts_tokens"], 3);
    }

    #[test]
    fn failures_carry_the_client_facing_code_and_severity() {
        let mut record = ChatRecord::new("/chat");
        record.set_failure(&ApiError::NotFound { path: "/x".into() }.to_response());
        assert_eq!(record.outcome, "not_found");
        let line: Value = serde_json::from_str(&record.to_line()).unwrap();
        assert_eq!(line["severity"], "WARNING");
        let mut record = ChatRecord::new("/chat");
        record.set_failure(&ApiResponse::json(422, &json!({"detail": []})));
        assert_eq!(record.outcome, "validation_error");
    }
}
