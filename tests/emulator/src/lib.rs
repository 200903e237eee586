//! A local emulator of the Vertex AI Gemini REST API (`generateContent` and
//! `streamGenerateContent`), for end-to-end tests, offline runs and load benchmarks.
//!
//! It speaks the real path shapes and JSON shapes, validates requests as strictly as Google
//! (unknown fields, bad roles, out-of-range settings → 400 INVALID_ARGUMENT), checks the bearer
//! token, answers with a deterministic text that echoes what arrived, and injects failures on
//! demand (see [`FAULT_NAMES`]): put `[[emulator:FAULT]]` in the last user text or send the
//! header `x-emulator-fault: FAULT`.
//!
//! The reply text is
//! `[Vertex AI emulator · {model}] {first line of the system instruction, ≤160 chars,
//! or "(no system instruction)"} — you said: {last user text}`.
//!
//! # Use from async tests
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use vertex_emulator::{Emulator, EmulatorConfig};
//! let emulator = Emulator::bind("127.0.0.1:0", EmulatorConfig::default()).await?;
//! let base = emulator.url(); // e.g. http://127.0.0.1:43121
//! // ... point the client at `base`, then inspect `emulator.requests()`.
//! # Ok(()) }
//! ```
//!
//! # Use from synchronous tests
//! Plain `#[test]` functions have no runtime: [`Emulator::start_in_background`] builds a
//! small multi-thread tokio runtime of its own, binds `127.0.0.1:0` and serves there until the
//! [`Emulator`] is dropped (or [`Emulator::shutdown`] is called). It works from any thread,
//! even inside another runtime.
//! ```no_run
//! let emulator = vertex_emulator::Emulator::start_in_background(Default::default()).unwrap();
//! let url = emulator.url();
//! ```

mod body;
mod faults;
mod protocol;
mod reply;
mod route;
mod server;
mod status;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{DEFAULT_SLOW, FAULT_HEADER, FAULT_NAMES};
pub use route::RETIRED_MODELS;
pub use server::{MAX_BODY_BYTES, RECORD_LIMIT};

use server::Shared;

/// How the emulator behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorConfig {
    /// Added before every response (errors and faults included).
    pub latency: Duration,
    /// Pause between the events of a streamed reply.
    pub chunk_delay: Duration,
    /// If set, the bearer token must equal it; otherwise any non-empty token is accepted.
    pub expected_token: Option<String>,
    /// Keep the received generate requests for [`Emulator::requests`].
    pub record: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            expected_token: None,
            record: true,
        }
    }
}

/// A request that reached a `generateContent` / `streamGenerateContent` route, whatever the
/// outcome (rejected ones included).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/projects/p/.../models/gemini-2.5-flash:streamGenerateContent?alt=sse`.
    pub path: String,
    /// The raw `Authorization` header value.
    pub authorization: Option<String>,
    /// The body as JSON, or `Null` when it is not JSON.
    pub body: serde_json::Value,
}

/// A running emulator. Serving stops when it is dropped.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropping the sender tells the accept loop and every connection to stop.
    shutdown: Option<watch::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// Only for [`Emulator::start_in_background`]: the runtime it owns.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Emulator {
    /// Serves on `listener` in a task spawned on the current tokio runtime.
    pub async fn start(listener: TcpListener, config: EmulatorConfig) -> anyhow::Result<Emulator> {
        Self::spawn_on(&tokio::runtime::Handle::current(), listener, config)
    }

    /// Binds `addr` (e.g. `"127.0.0.1:0"`) and serves there.
    pub async fn bind(addr: &str, config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Self::start(listener, config).await
    }

    /// For synchronous tests: starts a private multi-thread tokio runtime (two worker
    /// threads), binds `127.0.0.1:0` and serves there. The runtime lives as long as the
    /// returned [`Emulator`].
    pub fn start_in_background(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        Self::bind_in_background("127.0.0.1:0", config)
    }

    /// Like [`Emulator::start_in_background`], on a chosen address.
    pub fn bind_in_background(addr: &str, config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vertex-emulator")
            .enable_all()
            .build()
            .context("cannot start the emulator's tokio runtime")?;
        let started = {
            let _context = runtime.enter();
            listen_now(addr)
                .with_context(|| format!("cannot listen on {addr}"))
                .and_then(|listener| Self::spawn_on(runtime.handle(), listener, config))
        };
        match started {
            Ok(mut emulator) => {
                emulator.runtime = Some(runtime);
                Ok(emulator)
            }
            Err(err) => {
                // A plain drop would block, which panics inside another runtime.
                runtime.shutdown_background();
                Err(err)
            }
        }
    }

    fn spawn_on(
        handle: &tokio::runtime::Handle,
        listener: TcpListener,
        config: EmulatorConfig,
    ) -> anyhow::Result<Emulator> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let (shutdown, stopped) = watch::channel(());
        let task = handle.spawn(server::accept_loop(listener, shared.clone(), stopped));
        Ok(Emulator {
            addr,
            shared,
            shutdown: Some(shutdown),
            task: Some(task),
            runtime: None,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:43121`; append the Vertex AI path to it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The received generate requests, oldest first (the last [`RECORD_LIMIT`] of them;
    /// always empty when recording is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let records = self
            .shared
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        records.iter().cloned().collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Stops serving: no new connections are accepted and open ones are closed, shortly
    /// after this returns. Dropping the emulator does the same.
    pub fn shutdown(self) {
        drop(self);
    }

    /// Stops serving and waits until the listening socket is closed.
    pub async fn shutdown_and_wait(mut self) {
        self.shutdown.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown.take();
        if let Some(runtime) = self.runtime.take() {
            // Does not block, so dropping is fine even inside another runtime.
            runtime.shutdown_background();
        }
    }
}

/// Binds synchronously inside an entered runtime, with the same backlog as tokio's `bind`
/// so bursts of concurrent connects are not refused.
fn listen_now(addr: &str) -> anyhow::Result<TcpListener> {
    let mut last_error = None;
    for candidate in addr.to_socket_addrs()? {
        let socket = if candidate.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(candidate).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.map_or_else(
        || anyhow::anyhow!("{addr} resolves to no address"),
        anyhow::Error::from,
    ))
}
