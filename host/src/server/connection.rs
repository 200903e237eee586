//! One client connection below hyper: the socket wrapper that closes idle connections,
//! unfinished request heads and clients that stop reading on time, turns hyper's bodiless
//! protocol-error answers into JSON,
//! and reads what a client is still sending before the socket closes, so that the client sees
//! the answer instead of a reset.
//!
//! hyper's own `header_read_timeout` is not used: it starts when hyper begins waiting for a head,
//! so it cannot tell an idle keep-alive connection from a slowly sent head.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::errors::protocol_error_response;

/// Timeouts of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    /// For a whole request head, from the connection's start, or on a reused connection from the
    /// head's first byte.
    pub header_read: Duration,
    /// Between requests on a keep-alive connection, before the next head's first byte.
    pub idle: Duration,
    /// Longest a write may wait for the client to take any of it (a client that stops
    /// reading); past it the connection is closed, its request with it.
    pub send: Duration,
}

/// After the host closes a connection, how long and how much it keeps reading (and discarding)
/// what the client still sends: a client that writes a whole body before reading the answer
/// (Python's http.client, curl without `Expect`) would otherwise get a reset and lose it.
const LINGER_TOTAL: Duration = Duration::from_secs(5);
const LINGER_QUIET: Duration = Duration::from_secs(1);
const LINGER_MAX_BYTES: usize = 64 * 1024 * 1024;

/// hyper's automatic answers are a status line and two or three short headers.
const MAX_AUTOMATIC_ANSWER: usize = 1024;

/// What the request handler and the socket wrapper of one connection know about each other.
/// Only touched from the connection's own task.
#[derive(Debug, Default)]
pub struct ConnectionState {
    /// Requests handed to the handler (their head was read).
    started: AtomicU64,
    /// Requests whose response body was consumed by hyper, or which were dropped.
    finished: AtomicU64,
    /// `started` as of the last flush that completed with no request open: every byte of
    /// every response up to then is on the wire.
    settled: AtomicU64,
    /// Closed by the server (shutdown): no lingering.
    closing_now: AtomicBool,
    /// The connection task, as of its last read: woken when a request ends so that the idle
    /// timer starts even if hyper has no reason to read yet.
    reader: Mutex<Option<Waker>>,
}

impl ConnectionState {
    /// Marks a request as in progress until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> RequestInProgress {
        self.started.fetch_add(1, Ordering::SeqCst);
        RequestInProgress(self.clone())
    }

    fn busy(&self) -> bool {
        self.started.load(Ordering::SeqCst) != self.finished.load(Ordering::SeqCst)
    }

    /// No request in progress and every response flushed: closing now loses nothing.
    pub fn is_quiet(&self) -> bool {
        let started = self.started.load(Ordering::SeqCst);
        self.finished.load(Ordering::SeqCst) == started
            && self.settled.load(Ordering::SeqCst) == started
    }

    /// The server closes this connection at once (shutdown): skip the lingering read.
    pub fn close_now(&self) {
        self.closing_now.store(true, Ordering::SeqCst);
    }
}

/// A request in progress on a connection; ends when dropped.
pub struct RequestInProgress(Arc<ConnectionState>);

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        if let Some(reader) = self.0.reader.lock().expect("not poisoned").take() {
            reader.wake();
        }
    }
}

/// A response body that keeps its request in progress until hyper has taken its last frame.
pub struct TrackedBody {
    inner: HyperOutgoingBody,
    _request: RequestInProgress,
}

impl TrackedBody {
    pub fn new(inner: HyperOutgoingBody, request: RequestInProgress) -> TrackedBody {
        TrackedBody {
            inner,
            _request: request,
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = <HyperOutgoingBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of the next head on a keep-alive connection.
    Idle,
    /// Reading a head (a fresh connection starts here).
    Head,
    /// A request is in progress: its own timeouts apply, not the connection's.
    Busy,
}

/// How hyper's automatic answer to an unparseable head is being replaced.
enum Rewrite {
    Off,
    /// Collecting hyper's response head to learn its status.
    Collecting(Vec<u8>),
    /// Sending the replacement (or, if hyper's bytes were not what was expected, those).
    Sending {
        bytes: Vec<u8>,
        sent: usize,
    },
}

/// The client socket as hyper sees it.
pub struct ClientIo {
    stream: Option<TcpStream>,
    state: Arc<ConnectionState>,
    timeouts: ConnectionTimeouts,
    phase: Phase,
    /// `state.started` when the phase was last decided.
    seen_started: u64,
    deadline: Pin<Box<Sleep>>,
    rewrite: Rewrite,
    /// The client closed its side, or a read timed out: nothing to linger for.
    read_done: bool,
    /// Set while a write waits for the client to read: fires the send timeout.
    send_deadline: Pin<Box<Sleep>>,
    write_stalled: bool,
}

impl ClientIo {
    pub fn new(
        stream: TcpStream,
        state: Arc<ConnectionState>,
        timeouts: ConnectionTimeouts,
    ) -> ClientIo {
        ClientIo {
            stream: Some(stream),
            state,
            timeouts,
            phase: Phase::Head,
            seen_started: 0,
            deadline: Box::pin(tokio::time::sleep(timeouts.header_read)),
            rewrite: Rewrite::Off,
            read_done: false,
            send_deadline: Box::pin(tokio::time::sleep(timeouts.send)),
            write_stalled: false,
        }
    }

    /// Applies the send timeout to a write's outcome: a write that has made no progress for
    /// `timeouts.send` fails, and the connection closes without lingering (the client is not
    /// reading, so it is not waiting for an answer either).
    fn send_progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.write_stalled = false;
            return result;
        }
        if !self.write_stalled {
            self.write_stalled = true;
            let deadline = Instant::now() + self.timeouts.send;
            self.send_deadline.as_mut().reset(deadline);
        }
        if self.send_deadline.as_mut().poll(cx).is_ready() {
            self.read_done = true;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading: send timed out",
            )));
        }
        Poll::Pending
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("the stream lives until drop"))
    }

    /// Decides the phase from what the handler reports, before each read.
    fn update_phase(&mut self) {
        let started = self.state.started.load(Ordering::SeqCst);
        if self.state.busy() {
            self.phase = Phase::Busy;
        } else if self.phase == Phase::Busy || started != self.seen_started {
            // A request ended since the last read: the connection is idle until the next head.
            self.phase = Phase::Idle;
            let deadline = Instant::now() + self.timeouts.idle;
            self.deadline.as_mut().reset(deadline);
        }
        self.seen_started = started;
    }

    /// A write with no request open, after every response was flushed: hyper is answering a
    /// head it could not parse, with a bodiless 4xx.
    fn writes_automatic_answer(&self) -> bool {
        self.state.is_quiet()
    }

    /// Takes hyper's bytes into the rewrite; returns false when not rewriting.
    fn rewrite_write(&mut self, bufs: &[io::IoSlice<'_>]) -> bool {
        if matches!(self.rewrite, Rewrite::Off) {
            if !self.writes_automatic_answer() {
                return false;
            }
            self.rewrite = Rewrite::Collecting(Vec::new());
        }
        match &mut self.rewrite {
            Rewrite::Off => unreachable!("set above"),
            Rewrite::Collecting(head) => {
                for buf in bufs {
                    head.extend_from_slice(buf);
                }
                let end = head.windows(4).position(|w| w == b"\r\n\r\n");
                if end.is_some() || head.len() > MAX_AUTOMATIC_ANSWER {
                    let status = end.and_then(|end| automatic_answer_status(&head[..end]));
                    let bytes = match status {
                        Some(status) => protocol_error_response(status),
                        // Not what hyper's answers look like: send it as it is.
                        None => std::mem::take(head),
                    };
                    self.rewrite = Rewrite::Sending { bytes, sent: 0 };
                }
            }
            Rewrite::Sending { bytes, .. } => {
                for buf in bufs {
                    bytes.extend_from_slice(buf);
                }
            }
        }
        true
    }

    /// Writes out the pending rewrite, if any.
    fn poll_send_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Rewrite::Sending { bytes, sent } = &mut self.rewrite else {
                return Poll::Ready(Ok(()));
            };
            if *sent == bytes.len() {
                return Poll::Ready(Ok(()));
            }
            let stream = Pin::new(self.stream.as_mut().expect("the stream lives until drop"));
            let written = stream.poll_write(cx, &bytes[*sent..]);
            let n = ready!(self.send_progress(cx, written))?;
            let Rewrite::Sending { sent, .. } = &mut self.rewrite else {
                unreachable!("still sending");
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
    }
}

/// The status of hyper's automatic answer, from its status line (`HTTP/1.1 400 Bad Request`):
/// hyper writes that line itself, so the fixed layout can be read directly.
fn automatic_answer_status(head: &[u8]) -> Option<StatusCode> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let status = StatusCode::from_bytes(rest.get(..3)?).ok()?;
    status.is_client_error().then_some(status)
}

impl AsyncRead for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        {
            let mut reader = this.state.reader.lock().expect("not poisoned");
            if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *reader = Some(cx.waker().clone());
            }
        }
        this.update_phase();
        let before = buf.filled().len();
        match this.stream().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = buf.filled().len() - before;
                if got == 0 {
                    this.read_done = true;
                } else if this.phase == Phase::Idle {
                    this.phase = Phase::Head;
                    let deadline = Instant::now() + this.timeouts.header_read;
                    this.deadline.as_mut().reset(deadline);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.phase != Phase::Busy && this.deadline.as_mut().poll(cx).is_ready() {
                    this.read_done = true;
                    let what = match this.phase {
                        Phase::Idle => "idle connection timed out",
                        _ => "request head not received in time",
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.rewrite_write(&[io::IoSlice::new(buf)]) {
            // Taken whole; sent from here and by flush and shutdown.
            let _ = self.poll_send_rewrite(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        let written = self.stream().poll_write(cx, buf);
        self.send_progress(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.rewrite_write(bufs) {
            let _ = self.poll_send_rewrite(cx)?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        let written = self.stream().poll_write_vectored(cx, bufs);
        self.send_progress(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_rewrite(cx))?;
        ready!(self.stream().poll_flush(cx))?;
        let started = self.state.started.load(Ordering::SeqCst);
        if !self.state.busy() {
            self.state.settled.store(started, Ordering::SeqCst);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_rewrite(cx))?;
        self.stream().poll_shutdown(cx)
    }
}

impl Drop for ClientIo {
    fn drop(&mut self) {
        if self.read_done || self.state.closing_now.load(Ordering::SeqCst) {
            return;
        }
        if let (Some(stream), Ok(runtime)) =
            (self.stream.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(linger(stream));
        }
    }
}

/// Ends our side of a connection the host is closing, then reads and discards what the client
/// still sends (bounded in time and bytes) so that closing does not reset the connection and
/// destroy the answer the client has not read yet.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let until = Instant::now() + LINGER_TOTAL;
    let mut discarded = 0;
    let mut buf = [0u8; 4096];
    while discarded < LINGER_MAX_BYTES {
        let quiet = (Instant::now() + LINGER_QUIET).min(until);
        match tokio::time::timeout_at(quiet, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_of_hypers_automatic_answers_only() {
        assert_eq!(
            automatic_answer_status(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0"
            ),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        assert_eq!(
            automatic_answer_status(b"HTTP/1.1 400 Bad Request"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(automatic_answer_status(b"HTTP/1.1 200 OK"), None);
        assert_eq!(automatic_answer_status(b"HTTP/1.1 4"), None);
        assert_eq!(automatic_answer_status(b"garbage"), None);
    }

    #[test]
    fn a_request_is_in_progress_until_its_guard_drops() {
        let state = Arc::new(ConnectionState::default());
        assert!(state.is_quiet());
        let request = state.begin();
        assert!(state.busy() && !state.is_quiet());
        drop(request);
        assert!(!state.busy());
        assert!(!state.is_quiet(), "not quiet until the response is flushed");
        state.settled.store(1, Ordering::SeqCst);
        assert!(state.is_quiet());
    }
}
