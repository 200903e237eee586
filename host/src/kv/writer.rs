//! The writer thread of an embedded database, and the fold thread beside it.
//!
//! The writer applies writes, one after another, to the pending writes, and puts them on disk
//! as one batch appended to the log when a response waits for them (or [`SYNC_WITHIN`] after
//! the oldest, when none does). Every [`FOLD_WITHIN`] (sooner when many are pending) it freezes
//! the pending writes, seals the log's current file, and hands both to the fold thread, which
//! commits them to the database and empties the file; writes go on meanwhile. A commit of a
//! second's writes at a time copies each B-tree page once for many writes, and no write waits
//! for it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redb::{Database, ReadableDatabase};

use super::CasOutcome;
use super::apply::Applier;
use super::embedded::{Job, OpError, WriteOp, WriteResult, parse_counter, table};
use super::pending::{Limit, Tables};
use super::wal::{LogFile, Record, WriteLog};

/// Most jobs the writer takes from its queue before it looks at whether to sync or fold.
const GROUP_MAX: usize = 256;

/// Longest a write stays off the disk when no response waits for it (its request failed or
/// its client went away): the writer then appends it to the log on its own.
pub const SYNC_WITHIN: Duration = Duration::from_millis(100);

/// Longest a write stays out of the database (pending, and in the log on a file): a fold then
/// commits every pending write in one transaction.
pub const FOLD_WITHIN: Duration = Duration::from_secs(1);

/// Pending writes (keys, and bytes of keys and values) at which a fold starts sooner.
const FOLD_AT: Limit = Limit {
    keys: 4096,
    bytes: 8 << 20,
};

/// Size of the log's current file at which a fold starts sooner (overwrites of a few keys grow
/// the log but not the pending writes).
const FOLD_AT_LOG_BYTES: u64 = 16 << 20;

/// How often the writer looks whether a running fold has ended, while one runs.
const FOLD_POLL: Duration = Duration::from_millis(10);

/// Opens the log of the database at `db_path` and folds what it holds into `db` (writes a
/// crash left there), leaving it empty.
pub fn open_log(db: &Database, db_path: &Path) -> Result<WriteLog> {
    let (mut log, replay) = WriteLog::open(db_path).context("cannot read its log")?;
    if replay.ignored_bytes > 0 {
        crate::logging::warn(&format!(
            "key-value store {}: ignored the last {} bytes of its log, a batch of writes cut \
             short (no response had waited for it)",
            db_path.display(),
            replay.ignored_bytes
        ));
    }
    if !replay.records.is_empty() {
        fold_records(db, &replay.records).context("cannot fold its log into the store")?;
        crate::logging::info(&format!(
            "key-value store {}: {} writes from its log folded in",
            db_path.display(),
            replay.records.len()
        ));
    }
    log.clear().context("cannot empty its log")?;
    Ok(log)
}

/// Applies `records`, in order, in one durable commit.
fn fold_records(db: &Database, records: &[Record]) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    let mut by_table: HashMap<&str, Vec<&Record>> = HashMap::new();
    for record in records {
        by_table.entry(&record.table).or_default().push(record);
    }
    for (name, records) in by_table {
        let mut table = tx.open_table(table(name))?;
        for record in records {
            match &record.value {
                Some(value) => table.insert(record.key.as_str(), value.as_slice())?,
                None => table.remove(record.key.as_str())?,
            };
        }
    }
    tx.commit()?;
    Ok(())
}

/// Commits `tables` in one durable transaction.
fn commit(db: &Database, tables: &Tables) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    for (name, keys) in tables {
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
}

/// Taken while the log, or the database, is written, so that a test can hold the writer and
/// the fold off the disk. Two locks: an append never waits for a fold's commit.
#[derive(Default)]
pub struct DiskGates {
    log: Mutex<()>,
    db: Mutex<()>,
}

type Gate<'a> = std::sync::MutexGuard<'a, ()>;

impl DiskGates {
    fn log(&self) -> Gate<'_> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn db(&self) -> Gate<'_> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Both, for a test. (Nothing else holds both at once.)
    #[cfg(test)]
    pub fn hold(&self) -> (Gate<'_>, Gate<'_>) {
        (self.log(), self.db())
    }

    /// The database's alone, for a test: folds wait, appends do not.
    #[cfg(test)]
    pub fn hold_db(&self) -> Gate<'_> {
        self.db()
    }
}

/// What the writer shares with the fold thread.
#[derive(Clone)]
struct Shared {
    db: Arc<Database>,
    applier: Arc<Applier>,
    disk: Arc<DiskGates>,
}

/// A fold: frozen writes, and the sealed log file that holds them (none in memory).
struct Fold {
    tables: Arc<Tables>,
    sealed: Option<LogFile>,
}

impl Fold {
    /// Commits the writes, ends their generation in the pending writes, and empties the
    /// sealed file. Run again after a failure, it commits the same writes again (newer ones
    /// are still pending, and fold after it).
    fn run(&mut self, shared: &Shared) -> Result<(), String> {
        if !self.tables.is_empty() {
            let _db = shared.disk.db();
            commit(&shared.db, &self.tables).map_err(|e| e.to_string())?;
        }
        shared.applier.pending.folded();
        if let Some(file) = &mut self.sealed {
            let _log = shared.disk.log();
            file.clear()
                .map_err(|e| format!("cannot empty the log {}: {e}", file.path().display()))?;
        }
        Ok(())
    }
}

/// Where the fold stands.
enum FoldState {
    Idle,
    /// With the fold thread.
    Running,
    /// Failed: retried after [`FOLD_WITHIN`].
    Failed {
        fold: Fold,
        at: Instant,
        error: String,
    },
}

/// The writer thread: applies increments and compare-and-swaps, appends to the log, and starts
/// folds.
pub struct Writer {
    shared: Shared,
    /// `None` in memory: there, a write is as durable as it gets once it is visible.
    log: Option<WriteLog>,
    /// When the oldest write not on disk yet was made (as far as the writer knows).
    unsynced_since: Option<Instant>,
    /// When the oldest write not frozen for a fold yet was made (as far as the writer knows).
    unfolded_since: Option<Instant>,
    fold: FoldState,
    folds: mpsc::Sender<Fold>,
    folded: mpsc::Receiver<(Fold, Result<(), String>)>,
    fold_thread: JoinHandle<()>,
}

impl Writer {
    /// Starts the fold thread; [`Writer::run`] on the writer thread does the rest.
    pub fn new(
        db: Arc<Database>,
        applier: Arc<Applier>,
        log: Option<WriteLog>,
        disk: Arc<DiskGates>,
    ) -> Writer {
        let shared = Shared { db, applier, disk };
        let (folds, fold_queue) = mpsc::channel::<Fold>();
        let (done, folded) = mpsc::channel();
        let fold_shared = shared.clone();
        let fold_thread = std::thread::Builder::new()
            .name("kv-fold".to_owned())
            .spawn(move || {
                for mut fold in fold_queue {
                    let outcome = fold.run(&fold_shared);
                    if done.send((fold, outcome)).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the key-value fold thread");
        Writer {
            shared,
            log,
            unsynced_since: None,
            unfolded_since: None,
            fold: FoldState::Idle,
            folds,
            folded,
            fold_thread,
        }
    }

    /// Applies the writes waiting, in the order they came, until every sender is gone. After
    /// each group it takes from the queue, it appends to the log when a sync waits or the
    /// oldest write off the disk has waited [`SYNC_WITHIN`] (also under a steady stream of
    /// writes that no response waits for), and starts a fold after [`FOLD_WITHIN`], or once
    /// [`FOLD_AT`] (or [`FOLD_AT_LOG_BYTES`]) is reached.
    pub fn run(mut self, queue: &mpsc::Receiver<Job>) {
        loop {
            let first = match self.next_due() {
                Some(due) => {
                    match queue.recv_timeout(due.saturating_duration_since(Instant::now())) {
                        Ok(job) => Some(job),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match queue.recv() {
                    Ok(job) => Some(job),
                    Err(_) => break,
                },
            };
            let mut syncs = Vec::new();
            let mut fold_nows = Vec::new();
            let mut taken = 0;
            let mut next = first;
            while let Some(job) = next {
                match job {
                    Job::Write { table, op, reply } => {
                        let result = self.apply(&table, op);
                        let _ = reply.send(result);
                    }
                    // A write was applied on its caller's task: seen below.
                    Job::Wake => {}
                    Job::Sync(reply) => syncs.push(reply),
                    Job::Fold(reply) => fold_nows.push(reply),
                }
                taken += 1;
                next = (taken < GROUP_MAX).then(|| queue.try_recv().ok()).flatten();
            }
            let now = Instant::now();
            let progress = &self.shared.applier.progress;
            if progress.begun.load(Ordering::Acquire) > progress.durable.load(Ordering::Acquire) {
                self.unsynced_since.get_or_insert(now);
            }
            if !self.shared.applier.pending.active_is_empty() {
                self.unfolded_since.get_or_insert(now);
            }
            let sync_due = self
                .unsynced_since
                .is_some_and(|since| now >= since + SYNC_WITHIN);
            if !syncs.is_empty() || sync_due {
                let outcome = self.sync();
                for reply in syncs {
                    let _ = reply.send(outcome.clone());
                }
            }
            if !fold_nows.is_empty() {
                let outcome = self.fold_now();
                for reply in fold_nows {
                    let _ = reply.send(outcome.clone());
                }
            }
            self.poll_fold();
            let fold_due = self
                .unfolded_since
                .is_some_and(|since| now >= since + FOLD_WITHIN)
                || self.shared.applier.pending.reached(&FOLD_AT)
                || self
                    .log
                    .as_ref()
                    .is_some_and(|log| log.len() >= FOLD_AT_LOG_BYTES);
            if fold_due {
                self.start_fold();
            }
        }
        // Closing: what is visible goes into the database before it is let go.
        if let Err(e) = self.fold_now() {
            crate::logging::warn(&format!(
                "key-value store: writes left in its log at close (folded in at the next \
                 open): {e}"
            ));
        }
        drop(self.folds);
        let _ = self.fold_thread.join();
    }

    /// When the writer must look again without a job: for a sync, for a fold to start or
    /// retry, or to see a running fold end.
    fn next_due(&self) -> Option<Instant> {
        let fold = match &self.fold {
            FoldState::Idle => self.unfolded_since.map(|since| since + FOLD_WITHIN),
            FoldState::Running => Some(Instant::now() + FOLD_POLL),
            FoldState::Failed { at, .. } => Some(*at + FOLD_WITHIN),
        };
        [self.unsynced_since.map(|since| since + SYNC_WITHIN), fold]
            .into_iter()
            .flatten()
            .min()
    }

    /// Applies an increment or a compare-and-swap, reading the current value from the pending
    /// writes or else from the database. A refusal (a counter that is not a number) changes
    /// nothing.
    fn apply(&mut self, table_name: &Arc<str>, op: WriteOp) -> Result<WriteResult, OpError> {
        let db = &self.shared.db;
        let stored = |key: &str| -> Result<Option<Vec<u8>>, OpError> {
            let tx = db.begin_read()?;
            let table = tx.open_table(table(table_name))?;
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        };
        let applier = &self.shared.applier;
        match op {
            WriteOp::Increment(key, delta) => {
                let overflow = format!("increment of {key:?} by {delta} overflows");
                applier.update(table_name, key, stored, |current| {
                    let now = match current {
                        Some(value) => parse_counter(&value)?,
                        None => 0,
                    };
                    let sum = now.checked_add(delta).ok_or(OpError::Refused(overflow))?;
                    Ok((
                        Some(sum.to_string().into_bytes()),
                        WriteResult::Counter(sum),
                    ))
                })
            }
            WriteOp::CompareAndSwap {
                key,
                expected,
                value,
            } => applier.update(table_name, key, stored, |current| {
                Ok(if current == expected {
                    (Some(value), WriteResult::Cas(CasOutcome::Swapped))
                } else {
                    (None, WriteResult::Cas(CasOutcome::Changed(current)))
                })
            }),
        }
    }

    /// Puts every write made so far on disk: one batch appended to the log. When the log takes
    /// nothing, a fold now puts them in the database instead.
    fn sync(&mut self) -> Result<(), String> {
        let applier = self.shared.applier.clone();
        let (batch, number) = applier.take_unlogged();
        if number == applier.progress.durable.load(Ordering::Acquire) {
            self.unsynced_since = None;
            return Ok(());
        }
        let appended = match &mut self.log {
            Some(log) if !batch.is_empty() => {
                let _log = self.shared.disk.log();
                log.append(&batch)
                    .map_err(|e| format!("cannot append to the log {}: {e}", log.path().display()))
            }
            // In memory there is nothing more durable to reach; and an empty batch (the writes
            // since the last append were folded in already) has nothing to append.
            _ => Ok(()),
        };
        match appended {
            Ok(()) => {
                applier.progress.durable.fetch_max(number, Ordering::AcqRel);
                self.unsynced_since = None;
                Ok(())
            }
            Err(why) => {
                applier.put_back(batch);
                self.fold_now().map_err(|e| {
                    // Not at once again: after another `SYNC_WITHIN`.
                    self.unsynced_since = Some(Instant::now());
                    format!("{why}; {e}")
                })
            }
        }
    }

    /// Hands the pending writes to the fold thread, unless a fold is running or failed less
    /// than [`FOLD_WITHIN`] ago (a failed one is retried first: its writes are older).
    fn start_fold(&mut self) {
        let fold = match std::mem::replace(&mut self.fold, FoldState::Running) {
            FoldState::Running => return,
            FoldState::Failed { fold, at, error } if at.elapsed() < FOLD_WITHIN => {
                self.fold = FoldState::Failed { fold, at, error };
                return;
            }
            FoldState::Failed { fold, .. } => fold,
            FoldState::Idle => {
                self.fold = FoldState::Idle;
                match self.freeze() {
                    Some(fold) => fold,
                    None => return,
                }
            }
        };
        self.fold = FoldState::Running;
        if let Err(mpsc::SendError(fold)) = self.folds.send(fold) {
            self.fold = FoldState::Failed {
                fold,
                at: Instant::now(),
                error: "the store's fold thread stopped".to_owned(),
            };
        }
    }

    /// Freezes the pending writes for a fold, with the log file that holds them. Writes made
    /// on other tasks between the append and the freeze are frozen too, and logged in the next
    /// file: replaying a write already folded in changes nothing.
    fn freeze(&mut self) -> Option<Fold> {
        if self.shared.applier.pending.active_is_empty() {
            return None;
        }
        // The current file must hold every write made so far: the unlogged ones go in first.
        let sealed = match self.log.is_some() {
            true => {
                self.sync().ok()?;
                Some(self.log.as_mut()?.seal()?)
            }
            false => None,
        };
        self.unfolded_since = None;
        Some(Fold {
            tables: self.shared.applier.freeze().0,
            sealed,
        })
    }

    /// Takes the outcome of a fold that has ended, if one has.
    fn poll_fold(&mut self) {
        if let FoldState::Running = self.fold
            && let Ok((fold, outcome)) = self.folded.try_recv()
        {
            self.fold_ended(fold, outcome);
        }
    }

    fn fold_ended(&mut self, fold: Fold, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                if let (Some(log), Some(file)) = (&mut self.log, fold.sealed) {
                    log.give_back(file);
                }
                self.fold = FoldState::Idle;
            }
            Err(error) => {
                crate::logging::warn(&format!(
                    "key-value store: cannot fold its log into the database (retried in {} s; \
                     the writes are on disk in the log): {error}",
                    FOLD_WITHIN.as_secs()
                ));
                self.fold = FoldState::Failed {
                    fold,
                    at: Instant::now(),
                    error,
                };
            }
        }
    }

    /// Folds every write made so far into the database, here and now: the fold running (or
    /// failed) first, then the rest; then empties the log. For a listing of keys, for a log
    /// that takes no batch, and at close.
    fn fold_now(&mut self) -> Result<(), String> {
        if let FoldState::Running = self.fold {
            match self.folded.recv() {
                Ok((fold, outcome)) => self.fold_ended(fold, outcome),
                Err(_) => return Err("the store's fold thread stopped".to_owned()),
            }
        }
        if let FoldState::Failed { mut fold, .. } =
            std::mem::replace(&mut self.fold, FoldState::Idle)
        {
            let outcome = fold.run(&self.shared);
            self.fold_ended(fold, outcome);
            if let FoldState::Failed { error, .. } = &self.fold {
                return Err(error.clone());
            }
        }
        // The writes still unlogged stay so: appended later, they change nothing.
        let (tables, number) = self.shared.applier.freeze();
        let mut fold = Fold {
            tables,
            sealed: None,
        };
        self.unfolded_since = None;
        let outcome = fold.run(&self.shared);
        self.fold_ended(fold, outcome);
        if let FoldState::Failed { error, .. } = &self.fold {
            return Err(error.clone());
        }
        let progress = &self.shared.applier.progress;
        progress.durable.fetch_max(number, Ordering::AcqRel);
        self.unsynced_since = None;
        if let Some(log) = &mut self.log {
            // What it holds is in the database too: replaying it again changes nothing.
            let _log = self.shared.disk.log();
            if let Err(e) = log.clear() {
                crate::logging::warn(&format!(
                    "key-value store log {}: cannot empty it: {e}",
                    log.path().display()
                ));
            }
        }
        Ok(())
    }
}
