//! Request bodies are read whole, within a size limit, a time limit and the shared memory
//! budget (taken as the bytes arrive), before the request takes an instance slot; the component
//! then reads them from memory.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

use super::admission::{Admission, BodyReservation};
use super::errors::HostError;

/// Limits on reading one request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: u64,
    /// For the whole body, from the end of the head.
    pub read_timeout: Duration,
}

/// A body read into memory, holding its share of the body budget until dropped.
pub struct BufferedBody {
    data: Option<Bytes>,
    _reservation: BodyReservation,
}

impl Body for BufferedBody {
    type Data = Bytes;
    type Error = ErrorCode;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ErrorCode>>> {
        Poll::Ready(self.data.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// Reads `body` (of `announced` length, if given) into memory.
pub async fn read(
    body: Incoming,
    announced: Option<u64>,
    limits: BodyLimits,
    admission: &Admission,
) -> Result<BufferedBody, HostError> {
    let too_large = HostError::PayloadTooLarge {
        limit: limits.max_bytes,
    };
    if announced.is_some_and(|n| n > limits.max_bytes) {
        return Err(too_large);
    }
    let mut reservation = admission.body_reservation();
    if body.is_end_stream() {
        return Ok(BufferedBody {
            data: Some(Bytes::new()),
            _reservation: reservation,
        });
    }
    // Only bytes that have arrived are reserved: a client that announces a body and sends
    // none (or little) holds none (or little) of the budget while it waits.
    let collect = collect(body, limits.max_bytes, &mut reservation);
    let data = tokio::time::timeout(limits.read_timeout, collect)
        .await
        .map_err(|_| HostError::BodyTimeout)??;
    Ok(BufferedBody {
        data: Some(data),
        _reservation: reservation,
    })
}

async fn collect(
    mut body: Incoming,
    max_bytes: u64,
    reservation: &mut BodyReservation,
) -> Result<Bytes, HostError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| HostError::BodyUnreadable)?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        total += chunk.len();
        if total as u64 > max_bytes {
            return Err(HostError::PayloadTooLarge { limit: max_bytes });
        }
        if total > reservation.bytes() {
            reservation.grow(total - reservation.bytes())?;
        }
        chunks.push(chunk);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        // One chunk is a slice of hyper's read buffer: copy it so that buffer is not kept alive.
        _ => {
            let mut all = BytesMut::with_capacity(total);
            for chunk in chunks {
                all.extend_from_slice(&chunk);
            }
            all.freeze()
        }
    })
}
