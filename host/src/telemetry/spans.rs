//! Spans in their OTLP form.

use std::time::SystemTime;

use opentelemetry_proto::tonic::trace::v1::{Span, Status, span, status};

use super::attributes::{Attributes, key_values};
use super::ids::{SpanId, TraceId};
use super::metrics::unix_nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
    Internal,
}

pub struct Ids {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    /// The parent is the caller's span, in another process.
    pub remote_parent: bool,
}

impl Ids {
    /// A span under another span of this process.
    pub fn child(trace_id: TraceId, span_id: SpanId, parent: SpanId) -> Ids {
        Ids {
            trace_id,
            span_id,
            parent: Some(parent),
            remote_parent: false,
        }
    }
}

/// W3C "sampled" (exported spans are sampled ones), and bit 8 "whether the parent is remote is
/// known" with bit 9 saying it.
fn flags(ids: &Ids) -> u32 {
    let remote = if ids.parent.is_some() && ids.remote_parent {
        0x200
    } else {
        0
    };
    0x01 | 0x100 | remote
}

/// A finished span; `error` (the `error.type`) makes its status ERROR.
pub fn build(
    ids: Ids,
    name: String,
    kind: Kind,
    (start, end): (SystemTime, SystemTime),
    attributes: Attributes,
    error: Option<String>,
) -> Span {
    let kind = match kind {
        Kind::Server => span::SpanKind::Server,
        Kind::Client => span::SpanKind::Client,
        Kind::Internal => span::SpanKind::Internal,
    };
    let flags = flags(&ids);
    Span {
        trace_id: ids.trace_id.to_vec(),
        span_id: ids.span_id.to_vec(),
        parent_span_id: ids.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name,
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(start),
        end_time_unix_nano: unix_nanos(end.max(start)),
        attributes: key_values(&attributes),
        status: error.map(|message| Status {
            message,
            code: status::StatusCode::Error as i32,
        }),
        flags,
        ..Default::default()
    }
}
