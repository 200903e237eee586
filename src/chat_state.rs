//! What a `/chat` turn reads from the store before Gemini is asked (the conversation's recent
//! turns, a cached answer) and writes after a complete answer (the turn, the cache entry).
//!
//! The rules for a failing store live here:
//! - a chat that names a conversation needs the store: a failure is a 503 `store_unavailable`;
//! - any other chat goes on without state: no cache, no new conversation (its
//!   `conversation_id` is `null`), and the per-chat log line says `"store": "unavailable"`.
//!   After the first failure a chat makes no further store calls, so a slow store costs it at
//!   most one call's timeout.

use crate::cache::{self, CacheStatus, Entry};
use crate::chat::Chat;
use crate::conversation::{self, ConversationId, Lookup, NumberedTurn, TurnRecord};
use crate::error::ApiError;
use crate::gemini;
use crate::store::{KeyValue, StateSettings};
use crate::validation::ChatRequest;

/// The runtime's store, and where new ids come from.
pub struct State<'a> {
    pub kv: &'a dyn KeyValue,
    /// 128 bits from the runtime's cryptographic random source.
    pub random_id: &'a dyn Fn() -> [u8; 16],
}

/// A turn's place in the state layer, carried by its [`Chat`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnState {
    /// The conversation this turn joins or starts.
    pub conversation: Option<ConversationId>,
    pub conversation_created_at: u64,
    /// The caller named the conversation, so losing the turn is an error, not a shrug.
    pub named: bool,
    /// The turns sent as context, kept in the conversation's record with the new one.
    pub window: Vec<NumberedTurn>,
    /// Set when the answer may be cached (a first turn, with the cache on).
    pub cache_key: Option<String>,
    pub cache: Option<CacheStatus>,
    /// A store call failed; no more are made for this chat.
    pub store_failed: bool,
    pub settings: StateSettings,
}

impl TurnState {
    /// The id to tell the caller, once the conversation is known to exist.
    pub fn conversation_id(&self) -> Option<&str> {
        self.conversation.as_ref().map(ConversationId::as_str)
    }

    /// Stops using the store for this chat. A named conversation stays named: its caller is
    /// told of the failure instead.
    fn give_up(&mut self) {
        self.store_failed = true;
        self.cache_key = None;
        if !self.named {
            self.conversation = None;
        }
    }
}

/// Before routing: continues a named conversation (its recent turns become the request's
/// history) or, for a chat without history, picks the id of a new one.
pub fn begin(
    state: &State<'_>,
    settings: StateSettings,
    request: &mut ChatRequest,
    now: u64,
) -> Result<TurnState, ApiError> {
    let Some(id) = request.conversation_id.clone() else {
        if !request.history.is_empty() {
            // The caller keeps its own history: nothing to store.
            return Ok(TurnState {
                settings,
                ..TurnState::default()
            });
        }
        return Ok(TurnState {
            conversation: Some(ConversationId::from_random((state.random_id)())),
            conversation_created_at: now,
            settings,
            ..TurnState::default()
        });
    };
    let Lookup::Found(found) = conversation::find(state.kv, &id, now)? else {
        return Err(ApiError::ConversationNotFound);
    };
    if u64::try_from(found.numbered).unwrap_or(0) >= settings.turn_limit {
        return Err(ApiError::ConversationFull {
            limit: settings.turn_limit,
        });
    }
    let window = conversation::window(state.kv, &found, &settings)?;
    request.history = conversation::as_history(&window);
    Ok(TurnState {
        conversation: Some(id),
        conversation_created_at: found.meta.created_at,
        named: true,
        window,
        settings,
        ..TurnState::default()
    })
}

/// After routing: looks the first turn's answer up in the cache. A miss, an expired entry and
/// a failing store all mean asking Gemini; `no_cache` (the caller's `Cache-Control: no-cache`)
/// skips the lookup, but the fresh answer is still stored.
pub fn cached_answer(
    state: &State<'_>,
    chat: &mut Chat,
    no_cache: bool,
    now: u64,
) -> Option<Entry> {
    if chat.state.settings.cache_ttl.is_zero() || !chat.request.history.is_empty() {
        return None;
    }
    let key = cache::key(chat);
    chat.state.cache = Some(CacheStatus::Miss);
    if no_cache {
        chat.state.cache_key = Some(key);
        return None;
    }
    match cache::lookup(state.kv, &key, now) {
        Ok(hit) => {
            if hit.is_some() {
                chat.state.cache = Some(CacheStatus::Hit);
            }
            chat.state.cache_key = Some(key);
            hit
        }
        Err(_) => {
            chat.state.give_up();
            None
        }
    }
}

/// Before a streamed answer's first event: writes a new conversation's record, so the id that
/// event announces can be read back at once.
pub fn open_stream(state: &State<'_>, chat: &mut Chat) {
    let turn = &mut chat.state;
    if turn.named || turn.store_failed {
        return;
    }
    if let Some(id) = &turn.conversation
        && conversation::create(state.kv, id, turn.conversation_created_at, &turn.settings).is_err()
    {
        turn.give_up();
    }
}

/// A complete answer as the state layer keeps it.
pub struct Finished<'a> {
    pub answer: &'a str,
    pub finish_reason: &'a str,
    pub model: &'a str,
}

/// After a complete answer: appends the turn and caches a first turn's complete answer. Fails
/// only when a named conversation could not keep the turn.
pub fn finish(
    state: &State<'_>,
    chat: &mut Chat,
    done: &Finished<'_>,
    now: u64,
) -> Result<(), ApiError> {
    let turn = &mut chat.state;
    if turn.store_failed {
        return Ok(());
    }
    if let Some(id) = &turn.conversation {
        let record = TurnRecord {
            question: chat.request.message.clone(),
            answer: done.answer.to_owned(),
            persona: chat.routing.persona.name().to_owned(),
            model: done.model.to_owned(),
            created_at: now,
        };
        if let Err(e) = conversation::append(
            state.kv,
            id,
            turn.conversation_created_at,
            &turn.window,
            &record,
            &turn.settings,
        ) {
            turn.give_up();
            return if turn.named { Err(e.into()) } else { Ok(()) };
        }
    }
    let complete = done.finish_reason == gemini::STOP;
    if let (Some(key), true) = (
        &turn.cache_key,
        complete && turn.cache != Some(CacheStatus::Hit),
    ) {
        let entry = Entry {
            answer: done.answer.to_owned(),
            model: done.model.to_owned(),
            created_at: now,
            expires_at: now.saturating_add(turn.settings.cache_ttl.as_secs()),
        };
        if cache::save(state.kv, key, &entry).is_err() {
            turn.store_failed = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::Fixed;
    use crate::store::tests::MemoryStore;
    use crate::validation::parse_chat_request;
    use std::collections::HashMap;

    fn settings() -> StateSettings {
        StateSettings::load(&Fixed(HashMap::new())).unwrap()
    }

    fn state(kv: &MemoryStore) -> State<'_> {
        State {
            kv,
            random_id: &|| [7; 16],
        }
    }

    fn chat(request: ChatRequest, turn: TurnState) -> Chat {
        let vars = Fixed(HashMap::from([("project_id", "p"), ("access_token", "t")]));
        let mut chat = Chat::prepare(request, &vars, None, &gemini::Options::default()).unwrap();
        chat.state = turn;
        chat
    }

    fn done<'a>(answer: &'a str, finish_reason: &'a str) -> Finished<'a> {
        Finished {
            answer,
            finish_reason,
            model: "gemini-3.5-flash",
        }
    }

    #[test]
    fn a_first_turn_starts_a_conversation_and_fills_the_cache() {
        let kv = MemoryStore::default();
        let s = settings();
        let mut request = parse_chat_request(br#"{"message": "hello"}"#).unwrap();
        let turn = begin(&state(&kv), s.clone(), &mut request, 100).unwrap();
        assert_eq!(turn.conversation_id(), Some("07".repeat(16).as_str()));
        let mut c = chat(request, turn);
        assert_eq!(cached_answer(&state(&kv), &mut c, false, 100), None);
        assert_eq!(c.state.cache, Some(CacheStatus::Miss));
        finish(&state(&kv), &mut c, &done("hi there", "STOP"), 101).unwrap();

        // The same question again: a hit; the second conversation is a new one.
        let mut again = chat(
            parse_chat_request(br#"{"message": "Hello "}"#).unwrap(),
            TurnState::default(),
        );
        let hit = cached_answer(&state(&kv), &mut again, false, 102).unwrap();
        assert_eq!(hit.answer, "hi there");
        assert_eq!(again.state.cache, Some(CacheStatus::Hit));
        // ...unless the caller says no-cache.
        let mut fresh = chat(
            parse_chat_request(br#"{"message": "hello"}"#).unwrap(),
            TurnState::default(),
        );
        assert_eq!(cached_answer(&state(&kv), &mut fresh, true, 102), None);
        assert!(fresh.state.cache_key.is_some());

        // The conversation continues with its window as history, and is not cached.
        let id = ConversationId::from_random([7; 16]);
        let mut next = parse_chat_request(
            format!(
                r#"{{"message": "and then?", "conversation_id": "{}"}}"#,
                id.as_str()
            )
            .as_bytes(),
        )
        .unwrap();
        let turn = begin(&state(&kv), s.clone(), &mut next, 103).unwrap();
        assert!(turn.named);
        assert_eq!(next.history.len(), 2);
        assert_eq!(next.history[1].content, "hi there");
        let mut c = chat(next, turn);
        assert_eq!(cached_answer(&state(&kv), &mut c, false, 103), None);
        assert_eq!(c.state.cache, None);
    }

    #[test]
    fn incomplete_answers_are_never_cached() {
        let kv = MemoryStore::default();
        for reason in ["MAX_TOKENS", "SAFETY"] {
            let mut c = chat(
                parse_chat_request(br#"{"message": "q"}"#).unwrap(),
                TurnState::default(),
            );
            cached_answer(&state(&kv), &mut c, false, 1);
            finish(&state(&kv), &mut c, &done("partial", reason), 1).unwrap();
        }
        assert!(kv.map.borrow().keys().all(|k| !k.starts_with("cache/")));
    }

    #[test]
    fn a_failing_store_is_a_503_only_for_a_named_conversation() {
        let kv = MemoryStore::default();
        let s = settings();
        kv.down.set(true);
        let mut plain = parse_chat_request(br#"{"message": "q"}"#).unwrap();
        let turn = begin(&state(&kv), s.clone(), &mut plain, 1).unwrap();
        let mut c = chat(plain, turn);
        assert_eq!(cached_answer(&state(&kv), &mut c, false, 1), None);
        assert!(c.state.store_failed);
        assert_eq!(c.state.conversation_id(), None);
        let calls = kv.calls.get();
        finish(&state(&kv), &mut c, &done("a", "STOP"), 1).unwrap();
        assert_eq!(
            kv.calls.get(),
            calls,
            "no store call after the first failure"
        );

        let mut named = parse_chat_request(
            format!(
                r#"{{"message": "q", "conversation_id": "{}"}}"#,
                "ab".repeat(16)
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(matches!(
            begin(&state(&kv), s.clone(), &mut named, 1),
            Err(ApiError::StoreUnavailable { .. })
        ));
    }

    #[test]
    fn unknown_and_full_conversations_are_refused() {
        let kv = MemoryStore::default();
        let s = StateSettings {
            turn_limit: 1,
            ..settings()
        };
        let body = format!(
            r#"{{"message": "q", "conversation_id": "{}"}}"#,
            "07".repeat(16)
        );
        let mut request = parse_chat_request(body.as_bytes()).unwrap();
        assert_eq!(
            begin(&state(&kv), s.clone(), &mut request, 1),
            Err(ApiError::ConversationNotFound)
        );
        let mut first = parse_chat_request(br#"{"message": "q"}"#).unwrap();
        let turn = begin(&state(&kv), s.clone(), &mut first, 1).unwrap();
        finish(&state(&kv), &mut chat(first, turn), &done("a", "STOP"), 1).unwrap();
        assert_eq!(
            begin(&state(&kv), s.clone(), &mut request, 2),
            Err(ApiError::ConversationFull { limit: 1 })
        );
    }
}
