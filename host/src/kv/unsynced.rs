//! What a request has used of an embedded store that may not be on disk yet. Its response
//! waits for [`Unsynced::settle`] before its head, and again before any later part of its
//! body that follows a store call: a client is never told of a write, or shown a value, that
//! a crash could still take back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::BackendError;
use super::embedded::EmbeddedDb;

/// The embedded databases a request used since its response last settled.
#[derive(Default)]
pub struct Unsynced {
    used: Mutex<Vec<Arc<EmbeddedDb>>>,
    /// Set with `used`, read without the lock: most frames follow no store call.
    pending: AtomicBool,
}

impl Unsynced {
    /// Notes a call on `db` that has returned (its commit, or what it read, is visible now).
    pub(super) fn used(&self, db: &Arc<EmbeddedDb>) {
        if !db.has_unsynced() {
            return;
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if !used.iter().any(|known| Arc::ptr_eq(known, db)) {
            used.push(db.clone());
        }
        self.pending.store(true, Ordering::Release);
    }

    /// Whether a store call returned since the last [`Unsynced::settle`].
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Waits until everything the request used is on disk. The databases are taken under the
    /// lock after the flag is cleared, so a call noted meanwhile is either taken now or sets
    /// the flag again.
    pub async fn settle(&self) -> Result<(), String> {
        self.pending.store(false, Ordering::Release);
        let used = std::mem::take(&mut *self.used.lock().unwrap_or_else(|e| e.into_inner()));
        for db in used {
            if let Err(BackendError::Unavailable(detail) | BackendError::Refused(detail)) =
                db.sync().await
            {
                return Err(format!(
                    "key-value store {}: cannot put its writes on disk: {detail}",
                    db.location()
                ));
            }
        }
        Ok(())
    }
}
