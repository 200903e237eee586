//! Spin's key-value stores, for `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue@0.2.0-draft2`.
//!
//! - `config`: the flags and Spin's runtime-config file format (`[key_value_store.<label>]`);
//! - `embedded`: the default backend, one redb file on local disk (or in memory);
//! - `apply`, `pending`, `writer`, `wal`: the embedded store's writes, applied under one lock;
//!   those not in its database yet; the threads that log them and fold them in; and the log
//!   on disk a response waits for;
//! - `redis`: Redis / Valkey (Memorystore) through a self-healing connection manager;
//! - `health`: the rate-limited "unavailable" / "recovered" log lines;
//! - `host`: the wasmtime host functions the component calls;
//! - `unsynced`: what a request used of an embedded store that is not on disk yet, which its
//!   response waits for.
//!
//! Every call has a deadline: a store that is down or slow costs a request at most that long,
//! and the guest gets `error::other(..)`, never a hang.

mod apply;
pub mod config;
mod embedded;
mod health;
pub mod host;
mod pending;
mod redis;
mod unsynced;
mod wal;
mod writer;

pub use self::unsynced::Unsynced;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use self::config::{StoreConfig, StoreSetup};
use self::embedded::{Embedded, EmbeddedDb};
use self::health::Health;
use self::redis::Redis;
use crate::logging;

/// Longest key, in bytes (Spin's documented limit).
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value, in bytes (Spin's documented limit).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most keys `get-keys` returns; a larger store is listed page by page with `list-keys`.
pub const MAX_KEYS: usize = 10_000;
/// Keys in one `list-keys` page (a Redis page may hold a few more: SCAN's COUNT is a hint).
pub const PAGE_KEYS: usize = 1_000;

/// A store error as the guest sees it (both WIT interfaces have these cases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    NoSuchStore,
    AccessDenied,
    /// The request holds too many store, bucket or CAS handles at once.
    TableFull,
    Other(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::NoSuchStore => f.write_str("no such store"),
            KvError::AccessDenied => f.write_str("access denied"),
            KvError::TableFull => f.write_str("too many open handles"),
            KvError::Other(message) => f.write_str(message),
        }
    }
}

/// What a backend call can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The store failed or cannot be reached (I/O, connection, deadline): logged, rate-limited.
    Unavailable(String),
    /// The store answered, but refuses this request (a value that is not an integer, an
    /// overflow, a bad cursor).
    Refused(String),
}

/// A compare-and-swap's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    Swapped,
    /// The value had changed; this is the value now (`None`: the key is gone).
    Changed(Option<Vec<u8>>),
}

/// One page of keys and the cursor of the next (`None`: that was the last page).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub cursor: Option<String>,
}

enum Backend {
    Embedded(Embedded),
    Redis(Redis),
}

/// Calls the same method on whichever backend this is.
macro_rules! dispatch {
    ($self:expr, $method:ident($($arg:expr),*)) => {
        match &$self.backend {
            Backend::Embedded(b) => b.$method($($arg),*).await,
            Backend::Redis(b) => b.$method($($arg),*).await,
        }
    };
}

/// One labelled store: a backend, the per-call deadline and the health log.
pub struct Store {
    label: String,
    backend: Backend,
    timeout: Duration,
    health: Health,
}

impl Store {
    fn new(label: &str, backend: Backend, timeout: Duration) -> Store {
        Store {
            label: label.to_owned(),
            backend,
            timeout,
            health: Health::default(),
        }
    }

    /// Runs a backend call within the deadline, logging outages and recoveries.
    async fn call<T>(
        &self,
        op: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, KvError> {
        let result = match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::Unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        };
        match result {
            Ok(value) => {
                self.health.succeeded(&self.label);
                Ok(value)
            }
            Err(BackendError::Refused(message)) => {
                // The store answered: it is up.
                self.health.succeeded(&self.label);
                Err(KvError::Other(message))
            }
            Err(BackendError::Unavailable(message)) => {
                self.health.failed(&self.label, &message);
                Err(KvError::Other(format!(
                    "key-value store '{}' unavailable: {message}",
                    self.label
                )))
            }
        }
    }

    /// The embedded database behind this store, whose commits reach the disk after the call
    /// (see [`Unsynced`]); `None` for Redis, whose answers are final.
    fn embedded_db(&self) -> Option<&Arc<EmbeddedDb>> {
        match &self.backend {
            Backend::Embedded(b) => Some(b.db()),
            Backend::Redis(_) => None,
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        self.call(async { dispatch!(self, get(key)) }).await
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        check_key(key)?;
        check_value(&value)?;
        self.call(async { dispatch!(self, set(key, value)) }).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        self.call(async { dispatch!(self, delete(key)) }).await
    }

    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        self.call(async { dispatch!(self, exists(key)) }).await
    }

    /// Adds `delta` to the integer at `key` (absent: 0) and returns the sum, atomically.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        check_key(key)?;
        self.call(async { dispatch!(self, increment(key, delta)) })
            .await
    }

    /// Sets `key` to `value` if it still holds `expected` (`None`: still absent).
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<CasOutcome, KvError> {
        check_key(key)?;
        check_value(&value)?;
        self.call(async { dispatch!(self, compare_and_swap(key, expected, value)) })
            .await
    }

    /// One page of keys, after `cursor` (from the previous page).
    pub async fn list_keys(&self, cursor: Option<String>) -> Result<KeyPage, KvError> {
        self.call(async { dispatch!(self, keys(cursor, PAGE_KEYS)) })
            .await
    }

    /// Every key, up to [`MAX_KEYS`]: more is an error that says to page with `list-keys`.
    /// The whole listing shares one deadline.
    pub async fn all_keys(&self) -> Result<Vec<String>, KvError> {
        let keys = self
            .call(async {
                // A Redis SCAN can return a key twice; a set keeps each once.
                let mut keys = BTreeSet::new();
                let mut cursor = None;
                loop {
                    let page = dispatch!(self, keys(cursor.take(), PAGE_KEYS))?;
                    keys.extend(page.keys);
                    if keys.len() > MAX_KEYS {
                        return Ok(None);
                    }
                    if page.cursor.is_none() {
                        return Ok(Some(keys));
                    }
                    cursor = page.cursor;
                }
            })
            .await?;
        match keys {
            Some(keys) => Ok(keys.into_iter().collect()),
            None => Err(KvError::Other(format!(
                "key-value store '{}' holds more than {MAX_KEYS} keys: list them page by page \
                 (wasi:keyvalue/store list-keys)",
                self.label
            ))),
        }
    }

    /// The keys of a batch call, checked before any is used: at most [`PAGE_KEYS`] of them.
    pub fn check_batch<'a>(keys: impl ExactSizeIterator<Item = &'a String>) -> Result<(), KvError> {
        if keys.len() > PAGE_KEYS {
            return Err(KvError::Other(format!(
                "{} keys in one batch; at most {PAGE_KEYS}",
                keys.len()
            )));
        }
        keys.into_iter().try_for_each(|k| check_key(k))
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::Other(format!(
            "key is {} bytes; keys are at most {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::Other(format!(
            "value is {} bytes; values are at most {MAX_VALUE_BYTES} bytes (1 MiB)",
            value.len()
        )));
    }
    Ok(())
}

/// The component's stores: the labels it declared (`key_value_stores` in spin.toml) and a
/// backend for each that has one.
pub struct Stores {
    declared: BTreeSet<String>,
    stores: BTreeMap<String, Arc<Store>>,
    /// Embedded databases, closed after the shutdown drain.
    databases: Vec<Arc<EmbeddedDb>>,
}

impl Stores {
    /// Opens the backend of every declared label that has one: the runtime config's, or for
    /// "default" the embedded file in the state directory. Redis is not reached here: it may be
    /// down at startup and come up later.
    pub fn open(declared: &[String], setup: &StoreSetup) -> Result<Stores> {
        let mut stores = BTreeMap::new();
        let mut databases: BTreeMap<Option<PathBuf>, Arc<EmbeddedDb>> = BTreeMap::new();
        let mut in_memory = Vec::new();
        for label in declared {
            let Some(config) = setup.store_for(label) else {
                logging::info(&format!(
                    "key-value store '{label}': declared but not configured in the runtime \
                     config; opening it answers no-such-store"
                ));
                continue;
            };
            let (backend, timeout) = match &config {
                StoreConfig::Embedded { path: Some(path) } => {
                    let db = match databases.get(&Some(path.clone())) {
                        Some(db) => db.clone(),
                        None => {
                            let db = EmbeddedDb::open_file(
                                path,
                                setup.hint_for(label),
                                setup.disk_timeout,
                            )?;
                            databases.insert(Some(path.clone()), db.clone());
                            db
                        }
                    };
                    (
                        Backend::Embedded(Embedded::new(db, label)?),
                        setup.disk_timeout,
                    )
                }
                StoreConfig::Embedded { path: None } => {
                    let db = EmbeddedDb::in_memory()?;
                    in_memory.push(db.clone());
                    (
                        Backend::Embedded(Embedded::new(db, label)?),
                        setup.disk_timeout,
                    )
                }
                StoreConfig::Redis { url } => (
                    Backend::Redis(Redis::new(url, setup.timeout)?),
                    setup.timeout,
                ),
            };
            logging::info(&format!("key-value store '{label}': {}", config.describe()));
            stores.insert(label.clone(), Arc::new(Store::new(label, backend, timeout)));
        }
        let stores = Stores {
            declared: declared.iter().cloned().collect(),
            stores,
            databases: databases.into_values().chain(in_memory).collect(),
        };
        stores.check_redis_in_background();
        Ok(stores)
    }

    /// No store at all: every label is `access-denied`.
    pub fn none() -> Stores {
        Stores {
            declared: BTreeSet::new(),
            stores: BTreeMap::new(),
            databases: Vec::new(),
        }
    }

    /// A store the component may open: `access-denied` for a label it did not declare,
    /// `no-such-store` for one with no backend.
    pub fn get(&self, label: &str) -> Result<Arc<Store>, KvError> {
        if !self.declared.contains(label) {
            return Err(KvError::AccessDenied);
        }
        self.stores.get(label).cloned().ok_or(KvError::NoSuchStore)
    }

    /// Closes the embedded databases (each puts what it has committed on disk, then releases
    /// its file). Called after the shutdown drain: no request is left to use them.
    pub fn close(&self) {
        for db in &self.databases {
            if let Err(e) = db.close() {
                logging::warn(&format!("closing key-value store {}: {e}", db.location()));
            }
        }
    }

    /// Pings each Redis store once, so that one down at startup is logged at once rather than
    /// at the first request. Never blocks startup.
    fn check_redis_in_background(&self) {
        for store in self.stores.values() {
            if let Backend::Redis(_) = store.backend {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = store.exists("ion-host:startup-check").await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_redis;
