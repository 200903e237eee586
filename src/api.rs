//! Routes and handlers: plain functions from request parts to [`ApiResponse`]s, and the
//! `/chat` flow, generic over the runtime's [`Transport`] and [`Clock`].

use serde_json::{Value, json};

use crate::cache::CacheStatus;
use crate::chat::{self, Chat, EventSink, OpenStream, StreamEnd, StreamFormat};
use crate::chat_log::ChatRecord;
use crate::chat_state::{self, State};
use crate::config::Variables;
use crate::conversation::{self, ConversationId, Lookup};
use crate::error::ApiError;
use crate::gemini::{self, Answer, Usage};
use crate::persona;
use crate::response::ApiResponse;
use crate::sse::ChatEvents;
use crate::store::StateSettings;
use crate::ui;
use crate::validation;
use crate::vertex::{CallStats, Clock, Transport, TransportError};

pub const SERVICE_NAME: &str = "Ion Mentoring API";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Largest `/chat` body accepted, in bytes: a full history (24,000 characters, up to 4 bytes
/// each as UTF-8) and a 1000-character message fit; more only invites abuse.
pub const MAX_BODY_BYTES: usize = 128 * 1024;

const OPENAPI: &str = include_str!("openapi.json");
const DOCS_HTML: &str = include_str!("docs.html");
/// `/docs` may run only its own inline style and script (named by their sha256) and fetch only
/// from this origin. Editing either block of docs.html changes its hash: the contract test
/// (tests/python/contract_check.py) checks these and prints the right ones.
pub const DOCS_CSP: &str = "default-src 'none'; connect-src 'self'; style-src 'sha256-wWNdOBqCBjcAJo1qEvHqWzCVjWM1zGKf5oEfocuW/Cw='; script-src 'sha256-4adQiC7SW0TaBMcT+dxrQ+QLbSL/Op6lzE1fieeOIeI='; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Index,
    Health,
    Chat,
    Docs,
    OpenApi,
    ChatCompletions,
    Models,
    /// `OPTIONS` on an endpoint whose methods are these.
    Options {
        allow: &'static str,
    },
    /// A file of the chat page.
    Ui(ui::Asset),
    /// `/conversations/{id}` (the handler reads the id from the path).
    Conversation,
    /// `/admin/keys` and `/admin/keys/{id}`: the admin API.
    AdminKeys,
    /// `GET /usage`: the caller's own limits and use today.
    Usage,
}

/// Methods of `/conversations/{id}`.
const CONVERSATION_METHODS: &str = "GET, HEAD, DELETE";
const CONVERSATIONS_PREFIX: &str = "/conversations/";
/// Methods of `/admin/keys/{id}`.
const KEY_METHODS: &str = "GET, DELETE";

/// Every path and the methods it takes.
pub(crate) const ROUTES: &[(&str, Route, &str)] = &[
    ("/", Route::Index, "GET, HEAD"),
    ("/health", Route::Health, "GET, HEAD"),
    ("/docs", Route::Docs, "GET, HEAD"),
    ("/openapi.json", Route::OpenApi, "GET, HEAD"),
    ("/chat", Route::Chat, "POST"),
    ("/v1/chat/completions", Route::ChatCompletions, "POST"),
    ("/v1/models", Route::Models, "GET, HEAD"),
    ("/usage", Route::Usage, "GET, HEAD"),
    (
        crate::access::admin::KEYS_PATH,
        Route::AdminKeys,
        "GET, POST",
    ),
];

/// Resolves a method and path (query string allowed) to a route, or a 404/405, or (as
/// FastAPI does) a 307 from a trailing-slash path to the route without it.
pub fn route(method: &str, path_and_query: &str) -> Result<Route, ApiError> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    // The chat page's files are not part of the API (nor of openapi.json).
    if let Some(asset) = ui::Asset::from_path(path) {
        return match method {
            "GET" | "HEAD" => Ok(Route::Ui(asset)),
            _ => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        };
    }
    if let Some(id) = path.strip_prefix(CONVERSATIONS_PREFIX)
        && !id.is_empty()
        && !id.contains('/')
    {
        return match method {
            "OPTIONS" => Ok(Route::Options {
                allow: CONVERSATION_METHODS,
            }),
            "GET" | "HEAD" | "DELETE" => Ok(Route::Conversation),
            _ => Err(ApiError::MethodNotAllowed {
                allow: CONVERSATION_METHODS,
            }),
        };
    }
    if let Some(id) = path.strip_prefix(crate::access::admin::KEY_PATH_PREFIX)
        && !id.is_empty()
        && !id.contains('/')
    {
        return match method {
            "OPTIONS" => Ok(Route::Options { allow: KEY_METHODS }),
            "GET" | "DELETE" => Ok(Route::AdminKeys),
            _ => Err(ApiError::MethodNotAllowed { allow: KEY_METHODS }),
        };
    }
    let Some(&(_, route, allow)) = ROUTES.iter().find(|(p, _, _)| *p == path) else {
        let trimmed = path.trim_end_matches('/');
        if trimmed.len() + 1 == path.len() && ROUTES.iter().any(|(p, _, _)| *p == trimmed) {
            let location = match query {
                Some(q) => format!("{trimmed}?{q}"),
                None => trimmed.to_owned(),
            };
            return Err(ApiError::Redirect { location });
        }
        return Err(ApiError::NotFound {
            path: printable(path),
        });
    };
    if method == "OPTIONS" {
        return Ok(Route::Options { allow });
    }
    if allow.split(", ").any(|m| m == method) {
        Ok(route)
    } else {
        Err(ApiError::MethodNotAllowed { allow })
    }
}

/// `GET /`
pub fn index() -> ApiResponse {
    ApiResponse::json(
        200,
        &json!({
            "service": SERVICE_NAME,
            "version": VERSION,
            "status": "running",
            "docs": "/docs",
            "openapi": "/openapi.json",
            "health": "/health",
            "chat": "/chat",
            "openai": "/v1/chat/completions",
            "usage": "/usage",
            "personas": persona::Persona::ALL
                .map(|p| json!({ "name": p.name(), "character": p.character() })),
        }),
    )
}

/// `GET /health`: liveness only, no upstream call.
pub fn health() -> ApiResponse {
    ApiResponse::json(
        200,
        &json!({ "status": "healthy", "version": VERSION, "pipeline_ready": true }),
    )
}

/// `GET /openapi.json`
pub fn openapi() -> ApiResponse {
    ApiResponse::with_body(200, "application/json", OPENAPI)
}

/// `GET /docs`
pub fn docs() -> ApiResponse {
    ApiResponse::with_body(200, "text/html; charset=utf-8", DOCS_HTML)
        .with_header("content-security-policy", DOCS_CSP)
}

/// `/chat` takes JSON; a missing Content-Type is read as JSON, as the original service did.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let Some(value) = content_type else {
        return Ok(());
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            content_type: printable(value),
        })
    }
}

/// Whether an `Accept` header asks for Server-Sent Events (and not also for JSON).
pub fn accepts_event_stream(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let lists = |wanted: &str| {
        accept.split(',').any(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case(wanted)
        })
    };
    lists("text/event-stream") && !lists("application/json")
}

/// Whether a `Cache-Control` request header says `no-cache` (the response cache is skipped).
pub fn asks_no_cache(cache_control: Option<&str>) -> bool {
    cache_control.is_some_and(|value| {
        value
            .split(',')
            .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
    })
}

/// What a chat route answers: a whole response, or a stream to send after a 200 head.
pub enum Reply<B> {
    Whole(ApiResponse),
    Stream(Box<StreamReply<B>>),
}

/// A streamed answer whose first event can be sent.
pub struct StreamReply<B> {
    pub chat: Chat,
    pub source: StreamSource<B>,
    pub format: Box<dyn StreamFormat>,
}

/// Where a streamed answer's text comes from.
pub enum StreamSource<B> {
    /// Vertex AI, already answering.
    Upstream {
        opened: Box<OpenStream<B>>,
        stats: CallStats,
    },
    /// The response cache.
    Cached { answer: String, model: String },
}

impl<B> Reply<B> {
    /// The reply for a failure, noted in the chat's log record.
    pub fn failed(error: ApiError, record: &mut ChatRecord) -> Self {
        record.set_failure(&error);
        Reply::Whole(error.to_response())
    }

    pub fn stream(chat: Chat, source: StreamSource<B>, format: Box<dyn StreamFormat>) -> Self {
        Reply::Stream(Box::new(StreamReply {
            chat,
            source,
            format,
        }))
    }
}

/// A `/chat` request as the runtime received it.
pub struct ChatInput<'a> {
    /// The body, already read (at most [`MAX_BODY_BYTES`]).
    pub body: &'a [u8],
    /// The caller accepts only `text/event-stream`.
    pub wants_events: bool,
    /// The caller sent `Cache-Control: no-cache`.
    pub no_cache: bool,
}

/// `POST /chat`. Streams when the body says `"stream": true` or the caller accepts only
/// `text/event-stream`. Continues or starts a server-side conversation, and answers a repeated
/// first question from the cache (see [`chat_state`]).
pub async fn chat<T: Transport>(
    input: ChatInput<'_>,
    vars: &impl Variables,
    transport: &T,
    clock: &impl Clock,
    state: &State<'_>,
    record: &mut ChatRecord,
) -> Reply<T::Body> {
    let mut request = match validation::parse_chat_request(input.body) {
        Ok(request) => request,
        Err(issue) => return Reply::failed(issue.into(), record),
    };
    request.stream |= input.wants_events;
    let settings = match StateSettings::load(vars) {
        Ok(settings) => settings,
        Err(e) => return Reply::failed(e.into(), record),
    };
    let now = clock.unix_seconds();
    let turn = match chat_state::begin(state, settings, &mut request, now) {
        Ok(turn) => turn,
        Err(e) => {
            if let Some(id) = &request.conversation_id {
                record.conversation = Some(id.short().to_owned());
            }
            return Reply::failed(e, record);
        }
    };
    let mut chat = match Chat::prepare(request, vars, None, &gemini::Options::default()) {
        Ok(chat) => chat,
        Err(e) => return Reply::failed(e, record),
    };
    chat.state = turn;
    record.note_chat(&chat);

    if let Some(hit) = chat_state::cached_answer(state, &mut chat, input.no_cache, now) {
        record.note_state(&chat.state);
        if chat.request.stream {
            chat_state::open_stream(state, &mut chat);
            let source = StreamSource::Cached {
                answer: hit.answer,
                model: hit.model,
            };
            return Reply::stream(chat, source, Box::new(ChatEvents));
        }
        let answer = Answer {
            text: hit.answer,
            finish_reason: gemini::STOP.into(),
            usage: Usage::default(),
            model_version: Some(hit.model),
        };
        return whole_answer(chat, answer, &CallStats::default(), state, clock, record);
    }

    if chat.request.stream {
        let (opened, stats) = chat::open(&chat, transport, clock).await;
        record.note_call(&stats);
        return match opened {
            Ok(opened) => {
                chat_state::open_stream(state, &mut chat);
                record.note_state(&chat.state);
                Reply::stream(
                    chat,
                    StreamSource::Upstream {
                        opened: Box::new(opened),
                        stats,
                    },
                    Box::new(ChatEvents),
                )
            }
            Err(e) => {
                record.note_state(&chat.state);
                Reply::failed(ApiError::Upstream(e).with_attempts(stats.attempts), record)
            }
        };
    }

    let (answer, stats) = chat::answer(&chat, transport, clock).await;
    record.note_call(&stats);
    match answer {
        Ok(answer) => whole_answer(chat, answer, &stats, state, clock, record),
        Err(e) => {
            record.note_state(&chat.state);
            Reply::failed(ApiError::Upstream(e).with_attempts(stats.attempts), record)
        }
    }
}

/// A whole answer (from Vertex AI or the cache): the turn is stored, then the 200 is made.
fn whole_answer<B>(
    mut chat: Chat,
    answer: Answer,
    stats: &CallStats,
    state: &State<'_>,
    clock: &impl Clock,
    record: &mut ChatRecord,
) -> Reply<B> {
    record.note_answer(&answer);
    let model = chat.model(answer.model_version.as_deref()).to_owned();
    let done = chat_state::Finished {
        answer: &answer.text,
        finish_reason: &answer.finish_reason,
        model: &model,
    };
    let stored = chat_state::finish(state, &mut chat, &done, clock.unix_seconds());
    record.note_state(&chat.state);
    match stored {
        Ok(()) => Reply::Whole(ApiResponse::json(200, &chat_body(&chat, &answer, stats))),
        Err(e) => Reply::failed(e, record),
    }
}

/// Sends a streamed reply to its end: the events, then (once the answer is complete) the
/// stored turn, then the last event; the log record is completed on the way.
pub async fn send_stream<B>(
    reply: StreamReply<B>,
    clock: &impl Clock,
    state: &State<'_>,
    sink: &mut impl EventSink,
    record: &mut ChatRecord,
) -> StreamEnd
where
    B: futures::Stream<Item = Result<Vec<u8>, TransportError>> + Unpin,
{
    let StreamReply {
        mut chat,
        source,
        format,
    } = reply;
    let mut end = match source {
        StreamSource::Upstream { opened, stats } => {
            chat::relay(&chat, *opened, stats, clock, format.as_ref(), sink).await
        }
        StreamSource::Cached { answer, model } => {
            chat::replay(&chat, &answer, &model, format.as_ref(), sink).await
        }
    };
    if end.error.is_none() && !end.client_gone {
        let model = chat.model(end.model_version.as_deref()).to_owned();
        let done = chat_state::Finished {
            answer: &end.text,
            finish_reason: end.finish_reason.as_deref().unwrap_or_default(),
            model: &model,
        };
        if let Err(e) = chat_state::finish(state, &mut chat, &done, clock.unix_seconds()) {
            end.error = Some(e);
        }
    }
    chat::close(&chat, &mut end, format.as_ref(), sink).await;

    record.note_stream_end(&end);
    record.note_state(&chat.state);
    end
}

/// `GET` (or `HEAD`) and `DELETE /conversations/{id}`.
pub fn conversation(
    method: &str,
    path_and_query: &str,
    vars: &impl Variables,
    state: &State<'_>,
    clock: &impl Clock,
) -> ApiResponse {
    match conversation_inner(method, path_and_query, vars, state, clock) {
        Ok(response) => response,
        Err(e) => e.to_response(),
    }
}

fn conversation_inner(
    method: &str,
    path_and_query: &str,
    vars: &impl Variables,
    state: &State<'_>,
    clock: &impl Clock,
) -> Result<ApiResponse, ApiError> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let raw = path.strip_prefix(CONVERSATIONS_PREFIX).unwrap_or_default();
    let id = ConversationId::parse(raw).ok_or_else(|| {
        ApiError::Validation(Box::new(validation::ValidationIssue {
            kind: "string_pattern_mismatch",
            loc: vec![json!("path"), json!("conversation_id")],
            msg: "String should match pattern '^[0-9a-f]{32}$'".into(),
            input: json!(printable(raw)),
            ctx: Some(json!({"pattern": "^[0-9a-f]{32}$"})),
        }))
    })?;
    let settings = StateSettings::load(vars)?;
    let now = clock.unix_seconds();
    if method == "DELETE" {
        return if conversation::delete(state.kv, &id, now)? {
            Ok(ApiResponse {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            })
        } else {
            Err(ApiError::ConversationNotFound)
        };
    }
    let Lookup::Found(found) = conversation::find(state.kv, &id, now)? else {
        return Err(ApiError::ConversationNotFound);
    };
    let turns = conversation::transcript(state.kv, &found)?;
    Ok(ApiResponse::json(
        200,
        &conversation::transcript_body(&found, &turns, &settings),
    ))
}

/// The resonance analysis and routing, as `/chat` reports them in `metadata`.
pub fn analysis_metadata(chat: &Chat) -> Value {
    json!({
        "rhythm": { "pace": chat.resonance.pace, "avg_length": chat.resonance.avg_length },
        "tone": { "primary": chat.resonance.tone, "confidence": chat.resonance.tone.confidence() },
        "routing": {
            "secondary_persona": chat.routing.secondary.name(),
            "reasoning": chat.routing.reasoning,
        },
        "model": chat.settings.model,
    })
}

/// The `/chat` answer: the original service's fields, plus what Gemini reported.
fn chat_body(chat: &Chat, answer: &Answer, stats: &CallStats) -> Value {
    let mut metadata = analysis_metadata(chat);
    if let Value::Object(m) = &mut metadata {
        m.insert(
            "model".into(),
            json!(chat.model(answer.model_version.as_deref())),
        );
        m.insert("finish_reason".into(), json!(answer.finish_reason));
        m.insert("truncated".into(), json!(answer.truncated()));
        m.insert("usage".into(), json!(answer.usage));
        m.insert("attempts".into(), json!(stats.attempts));
        m.insert("cache".into(), json!(cache_status(chat)));
    }
    json!({
        "content": answer.text,
        "persona_used": chat.persona().name(),
        "resonance_key": chat.resonance.key(),
        "confidence": chat.routing.confidence,
        "conversation_id": chat.state.conversation_id(),
        "metadata": metadata,
    })
}

/// `metadata.cache`: `hit` when the answer came from the cache, else `miss`.
pub fn cache_status(chat: &Chat) -> &'static str {
    chat.state.cache.unwrap_or(CacheStatus::Miss).as_str()
}

/// Caller-supplied text echoed in an error: bounded and free of control characters.
fn printable(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chat::{ClientGone, EventSink};
    use crate::config::tests::vars;
    use crate::store::tests::MemoryStore;
    use crate::vertex::tests::{FakeClock, FakeVertex, Scripted};
    use futures::executor::block_on;

    fn configured() -> crate::config::tests::Fixed {
        vars(&[("project_id", "proj"), ("access_token", "tok")])
    }

    fn body_of(r: &ApiResponse) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    /// `chat` with a store of its own.
    pub(crate) async fn call<T: Transport>(
        body: &[u8],
        wants_events: bool,
        vars: &impl Variables,
        transport: &T,
        clock: &impl Clock,
        record: &mut ChatRecord,
    ) -> Reply<T::Body> {
        let store = MemoryStore::default();
        let state = State {
            kv: &store,
            random_id: &|| [9; 16],
        };
        let input = ChatInput {
            body,
            wants_events,
            no_cache: false,
        };
        chat(input, vars, transport, clock, &state, record).await
    }

    fn whole<B>(reply: Reply<B>) -> ApiResponse {
        match reply {
            Reply::Whole(r) => r,
            Reply::Stream { .. } => panic!("expected a whole response"),
        }
    }

    fn run_chat(body: &[u8], vertex: &FakeVertex) -> (ApiResponse, ChatRecord) {
        let mut record = ChatRecord::new("/chat");
        let reply = block_on(call(
            body,
            false,
            &configured(),
            vertex,
            &FakeClock::default(),
            &mut record,
        ));
        (whole(reply), record)
    }

    fn answer(text: &str) -> Scripted {
        Scripted::json(
            200,
            json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 10,
                                  "thoughtsTokenCount": 5, "totalTokenCount": 65},
                "modelVersion": "gemini-3.5-flash"
            }),
        )
    }

    #[test]
    fn routes_and_methods() {
        assert_eq!(route("GET", "/").unwrap(), Route::Index);
        assert_eq!(route("HEAD", "/health?probe=1").unwrap(), Route::Health);
        assert_eq!(route("POST", "/chat").unwrap(), Route::Chat);
        assert_eq!(
            route("POST", "/v1/chat/completions").unwrap(),
            Route::ChatCompletions
        );
        assert_eq!(route("GET", "/v1/models").unwrap(), Route::Models);
        assert_eq!(
            route("GET", "/chat"),
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            route("DELETE", "/health"),
            Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" })
        );
        assert_eq!(
            route("OPTIONS", "/chat").unwrap(),
            Route::Options { allow: "POST" }
        );
        assert!(matches!(
            route("GET", "/nope"),
            Err(ApiError::NotFound { .. })
        ));
        assert!(matches!(
            route("GET", "/chat//"),
            Err(ApiError::NotFound { .. })
        ));
    }

    #[test]
    fn a_trailing_slash_redirects_as_fastapi_did() {
        assert_eq!(
            route("POST", "/chat/?x=1"),
            Err(ApiError::Redirect {
                location: "/chat?x=1".into()
            })
        );
        let r = route("GET", "/health/").unwrap_err().to_response();
        assert_eq!(r.status, 307);
        assert_eq!(r.header("location"), Some("/health"));
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(None).is_ok());
        assert!(check_content_type(Some("application/json")).is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
        assert!(check_content_type(Some("application/merge-patch+json")).is_ok());
        assert!(matches!(
            check_content_type(Some("text/plain")),
            Err(ApiError::UnsupportedMediaType { .. })
        ));
        assert!(check_content_type(Some("application/x-www-form-urlencoded")).is_err());
    }

    #[test]
    fn event_stream_accept() {
        assert!(accepts_event_stream(Some("text/event-stream")));
        assert!(accepts_event_stream(Some("Text/Event-Stream;q=0.9")));
        assert!(!accepts_event_stream(Some(
            "application/json, text/event-stream"
        )));
        assert!(!accepts_event_stream(Some("application/json")));
        assert!(!accepts_event_stream(None));
    }

    #[test]
    fn index_and_health_keep_the_original_fields() {
        let b = body_of(&index());
        assert_eq!(b["status"], "running");
        assert_eq!(b["version"], "1.0.0");
        assert_eq!(b["health"], "/health");
        let b = body_of(&health());
        assert_eq!(b["status"], "healthy");
        assert_eq!(b["pipeline_ready"], true);
    }

    #[test]
    fn docs_is_self_contained_under_a_csp() {
        let r = docs();
        assert_eq!(r.header("content-security-policy"), Some(DOCS_CSP));
        assert!(DOCS_CSP.starts_with("default-src 'none'"));
        let page = String::from_utf8(r.body).unwrap();
        for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "cdn."] {
            assert!(!page.contains(external), "/docs loads {external}...");
        }
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("fetch(\"/openapi.json\")"));
    }

    #[test]
    fn openapi_is_valid_json_describing_chat() {
        let spec: Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(spec["paths"]["/chat"]["post"].is_object());
    }

    #[test]
    fn chat_answers_with_persona_and_metadata() {
        let vertex = FakeVertex::new([answer("첫째, ...")]);
        let body = json!({"message": " 어떻게 해야 하나요? ", "user_id": "u1"}).to_string();
        let (r, record) = run_chat(body.as_bytes(), &vertex);
        assert_eq!(r.status, 200);
        let b = body_of(&r);
        assert_eq!(b["content"], "첫째, ...");
        assert_eq!(b["persona_used"], "Elro");
        assert_eq!(b["resonance_key"], "curious-burst-inquiry");
        assert_eq!(b["confidence"], 0.8);
        assert_eq!(b["metadata"]["rhythm"]["pace"], "burst");
        assert_eq!(b["metadata"]["tone"]["primary"], "curious");
        assert_eq!(b["metadata"]["routing"]["secondary_persona"], "Riri");
        assert_eq!(b["metadata"]["finish_reason"], "STOP");
        assert_eq!(b["metadata"]["truncated"], false);
        assert_eq!(b["metadata"]["usage"]["thoughts_tokens"], 5);
        assert_eq!(b["metadata"]["usage"]["total_tokens"], 65);
        assert_eq!(b["metadata"]["model"], "gemini-3.5-flash");
        assert_eq!(b["metadata"]["attempts"], 1);

        assert_eq!(record.persona, Some("Elro"));
        assert_eq!(record.outcome, "ok");
        assert_eq!(record.total_tokens, Some(65));

        let calls = vertex.calls.borrow();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].bearer_token.as_deref(), Some("tok"));
        assert!(calls[0].url.contains("/projects/proj/locations/global/"));
        let sent: Value = serde_json::from_slice(&calls[0].body).unwrap();
        assert_eq!(
            sent["contents"][0]["parts"][0]["text"],
            "어떻게 해야 하나요?"
        );
        let instruction = sent["systemInstruction"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        assert!(instruction.contains("Elro"), "{instruction}");
    }

    #[test]
    fn a_chosen_persona_skips_routing() {
        let vertex = FakeVertex::new([answer("ok")]);
        let body = json!({"message": "어떻게 해야 하나요?", "persona": "nana"}).to_string();
        let (r, _) = run_chat(body.as_bytes(), &vertex);
        let b = body_of(&r);
        assert_eq!(b["persona_used"], "Nana");
        assert!(
            b["metadata"]["routing"]["reasoning"]
                .as_str()
                .unwrap()
                .contains("chosen by the caller")
        );
        let sent: Value = serde_json::from_slice(&vertex.calls.borrow()[0].body).unwrap();
        assert!(
            sent["systemInstruction"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .contains("Nana")
        );
    }

    #[test]
    fn validation_happens_before_configuration() {
        let vertex = FakeVertex::new([]);
        let mut record = ChatRecord::new("/chat");
        let reply = block_on(call(
            br#"{"message": ""}"#,
            false,
            &vars(&[]),
            &vertex,
            &FakeClock::default(),
            &mut record,
        ));
        assert_eq!(whole(reply).status, 422);
        assert_eq!(record.outcome, "validation_error");
        assert!(vertex.calls.borrow().is_empty());
    }

    #[test]
    fn missing_configuration_is_503_without_an_upstream_call() {
        let vertex = FakeVertex::new([]);
        let mut record = ChatRecord::new("/chat");
        let r = whole(block_on(call(
            br#"{"message": "hi"}"#,
            false,
            &vars(&[]),
            &vertex,
            &FakeClock::default(),
            &mut record,
        )));
        assert_eq!(r.status, 503);
        assert!(
            body_of(&r)["error"]
                .as_str()
                .unwrap()
                .contains("SPIN_VARIABLE_PROJECT_ID")
        );
        assert!(vertex.calls.borrow().is_empty());
    }

    #[test]
    fn transport_failures_are_honest_and_in_words() {
        for (failure, status) in [
            (TransportError::Timeout, 504),
            (TransportError::Denied, 503),
            (TransportError::RuntimeCredentials, 503),
        ] {
            let vertex = FakeVertex::new([Scripted::Fail(failure)]);
            let (r, _) = run_chat(br#"{"message": "hi"}"#, &vertex);
            assert_eq!(r.status, status);
        }
        let refused = || {
            Scripted::Fail(TransportError::Failed {
                what: "the connection was refused",
                detail: "ErrorCode::ConnectionRefused".into(),
            })
        };
        let vertex = FakeVertex::new([refused(), refused(), refused()]);
        let (r, record) = run_chat(br#"{"message": "hi"}"#, &vertex);
        assert_eq!(r.status, 502);
        let b = body_of(&r);
        assert_eq!(b["attempts"], 3);
        assert!(!b["error"].as_str().unwrap().contains("ErrorCode"), "{b}");
        assert_eq!(record.attempts, 3);
        assert_eq!(record.outcome, "upstream_unreachable");
    }

    #[test]
    fn upstream_error_status_is_not_a_200() {
        let busy = || {
            Scripted::json(
                503,
                json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}),
            )
        };
        let vertex = FakeVertex::new([busy(), busy(), busy()]);
        let (r, _) = run_chat(br#"{"message": "hi"}"#, &vertex);
        assert_eq!(r.status, 502);
        assert_eq!(body_of(&r)["upstream"]["reason"], "UNAVAILABLE");
    }

    /// Collects what a stream sends, an event (or group of events) per send.
    #[derive(Default)]
    struct Collected(Vec<String>);

    impl EventSink for Collected {
        async fn send(&mut self, bytes: Vec<u8>) -> Result<(), ClientGone> {
            self.0.push(String::from_utf8(bytes).unwrap());
            Ok(())
        }
    }

    /// Relays a streamed reply to its end; what was sent, and how it ended.
    pub(crate) fn relay_to_end<B>(
        reply: Reply<B>,
        clock: &FakeClock,
    ) -> (Vec<String>, chat::StreamEnd)
    where
        B: futures::Stream<Item = Result<Vec<u8>, crate::vertex::TransportError>> + Unpin,
    {
        let Reply::Stream(reply) = reply else {
            panic!("expected a stream");
        };
        let store = MemoryStore::default();
        let state = State {
            kv: &store,
            random_id: &|| [9; 16],
        };
        let mut sink = Collected::default();
        let mut record = ChatRecord::new("/chat");
        let end = block_on(send_stream(*reply, clock, &state, &mut sink, &mut record));
        (sink.0, end)
    }

    #[test]
    fn a_streamed_chat_sends_meta_deltas_and_done() {
        let vertex = FakeVertex::new([Scripted::sse(&[
            json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 4}}),
        ])]);
        let clock = FakeClock::default();
        let mut record = ChatRecord::new("/chat");
        let reply = block_on(call(
            br#"{"message": "hi", "stream": true}"#,
            false,
            &configured(),
            &vertex,
            &clock,
            &mut record,
        ));
        let (events, end) = relay_to_end(reply, &clock);
        assert_eq!(end.error, None);
        assert!(events[0].starts_with("event: meta\n"), "{events:?}");
        assert_eq!(events[1], "event: delta\ndata: {\"text\":\"Hel\"}\n\n");
        assert_eq!(events[2], "event: delta\ndata: {\"text\":\"lo\"}\n\n");
        assert!(events[3].starts_with("event: done\n"));
        let done: Value =
            serde_json::from_str(events[3].trim_start_matches("event: done\ndata: ")).unwrap();
        assert_eq!(done["finish_reason"], "STOP");
        assert_eq!(done["usage"]["total_tokens"], 9);
        assert_eq!(done["metadata"]["attempts"], 1);
    }

    #[test]
    fn a_stream_that_fails_before_its_first_chunk_is_an_ordinary_error() {
        let vertex = FakeVertex::new([Scripted::json(
            429,
            json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                   "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "120s"}]}}),
        )]);
        let mut record = ChatRecord::new("/chat");
        let r = whole(block_on(call(
            br#"{"message": "hi"}"#,
            true,
            &configured(),
            &vertex,
            &FakeClock::default(),
            &mut record,
        )));
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("120"));
        assert!(record.stream);
    }

    /// A chat against `store`, with the caller's headers.
    fn call_with(
        store: &MemoryStore,
        body: &str,
        no_cache: bool,
        vertex: &FakeVertex,
        clock: &FakeClock,
    ) -> Reply<<FakeVertex as Transport>::Body> {
        let state = State {
            kv: store,
            random_id: &|| [0x5a; 16],
        };
        let input = ChatInput {
            body: body.as_bytes(),
            wants_events: false,
            no_cache,
        };
        let mut record = ChatRecord::new("/chat");
        block_on(chat(
            input,
            &configured(),
            vertex,
            clock,
            &state,
            &mut record,
        ))
    }

    fn events_of(store: &MemoryStore, reply: Reply<<FakeVertex as Transport>::Body>) -> Vec<Value> {
        let Reply::Stream(reply) = reply else {
            panic!("expected a stream");
        };
        let state = State {
            kv: store,
            random_id: &|| [0x5a; 16],
        };
        let mut sink = Collected::default();
        let mut record = ChatRecord::new("/chat");
        block_on(send_stream(
            *reply,
            &FakeClock::default(),
            &state,
            &mut sink,
            &mut record,
        ));
        sink.0
            .iter()
            .map(|e| {
                let (name, data) = e.split_once("\ndata: ").unwrap();
                json!({"event": name.trim_start_matches("event: "), "data": serde_json::from_str::<Value>(data.trim()).unwrap()})
            })
            .collect()
    }

    #[test]
    fn a_conversation_is_kept_read_back_and_deleted() {
        let store = MemoryStore::default();
        let clock = FakeClock::default();
        let vertex = FakeVertex::new([answer("first answer"), answer("second answer")]);
        let first = body_of(&whole(call_with(
            &store,
            r#"{"message": "hi"}"#,
            false,
            &vertex,
            &clock,
        )));
        let id = first["conversation_id"].as_str().unwrap().to_owned();
        assert_eq!(id, "5a".repeat(16));
        assert_eq!(first["metadata"]["cache"], "miss");
        let body = format!(r#"{{"message": "and?", "conversation_id": "{id}"}}"#);
        let second = body_of(&whole(call_with(&store, &body, false, &vertex, &clock)));
        assert_eq!(second["conversation_id"], id.as_str());
        // The second call carried the first turn as history.
        let sent = &vertex.requests()[1];
        assert_eq!(sent["contents"].as_array().unwrap().len(), 3, "{sent}");

        let state = State {
            kv: &store,
            random_id: &|| [0; 16],
        };
        let path = format!("/conversations/{id}");
        let got = conversation("GET", &path, &configured(), &state, &clock);
        assert_eq!(got.status, 200);
        let transcript = body_of(&got);
        assert_eq!(transcript["turns"][0]["question"], "hi");
        assert_eq!(transcript["turns"][1]["answer"], "second answer");
        assert_eq!(
            conversation("DELETE", &path, &configured(), &state, &clock).status,
            204
        );
        assert_eq!(
            conversation("GET", &path, &configured(), &state, &clock).status,
            404
        );
        assert_eq!(
            conversation("DELETE", &path, &configured(), &state, &clock).status,
            404
        );
        let bad = conversation("GET", "/conversations/XYZ", &configured(), &state, &clock);
        assert_eq!(bad.status, 422);
        assert_eq!(
            body_of(&bad)["detail"][0]["loc"],
            json!(["path", "conversation_id"])
        );
        assert_eq!(
            route("PUT", &path),
            Err(ApiError::MethodNotAllowed {
                allow: "GET, HEAD, DELETE"
            })
        );
    }

    #[test]
    fn history_and_a_conversation_id_together_are_refused() {
        let store = MemoryStore::default();
        let vertex = FakeVertex::new([]);
        let body = format!(
            r#"{{"message": "q", "conversation_id": "{}", "history": [{{"role": "user", "content": "x"}}]}}"#,
            "ab".repeat(16)
        );
        let r = whole(call_with(
            &store,
            &body,
            false,
            &vertex,
            &FakeClock::default(),
        ));
        assert_eq!(r.status, 422);
        assert_eq!(
            body_of(&r)["detail"][0]["loc"],
            json!(["body", "conversation_id"])
        );
        let unknown = format!(
            r#"{{"message": "q", "conversation_id": "{}"}}"#,
            "ab".repeat(16)
        );
        let r = whole(call_with(
            &store,
            &unknown,
            false,
            &vertex,
            &FakeClock::default(),
        ));
        assert_eq!(r.status, 404);
        assert_eq!(body_of(&r)["code"], "conversation_not_found");
        assert!(vertex.requests().is_empty());
    }

    #[test]
    fn a_cached_answer_is_replayed_as_a_stream_and_no_cache_skips_it() {
        let store = MemoryStore::default();
        let clock = FakeClock::default();
        let long = "word ".repeat(200);
        let vertex = FakeVertex::new([answer(&long), answer("fresh")]);
        let first = whole(call_with(
            &store,
            r#"{"message": "Same question"}"#,
            false,
            &vertex,
            &clock,
        ));
        assert_eq!(body_of(&first)["metadata"]["cache"], "miss");

        let events = events_of(
            &store,
            call_with(
                &store,
                r#"{"message": "same  question", "stream": true}"#,
                false,
                &vertex,
                &clock,
            ),
        );
        assert_eq!(vertex.requests().len(), 1, "a hit makes no upstream call");
        assert_eq!(events[0]["event"], "meta");
        let text: String = events
            .iter()
            .filter(|e| e["event"] == "delta")
            .map(|e| e["data"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, long);
        assert!(events.len() > 4, "replayed in pieces");
        let done = events.last().unwrap();
        assert_eq!(done["event"], "done");
        assert_eq!(done["data"]["metadata"]["cache"], "hit");
        assert_eq!(done["data"]["metadata"]["attempts"], 0);
        // The replayed turn was stored in its own new conversation before `done`.
        let id = done["data"]["conversation_id"].as_str().unwrap();
        assert_eq!(events[0]["data"]["conversation_id"], id);
        assert!(store.map.borrow().contains_key(&format!("conv/{id}/t/1")));

        let fresh = whole(call_with(
            &store,
            r#"{"message": "Same question"}"#,
            true,
            &vertex,
            &clock,
        ));
        assert_eq!(body_of(&fresh)["content"], "fresh");
        assert_eq!(body_of(&fresh)["metadata"]["cache"], "miss");
    }

    #[test]
    fn a_failing_store_leaves_a_plain_chat_answered_and_a_named_one_refused() {
        let store = MemoryStore::default();
        store.down.set(true);
        let vertex = FakeVertex::new([answer("still here")]);
        let r = whole(call_with(
            &store,
            r#"{"message": "q"}"#,
            false,
            &vertex,
            &FakeClock::default(),
        ));
        assert_eq!(r.status, 200);
        assert_eq!(body_of(&r)["conversation_id"], Value::Null);
        let named = format!(
            r#"{{"message": "q", "conversation_id": "{}"}}"#,
            "ab".repeat(16)
        );
        let r = whole(call_with(
            &store,
            &named,
            false,
            &vertex,
            &FakeClock::default(),
        ));
        assert_eq!(r.status, 503);
        assert_eq!(body_of(&r)["code"], "store_unavailable");
    }
}
