//! The HTTP/1.1 server: accepts connections, turns each request into a `wasi:http` incoming
//! request for a fresh component instance, and streams the instance's response back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error as HttpError, WasiHttpView};

use crate::logging::{self, GuestOutput, HttpRequestEntry, RequestContext, Severity, Trace};
use crate::ratelimit::ClientLimits;
use crate::runtime::Runtime;

/// Largest request head (request line and headers) read; beyond it hyper answers 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Per-request limits enforced outside the guest.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_concurrent: usize,
    pub max_body_bytes: u64,
    /// Wall-clock budget for the component to produce a response head.
    pub deadline: Duration,
}

/// Serving state shared by all connections.
pub struct Server {
    runtime: Runtime,
    limits: RequestLimits,
    clients: ClientLimits,
    /// One permit per request being handled; beyond it requests get a fast 503.
    permits: Semaphore,
    local_addr: SocketAddr,
    next_request: AtomicU64,
    /// Distinguishes request ids across restarts.
    id_prefix: u32,
}

impl Server {
    pub fn new(
        runtime: Runtime,
        limits: RequestLimits,
        clients: ClientLimits,
        local_addr: SocketAddr,
    ) -> Server {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        Server {
            runtime,
            permits: Semaphore::new(limits.max_concurrent),
            limits,
            clients,
            local_addr,
            next_request: AtomicU64::new(1),
            id_prefix: nanos ^ std::process::id(),
        }
    }

    /// Serves until `shutdown` resolves, then lets open requests finish for up to `grace`.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> Result<()> {
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        logging::error(&format!("accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Small responses and SSE chunks must not wait for Nagle's algorithm.
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let connection = http1::Builder::new()
                .keep_alive(true)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |request| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(request, peer).await) }
                    }),
                );
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await
                    && logging::enabled(Severity::Debug)
                {
                    logging::write(
                        Severity::Debug,
                        &format!("connection from {peer} ended: {e}"),
                        Default::default(),
                    );
                }
            });
        }
        drop(listener);
        logging::info(&format!(
            "shutting down: no new connections; open requests have {grace:?} to finish"
        ));
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            logging::warn("grace period over; closing the remaining connections");
        } else {
            logging::info("all requests finished");
        }
        Ok(())
    }

    async fn handle(
        &self,
        request: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> hyper::Response<HyperOutgoingBody> {
        let started = Instant::now();
        let client_ip = self.clients.client_ip(request.headers(), peer);
        let context = Arc::new(RequestContext {
            request_id: format!(
                "{:08x}-{:x}",
                self.id_prefix,
                self.next_request.fetch_add(1, Ordering::Relaxed)
            ),
            trace: Trace::from_headers(request.headers()),
        });
        let entry = HttpRequestEntry {
            method: request.method().to_string(),
            url: request.uri().to_string(),
            status: 0,
            request_size: request
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok()),
            user_agent: request
                .headers()
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            remote_ip: client_ip.to_string(),
            protocol: format!("{:?}", request.version()),
            latency: Duration::ZERO,
        };

        // If the client goes away first, hyper drops this future: the guard still logs the
        // request, as 499 (client closed request).
        let mut pending = PendingLog {
            context: context.clone(),
            entry: Some(entry),
            started,
        };
        let mut response = match self.clients.check(request.uri().path(), client_ip) {
            Ok(()) => self.respond(request, context.clone()).await,
            Err(limited) => {
                let mut response = json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    &limited.message(),
                );
                response.headers_mut().extend(limited.headers());
                response
            }
        };
        if let Ok(id) = HeaderValue::from_str(&context.request_id) {
            response.headers_mut().insert("x-request-id", id);
        }
        pending.finish(response.status().as_u16());
        response
    }

    async fn respond(
        &self,
        mut request: hyper::Request<Incoming>,
        context: Arc<RequestContext>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let Ok(_permit) = self.permits.try_acquire() else {
            let mut response = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many requests in flight; retry shortly",
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        };

        let announced = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if announced.is_some_and(|n| n > self.limits.max_body_bytes) {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!(
                    "request body is larger than {} bytes",
                    self.limits.max_body_bytes
                ),
            );
        }

        // wasi:http needs an authority; HTTP/1.0 clients may send no Host header.
        if request.uri().authority().is_none()
            && !request.headers().contains_key(HOST)
            && let Ok(host) = HeaderValue::from_str(&self.local_addr.to_string())
        {
            request.headers_mut().insert(HOST, host);
        }

        match tokio::time::timeout(
            self.limits.deadline,
            self.run_guest(request, context.clone()),
        )
        .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                context.write(Severity::Error, &format!("component failed: {e:#}"));
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the request could not be completed",
                )
            }
            Err(_) => {
                context.write(
                    Severity::Error,
                    &format!(
                        "component gave no response within {:?}",
                        self.limits.deadline
                    ),
                );
                json_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "deadline_exceeded",
                    "the request took longer than the server allows",
                )
            }
        }
    }

    async fn run_guest(
        &self,
        request: hyper::Request<Incoming>,
        context: Arc<RequestContext>,
    ) -> Result<hyper::Response<HyperOutgoingBody>> {
        let stdout = GuestOutput::stdout(context.clone());
        let stderr = GuestOutput::stderr(context);
        let mut store = self.runtime.new_store(stdout.clone(), stderr.clone());
        let max_body = self.limits.max_body_bytes;
        let request = request.map(move |body| {
            Limited::new(body, max_body as usize).map_err(move |e| {
                if e.is::<LengthLimitError>() {
                    HttpError::HttpRequestBodySize(Some(max_body))
                } else {
                    HttpError::HttpRequestBodySize(None)
                }
            })
        });
        let (sender, receiver) = oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.runtime.pre().clone();

        // The guest runs in its own task so it can keep streaming the body after the
        // response head has been handed to hyper.
        let task = tokio::spawn(async move {
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, outparam)
                    .await
            }
            .await;
            stdout.flush_pending();
            stderr.flush_pending();
            result
        });
        // Until the response head exists, the request is ours to cancel: if the client goes
        // away (hyper drops this future) or the deadline passes, the guest and its upstream
        // calls stop too.
        let mut guard = AbortOnDrop(Some(task));

        match receiver.await {
            Ok(Ok(response)) => {
                guard.0.take();
                Ok(response)
            }
            Ok(Err(code)) => anyhow::bail!("the component answered with error {code:?}"),
            Err(_) => {
                let task = guard.0.take().expect("task is still owned");
                let outcome = match task.await {
                    Ok(Ok(())) => anyhow::anyhow!("the component returned without a response"),
                    Ok(Err(e)) => anyhow::Error::from(e),
                    Err(e) => anyhow::Error::from(e),
                };
                Err(outcome.context("no response from the component"))
            }
        }
    }
}

/// Writes a request's access-log entry exactly once: on completion, or as 499 if dropped.
struct PendingLog {
    context: Arc<RequestContext>,
    entry: Option<HttpRequestEntry>,
    started: Instant,
}

impl PendingLog {
    fn finish(&mut self, status: u16) {
        if let Some(mut entry) = self.entry.take() {
            entry.status = status;
            entry.latency = self.started.elapsed();
            logging::request(&self.context, &entry);
        }
    }
}

impl Drop for PendingLog {
    fn drop(&mut self) {
        self.finish(499);
    }
}

/// Aborts the guest task when dropped while still holding it.
struct AbortOnDrop(Option<tokio::task::JoinHandle<wasmtime::Result<()>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// A JSON error in the component's error shape, for failures outside the component.
fn json_error(status: StatusCode, code: &str, message: &str) -> hyper::Response<HyperOutgoingBody> {
    let body =
        serde_json::json!({ "error": message, "status_code": status.as_u16(), "code": code });
    let mut response = hyper::Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
