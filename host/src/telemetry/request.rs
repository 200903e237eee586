//! One served request's telemetry: its server span, a client span per Vertex AI attempt, and
//! what the component's per-chat log line says about the answer.
//!
//! The host sees every attempt as it happens (it sends the component's outbound requests), so
//! attempts are timed where the I/O is; what only the component knows (tokens, finish reason,
//! response id, max tokens) comes from its per-chat line. Everything is put together when the
//! request lets go of its [`RequestTrace`]: after the last byte of the response and the end of
//! the instance, whichever is later. Then the spans are queued and the metrics recorded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::Uri;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::Value as Json;

use super::Telemetry;
use super::attributes::{Attributes, Value};
use super::content;
use super::ids::{self, SpanId, TraceId};
use super::semconv::*;
use super::spans::{self, Kind};
use crate::logging::Trace;

/// The served request, as its server span describes it.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub user_agent: Option<String>,
    pub client_address: String,
    pub protocol: &'static str,
}

pub struct RequestTrace {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    parent: Option<SpanId>,
    pub sampled: bool,
    start: SystemTime,
    started: Instant,
    head: RequestHead,
    state: Mutex<State>,
    telemetry: &'static Telemetry,
}

#[derive(Default)]
struct State {
    status: Option<u16>,
    attempts: Vec<Attempt>,
    chat: Option<ChatFacts>,
}

/// One call to Vertex AI's `generateContent` / `streamGenerateContent`.
struct Attempt {
    span_id: SpanId,
    model: String,
    server_address: String,
    server_port: u16,
    streamed: bool,
    start: SystemTime,
    started: Instant,
    first_chunk: Option<Duration>,
    duration: Option<Duration>,
    status: Option<u16>,
    error: Option<String>,
    /// Opt-in content: the request's attributes, and the answer's bytes as they arrive.
    content: Vec<(&'static str, String)>,
    output: Vec<u8>,
}

/// What the component's per-chat line says (see `src/chat_log.rs`).
#[derive(Debug, Default, Clone, PartialEq)]
struct ChatFacts {
    route: Option<String>,
    outcome: Option<String>,
    model: Option<String>,
    response_id: Option<String>,
    finish_reason: Option<String>,
    max_tokens: Option<i64>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    thoughts_tokens: Option<i64>,
    cached_tokens: Option<i64>,
}

impl ChatFacts {
    fn from_json(chat: &Json) -> ChatFacts {
        let text = |key: &str| chat.get(key).and_then(Json::as_str).map(str::to_owned);
        let number = |key: &str| chat.get(key).and_then(Json::as_i64);
        ChatFacts {
            route: text("route"),
            outcome: text("outcome"),
            model: text("model"),
            response_id: text("response_id"),
            finish_reason: text("finish_reason"),
            max_tokens: number("max_tokens"),
            prompt_tokens: number("prompt_tokens"),
            completion_tokens: number("completion_tokens"),
            thoughts_tokens: number("thoughts_tokens"),
            cached_tokens: number("cached_tokens"),
        }
    }

    /// Output tokens as billed: the answer's and the thinking's.
    fn output_tokens(&self) -> Option<i64> {
        match (self.completion_tokens, self.thoughts_tokens) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        }
    }

    /// The error class of a chat whose answering attempt got a 200 but whose answer failed
    /// (a broken stream, an empty or unreadable answer, a deadline).
    fn answer_error(&self) -> Option<&str> {
        self.outcome
            .as_deref()
            .filter(|o| o.starts_with("upstream_") || o.contains("timeout"))
    }
}

/// A Vertex AI call's model and method, from its path
/// (`…/publishers/google/models/{model}:{method}`).
fn generate_call(uri: &Uri) -> Option<(&str, bool)> {
    let (_, call) = uri.path().rsplit_once("/models/")?;
    let (model, method) = call.split_once(':')?;
    let streamed = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return None,
    };
    (!model.is_empty() && !model.contains('/')).then_some((model, streamed))
}

impl RequestTrace {
    pub(super) fn start(
        telemetry: &'static Telemetry,
        inbound: Option<&Trace>,
        head: RequestHead,
        started: Instant,
    ) -> RequestTrace {
        let inbound_trace = inbound.and_then(|t| ids::from_hex::<16>(&t.trace_id));
        let trace_id = inbound_trace.unwrap_or_else(ids::new_trace_id);
        let parent = inbound
            .filter(|_| inbound_trace.is_some())
            .and_then(|t| t.span_id.as_deref())
            .and_then(ids::from_hex::<8>);
        let caller_decision = inbound
            .filter(|_| inbound_trace.is_some())
            .and_then(|t| t.sampled);
        RequestTrace {
            trace_id,
            span_id: ids::new_span_id(),
            parent,
            sampled: telemetry.sampler.sample(caller_decision, &trace_id),
            start: SystemTime::now(),
            started,
            head,
            state: Mutex::default(),
            telemetry,
        }
    }

    /// The trace the request's log entries name: this request's span in it.
    pub fn log_trace(&self) -> Trace {
        Trace {
            trace_id: ids::hex(&self.trace_id),
            span_id: Some(ids::hex(&self.span_id)),
            sampled: Some(self.sampled),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status the client was given (499 when it went away first).
    pub fn set_status(&self, status: u16) {
        self.state().status = Some(status);
    }

    /// The component's per-chat log line (its `chat` object).
    pub fn note_chat(&self, chat: &Json) {
        self.state().chat = Some(ChatFacts::from_json(chat));
    }

    /// Starts an attempt if `uri` is a call to a Gemini model; other outbound requests get
    /// no span of their own (they still carry the trace: see [`Self::traceparent`]).
    pub fn start_attempt(self: &Arc<Self>, uri: &Uri) -> Option<AttemptHandle> {
        let (model, streamed) = generate_call(uri)?;
        let attempt = Attempt {
            span_id: ids::new_span_id(),
            model: model.to_owned(),
            server_address: uri.host().unwrap_or_default().to_owned(),
            server_port: uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("http") => 80,
                _ => 443,
            }),
            streamed,
            start: SystemTime::now(),
            started: Instant::now(),
            first_chunk: None,
            duration: None,
            status: None,
            error: None,
            content: Vec::new(),
            output: Vec::new(),
        };
        let span_id = attempt.span_id;
        let mut state = self.state();
        state.attempts.push(attempt);
        Some(AttemptHandle {
            trace: self.clone(),
            index: state.attempts.len() - 1,
            span_id,
        })
    }

    /// `traceparent` for an outbound request that is not an attempt: this request's span.
    pub fn traceparent(&self) -> String {
        ids::traceparent(&self.trace_id, &self.span_id, self.sampled)
    }

    fn with_attempt(&self, index: usize, update: impl FnOnce(&mut Attempt)) {
        if let Some(attempt) = self.state().attempts.get_mut(index) {
            update(attempt);
        }
    }
}

/// The host's hold on one attempt; the attempt ends when it is dropped, if not before.
pub struct AttemptHandle {
    trace: Arc<RequestTrace>,
    index: usize,
    span_id: SpanId,
}

impl AttemptHandle {
    /// `traceparent` naming the attempt's span, for the request to Vertex AI.
    pub fn traceparent(&self) -> String {
        ids::traceparent(&self.trace.trace_id, &self.span_id, self.trace.sampled)
    }

    /// Whether this attempt's messages are recorded: an operator opted in, and the trace is
    /// sampled (content that would not be exported is not kept).
    pub fn captures_content(&self) -> bool {
        self.trace.telemetry.capture_content && self.trace.sampled
    }

    /// The request body sent to Vertex AI (only when [`Self::captures_content`]).
    pub fn record_input(&self, body: &[u8]) {
        let attributes = content::input(body);
        self.trace
            .with_attempt(self.index, |a| a.content = attributes);
    }

    /// Answer bytes as they arrive (only when [`Self::captures_content`]); kept up to a bound.
    pub fn record_output(&self, chunk: &[u8]) {
        self.trace.with_attempt(self.index, |a| {
            let room = content::MAX_CONTENT.saturating_sub(a.output.len());
            a.output.extend_from_slice(&chunk[..chunk.len().min(room)]);
        });
    }

    pub fn responded(&self, status: u16) {
        self.trace.with_attempt(self.index, |a| {
            a.status = Some(status);
            if status >= 400 {
                a.error.get_or_insert_with(|| status.to_string());
            }
        });
    }

    /// The attempt failed: `error_type` is a short class (`timeout`, `connection_refused`…).
    pub fn failed(&self, error_type: &str) {
        self.trace.with_attempt(self.index, |a| {
            a.error.get_or_insert_with(|| error_type.to_owned());
            a.duration.get_or_insert_with(|| a.started.elapsed());
        });
    }

    pub fn first_chunk(&self) {
        self.trace.with_attempt(self.index, |a| {
            a.first_chunk.get_or_insert_with(|| a.started.elapsed());
        });
    }

    pub fn ended(&self) {
        self.trace.with_attempt(self.index, |a| {
            a.duration.get_or_insert_with(|| a.started.elapsed());
        });
    }
}

impl Drop for AttemptHandle {
    fn drop(&mut self) {
        self.ended();
    }
}

impl Drop for RequestTrace {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        let state = std::mem::take(&mut *self.state());
        let chat = state.chat.unwrap_or_default();
        let server = self.server_outcome(state.status.unwrap_or(500), &chat);
        self.telemetry.metrics.record(
            HTTP_SERVER_REQUEST_DURATION,
            duration.as_secs_f64(),
            server.attributes.clone(),
        );
        let mut spans = self.attempts(&state.attempts, &chat, duration);
        if self.sampled {
            spans.push(self.server_span(server, duration));
            self.telemetry.offer(spans);
        }
    }
}

/// How the request ended, as its metric and span say it.
struct ServerOutcome {
    /// `http.server.request.duration`'s attributes (the span adds more).
    attributes: Attributes,
    route: Option<String>,
    error: Option<String>,
}

impl RequestTrace {
    fn server_outcome(&self, status: u16, chat: &ChatFacts) -> ServerOutcome {
        // A chat route is known from the per-chat line; other paths get no route (a path is
        // not a low-cardinality route).
        let route = chat
            .route
            .as_deref()
            .filter(|r| *r == self.head.path)
            .map(str::to_owned);
        let mut attributes: Attributes = vec![
            (HTTP_REQUEST_METHOD, Value::from(self.head.method.as_str())),
            (URL_SCHEME, Value::from("http")),
            (HTTP_RESPONSE_STATUS_CODE, Value::from(status)),
        ];
        if let Some(route) = &route {
            attributes.push((HTTP_ROUTE, Value::from(route.as_str())));
        }
        let error = (status >= 500).then(|| status.to_string());
        if let Some(error) = &error {
            attributes.push((ERROR_TYPE, Value::from(error.as_str())));
        }
        ServerOutcome {
            attributes,
            route,
            error,
        }
    }

    fn server_span(&self, outcome: ServerOutcome, duration: Duration) -> Span {
        let mut attributes = outcome.attributes;
        attributes.push((URL_PATH, Value::from(self.head.path.as_str())));
        attributes.push((NETWORK_PROTOCOL_VERSION, Value::from(self.head.protocol)));
        attributes.push((
            CLIENT_ADDRESS,
            Value::from(self.head.client_address.as_str()),
        ));
        if let Some(agent) = &self.head.user_agent {
            attributes.push((USER_AGENT_ORIGINAL, Value::from(agent.as_str())));
        }
        let name = match &outcome.route {
            Some(route) => format!("{} {route}", self.head.method),
            None => self.head.method.clone(),
        };
        spans::build(
            spans::Ids {
                trace_id: self.trace_id,
                span_id: self.span_id,
                parent: self.parent,
                remote_parent: true,
            },
            name,
            Kind::Server,
            (self.start, self.start + duration),
            attributes,
            outcome.error,
        )
    }

    /// Records every attempt's metrics; returns their spans (and the waits between them) when
    /// the trace is sampled. The answering attempt is the last that got a success.
    fn attempts(&self, attempts: &[Attempt], chat: &ChatFacts, duration: Duration) -> Vec<Span> {
        let answering = attempts
            .iter()
            .rposition(|a| a.status.is_some_and(|s| (200..300).contains(&s)) && a.error.is_none());
        let mut spans = Vec::new();
        let mut previous: Option<(SystemTime, Option<String>)> = None;
        for (index, attempt) in attempts.iter().enumerate() {
            let answered = answering == Some(index);
            let error = attempt.error.clone().or_else(|| {
                answered
                    .then(|| chat.answer_error().map(str::to_owned))
                    .flatten()
            });
            let attempt_duration = attempt.duration.unwrap_or(duration);
            let common =
                self.record_attempt(attempt, answered, chat, error.as_deref(), attempt_duration);
            if !self.sampled {
                continue;
            }
            // The wait before a retry, as its own span between the two attempts.
            if let Some((end, reason)) = previous.take()
                && attempt.start > end
            {
                let mut attributes: Attributes =
                    vec![(HTTP_REQUEST_RESEND_COUNT, Value::from(index as i64))];
                if let Some(reason) = reason {
                    attributes.push((ERROR_TYPE, Value::from(reason)));
                }
                spans.push(spans::build(
                    spans::Ids::child(self.trace_id, ids::new_span_id(), self.span_id),
                    "retry wait".to_owned(),
                    Kind::Internal,
                    (end, attempt.start),
                    attributes,
                    None,
                ));
            }
            let end = attempt.start + attempt_duration;
            let attributes =
                attempt_attributes(common, attempt, index, answered, chat, error.as_deref());
            spans.push(spans::build(
                spans::Ids::child(self.trace_id, attempt.span_id, self.span_id),
                format!("{OPERATION_CHAT} {}", attempt.model),
                Kind::Client,
                (attempt.start, end),
                attributes,
                error.clone(),
            ));
            previous = Some((end, error));
        }
        spans
    }

    /// Records one attempt's metrics; returns the attributes its metrics and span share.
    fn record_attempt(
        &self,
        attempt: &Attempt,
        answered: bool,
        chat: &ChatFacts,
        error: Option<&str>,
        duration: Duration,
    ) -> Attributes {
        let metrics = &self.telemetry.metrics;
        let mut common: Attributes = vec![
            (GEN_AI_OPERATION_NAME, Value::from(OPERATION_CHAT)),
            (GEN_AI_PROVIDER_NAME, Value::from(PROVIDER_VERTEX_AI)),
            (GEN_AI_REQUEST_MODEL, Value::from(attempt.model.as_str())),
            (SERVER_ADDRESS, Value::from(attempt.server_address.as_str())),
            (SERVER_PORT, Value::from(attempt.server_port)),
        ];
        if let Some(model) = chat.model.as_deref().filter(|_| answered) {
            common.push((GEN_AI_RESPONSE_MODEL, Value::from(model)));
        }
        let mut with_error = common.clone();
        if let Some(error) = error {
            with_error.push((ERROR_TYPE, Value::from(error)));
        }
        metrics.record(
            GEN_AI_CLIENT_OPERATION_DURATION,
            duration.as_secs_f64(),
            with_error,
        );
        if let (true, Some(first)) = (attempt.streamed, attempt.first_chunk) {
            metrics.record(
                GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
                first.as_secs_f64(),
                common.clone(),
            );
        }
        if answered {
            for (kind, tokens) in [
                (TOKEN_TYPE_INPUT, chat.prompt_tokens),
                (TOKEN_TYPE_OUTPUT, chat.output_tokens()),
            ] {
                if let Some(tokens) = tokens {
                    let mut attributes = common.clone();
                    attributes.push((GEN_AI_TOKEN_TYPE, Value::from(kind)));
                    metrics.record(GEN_AI_CLIENT_TOKEN_USAGE, tokens as f64, attributes);
                }
            }
        }
        common
    }
}

/// A client span's attributes: the shared ones, then the attempt's and, on the attempt that
/// answered, the answer's.
fn attempt_attributes(
    mut attributes: Attributes,
    attempt: &Attempt,
    index: usize,
    answered: bool,
    chat: &ChatFacts,
    error: Option<&str>,
) -> Attributes {
    if let Some(error) = error {
        attributes.push((ERROR_TYPE, Value::from(error)));
    }
    if let Some(status) = attempt.status {
        attributes.push((HTTP_RESPONSE_STATUS_CODE, Value::from(status)));
    }
    if index > 0 {
        attributes.push((HTTP_REQUEST_RESEND_COUNT, Value::from(index as i64)));
    }
    if let Some(max) = chat.max_tokens {
        attributes.push((GEN_AI_REQUEST_MAX_TOKENS, Value::Int(max)));
    }
    if answered {
        if let Some(id) = &chat.response_id {
            attributes.push((GEN_AI_RESPONSE_ID, Value::from(id.as_str())));
        }
        if let Some(reason) = &chat.finish_reason {
            attributes.push((
                GEN_AI_RESPONSE_FINISH_REASONS,
                Value::StrArray(vec![reason.to_ascii_lowercase()]),
            ));
        }
        for (key, tokens) in [
            (GEN_AI_USAGE_INPUT_TOKENS, chat.prompt_tokens),
            (GEN_AI_USAGE_OUTPUT_TOKENS, chat.output_tokens()),
            (GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, chat.thoughts_tokens),
            (GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, chat.cached_tokens),
        ] {
            if let Some(tokens) = tokens {
                attributes.push((key, Value::Int(tokens)));
            }
        }
    }
    for (key, value) in &attempt.content {
        attributes.push((key, Value::Str(value.clone())));
    }
    if !attempt.output.is_empty()
        && let Some(output) = content::output(&attempt.output, attempt.streamed)
    {
        attributes.push((GEN_AI_OUTPUT_MESSAGES, Value::Str(output)));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_generate_calls_are_attempts() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(
            generate_call(&uri(
                "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/google/models/gemini-3.5-flash:generateContent"
            )),
            Some(("gemini-3.5-flash", false))
        );
        assert_eq!(
            generate_call(&uri(
                "http://127.0.0.1:9/v1/projects/p/locations/l/publishers/google/models/m:streamGenerateContent?alt=sse"
            )),
            Some(("m", true))
        );
        for other in [
            "https://aiplatform.googleapis.com/v1/projects/p/locations/l/publishers/google/models/m:countTokens",
            "https://oauth2.googleapis.com/token",
            "https://x/v1/models/:generateContent",
        ] {
            assert_eq!(generate_call(&uri(other)), None, "{other}");
        }
    }

    #[test]
    fn chat_facts_come_from_the_per_chat_line() {
        let facts = ChatFacts::from_json(&serde_json::json!({
            "route": "/chat", "outcome": "ok", "model": "gemini-3.5-flash",
            "response_id": "r1", "finish_reason": "STOP", "max_tokens": 1024,
            "prompt_tokens": 10, "completion_tokens": 5, "thoughts_tokens": 3,
            "cached_tokens": null
        }));
        assert_eq!(
            facts.output_tokens(),
            Some(8),
            "thinking is billed as output"
        );
        assert_eq!(facts.cached_tokens, None);
        assert_eq!(facts.answer_error(), None);
        let failed = ChatFacts {
            outcome: Some("upstream_empty_answer".into()),
            ..facts
        };
        assert_eq!(failed.answer_error(), Some("upstream_empty_answer"));
        assert_eq!(ChatFacts::default().output_tokens(), None);
    }
}
