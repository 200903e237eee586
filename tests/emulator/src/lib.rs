//! A local emulator of the Vertex AI Gemini REST API (`generateContent` and
//! `streamGenerateContent`) as it is today (2026-12-01), for end-to-end tests, offline runs
//! and load benchmarks.
//!
//! It speaks the real path shapes and JSON shapes, validates requests as strictly as Google
//! (unknown fields, bad roles, a conversation not ending with a user turn, out-of-range
//! settings → 400 INVALID_ARGUMENT; both the camelCase and the snake_case name of every field
//! are accepted), checks the bearer token, answers 404 NOT_FOUND for retired model families
//! ([`RETIRED_FAMILIES`]: every `gemini-1.*`, `gemini-2.0*`, `gemini-2.5*`), answers with a
//! deterministic text that echoes what arrived (or with function calls, or JSON, see below),
//! and injects failures on demand (see [`FAULT_NAMES`]): put `[[emulator:FAULTS]]` in the last
//! user text or send the header `x-emulator-fault: FAULTS`.
//!
//! The reply text is
//! `[Vertex AI emulator · {model} · turn {N}] {first line of the system instruction, ≤160 chars,
//! or "(no system instruction)"} — you said: {last user text}`, where N is the number of
//! `contents` entries (1 for a single message, 3 for user/model/user). When the last content
//! holds function responses, `tool results: {name}={compact JSON of its response}; {name2}=…`
//! (in part order) takes the place of `you said: …`.
//!
//! Thinking is modelled: Gemini 3 models think by default (Flash at `MEDIUM`, Pro at `HIGH`);
//! each level spends a fixed number of thought tokens ([`ThinkingLevel::thought_tokens`]:
//! MINIMAL 16, LOW 64, MEDIUM 512, HIGH 2048; a `thinkingBudget` spends exactly itself),
//! billed against `maxOutputTokens` (default [`DEFAULT_MAX_OUTPUT_TOKENS`]) before the answer,
//! at 4 characters per token, rounded up. Thoughts that use it all up leave a candidate
//! without `content` (`finishReason: MAX_TOKENS`); otherwise an answer that does not fit is
//! cut (`MAX_TOKENS`). `usageMetadata.thoughtsTokenCount` reports them and
//! `totalTokenCount = promptTokenCount + candidatesTokenCount + thoughtsTokenCount`.
//!
//! Streams split a normal answer into at least 3 delta chunks; intermediate ones carry the
//! usage so far, the last one the finish reason and the full usage (function calls come whole
//! in one chunk, see below).
//!
//! [`Emulator::requests`] lists every generate request (faulted ones included), with the
//! status it got, its [`Delivery`] (complete, or the client went away first), its raw JSON body
//! and, once it passed validation, the request as parsed ([`RecordedRequest::request`]:
//! contents with function calls, responses and signatures, tools, tool config, generation
//! config, safety settings).
//!
//! # Function calling
//! `tools[].functionDeclarations[]` (`name`, `description`, `parameters` — the OpenAPI subset,
//! parsed strictly — or `parametersJsonSchema` — any JSON Schema —, `response` or
//! `responseJsonSchema`) and `toolConfig.functionCallingConfig` (`mode` AUTO, ANY, NONE,
//! VALIDATED or MODE_UNSPECIFIED; `allowedFunctionNames`) are accepted; any other kind of tool is
//! a 400 (not modelled). Checked like Google: function names match
//! `^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$` and are unique, one declaration sets at most one of
//! `parameters` / `parametersJsonSchema`, `allowedFunctionNames` only with ANY / VALIDATED and
//! only declared names. Parts may be `functionCall` (`name`, `args`, `id`; only in `model`
//! contents) or `functionResponse` (`name`, `response`, `id`; only in `user` contents), one kind
//! of data per part, with a `thoughtSignature` (base64) beside; a function-call turn must follow a
//! user turn, a function-response turn must follow a function-call turn and answer each of its
//! calls (Google's wording).
//!
//! Thought signatures (the Gemini 3 rule, for every model served): the current turn is every
//! content after the last `user` content that holds a text part; the first `functionCall` of
//! each `model` content in it must carry a `thoughtSignature`, otherwise a 400 whose message
//! starts `Function call is missing a thought_signature in functionCall parts.` and names the
//! call and its position (N counting `contents` from 1) in Google's words. Any signature anywhere
//! must be one the emulator issued or [`SKIP_THOUGHT_SIGNATURE`] (raw or base64), otherwise
//! `Corrupted thought signature.`. The emulator's signatures ([`thought_signature`], checked
//! by [`signature_is_valid`]) are the base64 of
//! `emu-sig:{16 hex: FNV-1a of model, name, canonical args}.{8 hex check}`.
//!
//! When functions are declared, the mode is not NONE and the last content is the user's text,
//! the answer calls the first allowed function (`allowedFunctionNames` order, else declaration
//! order) — or the first two with the marker `[[emulator:parallel-calls]]`, only the first
//! carrying the signature, as Gemini does; in mode AUTO / unspecified the marker
//! `[[emulator:no-tool]]` makes it answer with text instead. Arguments are an instance of the
//! parameter schema: every property, strings the last user text cut to 40 characters (or
//! `"text"`), `enum[0]`, integers `minimum` or 1, numbers `minimum` or 1.5, booleans `true`,
//! arrays one item, nested objects recursed, `{}` without a schema. The candidate is
//! `{role: model, parts: [{functionCall: {name, args}, thoughtSignature}, …]}` with
//! `finishReason: STOP`; its tokens are the calls' compact JSON at 4 characters per token. A
//! stream sends the calls whole in one chunk (after the thought summary, if any). After function
//! responses the answer is text, as above. Declarations (name, description, parameter schema)
//! and function calls and responses in `contents` (as compact JSON) count as prompt tokens.
//! The markers are answer modifiers, parsed with the faults: combine them with commas
//! (`[[emulator:parallel-calls,503x1]]`) or send them in the `x-emulator-fault` header.
//!
//! # Structured output
//! `generationConfig.responseMimeType` may be `text/plain`, `application/json` or
//! `text/x.enum`; `responseSchema` (OpenAPI subset) and `responseJsonSchema` (any JSON Schema)
//! exclude each other and need `application/json` (`responseSchema` with an `enum` also
//! `text/x.enum`). The JSON answer is compact JSON: a deterministic instance that validates
//! against the schema (`$ref` into `$defs` / `definitions`, `anyOf` / `oneOf` first branch,
//! `allOf` merged, `required`, `enum` / `const`, bounds, lengths, `minItems`; strings from the
//! last user text), or `{"answer": "<the usual reply text>"}` without a schema; `text/x.enum`
//! answers the first enum value. It is billed, cut and streamed like any text.
//!
//! # Safety settings
//! Each names one of [`SAFETY_CATEGORIES`] (not HARM_CATEGORY_UNSPECIFIED, not twice) with a
//! known threshold and method, or the request is a 400.
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

mod b64;
mod body;
mod faults;
mod protocol;
mod record;
mod reply;
mod route;
mod schema;
mod server;
mod status;
mod structured;
mod thinking;
mod tools;
mod transient;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{
    DEFAULT_RETRY_DELAY, DEFAULT_SLOW, FAULT_HEADER, FAULT_NAMES, MAX_TRANSIENT_FAILURES,
    TRANSIENT_RETRY_DELAY,
};
pub use protocol::{
    Content, FunctionCall, FunctionCallingConfig, FunctionDeclaration, FunctionResponse,
    GenerateContentRequest, GenerationConfig, Part, SAFETY_CATEGORIES, SafetySetting,
    ThinkingConfig, Tool, ToolConfig,
};
pub use record::{Delivery, RECORD_LIMIT, RecordedRequest};
pub use reply::DEFAULT_MAX_OUTPUT_TOKENS;
pub use route::{RETIRED_FAMILIES, SERVED_MODELS, model_is_served};
pub use schema::TEXT_CHARS as SCHEMA_TEXT_CHARS;
pub use server::MAX_BODY_BYTES;
pub use structured::RESPONSE_MIME_TYPES;
pub use thinking::{Level as ThinkingLevel, MAX_THINKING_BUDGET};
pub use tools::{SKIP_THOUGHT_SIGNATURE, signature_is_valid, thought_signature};

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
    /// always empty when recording is off), each with its status and [`Delivery`].
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.records.snapshot()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.records.clear();
    }

    /// Waits (blocking the calling thread, polling every 10 ms) until no recorded request
    /// is [`Delivery::InProgress`] or `timeout` has passed, and returns the requests. Use it
    /// after a client hung up mid-stream to see the disconnect recorded.
    pub fn wait_until_settled(&self, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let requests = self.requests();
            let settled = requests.iter().all(|r| r.delivery != Delivery::InProgress);
            if settled || std::time::Instant::now() >= deadline {
                return requests;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Restarts the counts of every transient fault (`503x2`, …): the next attempt of any
    /// request fails again.
    pub fn reset_faults(&self) {
        self.shared.transient.clear();
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
