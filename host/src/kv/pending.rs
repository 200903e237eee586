//! The embedded store's pending writes: applied and visible, not in the database yet. New
//! writes go to the active generation; a fold commits a frozen one while the active one takes
//! the writes that keep coming.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Table name → key → value (`None`: deleted).
pub type Tables = HashMap<Arc<str>, HashMap<String, Option<Vec<u8>>>>;

/// How much may be pending.
pub struct Limit {
    pub keys: usize,
    pub bytes: usize,
}

/// The newest value of each key written since the last fold began (`active`), and the writes
/// that fold is committing (`folding`). Only the writer thread changes `active` and freezes
/// it; the fold empties `folding` once it is committed, so a reader that finds a key in
/// neither and then reads the database sees that commit.
#[derive(Default)]
pub struct Pending {
    generations: RwLock<Generations>,
    /// Keys in `active`, and bytes of their keys and values.
    keys: AtomicUsize,
    bytes: AtomicUsize,
    /// Folds ended: a value read from the database before one ended may be stale.
    folds: AtomicUsize,
}

#[derive(Default)]
struct Generations {
    active: Tables,
    folding: Arc<Tables>,
}

impl Pending {
    /// The pending value of `key`: `Some(None)` when it was deleted, `None` when nothing is
    /// pending for it.
    pub fn get(&self, table: &str, key: &str) -> Option<Option<Vec<u8>>> {
        let generations = self.read();
        let newest = |tables: &Tables| tables.get(table)?.get(key).cloned();
        newest(&generations.active).or_else(|| newest(&generations.folding))
    }

    /// Whether nothing is pending, in either generation.
    pub fn is_empty(&self) -> bool {
        self.active_is_empty() && self.read().folding.is_empty()
    }

    /// Whether no write came since the last fold began.
    pub fn active_is_empty(&self) -> bool {
        self.keys.load(Ordering::Relaxed) == 0
    }

    /// Whether as many keys or bytes as `limit` are in the active generation.
    pub fn reached(&self, limit: &Limit) -> bool {
        self.keys.load(Ordering::Relaxed) >= limit.keys
            || self.bytes.load(Ordering::Relaxed) >= limit.bytes
    }

    pub fn insert(&self, table: &Arc<str>, key: String, value: Option<Vec<u8>>) {
        let mut generations = self.write();
        let added = key.len() + value.as_ref().map_or(0, Vec::len);
        let key_len = key.len();
        let keys = generations.active.entry(table.clone()).or_default();
        match keys.insert(key, value) {
            Some(old) => {
                let removed = key_len + old.map_or(0, |v| v.len());
                self.bytes.fetch_add(added, Ordering::Relaxed);
                self.bytes.fetch_sub(removed, Ordering::Relaxed);
            }
            None => {
                self.keys.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(added, Ordering::Relaxed);
            }
        }
    }

    /// Starts a fold: the active writes become the folding ones (there are none: one fold at a
    /// time), returned for the commit.
    pub fn freeze(&self) -> Arc<Tables> {
        let mut generations = self.write();
        debug_assert!(generations.folding.is_empty(), "one fold at a time");
        let frozen = Arc::new(std::mem::take(&mut generations.active));
        generations.folding = frozen.clone();
        self.keys.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        frozen
    }

    /// Ends a fold whose writes are committed.
    pub fn folded(&self) {
        // Counted under the lock: a reader that no longer finds the folded writes sees the
        // count moved.
        let mut generations = self.write();
        self.folds.fetch_add(1, Ordering::AcqRel);
        generations.folding = Arc::default();
    }

    /// How many folds have ended.
    pub fn folds(&self) -> usize {
        self.folds.load(Ordering::Acquire)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Generations> {
        self.generations.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Generations> {
        self.generations.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_writes_count_their_keys_and_bytes() {
        let pending = Pending::default();
        let table: Arc<str> = Arc::from("default");
        let limit = Limit { keys: 2, bytes: 10 };
        pending.insert(&table, "ab".to_owned(), Some(vec![0; 3]));
        assert_eq!(pending.get("default", "ab"), Some(Some(vec![0; 3])));
        assert!(!pending.reached(&limit));
        // Overwritten: still one key, its new size.
        pending.insert(&table, "ab".to_owned(), Some(vec![0; 7]));
        assert_eq!(pending.bytes.load(Ordering::Relaxed), 9);
        assert!(!pending.reached(&limit));
        pending.insert(&table, "ab".to_owned(), None);
        assert_eq!(pending.get("default", "ab"), Some(None));
        assert_eq!(pending.bytes.load(Ordering::Relaxed), 2);
        pending.insert(&table, "c".to_owned(), Some(vec![0; 1]));
        assert!(pending.reached(&limit), "two keys");
        pending.freeze();
        pending.folded();
        assert!(pending.is_empty());
        assert_eq!(pending.get("default", "c"), None);
        pending.insert(&table, "big".to_owned(), Some(vec![0; 8]));
        assert!(pending.reached(&limit), "eleven bytes");
    }

    /// While a fold commits the frozen writes, they stay visible; a newer write of the same
    /// key shadows them; once folded, only the newer ones are pending.
    #[test]
    fn frozen_writes_stay_visible_until_folded() {
        let pending = Pending::default();
        let table: Arc<str> = Arc::from("default");
        pending.insert(&table, "a".to_owned(), Some(b"old".to_vec()));
        pending.insert(&table, "b".to_owned(), Some(b"kept".to_vec()));
        let frozen = pending.freeze();
        assert_eq!(frozen["default"].len(), 2);
        assert!(pending.active_is_empty());
        assert!(!pending.is_empty());
        pending.insert(&table, "a".to_owned(), None);
        assert_eq!(pending.get("default", "a"), Some(None));
        assert_eq!(pending.get("default", "b"), Some(Some(b"kept".to_vec())));
        pending.folded();
        assert_eq!(pending.get("default", "b"), None);
        assert_eq!(pending.get("default", "a"), Some(None));
        assert!(!pending.is_empty());
    }
}
