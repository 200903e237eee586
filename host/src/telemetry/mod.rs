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
mod content;
mod export;
mod ids;
mod metrics;
mod request;
pub mod semconv;
mod spans;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::credentials::Credentials;
use crate::http_client::HttpClient;
use crate::logging::{self, Trace};
pub use config::Config;
pub use request::{AttemptHandle, RequestHead, RequestTrace};

/// The running telemetry; set once at startup, when configured.
pub struct Telemetry {
    sampler: config::Sampler,
    capture_content: bool,
    metrics: metrics::Metrics,
    /// Finished spans waiting for the exporter, when traces are on.
    spans: Option<SpanBuffer>,
    flush: mpsc::Sender<oneshot::Sender<()>>,
    drops: export::Drops,
}

/// Spans waiting for export: at most `max_queue`; the exporter is woken only when a batch is
/// full (otherwise it comes on its schedule), so a request never wakes another thread.
struct SpanBuffer {
    pending: Mutex<Vec<Span>>,
    max_queue: usize,
    max_batch: usize,
    batch_full: Notify,
}

impl SpanBuffer {
    /// Everything waiting, leaving the buffer empty.
    fn take(&self) -> Vec<Span> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

impl Telemetry {
    /// Queues a finished request's spans; what does not fit is dropped and counted.
    fn offer(&self, spans: Vec<Span>) {
        let Some(buffer) = &self.spans else { return };
        let mut pending = buffer.pending.lock().unwrap_or_else(|e| e.into_inner());
        let room = buffer.max_queue.saturating_sub(pending.len());
        let dropped = spans.len().saturating_sub(room);
        pending.extend(spans.into_iter().take(room));
        let full = pending.len() >= buffer.max_batch;
        drop(pending);
        if dropped > 0 {
            self.drops
                .spans
                .fetch_add(dropped as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if full {
            buffer.batch_full.notify_one();
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
    let (flush_sender, flush_receiver) = mpsc::channel(1);
    let telemetry = TELEMETRY.get_or_init(|| Telemetry {
        sampler: config.sampler.clone(),
        capture_content: config.capture_content,
        metrics: metrics::Metrics::new(),
        spans: config.traces.is_some().then(|| SpanBuffer {
            pending: Mutex::new(Vec::new()),
            max_queue: config.batch.max_queue,
            max_batch: config.batch.max_batch,
            batch_full: Notify::new(),
        }),
        flush: flush_sender,
        drops: export::Drops::default(),
    });
    let describe = |what: &str, endpoint: Option<String>| match endpoint {
        Some(e) => format!("{what} to {e}"),
        None => format!("no {what}"),
    };
    logging::info(&format!(
        "telemetry on: {}, {} (sampler {}, semantic conventions {})",
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn telemetry(max_queue: usize, max_batch: usize) -> Telemetry {
        Telemetry {
            sampler: config::Sampler::AlwaysOn,
            capture_content: false,
            metrics: metrics::Metrics::new(),
            spans: Some(SpanBuffer {
                pending: Mutex::new(Vec::new()),
                max_queue,
                max_batch,
                batch_full: Notify::new(),
            }),
            flush: mpsc::channel(1).0,
            drops: export::Drops::default(),
        }
    }

    #[tokio::test]
    async fn the_span_queue_is_bounded_and_wakes_the_exporter_only_for_a_full_batch() {
        let telemetry = telemetry(3, 2);
        let buffer = telemetry.spans.as_ref().unwrap();
        telemetry.offer(vec![Span::default()]);
        let woken = tokio::time::timeout(Duration::from_millis(20), buffer.batch_full.notified());
        assert!(woken.await.is_err(), "one span is not a batch");
        telemetry.offer(vec![Span::default(), Span::default(), Span::default()]);
        assert_eq!(buffer.pending.lock().unwrap().len(), 3);
        assert_eq!(telemetry.drops.spans.load(Ordering::Relaxed), 1);
        let woken = tokio::time::timeout(Duration::from_millis(20), buffer.batch_full.notified());
        assert!(woken.await.is_ok(), "a full batch wakes the exporter");
        assert_eq!(buffer.take().len(), 3);
        assert!(buffer.take().is_empty());
    }
}
