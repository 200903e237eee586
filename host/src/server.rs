//! The HTTP/1.1 server: accepts connections, turns each request into a `wasi:http` incoming
//! request for a fresh component instance, and streams the instance's response back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::runtime::Runtime;

/// Largest request head (request line and headers) read; beyond it hyper answers 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serving state shared by all connections.
pub struct Server {
    runtime: Runtime,
    /// One permit per request being handled; beyond it requests get a fast 503.
    permits: Semaphore,
    local_addr: SocketAddr,
}

impl Server {
    pub fn new(runtime: Runtime, max_concurrent_requests: usize, local_addr: SocketAddr) -> Server {
        Server {
            runtime,
            permits: Semaphore::new(max_concurrent_requests),
            local_addr,
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
                        eprintln!("ion-host: accept failed: {e}");
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
                        async move { Ok::<_, Infallible>(server.handle(request).await) }
                    }),
                );
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await
                    && !e.is_incomplete_message()
                {
                    eprintln!("ion-host: connection from {peer}: {e}");
                }
            });
        }
        drop(listener);
        eprintln!("ion-host: shutting down, waiting up to {grace:?} for open requests");
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            eprintln!("ion-host: grace period over, closing remaining connections");
        }
        Ok(())
    }

    async fn handle(
        &self,
        mut request: hyper::Request<Incoming>,
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

        // wasi:http needs an authority; HTTP/1.0 clients may send no Host header.
        if request.uri().authority().is_none()
            && !request.headers().contains_key(HOST)
            && let Ok(host) = HeaderValue::from_str(&self.local_addr.to_string())
        {
            request.headers_mut().insert(HOST, host);
        }

        match self.run_guest(request).await {
            Ok(response) => response,
            Err(e) => {
                eprintln!("ion-host: request failed in the component: {e:#}");
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the request could not be completed",
                )
            }
        }
    }

    async fn run_guest(
        &self,
        request: hyper::Request<Incoming>,
    ) -> Result<hyper::Response<HyperOutgoingBody>> {
        let mut store = self.runtime.new_store();
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
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, outparam)
                .await
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => anyhow::bail!("the component answered with error {code:?}"),
            Err(_) => {
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
