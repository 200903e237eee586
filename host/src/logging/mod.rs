//! Logs as Cloud Logging reads them: one JSON object per line on stdout with `severity`,
//! `message`, `httpRequest`, `logging.googleapis.com/trace` and labels; plain text when stdout is
//! a terminal. Levels come from `RUST_LOG`: a default level and `target=level` directives (see
//! [`Filter`]); default `info`.
//!
//! A guest line that is a JSON object with a string `message` is structured: its `severity`,
//! `message` and other fields (e.g. the per-chat `chat` object) make the entry, to which the
//! host adds the request's id and trace. Any other guest line is logged as plain text.
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

/// Cloud Logging's severities, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
            Severity::Alert => "ALERT",
            Severity::Emergency => "EMERGENCY",
        }
    }

    /// A severity as a guest writes it: Cloud Logging's names, any case (`WARN` too).
    fn from_name(name: &str) -> Option<Severity> {
        Some(match name.to_ascii_uppercase().as_str() {
            "DEBUG" | "TRACE" => Severity::Debug,
            "INFO" => Severity::Info,
            "NOTICE" => Severity::Notice,
            "WARNING" | "WARN" => Severity::Warning,
            "ERROR" => Severity::Error,
            "CRITICAL" => Severity::Critical,
            "ALERT" => Severity::Alert,
            "EMERGENCY" => Severity::Emergency,
            _ => return None,
        })
    }
}

/// Targets that `RUST_LOG` directives name.
pub mod target {
    /// The host's own messages (startup, shutdown, credentials, outbound policy).
    pub const HOST: &str = "ion_host";
    /// One entry per served request, with `httpRequest`.
    pub const ACCESS: &str = "ion_host::access";
    /// The component's stdout and stderr lines, the per-chat line among them.
    pub const GUEST: &str = "ion_host::guest";
}

/// The lowest severity written for a target; `None` = nothing (`off`).
type Level = Option<Severity>;

/// `RUST_LOG`, read the way `env_logger` and `tracing`'s `EnvFilter` read their plain
/// directives: comma-separated `level` (the default) and `target=level` items, where a target
/// covers itself and its `::` children and the longest matching target wins. Levels: `off`,
/// `error`, `warn`, `info`, `debug`, `trace` (= `debug`). Unreadable items are ignored. Without a
/// bare level the default is `info`.
#[derive(Debug, Clone, PartialEq)]
struct Filter {
    default: Level,
    directives: Vec<(String, Level)>,
}

impl Filter {
    fn parse(spec: &str) -> Filter {
        let mut filter = Filter {
            default: Some(Severity::Info),
            directives: Vec::new(),
        };
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some((target, level)) => {
                    if let Some(level) = parse_level(level) {
                        filter.directives.push((target.trim().to_owned(), level));
                    }
                }
                None => {
                    if let Some(level) = parse_level(item) {
                        filter.default = level;
                    }
                }
            }
        }
        filter
    }

    fn level(&self, target: &str) -> Level {
        self.directives
            .iter()
            .filter(|(t, _)| {
                target == t
                    || target
                        .strip_prefix(t.as_str())
                        .is_some_and(|rest| rest.starts_with("::"))
            })
            .max_by_key(|(t, _)| t.len())
            .map_or(self.default, |(_, level)| *level)
    }

    fn enabled(&self, target: &str, severity: Severity) -> bool {
        self.level(target).is_some_and(|min| severity >= min)
    }
}

fn parse_level(word: &str) -> Option<Level> {
    Some(match word.trim().to_ascii_lowercase().as_str() {
        "off" => None,
        "error" => Some(Severity::Error),
        "warn" | "warning" => Some(Severity::Warning),
        "info" => Some(Severity::Info),
        "debug" | "trace" => Some(Severity::Debug),
        _ => return None,
    })
}

struct Logger {
    json: bool,
    filter: Filter,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();
/// Known once configuration is resolved; trace ids are qualified with it.
static PROJECT_ID: OnceLock<String> = OnceLock::new();

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger {
        json: !std::io::stdout().is_terminal(),
        filter: Filter::parse(&std::env::var("RUST_LOG").unwrap_or_default()),
    })
}

/// Records the project id used in `logging.googleapis.com/trace`. Later calls are ignored.
pub fn set_project_id(project_id: &str) {
    let _ = PROJECT_ID.set(project_id.to_owned());
}

/// Whether the host's own messages of `severity` are written.
pub fn enabled(severity: Severity) -> bool {
    logger().filter.enabled(target::HOST, severity)
}

/// Writes one host entry: `fields` are merged into the JSON object (or appended as `k=v` in
/// text).
pub fn write(severity: Severity, message: &str, fields: Map<String, Value>) {
    write_to(target::HOST, severity, message, fields);
}

/// The JSON object of one entry.
fn entry(severity: Severity, message: &str, fields: Map<String, Value>) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("severity".into(), json!(severity.as_str()));
    entry.insert("message".into(), json!(message));
    entry.extend(fields);
    entry
}

fn write_to(target: &str, severity: Severity, message: &str, fields: Map<String, Value>) {
    let logger = logger();
    if !logger.filter.enabled(target, severity) {
        return;
    }
    let line = if logger.json {
        Value::Object(entry(severity, message, fields)).to_string()
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
    /// 32 lowercase hex characters.
    pub trace_id: String,
    /// 16 lowercase hex characters, as Cloud Logging's `spanId` wants them.
    pub span_id: Option<String>,
    /// Whether the caller sampled (recorded) the trace, when it said.
    pub sampled: Option<bool>,
}

impl Trace {
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Trace> {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        header("traceparent")
            .and_then(Trace::from_traceparent)
            .or_else(|| header("x-cloud-trace-context").and_then(Trace::from_cloud_trace_context))
    }

    /// `version-traceid-parentid-flags` (W3C Trace Context): the parent id is the caller's
    /// span; bit 0 of the flags is "sampled". All-zero ids are invalid.
    fn from_traceparent(value: &str) -> Option<Trace> {
        let [version, trace, span, flags] = value.trim().split('-').collect::<Vec<_>>()[..] else {
            return None;
        };
        let valid = version.len() == 2
            && version.chars().all(|c| c.is_ascii_hexdigit())
            && version != "ff"
            && trace.len() == 32
            && is_hex_id(trace)
            && span.len() == 16
            && is_hex_id(span)
            && flags.len() == 2;
        let flags = u8::from_str_radix(flags, 16).ok().filter(|_| valid)?;
        Some(Trace {
            trace_id: trace.to_ascii_lowercase(),
            span_id: Some(span.to_ascii_lowercase()),
            sampled: Some(flags & 1 == 1),
        })
    }

    /// `TRACE_ID/SPAN_ID;o=OPTIONS` (Google's older header): the span id is decimal and becomes
    /// 16 hex characters; `o=1` means sampled.
    fn from_cloud_trace_context(value: &str) -> Option<Trace> {
        let (ids, options) = value.trim().split_once(';').unwrap_or((value.trim(), ""));
        let (trace, span) = ids.split_once('/').unwrap_or((ids, ""));
        if trace.len() != 32 || !is_hex_id(trace) {
            return None;
        }
        let span = span
            .parse::<u64>()
            .ok()
            .filter(|s| *s != 0)
            .map(|s| format!("{s:016x}"));
        let sampled = match options.trim().strip_prefix("o=") {
            Some("1") => Some(true),
            Some("0") => Some(false),
            _ => None,
        };
        Some(Trace {
            trace_id: trace.to_ascii_lowercase(),
            span_id: span,
            sampled,
        })
    }
}

/// Hex digits, not all zero.
fn is_hex_id(text: &str) -> bool {
    text.chars().all(|c| c.is_ascii_hexdigit()) && text.chars().any(|c| c != '0')
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
            if let Some(sampled) = trace.sampled {
                fields.insert(
                    "logging.googleapis.com/trace_sampled".into(),
                    json!(sampled),
                );
            }
        }
        fields
    }

    pub fn write(&self, severity: Severity, message: &str) {
        write(severity, message, self.fields());
    }

    /// Fields for an entry of this request that came from the guest's `stream`.
    fn guest_fields(&self, stream: &str) -> Map<String, Value> {
        let mut fields = self.fields();
        if let Some(Value::Object(labels)) = fields.get_mut("logging.googleapis.com/labels") {
            labels.insert("stream".into(), json!(stream));
        }
        fields
    }
}

/// A request URL as the access log shows it. A conversation id grants access to the
/// conversation, so `/conversations/{id}` keeps only the id's first 8 characters.
pub fn logged_url(url: &str) -> String {
    const PREFIX: &str = "/conversations/";
    match url.strip_prefix(PREFIX) {
        Some(rest) if rest.chars().count() > 8 => {
            let kept: String = rest.chars().take(8).collect();
            format!("{PREFIX}{kept}…")
        }
        _ => url.to_owned(),
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
    if !logger().filter.enabled(target::ACCESS, severity) {
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
    write_to(
        target::ACCESS,
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

/// Fields of an entry that only the host sets.
fn is_reserved(key: &str) -> bool {
    key == "httpRequest" || key == "time" || key.starts_with("logging.googleapis.com/")
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
        if let Some((severity, message, fields)) = self.entry(line) {
            write_to(target::GUEST, severity, &message, fields);
        }
    }

    /// The entry for one guest line: structured when the line is a JSON object with a string
    /// `message`, plain text otherwise. `None` for an empty line.
    fn entry(&self, line: &[u8]) -> Option<(Severity, String, Map<String, Value>)> {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            return None;
        }
        let mut fields = self.context.guest_fields(self.stream);
        let structured = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) if object.get("message").is_some_and(Value::is_string) => {
                Some(object)
            }
            _ => None,
        };
        let Some(mut object) = structured else {
            return Some((self.severity, line.to_owned(), fields));
        };
        let message = match object.remove("message") {
            Some(Value::String(message)) => message,
            _ => unreachable!("checked to be a string"),
        };
        let severity = object
            .remove("severity")
            .and_then(|s| s.as_str().and_then(Severity::from_name))
            .unwrap_or(self.severity);
        // The host's fields win: a guest cannot set another request's id, trace or
        // httpRequest.
        for (key, value) in object {
            if !is_reserved(&key) {
                fields.entry(key).or_insert(value);
            }
        }
        Some((severity, message, fields))
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

    /// Logs one whole line as if the guest had written it (the host writes the per-chat line
    /// of a stream it ends itself).
    pub fn write_line(&self, line: &str) {
        self.emit(line.as_bytes());
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
mod url_tests {
    use super::logged_url;

    #[test]
    fn conversation_ids_are_cut_in_the_access_log() {
        assert_eq!(
            logged_url("/conversations/0123456789abcdef0123456789abcdef"),
            "/conversations/01234567…"
        );
        assert_eq!(logged_url("/conversations/abc"), "/conversations/abc");
        assert_eq!(logged_url("/chat?x=1"), "/chat?x=1");
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
        assert_eq!(t.sampled, Some(true));

        let unsampled = Trace::from_headers(&headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )]))
        .unwrap();
        assert_eq!(unsampled.sampled, Some(false));

        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert_eq!(
                Trace::from_headers(&headers(&[("traceparent", bad)])),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn cloud_trace_context_span_ids_become_16_hex_characters() {
        let t = Trace::from_headers(&headers(&[
            ("traceparent", "garbage"),
            (
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/123;o=1",
            ),
        ]))
        .unwrap();
        assert_eq!(t.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(t.span_id.as_deref(), Some("000000000000007b"));
        assert_eq!(t.sampled, Some(true));

        let t = Trace::from_headers(&headers(&[(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/18446744073709551615;o=0",
        )]))
        .unwrap();
        assert_eq!(t.span_id.as_deref(), Some("ffffffffffffffff"));
        assert_eq!(t.sampled, Some(false));

        // No span, or one that is not a 64-bit decimal: the trace alone.
        for value in [
            "105445aa7843bc8bf206b12000100000",
            "105445aa7843bc8bf206b12000100000/abc",
            "105445aa7843bc8bf206b12000100000/18446744073709551616",
        ] {
            let t = Trace::from_headers(&headers(&[("x-cloud-trace-context", value)])).unwrap();
            assert_eq!(t.span_id, None, "{value}");
            assert_eq!(t.sampled, None, "{value}");
        }

        for bad in ["<script>", "105445aa/1;o=1", ""] {
            assert_eq!(
                Trace::from_headers(&headers(&[("x-cloud-trace-context", bad)])),
                None,
                "{bad}"
            );
        }
        assert_eq!(Trace::from_headers(&headers(&[])), None);
    }

    #[test]
    fn trace_fields_carry_span_and_sampling() {
        let context = RequestContext {
            request_id: "r1".into(),
            trace: Trace::from_headers(&headers(&[(
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/1;o=1",
            )])),
        };
        let fields = context.fields();
        assert_eq!(fields["logging.googleapis.com/spanId"], "0000000000000001");
        assert_eq!(fields["logging.googleapis.com/trace_sampled"], true);
        assert_eq!(fields["logging.googleapis.com/labels"]["request_id"], "r1");
    }

    #[test]
    fn rust_log_honours_target_directives() {
        let f = Filter::parse("debug,hyper=warn");
        assert_eq!(f.level(target::HOST), Some(Severity::Debug));
        assert_eq!(f.level("hyper"), Some(Severity::Warning));
        assert_eq!(f.level("hyper::client"), Some(Severity::Warning));
        assert_eq!(f.level("hyperx"), Some(Severity::Debug));

        let f = Filter::parse("warn,ion_host::guest=info");
        assert_eq!(f.level(target::HOST), Some(Severity::Warning));
        assert_eq!(f.level(target::ACCESS), Some(Severity::Warning));
        assert_eq!(f.level(target::GUEST), Some(Severity::Info));

        // Without a bare level the default stays info; the longest target wins.
        let f = Filter::parse("ion_host=error, ion_host::access=off");
        assert_eq!(f.level("elsewhere"), Some(Severity::Info));
        assert_eq!(f.level(target::HOST), Some(Severity::Error));
        assert_eq!(f.level(target::GUEST), Some(Severity::Error));
        assert_eq!(f.level(target::ACCESS), None);
        assert!(!f.enabled(target::ACCESS, Severity::Emergency));

        assert_eq!(Filter::parse("ERROR").level("x"), Some(Severity::Error));
        assert_eq!(Filter::parse("trace").level("x"), Some(Severity::Debug));
        assert_eq!(Filter::parse("off").level("x"), None);
        // Unreadable items are ignored.
        assert_eq!(Filter::parse("loud,x=y,").level("x"), Some(Severity::Info));
        assert_eq!(Filter::parse(""), Filter::parse("info"));
    }

    fn traced_context() -> Arc<RequestContext> {
        Arc::new(RequestContext {
            request_id: "r7".into(),
            trace: Trace::from_headers(&headers(&[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )])),
        })
    }

    /// The per-chat line as the component writes it.
    pub(crate) const CHAT_LINE: &str = r#"{"severity":"WARNING","message":"chat","chat":{"route":"/chat","stream":false,"model":"gemini-3.5-flash","persona":"Elro","resonance_key":"curious-burst-inquiry","outcome":"upstream_rate_limited","status":429,"finish_reason":null,"attempts":3,"prompt_tokens":null,"completion_tokens":null,"thoughts_tokens":null,"total_tokens":null,"upstream_latency_ms":153,"total_latency_ms":160}}"#;

    /// The JSON entry the host writes for one guest stdout line.
    pub(crate) fn guest_stdout_entry(line: &str) -> Value {
        let out = GuestOutput::stdout(traced_context());
        let (severity, message, fields) = out.entry(line.as_bytes()).expect("an entry");
        Value::Object(entry(severity, &message, fields))
    }

    #[test]
    fn structured_guest_lines_keep_their_severity_and_fields() {
        let e = guest_stdout_entry(CHAT_LINE);
        assert_eq!(e["severity"], "WARNING");
        assert_eq!(e["message"], "chat");
        assert_eq!(e["chat"]["persona"], "Elro");
        assert_eq!(e["chat"]["attempts"], 3);
        assert_eq!(e["chat"]["total_tokens"], Value::Null);
        assert_eq!(e["logging.googleapis.com/labels"]["request_id"], "r7");
        assert_eq!(e["logging.googleapis.com/labels"]["stream"], "stdout");
        assert_eq!(
            e["logging.googleapis.com/trace"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(e["logging.googleapis.com/spanId"], "00f067aa0ba902b7");
        assert_eq!(e["logging.googleapis.com/trace_sampled"], true);

        // A guest cannot replace the host's fields.
        let e = guest_stdout_entry(
            r#"{"message":"m","severity":"error","logging.googleapis.com/trace":"x","logging.googleapis.com/labels":{"request_id":"forged"},"httpRequest":{"status":200},"extra":1}"#,
        );
        assert_eq!(e["severity"], "ERROR");
        assert_eq!(e["logging.googleapis.com/labels"]["request_id"], "r7");
        assert_eq!(
            e["logging.googleapis.com/trace"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(e.get("httpRequest").is_none());
        assert_eq!(e["extra"], 1);

        // An unknown or missing severity takes the stream's.
        let e = guest_stdout_entry(r#"{"message":"m","severity":"LOUD"}"#);
        assert_eq!(e["severity"], "INFO");
        let err = GuestOutput::stderr(traced_context());
        let (severity, message, _) = err.entry(br#"{"message":"m"}"#).unwrap();
        assert_eq!((severity, message.as_str()), (Severity::Warning, "m"));
    }

    #[test]
    fn other_guest_lines_stay_plain_text() {
        for line in [
            "upstream failure: 503",
            r#"{"msg":"no message field"}"#,
            r#"{"message": 42}"#,
            r#"["message"]"#,
            "{not json",
        ] {
            let e = guest_stdout_entry(line);
            assert_eq!(e["message"], line, "{line}");
            assert_eq!(e["severity"], "INFO");
            assert_eq!(e["logging.googleapis.com/labels"]["request_id"], "r7");
        }
        let out = GuestOutput::stdout(traced_context());
        assert!(out.entry(b"  \r").is_none());
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
