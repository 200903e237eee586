//! Applying a write to an embedded store: under one lock it is numbered, recorded for the log,
//! and made visible in the pending writes, so the log holds writes in the order readers saw
//! them. A set or a delete is applied on the calling task (a hash-map insert and a few bytes
//! for the log: no thread to wake, no reply to wait for); an increment or a compare-and-swap
//! goes to the writer thread, which may read the database for the current value, outside the
//! lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::embedded::{OpError, Progress};
use super::pending::{Limit, Pending, Tables};
use super::wal::Batch;

/// Pending writes at which new writes are refused: the database has not taken a fold for a
/// while (a failed fold is retried after a second).
const MAX_PENDING: Limit = Limit {
    keys: 65_536,
    bytes: 64 << 20,
};

/// Where the writes of one database are applied.
pub struct Applier {
    pub pending: Arc<Pending>,
    pub progress: Arc<Progress>,
    /// The writes made since the last append to the log (`None` in memory: no log).
    unlogged: Mutex<Option<Batch>>,
    /// Whether the writer thread has been told of a write since it last took the unlogged ones
    /// (it puts writes no response waits for on disk, and schedules folds).
    writer_told: AtomicBool,
}

impl Applier {
    pub fn new(pending: Arc<Pending>, progress: Arc<Progress>, logged: bool) -> Applier {
        Applier {
            pending,
            progress,
            unlogged: Mutex::new(logged.then(Batch::default)),
            writer_told: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Batch>> {
        self.unlogged.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a write of `value` (`None`: a delete). True when the writer thread must be told:
    /// the first write since it last took the unlogged ones.
    pub fn put(
        &self,
        table: &Arc<str>,
        key: String,
        value: Option<Vec<u8>>,
    ) -> Result<bool, OpError> {
        let mut unlogged = self.lock();
        self.put_locked(&mut unlogged, table, key, value)?;
        drop(unlogged);
        Ok(!self.writer_told.swap(true, Ordering::AcqRel))
    }

    fn put_locked(
        &self,
        unlogged: &mut Option<Batch>,
        table: &Arc<str>,
        key: String,
        value: Option<Vec<u8>>,
    ) -> Result<(), OpError> {
        if self.pending.reached(&MAX_PENDING) {
            return Err(OpError::Busy(
                "too many writes wait to be written to disk".to_owned(),
            ));
        }
        // Numbered before it becomes visible: a reader that sees it finds `begun` at it.
        self.progress.begun.fetch_add(1, Ordering::AcqRel);
        if let Some(batch) = unlogged {
            match &value {
                Some(value) => batch.set(table, &key, value),
                None => batch.delete(table, &key),
            }
        }
        self.pending.insert(table, key, value);
        Ok(())
    }

    /// Applies a write computed from the key's current value, the pending one or else the
    /// one `stored` reads from the database (outside the lock: a fold that ends meanwhile may
    /// have changed it, and the read is made again). `change` gives the value to write (`None`:
    /// nothing to write) and the result.
    pub fn update<T>(
        &self,
        table: &Arc<str>,
        key: String,
        stored: impl Fn(&str) -> Result<Option<Vec<u8>>, OpError>,
        change: impl FnOnce(Option<Vec<u8>>) -> Result<(Option<Vec<u8>>, T), OpError>,
    ) -> Result<T, OpError> {
        let (mut unlogged, current) = loop {
            let folds = self.pending.folds();
            let read = match self.pending.get(table, &key) {
                Some(_) => None,
                None => Some(stored(&key)?),
            };
            let unlogged = self.lock();
            match (self.pending.get(table, &key), read) {
                (Some(pending), _) => break (unlogged, pending),
                (None, Some(read)) if self.pending.folds() == folds => break (unlogged, read),
                _ => continue,
            }
        };
        let (write, result) = change(current)?;
        if let Some(value) = write {
            self.put_locked(&mut unlogged, table, key, Some(value))?;
        }
        Ok(result)
    }

    /// Takes the writes to append to the log (empty in memory), with the number of the last.
    pub fn take_unlogged(&self) -> (Batch, u64) {
        let mut unlogged = self.lock();
        self.writer_told.store(false, Ordering::Release);
        let number = self.progress.begun.load(Ordering::Acquire);
        let batch = unlogged.as_mut().map(std::mem::take).unwrap_or_default();
        (batch, number)
    }

    /// Puts back writes the log did not take, in front of those made since.
    pub fn put_back(&self, batch: Batch) {
        if let Some(unlogged) = self.lock().as_mut() {
            unlogged.prepend(batch);
        }
    }

    /// Freezes every pending write for a fold, with the number of the last.
    pub fn freeze(&self) -> (Arc<Tables>, u64) {
        let _unlogged = self.lock();
        let number = self.progress.begun.load(Ordering::Acquire);
        (self.pending.freeze(), number)
    }
}
