//! The state layer's view of the runtime's key-value store (Spin's `key_value` API, which both
//! `spin up` and ion-host provide), kept behind [`KeyValue`] so conversations and the cache
//! unit-test natively.
//!
//! A store call can fail or time out (the runtime bounds each call); callers decide what that
//! means: a plain chat goes on without state, a request that names a conversation gets a 503.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Variables, parse_number};

/// The key-value operations the service uses. Values are opaque bytes (JSON here).
pub trait KeyValue {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Adds `delta` to the counter at `key` atomically (a missing counter is 0) and returns the
    /// new value. `increment(key, 0)` reads a counter.
    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
    /// Several values in one round trip (a store that cannot batch reads them one by one).
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|key| self.get(key)).collect()
    }
    /// Compare-and-swap: reads `key`, writes `change(current)` only if nobody wrote `key` in
    /// between, and otherwise runs `change` again on the newer value (at most
    /// [`UPDATE_ATTEMPTS`] times). `change` returning `None` writes nothing. Returns whether
    /// the value was written.
    fn update(&self, key: &str, change: &mut Change<'_>) -> Result<bool, StoreError>;
}

/// What [`KeyValue::update`] does to a value: the new value from the current one, or `None`
/// to leave it.
pub type Change<'a> = dyn FnMut(Option<&[u8]>) -> Option<Vec<u8>> + 'a;

/// Tries of one [`KeyValue::update`] before it gives up as contended (each retry means another
/// writer succeeded, so progress is made).
pub const UPDATE_ATTEMPTS: u32 = 8;

/// The store failed, refused or timed out. `detail` is for the log, never for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    pub detail: String,
}

impl StoreError {
    pub fn new(detail: impl Into<String>) -> Self {
        StoreError {
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Reads a JSON value. Data that is not ours (corrupt, foreign, an older layout) reads as
/// absent: the store is shared, and a bad record must never crash a request.
pub fn get_json<T: for<'de> Deserialize<'de>>(
    kv: &dyn KeyValue,
    key: &str,
) -> Result<Option<T>, StoreError> {
    Ok(kv
        .get(key)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

pub fn set_json<T: Serialize>(kv: &dyn KeyValue, key: &str, value: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| StoreError::new(format!("cannot encode {key}: {e}")))?;
    kv.set(key, &bytes)
}

/// How long state lives and how much of it a chat uses (Spin variables, see spin.toml).
#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    /// A conversation expires this long after its last turn.
    pub conversation_ttl: Duration,
    /// The most recent turns sent to the model with a new question.
    pub window_turns: usize,
    /// ...and at most about this many tokens of them (estimated from their length).
    pub window_tokens: usize,
    /// Turns a conversation may hold; past it a new conversation must be started.
    pub turn_limit: u64,
    /// How long a cached first-turn answer is served; zero turns the cache off.
    pub cache_ttl: Duration,
}

pub const DEFAULT_CONVERSATION_TTL_SECS: u64 = 30 * 24 * 3600;
pub const DEFAULT_WINDOW_TURNS: usize = 20;
pub const DEFAULT_WINDOW_TOKENS: usize = 8_000;
pub const DEFAULT_TURN_LIMIT: u64 = 200;
pub const DEFAULT_CACHE_TTL_SECS: u64 = 24 * 3600;

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            conversation_ttl: Duration::from_secs(DEFAULT_CONVERSATION_TTL_SECS),
            window_turns: DEFAULT_WINDOW_TURNS,
            window_tokens: DEFAULT_WINDOW_TOKENS,
            turn_limit: DEFAULT_TURN_LIMIT,
            cache_ttl: Duration::from_secs(DEFAULT_CACHE_TTL_SECS),
        }
    }
}

impl StateSettings {
    pub fn load(vars: &impl Variables) -> Result<StateSettings, ConfigError> {
        Ok(StateSettings {
            conversation_ttl: Duration::from_secs(parse_number(
                vars,
                "conversation_ttl_seconds",
                DEFAULT_CONVERSATION_TTL_SECS,
                1..=10 * 365 * 24 * 3600,
            )?),
            window_turns: parse_number(
                vars,
                "conversation_window_turns",
                DEFAULT_WINDOW_TURNS,
                0..=1_000,
            )?,
            window_tokens: parse_number(
                vars,
                "conversation_window_tokens",
                DEFAULT_WINDOW_TOKENS,
                0..=1_000_000,
            )?,
            turn_limit: parse_number(
                vars,
                "conversation_turn_limit",
                DEFAULT_TURN_LIMIT,
                1..=10_000,
            )?,
            cache_ttl: Duration::from_secs(parse_number(
                vars,
                "cache_ttl_seconds",
                DEFAULT_CACHE_TTL_SECS,
                0..=365 * 24 * 3600,
            )?),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// An in-memory store that can be switched off, for tests.
    #[derive(Default)]
    pub struct MemoryStore {
        pub map: RefCell<HashMap<String, Vec<u8>>>,
        pub down: Cell<bool>,
        pub calls: Cell<u32>,
    }

    impl MemoryStore {
        fn check(&self) -> Result<(), StoreError> {
            self.calls.set(self.calls.get() + 1);
            if self.down.get() {
                Err(StoreError::new("connection refused"))
            } else {
                Ok(())
            }
        }
    }

    impl KeyValue for MemoryStore {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.check()?;
            Ok(self.map.borrow().get(key).cloned())
        }
        fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.check()?;
            self.map.borrow_mut().insert(key.into(), value.to_vec());
            Ok(())
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.check()?;
            self.map.borrow_mut().remove(key);
            Ok(())
        }
        fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
            self.check()?;
            let mut map = self.map.borrow_mut();
            let now = map
                .get(key)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
                .unwrap_or(0)
                + delta;
            map.insert(key.into(), now.to_string().into_bytes());
            Ok(now)
        }
        fn update(&self, key: &str, change: &mut Change<'_>) -> Result<bool, StoreError> {
            self.check()?;
            let current = self.map.borrow().get(key).cloned();
            match change(current.as_deref()) {
                Some(value) => {
                    self.map.borrow_mut().insert(key.into(), value);
                    Ok(true)
                }
                None => Ok(false),
            }
        }
    }

    #[test]
    fn corrupt_records_read_as_absent() {
        let store = MemoryStore::default();
        store.set("k", b"\xff not json").unwrap();
        assert_eq!(get_json::<serde_json::Value>(&store, "k").unwrap(), None);
        store.down.set(true);
        assert!(get_json::<serde_json::Value>(&store, "k").is_err());
    }

    #[test]
    fn settings_have_defaults_and_bounds() {
        use crate::config::tests::Fixed;
        let s = StateSettings::load(&Fixed(HashMap::new())).unwrap();
        assert_eq!(s.conversation_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(s.cache_ttl, Duration::from_secs(24 * 3600));
        let off = StateSettings::load(&Fixed(HashMap::from([("cache_ttl_seconds", "0")])));
        assert_eq!(off.unwrap().cache_ttl, Duration::ZERO);
        let bad = StateSettings::load(&Fixed(HashMap::from([("conversation_ttl_seconds", "-1")])));
        assert_eq!(bad.unwrap_err().variable, "conversation_ttl_seconds");
    }
}
