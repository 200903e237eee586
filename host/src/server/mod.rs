//! The HTTP/1.1 server: accepts connections, turns each request into a `wasi:http` incoming
//! request for a fresh component instance, and streams the instance's response back.
//!
//! - `connection`: the socket below hyper (idle and head timeouts, JSON protocol errors,
//!   lingering close);
//! - `request`: one request, from its head to the component's response;
//! - `stream`: the response body, which holds the instance until its last byte;
//! - `body`: reading request bodies within their limits;
//! - `admission`: head checks, the body memory budget and the instance slots;
//! - `activity`: connections and requests in progress, to tell when a burst is over;
//! - `errors`: every error the host answers itself, `cors`: its CORS headers;
//! - `shutdown`, `accept`: stopping, and accept failures.

mod accept;
mod activity;
mod admission;
mod body;
mod connection;
mod cors;
mod errors;
mod request;
mod shutdown;
mod stream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Result;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::logging::{self, Severity};
use crate::ratelimit::ClientLimits;
use crate::runtime::Runtime;
use accept::AcceptErrors;
use activity::Activity;
use admission::Admission;
pub use admission::HEALTH_RESERVE;
pub use body::BodyLimits;
pub use connection::ConnectionTimeouts;
use connection::{ClientIo, ConnectionState, TrackedBody};
pub use cors::CorsPolicy;
use shutdown::{Shutdown, ShutdownWatch};

/// Largest request head (request line and headers) read; beyond it hyper answers 431 (as it
/// does beyond its default of 100 headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// At the end of shutdown's grace period, the time left for cut streams to send their error
/// event (taken out of the grace period, at most a quarter of it).
const CUT_MARGIN: Duration = Duration::from_secs(1);

/// Per-request limits enforced outside the guest.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_concurrent: usize,
    pub body: BodyLimits,
    /// Memory for request bodies being read or held, all requests together.
    pub body_budget: usize,
    /// Wall-clock budget for the component to produce its response, a stream to its end.
    pub deadline: Duration,
}

/// Serving state shared by all connections.
pub struct Server {
    runtime: Runtime,
    limits: RequestLimits,
    timeouts: ConnectionTimeouts,
    admission: Admission,
    activity: Activity,
    /// Who may read the host's own answers cross-origin (the component's `allowed_origins`).
    cors: CorsPolicy,
    /// Set when shutdown's grace period is over: requests still running are ended.
    cut_streams: watch::Sender<bool>,
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
        timeouts: ConnectionTimeouts,
        cors: CorsPolicy,
        local_addr: SocketAddr,
    ) -> Server {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        Server {
            runtime,
            admission: Admission::new(
                limits.max_concurrent,
                limits.body_budget,
                limits.body.read_timeout,
                clients,
            ),
            activity: Activity::default(),
            cors,
            cut_streams: watch::Sender::new(false),
            limits,
            timeouts,
            local_addr,
            next_request: AtomicU64::new(1),
            id_prefix: nanos ^ std::process::id(),
        }
    }

    /// Serves until `shutdown` resolves, then lets requests in progress finish for up to `grace`.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> Result<()> {
        let connections = Shutdown::new();
        let mut accept_errors = AcceptErrors::default();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => {
                        accept_errors.accepted();
                        conn
                    }
                    Err(e) => {
                        let wait = accept_errors.failed(&e);
                        tokio::select! {
                            () = tokio::time::sleep(wait) => continue,
                            () = &mut shutdown => break,
                        }
                    }
                },
                () = &mut shutdown => break,
            };
            tokio::spawn(self.clone().serve(stream, peer, connections.watch()));
        }
        drop(listener);
        logging::info(&format!(
            "shutting down: no new connections; requests in progress have {grace:?} to finish"
        ));
        let margin = CUT_MARGIN.min(grace / 4);
        connections.begin();
        if connections.wait(grace - margin).await {
            logging::info("all requests finished");
            return Ok(());
        }
        // Streams still running end with an error event (and their log line) rather than
        // being cut off silently at exit.
        logging::warn("grace period over; ending the requests still running");
        self.cut_streams.send_replace(true);
        if !connections.wait(margin).await {
            logging::warn("closing the remaining connections");
        }
        Ok(())
    }

    /// Whether connections and requests in progress have fallen well below their peak since
    /// the last time this said so: a burst is over. Called now and then, not per request.
    pub fn burst_ended(&self) -> bool {
        let requests = self.admission.instances_in_use(self.limits.max_concurrent);
        let Some(fall) = self.activity.fell_from_peak(requests) else {
            return false;
        };
        if logging::enabled(Severity::Debug) {
            logging::write(
                Severity::Debug,
                &format!(
                    "burst over: connections plus requests fell from {} to {}{}; giving freed memory back",
                    fall.from,
                    fall.to,
                    if fall.settled { " and settled" } else { "" }
                ),
                Default::default(),
            );
        }
        true
    }

    /// Serves one connection until it ends or, at shutdown, at once if no request is in
    /// progress on it.
    async fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, mut stop: ShutdownWatch) {
        let _open = self.activity.connection_opened();
        // Small responses and SSE chunks must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnectionState::default());
        let io = ClientIo::new(stream, state.clone(), self.timeouts);
        let server = self.clone();
        let requests = state.clone();
        let service = service_fn(move |request| {
            // Called as soon as the head is parsed: from here the request is in progress.
            let in_progress = requests.begin();
            let server = server.clone();
            async move {
                let response = server.handle(request, peer).await;
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, in_progress)))
            }
        });
        let connection = http1::Builder::new()
            .keep_alive(true)
            .max_buf_size(MAX_HEAD_BYTES)
            // Without it, a larger head that arrives in one read is accepted.
            .max_header_size(MAX_HEAD_BYTES)
            // ClientIo applies the head and idle timeouts.
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(io), service);
        let mut connection = std::pin::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stop.started() => {
                if state.is_quiet() {
                    state.close_now();
                    return;
                }
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result
            && logging::enabled(Severity::Debug)
        {
            logging::write(
                Severity::Debug,
                &format!("connection from {peer} ended: {e}"),
                Default::default(),
            );
        }
    }
}
