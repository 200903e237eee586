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

pub enum EmulatorBody {
    Full(Option<Bytes>),
    Paced {
        frames: VecDeque<Bytes>,
        delay: Duration,
        /// Set once a frame has gone out: the next one waits for `delay` first.
        wait_next: bool,
        sleep: Option<Pin<Box<Sleep>>>,
    },
}

impl EmulatorBody {
    pub fn full(data: impl Into<Bytes>) -> Self {
        EmulatorBody::Full(Some(data.into()))
    }

    pub fn paced(frames: Vec<Bytes>, delay: Duration) -> Self {
        EmulatorBody::Paced {
            frames: frames.into(),
            delay,
            wait_next: false,
            sleep: None,
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
        match self.get_mut() {
            EmulatorBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            EmulatorBody::Paced {
                frames,
                delay,
                wait_next,
                sleep,
            } => {
                if frames.is_empty() {
                    return Poll::Ready(None);
                }
                if *wait_next && !delay.is_zero() {
                    let timer = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(*delay)));
                    ready!(timer.as_mut().poll(cx));
                    *sleep = None;
                }
                *wait_next = true;
                Poll::Ready(frames.pop_front().map(|d| Ok(Frame::data(d))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EmulatorBody::Full(data) => data.is_none(),
            EmulatorBody::Paced { frames, .. } => frames.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EmulatorBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            // Unknown length, so hyper uses chunked transfer encoding and flushes per frame.
            EmulatorBody::Paced { .. } => SizeHint::default(),
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
}
