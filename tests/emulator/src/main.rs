//! `vertex-emulator`: serves the Vertex AI Gemini emulator until SIGTERM or Ctrl-C.
//!
//! Prints exactly one line on stdout once it listens,
//! `vertex-emulator listening on http://ADDR`, which scripts wait for and parse.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vertex_emulator::{Emulator, EmulatorConfig};

/// Local emulator of the Vertex AI Gemini REST API (generateContent, streamGenerateContent).
///
/// Faults: put [[emulator:FAULTS]] in the last user text or send `x-emulator-fault: FAULTS`,
/// with FAULTS one or more (comma-separated) of 400 401 403 404 429 500 503 504, STATUSxN
/// (the first N attempts fail, e.g. 503x2), stream-error, safety, blocked=REASON,
/// finish-safety, empty, garbage, drop, the modifiers slow, slow=MS, chunk-delay=MS,
/// retry-delay=MS, pad=BYTES (a large unary reply), and for requests with tools parallel-calls (call two functions at once) and
/// no-tool (answer with text in mode AUTO).
#[derive(Debug, Parser)]
#[command(name = "vertex-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Delay added before every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay between the events of a streamed reply, in milliseconds (the fault
    /// chunk-delay=MS overrides it for one request).
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Require this bearer token (any non-empty token is accepted otherwise).
    #[arg(long)]
    token: Option<String>,
    /// Keep received requests in memory (only readable in-process, so off by default here).
    #[arg(long, overrides_with = "no_record")]
    record: bool,
    /// Do not keep received requests (the default).
    #[arg(long)]
    no_record: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = EmulatorConfig {
        latency: Duration::from_millis(args.latency_ms),
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        expected_token: args.token.filter(|t| !t.is_empty()),
        record: args.record && !args.no_record,
    };
    let emulator = match Emulator::bind(&args.listen, config).await {
        Ok(emulator) => emulator,
        Err(err) => {
            eprintln!("vertex-emulator: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    // Handle SIGTERM before announcing the address: a caller may stop us right after reading it.
    let stopped = stop_signal();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "vertex-emulator listening on {}", emulator.url());
    let _ = stdout.flush();
    drop(stdout);

    stopped.await;
    emulator.shutdown_and_wait().await;
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM or Ctrl-C; SIGTERM is registered when this is called, not when polled.
fn stop_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            match terminate {
                Some(mut terminate) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = terminate.recv() => {}
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
