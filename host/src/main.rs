//! ion-host: serves the Ion Mentoring WebAssembly component over HTTP with wasmtime, configured
//! by the same `spin.toml` that `spin up` reads.

mod allocator;
mod client_ip;
#[cfg(test)]
mod component_world;
mod credentials;
mod http_client;
mod kv;
mod logging;
mod manifest;
mod model_check;
mod outbound;
mod ratelimit;
mod runtime;
mod server;
mod telemetry;
mod template;
mod variables;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::http_client::{HttpClient, Timeouts};
use crate::kv::Stores;
use crate::kv::config::{KvOptions, StoreSetup};
use crate::manifest::App;
use crate::outbound::Outbound;
use crate::outbound::policy::AllowList;
use crate::ratelimit::{ClientLimits, ClientOptions};
use crate::runtime::{EPOCH_TICK, IdleInstances, Limits, ReusePolicy, Runtime};
use crate::server::{
    BodyLimits, ConnectionTimeouts, CorsPolicy, HEALTH_RESERVE, RequestLimits, Server,
};
use crate::variables::{AppVariables, ComponentVariables};

/// Serve a wasi:http component described by a Spin manifest.
#[derive(Parser, Debug)]
#[command(name = "ion-host", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeOptions,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Precompile a component (.wasm) into a .cwasm for this ion-host build, so that serving
    /// it needs no compilation at startup.
    Compile {
        /// The component to compile.
        input: PathBuf,
        /// Where to write the precompiled component.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Args, Debug)]
struct ServeOptions {
    /// The Spin manifest (version 2) naming the component, its variables and its outbound policy.
    #[arg(long, default_value = "spin.toml", env = "ION_MANIFEST")]
    manifest: PathBuf,

    /// Address to listen on. Defaults to 0.0.0.0:$PORT, with PORT defaulting to 8080.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Component to serve instead of the manifest's `source`: a .wasm, or a .cwasm from
    /// `ion-host compile`.
    #[arg(long, value_name = "PATH")]
    component: Option<PathBuf>,

    /// Requests handled at once, streams until their last byte; beyond it a request gets an
    /// immediate 503 with Retry-After. Also sizes the instance pool (which has a few more
    /// instances, for /health only).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    max_concurrent_requests: u32,

    /// Largest request body accepted; larger ones get 413. The component accepts at most
    /// 128 KiB, so more only costs memory.
    #[arg(long, default_value_t = 128 * 1024, value_name = "BYTES")]
    max_body_bytes: u64,

    /// Largest linear memory one request's instance may use.
    #[arg(long, default_value_t = 128, value_name = "MIB")]
    max_memory_mib: usize,

    /// Requests one instance of the component serves, one after another, before a fresh one
    /// replaces it; 1 gives every request a fresh instance. An instance is reused only after a
    /// request that ended well: one that trapped, ran past its deadline or was cancelled is
    /// dropped.
    #[arg(long, default_value_t = ReusePolicy::default().max_requests, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_instance_reuse_count: u32,

    /// Instances kept waiting for the next request; each is dropped after a second unused, and
    /// all at once when a burst is over, so memory comes back. 0 turns reuse off.
    #[arg(long, default_value_t = ReusePolicy::default().max_idle, value_name = "N")]
    max_idle_instances: usize,

    /// Deadline for one request: the response must start within it and end within it (a stream
    /// still running then ends with an error event), and a guest still running at it traps
    /// (epoch interruption, counted in wall-clock time, not CPU time). Cloud Run's own limit is 300 s by default.
    #[arg(long, default_value_t = 120_000, value_name = "MS")]
    request_timeout_ms: u64,

    /// How long requests in progress may run after SIGTERM or Ctrl-C before the process exits;
    /// connections with no request in progress close at once.
    #[arg(long, default_value_t = 8000, value_name = "MS")]
    shutdown_grace_ms: u64,

    /// Time a client has to send a request head (request line and headers): from the
    /// connection's start, or on a keep-alive connection from the head's first byte. Past it the
    /// connection is closed.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    header_read_timeout_ms: u64,

    /// How long a keep-alive connection may sit idle between requests before it is closed.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    idle_timeout_ms: u64,

    /// Time a client has to send a whole request body; past it the request gets 408.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    body_read_timeout_ms: u64,

    /// How long a response write may wait for a client that does not read; past it the
    /// connection is closed (and a stream on it, with its upstream call, ends).
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    send_timeout_ms: u64,

    /// Memory for request bodies being read or held by requests, all clients together; a body
    /// that does not fit gets 503 with Retry-After. At least --max-body-bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    max_buffered_body_bytes: u64,

    #[command(flatten)]
    clients: ClientOptions,

    #[command(flatten)]
    kv: KvOptions,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Compile { input, output }) => runtime::compile(&input, &output),
        None => serve(cli.serve),
    };
    if let Err(e) = result {
        eprintln!("ion-host: error: {e:#}");
        std::process::exit(1);
    }
}

fn serve(options: ServeOptions) -> Result<()> {
    if options.max_concurrent_requests == 0 {
        bail!("--max-concurrent-requests must be at least 1");
    }
    for (flag, value) in [
        ("--request-timeout-ms", options.request_timeout_ms),
        ("--header-read-timeout-ms", options.header_read_timeout_ms),
        ("--idle-timeout-ms", options.idle_timeout_ms),
        ("--body-read-timeout-ms", options.body_read_timeout_ms),
        ("--send-timeout-ms", options.send_timeout_ms),
    ] {
        if value == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if options.max_body_bytes > u64::from(u32::MAX) {
        bail!("--max-body-bytes must be at most {}", u32::MAX);
    }
    if options.max_buffered_body_bytes < options.max_body_bytes {
        bail!("--max-buffered-body-bytes must be at least --max-body-bytes");
    }
    let listen = match options.listen {
        Some(addr) => addr,
        None => {
            let port = match std::env::var("PORT") {
                Ok(p) => p
                    .parse::<u16>()
                    .with_context(|| format!("PORT={p:?} is not a port number"))?,
                Err(_) => 8080,
            };
            SocketAddr::from(([0, 0, 0, 0], port))
        }
    };

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(allocator::on_worker_park)
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(async {
        let app = App::load(&options.manifest)?;
        // A bad runtime config fails before anything slow; the stores open once the port is
        // bound, so that a startup that fails earlier never takes the embedded file's lock.
        let store_setup = StoreSetup::from_options(&options.kv, &options.manifest)?;
        let mut values = AppVariables::resolve(&app, |name| std::env::var(name).ok())?;
        for notice in values.notices() {
            logging::warn(notice);
        }
        // Before anything slow: a retired model is the first thing an operator should read.
        model_check::log_findings(&values);
        let telemetry_config = telemetry::Config::from_env(|name| std::env::var(name).ok())
            .context("telemetry is misconfigured (OTEL_* variables)")?;
        let client = HttpClient::new(Timeouts::default());
        let auth = outbound::vertex_auth::configure(&mut values, &client).await?;
        let project_id = values.get("project_id").filter(|p| !p.is_empty());
        if let Some(project) = project_id {
            logging::set_project_id(project);
        }
        if let Some(config) = telemetry_config {
            let credentials = auth.as_ref().map(|a| a.credentials.clone());
            telemetry::start(config, project_id, client.clone(), credentials).await?;
        }

        let variables = ComponentVariables::render(&app, &values)?;
        let cors = CorsPolicy::parse(variables.get("allowed_origins").unwrap_or(""));
        let clients =
            ClientLimits::new(&options.clients).with_component_keys(variables.get("auth_mode"));
        let outbound = Outbound {
            allowed: AllowList::new(&app.allowed_outbound_hosts, &values)?,
            client,
            auth,
        };
        let component = options.component.clone().unwrap_or(app.source.clone());
        let timeout = Duration::from_millis(options.request_timeout_ms);
        let limits = Limits {
            // Room for every slot, /health's reserve included: the pools never run out first.
            max_instances: options
                .max_concurrent_requests
                .saturating_add(HEALTH_RESERVE as u32),
            max_memory_bytes: options.max_memory_mib.saturating_mul(1024 * 1024),
            deadline_ticks: (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64,
        };
        let reuse = ReusePolicy {
            max_requests: options.max_instance_reuse_count,
            max_idle: options.max_idle_instances,
            ..ReusePolicy::default()
        };
        let mut runtime = Runtime::new(&component, limits, reuse, variables, outbound)?;
        let idle = runtime.idle().clone();
        let engine = runtime.engine().clone();

        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local_addr = listener.local_addr()?;
        let stores = Arc::new(Stores::open(&app.key_value_stores, &store_setup)?);
        runtime.set_stores(stores.clone());
        logging::info(&format!(
            "serving component {:?} ({}) from {}",
            app.component_id,
            component.display(),
            options.manifest.display()
        ));
        for limit in clients.describe() {
            logging::info(&limit);
        }
        // Scripts and tests wait for this exact line.
        println!("ion-host listening on http://{local_addr}");
        let server = Arc::new(Server::new(
            runtime,
            RequestLimits {
                max_concurrent: options.max_concurrent_requests as usize,
                body: BodyLimits {
                    max_bytes: options.max_body_bytes,
                    read_timeout: Duration::from_millis(options.body_read_timeout_ms),
                },
                body_budget: usize::try_from(options.max_buffered_body_bytes).unwrap_or(usize::MAX),
                deadline: timeout,
            },
            clients,
            ConnectionTimeouts {
                header_read: Duration::from_millis(options.header_read_timeout_ms),
                idle: Duration::from_millis(options.idle_timeout_ms),
                send: Duration::from_millis(options.send_timeout_ms),
            },
            cors,
            local_addr,
        ));
        let watched = server.clone();
        spawn_ticker(
            engine,
            idle,
            move || watched.burst_ended(),
            tokio::runtime::Handle::current(),
        );
        // The accept loop runs on a worker, not on this thread, so that what it allocates is
        // in a heap that collects after a burst (see `allocator`).
        let grace = Duration::from_millis(options.shutdown_grace_ms);
        let served =
            tokio::spawn(async move { server.run(listener, shutdown_signal(), grace).await })
                .await
                .context("the server task failed")?;
        // What the last requests recorded, before the process goes.
        telemetry::flush(Duration::from_secs(5)).await;
        // After the drain: no request is left to write, and every commit is already on disk.
        stores.close();
        served
    })
}

/// Advances the engine's epoch with wall-clock time, so that a guest past its deadline traps;
/// drops the idle instances that have waited too long, or all but a few once a burst is over;
/// and then (checked at every tick: a few atomic loads and a lock) asks the workers to give
/// the memory back.
fn spawn_ticker(
    engine: wasmtime::Engine,
    idle: Arc<IdleInstances>,
    burst_ended: impl Fn() -> bool + Send + 'static,
    workers: tokio::runtime::Handle,
) {
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
                let burst_over = burst_ended();
                let trimmed = idle.trim(std::time::Instant::now(), burst_over);
                if burst_over || trimmed > 0 {
                    allocator::release_after_burst(&workers);
                }
            }
        })
        .expect("spawn the epoch ticker thread");
}

/// Resolves on SIGTERM (how Cloud Run stops a container) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses_serve_and_compile() {
        let cli = Cli::try_parse_from(["ion-host", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["ion-host", "compile", "a.wasm", "-o", "a.cwasm"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Compile { .. })));
        assert!(Cli::try_parse_from(["ion-host", "--listen", "x"]).is_err());
    }
}
