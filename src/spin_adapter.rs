//! The thin runtime adapter: `wasi:http` incoming requests in, responses (whole or streamed)
//! out, Spin variables for configuration, `wasi:http` outbound requests and WASI clocks for
//! Vertex AI. Only compiled for `wasm32`; everything it calls is plain Rust that unit-tests
//! natively.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, Stream, StreamExt};
use spin_sdk::http::conversions::TryIntoOutgoingRequest;
use spin_sdk::http::{
    ErrorCode, Fields, IncomingRequest, IncomingResponse, Method, OutgoingResponse, Request,
    ResponseOutparam,
};
use wasi::clocks::monotonic_clock;

use crate::access::admin::AdminCall;
use crate::access::{self, AccessSettings, Credentials, Grant};
use crate::chat::{self, ClientGone, EventSink};
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
use crate::request::{self, MAX_BODY_BYTES};
use crate::response::ApiResponse;
use crate::routes::{self, Route};
use crate::spin_store::{self, SpinStore};
use crate::sse;
use crate::ui;
use crate::vertex::{Clock, Reply as VertexReply, Transport, TransportError, VertexCall};

#[spin_sdk::http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let started = WasiClock.now();
    let method = request.method().to_string();
    let path = request.path_with_query().unwrap_or_else(|| "/".into());
    let origin = header(&request, "origin");
    let cors = CorsPolicy::load(&SpinVariables);

    let response = match routes::route(&method, &path) {
        Ok(Route::Index) => ui::index(header(&request, "accept").as_deref(), info::index),
        Ok(Route::Ui(asset)) => ui::asset(asset),
        Ok(Route::Health) => info::health(),
        Ok(Route::Docs) => info::docs(),
        Ok(Route::OpenApi) => info::openapi(),
        Ok(Route::Models) => openai::models(&SpinVariables),
        Ok(Route::Options { allow }) => cors.preflight(
            origin.as_deref(),
            header(&request, "access-control-request-method").as_deref(),
            header(&request, "access-control-request-headers").as_deref(),
            allow,
        ),
        Ok(Route::Conversation) => {
            let store = SpinStore::default();
            conversation_route::conversation(
                &method,
                &path,
                &SpinVariables,
                &state(&store),
                &WasiClock,
            )
        }
        Ok(Route::Usage) => {
            let store = SpinStore::default();
            let authorization = header_bytes(&request, "authorization");
            let client_addr = header(&request, "spin-client-addr");
            let credentials = Credentials {
                authorization: authorization.as_deref(),
                client_addr: client_addr.as_deref(),
            };
            AccessSettings::load(&SpinVariables)
                .map_err(ApiError::from)
                .and_then(|settings| {
                    access::admin::usage(&credentials, &settings, &store, WasiClock.unix_seconds())
                })
                .unwrap_or_else(|e| e.to_response())
        }
        Ok(Route::AdminKeys) => admin_keys(request, &method, &path)
            .await
            .unwrap_or_else(|e| e.to_response()),
        Ok(route @ (Route::Chat | Route::ChatCompletions)) => {
            let name = if route == Route::Chat {
                "/chat"
            } else {
                "/v1/chat/completions"
            };
            let mut record = ChatRecord::new(name);
            let store = SpinStore::default();
            let state = state(&store);
            let grant = match admit(&request, &store, &mut record) {
                Ok(grant) => grant,
                Err(e) => {
                    let reply = if route == Route::ChatCompletions {
                        openai::failed(e, &mut record)
                    } else {
                        Reply::<UpstreamBody>::failed(e, &mut record)
                    };
                    let Reply::Whole(response) = reply else {
                        unreachable!("a failure is a whole response")
                    };
                    finish(&mut record, started);
                    send_whole(out, cors.apply(origin.as_deref(), response)).await;
                    return;
                }
            };
            let reply = chat_route(route, request, &state, &mut record).await;
            record.note_grant(&grant);
            let limit_headers = access::grant_headers(&grant);
            let mut response = match reply {
                Reply::Whole(response) => response,
                Reply::Stream(reply) => {
                    let mut head = sse::head();
                    head.headers.extend(limit_headers);
                    let head = cors.apply(origin.as_deref(), head);
                    let mut sink = OutgoingSink::start(out, &head);
                    reply::send_stream(*reply, &WasiClock, &state, &mut sink, &mut record).await;
                    charge(&store, &grant, &mut record);
                    finish(&mut record, started);
                    return;
                }
            };
            charge(&store, &grant, &mut record);
            finish(&mut record, started);
            response.headers.extend(limit_headers);
            response
        }
        Err(e) => e.to_response(),
    };
    send_whole(out, cors.apply(origin.as_deref(), response)).await;
}

/// Identifies the caller of a chat route and counts the request against its limits.
fn admit(
    request: &IncomingRequest,
    store: &SpinStore,
    record: &mut ChatRecord,
) -> Result<Grant, ApiError> {
    let settings = AccessSettings::load(&SpinVariables)?;
    let authorization = header_bytes(request, "authorization");
    let client_addr = header(request, "spin-client-addr");
    let credentials = Credentials {
        authorization: authorization.as_deref(),
        client_addr: client_addr.as_deref(),
    };
    let caller = access::identify(store, settings.mode, &credentials)?;
    record.caller = Some(caller.label());
    access::admit(store, &settings, caller, WasiClock.unix_seconds())
}

/// Adds a finished chat's tokens to its caller's day; a store failure is noted in the log line.
fn charge(store: &SpinStore, grant: &Grant, record: &mut ChatRecord) {
    let tokens = record.billed_tokens();
    if access::charge(store, grant, tokens, WasiClock.unix_seconds()).is_err() {
        record.note_charge_failed();
    }
}

/// `/admin/keys` and `/admin/keys/{id}`.
async fn admin_keys(
    request: IncomingRequest,
    method: &str,
    path: &str,
) -> Result<crate::response::ApiResponse, ApiError> {
    let settings = AccessSettings::load(&SpinVariables)?;
    let authorization = header_bytes(&request, "authorization");
    let path = path.split('?').next().unwrap_or_default();
    access::admin::authorize(&settings, authorization.as_deref(), path)?;
    let body = if method == "POST" {
        read_request_body(request).await?
    } else {
        Vec::new()
    };
    let store = SpinStore::default();
    let call = AdminCall {
        method,
        path,
        authorization: authorization.as_deref(),
        body: &body,
    };
    access::admin::keys_api(
        &call,
        &settings,
        &store,
        &spin_store::random_id,
        WasiClock.unix_seconds(),
    )
}

/// Reads and answers a chat route's body.
async fn chat_route(
    route: Route,
    request: IncomingRequest,
    state: &State<'_>,
    record: &mut ChatRecord,
) -> Reply<UpstreamBody> {
    let wants_events = request::accepts_event_stream(header(&request, "accept").as_deref());
    let no_cache = request::asks_no_cache(header(&request, "cache-control").as_deref());
    let body = match read_request_body(request).await {
        Ok(body) => body,
        Err(e) if route == Route::ChatCompletions => return openai::failed(e, record),
        Err(e) => return Reply::failed(e, record),
    };
    match route {
        Route::ChatCompletions => {
            openai::completions(
                &body,
                &SpinVariables,
                &WasiHttpTransport,
                &WasiClock,
                record,
            )
            .await
        }
        _ => {
            let input = ChatInput {
                body: &body,
                wants_events,
                no_cache,
            };
            chat_route::chat(
                input,
                &SpinVariables,
                &WasiHttpTransport,
                &WasiClock,
                state,
                record,
            )
            .await
        }
    }
}

/// The state layer on the runtime's key-value store.
fn state(store: &SpinStore) -> State<'_> {
    State {
        kv: store,
        random_id: &spin_store::random_id,
    }
}

/// Writes the per-chat log line (stdout; ion-host reads it as a structured entry).
fn finish(record: &mut ChatRecord, started: Duration) {
    record.total_latency_ms = chat::millis(WasiClock.now().saturating_sub(started));
    println!("{}", record.to_line());
}

async fn read_request_body(request: IncomingRequest) -> Result<Vec<u8>, ApiError> {
    request::check_content_type(header(&request, "content-type").as_deref())?;
    // Refuse an announced oversized body before reading any of it.
    if let Some(length) = header(&request, "content-length").and_then(|v| v.parse::<usize>().ok())
        && length > MAX_BODY_BYTES
    {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let mut stream = request.into_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            log(
                "WARNING",
                &format!("reading the request body failed: {e:?}"),
            );
            ApiError::BodyUnreadable {
                detail: format!("{e:?}"),
            }
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A header's raw bytes (present but not UTF-8 is not the same as absent).
fn header_bytes(request: &IncomingRequest, name: &str) -> Option<Vec<u8>> {
    request.headers().get(name).into_iter().next()
}

fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

fn fields(response: &ApiResponse, with_length: bool) -> Fields {
    let mut list: Vec<(String, Vec<u8>)> = response
        .headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone().into_bytes()))
        .collect();
    if with_length {
        list.push((
            "content-length".into(),
            response.body.len().to_string().into_bytes(),
        ));
    }
    // Header values come from this crate's own constants and sanitised text.
    Fields::from_list(&list).unwrap_or_else(|_| Fields::new())
}

async fn send_whole(out: ResponseOutparam, response: ApiResponse) {
    let outgoing = OutgoingResponse::new(fields(&response, true));
    let _ = outgoing.set_status_code(response.status);
    // A client that has gone away cannot be told anything more.
    let _ = out.set_with_body(outgoing, response.body).await;
}

/// The body of a streamed response, opened by sending its head.
struct OutgoingSink<S> {
    body: S,
}

impl OutgoingSink<()> {
    fn start(
        out: ResponseOutparam,
        head: &ApiResponse,
    ) -> OutgoingSink<impl futures::Sink<Vec<u8>, Error = wasi::io::streams::StreamError>> {
        let outgoing = OutgoingResponse::new(fields(head, false));
        let _ = outgoing.set_status_code(head.status);
        let body = outgoing.take_body();
        out.set(outgoing);
        OutgoingSink { body }
    }
}

impl<S> EventSink for OutgoingSink<S>
where
    S: futures::Sink<Vec<u8>> + Unpin,
{
    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), ClientGone> {
        // `send` flushes, so each event leaves as it is written.
        self.body.send(bytes).await.map_err(|_| ClientGone)
    }
}

/// A structured diagnostic line for the runtime's log.
fn log(severity: &str, message: &str) {
    eprintln!(
        "{}",
        serde_json::json!({ "severity": severity, "message": message })
    );
}

/// Spin application variables (`fermyon:spin/variables`).
struct SpinVariables;

impl Variables for SpinVariables {
    fn get(&self, name: &str) -> Option<String> {
        spin_sdk::variables::get(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
    }
}

/// The body of an upstream reply, read as it arrives. It owns the reply, whose body is a
/// child resource that must not outlive it.
pub struct UpstreamBody {
    chunks: Pin<Box<dyn Stream<Item = Result<Vec<u8>, TransportError>>>>,
    _reply: IncomingResponse,
}

impl Stream for UpstreamBody {
    type Item = Result<Vec<u8>, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.chunks.as_mut().poll_next(cx)
    }
}

/// Outbound `wasi:http` through `spin_sdk::http::send`.
struct WasiHttpTransport;

impl Transport for WasiHttpTransport {
    type Body = UpstreamBody;

    async fn send(&self, call: VertexCall) -> Result<VertexReply<UpstreamBody>, TransportError> {
        let mut builder = Request::builder();
        builder
            .method(Method::Post)
            .uri(call.url)
            .header("content-type", "application/json")
            .header("accept", call.accept);
        if let Some(token) = &call.bearer_token {
            builder.header("authorization", format!("Bearer {token}"));
        }
        let request = builder.body(call.body).build();
        let (request, body) = request
            .try_into_outgoing_request()
            .map_err(|e| failed("the request could not be built", e.to_string()))?;
        // The body is written while the request is sent. When the runtime refuses the request
        // (outbound policy, credentials), writing fails with a bare "closed", and only the
        // response carries the reason: so the response's error wins over the body's.
        let mut sink = request.take_body();
        let write = async move {
            let written = sink.send(body.unwrap_or_default()).await;
            drop(sink); // finishes the body
            written
        };
        let (written, response) =
            futures::join!(write, spin_sdk::http::send::<_, IncomingResponse>(request));
        let response = response.map_err(|e| match e {
            spin_sdk::http::SendError::Http(code) => transport_error(code),
            other => failed("the request could not be sent", format!("{other}")),
        })?;
        if let Err(e) = written {
            return Err(failed(
                "the request body could not be sent",
                format!("writing the request body: {e:?}"),
            ));
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .into_iter()
            .next()
            .and_then(|v| String::from_utf8(v).ok());
        let chunks = response.take_body_stream().map(|chunk| {
            chunk.map_err(|e| failed("the reply broke off", format!("reading the reply: {e:?}")))
        });
        Ok(VertexReply {
            status: response.status(),
            retry_after,
            body: UpstreamBody {
                chunks: Box::pin(chunks),
                _reply: response,
            },
        })
    }
}

fn failed(what: &'static str, detail: String) -> TransportError {
    log("WARNING", &format!("Vertex AI call failed: {detail}"));
    TransportError::Failed { what, detail }
}

fn transport_error(code: ErrorCode) -> TransportError {
    match code {
        ErrorCode::HttpRequestDenied => TransportError::Denied,
        ErrorCode::ConfigurationError => TransportError::RuntimeCredentials,
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout
        | ErrorCode::DnsTimeout => TransportError::Timeout,
        ErrorCode::ConnectionRefused => failed("the connection was refused", format!("{code:?}")),
        ErrorCode::DnsError(_) => failed("its host name did not resolve", format!("{code:?}")),
        ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => failed("the TLS handshake failed", format!("{code:?}")),
        ErrorCode::ConnectionTerminated | ErrorCode::ConnectionLimitReached => {
            failed("the connection was closed", format!("{code:?}"))
        }
        other => failed(
            "the connection failed or the reply was not valid HTTP",
            format!("{other:?}"),
        ),
    }
}

/// WASI monotonic clock and random numbers; sleeping is driven by Spin's executor.
struct WasiClock;

impl Clock for WasiClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(monotonic_clock::now())
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let deadline = monotonic_clock::now().saturating_add(nanos);
        futures::future::poll_fn(move |cx| {
            if monotonic_clock::now() >= deadline {
                Poll::Ready(())
            } else {
                spin_executor::push_waker(
                    monotonic_clock::subscribe_instant(deadline),
                    cx.waker().clone(),
                );
                Poll::Pending
            }
        })
    }

    fn random(&self) -> f64 {
        // 53 random bits make a uniform f64 in [0, 1).
        (wasi::random::random::get_random_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn unix_seconds(&self) -> u64 {
        wasi::clocks::wall_clock::now().seconds
    }
}
