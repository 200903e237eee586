//! The exporter: one background task that batches spans, collects the metrics at their
//! interval and POSTs both as OTLP http/protobuf. It never blocks a request: spans are offered
//! to a bounded queue and dropped (counted) when it is full; an export that fails drops its
//! data (counted too). What was dropped is logged at most once per [`REPORT_INTERVAL`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Map, json};
use tokio::sync::{mpsc, oneshot};

use super::Telemetry;
use super::config::{Config, Endpoint, TraceExport};
use super::ids::hex;
use super::semconv::SCHEMA_URL;
use crate::credentials::Credentials;
use crate::http_client::{HttpClient, Timeouts, full_body};
use crate::logging::{self, Severity};

/// Dropped data is logged at most this often.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Counts of what could not be exported, since the last report.
#[derive(Default)]
pub struct Drops {
    pub spans: AtomicU64,
    pub metric_exports: AtomicU64,
}

/// Where and how the data goes.
pub struct Sink {
    pub client: HttpClient,
    pub credentials: Option<Arc<Credentials>>,
    pub resource: Resource,
}

impl Sink {
    fn scope() -> InstrumentationScope {
        InstrumentationScope {
            name: "ion-host".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        }
    }

    async fn post(&self, endpoint: &Endpoint, body: Vec<u8>) -> Result<()> {
        let mut request = http::Request::post(endpoint.url.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(full_body(Bytes::from(body)))
            .context("cannot build the export request")?;
        for (name, value) in &endpoint.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        if endpoint.google_auth {
            let credentials = self
                .credentials
                .as_ref()
                .context("no Google credentials for telemetry.googleapis.com")?;
            let token = credentials
                .token()
                .await
                .context("no Google access token")?;
            let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the access token is not a header value")?;
            request.headers_mut().insert(AUTHORIZATION, bearer);
            if let Some(project) = credentials.quota_project()
                && let Ok(project) = HeaderValue::from_str(project)
            {
                request.headers_mut().insert("x-goog-user-project", project);
            }
        }
        let timeouts = Timeouts {
            connect: endpoint.timeout.min(Duration::from_secs(5)),
            first_byte: endpoint.timeout,
            between_bytes: endpoint.timeout,
        };
        let exchange = async {
            let response = self
                .client
                .send(request, timeouts)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let status = response.status();
            // Read the (small) answer so the connection goes back to the pool.
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            if !status.is_success() {
                let detail = body
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                    .unwrap_or_default();
                bail!("{} answered {status}: {detail}", endpoint.url);
            }
            Ok(())
        };
        tokio::time::timeout(endpoint.timeout, exchange)
            .await
            .with_context(|| {
                format!(
                    "{} gave no answer within {:?}",
                    endpoint.url, endpoint.timeout
                )
            })?
    }
}

/// What the exporter task reports failures with.
struct Reporter {
    last: Option<Instant>,
    error: Option<String>,
}

impl Reporter {
    fn failed(&mut self, error: String) {
        self.error = Some(error);
    }

    /// Logs what was dropped since the last report, if anything and if one is due.
    fn report(&mut self, drops: &Drops, force: bool) {
        if !force && self.last.is_some_and(|l| l.elapsed() < REPORT_INTERVAL) {
            return;
        }
        let spans = drops.spans.swap(0, Ordering::Relaxed);
        let metric_exports = drops.metric_exports.swap(0, Ordering::Relaxed);
        if spans == 0 && metric_exports == 0 {
            return;
        }
        let error = self
            .error
            .take()
            .unwrap_or_else(|| "the span queue was full".to_owned());
        let mut fields = Map::new();
        fields.insert(
            "telemetry".into(),
            json!({ "dropped_spans": spans, "failed_metric_exports": metric_exports }),
        );
        logging::write(
            Severity::Warning,
            &format!(
                "telemetry dropped {spans} spans and {metric_exports} metric exports: {error}"
            ),
            fields,
        );
        self.last = Some(Instant::now());
    }
}

pub struct Exporter {
    pub telemetry: &'static Telemetry,
    pub flush: mpsc::Receiver<oneshot::Sender<()>>,
    pub sink: Sink,
    pub config: Config,
}

impl Exporter {
    pub async fn run(mut self) {
        let mut span_tick = tokio::time::interval(self.config.batch.delay);
        let mut metric_tick = tokio::time::interval_at(
            tokio::time::Instant::now() + self.config.metric_interval,
            self.config.metric_interval,
        );
        let mut reporter = Reporter {
            last: None,
            error: None,
        };
        loop {
            tokio::select! {
                () = batch_full(self.telemetry) => self.export_spans(&mut reporter).await,
                _ = span_tick.tick() => self.export_spans(&mut reporter).await,
                _ = metric_tick.tick() => self.export_metrics(&mut reporter).await,
                done = self.flush.recv() => {
                    self.export_spans(&mut reporter).await;
                    self.export_metrics(&mut reporter).await;
                    reporter.report(&self.telemetry.drops, true);
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    continue;
                }
            }
            reporter.report(&self.telemetry.drops, false);
        }
    }

    /// Sends every span waiting, in batches.
    async fn export_spans(&self, reporter: &mut Reporter) {
        let Some(buffer) = &self.telemetry.spans else {
            return;
        };
        let mut batch = buffer.take();
        while !batch.is_empty() {
            let take = batch.len().min(self.config.batch.max_batch);
            let spans: Vec<Span> = batch.drain(..take).collect();
            match &self.config.traces {
                Some(TraceExport::Console) => spans.iter().for_each(print_span),
                Some(TraceExport::Otlp(endpoint)) => {
                    let count = spans.len() as u64;
                    let request = ExportTraceServiceRequest {
                        resource_spans: vec![ResourceSpans {
                            resource: Some(self.sink.resource.clone()),
                            scope_spans: vec![ScopeSpans {
                                scope: Some(Sink::scope()),
                                spans,
                                schema_url: SCHEMA_URL.to_owned(),
                            }],
                            schema_url: SCHEMA_URL.to_owned(),
                        }],
                    };
                    if let Err(e) = self.sink.post(endpoint, request.encode_to_vec()).await {
                        self.telemetry
                            .drops
                            .spans
                            .fetch_add(count, Ordering::Relaxed);
                        reporter.failed(format!("{e:#}"));
                    }
                }
                None => {}
            }
        }
    }

    async fn export_metrics(&self, reporter: &mut Reporter) {
        let Some(endpoint) = &self.config.metrics else {
            return;
        };
        let metrics = self.telemetry.metrics.snapshot(SystemTime::now());
        if metrics.is_empty() {
            return;
        }
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.sink.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(Sink::scope()),
                    metrics,
                    schema_url: SCHEMA_URL.to_owned(),
                }],
                schema_url: SCHEMA_URL.to_owned(),
            }],
        };
        if let Err(e) = self.sink.post(endpoint, request.encode_to_vec()).await {
            self.telemetry
                .drops
                .metric_exports
                .fetch_add(1, Ordering::Relaxed);
            reporter.failed(format!("{e:#}"));
        }
    }
}

/// Resolves when a batch of spans is waiting. `notify_one` keeps a permit when nobody waits, so
/// a batch filled between two waits is not missed.
async fn batch_full(telemetry: &Telemetry) {
    match &telemetry.spans {
        Some(buffer) => buffer.batch_full.notified().await,
        None => std::future::pending().await,
    }
}

/// `OTEL_TRACES_EXPORTER=console`: one log entry per span.
fn print_span(span: &Span) {
    let attributes: Map<String, serde_json::Value> = span
        .attributes
        .iter()
        .map(|kv| {
            let value = kv
                .value
                .as_ref()
                .map_or(serde_json::Value::Null, any_value_json);
            (kv.key.clone(), value)
        })
        .collect();
    let duration_ms = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano) as f64
        / 1e6;
    let mut fields = Map::new();
    fields.insert(
        "span".into(),
        json!({
            "name": span.name,
            "kind": span.kind().as_str_name(),
            "trace_id": hex(&span.trace_id),
            "span_id": hex(&span.span_id),
            "parent_span_id": hex(&span.parent_span_id),
            "duration_ms": (duration_ms * 1000.0).round() / 1000.0,
            "error": span.status.as_ref().map(|s| s.message.clone()),
            "attributes": attributes,
        }),
    );
    logging::write(Severity::Info, &format!("span {}", span.name), fields);
}

fn any_value_json(value: &opentelemetry_proto::tonic::common::v1::AnyValue) -> serde_json::Value {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match &value.value {
        Some(Value::StringValue(s)) => json!(s),
        Some(Value::IntValue(i)) => json!(i),
        Some(Value::BoolValue(b)) => json!(b),
        Some(Value::DoubleValue(d)) => json!(d),
        Some(Value::ArrayValue(a)) => a.values.iter().map(any_value_json).collect(),
        _ => serde_json::Value::Null,
    }
}

/// The resource every span and metric carries: the configured attributes, then what the host
/// knows (its version and instance; on Cloud Run, the service and revision; the project).
pub fn resource(
    config: &Config,
    project_id: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Resource {
    use super::attributes::{Value, key_value};
    use super::semconv::*;
    let mut attributes: Vec<(String, String)> = config.resource.clone();
    let mut add = |key: &str, value: String| {
        if !attributes.iter().any(|(k, _)| k == key) {
            attributes.push((key.to_owned(), value));
        }
    };
    add(SERVICE_VERSION, env!("CARGO_PKG_VERSION").to_owned());
    add(SERVICE_INSTANCE_ID, hex(&super::ids::new_trace_id()));
    if let Some(project) = project_id {
        add(GCP_PROJECT_ID, project.to_owned());
    }
    if let Some(service) = env("K_SERVICE") {
        add(CLOUD_PROVIDER, "gcp".to_owned());
        add(CLOUD_PLATFORM, "gcp_cloud_run".to_owned());
        add(FAAS_NAME, service);
        if let Some(revision) = env("K_REVISION") {
            add(FAAS_VERSION, revision);
        }
    }
    Resource {
        attributes: attributes
            .iter()
            .map(|(k, v)| key_value(k, &Value::Str(v.clone())))
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A server that answers every request with `status` and keeps the request heads.
    async fn server(status: u16) -> (String, Arc<Mutex<Vec<http::request::Parts>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let kept = kept.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: http::Request<_>| {
                        kept.lock().unwrap().push(request.into_parts().0);
                        async move {
                            let mut response = hyper::Response::new(http_body_util::Full::new(
                                Bytes::from_static(b""),
                            ));
                            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, seen)
    }

    fn endpoint(url: &str, google_auth: bool) -> Endpoint {
        Endpoint {
            url: url.parse().unwrap(),
            headers: vec![(
                http::HeaderName::from_static("x-tenant"),
                HeaderValue::from_static("ion"),
            )],
            timeout: Duration::from_secs(5),
            google_auth,
        }
    }

    fn sink(credentials: Option<Credentials>) -> Sink {
        Sink {
            client: HttpClient::new(Timeouts::default()),
            credentials: credentials.map(Arc::new),
            resource: Resource::default(),
        }
    }

    #[tokio::test]
    async fn googles_endpoint_gets_the_hosts_token_and_others_only_their_headers() {
        let (url, seen) = server(200).await;
        let sink = sink(Some(Credentials::from_static("host-token".into())));
        sink.post(&endpoint(&url, true), vec![1, 2]).await.unwrap();
        sink.post(&endpoint(&url, false), vec![1, 2]).await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].headers[AUTHORIZATION], "Bearer host-token");
        assert_eq!(seen[0].headers[CONTENT_TYPE], "application/x-protobuf");
        assert_eq!(seen[0].headers["x-tenant"], "ion");
        assert_eq!(seen[0].uri.path(), "/v1/traces");
        assert!(!seen[1].headers.contains_key(AUTHORIZATION));
    }

    #[tokio::test]
    async fn a_refusal_is_an_error_that_names_the_endpoint_and_status() {
        let (url, _) = server(503).await;
        let error = sink(None)
            .post(&endpoint(&url, false), vec![])
            .await
            .unwrap_err();
        let error = format!("{error:#}");
        assert!(error.contains("503") && error.contains(&url), "{error}");
        let missing = sink(None)
            .post(&endpoint(&url, true), vec![])
            .await
            .unwrap_err();
        assert!(
            format!("{missing:#}").contains("credentials"),
            "{missing:#}"
        );
    }
}
