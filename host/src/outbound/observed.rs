//! A Vertex AI response body as the component reads it, watched for its attempt's span: when
//! the first chunk arrives (time to first chunk, for streams), whether it fails, and when it
//! ends. The attempt ends when the body ends, fails or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use crate::telemetry::AttemptHandle;

pub struct ObservedBody {
    inner: WasiBody,
    attempt: AttemptHandle,
    seen_data: bool,
    /// The answer's bytes are kept for the span (an operator opted in).
    capture: bool,
}

impl ObservedBody {
    pub fn new(inner: WasiBody, attempt: AttemptHandle) -> ObservedBody {
        ObservedBody {
            inner,
            capture: attempt.captures_content(),
            attempt,
            seen_data: false,
        }
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) {
                    if !self.seen_data {
                        self.seen_data = true;
                        self.attempt.first_chunk();
                    }
                    if self.capture {
                        self.attempt.record_output(data);
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => self.attempt.failed(error_type(e)),
            Poll::Ready(None) => self.attempt.ended(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `error.type` of an outbound failure: a short, low-cardinality class.
pub fn error_type(error: &HttpError) -> &'static str {
    match error {
        HttpError::ConnectionTimeout
        | HttpError::ConnectionReadTimeout
        | HttpError::ConnectionWriteTimeout => "timeout",
        HttpError::ConnectionRefused => "connection_refused",
        HttpError::TlsProtocolError => "tls_error",
        HttpError::HttpProtocolError => "protocol_error",
        HttpError::HttpResponseIncomplete => "response_incomplete",
        HttpError::HttpRequestDenied => "denied",
        HttpError::ConfigurationError => "credentials",
        HttpError::HttpRequestBodySize(_) => "request_too_large",
        _ => "transport_error",
    }
}
