//! The component's stdout and stderr: each line becomes an entry of the request that wrote it.
//!
//! A guest line that is a JSON object with a string `message` is structured: its `severity`,
//! `message` and other fields (e.g. the per-chat `chat` object) make the entry, to which the
//! host adds the request's id and trace. Any other guest line is logged as plain text.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::io::AsyncWrite;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::{RequestContext, Severity, line, target};

/// A guest's stdout or stderr: each complete line becomes one entry of the request being
/// served. An instance that serves request after request keeps its streams (the guest opens
/// them once), so the request they write for is switched with [`GuestOutput::serve`].
#[derive(Clone)]
pub struct GuestOutput {
    severity: Severity,
    stream: &'static str,
    current: Arc<Mutex<Current>>,
}

/// The request a stream writes for, and the start of a line not ended yet.
struct Current {
    context: Arc<RequestContext>,
    pending: Vec<u8>,
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
            severity,
            stream,
            current: Arc::new(Mutex::new(Current {
                context,
                pending: Vec::new(),
            })),
        }
    }

    /// From now on, lines are `context`'s. A line the previous request left unended is
    /// written as its own first, so no line ever mixes two requests' output.
    pub fn serve(&self, context: Arc<RequestContext>) {
        let mut current = self.lock();
        self.end_pending(&mut current);
        current.context = context;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, context: &RequestContext, line: &[u8]) {
        if let Some((severity, message, fields)) = self.entry(context, line) {
            line::write(target::GUEST, severity, &message, fields);
        }
    }

    /// The entry for one guest line: structured when the line is a JSON object with a string
    /// `message`, plain text otherwise. `None` for an empty line.
    fn entry(
        &self,
        context: &RequestContext,
        line: &[u8],
    ) -> Option<(Severity, String, Map<String, Value>)> {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            return None;
        }
        let mut fields = guest_fields(context, self.stream);
        let structured = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) if object.get("message").is_some_and(Value::is_string) => {
                Some(object)
            }
            _ => None,
        };
        let Some(mut object) = structured else {
            return Some((self.severity, line.to_owned(), fields));
        };
        // The per-chat line also completes the request's spans (tokens, finish reason).
        if let (Some(telemetry), Some(chat)) = (&context.telemetry, object.get("chat")) {
            telemetry.note_chat(chat);
        }
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
        let mut current = self.lock();
        let Current { context, pending } = &mut *current;
        for byte in bytes {
            if *byte == b'\n' {
                self.emit(context, pending);
                pending.clear();
            } else if pending.len() < MAX_GUEST_LINE {
                pending.push(*byte);
            }
        }
    }

    /// Logs one whole line as if the guest had written it (the host writes the per-chat line
    /// of a stream it ends itself).
    pub fn write_line(&self, line: &str) {
        let context = self.lock().context.clone();
        self.emit(&context, line.as_bytes());
    }

    /// Emits a final unterminated line, if any.
    pub fn flush_pending(&self) {
        let mut current = self.lock();
        self.end_pending(&mut current);
    }

    fn end_pending(&self, current: &mut Current) {
        if !current.pending.is_empty() {
            self.emit(&current.context, &current.pending);
            current.pending.clear();
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

    /// Taken in on the guest's own call. wasmtime's default wraps `async_stream` in a pipe
    /// whose task writes behind the guest: every line then cost a task wake-up (often on the
    /// other worker), and a line written without a flush could still be in that pipe when the
    /// instance was switched to its next request.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestOutputStream(self.clone()))
    }
}

/// Most bytes the guest may write in one call: its writes are never held up, and a line is
/// cut at [`MAX_GUEST_LINE`] whatever it writes.
const WRITE_PERMIT: usize = 64 * 1024;

/// [`GuestOutput`] as a WASIp2 output stream that is always ready.
struct GuestOutputStream(GuestOutput);

impl OutputStream for GuestOutputStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutputStream {
    async fn ready(&mut self) {}
}

/// Fields for an entry of `context` that came from the guest's `stream`.
fn guest_fields(context: &RequestContext, stream: &str) -> Map<String, Value> {
    let mut fields = context.fields();
    if let Some(Value::Object(labels)) = fields.get_mut("logging.googleapis.com/labels") {
        labels.insert("stream".into(), json!(stream));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::Trace;

    fn traceparent(value: &str) -> http::HeaderMap {
        [(
            http::HeaderName::from_static("traceparent"),
            value.parse().unwrap(),
        )]
        .into_iter()
        .collect()
    }

    fn traced_context() -> Arc<RequestContext> {
        Arc::new(RequestContext {
            request_id: "r7".into(),
            telemetry: None,
            trace: Trace::from_headers(&traceparent(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )),
        })
    }

    /// An untraced request's context.
    fn request(id: &str) -> Arc<RequestContext> {
        Arc::new(RequestContext {
            request_id: id.into(),
            telemetry: None,
            trace: None,
        })
    }

    /// The per-chat line as the component writes it.
    const CHAT_LINE: &str = r#"{"severity":"WARNING","message":"chat","chat":{"route":"/chat","stream":false,"model":"gemini-3.5-flash","persona":"Elro","resonance_key":"curious-burst-inquiry","outcome":"upstream_rate_limited","status":429,"finish_reason":null,"attempts":3,"prompt_tokens":null,"completion_tokens":null,"thoughts_tokens":null,"total_tokens":null,"upstream_latency_ms":153,"total_latency_ms":160}}"#;

    /// The JSON entry the host writes for one guest stdout line.
    fn guest_stdout_entry(line: &str) -> Value {
        let out = GuestOutput::stdout(traced_context());
        let (severity, message, fields) = out
            .entry(&traced_context(), line.as_bytes())
            .expect("an entry");
        Value::Object(line::entry(severity, &message, fields))
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
        let (severity, message, _) = err.entry(&traced_context(), br#"{"message":"m"}"#).unwrap();
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
        assert!(out.entry(&traced_context(), b"  \r").is_none());
    }

    #[test]
    fn guest_output_splits_lines_and_bounds_them() {
        let log = crate::logging::Capture::start();
        let out = GuestOutput::stdout(request("r1"));
        out.accept(b"first line\nsecond ");
        assert_eq!(out.lock().pending, b"second ");
        out.accept(&vec![b'x'; MAX_GUEST_LINE * 2]);
        assert_eq!(out.lock().pending.len(), MAX_GUEST_LINE);
        out.flush_pending();
        assert!(out.lock().pending.is_empty());

        let entries = log.entries();
        let messages: Vec<_> = entries
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0], "first line");
        assert_eq!(messages[1].len(), MAX_GUEST_LINE);
        assert!(messages[1].starts_with("second xxx"));
        assert_eq!(
            entries[1]["logging.googleapis.com/labels"]["request_id"],
            "r1"
        );
    }

    #[test]
    fn a_stream_switched_to_another_request_never_mixes_their_lines() {
        let log = crate::logging::Capture::start();
        let out = GuestOutput::stdout(request("a"));
        out.accept(b"a's line\na's unended");
        out.serve(request("b"));
        out.accept(b"b's line\n");

        let entries = log.entries();
        let lines: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    e["logging.googleapis.com/labels"]["request_id"]
                        .as_str()
                        .unwrap(),
                    e["message"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [("a", "a's line"), ("a", "a's unended"), ("b", "b's line")]
        );
    }

    #[test]
    fn the_guests_stream_logs_a_write_on_the_call_as_the_request_being_served() {
        use wasmtime_wasi::cli::StdoutStream;

        let log = crate::logging::Capture::start();
        let out = GuestOutput::stdout(request("a"));
        let mut stream = out.p2_stream();
        assert_eq!(stream.check_write().unwrap(), WRITE_PERMIT);
        // Written without a flush, no runtime, nothing polled: the line is in the log when the
        // call returns, so switching the instance to its next request cannot take it along.
        stream.write(Bytes::from_static(b"a's line\n")).unwrap();
        let entries = log.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["message"], "a's line");
        assert_eq!(
            entries[0]["logging.googleapis.com/labels"]["request_id"],
            "a"
        );

        out.serve(request("b"));
        // An empty write and bytes that are not UTF-8 are taken too, never an error.
        stream.write(Bytes::new()).unwrap();
        stream
            .write(Bytes::from_static(b"b's \xff line\n"))
            .unwrap();
        stream.flush().unwrap();
        let entries = log.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1]["message"], "b's \u{fffd} line");
        assert_eq!(
            entries[1]["logging.googleapis.com/labels"]["request_id"],
            "b"
        );
    }
}
