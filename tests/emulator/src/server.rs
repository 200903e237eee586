//! The HTTP side: accept loop, one hyper HTTP/1.1 connection per socket, and the request
//! handler that ties routing, auth, validation, faults and replies together.
//!
//! Nothing here holds a lock across an await: the only shared mutable state is the request
//! log, locked briefly to push a record.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::EmulatorConfig;
use crate::body::EmulatorBody;
use crate::faults::{self, FAULT_HEADER, Outcome, Plan};
use crate::protocol;
use crate::record::{Delivery, Records, Tracker};
use crate::reply::{self, Answer, Reply};
use crate::route::{self, Call, Rpc};
use crate::status::ApiError;
use crate::thinking;
use crate::transient::TransientFailures;

/// Largest request body accepted, like the API's own payload limit.
pub const MAX_BODY_BYTES: usize = 20 * 1024 * 1024;

const JSON: &str = "application/json; charset=UTF-8";
const EVENT_STREAM: &str = "text/event-stream";

/// How many good chunks a `stream-error` stream sends before its error event (fewer when the
/// answer has fewer chunks).
const CHUNKS_BEFORE_STREAM_ERROR: usize = 2;

pub(crate) struct Shared {
    pub config: EmulatorConfig,
    pub records: Arc<Records>,
    pub transient: TransientFailures,
}

impl Shared {
    pub fn new(config: EmulatorConfig) -> Self {
        Shared {
            config,
            records: Arc::new(Records::default()),
            transient: TransientFailures::default(),
        }
    }
}

/// Accepts connections until the shutdown sender is dropped.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, shared.clone(), shutdown.clone()));
                }
                // Typically out of file descriptors under load: back off briefly, keep serving.
                Err(err) => {
                    eprintln!("vertex-emulator: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    // Small request/response exchanges: do not let Nagle hold back the last segment.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| handle(shared.clone(), request));
    // No timer is configured, so hyper applies no header-read timeout: idle keep-alive
    // connections stay open until the client closes them.
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = shutdown.changed() => {}
    }
}

/// Returned by the handler to make hyper close the connection without writing a response.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

enum Action {
    Respond(Box<Response<EmulatorBody>>),
    Drop,
}

async fn handle(
    shared: Arc<Shared>,
    request: http::Request<Incoming>,
) -> Result<Response<EmulatorBody>, DropConnection> {
    let (parts, body) = request.into_parts();
    let call = route::parse(&parts.method, parts.uri.path(), parts.uri.query());
    let mut tracker = None;
    let (extra_delay, action) = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            if call.is_some() && shared.config.record {
                tracker = Some(shared.records.start(&parts, &bytes));
            }
            decide(&shared, call.as_ref(), &parts, &bytes, tracker.as_ref())
        }
        Err(err) if err.is::<http_body_util::LengthLimitError>() => (
            Duration::ZERO,
            Action::Respond(Box::new(error_response(&ApiError::invalid_argument(
                format!("Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes."),
            )))),
        ),
        // The client went away mid-body: nobody to answer.
        Err(_) => return Err(DropConnection),
    };
    if let Some(tracker) = &tracker {
        tracker.set_status(match &action {
            Action::Respond(response) => Some(response.status().as_u16()),
            Action::Drop => None,
        });
    }
    // If the client hangs up during this wait, hyper drops this future and the tracker with
    // it, which records the disconnect.
    let wait = shared.config.latency + extra_delay;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    match action {
        Action::Respond(mut response) => {
            if let Some(tracker) = tracker {
                response.body_mut().track(tracker);
            }
            Ok(*response)
        }
        Action::Drop => {
            if let Some(tracker) = tracker {
                tracker.finish(Delivery::Dropped);
            }
            Err(DropConnection)
        }
    }
}

/// Everything but the waiting: which response to give (or to drop), and any extra delay.
fn decide(
    shared: &Shared,
    call: Option<&Call>,
    parts: &http::request::Parts,
    body: &Bytes,
    tracker: Option<&Tracker>,
) -> (Duration, Action) {
    let respond = |response| (Duration::ZERO, Action::Respond(Box::new(response)));
    let fail = |error: ApiError| respond(error_response(&error));

    let Some(call) = call else {
        return fail(ApiError::not_found(format!(
            "The requested URL {} was not found on this server.",
            parts.uri.path()
        )));
    };
    match bearer_token(&parts.headers) {
        None => return fail(ApiError::unauthenticated(true, call.rpc_name())),
        Some(token) => {
            if shared
                .config
                .expected_token
                .as_deref()
                .is_some_and(|t| t != token)
            {
                return fail(ApiError::unauthenticated(false, call.rpc_name()));
            }
        }
    }
    if !call.model_available() {
        return fail(ApiError::model_not_found(&call.resource()));
    }
    let request = match protocol::parse_request(body) {
        Ok(request) => request,
        Err(error) => return fail(error),
    };
    let thinking = match thinking::plan(
        &call.model,
        request.generation_config.thinking_config.as_ref(),
    ) {
        Ok(thinking) => thinking,
        Err(error) => return fail(error),
    };
    if let Some(tracker) = tracker {
        tracker.set_request(request.clone());
    }
    let header_fault = parts
        .headers
        .get(FAULT_HEADER)
        .map(|v| v.to_str().unwrap_or("(not UTF-8)"));
    let last_user_text = request.last_user_text();
    let spec = faults::spec(header_fault, &last_user_text);
    let plan = match faults::select(spec) {
        Ok(plan) => plan,
        Err(error) => return fail(error),
    };
    let delay = plan.delay;
    let answer = match &plan.outcome {
        None => Answer::Text,
        Some(Outcome::Status { code, times }) => {
            let fails = times.is_none_or(|times| {
                shared.transient.should_fail(
                    &format!("{}:{}", call.model, call.rpc_name()),
                    spec.unwrap_or_default(),
                    &last_user_text,
                    times,
                )
            });
            if fails {
                let response = status_fault_response(call, *code, &plan);
                return (delay, Action::Respond(Box::new(response)));
            }
            Answer::Text
        }
        Some(Outcome::Drop) => return (delay, Action::Drop),
        Some(Outcome::Garbage) => {
            return (delay, Action::Respond(Box::new(garbage_response(call.rpc))));
        }
        Some(Outcome::StreamError) if call.rpc == Rpc::Generate => {
            return (
                delay,
                Action::Respond(Box::new(error_response(&faults::internal_error()))),
            );
        }
        Some(Outcome::StreamError) => Answer::Text,
        Some(Outcome::PromptBlocked(reason)) => Answer::PromptBlocked(reason.clone()),
        Some(Outcome::FinishSafety) => Answer::FinishSafety,
        Some(Outcome::Empty) => Answer::Empty,
    };
    let reply = Reply::new(
        &call.model,
        &request,
        &thinking,
        answer,
        plan.steering,
        reply::rfc3339(SystemTime::now()),
        reply::response_id(&[call.model.as_bytes(), body]),
    );
    let chunk_delay = plan.chunk_delay.unwrap_or(shared.config.chunk_delay);
    (
        delay,
        Action::Respond(Box::new(reply_response(
            &reply,
            call.rpc,
            chunk_delay,
            &plan,
        ))),
    )
}

/// The error of a status fault; a 429 also says when to retry, in its RetryInfo detail and
/// (rounded up to whole seconds, as HTTP requires) in `Retry-After`.
fn status_fault_response(call: &Call, code: u16, plan: &Plan) -> Response<EmulatorBody> {
    let retry_delay = plan.retry_delay();
    let error = faults::status_error(code, &call.resource(), call.rpc_name(), retry_delay);
    let mut response = error_response(&error);
    if code == 429 {
        response.headers_mut().insert(
            RETRY_AFTER,
            HeaderValue::from(faults::retry_after_secs(retry_delay)),
        );
    }
    response
}

/// The token of `Authorization: Bearer TOKEN`; `None` when missing, malformed or empty.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn response(status: u16, content_type: &'static str, body: EmulatorBody) -> Response<EmulatorBody> {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn error_response(error: &ApiError) -> Response<EmulatorBody> {
    response(
        error.code,
        JSON,
        EmulatorBody::full(error.to_json().to_string()),
    )
}

fn garbage_response(rpc: Rpc) -> Response<EmulatorBody> {
    match rpc {
        Rpc::Stream { sse: true } => response(
            200,
            EVENT_STREAM,
            EmulatorBody::full("data: {\"candidates\": [{\"content\": <<not JSON>>\r\n\r\n"),
        ),
        _ => response(
            200,
            JSON,
            EmulatorBody::full("<html><body>502 upstream garbage {\"candidates\": [</body></html>"),
        ),
    }
}

fn reply_response(
    reply: &Reply,
    rpc: Rpc,
    chunk_delay: Duration,
    plan: &Plan,
) -> Response<EmulatorBody> {
    let sse = match rpc {
        Rpc::Generate => {
            let mut json = reply.unary_json();
            if plan.padding > 0 {
                json["emulatorPadding"] = " ".repeat(plan.padding).into();
            }
            return response(200, JSON, EmulatorBody::full(json.to_string()));
        }
        Rpc::Stream { sse } => sse,
    };
    let mut chunks = reply.stream_chunks();
    if plan.outcome == Some(Outcome::StreamError) {
        // Some good chunks (never the final one, when there are several), then the error
        // Vertex AI sends when it fails mid-stream.
        let keep = CHUNKS_BEFORE_STREAM_ERROR
            .min(chunks.len().saturating_sub(1))
            .max(1);
        chunks.truncate(keep);
        chunks.push(faults::internal_error().to_json());
    }
    let frames = if sse {
        chunks
            .iter()
            .map(|chunk| Bytes::from(format!("data: {chunk}\r\n\r\n")))
            .collect()
    } else {
        // Without alt=sse the chunks form one JSON array, sent element by element.
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let open = if i == 0 { "[" } else { ",\r\n" };
                let close = if i == last { "]" } else { "" };
                Bytes::from(format!("{open}{chunk}{close}"))
            })
            .collect()
    };
    let content_type = if sse { EVENT_STREAM } else { JSON };
    response(200, content_type, EmulatorBody::paced(frames, chunk_delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn bearer_token_parsing() {
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer ")])),
            None
        );
        assert_eq!(bearer_token(&headers(&[("authorization", "Bearer")])), None);
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Basic abc")])),
            None
        );
        assert_eq!(bearer_token(&headers(&[])), None);
    }
}
