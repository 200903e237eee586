//! What a chat route answers, whole or streamed, and how a streamed answer is sent to its end.
//! Shared by `/chat` and `/v1/chat/completions`; each supplies its own [`StreamFormat`].

use crate::chat::{self, Chat, EventSink, OpenStream, StreamFormat};
use crate::chat_log::ChatRecord;
use crate::chat_state::{self, State};
use crate::error::ApiError;
use crate::response::ApiResponse;
use crate::vertex::{CallStats, Clock, TransportError};

/// What a chat route answers: a whole response, or a stream to send after a 200 head.
pub enum Reply<B> {
    Whole(ApiResponse),
    Stream(Box<StreamReply<B>>),
}

/// A streamed answer whose first event can be sent.
pub struct StreamReply<B> {
    pub chat: Chat,
    pub source: StreamSource<B>,
    pub format: Box<dyn StreamFormat>,
}

/// Where a streamed answer's text comes from.
pub enum StreamSource<B> {
    /// Vertex AI, already answering.
    Upstream {
        opened: Box<OpenStream<B>>,
        stats: CallStats,
    },
    /// The response cache.
    Cached { answer: String, model: String },
}

impl<B> Reply<B> {
    /// The reply for a failure in `/chat`'s shape, noted in the chat's log record.
    pub fn failed(error: ApiError, record: &mut ChatRecord) -> Self {
        record.set_failure(&error);
        Reply::Whole(error.to_response())
    }

    pub fn stream(chat: Chat, source: StreamSource<B>, format: Box<dyn StreamFormat>) -> Self {
        Reply::Stream(Box::new(StreamReply {
            chat,
            source,
            format,
        }))
    }
}

/// Sends a streamed reply to its end: the events, then (once the answer is complete) the
/// stored turn, then the last event (`done`, or the error that cut the answer short); the log
/// record is completed on the way.
pub async fn send_stream<B>(
    reply: StreamReply<B>,
    clock: &impl Clock,
    state: &State<'_>,
    sink: &mut impl EventSink,
    record: &mut ChatRecord,
) -> chat::StreamEnd
where
    B: futures::Stream<Item = Result<Vec<u8>, TransportError>> + Unpin,
{
    let StreamReply {
        mut chat,
        source,
        format,
    } = reply;
    let mut end = match source {
        StreamSource::Upstream { opened, stats } => {
            chat::relay(&chat, *opened, stats, clock, format.as_ref(), sink).await
        }
        StreamSource::Cached { answer, model } => {
            chat::replay(&chat, &answer, &model, format.as_ref(), sink).await
        }
    };
    if end.error.is_none() && !end.client_gone {
        let model = chat.model(end.model_version.as_deref()).to_owned();
        let done = chat_state::Finished {
            answer: &end.text,
            finish_reason: end.finish_reason.as_deref().unwrap_or_default(),
            model: &model,
        };
        if let Err(e) = chat_state::finish(state, &mut chat, &done, clock.unix_seconds()) {
            end.error = Some(e);
        }
    }
    chat::close(&chat, &mut end, format.as_ref(), sink).await;
    record.note_stream_end(&end);
    record.note_state(&chat.state);
    end
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chat::{ClientGone, StreamEnd};
    use crate::store::tests::MemoryStore;
    use crate::vertex::tests::FakeClock;
    use futures::executor::block_on;

    /// Collects what a stream sends, an event (or group of events) per send.
    #[derive(Default)]
    pub(crate) struct Collected(pub Vec<String>);

    impl EventSink for Collected {
        async fn send(&mut self, bytes: Vec<u8>) -> Result<(), ClientGone> {
            self.0.push(String::from_utf8(bytes).unwrap());
            Ok(())
        }
    }

    /// Relays a streamed reply to its end; what was sent, and how it ended.
    pub(crate) fn relay_to_end<B>(reply: Reply<B>, clock: &FakeClock) -> (Vec<String>, StreamEnd)
    where
        B: futures::Stream<Item = Result<Vec<u8>, TransportError>> + Unpin,
    {
        let Reply::Stream(reply) = reply else {
            panic!("expected a stream");
        };
        let store = MemoryStore::default();
        let state = State {
            kv: &store,
            random_id: &|| [9; 16],
        };
        let mut sink = Collected::default();
        let mut record = ChatRecord::new("/chat");
        let end = block_on(send_stream(*reply, clock, &state, &mut sink, &mut record));
        (sink.0, end)
    }
}
