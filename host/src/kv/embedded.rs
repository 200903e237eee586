//! The embedded store: a redb database on local disk (or in memory), no server. Each label is a
//! table; labels configured with the same file share one database.
//!
//! Writes go to one writer thread per database, which commits whatever writes are waiting in one
//! transaction (group commit). A write's call returns once its commit is visible to readers;
//! the commit reaches the disk (`fsync`) when a response that follows it is about to leave
//! (see [`Unsynced`]): the requests answering at that moment share one durable commit, instead
//! of each write waiting for its own. A commit no response asks for is made durable within
//! [`SYNC_WITHIN`]. Reads run on tokio's blocking pool, concurrently with the writer (redb's
//! readers see the last commit). Neither ever holds up a tokio worker.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use redb::{Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{BackendError, CasOutcome, KeyPage};

/// Page cache of one database, not redb's default 1 GiB. Once full it stays resident: at
/// 16 MiB it was half of ion-host's memory 10 s after a burst of new conversations, and 4 MiB
/// still held 2.3 MiB more than this. Pages beyond it are read from the file (the kernel's
/// page cache), at no measurable CPU per chat.
const CACHE_BYTES: usize = 1024 * 1024;

/// Most writes committed together.
const GROUP_MAX: usize = 256;

/// Longest a commit stays off the disk when no response waits for it (its request failed or
/// its client went away): the writer then makes it durable on its own.
pub const SYNC_WITHIN: Duration = Duration::from_millis(100);

/// One redb database, shared by the labels stored in it.
pub struct EmbeddedDb {
    /// `None` once closed.
    db: RwLock<Option<Arc<Database>>>,
    /// Where writes and syncs go; `None` once closed.
    writes: RwLock<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    progress: Arc<Progress>,
    location: String,
}

/// How far the writer has come. Commits are numbered from 1; a number is taken before its
/// commit becomes visible, so `begun` is never behind what a reader can see.
#[derive(Default)]
struct Progress {
    begun: AtomicU64,
    /// The last commit on disk (every one before it is on disk too).
    durable: AtomicU64,
    /// In memory: nothing to sync, every commit counts as durable.
    volatile: bool,
}

impl Progress {
    /// The commit a request that used the database now waits for, if it is not on disk yet.
    fn unsynced(&self) -> Option<u64> {
        let begun = self.begun.load(Ordering::Acquire);
        (!self.volatile && self.durable.load(Ordering::Acquire) < begun).then_some(begun)
    }
}

/// What the writer thread is asked for.
enum Job {
    Write(Write),
    /// Put every commit made so far on disk, then answer.
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
    /// chose the path, for the error.
    pub fn open_file(path: &Path, hint: String) -> Result<Arc<EmbeddedDb>> {
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
        ))
    }

    fn with_writer(db: Database, location: String, volatile: bool) -> Arc<EmbeddedDb> {
        let db = Arc::new(db);
        let (writes, queue) = mpsc::channel();
        let writer_db = db.clone();
        let progress = Arc::new(Progress {
            volatile,
            ..Progress::default()
        });
        let writer_progress = progress.clone();
        let writer = std::thread::Builder::new()
            .name("kv-writer".to_owned())
            .spawn(move || write_loop(&writer_db, &queue, &writer_progress))
            .expect("spawn the key-value writer thread");
        Arc::new(EmbeddedDb {
            db: RwLock::new(Some(db)),
            writes: RwLock::new(Some(writes)),
            writer: Mutex::new(Some(writer)),
            progress,
            location,
        })
    }

    /// A database in memory, gone when ion-host stops.
    pub fn in_memory() -> Result<Arc<EmbeddedDb>> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .context("cannot create an in-memory key-value store")?;
        Ok(EmbeddedDb::with_writer(db, "(in memory)".to_owned(), true))
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

    /// Puts every commit made so far on disk (shared with whoever else waits for one). At once
    /// when there is nothing to put there.
    pub async fn sync(&self) -> Result<(), BackendError> {
        if self.progress.unsynced().is_none() {
            return Ok(());
        }
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

    /// The number of the last commit on disk, for tests.
    #[cfg(test)]
    pub fn durable_commit(&self) -> u64 {
        self.progress.durable.load(Ordering::Acquire)
    }

    /// Whether a commit is visible but not on disk yet.
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
    /// it ends (its write still commits). What is committed is put on disk first.
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

/// Commits the writes waiting, a group at a time, until every sender is gone. A group is
/// committed durably when a sync waits in it, or once the oldest commit off the disk has waited
/// [`SYNC_WITHIN`] (also under a steady stream of writes that no response waits for);
/// otherwise it is only made visible.
fn write_loop(db: &Database, queue: &mpsc::Receiver<Job>, progress: &Progress) {
    // When the oldest commit not on disk yet was made.
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
        let mut group = Vec::new();
        let mut syncs = Vec::new();
        let mut durable = unsynced_since.is_some_and(|since| since.elapsed() >= SYNC_WITHIN);
        let mut next = first;
        while let Some(job) = next {
            match job {
                Job::Write(write) => group.push(write),
                Job::Sync(reply) => {
                    durable = true;
                    syncs.push(reply);
                }
            }
            next = (group.len() < GROUP_MAX)
                .then(|| queue.try_recv().ok())
                .flatten();
        }
        let outcome = commit_group(db, group, durable, progress);
        for reply in syncs {
            let _ = reply.send(outcome.clone());
        }
        unsynced_since = match progress.unsynced() {
            None => None,
            // A durable commit failed: try again after another `SYNC_WITHIN`, not at once.
            Some(_) if durable => Some(Instant::now()),
            Some(_) => unsynced_since.or_else(|| Some(Instant::now())),
        };
    }
    // Closing: what is visible goes to disk before the database is let go.
    if progress.unsynced().is_some() {
        let _ = commit_group(db, Vec::new(), true, progress);
    }
}

/// Applies a group of writes in one transaction and commits it once: durably (with every
/// commit before it) when `durable`, else visible only. A write refused on its own (a counter
/// that is not a number) changes nothing and fails alone; a storage failure fails the whole
/// group. Returns the commit's outcome, for the syncs that waited on it.
fn commit_group(
    db: &Database,
    group: Vec<Write>,
    durable: bool,
    progress: &Progress,
) -> Result<(), String> {
    let mut results = Vec::with_capacity(group.len());
    let number = progress.begun.load(Ordering::Relaxed) + 1;
    let durable = durable || progress.volatile;
    let applied = (|| -> Result<(), OpError> {
        let mut tx = db.begin_write()?;
        if !durable {
            tx.set_durability(Durability::None)?;
        }
        for write in &group {
            let mut table = tx.open_table(table(&write.table))?;
            match apply(&mut table, &write.op) {
                Err(OpError::Store(e)) => return Err(OpError::Store(e)),
                result => results.push(result),
            }
        }
        // Numbered before it becomes visible: a reader that sees it finds `begun` at it.
        progress.begun.store(number, Ordering::Release);
        tx.commit()?;
        Ok(())
    })();
    match applied {
        Ok(()) => {
            if durable {
                progress.durable.store(number, Ordering::Release);
            }
            for (write, result) in group.into_iter().zip(results) {
                let _ = write.reply.send(result);
            }
            Ok(())
        }
        Err(e) => {
            let detail = match e {
                OpError::Store(e) => e.to_string(),
                OpError::Refused(message) | OpError::Group(message) => message,
            };
            for write in group {
                let _ = write.reply.send(Err(OpError::Group(detail.clone())));
            }
            Err(detail)
        }
    }
}

/// One write inside the group's transaction. Only storage errors propagate (and fail the
/// group); a refusal is this write's own result.
fn apply(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    op: &WriteOp,
) -> Result<WriteResult, OpError> {
    match op {
        WriteOp::Set(key, value) => {
            table.insert(key.as_str(), value.as_slice())?;
            Ok(WriteResult::Done)
        }
        WriteOp::Delete(key) => {
            table.remove(key.as_str())?;
            Ok(WriteResult::Done)
        }
        WriteOp::Increment(key, delta) => {
            let current = match table.get(key.as_str())? {
                Some(value) => parse_counter(value.value())?,
                None => 0,
            };
            let sum = current.checked_add(*delta).ok_or_else(|| {
                OpError::Refused(format!("increment of {key:?} by {delta} overflows"))
            })?;
            table.insert(key.as_str(), sum.to_string().as_bytes())?;
            Ok(WriteResult::Counter(sum))
        }
        WriteOp::CompareAndSwap {
            key,
            expected,
            value,
        } => {
            let current = table.get(key.as_str())?.map(|v| v.value().to_vec());
            if current == *expected {
                table.insert(key.as_str(), value.as_slice())?;
                Ok(WriteResult::Cas(CasOutcome::Swapped))
            } else {
                Ok(WriteResult::Cas(CasOutcome::Changed(current)))
            }
        }
    }
}

/// Why an operation failed inside the blocking task.
enum OpError {
    Store(redb::Error),
    Refused(String),
    /// The group this write was committed with failed.
    Group(String),
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
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
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
            Ok(Ok(value)) => Ok(value),
            Ok(Err(OpError::Store(e))) => Err(BackendError::Unavailable(e.to_string())),
            Ok(Err(OpError::Group(detail))) => Err(BackendError::Unavailable(detail)),
            Ok(Err(OpError::Refused(message))) => Err(BackendError::Refused(message)),
            Err(e) => Err(BackendError::Unavailable(format!("store task failed: {e}"))),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let key = key.to_owned();
        self.run(move |db, name| {
            let tx = db.begin_read()?;
            let table = tx.open_table(table(name))?;
            Ok(table.get(key.as_str())?.map(|v| v.value().to_vec()))
        })
        .await
    }

    /// Queues a write for the writer thread and waits for its commit.
    async fn write(&self, op: WriteOp) -> Result<WriteResult, BackendError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        self.db.send(Job::Write(Write {
            table: self.table.clone(),
            op,
            reply,
        }))?;
        match result.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(OpError::Store(e))) => Err(BackendError::Unavailable(e.to_string())),
            Ok(Err(OpError::Group(detail))) => Err(BackendError::Unavailable(detail)),
            Ok(Err(OpError::Refused(message))) => Err(BackendError::Refused(message)),
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
        let key = key.to_owned();
        self.run(move |db, name| {
            let tx = db.begin_read()?;
            let table = tx.open_table(table(name))?;
            Ok(table.get(key.as_str())?.is_some())
        })
        .await
    }

    /// Reads, adds and writes in the writer's transaction: writes are serialized, so two
    /// increments never read the same value. Counters are stored as decimal text, as Redis's
    /// INCRBY keeps them. Adding 0 (how a counter is read) is a plain read: no commit.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, BackendError> {
        if delta == 0 {
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

    /// Keys in order, `limit` at a time; the cursor is the last key of the page.
    pub async fn keys(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, BackendError> {
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
