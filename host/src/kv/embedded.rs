//! The embedded store: a redb database on local disk (or in memory), no server. Each label is a
//! table; labels configured with the same file share one database.
//!
//! A write is applied to the pending writes (see `apply`): a set or a delete on its caller's
//! task, an increment or a compare-and-swap on the database's writer thread (see `writer`); a
//! write's call returns once readers can see it there. When a response that follows one is
//! about to leave (see [`Unsynced`]), the writer appends every write made since the last such
//! moment to the database's write-ahead log as one batch and one `fdatasync`: the requests
//! answering at that moment share it, and none waits for a B-tree commit. A fold thread
//! commits the pending writes to the database about once a second, while writes go on. Reads
//! look in the pending writes first, then read the database on tokio's blocking pool,
//! concurrently with the writer. Nothing that can wait for the disk runs on a tokio worker.
//!
//! [`Unsynced`]: super::Unsynced

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use redb::{Database, DatabaseError, ReadableDatabase, TableDefinition};

use super::apply::Applier;
use super::pending::Pending;
use super::wal::WriteLog;
use super::writer::{DiskGates, Writer, open_log};
use super::{BackendError, CasOutcome, KeyPage};

/// Page cache of one database, not redb's default 1 GiB. Once full it stays resident: at
/// 16 MiB it was half of ion-host's memory 10 s after a burst of new conversations, and 4 MiB
/// still held 2.3 MiB more than this. Pages beyond it are read from the file (the kernel's
/// page cache), at no measurable CPU per chat.
const CACHE_BYTES: usize = 1024 * 1024;

/// One redb database, shared by the labels stored in it.
pub struct EmbeddedDb {
    /// `None` once closed.
    db: RwLock<Option<Arc<Database>>>,
    /// Where writes and syncs go; `None` once closed.
    writes: RwLock<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    applier: Arc<Applier>,
    /// Longest [`EmbeddedDb::sync`] waits for the disk.
    sync_timeout: Duration,
    location: String,
    /// Taken while the log or the database is written, so that a test can hold the writer
    /// and the fold off the disk.
    #[cfg(test)]
    disk: Arc<DiskGates>,
}

/// How far the writer has come. Writes are numbered from 1; a number is taken before its
/// write becomes visible, so `begun` is never behind what a reader can see.
#[derive(Default)]
pub(super) struct Progress {
    pub begun: AtomicU64,
    /// The last write on disk (every one before it is on disk too).
    pub durable: AtomicU64,
    /// In memory: nothing to sync, every write counts as durable.
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
pub(super) enum Job {
    /// An increment or a compare-and-swap: the label's table, what to do, and where the
    /// result goes.
    Write {
        table: Arc<str>,
        op: WriteOp,
        reply: tokio::sync::oneshot::Sender<Result<WriteResult, OpError>>,
    },
    /// Put every write made so far on disk (in the log), then answer.
    Sync(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Fold every write made so far into the database, then answer.
    Fold(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// A write was applied on its caller's task (the first since the writer last took the
    /// unlogged ones): it is to reach the disk even if no response waits for it.
    Wake,
}

pub(super) enum WriteOp {
    Increment(String, i64),
    CompareAndSwap {
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    },
}

pub(super) enum WriteResult {
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
        // Opened once the database is: its lock keeps another process off the log too.
        let log = open_log(&db, path)
            .with_context(|| format!("cannot open the key-value store {}", path.display()))?;
        Ok(EmbeddedDb::with_writer(
            db,
            path.display().to_string(),
            Some(log),
            sync_timeout,
        ))
    }

    fn with_writer(
        db: Database,
        location: String,
        log: Option<WriteLog>,
        sync_timeout: Duration,
    ) -> Arc<EmbeddedDb> {
        let volatile = log.is_none();
        let db = Arc::new(db);
        let (writes, queue) = mpsc::channel();
        let progress = Arc::new(Progress {
            volatile,
            ..Progress::default()
        });
        let applier = Arc::new(Applier::new(
            Arc::new(Pending::default()),
            progress,
            log.is_some(),
        ));
        let disk = Arc::new(DiskGates::default());
        let writer = Writer::new(db.clone(), applier.clone(), log, disk.clone());
        let writer = std::thread::Builder::new()
            .name("kv-writer".to_owned())
            .spawn(move || writer.run(&queue))
            .expect("spawn the key-value writer thread");
        Arc::new(EmbeddedDb {
            db: RwLock::new(Some(db)),
            writes: RwLock::new(Some(writes)),
            writer: Mutex::new(Some(writer)),
            applier,
            sync_timeout,
            location,
            #[cfg(test)]
            disk,
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
            None,
            Duration::MAX,
        ))
    }

    /// The database itself, for tests that write to it directly.
    #[cfg(test)]
    pub fn database(&self) -> Arc<Database> {
        self.handle().expect("open")
    }

    /// Holds the writer off the disk (the log and the database) while the guard lives.
    #[cfg(test)]
    pub fn hold_disk(&self) -> impl Sized + '_ {
        self.disk.hold()
    }

    /// Holds folds off the database (appends to the log go on) while the guard lives.
    #[cfg(test)]
    pub fn hold_database(&self) -> impl Sized + '_ {
        self.disk.hold_db()
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

    /// Puts every write made so far on disk (one append to the log, shared with whoever else
    /// waits for one), within the sync timeout. At once when there is nothing to put there.
    pub async fn sync(&self) -> Result<(), BackendError> {
        if self.applier.progress.unsynced().is_none() {
            return Ok(());
        }
        match tokio::time::timeout(self.sync_timeout, self.ask_writer(Job::Sync)).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::Unavailable(format!(
                "writes not on disk within {} ms",
                self.sync_timeout.as_millis()
            ))),
        }
    }

    /// Asks the writer for a sync or a fold, and waits for it.
    async fn ask_writer(
        &self,
        job: fn(tokio::sync::oneshot::Sender<Result<(), String>>) -> Job,
    ) -> Result<(), BackendError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(job(reply))?;
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
        self.applier.progress.durable.load(Ordering::Acquire)
    }

    /// Whether a write is visible but not on disk yet.
    pub fn has_unsynced(&self) -> bool {
        self.applier.progress.unsynced().is_some()
    }

    /// Applies a set (`Some`) or a delete (`None`) here and now.
    fn put(&self, table: &Arc<str>, key: &str, value: Option<Vec<u8>>) -> Result<(), BackendError> {
        // Under the lock `close` takes: a write applied now is in the writer's final fold.
        let writes = self.writes.read().unwrap_or_else(|e| e.into_inner());
        let Some(writes) = &*writes else {
            return Err(BackendError::Unavailable("the store is closed".to_owned()));
        };
        let tell_writer = self
            .applier
            .put(table, key.to_owned(), value)
            .map_err(OpError::into_backend)?;
        if tell_writer {
            let _ = writes.send(Job::Wake);
        }
        Ok(())
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
    /// it ends (its write still commits). Every pending write is folded in first.
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

/// Why an operation failed on the writer thread or in the blocking task.
pub(super) enum OpError {
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
        if let Some(value) = self.db.applier.pending.get(&self.table, key) {
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
        self.db.send(Job::Write {
            table: self.table.clone(),
            op,
            reply,
        })?;
        match result.await {
            Ok(result) => result.map_err(OpError::into_backend),
            Err(_) => Err(BackendError::Unavailable(
                "the store's writer stopped".to_owned(),
            )),
        }
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), BackendError> {
        self.db.put(&self.table, key, Some(value))
    }

    pub async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.db.put(&self.table, key, None)
    }

    pub async fn exists(&self, key: &str) -> Result<bool, BackendError> {
        if let Some(value) = self.db.applier.pending.get(&self.table, key) {
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
            if let Some(value) = self.db.applier.pending.get(&self.table, key) {
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
        if !self.db.applier.pending.is_empty() {
            self.db.ask_writer(Job::Fold).await?;
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

pub(super) fn table(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

pub(super) fn parse_counter(value: &[u8]) -> Result<i64, OpError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| OpError::Refused("the value is not an integer".to_owned()))
}
