//! API keys, shared request limits and daily token budgets, end to end: on every store both
//! runtimes offer (the suite), across three ion-host instances sharing one Redis, through a
//! Redis outage and a stalled Redis, against hostile keys, 10,000 client addresses, and
//! instances whose clocks disagree.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::python::{python_dir, run_tool};
use crate::common::redis::RedisServer as Redis;
use crate::common::serial;
use crate::common::{
    Emulator, Reply, Runtime, Service, Store, TempDir, emulator_env, raw_exchange, request,
    runtimes, start_emulator,
};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123";

fn start(
    runtime: Runtime,
    store: &Store<'_>,
    state_dir: &Path,
    emulator: &Emulator,
    vars: &[(&str, &str)],
    args: &[&str],
) -> Service {
    let mut env = emulator_env(emulator);
    env.push(("SPIN_VARIABLE_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()));
    // Every chat reaches Vertex AI (a cached answer costs no tokens).
    env.push(("SPIN_VARIABLE_CACHE_TTL_SECONDS".into(), "0".into()));
    env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Service::start_on(runtime, store, state_dir, args, &env)
}

fn admin(service: &Service, method: &str, path: &str, body: &Value) -> Reply {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    request(
        method,
        &service.url(path),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        &body,
    )
}

/// Creates a key and returns (key, id).
fn create_key(service: &Service, settings: Value) -> (String, String) {
    let created = admin(service, "POST", "/admin/keys", &settings);
    assert_eq!(created.status, 201, "{}", created.body);
    let body = created.json();
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ion_sk_"), "{key}");
    (key, body["id"].as_str().unwrap().to_owned())
}

fn chat(service: &Service, key: Option<&str>, message: &str) -> Reply {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    request(
        "POST",
        &service.url("/chat"),
        &headers,
        json!({ "message": message }).to_string().as_bytes(),
    )
}

fn usage(service: &Service, key: Option<&str>) -> Value {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let reply = request("GET", &service.url("/usage"), &headers, b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn seconds_to_utc_midnight() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    86_400 - now % 86_400
}

/// The whole life of keys and limits on one runtime and store.
fn keys_limits_and_budgets(runtime: Runtime, store: Store<'_>) {
    let emulator = start_emulator();
    let state = TempDir::new();
    let service = start(
        runtime,
        &store,
        state.path(),
        &emulator,
        &[
            ("SPIN_VARIABLE_AUTH_MODE", "keys_or_anonymous"),
            ("SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE", "3"),
        ],
        &[],
    );

    // The admin API needs its token.
    for auth in [None, Some("Bearer wrong"), Some("Bearer ")] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        let reply = request("GET", &service.url("/admin/keys"), &headers, b"");
        assert_eq!(reply.status, 401, "{auth:?}: {}", reply.body);
        assert_eq!(reply.json()["code"], "invalid_admin_token");
    }
    let bad = admin(&service, "POST", "/admin/keys", &json!({"name": ""}));
    assert_eq!(bad.status, 422, "{}", bad.body);
    let bad = admin(
        &service,
        "POST",
        "/admin/keys",
        &json!({"name": "x", "admin": true}),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);

    // A key: printed once, stored as a hash, listed by id.
    let (key, id) = create_key(
        &service,
        json!({"name": "mentee app", "requests_per_minute": 2, "daily_token_budget": 100000}),
    );
    let listed = admin(&service, "GET", "/admin/keys", &Value::Null);
    assert_eq!(listed.status, 200);
    assert!(
        !listed.body.contains(&key[20..]),
        "a list never shows a key"
    );
    assert_eq!(listed.json()["keys"][0]["id"], id.as_str());
    assert_eq!(listed.json()["keys"][0]["name"], "mentee app");

    // Used on /chat: the limits ride on the answer; the tokens are counted.
    let first = chat(&service, Some(&key), "How do I start with Rust?");
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"requests\";q=2;w=60, \"tokens\";q=100000;w=86400")
    );
    assert!(
        first
            .header("ratelimit")
            .unwrap()
            .starts_with("\"requests\";r=1;t="),
        "{:?}",
        first.header("ratelimit")
    );
    let reported = &first.json()["metadata"]["usage"];
    let billed = ["prompt_tokens", "completion_tokens", "thoughts_tokens"]
        .iter()
        .map(|f| reported[f].as_u64().unwrap())
        .sum::<u64>();
    assert!(billed > 0);
    let mine = usage(&service, Some(&key));
    assert_eq!(mine["caller"], "key");
    assert_eq!(mine["key"]["id"], id.as_str());
    assert_eq!(mine["usage"]["tokens_used"], billed);
    assert_eq!(mine["usage"]["tokens_remaining"], 100_000 - billed);
    assert_eq!(mine["usage"]["requests_remaining"], 1);

    // The OpenAI route takes the same key, as the SDK sends it.
    let completion = request(
        "POST",
        &service.url("/v1/chat/completions"),
        &[
            ("authorization", &format!("Bearer {key}")),
            ("content-type", "application/json"),
        ],
        json!({"model": "gemini-3.5-flash", "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(completion.status, 200, "{}", completion.body);

    // Its third request within the minute is refused, with the wait.
    let third = chat(&service, Some(&key), "and then?");
    assert_eq!(third.status, 429, "{}", third.body);
    assert_eq!(third.json()["code"], "rate_limited");
    let wait: u64 = third.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=61).contains(&wait), "{wait}");
    assert_eq!(
        third.header("ratelimit"),
        Some(format!("\"requests\";r=0;t={wait}").as_str())
    );

    // A small budget runs out, and says when it comes back.
    let (small, _) = create_key(
        &service,
        json!({"name": "small", "requests_per_minute": 0, "daily_token_budget": 10}),
    );
    assert_eq!(chat(&service, Some(&small), "one question").status, 200);
    let spent = chat(&service, Some(&small), "another question");
    assert_eq!(spent.status, 429, "{}", spent.body);
    let body = spent.json();
    assert_eq!(body["code"], "budget_exceeded");
    assert!(body["tokens_used"].as_u64().unwrap() >= 10);
    let retry: u64 = spent.header("retry-after").unwrap().parse().unwrap();
    assert!(retry.abs_diff(seconds_to_utc_midnight()) <= 5, "{retry}");
    assert!(body["resets_at"].as_str().unwrap().ends_with("T00:00:00Z"));
    let on_v1 = request(
        "POST",
        &service.url("/v1/chat/completions"),
        &[
            ("authorization", &format!("Bearer {small}")),
            ("content-type", "application/json"),
        ],
        json!({"model": "gemini-3.5-flash", "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(on_v1.status, 429);
    assert_eq!(on_v1.json()["error"]["type"], "insufficient_quota");

    // Wrong keys: 401 in each route's shape.
    let wrong = chat(
        &service,
        Some("ion_sk_000000000000_00000000000000000000000000000000"),
        "x",
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(wrong.json()["code"], "invalid_api_key");
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    let wrong_v1 = request(
        "POST",
        &service.url("/v1/chat/completions"),
        &[
            ("authorization", "Bearer sk-not-ours"),
            ("content-type", "application/json"),
        ],
        b"{}",
    );
    assert_eq!(wrong_v1.status, 401);
    assert_eq!(
        wrong_v1.json()["error"],
        json!({
            "message": "the API key is not valid: it is malformed, unknown or revoked",
            "type": "invalid_request_error",
            "param": null,
            "code": "invalid_api_key",
        })
    );

    // Revoked: refused on the next request.
    let shown = admin(&service, "GET", &format!("/admin/keys/{id}"), &Value::Null);
    assert_eq!(shown.status, 200);
    assert_eq!(
        shown.json()["usage"]["tokens_used"],
        mine["usage"]["tokens_used"].as_u64().unwrap() + completion_tokens(&completion)
    );
    assert_eq!(
        admin(
            &service,
            "DELETE",
            &format!("/admin/keys/{id}"),
            &Value::Null
        )
        .status,
        204
    );
    assert_eq!(chat(&service, Some(&key), "still there?").status, 401);
    assert_eq!(
        admin(
            &service,
            "DELETE",
            &format!("/admin/keys/{id}"),
            &Value::Null
        )
        .status,
        404
    );
    assert!(
        !admin(&service, "GET", "/admin/keys", &Value::Null)
            .body
            .contains(&id)
    );

    // Anonymous callers share their address's limit.
    let anonymous: Vec<u16> = (0..4)
        .map(|n| chat(&service, None, &format!("anonymous question {n}")).status)
        .collect();
    assert_eq!(anonymous, [200, 200, 200, 429]);
    assert_eq!(usage(&service, None)["usage"]["requests_remaining"], 0);

    // Logs name keys by id only.
    if runtime == Runtime::IonHost {
        let lines = service.stdout_lines().join("\n");
        assert!(!lines.contains(&key[20..]) && !lines.contains(&small[20..]));
        assert!(
            lines.contains(&format!("\"caller\":\"key:{id}\"")),
            "{lines}"
        );
    }
}

/// The tokens a completion reported (prompt, completion and reasoning).
fn completion_tokens(reply: &Reply) -> u64 {
    let usage = &reply.json()["usage"];
    usage["total_tokens"].as_u64().unwrap()
}

/// The official `openai` package takes a key as its `api_key`, and raises its own
/// AuthenticationError and RateLimitError for a wrong key and a spent budget.
#[test]
fn the_official_openai_client_takes_a_key() {
    let emulator = start_emulator();
    let state = TempDir::new();
    let service = start(
        Runtime::IonHost,
        &Store::Default,
        state.path(),
        &emulator,
        &[("SPIN_VARIABLE_AUTH_MODE", "keys")],
        &[],
    );
    let (key, _) = create_key(&service, json!({"name": "sdk"}));
    let (spent, _) = create_key(&service, json!({"name": "spent", "daily_token_budget": 1}));
    assert_eq!(chat(&service, Some(&spent), "spend it").status, 200);
    let script = python_dir().join("openai_keys.py");
    run_tool(
        "openai client with keys",
        "python",
        &[script.to_str().unwrap(), &service.base_url, &key, &spent],
        &[],
    );
}

#[test]
fn ion_host_with_its_embedded_store() {
    keys_limits_and_budgets(Runtime::IonHost, Store::Default);
}

#[test]
fn ion_host_with_redis() {
    let Some(redis) = Redis::start() else { return };
    keys_limits_and_budgets(Runtime::IonHost, Store::Redis(&redis));
}

#[test]
fn spin_with_its_default_store() {
    if runtimes().contains(&Runtime::Spin) {
        keys_limits_and_budgets(Runtime::Spin, Store::Default);
    }
}

#[test]
fn spin_with_redis() {
    if runtimes().contains(&Runtime::Spin) {
        let Some(redis) = Redis::start() else { return };
        keys_limits_and_budgets(Runtime::Spin, Store::Redis(&redis));
    }
}

/// Sends `total` chats spread over `services` from 8 threads; returns the 200s.
fn flood(services: &[Service], total: usize, key: Option<&str>) -> usize {
    let next = AtomicUsize::new(0);
    let admitted = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let reply = chat(&services[n % services.len()], key, &format!("question {n}"));
                    match reply.status {
                        200 => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        429 => assert_eq!(reply.json()["code"], "rate_limited"),
                        other => panic!("{other}: {}", reply.body),
                    }
                }
            });
        }
    });
    admitted.into_inner()
}

/// Three instances on one Redis with a limit of 30 a minute admit 30 in all, for an address
/// and for a key, where per-instance limits would admit 90.
#[test]
fn three_instances_on_one_redis_share_one_limit() {
    let _timed = serial::timed();
    let Some(redis) = Redis::start() else { return };
    let emulator = start_emulator();
    let states: Vec<TempDir> = (0..3).map(|_| TempDir::new()).collect();
    let services: Vec<Service> = states
        .iter()
        .map(|state| {
            start(
                Runtime::IonHost,
                &Store::Redis(&redis),
                state.path(),
                &emulator,
                &[
                    ("SPIN_VARIABLE_AUTH_MODE", "keys_or_anonymous"),
                    ("SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE", "30"),
                ],
                &[],
            )
        })
        .collect();
    let started = Instant::now();
    let anonymous = flood(&services, 120, None);
    let (key, _) = create_key(
        &services[0],
        json!({"name": "shared", "requests_per_minute": 30}),
    );
    let keyed = flood(&services, 120, Some(&key));
    // The window is a minute: the run must end within it for the count to mean "per minute".
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "{:?}",
        started.elapsed()
    );
    assert!(
        (30..=33).contains(&anonymous),
        "{anonymous} anonymous chats admitted"
    );
    assert!((30..=33).contains(&keyed), "{keyed} keyed chats admitted");
}

/// Instances whose clocks are 4 s apart, across a minute's end (the one behind still counting
/// in the old minute, the others in the new), still hold the shared limit, and never tell a
/// client to wait longer than the window plus the skew.
#[test]
fn instances_whose_clocks_differ_hold_the_limit() {
    let _timed = serial::timed();
    let Some(redis) = Redis::start() else { return };
    let Some(faketime) = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but libfaketime is missing: scripts/test.sh installs it"
        );
        eprintln!("skipping: libfaketime is not installed (apt-get install libfaketime)");
        return;
    };
    let emulator = start_emulator();
    let states: Vec<TempDir> = (0..3).map(|_| TempDir::new()).collect();
    // Clocks that start at these times and run on (libfaketime's `@` form).
    let services: Vec<Service> = [
        "@2026-12-03 10:01:05",
        "@2026-12-03 10:01:01",
        "@2026-12-03 10:00:57",
    ]
    .iter()
    .zip(&states)
    .map(|(offset, state)| {
        start(
            Runtime::IonHost,
            &Store::Redis(&redis),
            state.path(),
            &emulator,
            &[
                ("SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE", "10"),
                ("LD_PRELOAD", faketime),
                ("FAKETIME", offset),
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ],
            &[],
        )
    })
    .collect();
    let date = |s: &Service| s.get("/health").header("date").unwrap().to_owned();
    assert_ne!(date(&services[0]), date(&services[2]), "the clocks differ");
    let admitted = flood(&services, 60, None);
    assert!((10..=13).contains(&admitted), "{admitted} admitted");
    for service in &services {
        let reply = chat(service, None, "one more");
        assert_eq!(reply.status, 429, "{}", reply.body);
        let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=61 + 8).contains(&wait), "{wait}");
    }
    // A clean exit lets libfaketime remove its shared-memory files from /dev/shm, which a
    // killed process leaves behind.
    for mut service in services {
        service.terminate();
        assert!(service.wait_exit(Duration::from_secs(10)).is_some());
    }
}

/// Redis goes away: keys cannot be checked (503), anonymous chats fall back to ion-host's
/// per-instance limit, and a stalled Redis never holds a request past the store's deadline.
#[test]
fn a_store_outage_falls_back_to_per_instance_limits() {
    let _timed = serial::timed();
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let emulator = start_emulator();
    let state = TempDir::new();
    let service = start(
        Runtime::IonHost,
        &Store::Redis(&redis),
        state.path(),
        &emulator,
        &[
            ("SPIN_VARIABLE_AUTH_MODE", "keys_or_anonymous"),
            ("SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE", "2"),
            ("ION_RATE_LIMIT_PER_MINUTE", "6"),
        ],
        &["--kv-timeout-ms", "300"],
    );
    let (key, _) = create_key(&service, json!({"name": "k"}));
    let shared: Vec<u16> = (0..3)
        .map(|n| chat(&service, None, &format!("q{n}")).status)
        .collect();
    assert_eq!(shared, [200, 200, 429], "the shared limit binds first");

    // Stalled: answered within the store's deadline per call, never hung.
    redis.pause();
    let started = Instant::now();
    let stalled = chat(&service, None, "while redis is stalled");
    assert_eq!(stalled.status, 200, "{}", stalled.body);
    let keyed = chat(&service, Some(&key), "a key while redis is stalled");
    assert_eq!(keyed.status, 503, "{}", keyed.body);
    assert_eq!(keyed.json()["code"], "store_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    redis.resume();

    // Down: the shared limit (spent) cannot be read, so ion-host's own bucket is the limit:
    // chats are admitted again until it runs out.
    redis.stop();
    let after = chat(&service, None, "down 0");
    assert_eq!(after.status, 200, "{}", after.body);
    let refused = (1..10)
        .map(|n| chat(&service, None, &format!("down {n}")))
        .find(|r| r.status != 200)
        .expect("the per-instance limit refuses within its 6 a minute");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"per-client\";q=6;w=60"),
        "refused by the per-instance limit"
    );
    assert!(
        service
            .stdout_lines()
            .iter()
            .any(|l| l.contains("\"limits\":\"instance\"")),
        "the chat's log line says the limits fell back"
    );
}

/// Forged, truncated, oversized, non-ASCII and header-injecting keys get a 401 (or the
/// server's own 4xx for a header it will not read), never a 500, and nothing is echoed.
#[test]
fn hostile_keys_are_refused() {
    let emulator = start_emulator();
    let state = TempDir::new();
    let service = start(
        Runtime::IonHost,
        &Store::Default,
        state.path(),
        &emulator,
        &[("SPIN_VARIABLE_AUTH_MODE", "keys")],
        &[],
    );
    let (key, _) = create_key(&service, json!({"name": "real"}));
    let mut forged = key.clone();
    forged.replace_range(key.len() - 4.., "beef");
    let long = format!("ion_sk_{}", "a".repeat(7000));
    let cases = [
        String::new(),
        forged.clone(),
        key[..key.len() - 1].to_owned(),
        format!("{key}0"),
        key.to_uppercase(),
        long,
        "ion_sk_<script>alert(1)</script>".into(),
    ];
    for presented in &cases {
        let reply = chat(&service, Some(presented), "hello");
        assert_eq!(reply.status, 401, "{presented:.40}: {}", reply.body);
        assert!(
            presented.len() < 8 || !reply.body.contains(presented.as_str()),
            "the key is never echoed"
        );
    }
    assert_eq!(chat(&service, None, "no key").status, 401);

    // Raw bytes no client library would send.
    let body = r#"{"message":"hi"}"#;
    for header in [
        "Authorization: Bearer ion_sk_\u{e9}\u{e9}\u{e9}"
            .as_bytes()
            .to_vec(),
        b"Authorization: Bearer \xff\xfe\xfd".to_vec(),
        format!("Authorization: Bearer {forged}\r\nX-Injected: yes").into_bytes(),
        format!("Authorization: Bearer {key}\x0bX").into_bytes(),
    ] {
        let mut raw =
            b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".to_vec();
        raw.extend_from_slice(&header);
        raw.extend_from_slice(
            format!(
                "\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let answer = raw_exchange(&service.base_url, &raw);
        let status: u16 = answer[9..12].parse().unwrap();
        assert!(
            status == 401 || status == 400,
            "{:?}: {answer}",
            String::from_utf8_lossy(&header)
        );
        assert!(
            !answer.to_ascii_lowercase().contains("x-injected"),
            "{answer}"
        );
    }
    let lines = service.stdout_lines().join("\n");
    assert!(!lines.contains(&forged[20..]), "keys are never logged");
    assert!(!lines.contains("\"status\":500"), "{lines}");
}

/// 10,000 client addresses (through a trusted proxy's X-Forwarded-For) each get their own
/// limit, and ion-host's memory stays bounded.
#[test]
fn ten_thousand_client_addresses_keep_memory_bounded() {
    let _heavy = serial::heavy();
    let emulator = start_emulator();
    let state = TempDir::new();
    let service = start(
        Runtime::IonHost,
        &Store::Default,
        state.path(),
        &emulator,
        &[
            ("SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE", "1"),
            ("ION_TRUSTED_PROXY_HOPS", "1"),
            ("ION_RATE_LIMIT_PER_MINUTE", "1"),
        ],
        &[],
    );
    let rss = || rss_kib(service.pid());
    // Warm up (the first requests grow pools), then measure.
    for n in 0..200u32 {
        send_from(&service, n + 50_000);
    }
    let before = rss();
    let refused = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= 10_000 {
                        break;
                    }
                    if send_from(&service, n as u32) == 429 {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(
        refused.into_inner(),
        0,
        "each address has its own allowance"
    );
    // Limits still hold after them: a fresh address, its two requests back to back.
    assert_eq!(send_from(&service, 90_000), 422);
    assert_eq!(
        send_from(&service, 90_000),
        429,
        "its second request within the minute"
    );
    let after = rss();
    eprintln!("ion-host RSS: {before} KiB before 10,000 addresses, {after} KiB after");
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB over 10,000 addresses"
    );
}

/// One chat with an invalid body (422: counted, but no Vertex AI call) from `n`'s address.
fn send_from(service: &Service, n: u32) -> u16 {
    let address = format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
    request(
        "POST",
        &service.url("/chat"),
        &[
            ("x-forwarded-for", &address),
            ("content-type", "application/json"),
        ],
        b"{}",
    )
    .status
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
