//! Server-side conversations on the key-value store.
//!
//! Layout (store "default"):
//! - `conv/{id}/n`: a counter, incremented atomically to number each new turn;
//! - `conv/{id}/t/{n}`: turn `n`, its question *and* answer in one record;
//! - `conv/{id}`: the conversation's dates and a copy of its recent turns ([`Meta`]), so that a
//!   new question needs one read for its context, not one per turn.
//!
//! Keeping a question with its own answer, under a number no other writer can take, is what lets
//! many turns land on one conversation at once without losing one or pairing a question with
//! another turn's answer: there is no read-modify-write of a shared transcript. The copy in
//! `conv/{id}` is last-writer-wins, so concurrent turns may each leave the other out of it; a
//! reader fills such gaps from the turn records, which are the truth. A turn numbered but not
//! (yet) written is simply skipped by readers.
//!
//! The key-value API has no expiry, so expiry is kept in the records: an expired conversation
//! reads as absent and is removed when next touched.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::store::{KeyValue, StateSettings, StoreError, get_json, set_json};
use crate::validation::{Role, Turn};

/// A conversation id: 128 random bits as 32 lowercase hex digits. Whoever holds it can read the
/// conversation, so it is never logged in full (see [`ConversationId::short`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationId(String);

impl ConversationId {
    pub const LEN: usize = 32;

    pub fn from_random(bytes: [u8; 16]) -> ConversationId {
        ConversationId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Accepts exactly the form [`from_random`](Self::from_random) produces.
    pub fn parse(raw: &str) -> Option<ConversationId> {
        (raw.len() == Self::LEN && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| ConversationId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 digits: enough to follow one conversation in the logs, useless to read it.
    pub fn short(&self) -> &str {
        &self.0[..8]
    }

    fn meta_key(&self) -> String {
        format!("conv/{}", self.0)
    }

    fn counter_key(&self) -> String {
        format!("conv/{}/n", self.0)
    }

    fn turn_key(&self, n: i64) -> String {
        format!("conv/{}/t/{n}", self.0)
    }
}

/// A conversation's dates, in Unix seconds, and its recent turns as last written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub created_at: u64,
    pub updated_at: u64,
    pub expires_at: u64,
    #[serde(default)]
    pub recent: Vec<NumberedTurn>,
}

/// A turn with its number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberedTurn {
    pub n: i64,
    #[serde(flatten)]
    pub turn: TurnRecord,
}

/// One exchange: the question and the answer that was given to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnRecord {
    pub question: String,
    pub answer: String,
    pub persona: String,
    pub model: String,
    pub created_at: u64,
}

/// A conversation as read: its dates and how many turns were numbered so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: ConversationId,
    pub meta: Meta,
    pub numbered: i64,
}

/// Where a conversation was found to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Found(Conversation),
    /// Never existed, deleted, expired, or not a record of ours.
    Missing,
}

/// Reads a conversation's dates and turn count. An expired one is removed and reads as missing.
pub fn find(kv: &dyn KeyValue, id: &ConversationId, now: u64) -> Result<Lookup, StoreError> {
    let Some(meta) = get_json::<Meta>(kv, &id.meta_key())? else {
        return Ok(Lookup::Missing);
    };
    if meta.expires_at <= now {
        remove(kv, id)?;
        return Ok(Lookup::Missing);
    }
    let numbered = kv.increment(&id.counter_key(), 0)?;
    Ok(Lookup::Found(Conversation {
        id: id.clone(),
        meta,
        numbered,
    }))
}

/// Starts a conversation (before its first turn is written, so a streamed first answer can
/// name it from its first event).
pub fn create(
    kv: &dyn KeyValue,
    id: &ConversationId,
    now: u64,
    settings: &StateSettings,
) -> Result<(), StoreError> {
    set_json(kv, &id.meta_key(), &meta(now, now, Vec::new(), settings))
}

fn meta(created_at: u64, now: u64, recent: Vec<NumberedTurn>, settings: &StateSettings) -> Meta {
    Meta {
        created_at,
        updated_at: now,
        expires_at: now.saturating_add(settings.conversation_ttl.as_secs()),
        recent,
    }
}

/// Appends one turn under a number of its own, then rewrites the conversation's dates and
/// recent turns: `window` (what this turn was asked with) and the turn itself.
pub fn append(
    kv: &dyn KeyValue,
    id: &ConversationId,
    created_at: u64,
    window: &[NumberedTurn],
    turn: &TurnRecord,
    settings: &StateSettings,
) -> Result<i64, StoreError> {
    let n = kv.increment(&id.counter_key(), 1)?;
    set_json(kv, &id.turn_key(n), turn)?;
    let mut recent = window.to_vec();
    recent.push(NumberedTurn {
        n,
        turn: turn.clone(),
    });
    recent.sort_by_key(|t| t.n);
    let recent = within_budget(recent, settings);
    // Concurrent turns each write nearly the same dates; whichever lands last is right enough.
    set_json(
        kv,
        &id.meta_key(),
        &meta(created_at, turn.created_at, recent, settings),
    )?;
    Ok(n)
}

/// The turns numbered `from..=to`, oldest first; numbers never written (a turn in flight, or
/// one whose write failed) and records that are not ours are skipped.
fn turns_numbered(
    kv: &dyn KeyValue,
    id: &ConversationId,
    numbers: impl Iterator<Item = i64>,
) -> Result<Vec<NumberedTurn>, StoreError> {
    let numbers: Vec<i64> = numbers.collect();
    if numbers.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = numbers.iter().map(|&n| id.turn_key(n)).collect();
    Ok(numbers
        .into_iter()
        .zip(kv.get_many(&keys)?)
        .filter_map(|(n, bytes)| {
            let turn = serde_json::from_slice(&bytes?).ok()?;
            Some(NumberedTurn { n, turn })
        })
        .collect())
}

/// Every turn, oldest first (at most the turn limit and a little, see [`append`]).
pub fn transcript(
    kv: &dyn KeyValue,
    conversation: &Conversation,
) -> Result<Vec<TurnRecord>, StoreError> {
    Ok(
        turns_numbered(kv, &conversation.id, 1..=conversation.numbered)?
            .into_iter()
            .map(|t| t.turn)
            .collect(),
    )
}

/// The recent turns sent with a new question: at most `window_turns` turns and about
/// `window_tokens` tokens, always whole turns, the newest kept first. They come from the copy in
/// the conversation's record; only turns missing from it are read one by one.
pub fn window(
    kv: &dyn KeyValue,
    conversation: &Conversation,
    settings: &StateSettings,
) -> Result<Vec<NumberedTurn>, StoreError> {
    let wanted = i64::try_from(settings.window_turns).unwrap_or(i64::MAX);
    let from = conversation.numbered.saturating_sub(wanted).max(0) + 1;
    let range = from..=conversation.numbered;
    let mut turns: Vec<NumberedTurn> = conversation
        .meta
        .recent
        .iter()
        .filter(|t| range.contains(&t.n))
        .cloned()
        .collect();
    turns.sort_by_key(|t| t.n);
    turns.dedup_by_key(|t| t.n);
    let missing = range.filter(|n| turns.binary_search_by_key(n, |t| t.n).is_err());
    turns.extend(turns_numbered(kv, &conversation.id, missing)?);
    turns.sort_by_key(|t| t.n);
    Ok(within_budget(turns, settings))
}

/// The newest of `turns` (sorted by number) that fit the window's turns and tokens.
fn within_budget(turns: Vec<NumberedTurn>, settings: &StateSettings) -> Vec<NumberedTurn> {
    let mut budget = settings.window_tokens;
    let mut kept = Vec::new();
    for t in turns.into_iter().rev().take(settings.window_turns) {
        let cost = estimated_tokens(&t.turn.question) + estimated_tokens(&t.turn.answer);
        if cost > budget {
            break;
        }
        budget -= cost;
        kept.push(t);
    }
    kept.reverse();
    kept
}

/// The window as the history Gemini is sent. An answer cut to nothing (the request's own
/// token limit spent on thinking) is left out: Gemini takes no empty parts.
pub fn as_history(window: &[NumberedTurn]) -> Vec<Turn> {
    window
        .iter()
        .flat_map(|t| {
            let question = Turn {
                role: Role::User,
                content: t.turn.question.clone(),
            };
            let answer = (!t.turn.answer.is_empty()).then(|| Turn {
                role: Role::Assistant,
                content: t.turn.answer.clone(),
            });
            std::iter::once(question).chain(answer)
        })
        .collect()
}

/// About four characters a token, the usual rule of thumb for Gemini's tokenizer.
fn estimated_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Deletes a conversation; `false` when there was none.
pub fn delete(kv: &dyn KeyValue, id: &ConversationId, now: u64) -> Result<bool, StoreError> {
    match find(kv, id, now)? {
        Lookup::Missing => Ok(false),
        Lookup::Found(_) => {
            remove(kv, id)?;
            Ok(true)
        }
    }
}

fn remove(kv: &dyn KeyValue, id: &ConversationId) -> Result<(), StoreError> {
    // The dates go first: once they are gone the conversation reads as missing, whatever
    // happens to the rest.
    kv.delete(&id.meta_key())?;
    let numbered = kv.increment(&id.counter_key(), 0)?;
    for n in 1..=numbered {
        kv.delete(&id.turn_key(n))?;
    }
    kv.delete(&id.counter_key())
}

/// `GET /conversations/{id}`.
pub fn transcript_body(
    conversation: &Conversation,
    turns: &[TurnRecord],
    settings: &StateSettings,
) -> Value {
    json!({
        "conversation_id": conversation.id.as_str(),
        "created_at": conversation.meta.created_at,
        "updated_at": conversation.meta.updated_at,
        "expires_at": conversation.meta.expires_at,
        "turns": turns,
        "turn_limit": settings.turn_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::MemoryStore;
    use std::time::Duration;

    fn settings() -> StateSettings {
        StateSettings {
            conversation_ttl: Duration::from_secs(100),
            window_turns: 3,
            window_tokens: 1_000,
            turn_limit: 10,
            cache_ttl: Duration::from_secs(60),
        }
    }

    fn turn(q: &str, at: u64) -> TurnRecord {
        TurnRecord {
            question: q.into(),
            answer: format!("answer to {q}"),
            persona: "Lua".into(),
            model: "m".into(),
            created_at: at,
        }
    }

    #[test]
    fn an_answer_cut_to_nothing_is_not_sent_back() {
        let cut = TurnRecord {
            answer: String::new(),
            ..turn("a", 1)
        };
        let window = [
            NumberedTurn { n: 1, turn: cut },
            NumberedTurn {
                n: 2,
                turn: turn("b", 2),
            },
        ];
        let roles: Vec<(Role, String)> = as_history(&window)
            .into_iter()
            .map(|t| (t.role, t.content))
            .collect();
        assert_eq!(
            roles,
            [
                (Role::User, "a".to_owned()),
                (Role::User, "b".to_owned()),
                (Role::Assistant, "answer to b".to_owned())
            ]
        );
    }

    fn id(n: u8) -> ConversationId {
        ConversationId::from_random([n; 16])
    }

    fn found(kv: &MemoryStore, id: &ConversationId, now: u64) -> Conversation {
        match find(kv, id, now).unwrap() {
            Lookup::Found(c) => c,
            Lookup::Missing => panic!("missing"),
        }
    }

    #[test]
    fn ids_are_128_bits_of_hex_and_parse_strictly() {
        let id = ConversationId::from_random([0xab; 16]);
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(id.short(), "abababab");
        assert_eq!(ConversationId::parse(id.as_str()), Some(id));
        for bad in [
            "",
            "ABABABABABABABABABABABABABABABAB",
            "x",
            &"a".repeat(33),
            "../../etc/passwd",
        ] {
            assert_eq!(ConversationId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn turns_append_in_order_and_the_window_keeps_the_newest_whole_turns() {
        let kv = MemoryStore::default();
        let s = settings();
        let c = id(1);
        create(&kv, &c, 10, &s).unwrap();
        for (i, q) in ["a", "b", "c", "d"].iter().enumerate() {
            let window = window(&kv, &found(&kv, &c, 11), &s).unwrap();
            append(&kv, &c, 10, &window, &turn(q, 11 + i as u64), &s).unwrap();
        }
        let conv = found(&kv, &c, 20);
        assert_eq!(conv.numbered, 4);
        assert_eq!(conv.meta.expires_at, 14 + 100);
        let all = transcript(&kv, &conv).unwrap();
        assert_eq!(
            all.iter().map(|t| t.question.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(conv.meta.recent.len(), 3, "the record keeps the window");
        let calls = kv.calls.get();
        let history = as_history(&window(&kv, &conv, &s).unwrap());
        assert_eq!(kv.calls.get(), calls, "read from the record alone");
        assert_eq!(history.len(), 6);
        assert_eq!(history[0].content, "b");
        assert_eq!(history[1].content, "answer to b");
        assert_eq!(history[5].role, Role::Assistant);

        let tight = StateSettings {
            window_tokens: 7,
            ..s.clone()
        };
        // "answer to d" is 11 characters: 3 tokens, plus 1 for "d"; two turns would need 8.
        assert_eq!(super::window(&kv, &conv, &tight).unwrap().len(), 1);

        // A turn the record left out (a concurrent writer's) is read from its own record.
        let mut stale = conv.clone();
        stale.meta.recent.remove(1);
        let filled = window(&kv, &stale, &s).unwrap();
        assert_eq!(filled.iter().map(|t| t.n).collect::<Vec<_>>(), [2, 3, 4]);
    }

    #[test]
    fn expired_conversations_read_as_missing_and_are_removed() {
        let kv = MemoryStore::default();
        let s = settings();
        let c = id(2);
        create(&kv, &c, 10, &s).unwrap();
        append(&kv, &c, 10, &[], &turn("q", 10), &s).unwrap();
        assert_eq!(find(&kv, &c, 110).unwrap(), Lookup::Missing);
        assert!(kv.map.borrow().is_empty(), "{:?}", kv.map.borrow().keys());
    }

    #[test]
    fn delete_removes_every_record() {
        let kv = MemoryStore::default();
        let s = settings();
        let c = id(3);
        create(&kv, &c, 10, &s).unwrap();
        append(&kv, &c, 10, &[], &turn("q", 10), &s).unwrap();
        assert!(delete(&kv, &c, 11).unwrap());
        assert!(!delete(&kv, &c, 11).unwrap());
        assert!(kv.map.borrow().is_empty());
    }

    #[test]
    fn corrupt_or_missing_turns_are_skipped_and_corrupt_dates_read_as_missing() {
        let kv = MemoryStore::default();
        let s = settings();
        let c = id(4);
        create(&kv, &c, 10, &s).unwrap();
        append(&kv, &c, 10, &[], &turn("a", 10), &s).unwrap();
        kv.increment(&c.counter_key(), 1).unwrap(); // numbered, never written
        append(&kv, &c, 10, &[], &turn("c", 10), &s).unwrap();
        kv.set(&c.turn_key(1), b"{\"question\": 1}").unwrap();
        let conv = found(&kv, &c, 11);
        assert_eq!(conv.numbered, 3);
        let all = transcript(&kv, &conv).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].question, "c");

        kv.set(&c.meta_key(), b"<html>").unwrap();
        assert_eq!(find(&kv, &c, 11).unwrap(), Lookup::Missing);
    }

    #[test]
    fn a_store_failure_is_an_error_not_a_missing_conversation() {
        let kv = MemoryStore::default();
        kv.down.set(true);
        assert!(find(&kv, &id(5), 1).is_err());
    }
}
