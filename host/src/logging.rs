//! Logs as Cloud Logging reads them: one JSON object per line on stdout with `severity`,
//! `message`, `httpRequest`, `logging.googleapis.com/trace` and labels; plain text when stdout is
//! a terminal. The level comes from `RUST_LOG` (`error`, `warn`, `info`, `debug`; default `info`).
//!
//! Written by hand rather than with a tracing subscriber: Cloud Logging's schema is a handful of
//! fixed field names, and serde_json writes them directly with no formatter layer to adapt.

use std::io::{IsTerminal, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::AsyncWrite;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Debug,
    Info,
    Warning,
    Error,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }

    /// `RUST_LOG`-style: the first level word found (`ion_host=debug` works too).
    fn from_filter(filter: &str) -> Option<Severity> {
        let level = filter
            .rsplit(['=', ','])
            .next()?
            .trim()
            .to_ascii_lowercase();
        match level.as_str() {
            "error" => Some(Severity::Error),
            "warn" | "warning" => Some(Severity::Warning),
            "info" => Some(Severity::Info),
            "debug" | "trace" => Some(Severity::Debug),
            _ => None,
        }
    }
}

struct Logger {
    json: bool,
    min: Severity,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();
/// Known once configuration is resolved; trace ids are qualified with it.
static PROJECT_ID: OnceLock<String> = OnceLock::new();

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger {
        json: !std::io::stdout().is_terminal(),
        min: std::env::var("RUST_LOG")
            .ok()
            .and_then(|f| Severity::from_filter(&f))
            .unwrap_or(Severity::Info),
    })
}

/// Records the project id used in `logging.googleapis.com/trace`. Later calls are ignored.
pub fn set_project_id(project_id: &str) {
    let _ = PROJECT_ID.set(project_id.to_owned());
}

pub fn enabled(severity: Severity) -> bool {
    severity >= logger().min
}

/// Writes one entry: `fields` are merged into the JSON object (or appended as `k=v` in text).
pub fn write(severity: Severity, message: &str, fields: Map<String, Value>) {
    let logger = logger();
    if severity < logger.min {
        return;
    }
    let line = if logger.json {
        let mut entry = Map::new();
        entry.insert("severity".into(), json!(severity.as_str()));
        entry.insert("message".into(), json!(message));
        entry.extend(fields);
        Value::Object(entry).to_string()
    } else {
        let mut line = format!("{:<7} {message}", severity.as_str());
        for (key, value) in fields {
            line.push_str(&format!(" {key}={value}"));
        }
        line
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
}

pub fn info(message: &str) {
    write(Severity::Info, message, Map::new());
}

pub fn warn(message: &str) {
    write(Severity::Warning, message, Map::new());
}

pub fn error(message: &str) {
    write(Severity::Error, message, Map::new());
}

/// The trace a request belongs to, from `traceparent` (W3C) or `X-Cloud-Trace-Context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub trace_id: String,
    pub span_id: Option<String>,
}

impl Trace {
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Trace> {
        if let Some(value) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            // version-traceid-spanid-flags
            let parts: Vec<&str> = value.trim().split('-').collect();
            if let [_, trace, span, _] = parts.as_slice()
                && trace.len() == 32
                && trace.chars().all(|c| c.is_ascii_hexdigit())
                && *trace != "00000000000000000000000000000000"
            {
                return Some(Trace {
                    trace_id: trace.to_ascii_lowercase(),
                    span_id: Some(span.to_ascii_lowercase()),
                });
            }
        }
        let value = headers.get("x-cloud-trace-context")?.to_str().ok()?;
        // TRACE_ID/SPAN_ID;o=1
        let (trace, rest) = value.split_once('/').unwrap_or((value, ""));
        let span = rest.split(';').next().filter(|s| !s.is_empty());
        (!trace.is_empty() && trace.len() <= 64 && trace.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| Trace {
                trace_id: trace.to_ascii_lowercase(),
                span_id: span
                    .filter(|s| s.chars().all(|c| c.is_ascii_digit()))
                    .map(str::to_owned),
            })
    }
}

/// Per-request context carried into every entry of that request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub trace: Option<Trace>,
}

impl RequestContext {
    fn fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert(
            "logging.googleapis.com/labels".into(),
            json!({ "request_id": self.request_id }),
        );
        if let Some(trace) = &self.trace {
            let id = match PROJECT_ID.get() {
                Some(project) => format!("projects/{project}/traces/{}", trace.trace_id),
                None => trace.trace_id.clone(),
            };
            fields.insert("logging.googleapis.com/trace".into(), json!(id));
            if let Some(span) = &trace.span_id {
                fields.insert("logging.googleapis.com/spanId".into(), json!(span));
            }
        }
        fields
    }

    pub fn write(&self, severity: Severity, message: &str) {
        write(severity, message, self.fields());
    }
}

/// The `httpRequest` of one served request.
#[derive(Debug, Clone)]
pub struct HttpRequestEntry {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub request_size: Option<u64>,
    pub user_agent: Option<String>,
    pub remote_ip: String,
    pub protocol: String,
    /// Time to the response head.
    pub latency: Duration,
}

/// One entry per request; 5xx are errors, 4xx warnings, a successful `/health` debug.
pub fn request(context: &RequestContext, entry: &HttpRequestEntry) {
    let severity = match entry.status {
        500.. => Severity::Error,
        400..=499 => Severity::Warning,
        // Cloud Run's request log already has every health check; at info level a successful
        // one would only add a line (and its CPU) per probe.
        _ if entry.url == "/health" => Severity::Debug,
        _ => Severity::Info,
    };
    if !enabled(severity) {
        return;
    }
    let mut fields = context.fields();
    let mut http_request = json!({
        "requestMethod": entry.method,
        "requestUrl": entry.url,
        "status": entry.status,
        "remoteIp": entry.remote_ip,
        "protocol": entry.protocol,
        "latency": format!("{:.6}s", entry.latency.as_secs_f64()),
    });
    if let Some(size) = entry.request_size {
        http_request["requestSize"] = json!(size.to_string());
    }
    if let Some(agent) = &entry.user_agent {
        http_request["userAgent"] = json!(agent);
    }
    fields.insert("httpRequest".into(), http_request);
    write(
        severity,
        &format!("{} {} {}", entry.method, entry.url, entry.status),
        fields,
    );
}

/// A guest's stdout or stderr: each complete line becomes one entry of the request.
#[derive(Clone)]
pub struct GuestOutput {
    context: Arc<RequestContext>,
    severity: Severity,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
}

/// Longest guest line kept; longer lines are cut so one request cannot flood the log.
const MAX_GUEST_LINE: usize = 16 * 1024;

impl GuestOutput {
    pub fn stdout(context: Arc<RequestContext>) -> GuestOutput {
        GuestOutput::new(context, Severity::Info, "stdout")
    }

    pub fn stderr(context: Arc<RequestContext>) -> GuestOutput {
        GuestOutput::new(context, Severity::Warning, "stderr")
    }

    fn new(context: Arc<RequestContext>, severity: Severity, stream: &'static str) -> GuestOutput {
        GuestOutput {
            context,
            severity,
            stream,
            pending: Arc::default(),
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            return;
        }
        let mut fields = self.context.fields();
        if let Some(Value::Object(labels)) = fields.get_mut("logging.googleapis.com/labels") {
            labels.insert("stream".into(), json!(self.stream));
        }
        write(self.severity, line, fields);
    }

    fn accept(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for byte in bytes {
            if *byte == b'\n' {
                self.emit(&pending);
                pending.clear();
            } else if pending.len() < MAX_GUEST_LINE {
                pending.push(*byte);
            }
        }
    }

    /// Emits a final unterminated line, if any.
    pub fn flush_pending(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.is_empty() {
            self.emit(&pending);
            pending.clear();
        }
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.flush_pending();
        Poll::Ready(Ok(()))
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn traceparent_wins_and_is_validated() {
        let t = Trace::from_headers(&headers(&[
            (
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            ),
            (
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/1;o=1",
            ),
        ]))
        .unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id.as_deref(), Some("00f067aa0ba902b7"));

        let t = Trace::from_headers(&headers(&[
            ("traceparent", "garbage"),
            (
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/123;o=1",
            ),
        ]))
        .unwrap();
        assert_eq!(t.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(t.span_id.as_deref(), Some("123"));

        assert_eq!(
            Trace::from_headers(&headers(&[("x-cloud-trace-context", "<script>")])),
            None
        );
        assert_eq!(Trace::from_headers(&headers(&[])), None);
    }

    #[test]
    fn levels_parse_like_rust_log() {
        assert_eq!(Severity::from_filter("debug"), Some(Severity::Debug));
        assert_eq!(
            Severity::from_filter("ion_host=warn"),
            Some(Severity::Warning)
        );
        assert_eq!(Severity::from_filter("ERROR"), Some(Severity::Error));
        assert_eq!(Severity::from_filter("loud"), None);
    }

    #[test]
    fn guest_output_splits_lines_and_bounds_them() {
        let out = GuestOutput::stdout(Arc::new(RequestContext {
            request_id: "r1".into(),
            trace: None,
        }));
        out.accept(b"first line\nsecond ");
        assert_eq!(&*out.pending.lock().unwrap(), b"second ");
        out.accept(&vec![b'x'; MAX_GUEST_LINE * 2]);
        assert_eq!(out.pending.lock().unwrap().len(), MAX_GUEST_LINE);
        out.flush_pending();
        assert!(out.pending.lock().unwrap().is_empty());
    }
}
