//! The stores against a real redis-server (tests/common/redis.rs starts it): every operation,
//! atomic increments from many tasks, recovery after a restart, and the deadline while Redis
//! is paused. Skipped with a message when no redis-server is installed, except in CI.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::setup;
use super::*;

#[allow(dead_code)]
#[path = "../../../tests/common/redis.rs"]
mod harness;

use harness::RedisServer;

const TIMEOUT_MS: u64 = 300;

fn redis_store(server: &RedisServer) -> (Stores, Arc<Store>) {
    let inline = format!(
        "key_value_store.default = {{ type = \"redis\", url = \"{}\" }}",
        server.url()
    );
    let stores = Stores::open(
        &["default".to_owned()],
        &setup(None, Some(&inline), TIMEOUT_MS),
    )
    .expect("open the redis store");
    let store = stores.get("default").unwrap();
    (stores, store)
}

/// Retries `op` until it succeeds or `within` passes.
async fn eventually<T, F: Future<Output = Result<T, KvError>>>(
    within: Duration,
    mut op: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still failing after {within:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (_stores, store) = redis_store(&server);
    assert_eq!(store.get("a").await, Ok(None));
    assert_eq!(store.exists("a").await, Ok(false));
    store.set("a", b"1".to_vec()).await.unwrap();
    store.set("b", vec![0, 255, 1]).await.unwrap();
    assert_eq!(store.get("b").await, Ok(Some(vec![0, 255, 1])));
    assert_eq!(store.exists("a").await, Ok(true));
    store.delete("a").await.unwrap();
    store.delete("a").await.unwrap();
    assert_eq!(store.get("a").await, Ok(None));
    assert_eq!(store.all_keys().await, Ok(vec!["b".to_owned()]));

    assert_eq!(store.increment("n", 0).await, Ok(0));
    assert_eq!(store.increment("n", 7).await, Ok(7));
    assert_eq!(store.increment("n", -2).await, Ok(5));
    assert_eq!(store.get("n").await, Ok(Some(b"5".to_vec())));
    let err = store.increment("b", 1).await.unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");

    super::tests::compare_and_swap_contract(&store).await;

    // The bounds hold before Redis is asked.
    assert!(
        store
            .set(&"k".repeat(MAX_KEY_BYTES + 1), vec![])
            .await
            .is_err()
    );
    assert!(
        store
            .set("big", vec![0; MAX_VALUE_BYTES + 1])
            .await
            .is_err()
    );
    store.set("big", vec![0; MAX_VALUE_BYTES]).await.unwrap();

    // Listing page by page with SCAN's cursor reaches every key once.
    for i in 0..2_500 {
        store.set(&format!("page/{i}"), vec![]).await.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = store.list_keys(cursor).await.unwrap();
        seen.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen.iter().filter(|k| k.starts_with("page/")).count(),
        2_500
    );
    let err = store.list_keys(Some("nope".into())).await.unwrap_err();
    assert!(err.to_string().contains("invalid cursor"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_50_tasks_are_atomic() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (_stores, store) = redis_store(&server);
    super::tests::increments_are_atomic(&store, 50, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_from_many_tasks_loses_no_update() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (_stores, store) = redis_store(&server);
    store.set("list", Vec::new()).await.unwrap();
    let tasks: Vec<_> = (0..20u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut current = store.get("list").await.unwrap();
                loop {
                    let mut next = current.clone().unwrap_or_default();
                    next.push(i);
                    match store.compare_and_swap("list", current, next).await.unwrap() {
                        CasOutcome::Swapped => return,
                        CasOutcome::Changed(now) => current = now,
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut list = store.get("list").await.unwrap().unwrap();
    list.sort_unstable();
    assert_eq!(list, (0..20).collect::<Vec<u8>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_a_restart_and_starts_while_redis_is_down() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let (_stores, store) = redis_store(&server);
    store.set("a", b"1".to_vec()).await.unwrap();
    server.restart();
    // The old connection is gone; the manager reconnects by itself.
    let value = eventually(Duration::from_secs(10), || store.get("a")).await;
    // No persistence: the restarted server is empty.
    assert_eq!(value, None);
    store.set("a", b"2".to_vec()).await.unwrap();
    assert_eq!(store.get("a").await, Ok(Some(b"2".to_vec())));

    // Opening the store does not need Redis: the calls fail fast until it is there.
    let port = server.port();
    drop(server);
    let inline = format!(
        "key_value_store.default = {{ type = \"redis\", url = \"redis://127.0.0.1:{port}\" }}"
    );
    let stores = Stores::open(
        &["default".to_owned()],
        &setup(None, Some(&inline), TIMEOUT_MS),
    )
    .expect("open while redis is down");
    let down = stores.get("default").unwrap();
    let start = Instant::now();
    let err = down.get("a").await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(TIMEOUT_MS + 300),
        "{:?}",
        start.elapsed()
    );
    assert!(err.to_string().contains("unavailable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_fails_within_the_deadline() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (_stores, store) = redis_store(&server);
    store.set("a", b"1".to_vec()).await.unwrap();
    server.pause();
    for op in 0..3 {
        let start = Instant::now();
        let result = match op {
            0 => store.get("a").await.map(|_| ()),
            1 => store.set("a", b"2".to_vec()).await,
            _ => store.increment("n", 1).await.map(|_| ()),
        };
        let took = start.elapsed();
        let err = result.unwrap_err();
        assert!(err.to_string().contains("unavailable"), "{err}");
        // The deadline, plus scheduling slack: never a hang.
        assert!(
            took >= Duration::from_millis(TIMEOUT_MS - 50)
                && took < Duration::from_millis(TIMEOUT_MS + 400),
            "op {op} took {took:?}"
        );
    }
    server.resume();
    let value = eventually(Duration::from_secs(10), || store.get("a")).await;
    // The set sent while paused may have been applied once Redis continued.
    assert!(value.is_some());
}
