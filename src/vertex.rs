//! Calls to Vertex AI, independent of how bytes travel: `generateContent` for a whole answer,
//! `streamGenerateContent?alt=sse` for an answer chunk by chunk. Each model of the chat's list
//! ([`crate::model_list`]) is retried per [`RetryPolicy`]; a failure [`fallback`] says another
//! model need not share moves on to the next model. All of it runs inside one deadline.
//!
//! [`Transport`] and [`Clock`] are the seams between this logic and the runtime: the component
//! uses `wasi:http` outbound requests and WASI clocks, unit tests use scripted fakes.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use eventsource_stream::{EventStream, Eventsource};
use futures::future::{Either, select};
use futures::{Stream, StreamExt};

use crate::config::Settings;
use crate::error::{UpstreamError, upstream_status_error};
use crate::fallback;
use crate::gemini::{self, Answer, Chunk, GenerateContentRequest};
use crate::retry::RetryPolicy;

/// A POST of a JSON body to Vertex AI.
#[derive(Debug, Clone, PartialEq)]
pub struct VertexCall {
    pub url: String,
    /// `None` when the runtime adds credentials itself.
    pub bearer_token: Option<String>,
    pub body: Vec<u8>,
    /// `text/event-stream` for a streamed reply, else `application/json`.
    pub accept: &'static str,
}

/// A reply whose head has arrived; its body is read as it comes.
pub struct Reply<B> {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: B,
}

/// Why no reply (or no more of it) came back.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportError {
    /// The runtime's outbound policy refused the destination.
    Denied,
    /// The runtime gave up waiting (its own connect or read timeouts).
    Timeout,
    /// The runtime was to add credentials and could not obtain any.
    RuntimeCredentials,
    /// Any other failure to exchange the request and reply: `what` in words for the client,
    /// `detail` for the log.
    Failed { what: &'static str, detail: String },
}

/// Sends a [`VertexCall`] and hands back the reply as soon as its head arrives.
pub trait Transport {
    type Body: Stream<Item = Result<Vec<u8>, TransportError>> + Unpin;
    fn send(
        &self,
        call: VertexCall,
    ) -> impl Future<Output = Result<Reply<Self::Body>, TransportError>>;
}

/// Time and chance, as the runtime provides them.
pub trait Clock {
    /// Monotonic time since an arbitrary origin.
    fn now(&self) -> Duration;
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()>;
    /// A uniform draw from 0..1, for backoff jitter and ids.
    fn random(&self) -> f64;
    /// Wall-clock time, in seconds since the Unix epoch.
    fn unix_seconds(&self) -> u64;
}

/// Largest reply body read from Vertex AI; a reply to a chat is far smaller.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// How a call went, whatever its result: attempts made, time spent waiting on Vertex AI, and
/// the models called.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallStats {
    /// Every attempt on every model.
    pub attempts: u32,
    pub upstream_latency: Duration,
    /// The models called, in order: the last one answered (or, when none did, was the last
    /// tried). Empty when Vertex AI was not called.
    pub models_tried: Vec<String>,
}

impl CallStats {
    /// The model that answered, or the last one tried; `None` when none was called.
    pub fn model(&self) -> Option<&str> {
        self.models_tried.last().map(String::as_str)
    }
}

/// Calls `generateContent`, retrying transient failures and moving on to the fallback models,
/// and reads the reply into an [`Answer`] or an honest error.
pub async fn generate(
    transport: &impl Transport,
    clock: &impl Clock,
    settings: &Settings,
    request: &GenerateContentRequest,
) -> (Result<Answer, UpstreamError>, CallStats) {
    let body = encode(request);
    let body = body.as_slice();
    with_fallbacks(clock, settings, |model| {
        let url = settings.generate_content_url(model);
        async move {
            let reply = send(transport, settings, &url, body, "application/json").await?;
            let body = read_all(reply.body)
                .await
                .map_err(|e| upstream_failure(e, &url, settings))?;
            gemini::read_reply(&body)
        }
    })
    .await
}

/// Runs `attempt` on each model of the list in turn, each with its own retries, until one
/// succeeds, one fails in a way the next would share ([`fallback::tries_next_model`]), the list
/// ends, or the deadline (`request_timeout_ms` from now, shared by every model) has passed.
/// The next model is called at once: its capacity is its own, so a backoff would only cost the
/// caller time.
async fn with_fallbacks<T, F, Fut>(
    clock: &impl Clock,
    settings: &Settings,
    mut attempt: F,
) -> (Result<T, UpstreamError>, CallStats)
where
    F: FnMut(&str) -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let started = clock.now();
    let deadline = started + settings.timeout;
    let mut stats = CallStats::default();
    let mut model = settings.models.primary();
    let mut fallbacks = settings.models.fallbacks().iter();
    loop {
        stats.models_tried.push(model.to_owned());
        let result = with_retries(clock, settings, deadline, &mut stats, || attempt(model)).await;
        stats.upstream_latency = clock.now().saturating_sub(started);
        let error = match result {
            Ok(value) => return (Ok(value), stats),
            Err(error) => error,
        };
        match fallbacks.next() {
            Some(next) if fallback::tries_next_model(&error) && clock.now() < deadline => {
                model = next;
            }
            _ => return (Err(error), stats),
        }
    }
}

/// Runs `attempt` on one model until it succeeds, fails for good, or the retry policy or the
/// `deadline` says stop; every attempt is counted in `stats`.
async fn with_retries<T, F, Fut>(
    clock: &impl Clock,
    settings: &Settings,
    deadline: Duration,
    stats: &mut CallStats,
    mut attempt: F,
) -> Result<T, UpstreamError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let policy = RetryPolicy::new(settings.max_attempts);
    // The policy counts this model's attempts: each model gets the same retries.
    let mut attempts = 0;
    loop {
        attempts += 1;
        stats.attempts += 1;
        let result =
            within(clock, deadline, attempt())
                .await
                .unwrap_or(Err(UpstreamError::Timeout {
                    after: settings.timeout,
                }));
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let remaining = deadline.saturating_sub(clock.now());
        match policy.next_delay(attempts, &error, remaining, clock.random()) {
            Some(delay) => clock.sleep(delay).await,
            None => return Err(error),
        }
    }
}

/// Sends one attempt; a reply other than 200 is read into its upstream error.
async fn send<T: Transport>(
    transport: &T,
    settings: &Settings,
    url: &str,
    body: &[u8],
    accept: &'static str,
) -> Result<Reply<T::Body>, UpstreamError> {
    let call = VertexCall {
        url: url.to_owned(),
        bearer_token: settings.access_token.clone(),
        body: body.to_vec(),
        accept,
    };
    let reply = transport
        .send(call)
        .await
        .map_err(|e| upstream_failure(e, url, settings))?;
    if reply.status == 200 {
        return Ok(reply);
    }
    let body = read_all(reply.body)
        .await
        .map_err(|e| upstream_failure(e, url, settings))?;
    Err(upstream_status_error(
        reply.status,
        reply.retry_after.as_deref(),
        &body,
    ))
}

/// A streamed reply that has produced its first chunk.
pub struct AnswerStream<B> {
    events: EventStream<B>,
    /// Longest wait for the next chunk.
    idle_timeout: Duration,
    url: String,
}

/// Opens `streamGenerateContent?alt=sse` and waits for the first chunk, retrying transient
/// failures and moving on to the fallback models until then: nothing has reached the client
/// yet, so a retry or another model is invisible to it. Once a chunk has arrived the stream
/// is that model's to the end.
pub async fn open_stream<T: Transport>(
    transport: &T,
    clock: &impl Clock,
    settings: &Settings,
    request: &GenerateContentRequest,
) -> (
    Result<(Chunk, AnswerStream<T::Body>), UpstreamError>,
    CallStats,
) {
    let body = encode(request);
    let body = body.as_slice();
    with_fallbacks(clock, settings, |model| {
        let url = settings.stream_generate_content_url(model);
        async move {
            let reply = send(transport, settings, &url, body, "text/event-stream").await?;
            let mut stream = AnswerStream {
                events: reply.body.eventsource(),
                idle_timeout: settings.timeout,
                url,
            };
            // Thinking models may send chunks with only usage or thoughts first: the stream
            // counts as open at the first answer text or function call (or finish).
            let mut first = Chunk::default();
            loop {
                let chunk = match stream.next_event(settings).await {
                    Some(chunk) => chunk?,
                    None => {
                        return Err(UpstreamError::InvalidResponse {
                            detail: "the stream ended before any answer".into(),
                        });
                    }
                };
                first.text = chunk.text;
                first.calls = chunk.calls;
                first.finish_reason = chunk.finish_reason;
                first.usage = chunk.usage.or(first.usage);
                first.model_version = chunk.model_version.or(first.model_version);
                first.response_id = chunk.response_id.or(first.response_id);
                if first.has_output() || first.finish_reason.is_some() {
                    return Ok((first, stream));
                }
            }
        }
    })
    .await
}

impl<B> AnswerStream<B>
where
    B: Stream<Item = Result<Vec<u8>, TransportError>> + Unpin,
{
    /// The next chunk, `None` when Vertex AI closed the stream, or the failure that ended it
    /// (including no chunk within the idle timeout).
    pub async fn next(
        &mut self,
        clock: &impl Clock,
        settings: &Settings,
    ) -> Option<Result<Chunk, UpstreamError>> {
        let idle = self.idle_timeout;
        let deadline = clock.now() + idle;
        within(clock, deadline, self.next_event(settings))
            .await
            .unwrap_or(Some(Err(UpstreamError::Timeout { after: idle })))
    }

    async fn next_event(&mut self, settings: &Settings) -> Option<Result<Chunk, UpstreamError>> {
        loop {
            let event = match self.events.next().await? {
                Ok(event) => event,
                Err(eventsource_stream::EventStreamError::Transport(e)) => {
                    return Some(Err(upstream_failure(e, &self.url, settings)));
                }
                Err(eventsource_stream::EventStreamError::Utf8(e)) => {
                    return Some(Err(UpstreamError::InvalidResponse {
                        detail: format!("the event stream is not UTF-8: {e}"),
                    }));
                }
                Err(eventsource_stream::EventStreamError::Parser(e)) => {
                    return Some(Err(UpstreamError::InvalidResponse {
                        detail: format!("the event stream is malformed: {e}"),
                    }));
                }
            };
            if event.data.trim().is_empty() {
                continue; // keep-alive comments and empty events carry nothing
            }
            return Some(read_stream_event(event.data.as_bytes()));
        }
    }
}

/// A streamed event is a `GenerateContentResponse`, or a google.rpc error sent mid-stream.
fn read_stream_event(data: &[u8]) -> Result<Chunk, UpstreamError> {
    #[derive(serde::Deserialize)]
    struct ErrorEvent {
        error: ErrorCode,
    }
    #[derive(serde::Deserialize)]
    struct ErrorCode {
        code: u16,
    }
    if let Ok(event) = serde_json::from_slice::<ErrorEvent>(data) {
        return Err(upstream_status_error(event.error.code, None, data));
    }
    gemini::read_chunk(data)
}

fn encode(request: &GenerateContentRequest) -> Vec<u8> {
    // Plain structs of strings and numbers always serialise.
    serde_json::to_vec(request).unwrap_or_default()
}

fn upstream_failure(error: TransportError, url: &str, settings: &Settings) -> UpstreamError {
    match error {
        TransportError::Denied => UpstreamError::Denied {
            url: url.split('?').next().unwrap_or(url).to_owned(),
        },
        TransportError::Timeout => UpstreamError::Timeout {
            after: settings.timeout,
        },
        TransportError::RuntimeCredentials => UpstreamError::CredentialsUnavailable,
        TransportError::Failed { what, detail } => UpstreamError::Unreachable { what, detail },
    }
}

/// Reads a whole (error or unary) reply body, bounded by [`MAX_REPLY_BYTES`].
async fn read_all(
    mut body: impl Stream<Item = Result<Vec<u8>, TransportError>> + Unpin,
) -> Result<Vec<u8>, TransportError> {
    let mut all = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if all.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(TransportError::Failed {
                what: "the reply was larger than this service accepts",
                detail: format!("reply body larger than {MAX_REPLY_BYTES} bytes"),
            });
        }
        all.extend_from_slice(&chunk);
    }
    Ok(all)
}

/// Runs `work` until `deadline` (a [`Clock::now`] value); `None` if the deadline came first.
/// Dropping unfinished work drops its outgoing request, which cancels it.
pub async fn within<T>(
    clock: &impl Clock,
    deadline: Duration,
    work: impl Future<Output = T>,
) -> Option<T> {
    let remaining = deadline.saturating_sub(clock.now());
    match select(pin!(work), pin!(clock.sleep(remaining))).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(((), _)) => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::tests::vars;
    use futures::executor::block_on;
    use serde_json::{Value, json};
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;

    /// What a scripted attempt answers.
    #[derive(Clone)]
    pub enum Scripted {
        /// A status and the body, in chunks.
        Reply(u16, Option<&'static str>, Vec<Vec<u8>>),
        Fail(TransportError),
        /// Never answers (until the clock's deadline).
        Hang,
    }

    impl Scripted {
        pub fn json(status: u16, body: Value) -> Self {
            Scripted::Reply(status, None, vec![body.to_string().into_bytes()])
        }

        pub fn sse(chunks: &[Value]) -> Self {
            Scripted::Reply(
                200,
                None,
                chunks
                    .iter()
                    .map(|c| format!("data: {c}\r\n\r\n").into_bytes())
                    .collect(),
            )
        }
    }

    /// Answers each attempt with the next scripted reply and remembers the calls.
    pub struct FakeVertex {
        pub script: RefCell<VecDeque<Scripted>>,
        pub calls: RefCell<Vec<VertexCall>>,
    }

    impl FakeVertex {
        pub fn new(script: impl IntoIterator<Item = Scripted>) -> Self {
            FakeVertex {
                script: RefCell::new(script.into_iter().collect()),
                calls: RefCell::default(),
            }
        }

        /// The JSON bodies sent so far.
        pub fn requests(&self) -> Vec<Value> {
            self.calls
                .borrow()
                .iter()
                .map(|c| serde_json::from_slice(&c.body).unwrap())
                .collect()
        }
    }

    impl Transport for FakeVertex {
        type Body = futures::stream::Iter<std::vec::IntoIter<Result<Vec<u8>, TransportError>>>;

        async fn send(&self, call: VertexCall) -> Result<Reply<Self::Body>, TransportError> {
            self.calls.borrow_mut().push(call);
            let next = self
                .script
                .borrow_mut()
                .pop_front()
                .expect("a scripted reply");
            match next {
                Scripted::Reply(status, retry_after, chunks) => Ok(Reply {
                    status,
                    retry_after: retry_after.map(str::to_owned),
                    body: futures::stream::iter(chunks.into_iter().map(Ok).collect::<Vec<_>>()),
                }),
                Scripted::Fail(e) => Err(e),
                Scripted::Hang => futures::future::pending().await,
            }
        }
    }

    /// Virtual time: sleeping advances it at once, and every sleep is recorded.
    #[derive(Default)]
    pub struct FakeClock {
        pub now: Cell<Duration>,
        pub sleeps: RefCell<Vec<Duration>>,
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            self.now.get()
        }

        async fn sleep(&self, duration: Duration) {
            self.sleeps.borrow_mut().push(duration);
            self.now.set(self.now.get() + duration);
        }

        fn random(&self) -> f64 {
            1.0
        }

        fn unix_seconds(&self) -> u64 {
            1_764_547_200
        }
    }

    fn settings() -> Settings {
        Settings::load(&vars(&[("project_id", "p"), ("access_token", "t")])).unwrap()
    }

    fn request() -> GenerateContentRequest {
        let chat = crate::validation::ChatRequest {
            message: "hi".into(),
            ..Default::default()
        };
        gemini::build_request(&settings(), "sys".into(), &chat, &Default::default())
    }

    fn ok_reply() -> Scripted {
        Scripted::json(
            200,
            json!({"candidates": [{"content": {"parts": [{"text": "hello"}]}, "finishReason": "STOP"}]}),
        )
    }

    fn unavailable() -> Scripted {
        Scripted::json(
            503,
            json!({"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}),
        )
    }

    #[test]
    fn a_transient_failure_is_retried_after_a_backoff() {
        let vertex = FakeVertex::new([unavailable(), ok_reply()]);
        let clock = FakeClock::default();
        let (answer, stats) = block_on(generate(&vertex, &clock, &settings(), &request()));
        assert_eq!(answer.unwrap().text, "hello");
        assert_eq!(stats.attempts, 2);
        assert_eq!(*clock.sleeps.borrow(), vec![Duration::from_millis(500)]);
        let calls = vertex.calls.borrow();
        assert!(calls[0].url.ends_with(":generateContent"));
        assert_eq!(calls[0].bearer_token.as_deref(), Some("t"));
        assert_eq!(calls[0].body, calls[1].body);
    }

    #[test]
    fn other_client_errors_are_never_retried() {
        let vertex = FakeVertex::new([Scripted::json(
            400,
            json!({"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}),
        )]);
        let (answer, stats) = block_on(generate(
            &vertex,
            &FakeClock::default(),
            &settings(),
            &request(),
        ));
        assert!(matches!(
            answer,
            Err(UpstreamError::Status { status: 400, .. })
        ));
        assert_eq!(stats.attempts, 1);
    }

    #[test]
    fn attempts_stop_at_the_maximum() {
        let vertex = FakeVertex::new([unavailable(), unavailable(), unavailable(), ok_reply()]);
        let (answer, stats) = block_on(generate(
            &vertex,
            &FakeClock::default(),
            &settings(),
            &request(),
        ));
        assert!(matches!(
            answer,
            Err(UpstreamError::Status { status: 503, .. })
        ));
        assert_eq!(stats.attempts, 3);
    }

    #[test]
    fn a_rate_limit_hint_past_the_deadline_is_returned_at_once() {
        let vertex = FakeVertex::new([Scripted::Reply(
            429,
            Some("60"),
            vec![br#"{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}"#.to_vec()],
        )]);
        let clock = FakeClock::default();
        let (answer, stats) = block_on(generate(&vertex, &clock, &settings(), &request()));
        assert!(matches!(
            answer,
            Err(UpstreamError::Status { status: 429, .. })
        ));
        assert_eq!(stats.attempts, 1);
        assert!(clock.sleeps.borrow().is_empty());
    }

    #[test]
    fn connection_failures_are_retried_and_said_in_words() {
        let refused = || {
            Scripted::Fail(TransportError::Failed {
                what: "the connection was refused",
                detail: "ConnectionRefused".into(),
            })
        };
        let vertex = FakeVertex::new([refused(), refused(), refused()]);
        let (answer, stats) = block_on(generate(
            &vertex,
            &FakeClock::default(),
            &settings(),
            &request(),
        ));
        assert_eq!(stats.attempts, 3);
        match answer {
            Err(UpstreamError::Unreachable { what, .. }) => {
                assert_eq!(what, "the connection was refused")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_hung_upstream_times_out_at_the_deadline() {
        let vertex = FakeVertex::new([Scripted::Hang]);
        let clock = FakeClock::default();
        let (answer, stats) = block_on(generate(&vertex, &clock, &settings(), &request()));
        assert!(matches!(answer, Err(UpstreamError::Timeout { .. })));
        assert_eq!(stats.attempts, 1);
        assert_eq!(clock.now(), settings().timeout);
    }

    /// Settings whose `model` is followed by `fallbacks` (a `fallback_models` value).
    fn with_fallbacks_of(model: &'static str, fallbacks: &'static str) -> Settings {
        Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("model", model),
            ("fallback_models", fallbacks),
        ]))
        .unwrap()
    }

    /// The model each call went to, from its URL.
    fn models_called(vertex: &FakeVertex) -> Vec<String> {
        vertex
            .calls
            .borrow()
            .iter()
            .map(|c| {
                let (_, rest) = c.url.split_once("/models/").unwrap();
                rest.split(':').next().unwrap().to_owned()
            })
            .collect()
    }

    fn status_reply(status: u16, name: &str) -> Scripted {
        Scripted::json(
            status,
            json!({"error": {"code": status, "message": "no", "status": name}}),
        )
    }

    #[test]
    fn a_model_that_stays_unavailable_after_its_retries_hands_over_to_the_next() {
        let vertex = FakeVertex::new([unavailable(), unavailable(), unavailable(), ok_reply()]);
        let clock = FakeClock::default();
        let s = with_fallbacks_of("gemini-a", "gemini-b, gemini-c");
        let (answer, stats) = block_on(generate(&vertex, &clock, &s, &request()));
        assert_eq!(answer.unwrap().text, "hello");
        assert_eq!(
            models_called(&vertex),
            ["gemini-a", "gemini-a", "gemini-a", "gemini-b"]
        );
        assert_eq!(stats.attempts, 4, "every attempt on every model");
        assert_eq!(stats.models_tried, ["gemini-a", "gemini-b"]);
        assert_eq!(stats.model(), Some("gemini-b"));
        // The primary's usual backoff, then the next model at once.
        assert_eq!(
            *clock.sleeps.borrow(),
            [Duration::from_millis(500), Duration::from_secs(1)]
        );
        assert_eq!(stats.upstream_latency, Duration::from_millis(1500));
        let calls = vertex.calls.borrow();
        assert_eq!(calls[3].body, calls[0].body, "the same request");
        assert!(calls[3].url.ends_with("/models/gemini-b:generateContent"));
    }

    #[test]
    fn a_rate_limited_model_hands_over_to_the_next_with_its_own_retries() {
        let limited = || {
            Scripted::Reply(
                429,
                Some("60"),
                vec![br#"{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}"#.to_vec()],
            )
        };
        // The primary's hint is past the deadline: no retry there. The next model is retried
        // as usual (one 503, then an answer).
        let vertex = FakeVertex::new([limited(), unavailable(), ok_reply()]);
        let clock = FakeClock::default();
        let s = with_fallbacks_of("gemini-a", "gemini-b");
        let (answer, stats) = block_on(generate(&vertex, &clock, &s, &request()));
        assert_eq!(answer.unwrap().text, "hello");
        assert_eq!(models_called(&vertex), ["gemini-a", "gemini-b", "gemini-b"]);
        assert_eq!((stats.attempts, stats.model()), (3, Some("gemini-b")));
    }

    #[test]
    fn a_retired_or_unknown_model_hands_over_to_the_next() {
        let vertex = FakeVertex::new([status_reply(404, "NOT_FOUND"), ok_reply()]);
        let s = with_fallbacks_of("gemini-2.5-flash", "gemini-3.5-flash");
        let (answer, stats) = block_on(generate(&vertex, &FakeClock::default(), &s, &request()));
        assert_eq!(answer.unwrap().text, "hello");
        assert_eq!(
            models_called(&vertex),
            ["gemini-2.5-flash", "gemini-3.5-flash"],
            "a 404 is not retried on the same model"
        );
        assert_eq!(stats.attempts, 2);
        assert_eq!(stats.model(), Some("gemini-3.5-flash"));
    }

    #[test]
    fn the_last_models_error_is_returned_when_every_model_fails() {
        let vertex = FakeVertex::new([status_reply(404, "NOT_FOUND"), unavailable()]);
        let s = with_fallbacks_of("gemini-a", "gemini-b");
        let s = Settings {
            max_attempts: 1,
            ..s
        };
        let (answer, stats) = block_on(generate(&vertex, &FakeClock::default(), &s, &request()));
        assert!(matches!(
            answer,
            Err(UpstreamError::Status { status: 503, .. })
        ));
        assert_eq!(stats.models_tried, ["gemini-a", "gemini-b"]);
        assert_eq!(stats.model(), Some("gemini-b"), "the last one tried");
    }

    #[test]
    fn failures_every_model_would_share_do_not_hand_over() {
        for (final_error, check) in [
            (
                status_reply(400, "INVALID_ARGUMENT"),
                (|e: &UpstreamError| matches!(e, UpstreamError::Status { status: 400, .. }))
                    as fn(&UpstreamError) -> bool,
            ),
            (status_reply(401, "UNAUTHENTICATED"), |e| {
                matches!(e, UpstreamError::Status { status: 401, .. })
            }),
            (status_reply(403, "PERMISSION_DENIED"), |e| {
                matches!(e, UpstreamError::Status { status: 403, .. })
            }),
            (
                Scripted::json(200, json!({"promptFeedback": {"blockReason": "SAFETY"}})),
                |e| matches!(e, UpstreamError::Blocked { .. }),
            ),
            (Scripted::json(200, json!({"unexpected": true})), |e| {
                matches!(
                    e,
                    UpstreamError::InvalidResponse { .. } | UpstreamError::EmptyAnswer { .. }
                )
            }),
            (Scripted::Fail(TransportError::Denied), |e| {
                matches!(e, UpstreamError::Denied { .. })
            }),
            (Scripted::Fail(TransportError::RuntimeCredentials), |e| {
                matches!(e, UpstreamError::CredentialsUnavailable)
            }),
        ] {
            let vertex = FakeVertex::new([final_error, ok_reply()]);
            let s = with_fallbacks_of("gemini-a", "gemini-b");
            let (answer, stats) =
                block_on(generate(&vertex, &FakeClock::default(), &s, &request()));
            let error = answer.unwrap_err();
            assert!(check(&error), "{error:?}");
            assert_eq!(models_called(&vertex), ["gemini-a"], "{error:?}");
            assert_eq!((stats.attempts, stats.model()), (1, Some("gemini-a")));
        }
    }

    #[test]
    fn the_deadline_is_shared_by_every_model() {
        // The primary hangs to the deadline: no model starts after it.
        let vertex = FakeVertex::new([Scripted::Hang, ok_reply()]);
        let clock = FakeClock::default();
        let s = with_fallbacks_of("gemini-a", "gemini-b");
        let (answer, stats) = block_on(generate(&vertex, &clock, &s, &request()));
        assert!(matches!(answer, Err(UpstreamError::Timeout { .. })));
        assert_eq!(models_called(&vertex), ["gemini-a"]);
        assert_eq!(stats.models_tried, ["gemini-a"]);
        assert_eq!(clock.now(), s.timeout);

        // The primary spends 1.5 s on retries; the next model has what is left, not a deadline
        // of its own.
        let vertex = FakeVertex::new([
            unavailable(),
            unavailable(),
            unavailable(),
            Scripted::Hang,
            ok_reply(),
        ]);
        let clock = FakeClock::default();
        let s = with_fallbacks_of("gemini-a", "gemini-b, gemini-c");
        let (answer, stats) = block_on(generate(&vertex, &clock, &s, &request()));
        assert!(matches!(answer, Err(UpstreamError::Timeout { .. })));
        assert_eq!(clock.now(), s.timeout, "ends at the one deadline");
        assert_eq!(stats.models_tried, ["gemini-a", "gemini-b"]);
        assert_eq!(stats.attempts, 4);
        assert_eq!(stats.upstream_latency, s.timeout);
    }

    #[test]
    fn a_runtime_timeout_or_a_failed_connection_hands_over_while_time_remains() {
        let vertex = FakeVertex::new([
            Scripted::Fail(TransportError::Timeout),
            Scripted::Fail(TransportError::Failed {
                what: "the connection was refused",
                detail: "ConnectionRefused".into(),
            }),
            ok_reply(),
        ]);
        let s = Settings {
            max_attempts: 1,
            ..with_fallbacks_of("gemini-a", "gemini-b,gemini-c")
        };
        let (answer, stats) = block_on(generate(&vertex, &FakeClock::default(), &s, &request()));
        assert_eq!(answer.unwrap().text, "hello");
        assert_eq!(stats.models_tried, ["gemini-a", "gemini-b", "gemini-c"]);
        assert_eq!(stats.attempts, 3);
    }

    #[test]
    fn a_stream_hands_over_to_the_next_model_before_its_first_chunk() {
        let vertex = FakeVertex::new([
            status_reply(404, "NOT_FOUND"),
            status_reply(429, "RESOURCE_EXHAUSTED"),
            Scripted::sse(&[
                json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
                json!({"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}),
            ]),
        ]);
        let clock = FakeClock::default();
        let s = Settings {
            max_attempts: 2,
            ..with_fallbacks_of("gemini-a", "gemini-b")
        };
        block_on(async {
            let (opened, stats) = open_stream(&vertex, &clock, &s, &request()).await;
            assert_eq!(stats.models_tried, ["gemini-a", "gemini-b"]);
            assert_eq!((stats.attempts, stats.model()), (3, Some("gemini-b")));
            let (first, mut rest) = opened.unwrap();
            assert_eq!(first.text, "Hel");
            // After the first chunk the stream is this model's: a failure ends it.
            assert!(matches!(
                rest.next(&clock, &s).await,
                Some(Err(UpstreamError::Status { status: 503, .. }))
            ));
        });
        assert_eq!(models_called(&vertex), ["gemini-a", "gemini-b", "gemini-b"]);
        assert!(
            vertex.calls.borrow()[2]
                .url
                .ends_with("/models/gemini-b:streamGenerateContent?alt=sse")
        );
    }

    #[test]
    fn a_stream_that_fails_for_every_model_reports_the_last() {
        let vertex = FakeVertex::new([
            status_reply(404, "NOT_FOUND"),
            status_reply(400, "INVALID_ARGUMENT"),
        ]);
        let s = with_fallbacks_of("gemini-a", "gemini-b, gemini-c");
        let (opened, stats) = block_on(open_stream(&vertex, &FakeClock::default(), &s, &request()));
        assert!(matches!(
            opened.err(),
            Some(UpstreamError::Status { status: 400, .. })
        ));
        assert_eq!(stats.models_tried, ["gemini-a", "gemini-b"], "400 is final");
    }

    #[test]
    fn a_stream_yields_its_chunks_then_ends() {
        let vertex = FakeVertex::new([
            unavailable(),
            Scripted::sse(&[
                json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
                json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
                       "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 4}}),
            ]),
        ]);
        let clock = FakeClock::default();
        let s = settings();
        block_on(async {
            let (opened, stats) = open_stream(&vertex, &clock, &s, &request()).await;
            assert_eq!(stats.attempts, 2);
            let (first, mut rest) = opened.unwrap();
            assert_eq!(first.text, "Hel");
            let last = rest.next(&clock, &s).await.unwrap().unwrap();
            assert_eq!(last.text, "lo");
            assert_eq!(last.finish_reason.as_deref(), Some("STOP"));
            assert_eq!(last.usage.unwrap().total_tokens, 9);
            assert!(rest.next(&clock, &s).await.is_none());
        });
        assert!(vertex.calls.borrow()[1].url.ends_with("?alt=sse"));
        assert_eq!(vertex.calls.borrow()[1].accept, "text/event-stream");
    }

    #[test]
    fn an_error_event_mid_stream_is_an_upstream_error() {
        let vertex = FakeVertex::new([Scripted::sse(&[
            json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
            json!({"error": {"code": 500, "message": "oops", "status": "INTERNAL"}}),
        ])]);
        let clock = FakeClock::default();
        let s = settings();
        block_on(async {
            let (opened, _) = open_stream(&vertex, &clock, &s, &request()).await;
            let (_, mut rest) = opened.unwrap();
            assert!(matches!(
                rest.next(&clock, &s).await,
                Some(Err(UpstreamError::Status { status: 500, .. }))
            ));
        });
    }
}
