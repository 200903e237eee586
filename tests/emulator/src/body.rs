//! The response body: either one buffer, or a sequence of frames with a pause between them
//! (streaming replies, where each frame is sent as soon as it is due).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::record::{Delivery, Tracker};

pub struct EmulatorBody {
    frames: VecDeque<Bytes>,
    /// Set for a single buffer, so hyper sends `Content-Length`; a paced body has unknown
    /// length, so hyper uses chunked transfer encoding and flushes per frame.
    exact_len: Option<u64>,
    delay: Duration,
    /// Set once a frame has gone out: the next one waits for `delay` first.
    wait_next: bool,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Told when the last frame has gone out; dropped unfinished if the body is dropped first.
    tracker: Option<Tracker>,
}

impl EmulatorBody {
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        EmulatorBody {
            exact_len: Some(data.len() as u64),
            ..Self::paced(vec![data], Duration::ZERO)
        }
    }

    pub fn paced(frames: Vec<Bytes>, delay: Duration) -> Self {
        EmulatorBody {
            frames: frames.into_iter().filter(|f| !f.is_empty()).collect(),
            exact_len: None,
            delay,
            wait_next: false,
            sleep: None,
            tracker: None,
        }
    }

    /// Reports the delivery of this body to `tracker`.
    pub fn track(&mut self, tracker: Tracker) {
        if self.frames.is_empty() {
            tracker.finish(Delivery::Completed);
        } else {
            self.tracker = Some(tracker);
        }
    }
}

impl Body for EmulatorBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.frames.is_empty() {
            return Poll::Ready(None);
        }
        if this.wait_next && !this.delay.is_zero() {
            let delay = this.delay;
            let timer = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            ready!(timer.as_mut().poll(cx));
            this.sleep = None;
        }
        this.wait_next = true;
        let frame = this.frames.pop_front();
        if this.frames.is_empty()
            && let Some(tracker) = this.tracker.take()
        {
            tracker.finish(Delivery::Completed);
        }
        Poll::Ready(frame.map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::time::Instant;

    #[tokio::test]
    async fn full_body_has_exact_size() {
        let body = EmulatorBody::full("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "hello");
    }

    #[tokio::test]
    async fn paced_body_waits_between_frames_only() {
        let delay = Duration::from_millis(40);
        let frames = vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")];
        let mut body = EmulatorBody::paced(frames, delay);
        assert_eq!(body.size_hint().exact(), None);
        let start = Instant::now();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "a");
        let mut rest = Vec::new();
        while let Some(frame) = body.frame().await {
            rest.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(rest, vec![Bytes::from("b"), Bytes::from("c")]);
        assert!(start.elapsed() >= delay * 2, "{:?}", start.elapsed());
        assert!(body.is_end_stream());
    }

    fn tracked(body: &mut EmulatorBody) -> std::sync::Arc<crate::record::Records> {
        let records = std::sync::Arc::new(crate::record::Records::default());
        let parts = http::Request::post("/").body(()).unwrap().into_parts().0;
        body.track(records.start(&parts, b"{}"));
        records
    }

    #[tokio::test]
    async fn delivery_is_complete_once_the_last_frame_is_out() {
        let mut body =
            EmulatorBody::paced(vec![Bytes::from("a"), Bytes::from("b")], Duration::ZERO);
        let records = tracked(&mut body);
        body.frame().await.unwrap().unwrap();
        assert_eq!(records.snapshot()[0].delivery, Delivery::InProgress);
        body.frame().await.unwrap().unwrap();
        assert_eq!(records.snapshot()[0].delivery, Delivery::Completed);
        drop(body);
        assert_eq!(records.snapshot()[0].delivery, Delivery::Completed);

        let mut empty = EmulatorBody::full("");
        let records = tracked(&mut empty);
        assert_eq!(records.snapshot()[0].delivery, Delivery::Completed);
    }

    #[tokio::test]
    async fn a_body_dropped_early_records_a_disconnect() {
        let mut body =
            EmulatorBody::paced(vec![Bytes::from("a"), Bytes::from("b")], Duration::ZERO);
        let records = tracked(&mut body);
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!(records.snapshot()[0].delivery, Delivery::ClientDisconnected);
    }
}
