//! The embedded store: a redb database on local disk (or in memory), no server. Each label is a
//! table; labels configured with the same file share one database. Every write is its own
//! transaction, durable when it returns; the calls run on tokio's blocking pool so that a slow
//! disk never holds up a worker.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result, bail};
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};

use super::{BackendError, CasOutcome, KeyPage};

/// Page cache of one database: the working set of a small store, not redb's default 1 GiB.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// One redb database, shared by the labels stored in it.
pub struct EmbeddedDb {
    /// `None` once closed.
    db: RwLock<Option<Arc<Database>>>,
    location: String,
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
        Ok(Arc::new(EmbeddedDb {
            db: RwLock::new(Some(Arc::new(db))),
            location: path.display().to_string(),
        }))
    }

    /// A database in memory, gone when ion-host stops.
    pub fn in_memory() -> Result<Arc<EmbeddedDb>> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .context("cannot create an in-memory key-value store")?;
        Ok(Arc::new(EmbeddedDb {
            db: RwLock::new(Some(Arc::new(db))),
            location: "(in memory)".to_owned(),
        }))
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

    /// Closes the database, releasing its file lock; a call still running keeps it open until
    /// it ends (its write still commits).
    pub fn close(&self) -> Result<(), DatabaseError> {
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

/// Why an operation failed inside the blocking task.
enum OpError {
    Store(redb::Error),
    Refused(String),
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
    redb::CommitError
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

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), BackendError> {
        let key = key.to_owned();
        self.run(move |db, name| {
            let tx = db.begin_write()?;
            tx.open_table(table(name))?
                .insert(key.as_str(), value.as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let key = key.to_owned();
        self.run(move |db, name| {
            let tx = db.begin_write()?;
            tx.open_table(table(name))?.remove(key.as_str())?;
            tx.commit()?;
            Ok(())
        })
        .await
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

    /// Reads, adds and writes in one write transaction: writes are serialized, so two
    /// increments never read the same value. Counters are stored as decimal text, as Redis's
    /// INCRBY keeps them.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, BackendError> {
        let key = key.to_owned();
        self.run(move |db, name| {
            let tx = db.begin_write()?;
            let sum = {
                let mut table = tx.open_table(table(name))?;
                let current = match table.get(key.as_str())? {
                    Some(value) => parse_counter(value.value())?,
                    None => 0,
                };
                let sum = current.checked_add(delta).ok_or_else(|| {
                    OpError::Refused(format!("increment of {key:?} by {delta} overflows"))
                })?;
                table.insert(key.as_str(), sum.to_string().as_bytes())?;
                sum
            };
            tx.commit()?;
            Ok(sum)
        })
        .await
    }

    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<CasOutcome, BackendError> {
        let key = key.to_owned();
        self.run(move |db, name| {
            let tx = db.begin_write()?;
            let outcome = {
                let mut table = tx.open_table(table(name))?;
                let current = table.get(key.as_str())?.map(|v| v.value().to_vec());
                if current == expected {
                    table.insert(key.as_str(), value.as_slice())?;
                    CasOutcome::Swapped
                } else {
                    CasOutcome::Changed(current)
                }
            };
            match outcome {
                CasOutcome::Swapped => tx.commit()?,
                CasOutcome::Changed(_) => tx.abort()?,
            }
            Ok(outcome)
        })
        .await
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
