//! The one outbound HTTP client: pooled keep-alive connections, TLS by rustls with the webpki
//! roots, HTTP/2 when the server offers it (ALPN), and explicit connect, first-byte and
//! between-bytes timeouts. Shared by guest requests and the host's own token requests.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, Sleep};

/// Idle connections kept per upstream host once a burst is over. Each one pins some heap pages
/// allocated during the burst (bench: about 0.6 MiB of RSS per idle connection after a
/// 1000-request burst over HTTP/1.1). Vertex AI speaks HTTP/2, where one connection carries
/// many requests, so a few are plenty.
const MAX_IDLE_CONNECTIONS_PER_HOST: usize = 16;

/// Error type of bodies flowing through the client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request and response bodies of the client.
pub type ClientBody = UnsyncBoxBody<Bytes, BoxError>;

/// Timeouts applied to every outbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(60),
            between_bytes: Duration::from_secs(30),
        }
    }
}

/// Why an outbound exchange failed.
#[derive(Debug)]
pub enum SendError {
    /// TCP connect or DNS failed (or timed out: see `timed_out`).
    Connect { detail: String, timed_out: bool },
    /// The TLS handshake failed.
    Tls(String),
    /// No response head within the first-byte timeout.
    FirstByteTimeout,
    /// The exchange failed after connecting.
    Protocol(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect { detail, .. } => write!(f, "connect failed: {detail}"),
            SendError::Tls(detail) => write!(f, "TLS failed: {detail}"),
            SendError::FirstByteTimeout => write!(f, "no response within the first-byte timeout"),
            SendError::Protocol(detail) => write!(f, "HTTP exchange failed: {detail}"),
        }
    }
}

impl std::error::Error for SendError {}

/// A between-bytes timeout while reading a response body.
#[derive(Debug)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no response data within the between-bytes timeout")
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body holding `bytes`.
pub fn full_body(bytes: Bytes) -> ClientBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty request body.
pub fn empty_body() -> ClientBody {
    full_body(Bytes::new())
}

/// A cheaply cloneable pooled client.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, ClientBody>,
    timeouts: Timeouts,
}

impl HttpClient {
    pub fn new(timeouts: Timeouts) -> HttpClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeouts.connect));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            // The idle timeout is only enforced with a timer; without one, idle upstream
            // connections (and their buffers) would stay open forever after a burst.
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS_PER_HOST)
            .build(https);
        HttpClient { inner, timeouts }
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Sends a request; the response body enforces the between-bytes timeout.
    pub async fn send(
        &self,
        request: http::Request<ClientBody>,
        timeouts: Timeouts,
    ) -> Result<http::Response<ClientBody>, SendError> {
        let response = tokio::time::timeout(timeouts.first_byte, self.inner.request(request))
            .await
            .map_err(|_| SendError::FirstByteTimeout)?
            .map_err(classify)?;
        Ok(response.map(|body| {
            IdleTimeout::new(body.map_err(BoxError::from), timeouts.between_bytes).boxed_unsync()
        }))
    }
}

fn classify(error: hyper_util::client::legacy::Error) -> SendError {
    let detail = error_chain(&error);
    if error.is_connect() {
        // rustls reports handshake problems as I/O errors wrapping a rustls::Error.
        if detail.contains("certificate") || detail.contains("tls") || detail.contains("TLS") {
            return SendError::Tls(detail);
        }
        let timed_out = detail.contains("timed out") || detail.contains("deadline");
        return SendError::Connect { detail, timed_out };
    }
    SendError::Protocol(detail)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A body that fails with [`BodyTimeout`] when no frame arrives within `idle`.
struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl<B> IdleTimeout<B> {
    fn new(inner: B, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = Instant::now() + this.idle;
                this.sleep.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that accepts one connection, reads the request head, then runs `script`.
    async fn one_shot_server<F, Fut>(script: F) -> String
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head).await;
            script(stream).await;
        });
        url
    }

    fn get(url: &str) -> http::Request<ClientBody> {
        http::Request::get(url).body(empty_body()).unwrap()
    }

    #[tokio::test]
    async fn first_byte_timeout() {
        let url = one_shot_server(|stream| async move {
            // Hold the connection open without answering.
            let _open = stream;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let timeouts = Timeouts {
            first_byte: Duration::from_millis(200),
            ..Timeouts::default()
        };
        let client = HttpClient::new(timeouts);
        let err = client.send(get(&url), timeouts).await.unwrap_err();
        assert!(matches!(err, SendError::FirstByteTimeout), "{err}");
    }

    #[tokio::test]
    async fn between_bytes_timeout() {
        let url = one_shot_server(|mut stream| async move {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
                .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let timeouts = Timeouts {
            between_bytes: Duration::from_millis(200),
            ..Timeouts::default()
        };
        let client = HttpClient::new(timeouts);
        let response = client.send(get(&url), timeouts).await.unwrap();
        let err = response.into_body().collect().await.unwrap_err();
        assert!(err.is::<BodyTimeout>(), "{err}");
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = HttpClient::new(Timeouts::default());
        let err = client
            .send(
                get(&format!("http://127.0.0.1:{port}/")),
                Timeouts::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                SendError::Connect {
                    timed_out: false,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn connections_are_reused() {
        // Counts accepted connections while answering keep-alive requests.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let client = HttpClient::new(Timeouts::default());
        for _ in 0..5 {
            let response = client.send(get(&url), Timeouts::default()).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
