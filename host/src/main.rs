//! ion-host: serves the Ion Mentoring WebAssembly component over HTTP with wasmtime, configured
//! by the same `spin.toml` that `spin up` reads.

mod manifest;
mod outbound;
mod runtime;
mod server;
mod variables;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::manifest::App;
use crate::outbound::AllowList;
use crate::runtime::Runtime;
use crate::server::Server;
use crate::variables::{AppVariables, ComponentVariables};

/// Serve a wasi:http component described by a Spin manifest.
#[derive(Parser, Debug)]
#[command(name = "ion-host", version)]
struct Options {
    /// The Spin manifest (version 2) naming the component, its variables and its outbound policy.
    #[arg(long, default_value = "spin.toml", env = "ION_MANIFEST")]
    manifest: PathBuf,

    /// Address to listen on. Defaults to 0.0.0.0:$PORT, with PORT defaulting to 8080.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Component file to serve instead of the manifest's `source`.
    #[arg(long, value_name = "PATH")]
    component: Option<PathBuf>,

    /// Requests handled at once; beyond it a request gets an immediate 503 with Retry-After.
    /// Also sizes the instance pool.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    max_concurrent_requests: u32,

    /// How long open requests may run after SIGTERM or Ctrl-C before the process exits.
    #[arg(long, default_value_t = 8000, value_name = "MS")]
    shutdown_grace_ms: u64,
}

fn main() {
    let options = Options::parse();
    if let Err(e) = run(options) {
        eprintln!("ion-host: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(options: Options) -> Result<()> {
    if options.max_concurrent_requests == 0 {
        bail!("--max-concurrent-requests must be at least 1");
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

    let app = App::load(&options.manifest)?;
    let values = AppVariables::resolve(&app, |name| std::env::var(name).ok())?;
    let variables = ComponentVariables::render(&app, &values)?;
    let allowed = AllowList::new(&app.allowed_outbound_hosts, &values)?;
    let component = options.component.unwrap_or(app.source);
    let runtime = Runtime::new(
        &component,
        options.max_concurrent_requests,
        variables,
        allowed,
    )?;

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local_addr = listener.local_addr()?;
        println!("ion-host listening on http://{local_addr}");
        eprintln!(
            "ion-host: serving component {:?} ({}) from {}",
            app.component_id,
            component.display(),
            options.manifest.display()
        );
        let server = Arc::new(Server::new(
            runtime,
            options.max_concurrent_requests as usize,
            local_addr,
        ));
        server
            .run(
                listener,
                shutdown_signal(),
                Duration::from_millis(options.shutdown_grace_ms),
            )
            .await
    })
}

/// Resolves on SIGTERM (how Cloud Run stops a container) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
