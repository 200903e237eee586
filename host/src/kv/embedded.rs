//! The embedded store: a redb database on local disk (or in memory), no server. Each label is a
//! table; labels configured with the same file share one database.
//!
//! Writes go to one writer thread per database, which applies them, one after another, to the
//! pending writes ([`Pending`]): a write's call returns once readers can see it there. The
//! writer commits every pending write in one durable transaction when a response that follows
//! one is about to leave (see [`Unsynced`]): the requests answering at that moment share one
//! commit and one `fsync`, instead of each write paying for its own (a new conversation makes
//! three). Writes no response asks for are committed within [`SYNC_WITHIN`]. Reads look in the
//! pending writes first, then read the database on tokio's blocking pool, concurrently with
//! the writer. Neither ever holds up a tokio worker.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use redb::{Database, DatabaseError, ReadableDatabase, TableDefinition};

use super::{BackendError, CasOutcome, KeyPage};

/// Page cache of one database, not redb's default 1 GiB. Once full it stays resident: at
/// 16 MiB it was half of ion-host's memory 10 s after a burst of new conversations, and 4 MiB
/// still held 2.3 MiB more than this. Pages beyond it are read from the file (the kernel's
/// page cache), at no measurable CPU per chat.
const CACHE_BYTES: usize = 1024 * 1024;

/// Most jobs the writer takes from its queue before it looks at whether to commit.
const GROUP_MAX: usize = 256;

/// Longest a write stays off the disk when no response waits for it (its request failed or
/// its client went away): the writer then commits it on its own.
pub const SYNC_WITHIN: Duration = Duration::from_millis(100);

/// Pending writes (keys, and bytes of keys and values) at which the writer commits without
/// waiting for a response to ask.
const COMMIT_AT: Limit = Limit {
    keys: 4096,
    bytes: 8 << 20,
};

/// Pending writes at which new writes are refused: the disk has not taken a commit for a while
/// (each failed commit is retried after [`SYNC_WITHIN`]).
const MAX_PENDING: Limit = Limit {
    keys: 65_536,
    bytes: 64 << 20,
};

/// How much may be pending.
struct Limit {
    keys: usize,
    bytes: usize,
}

/// One redb database, shared by the labels stored in it.
pub struct EmbeddedDb {
    /// `None` once closed.
    db: RwLock<Option<Arc<Database>>>,
    /// Where writes and syncs go; `None` once closed.
    writes: RwLock<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    progress: Arc<Progress>,
    pending: Arc<Pending>,
    /// Longest [`EmbeddedDb::sync`] waits for the disk.
    sync_timeout: Duration,
    location: String,
}

/// Writes applied but not committed yet: the newest value of each key written since the last
/// commit (`None`: deleted), by table. Only the writer thread changes it; it empties it once
/// what it holds is committed, so a reader that finds a key missing here and then reads the
/// database sees that commit.
#[derive(Default)]
struct Pending {
    tables: RwLock<PendingTables>,
    /// Keys pending, and bytes of their keys and values.
    keys: AtomicUsize,
    bytes: AtomicUsize,
}

/// Table name → key → value (`None`: deleted).
type PendingTables = HashMap<Arc<str>, HashMap<String, Option<Vec<u8>>>>;

impl Pending {
    /// The pending value of `key`: `Some(None)` when it was deleted, `None` when nothing is
    /// pending for it.
    fn get(&self, table: &str, key: &str) -> Option<Option<Vec<u8>>> {
        self.read().get(table)?.get(key).cloned()
    }

    fn is_empty(&self) -> bool {
        self.keys.load(Ordering::Relaxed) == 0
    }

    /// Whether as many keys or bytes as `limit` are pending.
    fn reached(&self, limit: &Limit) -> bool {
        self.keys.load(Ordering::Relaxed) >= limit.keys
            || self.bytes.load(Ordering::Relaxed) >= limit.bytes
    }

    fn insert(&self, table: &Arc<str>, key: String, value: Option<Vec<u8>>) {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        let added = key.len() + value.as_ref().map_or(0, Vec::len);
        let key_len = key.len();
        match tables.entry(table.clone()).or_default().insert(key, value) {
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

    fn clear(&self) {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        tables.clear();
        self.keys.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, PendingTables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// How far the writer has come. Writes are numbered from 1; a number is taken before its
/// write becomes visible, so `begun` is never behind what a reader can see.
#[derive(Default)]
struct Progress {
    begun: AtomicU64,
    /// The last write on disk (every one before it is on disk too).
    durable: AtomicU64,
    /// In memory: nothing to sync, every commit counts as durable.
    volatile: bool,
}

impl Progress {
    /// The write a request that used the database now waits for, if it is not on disk yet.
    fn unsynced(&self) -> Option<u64> {
        let begun = self.begun.load(Ordering::Acquire);
        (!self.volatile && self.durable.load(Ordering::Acquire) < begun).then_some(begun)
    }
}

/// What the writer thread is asked for.
enum Job {
    Write(Write),
    /// Commit every write made so far, then answer.
    Sync(tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// One write, for the writer thread: the label's table, what to do, and where the result goes.
struct Write {
    table: Arc<str>,
    op: WriteOp,
    reply: tokio::sync::oneshot::Sender<Result<WriteResult, OpError>>,
}

enum WriteOp {
    Set(String, Vec<u8>),
    Delete(String),
    Increment(String, i64),
    CompareAndSwap {
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    },
}

enum WriteResult {
    Done,
    Counter(i64),
    Cas(CasOutcome),
}

impl EmbeddedDb {
    /// Opens (or creates) the file at `path`, creating its directory. `hint` says which setting
    /// chose the path, for the error. A [`EmbeddedDb::sync`] waits at most `sync_timeout`.
    pub fn open_file(path: &Path, hint: String, sync_timeout: Duration) -> Result<Arc<EmbeddedDb>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create the key-value store directory {}: {hint}",
                    dir.display()
                )
            })?;
        }
        let db = match Database::builder().set_cache_size(CACHE_BYTES).create(path) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => bail!(
                "the key-value store file {} is already open in another process (another ion-host \
                 or spin up?): {hint}",
                path.display()
            ),
            Err(e) => bail!(
                "cannot open the key-value store file {}: {e}: {hint}",
                path.display()
            ),
        };
        Ok(EmbeddedDb::with_writer(
            db,
            path.display().to_string(),
            false,
            sync_timeout,
        ))
    }

    fn with_writer(
        db: Database,
        location: String,
        volatile: bool,
        sync_timeout: Duration,
    ) -> Arc<EmbeddedDb> {
        let db = Arc::new(db);
        let (writes, queue) = mpsc::channel();
        let writer_db = db.clone();
        let progress = Arc::new(Progress {
            volatile,
            ..Progress::default()
        });
        let writer_progress = progress.clone();
        let pending = Arc::new(Pending::default());
        let writer_pending = pending.clone();
        let writer = std::thread::Builder::new()
            .name("kv-writer".to_owned())
            .spawn(move || write_loop(&writer_db, &queue, &writer_progress, &writer_pending))
            .expect("spawn the key-value writer thread");
        Arc::new(EmbeddedDb {
            db: RwLock::new(Some(db)),
            writes: RwLock::new(Some(writes)),
            writer: Mutex::new(Some(writer)),
            progress,
            pending,
            sync_timeout,
            location,
        })
    }

    /// A database in memory, gone when ion-host stops.
    pub fn in_memory() -> Result<Arc<EmbeddedDb>> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .context("cannot create an in-memory key-value store")?;
        // Nothing waits for its syncs (see `Progress::unsynced`), so no timeout is needed.
        Ok(EmbeddedDb::with_writer(
            db,
            "(in memory)".to_owned(),
            true,
            Duration::MAX,
        ))
    }

    /// The database itself, for tests that hold a write transaction open.
    #[cfg(test)]
    pub fn database(&self) -> Arc<Database> {
        self.handle().expect("open")
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn handle(&self) -> Result<Arc<Database>, BackendError> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| BackendError::Unavailable("the store is closed".to_owned()))
    }

    /// Puts every write made so far on disk (one commit, shared with whoever else waits for
    /// one), within the sync timeout. At once when there is nothing to put there.
    pub async fn sync(&self) -> Result<(), BackendError> {
        if self.progress.unsynced().is_none() {
            return Ok(());
        }
        match tokio::time::timeout(self.sync_timeout, self.commit_pending()).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::Unavailable(format!(
                "writes not on disk within {} ms",
                self.sync_timeout.as_millis()
            ))),
        }
    }

    /// Has the writer commit every pending write (durably, on a file), and waits for it.
    async fn commit_pending(&self) -> Result<(), BackendError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(Job::Sync(reply))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(detail)) => Err(BackendError::Unavailable(detail)),
            Err(_) => Err(BackendError::Unavailable(
                "the store's writer stopped".to_owned(),
            )),
        }
    }

    /// The number of the last write on disk, for tests.
    #[cfg(test)]
    pub fn durable_commit(&self) -> u64 {
        self.progress.durable.load(Ordering::Acquire)
    }

    /// Whether a write is visible but not on disk yet.
    pub fn has_unsynced(&self) -> bool {
        self.progress.unsynced().is_some()
    }

    fn send(&self, job: Job) -> Result<(), BackendError> {
        let sent = match &*self.writes.read().unwrap_or_else(|e| e.into_inner()) {
            Some(writes) => writes.send(job).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(BackendError::Unavailable("the store is closed".to_owned()))
        }
    }

    /// Closes the database, releasing its file lock; a call still running keeps it open until
    /// it ends (its write still commits). Every pending write is committed first.
    pub fn close(&self) -> Result<(), DatabaseError> {
        // The writer finishes what is queued, then lets go of the database.
        drop(
            self.writes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        match db.map(Arc::into_inner) {
            Some(Some(db)) => db.close(),
            _ => Ok(()),
        }
    }
}

/// One label's table in an embedded database.
pub struct Embedded {
    db: Arc<EmbeddedDb>,
    table: Arc<str>,
}

/// Applies the writes waiting, in the order they came, until every sender is gone, and commits
/// what they changed in one durable transaction when a sync waits, once the oldest write off
/// the disk has waited [`SYNC_WITHIN`] (also under a steady stream of writes that no response
/// waits for), or once [`COMMIT_AT`] is reached.
fn write_loop(db: &Database, queue: &mpsc::Receiver<Job>, progress: &Progress, pending: &Pending) {
    // When the oldest write not on disk yet was made.
    let mut unsynced_since: Option<Instant> = None;
    loop {
        let first = match unsynced_since {
            Some(since) => match queue.recv_timeout(SYNC_WITHIN.saturating_sub(since.elapsed())) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match queue.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            },
        };
        let mut syncs = Vec::new();
        let mut taken = 0;
        let mut next = first;
        while let Some(job) = next {
            match job {
                Job::Write(write) => {
                    let result = apply(db, pending, progress, &write.table, write.op);
                    let _ = write.reply.send(result);
                }
                Job::Sync(reply) => syncs.push(reply),
            }
            taken += 1;
            next = (taken < GROUP_MAX).then(|| queue.try_recv().ok()).flatten();
        }
        if progress.begun.load(Ordering::Acquire) > progress.durable.load(Ordering::Acquire)
            && unsynced_since.is_none()
        {
            unsynced_since = Some(Instant::now());
        }
        let due = unsynced_since.is_some_and(|since| since.elapsed() >= SYNC_WITHIN)
            || pending.reached(&COMMIT_AT);
        if syncs.is_empty() && !due {
            continue;
        }
        let outcome = commit_pending(db, pending, progress);
        for reply in syncs {
            let _ = reply.send(outcome.clone());
        }
        unsynced_since = match outcome {
            Ok(()) => None,
            // The commit failed: try again after another `SYNC_WITHIN`, not at once.
            Err(_) => Some(Instant::now()),
        };
    }
    // Closing: what is visible goes to disk before the database is let go.
    let _ = commit_pending(db, pending, progress);
}

/// Commits every pending write in one durable transaction, then empties the pending writes.
/// On failure they stay pending (and visible), for the next try.
fn commit_pending(db: &Database, pending: &Pending, progress: &Progress) -> Result<(), String> {
    let number = progress.begun.load(Ordering::Acquire);
    if number == progress.durable.load(Ordering::Acquire) {
        return Ok(());
    }
    let committed = (|| -> Result<(), redb::Error> {
        // Readers go on reading the pending writes meanwhile; only this thread changes them.
        let tables = pending.read();
        let tx = db.begin_write()?;
        for (name, keys) in tables.iter() {
            let mut table = tx.open_table(table(name))?;
            for (key, value) in keys {
                match value {
                    Some(value) => table.insert(key.as_str(), value.as_slice())?,
                    None => table.remove(key.as_str())?,
                };
            }
        }
        tx.commit()?;
        Ok(())
    })();
    match committed {
        Ok(()) => {
            progress.durable.store(number, Ordering::Release);
            // After the commit: a reader that misses a key here finds it in the database.
            pending.clear();
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Applies one write to the pending writes, reading the current value (for an increment or a
/// compare-and-swap) from them or else from the database. A refusal (a counter that is not a
/// number) changes nothing.
fn apply(
    db: &Database,
    pending: &Pending,
    progress: &Progress,
    table_name: &Arc<str>,
    op: WriteOp,
) -> Result<WriteResult, OpError> {
    if pending.reached(&MAX_PENDING) {
        return Err(OpError::Busy(
            "too many writes wait to be written to disk".to_owned(),
        ));
    }
    let current = |key: &str| -> Result<Option<Vec<u8>>, OpError> {
        if let Some(value) = pending.get(table_name, key) {
            return Ok(value);
        }
        let tx = db.begin_read()?;
        let table = tx.open_table(table(table_name))?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    };
    let (key, value, result) = match op {
        WriteOp::Set(key, value) => (key, Some(value), WriteResult::Done),
        WriteOp::Delete(key) => (key, None, WriteResult::Done),
        WriteOp::Increment(key, delta) => {
            let now = match current(&key)? {
                Some(value) => parse_counter(&value)?,
                None => 0,
            };
            let sum = now.checked_add(delta).ok_or_else(|| {
                OpError::Refused(format!("increment of {key:?} by {delta} overflows"))
            })?;
            (
                key,
                Some(sum.to_string().into_bytes()),
                WriteResult::Counter(sum),
            )
        }
        WriteOp::CompareAndSwap {
            key,
            expected,
            value,
        } => {
            let now = current(&key)?;
            if now != expected {
                return Ok(WriteResult::Cas(CasOutcome::Changed(now)));
            }
            (key, Some(value), WriteResult::Cas(CasOutcome::Swapped))
        }
    };
    // Numbered before it becomes visible: a reader that sees it finds `begun` at it.
    progress.begun.fetch_add(1, Ordering::AcqRel);
    pending.insert(table_name, key, value);
    Ok(result)
}

/// Why an operation failed on the writer thread or in the blocking task.
enum OpError {
    Store(redb::Error),
    Refused(String),
    /// The store cannot take writes now (too many wait for the disk).
    Busy(String),
}

impl OpError {
    fn into_backend(self) -> BackendError {
        match self {
            OpError::Store(e) => BackendError::Unavailable(e.to_string()),
            OpError::Busy(detail) => BackendError::Unavailable(detail),
            OpError::Refused(message) => BackendError::Refused(message),
        }
    }
}

macro_rules! store_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for OpError {
            fn from(e: $error) -> OpError {
                OpError::Store(e.into())
            }
        }
    )*};
}
store_errors!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError
);

impl Embedded {
    /// The table of `label` in `db`, created now so that reads never meet a missing table.
    pub fn new(db: Arc<EmbeddedDb>, label: &str) -> Result<Embedded> {
        let handle = db.handle().map_err(|_| anyhow::anyhow!("store closed"))?;
        let create = || -> Result<(), redb::Error> {
            let tx = handle.begin_write()?;
            tx.open_table(table(label))?;
            tx.commit()?;
            Ok(())
        };
        create().with_context(|| {
            format!(
                "cannot create table {label:?} in key-value store {}",
                db.location()
            )
        })?;
        Ok(Embedded {
            db,
            table: Arc::from(label),
        })
    }

    pub fn db(&self) -> &Arc<EmbeddedDb> {
        &self.db
    }

    /// Runs `op` on the blocking pool with the database and this label's table name.
    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Database, &str) -> Result<T, OpError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let db = self.db.handle()?;
        let table = self.table.clone();
        match tokio::task::spawn_blocking(move || op(&db, &table)).await {
            Ok(result) => result.map_err(OpError::into_backend),
            Err(e) => Err(BackendError::Unavailable(format!("store task failed: {e}"))),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        if let Some(value) = self.db.pending.get(&self.table, key) {
            return Ok(value);
        }
        let key = key.to_owned();
        self.run(move |db, name| {
            let tx = db.begin_read()?;
            let table = tx.open_table(table(name))?;
            Ok(table.get(key.as_str())?.map(|v| v.value().to_vec()))
        })
        .await
    }

    /// Queues a write for the writer thread and waits until it is visible.
    async fn write(&self, op: WriteOp) -> Result<WriteResult, BackendError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        self.db.send(Job::Write(Write {
            table: self.table.clone(),
            op,
            reply,
        }))?;
        match result.await {
            Ok(result) => result.map_err(OpError::into_backend),
            Err(_) => Err(BackendError::Unavailable(
                "the store's writer stopped".to_owned(),
            )),
        }
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), BackendError> {
        self.write(WriteOp::Set(key.to_owned(), value))
            .await
            .map(|_| ())
    }

    pub async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.write(WriteOp::Delete(key.to_owned()))
            .await
            .map(|_| ())
    }

    pub async fn exists(&self, key: &str) -> Result<bool, BackendError> {
        if let Some(value) = self.db.pending.get(&self.table, key) {
            return Ok(value.is_some());
        }
        let key = key.to_owned();
        self.run(move |db, name| {
            let tx = db.begin_read()?;
            let table = tx.open_table(table(name))?;
            Ok(table.get(key.as_str())?.is_some())
        })
        .await
    }

    /// Reads, adds and writes on the writer thread: writes are serialized, so two increments
    /// never read the same value. Counters are stored as decimal text, as Redis's INCRBY keeps
    /// them. Adding 0 (how a counter is read) is a plain read.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, BackendError> {
        if delta == 0 {
            if let Some(value) = self.db.pending.get(&self.table, key) {
                return match value {
                    Some(value) => parse_counter(&value).map_err(OpError::into_backend),
                    None => Ok(0),
                };
            }
            let key = key.to_owned();
            return self
                .run(move |db, name| {
                    let tx = db.begin_read()?;
                    let table = tx.open_table(table(name))?;
                    match table.get(key.as_str())? {
                        Some(value) => parse_counter(value.value()),
                        None => Ok(0),
                    }
                })
                .await;
        }
        match self
            .write(WriteOp::Increment(key.to_owned(), delta))
            .await?
        {
            WriteResult::Counter(sum) => Ok(sum),
            _ => unreachable!("an increment answers with the counter"),
        }
    }

    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<CasOutcome, BackendError> {
        let op = WriteOp::CompareAndSwap {
            key: key.to_owned(),
            expected,
            value,
        };
        match self.write(op).await? {
            WriteResult::Cas(outcome) => Ok(outcome),
            _ => unreachable!("a compare-and-swap answers with its outcome"),
        }
    }

    /// Keys in order, `limit` at a time; the cursor is the last key of the page. Pending
    /// writes are committed first, so the listing comes from the database alone.
    pub async fn keys(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, BackendError> {
        if !self.db.pending.is_empty() {
            self.db.commit_pending().await?;
        }
        self.run(move |db, name| {
            let tx = db.begin_read()?;
            let table = tx.open_table(table(name))?;
            let start = match &cursor {
                Some(after) => Bound::Excluded(after.as_str()),
                None => Bound::Unbounded,
            };
            let mut keys = Vec::new();
            for entry in table.range::<&str>((start, Bound::Unbounded))? {
                let (key, _) = entry?;
                if keys.len() == limit {
                    let cursor = keys.last().cloned();
                    return Ok(KeyPage { keys, cursor });
                }
                keys.push(key.value().to_owned());
            }
            Ok(KeyPage { keys, cursor: None })
        })
        .await
    }
}

fn table(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

fn parse_counter(value: &[u8]) -> Result<i64, OpError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| OpError::Refused("the value is not an integer".to_owned()))
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
        pending.clear();
        assert!(pending.is_empty());
        assert_eq!(pending.get("default", "c"), None);
        pending.insert(&table, "big".to_owned(), Some(vec![0; 8]));
        assert!(pending.reached(&limit), "eleven bytes");
    }
}
