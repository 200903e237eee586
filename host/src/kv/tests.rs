//! The stores with the embedded backend: every operation, atomicity, durability, limits,
//! access control and deadlines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::config::{KvOptions, StoreSetup};
use super::*;

/// A fresh directory under the system temp dir, removed on drop.
pub(super) struct TempDir(pub PathBuf);

impl TempDir {
    pub(super) fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ion-kv-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn setup(state_dir: Option<&Path>, inline: Option<&str>, timeout_ms: u64) -> StoreSetup {
    let options = KvOptions {
        runtime_config_file: None,
        runtime_config: inline.map(str::to_owned),
        state_dir: state_dir.map(Path::to_path_buf),
        kv_timeout_ms: timeout_ms,
        kv_disk_timeout_ms: timeout_ms,
    };
    StoreSetup::from_options(&options, Path::new("spin.toml")).unwrap()
}

fn labels(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|l| l.to_string()).collect()
}

fn default_store(dir: &TempDir) -> (Stores, Arc<Store>) {
    let stores = Stores::open(&labels(&["default"]), &setup(Some(&dir.0), None, 5_000)).unwrap();
    let store = stores.get("default").unwrap();
    (stores, store)
}

fn in_memory() -> (Stores, Arc<Store>) {
    let stores = Stores::open(
        &labels(&["default"]),
        &setup(
            None,
            Some(r#"key_value_store.default = { type = "spin" }"#),
            5_000,
        ),
    )
    .unwrap();
    let store = stores.get("default").unwrap();
    (stores, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_set_delete_exists_keys() {
    let dir = TempDir::new();
    let (_stores, store) = default_store(&dir);
    assert!(dir.0.join(config::DEFAULT_FILE).is_file());
    assert_eq!(store.get("a").await, Ok(None));
    assert_eq!(store.exists("a").await, Ok(false));
    store.set("a", b"1".to_vec()).await.unwrap();
    store.set("b", b"2".to_vec()).await.unwrap();
    store.set("a", b"one".to_vec()).await.unwrap();
    assert_eq!(store.get("a").await, Ok(Some(b"one".to_vec())));
    assert_eq!(store.exists("a").await, Ok(true));
    assert_eq!(store.all_keys().await, Ok(labels(&["a", "b"])));
    store.delete("a").await.unwrap();
    store.delete("never-there").await.unwrap();
    assert_eq!(store.get("a").await, Ok(None));
    assert_eq!(store.all_keys().await, Ok(labels(&["b"])));
    // Empty keys and values are values like any other.
    store.set("", Vec::new()).await.unwrap();
    assert_eq!(store.get("").await, Ok(Some(Vec::new())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increment_and_compare_and_swap() {
    let (_stores, store) = in_memory();
    assert_eq!(store.increment("n", 0).await, Ok(0));
    assert_eq!(store.increment("n", 5).await, Ok(5));
    assert_eq!(store.increment("n", -7).await, Ok(-2));
    assert_eq!(store.get("n").await, Ok(Some(b"-2".to_vec())));
    store.set("text", b"abc".to_vec()).await.unwrap();
    let err = store.increment("text", 1).await.unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
    store
        .set("big", i64::MAX.to_string().into_bytes())
        .await
        .unwrap();
    assert!(
        store
            .increment("big", 1)
            .await
            .unwrap_err()
            .to_string()
            .contains("overflows")
    );

    compare_and_swap_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_many_tasks_are_atomic() {
    let dir = TempDir::new();
    let (_stores, store) = default_store(&dir);
    increments_are_atomic(&store, 50, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_close_and_reopen() {
    let dir = TempDir::new();
    {
        let (stores, store) = default_store(&dir);
        store.set("conv/1", b"{}".to_vec()).await.unwrap();
        store.increment("conv/1/n", 3).await.unwrap();
        drop(store);
        stores.close();
    }
    let (_stores, store) = default_store(&dir);
    assert_eq!(store.get("conv/1").await, Ok(Some(b"{}".to_vec())));
    assert_eq!(store.increment("conv/1/n", 0).await, Ok(3));
}

/// A write is visible as soon as its call returns; the request's response then waits for it
/// to reach the disk, and once it has, there is nothing left to wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_settles_what_it_used_to_disk() {
    let dir = TempDir::new();
    let (_stores, store) = default_store(&dir);
    let db = store.embedded_db().unwrap().clone();
    let unsynced = Unsynced::default();
    assert!(!unsynced.is_pending());
    store.set("conv/1", b"{}".to_vec()).await.unwrap();
    assert_eq!(store.get("conv/1").await, Ok(Some(b"{}".to_vec())));
    // Noted only while the commit is off the disk (the writer may have synced it already).
    unsynced.used(&db);
    unsynced.settle().await.unwrap();
    assert!(!unsynced.is_pending());
    assert!(!db.has_unsynced());
    unsynced.used(&db);
    assert!(!unsynced.is_pending(), "nothing is left to wait for");
}

/// What the files hold at a crash between an answer and the next fold: the writes are in the
/// log, not in the database yet, and the next open folds them in (a write then a delete of the
/// same key, an increment, two tables). A copy of both files taken while the writer is held
/// off the disk is such a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_writes_outlive_a_crash_before_their_fold() {
    let dir = TempDir::new();
    // Two labels in one file, `kv.redb` in `state`.
    let stores = |state: &TempDir| {
        let inline = format!(
            "key_value_store.default = {{ type = \"spin\", path = {0:?} }}\n\
             key_value_store.cache = {{ type = \"spin\", path = {0:?} }}",
            state.0.join("kv.redb").display().to_string()
        );
        let setup = setup(Some(&state.0), Some(&inline), 5_000);
        Stores::open(&labels(&["default", "cache"]), &setup).unwrap()
    };
    let running = stores(&dir);
    let (store, cache) = (
        running.get("default").unwrap(),
        running.get("cache").unwrap(),
    );
    let db = store.embedded_db().unwrap().clone();
    store.set("conv/1", b"{}".to_vec()).await.unwrap();
    store.set("gone", b"x".to_vec()).await.unwrap();
    store.delete("gone").await.unwrap();
    store.increment("conv/1/n", 3).await.unwrap();
    cache.set("conv/1", b"cached".to_vec()).await.unwrap();
    db.sync().await.unwrap();

    let crashed = TempDir::new();
    let files = ["kv.redb", "kv.redb-wal.0", "kv.redb-wal.1"];
    {
        let _disk = db.hold_disk();
        for file in files {
            std::fs::copy(dir.0.join(file), crashed.0.join(file)).unwrap();
        }
    }
    let logged = |dir: &TempDir| -> u64 {
        files[1..]
            .iter()
            .map(|file| std::fs::metadata(dir.0.join(file)).unwrap().len())
            .sum()
    };
    assert!(logged(&crashed) > 0, "the writes are in the log");

    let reopened = stores(&crashed);
    let (store2, cache2) = (
        reopened.get("default").unwrap(),
        reopened.get("cache").unwrap(),
    );
    assert_eq!(logged(&crashed), 0, "folded in and emptied at open");
    assert_eq!(store2.get("conv/1").await, Ok(Some(b"{}".to_vec())));
    assert_eq!(store2.get("gone").await, Ok(None));
    assert_eq!(store2.increment("conv/1/n", 0).await, Ok(3));
    assert_eq!(cache2.get("conv/1").await, Ok(Some(b"cached".to_vec())));

    // The running store folds them into its database on its own, and empties its log.
    let deadline = Instant::now() + writer::FOLD_WITHIN * 10;
    while logged(&dir) > 0 {
        assert!(Instant::now() < deadline, "never folded");
        tokio::time::sleep(writer::FOLD_WITHIN / 10).await;
    }
    let tx = redb::ReadableDatabase::begin_read(&*db.database()).unwrap();
    let table = tx
        .open_table(redb::TableDefinition::<&str, &[u8]>::new("default"))
        .unwrap();
    assert_eq!(table.get("conv/1").unwrap().unwrap().value(), b"{}");
    assert!(table.get("gone").unwrap().is_none());
}

/// A fold that takes long (its commit held up) holds up no write and no answer: writes go on
/// into the log's other file, the frozen ones stay readable, and once the commit is through,
/// both reach the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_answers_go_on_while_a_fold_is_held_up() {
    let dir = TempDir::new();
    let (stores, store) = default_store(&dir);
    let db = store.embedded_db().unwrap().clone();
    {
        let _held = db.hold_database();
        store.set("before", b"1".to_vec()).await.unwrap();
        db.sync().await.unwrap();
        // The fold of "before" starts, and waits for the database.
        tokio::time::sleep(writer::FOLD_WITHIN * 3 / 2).await;
        // A write or an append that waited for the fold would wait until the guard is gone:
        // the sync would fail at its deadline.
        for n in 0..20 {
            store
                .set(&format!("during/{n}"), b"2".to_vec())
                .await
                .unwrap();
            db.sync().await.unwrap();
        }
        assert_eq!(store.get("before").await, Ok(Some(b"1".to_vec())));
        assert!(!db.has_unsynced());
    }
    let deadline = Instant::now() + writer::FOLD_WITHIN * 10;
    loop {
        let tx = redb::ReadableDatabase::begin_read(&*db.database()).unwrap();
        let table = tx
            .open_table(redb::TableDefinition::<&str, &[u8]>::new("default"))
            .unwrap();
        if table.get("during/19").unwrap().is_some() {
            assert!(table.get("before").unwrap().is_some());
            break;
        }
        assert!(Instant::now() < deadline, "never folded");
        tokio::time::sleep(writer::FOLD_WITHIN / 10).await;
    }
    drop(store);
    stores.close();
}

/// Increments on the writer thread read the database outside the lock that orders writes: a
/// fold that ends between that read and the increment must not make it count from a stale
/// value. Sets of thousands of keys from other tasks keep folds starting (past 4,096 pending
/// keys) while the counter climbs; no increment is lost, and the folded file agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_lose_nothing_while_folds_come_and_go() {
    let dir = TempDir::new();
    let (stores, store) = default_store(&dir);
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..250 {
                    for k in 0..4 {
                        let key = format!("filler/{task}/{n}/{k}");
                        store.set(&key, vec![7; 64]).await.unwrap();
                    }
                    store.increment("counter", 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.increment("counter", 0).await, Ok(2_000));
    drop(store);
    stores.close();
    let (_stores, store) = default_store(&dir);
    assert_eq!(store.increment("counter", 0).await, Ok(2_000));
    assert_eq!(store.get("filler/7/249/3").await, Ok(Some(vec![7; 64])));
}

/// A commit that no response waits for (its client went away) reaches the disk on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_nobody_waits_for_reaches_the_disk_on_its_own() {
    let dir = TempDir::new();
    let (_stores, store) = default_store(&dir);
    let db = store.embedded_db().unwrap().clone();
    // A set (applied on this task) and an increment (on the writer thread).
    for write in ["set", "increment"] {
        match write {
            "set" => store.set("conv/1", b"{}".to_vec()).await.unwrap(),
            _ => {
                store.increment("conv/1/n", 1).await.unwrap();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while db.has_unsynced() {
            assert!(
                Instant::now() < deadline,
                "the {write} is still off the disk"
            );
            tokio::time::sleep(writer::SYNC_WITHIN / 4).await;
        }
    }
    // Writes every 10 ms that no response waits for, never 100 ms apart: they still reach the
    // disk within about `SYNC_WITHIN` of the first, not only once the writes stop.
    let before = db.durable_commit();
    let started = Instant::now();
    while started.elapsed() < writer::SYNC_WITHIN * 5 {
        store.increment("conv/2/n", 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        db.durable_commit() > before,
        "nothing synced while writes kept coming"
    );

    // An in-memory store has no disk: nothing ever waits.
    let (_memory, store) = in_memory();
    store.set("a", b"1".to_vec()).await.unwrap();
    assert!(!store.embedded_db().unwrap().has_unsynced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_answers_an_error() {
    let (stores, store) = in_memory();
    stores.close();
    let err = store.get("a").await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_values_are_bounded() {
    let (_stores, store) = in_memory();
    let longest = "k".repeat(MAX_KEY_BYTES);
    store.set(&longest, b"x".to_vec()).await.unwrap();
    let too_long = "k".repeat(MAX_KEY_BYTES + 1);
    for err in [
        store.set(&too_long, b"x".to_vec()).await.unwrap_err(),
        store.get(&too_long).await.unwrap_err(),
        store.increment(&too_long, 1).await.unwrap_err(),
    ] {
        assert!(err.to_string().contains("at most 256 bytes"), "{err}");
    }
    store.set("big", vec![7; MAX_VALUE_BYTES]).await.unwrap();
    assert_eq!(
        store.get("big").await.unwrap().unwrap().len(),
        MAX_VALUE_BYTES
    );
    let err = store
        .set("big", vec![7; MAX_VALUE_BYTES + 1])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 MiB"), "{err}");
    let err = store
        .compare_and_swap("big", None, vec![7; MAX_VALUE_BYTES + 1])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 MiB"), "{err}");
    let many: Vec<String> = (0..=PAGE_KEYS).map(|i| i.to_string()).collect();
    assert!(Store::check_batch(many.iter()).is_err());
    assert!(Store::check_batch(many[..PAGE_KEYS].iter()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_listed_page_by_page_and_bounded() {
    let (stores, store) = in_memory();
    let db = stores.databases[0].database();
    // Written in one transaction: thousands of single writes would only slow the test.
    let write = |range: std::ops::Range<usize>| {
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("default"))
                .unwrap();
            for i in range {
                table
                    .insert(format!("k{i:05}").as_str(), b"v".as_slice())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    };
    write(0..2_500);
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store.list_keys(cursor).await.unwrap();
        assert!(page.keys.len() <= PAGE_KEYS);
        pages += 1;
        seen.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 2_500);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(store.all_keys().await.unwrap().len(), 2_500);

    write(2_500..MAX_KEYS + 1);
    let err = store.all_keys().await.unwrap_err();
    assert!(err.to_string().contains("list-keys"), "{err}");
}

/// A disk that takes no write: writes are visible at once, but putting them on disk fails
/// within the deadline, and succeeds once it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_disk_fails_the_sync_within_the_deadline() {
    let dir = TempDir::new();
    let stores = Stores::open(&labels(&["default"]), &setup(Some(&dir.0), None, 100)).unwrap();
    let store = stores.get("default").unwrap();
    let db = store.embedded_db().unwrap().clone();
    store.set("on-disk", b"1".to_vec()).await.unwrap();
    db.sync().await.unwrap();
    let disk = db.clone();
    let (began, holding) = std::sync::mpsc::channel::<()>();
    let (held, release) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _disk = disk.hold_disk();
        began.send(()).unwrap();
        let _ = release.recv();
    });
    holding.recv().unwrap();
    store.set("a", b"1".to_vec()).await.unwrap();
    store.delete("on-disk").await.unwrap();
    assert_eq!(store.get("a").await, Ok(Some(b"1".to_vec())));
    assert_eq!(store.get("on-disk").await, Ok(None));
    assert!(db.has_unsynced());
    let start = Instant::now();
    let err = db.sync().await.unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(400), "took {took:?}");
    assert_eq!(
        err,
        BackendError::Unavailable("writes not on disk within 100 ms".into())
    );
    held.send(()).unwrap();
    holder.join().unwrap();
    db.sync().await.unwrap();
    assert!(!db.has_unsynced());
    drop(store);
    stores.close();

    // Both writes reached the file.
    let stores = Stores::open(&labels(&["default"]), &setup(Some(&dir.0), None, 100)).unwrap();
    let store = stores.get("default").unwrap();
    assert_eq!(store.get("a").await, Ok(Some(b"1".to_vec())));
    assert_eq!(store.get("on-disk").await, Ok(None));
}

/// The embedded store waits for a slow disk past the network store's deadline: a write held
/// up for longer than `--kv-timeout-ms` still ends in an answer, within `--kv-disk-timeout-ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_is_waited_for_past_the_network_deadline() {
    let dir = TempDir::new();
    let options = KvOptions {
        runtime_config_file: None,
        runtime_config: None,
        state_dir: Some(dir.0.clone()),
        kv_timeout_ms: 50,
        kv_disk_timeout_ms: 10_000,
    };
    let setup = StoreSetup::from_options(&options, Path::new("spin.toml")).unwrap();
    let stores = Stores::open(&labels(&["default"]), &setup).unwrap();
    let store = stores.get("default").unwrap();
    let db = store.embedded_db().unwrap().clone();
    let disk = db.clone();
    let (began, holding) = std::sync::mpsc::channel::<()>();
    // A write that takes 300 ms: six times the network deadline.
    let holder = std::thread::spawn(move || {
        let _disk = disk.hold_disk();
        began.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    });
    holding.recv().unwrap();
    let start = Instant::now();
    store.set("a", b"1".to_vec()).await.unwrap();
    db.sync().await.unwrap();
    // The write behind the held one succeeds too, then both calls again.
    store.set("b", b"2".to_vec()).await.unwrap();
    db.sync().await.unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "the commit waited: {took:?}"
    );
    holder.join().unwrap();
    assert_eq!(store.get("a").await, Ok(Some(b"1".to_vec())));
    assert!(!db.has_unsynced());
    drop(store);
    stores.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_follows_the_manifest_and_the_runtime_config() {
    let dir = TempDir::new();
    let stores = Stores::open(
        &labels(&["default", "cache"]),
        &setup(Some(&dir.0), None, 500),
    )
    .unwrap();
    assert!(stores.get("default").is_ok());
    assert_eq!(stores.get("cache").err(), Some(KvError::NoSuchStore));
    assert_eq!(stores.get("secret").err(), Some(KvError::AccessDenied));

    // Undeclared: no file is created.
    let empty = TempDir::new();
    let stores = Stores::open(&[], &setup(Some(&empty.0), None, 500)).unwrap();
    assert_eq!(stores.get("default").err(), Some(KvError::AccessDenied));
    assert!(!empty.0.join(config::DEFAULT_FILE).exists());

    // Two labels in one file are two tables.
    let file = dir.0.join("shared.redb");
    let inline = format!(
        "key_value_store.a = {{ type = \"spin\", path = {0:?} }}\n\
         key_value_store.b = {{ type = \"spin\", path = {0:?} }}",
        file.display().to_string()
    );
    let stores = Stores::open(
        &labels(&["a", "b"]),
        &setup(Some(&dir.0), Some(&inline), 500),
    )
    .unwrap();
    let (a, b) = (stores.get("a").unwrap(), stores.get("b").unwrap());
    a.set("k", b"from a".to_vec()).await.unwrap();
    assert_eq!(b.get("k").await, Ok(None));
    assert_eq!(a.get("k").await, Ok(Some(b"from a".to_vec())));
}

#[test]
fn a_file_in_use_or_an_unusable_directory_is_a_clear_error() {
    let dir = TempDir::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let _first = Stores::open(&labels(&["default"]), &setup(Some(&dir.0), None, 500)).unwrap();
    let err = Stores::open(&labels(&["default"]), &setup(Some(&dir.0), None, 500))
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(text.contains("already open in another process"), "{text}");
    assert!(
        text.contains(&dir.0.join(config::DEFAULT_FILE).display().to_string()),
        "{text}"
    );
    assert!(text.contains("--state-dir"), "{text}");

    // A state directory that cannot be created: its parent is a file.
    let file = dir.0.join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let err = Stores::open(
        &labels(&["default"]),
        &setup(Some(&file.join("state")), None, 500),
    )
    .err()
    .unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("cannot create the key-value store directory"),
        "{text}"
    );
    assert!(text.contains("--state-dir"), "{text}");
}

/// The host functions as the guest calls them: handles, access errors, CAS handles and limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_functions_follow_the_wit_contract() {
    use crate::runtime::bindings::fermyon::spin::key_value as spin_kv;
    use crate::runtime::bindings::wasi::keyvalue::atomics::{self, Host as _, HostCas as _};
    use crate::runtime::bindings::wasi::keyvalue::batch::Host as _;
    use crate::runtime::bindings::wasi::keyvalue::store::{self as wasi_kv, HostBucket as _};
    use host::{KvCtx, KvView, MAX_HANDLES};

    let stores = Stores::open(
        &labels(&["default", "cache"]),
        &setup(
            None,
            Some(r#"key_value_store.default = { type = "spin" }"#),
            5_000,
        ),
    )
    .unwrap();
    let mut table = wasmtime::component::ResourceTable::new();
    let mut ctx = KvCtx::new(Arc::new(stores));
    let mut view = KvView {
        table: &mut table,
        ctx: &mut ctx,
    };

    assert!(matches!(
        spin_kv::HostStore::open(&mut view, "other".into()).await,
        Err(spin_kv::Error::AccessDenied)
    ));
    assert!(matches!(
        spin_kv::HostStore::open(&mut view, "cache".into()).await,
        Err(spin_kv::Error::NoSuchStore)
    ));
    assert!(matches!(
        wasi_kv::Host::open(&mut view, "other".into()).await,
        Err(wasi_kv::Error::AccessDenied)
    ));

    let store = spin_kv::HostStore::open(&mut view, "default".into())
        .await
        .unwrap();
    let rep = store.rep();
    let same = || wasmtime::component::Resource::<host::SpinStore>::new_borrow(rep);
    spin_kv::HostStore::set(&mut view, same(), "k".into(), b"v".to_vec())
        .await
        .unwrap();
    assert_eq!(
        spin_kv::HostStore::get(&mut view, same(), "k".into())
            .await
            .unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(
        spin_kv::HostStore::get_keys(&mut view, same())
            .await
            .unwrap(),
        ["k"]
    );
    assert!(matches!(
        spin_kv::HostStore::set(&mut view, same(), "x".repeat(300), vec![]).await,
        Err(spin_kv::Error::Other(m)) if m.contains("256")
    ));

    // The same data through wasi:keyvalue, with a counter and a CAS that loses, then wins.
    let bucket = wasi_kv::Host::open(&mut view, "default".into())
        .await
        .unwrap();
    let b = bucket.rep();
    let bucket = || wasmtime::component::Resource::<host::Bucket>::new_borrow(b);
    assert_eq!(
        wasi_kv::HostBucket::get(&mut view, bucket(), "k".into())
            .await
            .unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(view.increment(bucket(), "n".into(), 2).await.unwrap(), 2);
    let page = view.list_keys(bucket(), None).await.unwrap();
    assert_eq!((page.keys, page.cursor), (labels(&["k", "n"]), None));

    let cas = atomics::HostCas::new(&mut view, bucket(), "k".into())
        .await
        .unwrap();
    let cas_rep = cas.rep();
    assert_eq!(
        view.current(wasmtime::component::Resource::new_borrow(cas_rep))
            .await
            .unwrap(),
        Some(b"v".to_vec())
    );
    wasi_kv::HostBucket::set(&mut view, bucket(), "k".into(), b"changed".to_vec())
        .await
        .unwrap();
    let retry = match view.swap(cas, b"mine".to_vec()).await {
        Err(atomics::CasError::CasFailed(retry)) => retry,
        other => panic!("expected cas-failed, got {other:?}"),
    };
    assert_eq!(
        view.current(wasmtime::component::Resource::new_borrow(retry.rep()))
            .await
            .unwrap(),
        Some(b"changed".to_vec())
    );
    view.swap(retry, b"mine".to_vec()).await.unwrap();
    assert_eq!(
        wasi_kv::HostBucket::get(&mut view, bucket(), "k".into())
            .await
            .unwrap(),
        Some(b"mine".to_vec())
    );

    // Batch calls.
    view.set_many(
        bucket(),
        vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
    )
    .await
    .unwrap();
    let got = view.get_many(bucket(), labels(&["a", "zz"])).await.unwrap();
    assert_eq!(
        got,
        [
            ("a".to_owned(), Some(b"1".to_vec())),
            ("zz".to_owned(), None)
        ]
    );
    view.delete_many(bucket(), labels(&["a", "b"]))
        .await
        .unwrap();
    assert!(
        !wasi_kv::HostBucket::exists(&mut view, bucket(), "a".into())
            .await
            .unwrap()
    );

    // Handles are bounded per request, and dropping one frees its place.
    let mut opened = Vec::new();
    loop {
        match spin_kv::HostStore::open(&mut view, "default".into()).await {
            Ok(handle) => opened.push(handle),
            Err(spin_kv::Error::StoreTableFull) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(opened.len() as u32, MAX_HANDLES - 2); // the store and the bucket above
    spin_kv::HostStore::drop(&mut view, opened.pop().unwrap())
        .await
        .unwrap();
    assert!(
        spin_kv::HostStore::open(&mut view, "default".into())
            .await
            .is_ok()
    );
}

/// Compare-and-swap as every backend must answer it, on key `c` (absent before and after).
pub(super) async fn compare_and_swap_contract(store: &Store) {
    // Absent -> set; stale expectation -> the value now; right expectation -> swapped.
    assert_eq!(
        store.compare_and_swap("c", None, b"v1".to_vec()).await,
        Ok(CasOutcome::Swapped)
    );
    assert_eq!(
        store.compare_and_swap("c", None, b"v2".to_vec()).await,
        Ok(CasOutcome::Changed(Some(b"v1".to_vec())))
    );
    assert_eq!(
        store
            .compare_and_swap("c", Some(b"v0".to_vec()), b"v2".to_vec())
            .await,
        Ok(CasOutcome::Changed(Some(b"v1".to_vec())))
    );
    assert_eq!(
        store
            .compare_and_swap("c", Some(b"v1".to_vec()), b"v2".to_vec())
            .await,
        Ok(CasOutcome::Swapped)
    );
    assert_eq!(store.get("c").await, Ok(Some(b"v2".to_vec())));
    store.delete("c").await.unwrap();
    assert_eq!(
        store
            .compare_and_swap("c", Some(b"v2".to_vec()), b"v3".to_vec())
            .await,
        Ok(CasOutcome::Changed(None))
    );
}

/// `tasks` tasks each incrementing counter `turns` `each` times at once: every increment gets a
/// number of its own, none reading the value another read.
pub(super) async fn increments_are_atomic(store: &Arc<Store>, tasks: i64, each: i64) {
    let running: Vec<_> = (0..tasks)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..each {
                    seen.push(store.increment("turns", 1).await.unwrap());
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in running {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=tasks * each).collect::<Vec<i64>>());
    assert_eq!(store.increment("turns", 0).await, Ok(tasks * each));
}
