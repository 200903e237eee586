//! The thin runtime adapter: a `wasi:http` incoming request becomes a [`dispatch`] request and
//! its answer a `wasi:http` response (whole, or a head and then streamed events); Spin
//! variables give the configuration, `wasi:http` outbound requests and WASI clocks reach
//! Vertex AI. Only compiled for `wasm32`; what it calls is plain Rust that unit-tests natively.

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

use crate::chat::{ClientGone, EventSink};
use crate::chat_log::diagnostic;
use crate::chat_state::State;
use crate::config::Variables;
use crate::dispatch::{self, Incoming, Respond, Runtime};
use crate::response::ApiResponse;
use crate::spin_store::{self, SpinStore};
use crate::vertex::{Clock, Reply as VertexReply, Transport, TransportError, VertexCall};

#[spin_sdk::http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let store = SpinStore::default();
    let runtime = Runtime {
        vars: &SpinVariables,
        transport: &WasiHttpTransport,
        clock: &WasiClock,
        state: State {
            kv: &store,
            random_id: &spin_store::random_id,
        },
        write_line: &|line| println!("{line}"),
    };
    let request = SpinRequest {
        method: request.method().to_string(),
        path: request.path_with_query().unwrap_or_else(|| "/".into()),
        request,
    };
    dispatch::serve(&runtime, request, SpinResponse(out)).await;
}

/// An incoming `wasi:http` request, as [`dispatch`] reads it.
struct SpinRequest {
    method: String,
    path: String,
    request: IncomingRequest,
}

impl Incoming for SpinRequest {
    type Body = Pin<Box<dyn Stream<Item = Result<Vec<u8>, String>>>>;

    fn method(&self) -> &str {
        &self.method
    }

    fn path_and_query(&self) -> &str {
        &self.path
    }

    fn header_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.request.headers().get(name).into_iter().next()
    }

    fn into_body(self) -> Self::Body {
        Box::pin(
            self.request
                .into_body_stream()
                .map(|chunk| chunk.map_err(|e| format!("{e:?}"))),
        )
    }
}

/// The response outparam: a whole response, or a streamed one's head and then its body.
struct SpinResponse(ResponseOutparam);

impl Respond for SpinResponse {
    type Sink = OutgoingSink;

    async fn whole(self, response: ApiResponse) {
        let outgoing = OutgoingResponse::new(fields(&response, true));
        let _ = outgoing.set_status_code(response.status);
        // A client that has gone away cannot be told anything more.
        let _ = self.0.set_with_body(outgoing, response.body).await;
    }

    fn stream(self, head: &ApiResponse) -> OutgoingSink {
        let outgoing = OutgoingResponse::new(fields(head, false));
        let _ = outgoing.set_status_code(head.status);
        let body = outgoing.take_body();
        self.0.set(outgoing);
        OutgoingSink {
            body: Box::pin(body),
        }
    }
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

/// The body of a streamed response, opened by sending its head.
struct OutgoingSink {
    body: Pin<Box<dyn futures::Sink<Vec<u8>, Error = wasi::io::streams::StreamError>>>,
}

impl EventSink for OutgoingSink {
    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), ClientGone> {
        // `send` flushes, so each event leaves as it is written.
        self.body.send(bytes).await.map_err(|_| ClientGone)
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
    diagnostic("WARNING", &format!("Vertex AI call failed: {detail}"));
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
