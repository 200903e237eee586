//! The one structured log line written per chat: what an operator needs for metrics and alerts
//! (model, persona, tokens, attempts, latencies, outcome), never the message or answer text.
//! [`ChatRecord`] is its only owner: `/chat`, `/v1/chat/completions` and their streams all note
//! what happened through its methods, so the routes' lines cannot drift apart.
//!
//! It is a JSON object on the component's stdout. ion-host reads such lines as structured
//! entries (severity, message, and the `chat` fields) and adds request id and trace; under Spin
//! it is a plain JSON line in the component's log.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::access::{Caller, Grant};
use crate::cache::CacheStatus;
use crate::chat::{self, Chat, StreamEnd};
use crate::chat_state::TurnState;
use crate::conversation::ConversationId;
use crate::error::ApiError;
use crate::gemini::{Answer, Usage};
use crate::vertex::CallStats;

/// The outcome of an answer the content filters withheld.
const CONTENT_BLOCKED: &str = "content_blocked";

/// Fields of the per-chat log line (`chat` in the log entry).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRecord {
    /// `/chat` or `/v1/chat/completions`.
    pub route: &'static str,
    pub stream: bool,
    /// The model that answered (as Vertex AI named it when it did), or the last one tried; the
    /// configured one when the chat never reached Vertex AI.
    pub model: Option<String>,
    /// Every model called, in order, when there was more than one (the primary failed and the
    /// fallback models were tried); `null` otherwise.
    pub models_tried: Option<Vec<String>>,
    pub persona: Option<&'static str>,
    pub resonance_key: Option<String>,
    /// `ok`, or the error `code` the client was given.
    pub outcome: String,
    /// The HTTP status the client was given (200 for a stream that failed part-way).
    pub status: u16,
    pub finish_reason: Option<String>,
    /// Vertex AI's id of the answer (`responseId`).
    pub response_id: Option<String>,
    /// The output-token limit the request set.
    pub max_tokens: Option<u32>,
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
            models_tried: None,
            persona: None,
            resonance_key: None,
            outcome: "ok".into(),
            status: 200,
            finish_reason: None,
            response_id: None,
            max_tokens: None,
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

    /// A prepared chat: whether it streams, the configured (primary) model, persona and
    /// resonance.
    pub fn note_chat(&mut self, chat: &Chat) {
        self.stream = chat.request.stream;
        self.model = Some(chat.settings.models.primary().to_owned());
        self.persona = Some(chat.routing.persona.name());
        self.resonance_key = Some(chat.resonance.key());
        self.max_tokens = Some(chat.gemini.generation_config.max_output_tokens);
    }

    /// Attempts, upstream time and models of a call to Vertex AI: the model it reached
    /// replaces the configured one.
    pub fn note_call(&mut self, stats: &CallStats) {
        self.attempts = stats.attempts;
        self.upstream_latency_ms = Some(chat::millis(stats.upstream_latency));
        if let Some(model) = stats.model() {
            self.model = Some(model.to_owned());
        }
        self.models_tried = (stats.models_tried.len() > 1).then(|| stats.models_tried.clone());
    }

    /// A whole answer (from Vertex AI or the cache).
    pub fn note_answer(&mut self, answer: &Answer) {
        self.response_id = answer.response_id.clone();
        self.note_result(
            Some(&answer.finish_reason),
            Some(answer.usage),
            answer.model_version.as_deref(),
        );
    }

    /// How a stream ended: its answer so far, and a failure after the 200 or a client gone.
    pub fn note_stream_end(&mut self, end: &StreamEnd) {
        self.response_id = end.response_id.clone();
        self.note_result(
            end.finish_reason.as_deref(),
            end.usage,
            end.model_version.as_deref(),
        );
        if let Some(error) = &end.error {
            self.outcome = error.code().into();
        } else if end.client_gone {
            self.outcome = "client_closed".into();
            self.status = 499;
        }
    }

    /// Finish reason and tokens as Vertex AI reported them; the model it named replaces the
    /// configured one.
    fn note_result(
        &mut self,
        finish_reason: Option<&str>,
        usage: Option<Usage>,
        model: Option<&str>,
    ) {
        self.finish_reason = finish_reason.map(str::to_owned);
        self.set_usage(usage);
        if let Some(model) = model {
            self.model = Some(model.to_owned());
        }
    }

    /// The store's part: the conversation, the cache, and whether the store failed.
    pub fn note_state(&mut self, state: &TurnState) {
        self.conversation = state.conversation.as_ref().map(|c| c.short().to_owned());
        self.cache = state.cache.map(CacheStatus::as_str);
        if state.store_failed {
            self.store = Some("unavailable");
        }
    }

    /// The conversation the caller named, when the turn could not begin.
    pub fn note_named_conversation(&mut self, id: &ConversationId) {
        self.conversation = Some(id.short().to_owned());
    }

    /// Who called, once identified (before the limits are checked).
    pub fn note_caller(&mut self, caller: &Caller) {
        self.caller = Some(caller.label());
    }

    /// Who called, and whether only per-instance limits could be applied.
    pub fn note_grant(&mut self, grant: &Grant) {
        self.note_caller(&grant.caller);
        if grant.store_failed {
            self.limits = Some("instance");
        }
    }

    /// Charging the caller's tokens failed: the store is down and limits are per instance.
    pub fn note_charge_failed(&mut self) {
        self.store = Some("unavailable");
        self.limits = Some("instance");
    }

    /// The time from the request's arrival to its answer's end.
    pub fn note_total_latency(&mut self, elapsed: Duration) {
        self.total_latency_ms = chat::millis(elapsed);
    }

    fn set_usage(&mut self, usage: Option<Usage>) {
        if let Some(u) = usage {
            self.prompt_tokens = Some(u.prompt_tokens);
            self.completion_tokens = Some(u.completion_tokens);
            self.thoughts_tokens = Some(u.thoughts_tokens);
            self.total_tokens = Some(u.total_tokens);
            self.cached_tokens = Some(u.cached_tokens);
        }
    }

    /// An answer Gemini's content filters withheld, answered with a 200 (`/v1`'s
    /// `finish_reason: "content_filter"`): the error's code, and the block reason.
    pub fn note_content_filter(&mut self, error: &ApiError) {
        self.status = 200;
        self.outcome = error.code().into();
    }

    /// The error the client was given, as status and `code`.
    pub fn set_failure(&mut self, error: &ApiError) {
        self.status = error.status();
        self.outcome = error.code().into();
    }

    /// The line to write: `{"severity", "message": "chat", "chat": {...}}`.
    pub fn to_line(&self) -> String {
        let severity = match self.status {
            500.. => "ERROR",
            400.. => "WARNING",
            // Withheld by the content filters (`/v1` answers that with a 200): not a fault.
            _ if self.outcome == CONTENT_BLOCKED => "WARNING",
            _ if self.outcome != "ok" => "ERROR", // a stream that failed after its 200
            _ => "INFO",
        };
        json!({ "severity": severity, "message": "chat", "chat": self }).to_string()
    }
}

/// A structured diagnostic line for the runtime's log (stderr), apart from the per-chat lines.
pub fn diagnostic(severity: &str, message: &str) {
    eprintln!("{}", json!({ "severity": severity, "message": message }));
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
        record.note_result(
            Some("STOP"),
            Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                thoughts_tokens: 3,
                total_tokens: 6,
                cached_tokens: 0,
            }),
            None,
        );
        let line: Value = serde_json::from_str(&record.to_line()).unwrap();
        assert_eq!(line["severity"], "INFO");
        assert_eq!(line["message"], "chat");
        let chat = line["chat"].as_object().unwrap();
        for field in [
            "route",
            "stream",
            "model",
            "models_tried",
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
    fn the_line_names_the_model_that_answered_and_the_models_tried() {
        let stats = |models: &[&str]| CallStats {
            attempts: 4,
            upstream_latency: Duration::from_millis(20),
            models_tried: models.iter().map(|m| m.to_string()).collect(),
        };
        let mut record = ChatRecord::new("/chat");
        record.model = Some("gemini-2.5-flash".into());
        record.note_call(&stats(&["gemini-2.5-flash", "gemini-3.5-flash"]));
        let line: Value = serde_json::from_str(&record.to_line()).unwrap();
        assert_eq!(line["chat"]["model"], "gemini-3.5-flash");
        assert_eq!(
            line["chat"]["models_tried"],
            serde_json::json!(["gemini-2.5-flash", "gemini-3.5-flash"])
        );
        assert_eq!(line["chat"]["attempts"], 4);
        // Vertex AI's own name for the model wins, as for a single model.
        record.note_result(Some("STOP"), None, Some("gemini-3.5-flash-002"));
        assert_eq!(record.model.as_deref(), Some("gemini-3.5-flash-002"));

        let mut record = ChatRecord::new("/chat");
        record.note_call(&stats(&["gemini-3.5-flash"]));
        let line: Value = serde_json::from_str(&record.to_line()).unwrap();
        assert_eq!(line["chat"]["model"], "gemini-3.5-flash");
        assert_eq!(
            line["chat"]["models_tried"],
            Value::Null,
            "one model: no list"
        );
    }

    #[test]
    fn failures_carry_the_client_facing_code_and_severity() {
        let mut record = ChatRecord::new("/chat");
        record.set_failure(&ApiError::NotFound { path: "/x".into() });
        assert_eq!((record.outcome.as_str(), record.status), ("not_found", 404));
        let line: Value = serde_json::from_str(&record.to_line()).unwrap();
        assert_eq!(line["severity"], "WARNING");
        let mut record = ChatRecord::new("/chat");
        let issue = crate::validation::parse_chat_request(b"{}").unwrap_err();
        record.set_failure(&ApiError::Validation(issue));
        assert_eq!(record.outcome, "validation_error");
    }

    #[test]
    fn a_stream_that_fails_after_its_200_keeps_the_status_and_names_the_error() {
        let mut record = ChatRecord::new("/chat");
        record.note_stream_end(&StreamEnd {
            error: Some(ApiError::Upstream(crate::error::UpstreamError::Timeout {
                after: std::time::Duration::from_secs(1),
            })),
            model_version: Some("gemini-x".into()),
            ..StreamEnd::default()
        });
        assert_eq!(
            (record.outcome.as_str(), record.status),
            ("upstream_timeout", 200)
        );
        assert_eq!(record.model.as_deref(), Some("gemini-x"));
        let line: Value = serde_json::from_str(&record.to_line()).unwrap();
        assert_eq!(line["severity"], "ERROR");

        let mut record = ChatRecord::new("/chat");
        record.note_stream_end(&StreamEnd {
            client_gone: true,
            ..StreamEnd::default()
        });
        assert_eq!(
            (record.outcome.as_str(), record.status),
            ("client_closed", 499)
        );
    }
}
