//! The thin runtime adapter: `wasi:http` incoming requests in, [`ApiResponse`]s out, Spin
//! variables for configuration and `wasi:http` outbound requests to Vertex AI.
//! Only compiled for `wasm32`; everything it calls is plain Rust that unit-tests natively.

use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use futures::future::{Either, select};
use spin_sdk::http::{ErrorCode, IncomingRequest, IncomingResponse, Method, Request, Response};
use wasi::clocks::monotonic_clock;

use crate::api::{self, MAX_BODY_BYTES, Route};
use crate::config::Variables;
use crate::error::ApiError;
use crate::response::ApiResponse;
use crate::ui;
use crate::vertex::{MAX_REPLY_BYTES, RawReply, Transport, TransportError, VertexCall};

#[spin_sdk::http_component]
async fn handle(request: IncomingRequest) -> Response {
    let method = request.method().to_string();
    let path = request.path_with_query().unwrap_or_else(|| "/".into());
    let response = match api::route(&method, &path) {
        Ok(Route::Index) => ui::index(header(&request, "accept").as_deref(), api::index),
        Ok(Route::Ui(asset)) => ui::asset(asset),
        Ok(Route::Health) => api::health(),
        Ok(Route::Docs) => api::docs(),
        Ok(Route::OpenApi) => api::openapi(),
        Ok(Route::Chat) => chat(request).await.unwrap_or_else(|e| {
            log_error(&method, &path, &e);
            e.to_response()
        }),
        Err(e) => e.to_response(),
    };
    into_spin_response(response)
}

async fn chat(request: IncomingRequest) -> Result<ApiResponse, ApiError> {
    let content_type = header(&request, "content-type");
    api::check_content_type(content_type.as_deref())?;
    // Refuse an announced oversized body before reading any of it.
    if let Some(length) = header(&request, "content-length").and_then(|v| v.parse::<usize>().ok())
        && length > MAX_BODY_BYTES
    {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let body = read_body(request).await?;
    api::chat(&body, &SpinVariables, &WasiHttpTransport).await
}

/// Reads the request body, stopping as soon as it passes [`MAX_BODY_BYTES`].
async fn read_body(request: IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let mut stream = request.into_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BodyUnreadable {
            detail: format!("{e:?}"),
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

fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    let values = request.headers().get(name);
    values
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

fn into_spin_response(response: ApiResponse) -> Response {
    let mut builder = Response::builder();
    builder.status(response.status);
    for (name, value) in response.headers {
        builder.header(name, value);
    }
    builder.header("content-length", response.body.len().to_string());
    builder.body(response.body).build()
}

/// Failures worth an operator's attention go to stderr, which both runtimes capture.
/// The message body is never logged.
fn log_error(method: &str, path: &str, error: &ApiError) {
    if let ApiError::Upstream(e) = error {
        eprintln!("{method} {path}: upstream failure: {e:?}");
    } else if let ApiError::NotConfigured(e) = error {
        eprintln!("{method} {path}: not configured: {}", e.hint());
    }
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

/// Outbound `wasi:http` through `spin_sdk::http::send`, bounded by the call's deadline.
struct WasiHttpTransport;

impl Transport for WasiHttpTransport {
    async fn post(&self, call: VertexCall) -> Result<RawReply, TransportError> {
        let mut builder = Request::builder();
        builder
            .method(Method::Post)
            .uri(call.url)
            .header("content-type", "application/json")
            .header("accept", "application/json");
        if let Some(token) = &call.bearer_token {
            builder.header("authorization", format!("Bearer {token}"));
        }
        let request = builder.body(call.body).build();

        let exchange = async move {
            let response: IncomingResponse =
                spin_sdk::http::send(request).await.map_err(|e| match e {
                    spin_sdk::http::SendError::Http(code) => transport_error(code),
                    other => TransportError::Failed(other.to_string()),
                })?;
            let retry_after = response
                .headers()
                .get("retry-after")
                .into_iter()
                .next()
                .and_then(|v| String::from_utf8(v).ok());
            let mut body = Vec::new();
            let mut stream = response.take_body_stream();
            while let Some(chunk) = stream.next().await {
                let chunk =
                    chunk.map_err(|e| TransportError::Failed(format!("reading reply: {e:?}")))?;
                if body.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Err(TransportError::Failed(format!(
                        "reply body larger than {MAX_REPLY_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(RawReply {
                status: response.status(),
                retry_after,
                body,
            })
        };

        // Dropping the exchange on timeout drops its outgoing request, which cancels it.
        match select(pin!(exchange), pin!(sleep(call.timeout))).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => Err(TransportError::Timeout),
        }
    }
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
        other => TransportError::Failed(format!("{other:?}")),
    }
}

/// Resolves once `duration` has passed, driven by Spin's executor through a clock pollable.
fn sleep(duration: Duration) -> impl Future<Output = ()> {
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
