use std::collections::HashMap;

use super::*;
use crate::config::tests::Fixed;
use crate::store::StoreError;
use crate::store::tests::MemoryStore;

const NOW: u64 = 1_795_000_000; // 2026-11-18 11:06:40 UTC

fn settings(pairs: &[(&'static str, &'static str)]) -> AccessSettings {
    AccessSettings::load(&Fixed(pairs.iter().copied().collect::<HashMap<_, _>>())).unwrap()
}

fn random() -> [u8; 16] {
    [7; 16]
}

fn new_key(kv: &dyn KeyValue, rpm: u32, tokens: u64) -> String {
    let new = keys::NewKey {
        name: "test".into(),
        requests_per_minute: rpm,
        daily_token_budget: tokens,
    };
    keys::create(kv, &random, new, NOW).unwrap().0
}

fn with_key(key: &str) -> String {
    format!("Bearer {key}")
}

fn creds<'a>(authorization: Option<&'a str>, addr: &'a str) -> Credentials<'a> {
    Credentials {
        authorization: authorization.map(str::as_bytes),
        client_addr: Some(addr),
    }
}

#[test]
fn the_mode_decides_who_needs_a_key() {
    let kv = MemoryStore::default();
    let key = new_key(&kv, 0, 0);
    let good = with_key(&key);
    let anon = creds(None, "203.0.113.9:5000");
    let keyed = creds(Some(&good), "203.0.113.9:5000");
    let iam = creds(Some("Bearer eyJhbGciOi.x.y"), "203.0.113.9:5000");

    assert!(matches!(
        identify(&kv, Mode::Open, &anon),
        Ok(Caller::Anonymous { .. })
    ));
    assert!(
        matches!(
            identify(&kv, Mode::Open, &iam),
            Ok(Caller::Anonymous { .. })
        ),
        "no keys: Authorization is not ours to read"
    );
    assert_eq!(
        identify(&kv, Mode::Keys, &anon),
        Err(ApiError::InvalidApiKey { missing: true })
    );
    assert!(matches!(
        identify(&kv, Mode::Keys, &keyed),
        Ok(Caller::Key(_))
    ));
    assert!(matches!(
        identify(&kv, Mode::KeysOrAnonymous, &anon),
        Ok(Caller::Anonymous { .. })
    ));
    assert_eq!(
        identify(&kv, Mode::KeysOrAnonymous, &iam),
        Err(ApiError::InvalidApiKey { missing: false }),
        "a wrong key is refused, never taken as anonymous"
    );
}

#[test]
fn hostile_authorization_headers_are_refused_without_a_store_call() {
    let kv = MemoryStore::default();
    let key = new_key(&kv, 0, 0);
    let calls = kv.calls.get();
    let long = "x".repeat(100_000);
    let hostile: Vec<Vec<u8>> = vec![
        b"Bearer".to_vec(),
        b"Bearer ".to_vec(),
        format!("Basic {key}").into_bytes(),
        format!("Bearer {}", &key[..key.len() - 1]).into_bytes(),
        format!("Bearer {key}\r\nX-Admin: 1").into_bytes(),
        format!("Bearer {long}").into_bytes(),
        "Bearer ion_sk_ünïcödé".as_bytes().to_vec(),
        b"Bearer \xff\xfe".to_vec(),
    ];
    for raw in &hostile {
        let credentials = Credentials {
            authorization: Some(raw),
            client_addr: None,
        };
        assert_eq!(
            identify(&kv, Mode::Keys, &credentials),
            Err(ApiError::InvalidApiKey { missing: false }),
            "{:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(40)])
        );
    }
    assert_eq!(
        kv.calls.get(),
        calls,
        "malformed keys never reach the store"
    );
    let lower = format!("bearer {key}");
    assert!(identify(&kv, Mode::Keys, &creds(Some(&lower), "::1")).is_ok());
}

#[test]
fn a_key_is_limited_by_its_own_settings_shared_through_the_store() {
    let kv = MemoryStore::default();
    let key = new_key(&kv, 2, 0);
    let s = settings(&[("auth_mode", "keys")]);
    let header = with_key(&key);
    let caller = || identify(&kv, s.mode, &creds(Some(&header), "198.51.100.1:1")).unwrap();
    let first = admit(&kv, &s, caller(), NOW).unwrap();
    assert_eq!(first.standing.unwrap().requests_left, 1);
    admit(&kv, &s, caller(), NOW).unwrap();
    assert_eq!(
        admit(&kv, &s, caller(), NOW).unwrap_err(),
        ApiError::RateLimited {
            requests_per_minute: 2,
            retry_after: 21
        }
    );
    // Another address with the same key shares the limit; an anonymous caller does not.
    let other = identify(&kv, s.mode, &creds(Some(&header), "192.0.2.7:1")).unwrap();
    assert!(admit(&kv, &s, other, NOW).is_err());
}

#[test]
fn budgets_refuse_once_spent_and_say_when_they_reset() {
    let kv = MemoryStore::default();
    let s = settings(&[("anonymous_daily_tokens", "1000")]);
    let caller = || identify(&kv, s.mode, &creds(None, "203.0.113.5:80")).unwrap();
    let grant = admit(&kv, &s, caller(), NOW).unwrap();
    charge(&kv, &grant, 1_200, NOW).unwrap();
    let Err(ApiError::BudgetExceeded {
        used, retry_after, ..
    }) = admit(&kv, &s, caller(), NOW + 5)
    else {
        panic!("expected budget_exceeded");
    };
    assert_eq!(used, 1_200);
    assert_eq!((NOW + 5 + retry_after) % counters::DAY_SECS, 0);
    let response = ApiError::BudgetExceeded {
        daily_tokens: 1000,
        used,
        retry_after,
        now: NOW + 5,
    }
    .to_response();
    assert_eq!(response.status, 429);
    assert_eq!(
        response.header("retry-after"),
        Some(&*retry_after.to_string())
    );
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["code"], "budget_exceeded");
    assert_eq!(body["resets_at"], "2026-11-19T00:00:00Z");
    // Another address has its own budget.
    let other = identify(&kv, s.mode, &creds(None, "203.0.113.6:80")).unwrap();
    assert!(admit(&kv, &s, other, NOW).is_ok());
}

#[test]
fn an_ipv6_slash_64_is_one_anonymous_caller() {
    assert_eq!(
        client_key(Some("[2001:db8:1:2::9]:443")),
        "2001:db8:1:2::/64"
    );
    assert_eq!(
        client_key(Some("2001:db8:1:2:ffff::1")),
        "2001:db8:1:2::/64"
    );
    assert_eq!(client_key(Some("[::ffff:192.0.2.1]:1")), "192.0.2.1");
    assert_eq!(client_key(Some("203.0.113.1:0")), "203.0.113.1");
    assert_eq!(client_key(Some("not an address")), "unknown");
    assert_eq!(client_key(None), "unknown");
}

#[test]
fn a_store_outage_falls_back_for_anonymous_callers_and_refuses_unchecked_keys() {
    let kv = MemoryStore::default();
    let key = new_key(&kv, 5, 0);
    let s = settings(&[
        ("auth_mode", "keys_or_anonymous"),
        ("anonymous_requests_per_minute", "5"),
    ]);
    kv.down.set(true);
    let anon = identify(&kv, s.mode, &creds(None, "203.0.113.5:80")).unwrap();
    let grant = admit(&kv, &s, anon, NOW).unwrap();
    assert!(grant.store_failed && grant.standing.is_none());
    assert!(grant_headers(&grant).is_empty());
    assert!(matches!(
        identify(&kv, s.mode, &creds(Some(&with_key(&key)), "203.0.113.5:80")),
        Err(ApiError::StoreUnavailable { .. })
    ));
}

#[test]
fn nothing_limited_touches_no_store_and_grants_carry_the_draft_headers() {
    let kv = MemoryStore::default();
    let open = settings(&[]);
    let caller = identify(&kv, open.mode, &creds(None, "203.0.113.5:80")).unwrap();
    admit(&kv, &open, caller, NOW).unwrap();
    assert_eq!(kv.calls.get(), 0);

    let s = settings(&[
        ("anonymous_requests_per_minute", "30"),
        ("anonymous_daily_tokens", "5000"),
    ]);
    let caller = identify(&kv, s.mode, &creds(None, "203.0.113.5:80")).unwrap();
    let grant = admit(&kv, &s, caller, NOW).unwrap();
    let headers: HashMap<_, _> = grant_headers(&grant).into_iter().collect();
    assert_eq!(
        headers["ratelimit-policy"],
        "\"requests\";q=30;w=60, \"tokens\";q=5000;w=86400"
    );
    assert!(headers["ratelimit"].starts_with("\"requests\";r=29;t=20, \"tokens\";r=5000;t="));
}

#[test]
fn settings_are_checked() {
    let bad = |pairs: &[(&'static str, &'static str)]| {
        AccessSettings::load(&Fixed(pairs.iter().copied().collect::<HashMap<_, _>>()))
            .unwrap_err()
            .variable
    };
    assert_eq!(bad(&[("auth_mode", "sometimes")]), "auth_mode");
    assert_eq!(bad(&[("admin_token", "short")]), "admin_token");
    assert_eq!(
        bad(&[("anonymous_requests_per_minute", "-1")]),
        "anonymous_requests_per_minute"
    );
    let s = settings(&[("admin_token", "0123456789abcdef0123456789abcdef")]);
    assert!(s.admin_token.is_some());
    assert_eq!(s.key_defaults.requests_per_minute, 60);
}

/// A store whose swaps land but are reported as failed (Spin 4's Redis store does this).
struct LyingStore(MemoryStore);

impl KeyValue for LyingStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.0.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key)
    }
    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.0.increment(key, delta)
    }
    fn update(&self, key: &str, change: &mut crate::store::Change<'_>) -> Result<bool, StoreError> {
        for _ in 0..crate::store::UPDATE_ATTEMPTS {
            let current = self.0.get(key)?;
            let Some(value) = change(current.as_deref()) else {
                return Ok(false);
            };
            self.0.set(key, &value)?; // written, then "failed"
        }
        Err(StoreError::new("contended"))
    }
}

#[test]
fn a_key_index_swap_reported_failed_after_it_landed_is_done() {
    let kv = LyingStore(MemoryStore::default());
    let key = new_key(&kv, 0, 0);
    assert_eq!(keys::list(&kv).unwrap().len(), 1, "{key}");
}

#[test]
fn concurrent_callers_count_by_increments_and_refusals_are_taken_back() {
    let kv = MemoryStore::default();
    let s = settings(&[("anonymous_requests_per_minute", "3")]);
    let caller = || identify(&kv, s.mode, &creds(None, "203.0.113.5:80")).unwrap();
    let lefts: Vec<u64> = (0..3)
        .map(|_| {
            admit(&kv, &s, caller(), NOW)
                .unwrap()
                .standing
                .unwrap()
                .requests_left
        })
        .collect();
    assert_eq!(lefts, [2, 1, 0]);
    for _ in 0..5 {
        assert!(admit(&kv, &s, caller(), NOW).is_err());
    }
    let window = counters::keys("ip/203.0.113.5", NOW).current_window;
    assert_eq!(
        kv.get(&window).unwrap(),
        Some(b"3".to_vec()),
        "refusals leave no count"
    );
    // The first request of a window deletes the one three back.
    let later = NOW + 3 * counters::WINDOW_SECS;
    admit(&kv, &s, caller(), later).unwrap();
    assert_eq!(kv.get(&window).unwrap(), None);
}
