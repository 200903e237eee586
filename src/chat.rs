//! One chat from a validated request to an answer: resonance routing, the Gemini request, and
//! either a whole answer or a relayed stream. Shared by `/chat` and the OpenAI-compatible route;
//! each renders the results in its own protocol.

use std::time::Duration;

use crate::chat_state::TurnState;
use crate::config::{Settings, Variables};
use crate::error::{ApiError, UpstreamError};
use crate::gemini::{self, Answer, Chunk, GenerateContentRequest, ToolCall, Usage};
use crate::persona::{self, Persona, Routing};
use crate::resonance::{self, Resonance};
use crate::validation::ChatRequest;
use crate::vertex::{self, AnswerStream, CallStats, Clock, Transport, TransportError};

/// A chat ready to be sent: who answers, and what Gemini is asked.
#[derive(Debug, Clone)]
pub struct Chat {
    pub request: ChatRequest,
    pub resonance: Resonance,
    pub routing: Routing,
    pub settings: Settings,
    pub gemini: GenerateContentRequest,
    /// The turn's conversation and cache (`/chat` only).
    pub state: TurnState,
    /// The model Vertex AI was last called with: the one that answered, when one did. Set by
    /// [`answer`] and [`open`]; `None` before (and for an answer from the cache).
    pub model_called: Option<String>,
}

impl Chat {
    /// Routes the newest message (or takes the caller's persona) and builds the Gemini request.
    /// `system_instruction` replaces the persona's own (the OpenAI route's system messages).
    pub fn prepare(
        request: ChatRequest,
        vars: &impl Variables,
        system_instruction: Option<String>,
        options: &gemini::Options,
    ) -> Result<Chat, ApiError> {
        let settings = Settings::load(vars)?;
        let resonance = resonance::analyze(&request.message);
        let routing = match request.persona {
            Some(chosen) => persona::chosen(chosen, &resonance),
            None => persona::route(&resonance),
        };
        let instruction =
            system_instruction.unwrap_or_else(|| routing.persona.system_instruction(&resonance));
        let gemini = gemini::build_request(&settings, instruction, &request, options);
        Ok(Chat {
            request,
            resonance,
            routing,
            settings,
            gemini,
            state: TurnState::default(),
            model_called: None,
        })
    }

    pub fn persona(&self) -> Persona {
        self.routing.persona
    }

    /// The model that answered: as Vertex AI named it (`modelVersion`), else the model of the
    /// list that was called (a fallback, when the primary failed), else the primary.
    pub fn model<'a>(&'a self, reported: Option<&'a str>) -> &'a str {
        reported
            .or(self.model_called.as_deref())
            .unwrap_or(self.settings.models.primary())
    }

    /// Notes which model the call reached, for [`Chat::model`].
    fn note_call(&mut self, stats: &CallStats) {
        self.model_called = stats.model().map(str::to_owned);
    }
}

/// Asks Gemini for the whole answer (the fallback models included).
pub async fn answer(
    chat: &mut Chat,
    transport: &impl Transport,
    clock: &impl Clock,
) -> (Result<Answer, UpstreamError>, CallStats) {
    let (answer, stats) = vertex::generate(transport, clock, &chat.settings, &chat.gemini).await;
    chat.note_call(&stats);
    (answer, stats)
}

/// A stream whose first answer text (or finish) has arrived, so a 200 can be sent.
pub struct OpenStream<B> {
    pub first: Chunk,
    pub rest: AnswerStream<B>,
}

/// Opens the streamed answer. Every failure up to here (retries included) happens before any
/// byte reaches the client, so it is answered with the unary path's status codes.
pub async fn open<T: Transport>(
    chat: &mut Chat,
    transport: &T,
    clock: &impl Clock,
) -> (Result<OpenStream<T::Body>, UpstreamError>, CallStats) {
    let (opened, stats) = vertex::open_stream(transport, clock, &chat.settings, &chat.gemini).await;
    chat.note_call(&stats);
    let opened = opened.and_then(|(first, rest)| {
        // A stream cut at the request's own token limit before any text is still an answer
        // (an empty one, `truncated`); any other finish without output is not.
        if first.finish_reason.is_some()
            && first.text.trim().is_empty()
            && first.calls.is_empty()
            && first.finish_reason.as_deref() != Some(gemini::MAX_TOKENS)
        {
            Err(UpstreamError::EmptyAnswer {
                finish_reason: first.finish_reason,
            })
        } else {
            Ok(OpenStream { first, rest })
        }
    });
    (opened, stats)
}

/// Where a streamed answer goes; fails once the client has gone away.
pub trait EventSink {
    fn send(&mut self, bytes: Vec<u8>) -> impl Future<Output = Result<(), ClientGone>>;
}

/// The client closed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientGone;

/// How the events of a streamed answer are written, per protocol.
pub trait StreamFormat {
    /// The first event, before any text.
    fn opening(&self, chat: &Chat) -> Vec<u8>;
    fn delta(&self, chat: &Chat, text: &str) -> Vec<u8>;
    /// Function calls the model asked for (only when the request declared tools).
    fn calls(&self, chat: &Chat, calls: &[ToolCall]) -> Vec<u8>;
    /// The last event of a complete answer.
    fn done(&self, chat: &Chat, end: &StreamEnd) -> Vec<u8>;
    /// The last event when the upstream failed after the stream started.
    fn failed(&self, chat: &Chat, error: &ApiError) -> Vec<u8>;
}

/// How a relayed stream ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamEnd {
    pub finish_reason: Option<String>,
    /// From the last chunk only: earlier chunks carry partial counts.
    pub usage: Option<Usage>,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
    pub attempts: u32,
    /// The failure that ended the stream early, as the client was told.
    pub error: Option<ApiError>,
    pub client_gone: bool,
    /// The answer as relayed, kept so the turn can be stored.
    pub text: String,
    /// The function calls relayed.
    pub calls: Vec<ToolCall>,
}

impl StreamEnd {
    pub fn truncated(&self) -> bool {
        self.finish_reason.as_deref() == Some(gemini::MAX_TOKENS)
    }
}

/// Relays an opened stream to the client, delta by delta as Vertex AI sends them (the text is
/// also kept, for the conversation). Returns when the answer is complete, the upstream fails,
/// or the client goes away (dropping the upstream stream then cancels the call); the last
/// event is [`close`]'s to send, once the turn is stored.
pub async fn relay<B>(
    chat: &Chat,
    opened: OpenStream<B>,
    stats: CallStats,
    clock: &impl Clock,
    format: &dyn StreamFormat,
    sink: &mut impl EventSink,
) -> StreamEnd
where
    B: futures::Stream<Item = Result<Vec<u8>, TransportError>> + Unpin,
{
    let OpenStream { first, mut rest } = opened;
    let mut end = StreamEnd {
        attempts: stats.attempts,
        ..StreamEnd::default()
    };
    if sink.send(format.opening(chat)).await.is_err() {
        end.client_gone = true;
        return end;
    }
    // Text or a function call reached the client.
    let mut said_text = false;
    let mut next = Some(Ok(first));
    loop {
        match next.take() {
            Some(Ok(chunk)) => {
                if end.response_id.is_none() {
                    end.response_id = chunk.response_id.clone();
                }
                if end.model_version.is_none() {
                    end.model_version = chunk.model_version;
                }
                if !chunk.text.is_empty() {
                    if sink.send(format.delta(chat, &chunk.text)).await.is_err() {
                        end.client_gone = true;
                        return end;
                    }
                    end.text.push_str(&chunk.text);
                    said_text = true;
                }
                if !chunk.calls.is_empty() {
                    if sink.send(format.calls(chat, &chunk.calls)).await.is_err() {
                        end.client_gone = true;
                        return end;
                    }
                    end.calls.extend(chunk.calls);
                    said_text = true;
                }
                if chunk.usage.is_some() {
                    end.usage = chunk.usage;
                }
                if chunk.finish_reason.is_some() {
                    end.finish_reason = chunk.finish_reason;
                }
            }
            Some(Err(error)) => {
                end.error = Some(ApiError::Upstream(error));
                break;
            }
            None if end.finish_reason.is_none() => {
                end.error = Some(ApiError::Upstream(UpstreamError::InvalidResponse {
                    detail: "the stream ended without a finish reason".into(),
                }));
                break;
            }
            None if !said_text && !end.truncated() => {
                end.error = Some(ApiError::Upstream(UpstreamError::EmptyAnswer {
                    finish_reason: end.finish_reason.clone(),
                }));
                break;
            }
            None => break,
        }
        next = rest.next(clock, &chat.settings).await;
    }
    end
}

/// Replays a cached answer as a stream: the opening event and the text in a few deltas. The
/// last event is [`close`]'s to send.
pub async fn replay(
    chat: &Chat,
    answer: &str,
    model: &str,
    format: &dyn StreamFormat,
    sink: &mut impl EventSink,
) -> StreamEnd {
    let mut end = StreamEnd {
        finish_reason: Some(gemini::STOP.into()),
        usage: Some(Usage::default()),
        model_version: Some(model.to_owned()),
        text: answer.to_owned(),
        ..StreamEnd::default()
    };
    if sink.send(format.opening(chat)).await.is_err() {
        end.client_gone = true;
        return end;
    }
    for piece in pieces(answer, REPLAY_PIECE_BYTES) {
        if sink.send(format.delta(chat, piece)).await.is_err() {
            end.client_gone = true;
            break;
        }
    }
    end
}

/// About the size of one of Gemini's own stream chunks.
const REPLAY_PIECE_BYTES: usize = 256;

/// `text` cut into pieces of about `size` bytes, on character boundaries.
fn pieces(text: &str, size: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = size.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

/// Sends a stream's last event: `done`, or the error that ended it. Nothing when the client
/// has gone.
pub async fn close(
    chat: &Chat,
    end: &mut StreamEnd,
    format: &dyn StreamFormat,
    sink: &mut impl EventSink,
) {
    if end.client_gone {
        return;
    }
    let last = match &end.error {
        Some(error) => format.failed(chat, error),
        None => format.done(chat, end),
    };
    if sink.send(last).await.is_err() {
        end.client_gone = true;
    }
}

/// Milliseconds, for logs and metadata.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
