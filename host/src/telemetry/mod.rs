//! OpenTelemetry traces and metrics in the GenAI semantic conventions ([`semconv`] pins the
//! version), exported as OTLP http/protobuf: to any collector, or on Cloud Run to
//! `telemetry.googleapis.com` with the host's own Google credentials. Off unless configured
//! ([`config`]).
//!
//! - [`request`]: a request's server span and its Vertex AI attempts' client spans; the trace
//!   it continues (`traceparent` or `X-Cloud-Trace-Context`) and passes on to Vertex AI.
//! - [`metrics`]: the histograms, aggregated in memory with bounded series.
//! - [`export`]: the background task that batches and sends, and counts what it drops.
//!
//! The messages are the official OTLP definitions (`opentelemetry-proto`, encoded by prost).
//! The OpenTelemetry SDK's processors run their own threads and block on export; the host's
//! export runs on its tokio runtime instead, with its HTTP client and credentials.

mod attributes;
pub mod config;
mod export;
mod ids;
mod metrics;
mod request;
pub mod semconv;
mod spans;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::{mpsc, oneshot};

use crate::credentials::Credentials;
use crate::http_client::HttpClient;
use crate::logging::{self, Trace};
pub use config::Config;
pub use request::{AttemptHandle, RequestHead, RequestTrace};

/// The running telemetry; set once at startup, when configured.
pub struct Telemetry {
    sampler: config::Sampler,
    metrics: metrics::Metrics,
    spans: Option<mpsc::Sender<Span>>,
    flush: mpsc::Sender<oneshot::Sender<()>>,
    drops: export::Drops,
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

impl Telemetry {
    /// Queues a finished request's spans; what does not fit is dropped and counted.
    fn offer(&self, spans: Vec<Span>) {
        let Some(queue) = &self.spans else { return };
        for span in spans {
            if queue.try_send(span).is_err() {
                self.drops
                    .spans
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Starts telemetry as `config` says, on the current tokio runtime. `credentials` are the
/// host's Google credentials when it already has them (for Vertex AI); Google's endpoint
/// without them looks for Application Default Credentials.
pub async fn start(
    config: Config,
    project_id: Option<&str>,
    client: HttpClient,
    credentials: Option<Arc<Credentials>>,
) -> Result<()> {
    let google = [
        match &config.traces {
            Some(config::TraceExport::Otlp(e)) => Some(e),
            _ => None,
        },
        config.metrics.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(|e| e.google_auth);
    let credentials = match credentials {
        Some(c) => Some(c),
        None if google => Some(Arc::new(
            Credentials::discover(client.clone())
                .await
                .context("telemetry.googleapis.com needs Google credentials")?,
        )),
        None => None,
    };
    let (span_sender, span_receiver) = mpsc::channel(config.batch.max_queue);
    let (flush_sender, flush_receiver) = mpsc::channel(1);
    let telemetry = TELEMETRY.get_or_init(|| Telemetry {
        sampler: config.sampler.clone(),
        metrics: metrics::Metrics::new(),
        spans: config.traces.is_some().then_some(span_sender),
        flush: flush_sender,
        drops: export::Drops::default(),
    });
    let describe = |what: &str, endpoint: Option<String>| match endpoint {
        Some(e) => format!("{what} to {e}"),
        None => format!("no {what}"),
    };
    logging::info(&format!(
        "telemetry on: {}, {} (sampler {:?}, semantic conventions {})",
        describe(
            "traces",
            config.traces.as_ref().map(|t| match t {
                config::TraceExport::Otlp(e) => e.url.to_string(),
                config::TraceExport::Console => "the log".to_owned(),
            })
        ),
        describe(
            "metrics",
            config
                .metrics
                .as_ref()
                .map(|e| format!("{} every {:?}", e.url, config.metric_interval))
        ),
        config.sampler,
        semconv::SCHEMA_URL.rsplit('/').next().unwrap_or_default(),
    ));
    let exporter = export::Exporter {
        telemetry,
        spans: span_receiver,
        flush: flush_receiver,
        sink: export::Sink {
            client,
            credentials,
            resource: export::resource(&config, project_id, |n| std::env::var(n).ok()),
        },
        config,
    };
    tokio::spawn(exporter.run());
    Ok(())
}

/// Sends what is queued and the metrics once more (at shutdown), waiting at most `limit`.
pub async fn flush(limit: Duration) {
    let Some(telemetry) = TELEMETRY.get() else {
        return;
    };
    let (done, finished) = oneshot::channel();
    if telemetry.flush.send(done).await.is_ok() {
        let _ = tokio::time::timeout(limit, finished).await;
    }
}

/// A served request's trace, or `None` when telemetry is off.
pub fn start_request(
    inbound: Option<&Trace>,
    head: impl FnOnce() -> RequestHead,
    started: Instant,
) -> Option<Arc<RequestTrace>> {
    let telemetry = TELEMETRY.get()?;
    Some(Arc::new(RequestTrace::start(
        telemetry,
        inbound,
        head(),
        started,
    )))
}
