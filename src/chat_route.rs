//! `POST /chat`, this service's own chat protocol: the request as the runtime received it, the
//! JSON answer, and the event stream (`meta`, then `delta`s, then `done` or `error`). Continues
//! or starts a server-side conversation and answers a repeated first question from the cache
//! (see [`chat_state`]).

use serde_json::{Value, json};

use crate::cache::CacheStatus;
use crate::chat::{self, Chat, StreamEnd, StreamFormat};
use crate::chat_log::ChatRecord;
use crate::chat_state::{self, State};
use crate::config::Variables;
use crate::error::ApiError;
use crate::gemini::{self, Answer, Usage};
use crate::reply::{Reply, StreamSource};
use crate::response::ApiResponse;
use crate::sse;
use crate::store::StateSettings;
use crate::validation;
use crate::vertex::{CallStats, Clock, Transport};

/// A `/chat` request as the runtime received it.
pub struct ChatInput<'a> {
    /// The body, already read (at most [`crate::request::MAX_BODY_BYTES`]).
    pub body: &'a [u8],
    /// The caller accepts only `text/event-stream`.
    pub wants_events: bool,
    /// The caller sent `Cache-Control: no-cache`.
    pub no_cache: bool,
}

/// `POST /chat`. Streams when the body says `"stream": true` or the caller accepts only
/// `text/event-stream`.
pub async fn chat<T: Transport>(
    input: ChatInput<'_>,
    vars: &impl Variables,
    transport: &T,
    clock: &impl Clock,
    state: &State<'_>,
    record: &mut ChatRecord,
) -> Reply<T::Body> {
    let mut request = match validation::parse_chat_request(input.body) {
        Ok(request) => request,
        Err(issue) => return Reply::failed(issue.into(), record),
    };
    request.stream |= input.wants_events;
    let settings = match StateSettings::load(vars) {
        Ok(settings) => settings,
        Err(e) => return Reply::failed(e.into(), record),
    };
    let now = clock.unix_seconds();
    let turn = match chat_state::begin(state, settings, &mut request, now) {
        Ok(turn) => turn,
        Err(e) => {
            if let Some(id) = &request.conversation_id {
                record.note_named_conversation(id);
            }
            return Reply::failed(e, record);
        }
    };
    let mut chat = match Chat::prepare(request, vars, None, &gemini::Options::default()) {
        Ok(chat) => chat,
        Err(e) => return Reply::failed(e, record),
    };
    chat.state = turn;
    record.note_chat(&chat);

    if let Some(hit) = chat_state::cached_answer(state, &mut chat, input.no_cache, now) {
        record.note_state(&chat.state);
        if chat.request.stream {
            chat_state::open_stream(state, &mut chat);
            let source = StreamSource::Cached {
                answer: hit.answer,
                model: hit.model,
            };
            return Reply::stream(chat, source, Box::new(ChatEvents));
        }
        let answer = Answer {
            text: hit.answer,
            calls: Vec::new(),
            finish_reason: gemini::STOP.into(),
            usage: Usage::default(),
            model_version: Some(hit.model),
            response_id: None,
        };
        return whole_answer(chat, answer, &CallStats::default(), state, clock, record);
    }

    if chat.request.stream {
        let (opened, stats) = chat::open(&mut chat, transport, clock).await;
        record.note_call(&stats);
        return match opened {
            Ok(opened) => {
                chat_state::open_stream(state, &mut chat);
                record.note_state(&chat.state);
                Reply::stream(
                    chat,
                    StreamSource::Upstream {
                        opened: Box::new(opened),
                        stats,
                    },
                    Box::new(ChatEvents),
                )
            }
            Err(e) => {
                record.note_state(&chat.state);
                Reply::failed(ApiError::Upstream(e).with_attempts(stats.attempts), record)
            }
        };
    }

    let (answer, stats) = chat::answer(&mut chat, transport, clock).await;
    record.note_call(&stats);
    match answer {
        Ok(answer) => whole_answer(chat, answer, &stats, state, clock, record),
        Err(e) => {
            record.note_state(&chat.state);
            Reply::failed(ApiError::Upstream(e).with_attempts(stats.attempts), record)
        }
    }
}

/// A whole answer (from Vertex AI or the cache): the turn is stored, then the 200 is made.
fn whole_answer<B>(
    mut chat: Chat,
    answer: Answer,
    stats: &CallStats,
    state: &State<'_>,
    clock: &impl Clock,
    record: &mut ChatRecord,
) -> Reply<B> {
    record.note_answer(&answer);
    let model = chat.model(answer.model_version.as_deref()).to_owned();
    let done = chat_state::Finished {
        answer: &answer.text,
        finish_reason: &answer.finish_reason,
        model: &model,
    };
    let stored = chat_state::finish(state, &mut chat, &done, clock.unix_seconds());
    record.note_state(&chat.state);
    match stored {
        Ok(()) => Reply::Whole(ApiResponse::json(200, &chat_body(&chat, &answer, stats))),
        Err(e) => Reply::failed(e, record),
    }
}

/// The resonance analysis and routing, as `/chat` reports them in `metadata`.
pub fn analysis_metadata(chat: &Chat) -> Value {
    json!({
        "rhythm": { "pace": chat.resonance.pace, "avg_length": chat.resonance.avg_length },
        "tone": { "primary": chat.resonance.tone, "confidence": chat.resonance.tone.confidence() },
        "routing": {
            "secondary_persona": chat.routing.secondary.name(),
            "reasoning": chat.routing.reasoning,
        },
        "model": chat.model(None),
    })
}

/// The `/chat` answer: the original service's fields, plus what Gemini reported.
fn chat_body(chat: &Chat, answer: &Answer, stats: &CallStats) -> Value {
    let mut metadata = analysis_metadata(chat);
    if let Value::Object(m) = &mut metadata {
        m.insert(
            "model".into(),
            json!(chat.model(answer.model_version.as_deref())),
        );
        m.insert("finish_reason".into(), json!(answer.finish_reason));
        m.insert("truncated".into(), json!(answer.truncated()));
        m.insert("usage".into(), json!(answer.usage));
        m.insert("attempts".into(), json!(stats.attempts));
        m.insert("cache".into(), json!(cache_status(chat)));
    }
    json!({
        "content": answer.text,
        "persona_used": chat.persona().name(),
        "resonance_key": chat.resonance.key(),
        "confidence": chat.routing.confidence,
        "conversation_id": chat.state.conversation_id(),
        "metadata": metadata,
    })
}

/// `metadata.cache`: `hit` when the answer came from the cache, else `miss`.
pub fn cache_status(chat: &Chat) -> &'static str {
    chat.state.cache.unwrap_or(CacheStatus::Miss).as_str()
}

/// The `/chat` event stream.
pub struct ChatEvents;

impl StreamFormat for ChatEvents {
    fn opening(&self, chat: &Chat) -> Vec<u8> {
        sse::event(
            "meta",
            &json!({
                "persona_used": chat.persona().name(),
                "resonance_key": chat.resonance.key(),
                "confidence": chat.routing.confidence,
                "conversation_id": chat.state.conversation_id(),
                "metadata": analysis_metadata(chat),
            }),
        )
    }

    fn delta(&self, _chat: &Chat, text: &str) -> Vec<u8> {
        sse::event("delta", &json!({ "text": text }))
    }

    /// `/chat` declares no tools, so Gemini never calls one here.
    fn calls(&self, _chat: &Chat, _calls: &[gemini::ToolCall]) -> Vec<u8> {
        Vec::new()
    }

    fn done(&self, chat: &Chat, end: &StreamEnd) -> Vec<u8> {
        sse::event(
            "done",
            &json!({
                "finish_reason": end.finish_reason,
                "truncated": end.truncated(),
                "usage": end.usage.unwrap_or_default(),
                "conversation_id": chat.state.conversation_id(),
                "metadata": {
                    "attempts": end.attempts,
                    "model": chat.model(end.model_version.as_deref()),
                    "cache": cache_status(chat),
                },
            }),
        )
    }

    fn failed(&self, _chat: &Chat, error: &ApiError) -> Vec<u8> {
        sse::event("error", &error.answer().body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vars;
    use crate::conversation_route::conversation;
    use crate::reply::send_stream;
    use crate::reply::tests::{Collected, relay_to_end};
    use crate::routes::route;
    use crate::store::tests::MemoryStore;
    use crate::vertex::TransportError;
    use crate::vertex::tests::{FakeClock, FakeVertex, Scripted};
    use futures::executor::block_on;

    fn configured() -> crate::config::tests::Fixed {
        vars(&[("project_id", "proj"), ("access_token", "tok")])
    }

    fn body_of(r: &ApiResponse) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    /// `chat` with a store of its own.
    async fn call<T: Transport>(
        body: &[u8],
        wants_events: bool,
        vars: &impl Variables,
        transport: &T,
        clock: &impl Clock,
        record: &mut ChatRecord,
    ) -> Reply<T::Body> {
        let store = MemoryStore::default();
        let state = State {
            kv: &store,
            random_id: &|| [9; 16],
        };
        let input = ChatInput {
            body,
            wants_events,
            no_cache: false,
        };
        chat(input, vars, transport, clock, &state, record).await
    }

    fn whole<B>(reply: Reply<B>) -> ApiResponse {
        match reply {
            Reply::Whole(r) => r,
            Reply::Stream { .. } => panic!("expected a whole response"),
        }
    }

    fn run_chat(body: &[u8], vertex: &FakeVertex) -> (ApiResponse, ChatRecord) {
        let mut record = ChatRecord::new("/chat");
        let reply = block_on(call(
            body,
            false,
            &configured(),
            vertex,
            &FakeClock::default(),
            &mut record,
        ));
        (whole(reply), record)
    }

    fn answer(text: &str) -> Scripted {
        Scripted::json(
            200,
            json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 10,
                                  "thoughtsTokenCount": 5, "totalTokenCount": 65},
                "modelVersion": "gemini-3.5-flash"
            }),
        )
    }

    #[test]
    fn chat_answers_with_persona_and_metadata() {
        let vertex = FakeVertex::new([answer("첫째, ...")]);
        let body = json!({"message": " 어떻게 해야 하나요? ", "user_id": "u1"}).to_string();
        let (r, record) = run_chat(body.as_bytes(), &vertex);
        assert_eq!(r.status, 200);
        let b = body_of(&r);
        assert_eq!(b["content"], "첫째, ...");
        assert_eq!(b["persona_used"], "Elro");
        assert_eq!(b["resonance_key"], "curious-burst-inquiry");
        assert_eq!(b["confidence"], 0.8);
        assert_eq!(b["metadata"]["rhythm"]["pace"], "burst");
        assert_eq!(b["metadata"]["tone"]["primary"], "curious");
        assert_eq!(b["metadata"]["routing"]["secondary_persona"], "Riri");
        assert_eq!(b["metadata"]["finish_reason"], "STOP");
        assert_eq!(b["metadata"]["truncated"], false);
        assert_eq!(b["metadata"]["usage"]["thoughts_tokens"], 5);
        assert_eq!(b["metadata"]["usage"]["total_tokens"], 65);
        assert_eq!(b["metadata"]["model"], "gemini-3.5-flash");
        assert_eq!(b["metadata"]["attempts"], 1);

        assert_eq!(record.persona, Some("Elro"));
        assert_eq!(record.outcome, "ok");
        assert_eq!(record.total_tokens, Some(65));

        let calls = vertex.calls.borrow();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].bearer_token.as_deref(), Some("tok"));
        assert!(calls[0].url.contains("/projects/proj/locations/global/"));
        let sent: Value = serde_json::from_slice(&calls[0].body).unwrap();
        assert_eq!(
            sent["contents"][0]["parts"][0]["text"],
            "어떻게 해야 하나요?"
        );
        let instruction = sent["systemInstruction"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        assert!(instruction.contains("Elro"), "{instruction}");
    }

    #[test]
    fn a_chosen_persona_skips_routing() {
        let vertex = FakeVertex::new([answer("ok")]);
        let body = json!({"message": "어떻게 해야 하나요?", "persona": "nana"}).to_string();
        let (r, _) = run_chat(body.as_bytes(), &vertex);
        let b = body_of(&r);
        assert_eq!(b["persona_used"], "Nana");
        assert!(
            b["metadata"]["routing"]["reasoning"]
                .as_str()
                .unwrap()
                .contains("chosen by the caller")
        );
        let sent: Value = serde_json::from_slice(&vertex.calls.borrow()[0].body).unwrap();
        assert!(
            sent["systemInstruction"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .contains("Nana")
        );
    }

    #[test]
    fn validation_happens_before_configuration() {
        let vertex = FakeVertex::new([]);
        let mut record = ChatRecord::new("/chat");
        let reply = block_on(call(
            br#"{"message": ""}"#,
            false,
            &vars(&[]),
            &vertex,
            &FakeClock::default(),
            &mut record,
        ));
        assert_eq!(whole(reply).status, 422);
        assert_eq!(record.outcome, "validation_error");
        assert!(vertex.calls.borrow().is_empty());
    }

    #[test]
    fn missing_configuration_is_503_without_an_upstream_call() {
        let vertex = FakeVertex::new([]);
        let mut record = ChatRecord::new("/chat");
        let r = whole(block_on(call(
            br#"{"message": "hi"}"#,
            false,
            &vars(&[]),
            &vertex,
            &FakeClock::default(),
            &mut record,
        )));
        assert_eq!(r.status, 503);
        assert!(
            body_of(&r)["error"]
                .as_str()
                .unwrap()
                .contains("SPIN_VARIABLE_PROJECT_ID")
        );
        assert!(vertex.calls.borrow().is_empty());
    }

    #[test]
    fn transport_failures_are_honest_and_in_words() {
        for (failure, status) in [
            (TransportError::Timeout, 504),
            (TransportError::Denied, 503),
            (TransportError::RuntimeCredentials, 503),
        ] {
            let vertex = FakeVertex::new([Scripted::Fail(failure)]);
            let (r, _) = run_chat(br#"{"message": "hi"}"#, &vertex);
            assert_eq!(r.status, status);
        }
        let refused = || {
            Scripted::Fail(TransportError::Failed {
                what: "the connection was refused",
                detail: "ErrorCode::ConnectionRefused".into(),
            })
        };
        let vertex = FakeVertex::new([refused(), refused(), refused()]);
        let (r, record) = run_chat(br#"{"message": "hi"}"#, &vertex);
        assert_eq!(r.status, 502);
        let b = body_of(&r);
        assert_eq!(b["attempts"], 3);
        assert!(!b["error"].as_str().unwrap().contains("ErrorCode"), "{b}");
        assert_eq!(record.attempts, 3);
        assert_eq!(record.outcome, "upstream_unreachable");
    }

    #[test]
    fn upstream_error_status_is_not_a_200() {
        let busy = || {
            Scripted::json(
                503,
                json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}),
            )
        };
        let vertex = FakeVertex::new([busy(), busy(), busy()]);
        let (r, _) = run_chat(br#"{"message": "hi"}"#, &vertex);
        assert_eq!(r.status, 502);
        assert_eq!(body_of(&r)["upstream"]["reason"], "UNAVAILABLE");
    }

    #[test]
    fn a_streamed_chat_sends_meta_deltas_and_done() {
        let vertex = FakeVertex::new([Scripted::sse(&[
            json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 4}}),
        ])]);
        let clock = FakeClock::default();
        let mut record = ChatRecord::new("/chat");
        let reply = block_on(call(
            br#"{"message": "hi", "stream": true}"#,
            false,
            &configured(),
            &vertex,
            &clock,
            &mut record,
        ));
        let (events, end) = relay_to_end(reply, &clock);
        assert_eq!(end.error, None);
        assert!(events[0].starts_with("event: meta\n"), "{events:?}");
        assert_eq!(events[1], "event: delta\ndata: {\"text\":\"Hel\"}\n\n");
        assert_eq!(events[2], "event: delta\ndata: {\"text\":\"lo\"}\n\n");
        assert!(events[3].starts_with("event: done\n"));
        let done: Value =
            serde_json::from_str(events[3].trim_start_matches("event: done\ndata: ")).unwrap();
        assert_eq!(done["finish_reason"], "STOP");
        assert_eq!(done["usage"]["total_tokens"], 9);
        assert_eq!(done["metadata"]["attempts"], 1);
    }

    #[test]
    fn a_stream_that_fails_before_its_first_chunk_is_an_ordinary_error() {
        let vertex = FakeVertex::new([Scripted::json(
            429,
            json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                   "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "120s"}]}}),
        )]);
        let mut record = ChatRecord::new("/chat");
        let r = whole(block_on(call(
            br#"{"message": "hi"}"#,
            true,
            &configured(),
            &vertex,
            &FakeClock::default(),
            &mut record,
        )));
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("120"));
        assert!(record.stream);
    }

    /// A chat against `store`, with the caller's headers.
    fn call_with(
        store: &MemoryStore,
        body: &str,
        no_cache: bool,
        vertex: &FakeVertex,
        clock: &FakeClock,
    ) -> Reply<<FakeVertex as Transport>::Body> {
        let state = State {
            kv: store,
            random_id: &|| [0x5a; 16],
        };
        let input = ChatInput {
            body: body.as_bytes(),
            wants_events: false,
            no_cache,
        };
        let mut record = ChatRecord::new("/chat");
        block_on(chat(
            input,
            &configured(),
            vertex,
            clock,
            &state,
            &mut record,
        ))
    }

    fn events_of(store: &MemoryStore, reply: Reply<<FakeVertex as Transport>::Body>) -> Vec<Value> {
        let Reply::Stream(reply) = reply else {
            panic!("expected a stream");
        };
        let state = State {
            kv: store,
            random_id: &|| [0x5a; 16],
        };
        let mut sink = Collected::default();
        let mut record = ChatRecord::new("/chat");
        block_on(send_stream(
            *reply,
            &FakeClock::default(),
            &state,
            &mut sink,
            &mut record,
        ));
        sink.0
            .iter()
            .map(|e| {
                let (name, data) = e.split_once("\ndata: ").unwrap();
                json!({"event": name.trim_start_matches("event: "), "data": serde_json::from_str::<Value>(data.trim()).unwrap()})
            })
            .collect()
    }

    #[test]
    fn a_conversation_is_kept_read_back_and_deleted() {
        let store = MemoryStore::default();
        let clock = FakeClock::default();
        let vertex = FakeVertex::new([answer("first answer"), answer("second answer")]);
        let first = body_of(&whole(call_with(
            &store,
            r#"{"message": "hi"}"#,
            false,
            &vertex,
            &clock,
        )));
        let id = first["conversation_id"].as_str().unwrap().to_owned();
        assert_eq!(id, "5a".repeat(16));
        assert_eq!(first["metadata"]["cache"], "miss");
        let body = format!(r#"{{"message": "and?", "conversation_id": "{id}"}}"#);
        let second = body_of(&whole(call_with(&store, &body, false, &vertex, &clock)));
        assert_eq!(second["conversation_id"], id.as_str());
        // The second call carried the first turn as history.
        let sent = &vertex.requests()[1];
        assert_eq!(sent["contents"].as_array().unwrap().len(), 3, "{sent}");

        let state = State {
            kv: &store,
            random_id: &|| [0; 16],
        };
        let path = format!("/conversations/{id}");
        let got = conversation("GET", &path, &configured(), &state, &clock);
        assert_eq!(got.status, 200);
        let transcript = body_of(&got);
        assert_eq!(transcript["turns"][0]["question"], "hi");
        assert_eq!(transcript["turns"][1]["answer"], "second answer");
        assert_eq!(
            conversation("DELETE", &path, &configured(), &state, &clock).status,
            204
        );
        assert_eq!(
            conversation("GET", &path, &configured(), &state, &clock).status,
            404
        );
        assert_eq!(
            conversation("DELETE", &path, &configured(), &state, &clock).status,
            404
        );
        let bad = conversation("GET", "/conversations/XYZ", &configured(), &state, &clock);
        assert_eq!(bad.status, 422);
        assert_eq!(
            body_of(&bad)["detail"][0]["loc"],
            json!(["path", "conversation_id"])
        );
        assert_eq!(
            route("PUT", &path),
            Err(ApiError::MethodNotAllowed {
                allow: "GET, HEAD, DELETE"
            })
        );
    }

    #[test]
    fn history_and_a_conversation_id_together_are_refused() {
        let store = MemoryStore::default();
        let vertex = FakeVertex::new([]);
        let body = format!(
            r#"{{"message": "q", "conversation_id": "{}", "history": [{{"role": "user", "content": "x"}}]}}"#,
            "ab".repeat(16)
        );
        let r = whole(call_with(
            &store,
            &body,
            false,
            &vertex,
            &FakeClock::default(),
        ));
        assert_eq!(r.status, 422);
        assert_eq!(
            body_of(&r)["detail"][0]["loc"],
            json!(["body", "conversation_id"])
        );
        let unknown = format!(
            r#"{{"message": "q", "conversation_id": "{}"}}"#,
            "ab".repeat(16)
        );
        let r = whole(call_with(
            &store,
            &unknown,
            false,
            &vertex,
            &FakeClock::default(),
        ));
        assert_eq!(r.status, 404);
        assert_eq!(body_of(&r)["code"], "conversation_not_found");
        assert!(vertex.requests().is_empty());
    }

    #[test]
    fn a_cached_answer_is_replayed_as_a_stream_and_no_cache_skips_it() {
        let store = MemoryStore::default();
        let clock = FakeClock::default();
        let long = "word ".repeat(200);
        let vertex = FakeVertex::new([answer(&long), answer("fresh")]);
        let first = whole(call_with(
            &store,
            r#"{"message": "Same question"}"#,
            false,
            &vertex,
            &clock,
        ));
        assert_eq!(body_of(&first)["metadata"]["cache"], "miss");

        let events = events_of(
            &store,
            call_with(
                &store,
                r#"{"message": "same  question", "stream": true}"#,
                false,
                &vertex,
                &clock,
            ),
        );
        assert_eq!(vertex.requests().len(), 1, "a hit makes no upstream call");
        assert_eq!(events[0]["event"], "meta");
        let text: String = events
            .iter()
            .filter(|e| e["event"] == "delta")
            .map(|e| e["data"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, long);
        assert!(events.len() > 4, "replayed in pieces");
        let done = events.last().unwrap();
        assert_eq!(done["event"], "done");
        assert_eq!(done["data"]["metadata"]["cache"], "hit");
        assert_eq!(done["data"]["metadata"]["attempts"], 0);
        // The replayed turn was stored in its own new conversation before `done`.
        let id = done["data"]["conversation_id"].as_str().unwrap();
        assert_eq!(events[0]["data"]["conversation_id"], id);
        assert!(store.map.borrow().contains_key(&format!("conv/{id}/t/1")));

        let fresh = whole(call_with(
            &store,
            r#"{"message": "Same question"}"#,
            true,
            &vertex,
            &clock,
        ));
        assert_eq!(body_of(&fresh)["content"], "fresh");
        assert_eq!(body_of(&fresh)["metadata"]["cache"], "miss");
    }

    #[test]
    fn a_failing_store_leaves_a_plain_chat_answered_and_a_named_one_refused() {
        let store = MemoryStore::default();
        store.down.set(true);
        let vertex = FakeVertex::new([answer("still here")]);
        let r = whole(call_with(
            &store,
            r#"{"message": "q"}"#,
            false,
            &vertex,
            &FakeClock::default(),
        ));
        assert_eq!(r.status, 200);
        assert_eq!(body_of(&r)["conversation_id"], Value::Null);
        let named = format!(
            r#"{{"message": "q", "conversation_id": "{}"}}"#,
            "ab".repeat(16)
        );
        let r = whole(call_with(
            &store,
            &named,
            false,
            &vertex,
            &FakeClock::default(),
        ));
        assert_eq!(r.status, 503);
        assert_eq!(body_of(&r)["code"], "store_unavailable");
    }
}
