//! The body of a component's response, as hyper sends it. It owns what the request holds until
//! its last byte: the guest task (and through it the instance, its slot and its upstream
//! calls) and the client's place among its requests in progress.
//!
//! - A client that hangs up (hyper drops the body) stops the guest at once, whatever it is
//!   waiting for: connecting upstream, the first byte, a pause between chunks.
//! - At the request deadline, or when shutdown's grace period runs out, a guest still running
//!   is stopped; an event stream of a chat route then ends with an `error` event (`/chat`) or
//!   error chunk (`/v1`) and its per-chat log line is written with that outcome, so a cut
//!   answer never passes for a whole one. Any other body is broken off (the client sees an
//!   incomplete response, not a short one).
//! - A guest that fails after its response began (a trap) ends the stream the same way.
//! - A part of the body that follows a store call waits until that call's commit is on disk
//!   (see `kv::Unsynced`); a store that cannot get it there ends the stream the same way.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use hyper::body::{Body, Frame, SizeHint};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::errors::HostError;
use crate::kv::Unsynced;
use crate::logging::{GuestOutput, RequestContext, Severity};
use crate::ratelimit::InProgressTicket;

/// What a response body fails with (hyper then breaks the connection off).
type BodyError = <HyperOutgoingBody as Body>::Error;

/// The guest's task: instantiation, the handler, and its output.
pub type GuestTask = JoinHandle<wasmtime::Result<()>>;

/// Resolves with the reason when the response must be cut short.
pub type Cut = Pin<Box<dyn Future<Output = HostError> + Send>>;

/// The routes whose event streams end with an error event and write a per-chat log line.
const CHAT_ROUTES: [&str; 2] = ["/chat", "/v1/chat/completions"];

/// Most of a stream's start kept to read its `meta` event.
const MAX_META_BYTES: usize = 16 * 1024;

pub struct GuestBody {
    inner: HyperOutgoingBody,
    /// Until it has finished (or been stopped).
    guest: Option<GuestTask>,
    cut: Cut,
    deadline: Instant,
    context: Arc<RequestContext>,
    /// Set for a chat route's event stream.
    stream: Option<ChatStream>,
    state: State,
    /// The request's store calls whose commits must be on disk before more is sent.
    unsynced: Arc<Unsynced>,
    /// Putting the request's store calls on disk, and the frame (`None`: the body's end)
    /// held until that is done.
    settling: Option<(Settling, Option<Frame<Bytes>>)>,
    _client: Option<InProgressTicket>,
}

/// Puts the request's store calls on disk.
type Settling = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Passing the guest's frames on.
    Relaying,
    /// The guest's body has ended; waiting for the guest itself to end.
    Finishing,
    /// Nothing more to send.
    Done,
}

/// What is known of a chat stream, for the log line written if the host has to end it.
struct ChatStream {
    route: &'static str,
    started: Instant,
    /// The start of the stream, until its first event has been read.
    head: Option<Vec<u8>>,
    persona: Value,
    resonance_key: Value,
    model: Value,
    /// The last two bytes sent: an event is complete after a blank line.
    tail: [u8; 2],
}

impl GuestBody {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        response: &http::response::Parts,
        path: &str,
        inner: HyperOutgoingBody,
        guest: GuestTask,
        cut: Cut,
        deadline: Instant,
        started: Instant,
        context: Arc<RequestContext>,
        unsynced: Arc<Unsynced>,
        client: Option<InProgressTicket>,
    ) -> GuestBody {
        let is_event_stream = response
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let route = CHAT_ROUTES.into_iter().find(|r| *r == path);
        let stream = match route {
            Some(route) if is_event_stream && response.status.is_success() => Some(ChatStream {
                route,
                started,
                head: (route == "/chat").then(Vec::new),
                persona: Value::Null,
                resonance_key: Value::Null,
                model: Value::Null,
                tail: *b"\n\n",
            }),
            _ => None,
        };
        GuestBody {
            inner,
            guest: Some(guest),
            cut,
            deadline,
            context,
            stream,
            state: State::Relaying,
            unsynced,
            settling: None,
            _client: client,
        }
    }

    /// Holds `frame` (`None`: the end of the body) while the store calls made before it are
    /// put on disk, if any were made since the last part sent.
    fn hold_if_unsynced(&mut self, frame: Option<Frame<Bytes>>) -> Option<Option<Frame<Bytes>>> {
        if !self.unsynced.is_pending() {
            return Some(frame);
        }
        let unsynced = self.unsynced.clone();
        self.settling = Some((Box::pin(async move { unsynced.settle().await }), frame));
        None
    }

    fn stop_guest(&mut self) {
        if let Some(guest) = self.guest.take() {
            guest.abort();
        }
    }

    /// Stops the guest and ends the response for `reason`.
    fn cut_short(&mut self, reason: HostError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.stop_guest();
        self.state = State::Done;
        let Some(stream) = &self.stream else {
            self.context.write(
                Severity::Error,
                &format!(
                    "response broken off after its head: {} ({})",
                    reason.message(),
                    reason.code()
                ),
            );
            return Poll::Ready(Some(Err(BodyError::InternalError(Some(reason.message())))));
        };
        self.context.write(
            Severity::Warning,
            &format!(
                "stream ended by the host with an error event: {} ({})",
                reason.message(),
                reason.code()
            ),
        );
        GuestOutput::stdout(self.context.clone()).write_line(&stream.log_line(&reason));
        let mut bytes = Vec::new();
        if stream.tail != *b"\n\n" {
            // The guest was stopped inside an event: end it first.
            bytes.extend_from_slice(b"\n\n");
        }
        bytes.extend_from_slice(&reason.stream_event(stream.route));
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(bytes)))))
    }

    /// Whether the guest's body has ended (hyper may drop a body it knows to be empty).
    fn body_ended(&self) -> bool {
        self.state != State::Relaying || self.inner.is_end_stream()
    }
}

impl Body for GuestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Relaying => {
                    if this.guest.is_some()
                        && let Poll::Ready(reason) = this.cut.as_mut().poll(cx)
                    {
                        return this.cut_short(reason);
                    }
                    let next = if let Some((settling, _)) = this.settling.as_mut() {
                        match settling.as_mut().poll(cx) {
                            Poll::Ready(Ok(())) => {
                                let (_, held) = this.settling.take().expect("polled just now");
                                held
                            }
                            Poll::Ready(Err(detail)) => {
                                this.settling = None;
                                this.context.write(Severity::Error, &detail);
                                return this.cut_short(HostError::StoreUnavailable);
                            }
                            Poll::Pending => return Poll::Pending,
                        }
                    } else {
                        match Pin::new(&mut this.inner).poll_frame(cx) {
                            Poll::Ready(Some(Ok(frame))) => {
                                match this.hold_if_unsynced(Some(frame)) {
                                    Some(next) => next,
                                    None => continue,
                                }
                            }
                            Poll::Ready(Some(Err(e))) => {
                                this.stop_guest();
                                this.state = State::Done;
                                return Poll::Ready(Some(Err(e)));
                            }
                            Poll::Ready(None) => match this.hold_if_unsynced(None) {
                                Some(next) => next,
                                None => continue,
                            },
                            Poll::Pending => return Poll::Pending,
                        }
                    };
                    let Some(frame) = next else {
                        this.state = State::Finishing;
                        continue;
                    };
                    if let (Some(stream), Some(data)) = (&mut this.stream, frame.data_ref()) {
                        stream.saw(data);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                State::Finishing => {
                    let Some(guest) = this.guest.as_mut() else {
                        this.state = State::Done;
                        continue;
                    };
                    match Pin::new(guest).poll(cx) {
                        Poll::Ready(result) => {
                            this.guest = None;
                            let failure = match result {
                                Ok(Ok(())) => None,
                                Ok(Err(e)) => Some(format!("{e:#}")),
                                Err(e) => Some(e.to_string()),
                            };
                            let Some(failure) = failure else {
                                this.state = State::Done;
                                continue;
                            };
                            this.context.write(
                                Severity::Error,
                                &format!("component failed after its response began: {failure}"),
                            );
                            if this.stream.is_none() {
                                // A whole body is complete, or hyper sees it is short.
                                this.state = State::Done;
                                continue;
                            }
                            let reason = if Instant::now() >= this.deadline {
                                HostError::DeadlineExceeded
                            } else {
                                HostError::Internal
                            };
                            return this.cut_short(reason);
                        }
                        Poll::Pending => {
                            // The body is whole; a guest still busy past the deadline is
                            // stopped without touching it.
                            if this.cut.as_mut().poll(cx).is_ready() {
                                this.stop_guest();
                                this.state = State::Done;
                                continue;
                            }
                            return Poll::Pending;
                        }
                    }
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.stream, self.state) {
            (None, State::Relaying) => self.inner.size_hint(),
            (_, State::Done) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for GuestBody {
    fn drop(&mut self) {
        let Some(guest) = self.guest.take() else {
            return;
        };
        if !self.body_ended() {
            // The client went away (or the connection failed) before the last byte: stop the
            // guest and its upstream calls now.
            guest.abort();
            return;
        }
        // The body was whole: let the guest finish (its log line), up to the deadline.
        let deadline = tokio::time::Instant::from_std(self.deadline);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let abort = guest.abort_handle();
                if tokio::time::timeout_at(deadline, guest).await.is_err() {
                    abort.abort();
                }
            });
        } else {
            guest.abort();
        }
    }
}

impl ChatStream {
    /// Notes what was sent: the end of the last event, and the first event's fields.
    fn saw(&mut self, data: &[u8]) {
        match data {
            [] => {}
            [last] => self.tail = [self.tail[1], *last],
            [.., a, b] => self.tail = [*a, *b],
        }
        let Some(head) = &mut self.head else {
            return;
        };
        head.extend_from_slice(&data[..data.len().min(MAX_META_BYTES - head.len())]);
        let Some(end) = head.windows(2).position(|w| w == b"\n\n") else {
            if head.len() >= MAX_META_BYTES {
                self.head = None;
            }
            return;
        };
        let event = String::from_utf8_lossy(&head[..end]).into_owned();
        self.head = None;
        let data = event
            .lines()
            .find_map(|l| l.strip_prefix("data:"))
            .and_then(|d| serde_json::from_str::<Value>(d.trim()).ok());
        if event.lines().any(|l| l.trim() == "event: meta")
            && let Some(meta) = data
        {
            self.persona = meta["persona_used"].clone();
            self.resonance_key = meta["resonance_key"].clone();
            self.model = meta["metadata"]["model"].clone();
        }
    }

    /// The per-chat log line, in the component's format, for a stream the host ended.
    fn log_line(&self, reason: &HostError) -> String {
        json!({
            "severity": "ERROR",
            "message": "chat",
            "chat": {
                "route": self.route,
                "stream": true,
                "model": self.model,
                "persona": self.persona,
                "resonance_key": self.resonance_key,
                "outcome": reason.code(),
                "status": 200,
                "finish_reason": null,
                "attempts": null,
                "prompt_tokens": null,
                "completion_tokens": null,
                "thoughts_tokens": null,
                "total_tokens": null,
                "upstream_latency_ms": null,
                "total_latency_ms": self.started.elapsed().as_millis() as u64,
            }
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_stream() -> ChatStream {
        ChatStream {
            route: "/chat",
            started: Instant::now(),
            head: Some(Vec::new()),
            persona: Value::Null,
            resonance_key: Value::Null,
            model: Value::Null,
            tail: *b"\n\n",
        }
    }

    #[test]
    fn the_meta_event_names_persona_and_model_in_the_log_line() {
        let mut stream = chat_stream();
        stream.saw(b"event: meta\ndata: {\"persona_used\":\"Elro\",\"resonance_key\":\"calm-flowing-inquiry\",");
        assert_ne!(stream.tail, *b"\n\n", "inside an event");
        stream.saw(b"\"metadata\":{\"model\":\"gemini-3.5-flash\"}}\n\n");
        assert_eq!(stream.tail, *b"\n\n");
        stream.saw(b"event: delta\ndata: {\"text\":\"hi\"}\n");
        assert_ne!(stream.tail, *b"\n\n");
        let line: Value =
            serde_json::from_str(&stream.log_line(&HostError::DeadlineExceeded)).unwrap();
        assert_eq!(line["severity"], "ERROR");
        assert_eq!(line["message"], "chat");
        let chat = &line["chat"];
        assert_eq!(chat["route"], "/chat");
        assert_eq!(chat["stream"], true);
        assert_eq!(chat["persona"], "Elro");
        assert_eq!(chat["resonance_key"], "calm-flowing-inquiry");
        assert_eq!(chat["model"], "gemini-3.5-flash");
        assert_eq!(chat["outcome"], "deadline_exceeded");
        assert_eq!(chat["status"], 200);
        assert!(chat["total_latency_ms"].is_u64());
    }

    #[test]
    fn a_stream_without_meta_is_logged_with_nulls() {
        let mut stream = chat_stream();
        stream.route = "/v1/chat/completions";
        stream.head = None;
        stream.saw(b"data: {\"id\":\"x\"}\n\n");
        let line: Value = serde_json::from_str(&stream.log_line(&HostError::ShuttingDown)).unwrap();
        assert_eq!(line["chat"]["outcome"], "shutting_down");
        assert!(line["chat"]["persona"].is_null());
    }
}
