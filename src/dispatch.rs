//! Serving one request, whatever the runtime: the route's handler, the access checks and log
//! line of the chat routes, CORS, and a streamed answer from its head to its last event. The
//! runtime adapter supplies an [`Incoming`] request, a [`Respond`] for the answer and the
//! [`Runtime`]'s services; everything here is plain Rust.

use std::time::Duration;

use futures::Stream;

use crate::access::admin::AdminCall;
use crate::access::{self, AccessSettings, Credentials, Grant};
use crate::chat::EventSink;
use crate::chat_log::ChatRecord;
use crate::chat_route::{self, ChatInput};
use crate::chat_state::State;
use crate::config::Variables;
use crate::conversation_route;
use crate::cors::CorsPolicy;
use crate::error::ApiError;
use crate::info;
use crate::openai;
use crate::reply::{self, Reply};
use crate::request;
use crate::response::ApiResponse;
use crate::routes::{self, Route};
use crate::sse;
use crate::ui;
use crate::vertex::{Clock, Transport};

/// The client's address, as the runtime reports it (Spin sets it; ion-host does too).
const CLIENT_ADDR: &str = "spin-client-addr";

/// A request as the runtime received it; its body is read only by the routes that take one.
pub trait Incoming {
    /// The body's chunks; an error carries the runtime's words (for the log only).
    type Body: Stream<Item = Result<Vec<u8>, String>> + Unpin;

    fn method(&self) -> &str;
    fn path_and_query(&self) -> &str;
    /// A header's first value as raw bytes (present but not UTF-8 is not the same as absent).
    fn header_bytes(&self, name: &str) -> Option<Vec<u8>>;
    fn into_body(self) -> Self::Body;

    /// A header's first value, if it is UTF-8.
    fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name)
            .and_then(|v| String::from_utf8(v).ok())
    }
}

/// Where the answer goes: a whole response, or a stream's head and then its events.
pub trait Respond {
    type Sink: EventSink;

    fn whole(self, response: ApiResponse) -> impl Future<Output = ()>;
    /// Sends the head of a streamed response; the events follow through the sink.
    fn stream(self, head: &ApiResponse) -> Self::Sink;
}

/// What the runtime provides: configuration, Vertex AI, clocks, the store, and the log.
pub struct Runtime<'a, V, T, C> {
    pub vars: &'a V,
    pub transport: &'a T,
    pub clock: &'a C,
    pub state: State<'a>,
    /// Writes one per-chat log line (ion-host reads the component's stdout).
    pub write_line: &'a dyn Fn(&str),
}

/// Answers one request.
pub async fn serve<V, T, C>(
    rt: &Runtime<'_, V, T, C>,
    request: impl Incoming,
    respond: impl Respond,
) where
    V: Variables,
    T: Transport,
    C: Clock,
{
    let started = rt.clock.now();
    let method = request.method().to_owned();
    let path = request.path_and_query().to_owned();
    let origin = request.header("origin");
    let cors = CorsPolicy::load(rt.vars);

    let response = match routes::route(&method, &path) {
        Ok(Route::Index) => ui::index(request.header("accept").as_deref(), info::index),
        Ok(Route::Ui(asset)) => ui::asset(asset),
        Ok(Route::Health) => info::health(),
        Ok(Route::Docs) => info::docs(),
        Ok(Route::OpenApi) => info::openapi(),
        Ok(Route::Models) => openai::models(rt.vars),
        Ok(Route::Model) => openai::model(rt.vars, &path),
        Ok(Route::Options { allow }) => cors.preflight(
            origin.as_deref(),
            request.header("access-control-request-method").as_deref(),
            request.header("access-control-request-headers").as_deref(),
            allow,
        ),
        Ok(Route::Conversation) => {
            conversation_route::conversation(&method, &path, rt.vars, &rt.state, rt.clock)
        }
        Ok(Route::Usage) => usage(rt, &request).unwrap_or_else(|e| e.to_response()),
        Ok(Route::AdminKeys) => admin_keys(rt, request, &method, &path)
            .await
            .unwrap_or_else(|e| e.to_response()),
        Ok(route @ (Route::Chat | Route::ChatCompletions)) => {
            let answer = ChatAnswer {
                route,
                started,
                cors: &cors,
                origin: origin.as_deref(),
            };
            return chat(rt, request, answer, respond).await;
        }
        // Under `/v1` an unknown path or method is answered as OpenAI does.
        Err(e @ (ApiError::NotFound { .. } | ApiError::MethodNotAllowed { .. }))
            if openai::owns(&path) =>
        {
            openai::route_error(&e, &method, &path)
        }
        Err(e) => e.to_response(),
    };
    respond.whole(cors.apply(origin.as_deref(), response)).await;
}

/// How a chat route's answer is sent: its route, when it started, and the CORS headers.
struct ChatAnswer<'a> {
    route: Route,
    started: Duration,
    cors: &'a CorsPolicy,
    origin: Option<&'a str>,
}

impl ChatAnswer<'_> {
    fn name(&self) -> &'static str {
        match self.route {
            Route::ChatCompletions => "/v1/chat/completions",
            _ => "/chat",
        }
    }

    /// A failure in the route's own shape, noted in the log record.
    fn refused(&self, error: ApiError, record: &mut ChatRecord) -> ApiResponse {
        record.set_failure(&error);
        match self.route {
            Route::ChatCompletions => openai::error_response(&error),
            _ => error.to_response(),
        }
    }
}

/// `/chat` and `/v1/chat/completions`: admitted (or refused) by the access layer, answered
/// whole or streamed, charged to the caller, and logged in one line once the answer is out
/// (a whole answer: just before it is sent).
async fn chat<V, T, C>(
    rt: &Runtime<'_, V, T, C>,
    request: impl Incoming,
    answer: ChatAnswer<'_>,
    respond: impl Respond,
) where
    V: Variables,
    T: Transport,
    C: Clock,
{
    let mut record = ChatRecord::new(answer.name());
    let grant = match admit(rt, &request, &mut record) {
        Ok(grant) => grant,
        Err(e) => {
            let response = answer.refused(e, &mut record);
            write_record(rt, &mut record, answer.started);
            respond
                .whole(answer.cors.apply(answer.origin, response))
                .await;
            return;
        }
    };
    let reply = chat_reply(rt, request, &answer, &mut record).await;
    record.note_grant(&grant);
    let limit_headers = access::grant_headers(&grant);
    match reply {
        Reply::Whole(mut response) => {
            charge(rt, &grant, &mut record);
            write_record(rt, &mut record, answer.started);
            response.headers.extend(limit_headers);
            respond
                .whole(answer.cors.apply(answer.origin, response))
                .await;
        }
        Reply::Stream(stream) => {
            let mut head = sse::head();
            head.headers.extend(limit_headers);
            let mut sink = respond.stream(&answer.cors.apply(answer.origin, head));
            reply::send_stream(*stream, rt.clock, &rt.state, &mut sink, &mut record).await;
            charge(rt, &grant, &mut record);
            write_record(rt, &mut record, answer.started);
        }
    }
}

/// Reads a chat route's body and answers it.
async fn chat_reply<V, T, C>(
    rt: &Runtime<'_, V, T, C>,
    request: impl Incoming,
    answer: &ChatAnswer<'_>,
    record: &mut ChatRecord,
) -> Reply<T::Body>
where
    V: Variables,
    T: Transport,
    C: Clock,
{
    let wants_events = request::accepts_event_stream(request.header("accept").as_deref());
    let no_cache = request::asks_no_cache(request.header("cache-control").as_deref());
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(e) => return Reply::Whole(answer.refused(e, record)),
    };
    match answer.route {
        Route::ChatCompletions => {
            openai::completions(&body, rt.vars, rt.transport, rt.clock, record).await
        }
        _ => {
            let input = ChatInput {
                body: &body,
                wants_events,
                no_cache,
            };
            chat_route::chat(input, rt.vars, rt.transport, rt.clock, &rt.state, record).await
        }
    }
}

/// Identifies the caller of a chat route and counts the request against its limits.
fn admit<V: Variables, T, C: Clock>(
    rt: &Runtime<'_, V, T, C>,
    request: &impl Incoming,
    record: &mut ChatRecord,
) -> Result<Grant, ApiError> {
    let settings = AccessSettings::load(rt.vars)?;
    let caller = with_credentials(request, |credentials| {
        access::identify(rt.state.kv, settings.mode, credentials)
    })?;
    record.note_caller(&caller);
    access::admit(rt.state.kv, &settings, caller, rt.clock.unix_seconds())
}

/// Adds a finished chat's tokens to its caller's day; a store failure is noted in the log line.
fn charge<V, T, C: Clock>(rt: &Runtime<'_, V, T, C>, grant: &Grant, record: &mut ChatRecord) {
    let tokens = record.billed_tokens();
    if access::charge(rt.state.kv, grant, tokens, rt.clock.unix_seconds()).is_err() {
        record.note_charge_failed();
    }
}

/// Completes the record with the chat's total time and writes its log line.
fn write_record<V, T, C: Clock>(
    rt: &Runtime<'_, V, T, C>,
    record: &mut ChatRecord,
    started: Duration,
) {
    record.note_total_latency(rt.clock.now().saturating_sub(started));
    (rt.write_line)(&record.to_line());
}

/// `GET /usage`: the caller's own limits and use today.
fn usage<V: Variables, T, C: Clock>(
    rt: &Runtime<'_, V, T, C>,
    request: &impl Incoming,
) -> Result<ApiResponse, ApiError> {
    let settings = AccessSettings::load(rt.vars)?;
    with_credentials(request, |credentials| {
        access::admin::usage(credentials, &settings, rt.state.kv, rt.clock.unix_seconds())
    })
}

/// Hands `f` what identifies the caller: the `Authorization` header and the client address the
/// host vouches for.
fn with_credentials<R>(request: &impl Incoming, f: impl FnOnce(&Credentials<'_>) -> R) -> R {
    let authorization = request.header_bytes("authorization");
    let client_addr = request.header(CLIENT_ADDR);
    f(&Credentials {
        authorization: authorization.as_deref(),
        client_addr: client_addr.as_deref(),
    })
}

/// `/admin/keys` and `/admin/keys/{id}`. The admin token is checked before a body is read.
async fn admin_keys<V: Variables, T, C: Clock>(
    rt: &Runtime<'_, V, T, C>,
    request: impl Incoming,
    method: &str,
    path: &str,
) -> Result<ApiResponse, ApiError> {
    let settings = AccessSettings::load(rt.vars)?;
    let authorization = request.header_bytes("authorization");
    let path = path.split('?').next().unwrap_or_default();
    access::admin::authorize(&settings, authorization.as_deref(), path)?;
    let body = if method == "POST" {
        read_body(request).await?
    } else {
        Vec::new()
    };
    let call = AdminCall {
        method,
        path,
        authorization: authorization.as_deref(),
        body: &body,
    };
    access::admin::keys_api(
        &call,
        &settings,
        rt.state.kv,
        rt.state.random_id,
        rt.clock.unix_seconds(),
    )
}

async fn read_body(request: impl Incoming) -> Result<Vec<u8>, ApiError> {
    let content_type = request.header("content-type");
    let content_length = request.header("content-length");
    request::read_body(
        content_type.as_deref(),
        content_length.as_deref(),
        request.into_body(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use futures::executor::block_on;
    use serde_json::{Value, json};

    use super::*;
    use crate::chat::ClientGone;
    use crate::config::tests::{Fixed, vars};
    use crate::store::tests::MemoryStore;
    use crate::vertex::tests::{FakeClock, FakeVertex, Scripted};

    struct FakeRequest {
        method: &'static str,
        path: &'static str,
        headers: Vec<(&'static str, &'static str)>,
        body: &'static str,
    }

    fn request(method: &'static str, path: &'static str) -> FakeRequest {
        FakeRequest {
            method,
            path,
            headers: Vec::new(),
            body: "",
        }
    }

    impl FakeRequest {
        fn header(mut self, name: &'static str, value: &'static str) -> Self {
            self.headers.push((name, value));
            self
        }

        fn body(mut self, body: &'static str) -> Self {
            self.body = body;
            self
        }
    }

    impl Incoming for FakeRequest {
        type Body = futures::stream::Iter<std::vec::IntoIter<Result<Vec<u8>, String>>>;

        fn method(&self) -> &str {
            self.method
        }

        fn path_and_query(&self) -> &str {
            self.path
        }

        fn header_bytes(&self, name: &str) -> Option<Vec<u8>> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes().to_vec())
        }

        fn into_body(self) -> Self::Body {
            futures::stream::iter(vec![Ok(self.body.as_bytes().to_vec())])
        }
    }

    /// What was sent: a whole response, or a stream's head and its events.
    #[derive(Default)]
    struct Sent {
        response: Option<ApiResponse>,
        streamed: bool,
        events: Vec<String>,
        /// Events the client takes before it goes away.
        client_takes: Option<usize>,
    }

    struct Responder<'a>(&'a RefCell<Sent>);

    struct Sink<'a>(&'a RefCell<Sent>);

    impl<'a> Respond for Responder<'a> {
        type Sink = Sink<'a>;

        async fn whole(self, response: ApiResponse) {
            self.0.borrow_mut().response = Some(response);
        }

        fn stream(self, head: &ApiResponse) -> Sink<'a> {
            let mut sent = self.0.borrow_mut();
            sent.response = Some(head.clone());
            sent.streamed = true;
            Sink(self.0)
        }
    }

    impl EventSink for Sink<'_> {
        async fn send(&mut self, bytes: Vec<u8>) -> Result<(), ClientGone> {
            let mut sent = self.0.borrow_mut();
            if sent.client_takes == Some(sent.events.len()) {
                return Err(ClientGone);
            }
            sent.events.push(String::from_utf8(bytes).unwrap());
            Ok(())
        }
    }

    /// One request served; what was sent and the log lines written.
    struct Served {
        response: ApiResponse,
        streamed: bool,
        events: Vec<String>,
        lines: Vec<Value>,
    }

    impl Served {
        fn body(&self) -> Value {
            serde_json::from_slice(&self.response.body).unwrap()
        }

        /// The one per-chat log line's `chat` fields.
        fn record(&self) -> &Value {
            assert_eq!(self.lines.len(), 1, "{:?}", self.lines);
            &self.lines[0]["chat"]
        }
    }

    fn configured() -> Fixed {
        vars(&[("project_id", "proj"), ("access_token", "tok")])
    }

    fn serve_with(
        request: FakeRequest,
        vars: &Fixed,
        vertex: &FakeVertex,
        client_takes: Option<usize>,
    ) -> Served {
        let store = MemoryStore::default();
        let lines = RefCell::new(Vec::new());
        let write_line = |line: &str| lines.borrow_mut().push(line.to_owned());
        let rt = Runtime {
            vars,
            transport: vertex,
            clock: &FakeClock::default(),
            state: State {
                kv: &store,
                random_id: &|| [7; 16],
            },
            write_line: &write_line,
        };
        let sent = RefCell::new(Sent {
            client_takes,
            ..Sent::default()
        });
        block_on(serve(&rt, request, Responder(&sent)));
        let sent = sent.into_inner();
        Served {
            response: sent.response.expect("a response"),
            streamed: sent.streamed,
            events: sent.events,
            lines: lines
                .into_inner()
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        }
    }

    fn served(request: FakeRequest) -> Served {
        serve_with(request, &configured(), &FakeVertex::new([]), None)
    }

    fn answer(model_version: &str) -> Scripted {
        Scripted::json(
            200,
            json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": "answer"}]},
                                "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 10,
                                  "thoughtsTokenCount": 5, "totalTokenCount": 65},
                "modelVersion": model_version,
            }),
        )
    }

    fn chat_request() -> FakeRequest {
        request("POST", "/chat").body(r#"{"message": "hi"}"#)
    }

    fn completion_request() -> FakeRequest {
        request("POST", "/v1/chat/completions")
            .body(r#"{"model": "ion-auto", "messages": [{"role": "user", "content": "hi"}]}"#)
    }

    #[test]
    fn unknown_paths_are_404_and_nothing_is_logged() {
        for path in ["/nope", "/chat//", "/conversations/"] {
            let r = served(request("GET", path));
            assert_eq!(r.response.status, 404, "{path}");
            assert_eq!(r.body()["code"], "not_found");
            assert_eq!(r.response.header("content-type"), Some("application/json"));
            assert!(r.lines.is_empty());
        }
        // Under /v1, as OpenAI answers.
        for path in ["/v1", "/v1/nope?x=1", "/v1/chat/completions/x"] {
            let r = served(request("GET", path));
            assert_eq!(r.response.status, 404, "{path}");
            let error = &r.body()["error"];
            assert_eq!(error["code"], "not_found", "{path}");
            assert_eq!(error["type"], "not_found_error");
            let bare = path.split('?').next().unwrap();
            assert_eq!(error["message"], format!("Invalid URL (GET {bare})"));
            assert!(r.lines.is_empty());
        }
    }

    #[test]
    fn a_model_is_listed_alone_or_is_openais_404() {
        let r = served(request("GET", "/v1/models/ion-lua"));
        assert_eq!(r.response.status, 200);
        assert_eq!(
            r.body(),
            serde_json::json!({"id": "ion-lua", "object": "model", "created": 0, "owned_by": "ion-mentoring"})
        );
        let r = served(request("GET", "/v1/models/gemini-3.5-flash"));
        assert_eq!(r.body()["owned_by"], "google");
        let r = served(request("GET", "/v1/models/gpt%2D9"));
        assert_eq!(r.response.status, 404);
        assert_eq!(r.body()["error"]["code"], "model_not_found");
        assert_eq!(r.body()["error"]["param"], "model");
        assert!(
            r.body()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("gpt-9")
        );
    }

    #[test]
    fn wrong_methods_are_405_with_allow() {
        for (method, path, allow) in [
            ("GET", "/chat", "POST"),
            ("PUT", "/v1/chat/completions", "POST"),
            ("POST", "/health", "GET, HEAD"),
            ("DELETE", "/", "GET, HEAD"),
            ("POST", "/ui/app.js", "GET, HEAD"),
            ("PUT", "/conversations/abc", "GET, HEAD, DELETE"),
            ("POST", "/admin/keys/abc", "GET, DELETE"),
        ] {
            let r = served(request(method, path));
            assert_eq!(r.response.status, 405, "{method} {path}");
            assert_eq!(r.response.header("allow"), Some(allow), "{method} {path}");
            let code = match path.starts_with("/v1/") {
                true => &r.body()["error"]["code"],
                false => &r.body()["code"],
            };
            assert_eq!(code, "method_not_allowed");
            assert!(r.lines.is_empty());
        }
    }

    #[test]
    fn a_trailing_slash_redirects_and_options_answers_a_preflight() {
        let r = served(request("GET", "/health/?probe=1"));
        assert_eq!(r.response.status, 307);
        assert_eq!(r.response.header("location"), Some("/health?probe=1"));

        let cors = vars(&[("allowed_origins", "https://app.example")]);
        let preflight = request("OPTIONS", "/chat")
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST");
        let r = serve_with(preflight, &cors, &FakeVertex::new([]), None);
        assert_eq!(r.response.status, 204);
        assert_eq!(
            r.response.header("access-control-allow-origin"),
            Some("https://app.example")
        );
    }

    #[test]
    fn the_service_endpoints_answer_without_configuration() {
        let none = vars(&[]);
        let vertex = FakeVertex::new([]);
        for (path, status) in [
            ("/", 200),
            ("/health", 200),
            ("/docs", 200),
            ("/v1/models", 200),
        ] {
            let r = serve_with(request("GET", path), &none, &vertex, None);
            assert_eq!(r.response.status, status, "{path}");
        }
        let r = serve_with(
            request("GET", "/").header("accept", "text/html"),
            &none,
            &vertex,
            None,
        );
        assert!(
            r.response
                .header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
    }

    #[test]
    fn the_admin_api_answers_like_an_unknown_path_until_its_token_is_set() {
        let r = served(request("GET", "/admin/keys"));
        assert_eq!(r.response.status, 404);
        assert_eq!(r.body()["code"], "not_found");

        let admin = vars(&[("admin_token", "0123456789abcdef0123456789abcdef")]);
        let vertex = FakeVertex::new([]);
        let create = request("POST", "/admin/keys")
            .header("authorization", "Bearer 0123456789abcdef0123456789abcdef")
            .body(r#"{"name": "ci"}"#);
        let r = serve_with(create, &admin, &vertex, None);
        assert_eq!(r.response.status, 201);
        assert!(r.body()["key"].as_str().unwrap().starts_with("ion_sk_"));
        // The token is checked before the body is read.
        let wrong = request("POST", "/admin/keys")
            .header("authorization", "Bearer nope")
            .header("content-type", "text/plain");
        let r = serve_with(wrong, &admin, &vertex, None);
        assert_eq!(r.response.status, 401);
        assert_eq!(r.body()["code"], "invalid_admin_token");
        assert!(r.lines.is_empty());
    }

    #[test]
    fn a_whole_chat_is_answered_and_logged_once() {
        let vertex = FakeVertex::new([answer("gemini-3.5-flash-002")]);
        let r = serve_with(chat_request(), &configured(), &vertex, None);
        assert_eq!(r.response.status, 200);
        assert!(!r.streamed);
        assert_eq!(r.body()["content"], "answer");
        assert_eq!(r.lines[0]["severity"], "INFO");
        let record = r.record();
        assert_eq!(record["route"], "/chat");
        assert_eq!(record["outcome"], "ok");
        assert_eq!(record["model"], "gemini-3.5-flash-002");
        assert_eq!(record["caller"], "anonymous");
        assert_eq!(record["total_tokens"], 65);
        assert_eq!(record["attempts"], 1);
    }

    #[test]
    fn both_chat_routes_log_the_same_fields_for_the_same_answer() {
        let chat = serve_with(
            chat_request(),
            &configured(),
            &FakeVertex::new([answer("gemini-3.5-flash-002")]),
            None,
        );
        let v1 = serve_with(
            completion_request(),
            &configured(),
            &FakeVertex::new([answer("gemini-3.5-flash-002")]),
            None,
        );
        assert_eq!(v1.response.status, 200);
        let (chat, v1) = (chat.record(), v1.record());
        assert_eq!(v1["route"], "/v1/chat/completions");
        assert_eq!(v1["model"], "gemini-3.5-flash-002");
        for field in [
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
            "caller",
        ] {
            assert_eq!(chat[field], v1[field], "{field}");
        }
    }

    #[test]
    fn a_refused_body_is_answered_in_each_routes_shape_and_logged() {
        let chat = served(chat_request().header("content-type", "text/plain"));
        assert_eq!(chat.response.status, 415);
        assert_eq!(chat.body()["code"], "unsupported_media_type");
        assert_eq!(chat.record()["outcome"], "unsupported_media_type");
        assert_eq!(chat.record()["status"], 415);

        let v1 = served(completion_request().header("content-type", "text/plain"));
        assert_eq!(v1.response.status, 415);
        assert_eq!(v1.body()["error"]["code"], "unsupported_media_type");
        assert_eq!(v1.record()["route"], "/v1/chat/completions");
        assert_eq!(v1.record()["outcome"], "unsupported_media_type");
    }

    #[test]
    fn a_caller_without_a_key_is_refused_before_the_body_is_read() {
        let keys = vars(&[
            ("project_id", "proj"),
            ("access_token", "tok"),
            ("auth_mode", "keys"),
        ]);
        let vertex = FakeVertex::new([]);
        let r = serve_with(completion_request(), &keys, &vertex, None);
        assert_eq!(r.response.status, 401);
        assert_eq!(r.response.header("www-authenticate"), Some("Bearer"));
        assert_eq!(r.body()["error"]["code"], "invalid_api_key");
        assert_eq!(r.record()["outcome"], "invalid_api_key");
        assert!(vertex.calls.borrow().is_empty());
    }

    fn streamed_chunks(finished: bool) -> Scripted {
        let mut last = json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}}],
                              "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2},
                              "modelVersion": "gemini-3.5-flash-002"});
        if finished {
            last["candidates"][0]["finishReason"] = json!("STOP");
        }
        Scripted::sse(&[
            json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
            last,
        ])
    }

    fn stream_request(path: &'static str) -> FakeRequest {
        let body = if path == "/chat" {
            r#"{"message": "hi", "stream": true}"#
        } else {
            r#"{"model": "ion-auto", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#
        };
        request("POST", path).body(body)
    }

    #[test]
    fn a_stream_ends_with_done_then_its_log_line() {
        let vertex = FakeVertex::new([streamed_chunks(true)]);
        let r = serve_with(stream_request("/chat"), &configured(), &vertex, None);
        assert!(r.streamed);
        assert_eq!(r.response.status, 200);
        assert_eq!(
            r.response.header("content-type"),
            Some("text/event-stream; charset=utf-8")
        );
        assert_eq!(r.response.header("cache-control"), Some("no-cache"));
        assert_eq!(r.response.header("x-accel-buffering"), Some("no"));
        let names: Vec<&str> = r.events.iter().map(|e| e.lines().next().unwrap()).collect();
        assert_eq!(
            names,
            ["event: meta", "event: delta", "event: delta", "event: done"]
        );
        let record = r.record();
        assert_eq!(record["stream"], true);
        assert_eq!(record["outcome"], "ok");
        assert_eq!(record["finish_reason"], "STOP");
        assert_eq!(record["model"], "gemini-3.5-flash-002");
        assert_eq!(record["prompt_tokens"], 3);
        assert!(record["conversation"].is_string());
    }

    #[test]
    fn a_stream_that_fails_after_its_200_ends_with_an_error_event() {
        for path in ["/chat", "/v1/chat/completions"] {
            let vertex = FakeVertex::new([streamed_chunks(false)]);
            let r = serve_with(stream_request(path), &configured(), &vertex, None);
            assert_eq!(r.response.status, 200, "{path}");
            let last = r.events.last().unwrap();
            let data: Value =
                serde_json::from_str(last.lines().find_map(|l| l.strip_prefix("data: ")).unwrap())
                    .unwrap();
            if path == "/chat" {
                assert!(last.starts_with("event: error\n"), "{last}");
                assert_eq!(data["code"], "upstream_invalid_response");
            } else {
                assert_eq!(data["error"]["code"], "upstream_invalid_response");
            }
            assert_eq!(r.lines[0]["severity"], "ERROR", "{path}");
            let record = r.record();
            assert_eq!(record["outcome"], "upstream_invalid_response", "{path}");
            assert_eq!(record["status"], 200);
            assert_eq!(record["route"], path);
        }
    }

    /// A primary Vertex AI does not serve, and a fallback that answers.
    fn with_fallback() -> Fixed {
        vars(&[
            ("project_id", "proj"),
            ("access_token", "tok"),
            ("model", "gemini-2.5-flash"),
            ("fallback_models", "gemini-3.5-flash"),
        ])
    }

    fn not_found() -> Scripted {
        Scripted::json(
            404,
            json!({"error": {"code": 404, "status": "NOT_FOUND",
                   "message": "Publisher Model `gemini-2.5-flash` was not found"}}),
        )
    }

    /// An answer without `modelVersion`: only the service knows which model gave it.
    fn unnamed_answer() -> Scripted {
        Scripted::json(
            200,
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "answer"}]},
                                   "finishReason": "STOP"}]}),
        )
    }

    fn unnamed_stream() -> Scripted {
        Scripted::sse(&[
            json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}),
        ])
    }

    /// The `data` of an event.
    fn event_data(event: &str) -> Value {
        serde_json::from_str(
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn both_chat_routes_name_the_fallback_model_that_answered() {
        let answered = |r: &Served, path: &str| {
            let record = r.record();
            assert_eq!(record["model"], "gemini-3.5-flash", "{path}");
            assert_eq!(
                record["models_tried"],
                json!(["gemini-2.5-flash", "gemini-3.5-flash"]),
                "{path}"
            );
            assert_eq!(record["attempts"], 2, "{path}");
            assert_eq!(record["outcome"], "ok", "{path}");
        };

        let vertex = FakeVertex::new([not_found(), unnamed_answer()]);
        let r = serve_with(chat_request(), &with_fallback(), &vertex, None);
        assert_eq!(r.response.status, 200);
        assert_eq!(r.body()["metadata"]["model"], "gemini-3.5-flash");
        assert_eq!(r.body()["metadata"]["attempts"], 2);
        answered(&r, "/chat");

        let vertex = FakeVertex::new([not_found(), unnamed_answer()]);
        let r = serve_with(completion_request(), &with_fallback(), &vertex, None);
        assert_eq!(r.response.status, 200);
        assert_eq!(r.body()["model"], "ion-auto", "the model the request named");
        assert_eq!(r.body()["ion"]["gemini_model"], "gemini-3.5-flash");
        answered(&r, "/v1/chat/completions");

        let vertex = FakeVertex::new([not_found(), unnamed_stream()]);
        let r = serve_with(stream_request("/chat"), &with_fallback(), &vertex, None);
        assert!(r.streamed);
        let meta = event_data(&r.events[0]);
        assert_eq!(meta["metadata"]["model"], "gemini-3.5-flash");
        let done = event_data(r.events.last().unwrap());
        assert_eq!(done["metadata"]["model"], "gemini-3.5-flash");
        assert_eq!(done["metadata"]["attempts"], 2);
        answered(&r, "/chat stream");

        let vertex = FakeVertex::new([not_found(), unnamed_stream()]);
        let body = r#"{"model": "ion-auto", "stream": true, "stream_options": {"include_usage": true},
                       "messages": [{"role": "user", "content": "hi"}]}"#;
        let v1 = request("POST", "/v1/chat/completions").body(body);
        let r = serve_with(v1, &with_fallback(), &vertex, None);
        assert!(r.streamed);
        let usage = r
            .events
            .last()
            .unwrap()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|d| d.get("usage").is_some())
            .expect("a usage chunk");
        assert_eq!(usage["ion"]["gemini_model"], "gemini-3.5-flash");
        answered(&r, "/v1 stream");
    }

    #[test]
    fn v1_lists_the_fallback_models_and_takes_them_as_a_model() {
        let r = serve_with(
            request("GET", "/v1/models"),
            &with_fallback(),
            &FakeVertex::new([]),
            None,
        );
        let body = r.body();
        let google: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["owned_by"] == "google")
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(google, ["gemini-2.5-flash", "gemini-3.5-flash"]);

        // Named like the primary, a fallback routes like `ion-auto` (the list is still tried
        // in order).
        let vertex = FakeVertex::new([not_found(), unnamed_answer()]);
        let named = request("POST", "/v1/chat/completions").body(
            r#"{"model": "gemini-3.5-flash", "messages": [{"role": "user", "content": "hi"}]}"#,
        );
        let r = serve_with(named, &with_fallback(), &vertex, None);
        assert_eq!(r.response.status, 200, "{}", r.body());
        assert_eq!(r.body()["model"], "gemini-3.5-flash");
    }

    #[test]
    fn a_client_gone_mid_stream_is_logged_as_closed() {
        let vertex = FakeVertex::new([streamed_chunks(true)]);
        let r = serve_with(stream_request("/chat"), &configured(), &vertex, Some(2));
        assert_eq!(r.events.len(), 2);
        let record = r.record();
        assert_eq!(record["outcome"], "client_closed");
        assert_eq!(record["status"], 499);
        assert_eq!(record["stream"], true);
    }
}
