//! What ties an entry to its request: the request id the host assigns, and the trace the caller
//! sent (`traceparent` or `X-Cloud-Trace-Context`), as Cloud Logging's fields.

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value, json};

use super::Severity;
use crate::telemetry::RequestTrace;

/// Known once configuration is resolved; trace ids are qualified with it.
static PROJECT_ID: OnceLock<String> = OnceLock::new();

/// Records the project id used in `logging.googleapis.com/trace`. Later calls are ignored.
pub fn set_project_id(project_id: &str) {
    let _ = PROJECT_ID.set(project_id.to_owned());
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

    /// The trace as a W3C `traceparent` naming its span, when it has one.
    pub fn traceparent(&self) -> Option<String> {
        let span = self.span_id.as_deref()?;
        let flags = if self.sampled == Some(true) {
            "01"
        } else {
            "00"
        };
        Some(format!("00-{}-{span}-{flags}", self.trace_id))
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
#[derive(Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// The trace the entries name: this request's span when telemetry is on, else the
    /// caller's.
    pub trace: Option<Trace>,
    /// The request's spans and metrics, when telemetry is on.
    pub telemetry: Option<Arc<RequestTrace>>,
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("request_id", &self.request_id)
            .field("trace", &self.trace)
            .finish_non_exhaustive()
    }
}

impl RequestContext {
    /// The fields that put an entry in this request: its id as a label, and its trace.
    pub(super) fn fields(&self) -> Map<String, Value> {
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

    /// Writes one of the host's own entries as part of this request.
    pub fn write(&self, severity: Severity, message: &str) {
        super::write(severity, message, self.fields());
    }

    pub fn warn(&self, message: &str) {
        self.write(Severity::Warning, message);
    }

    pub fn error(&self, message: &str) {
        self.write(Severity::Error, message);
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
            telemetry: None,
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
}
