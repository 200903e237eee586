//! ion-host's per-client rate limit, over real processes and HTTP: clients as Cloud Run reports
//! them (X-Forwarded-For), 429 with Retry-After and the draft RateLimit fields, /health exempt,
//! the environment variable the image uses, and the access log's remoteIp.

use crate::common::*;
use serde_json::Value;

/// A request to /chat as Cloud Run forwards it: the client wrote its own X-Forwarded-For
/// (`spoofed`) and Cloud Run appended the address it saw (`client`).
fn ask_as(service: &Service, client: &str, spoofed: &str) -> Reply {
    let forwarded = format!("{spoofed}, {client}");
    request(
        "POST",
        &service.url("/chat"),
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", &forwarded),
        ],
        br#"{"message": "How do I start learning Rust?"}"#,
    )
}

/// The access entries ion-host has written, once `ready` holds for them (or after 5 s: the
/// lines reach the test through a pipe).
fn access_entries_once(service: &Service, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let entries: Vec<Value> = service
            .stdout_lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|e| e.get("httpRequest").is_some())
            .collect();
        if ready(&entries) || std::time::Instant::now() > deadline {
            return entries;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn each_client_gets_its_allowance_then_429_with_rate_limit_fields() {
    let emulator = start_emulator();
    // The cache off: every allowed request reaches Vertex AI, so the count below means what
    // it says.
    let mut env = emulator_env(&emulator);
    env.push(("SPIN_VARIABLE_CACHE_TTL_SECONDS".into(), "0".into()));
    let service = Service::start_host(
        &["--rate-limit-per-minute", "2", "--trusted-proxy-hops", "1"],
        &env,
    );

    for _ in 0..2 {
        let reply = ask_as(&service, "203.0.113.1", "198.51.100.7");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let limited = ask_as(&service, "203.0.113.1", "198.51.100.8");
    assert_eq!(limited.status, 429, "{}", limited.body);
    let body = limited.json();
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["status_code"], 429);
    assert!(body["error"].as_str().unwrap().contains("2 per minute"));
    assert_eq!(limited.header("content-type"), Some("application/json"));
    // 2 per minute: the next request is allowed within 30 s.
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some("\"per-client\";q=2;w=60")
    );
    assert_eq!(
        limited.header("ratelimit"),
        Some(&*format!("\"per-client\";r=0;t={retry_after}"))
    );
    assert!(limited.header("x-request-id").is_some());
    let upstream_calls = emulator.requests().len();
    assert_eq!(
        upstream_calls, 2,
        "a limited request never reaches Vertex AI"
    );

    // Cloud Run's probes are never limited.
    assert_eq!(service.get("/health").status, 200);
    let health = request(
        "GET",
        &service.url("/health"),
        &[("x-forwarded-for", "203.0.113.1")],
        b"",
    );
    assert_eq!(health.status, 200);

    // Another client, behind the same spoofed header, has its own allowance: only the entry
    // Cloud Run appended counts.
    let other = ask_as(&service, "203.0.113.2", "198.51.100.7");
    assert_eq!(other.status, 200, "{}", other.body);

    // The access log names the client as Cloud Run reported it.
    let entries = access_entries_once(&service, |entries| {
        entries
            .iter()
            .any(|e| e["httpRequest"]["remoteIp"] == "203.0.113.2")
    });
    let refused = entries
        .iter()
        .find(|e| e["httpRequest"]["status"] == 429)
        .expect("an access entry for the 429");
    assert_eq!(refused["httpRequest"]["remoteIp"], "203.0.113.1");
    assert_eq!(refused["severity"], "WARNING");
    assert!(
        entries
            .iter()
            .any(|e| e["httpRequest"]["remoteIp"] == "203.0.113.2"),
        "the second client's entry"
    );
    assert!(
        entries
            .iter()
            .all(|e| e["httpRequest"]["remoteIp"] != "198.51.100.7"),
        "a client-written address is never logged as the client"
    );
}

#[test]
fn the_environment_variable_sets_the_limit_and_no_setting_means_no_limit() {
    let emulator = start_emulator();
    let mut env = emulator_env(&emulator);
    env.push(("ION_RATE_LIMIT_PER_MINUTE".into(), "1".into()));
    let service = Service::start_host(&[], &env);
    assert_eq!(service.ask("first").status, 200);
    // Without trusted proxies X-Forwarded-For is ignored: the TCP peer is the client, so a
    // made-up header does not buy a fresh allowance.
    let reply = ask_as(&service, "203.0.113.9", "198.51.100.1");
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.json()["code"], "rate_limited");
    drop(service);

    let service = Service::start_host(&[], &emulator_env(&emulator));
    for _ in 0..5 {
        assert_eq!(service.ask("no limit").status, 200);
    }
}

#[test]
fn a_zero_limit_is_a_usage_error() {
    let output = std::process::Command::new(host_binary())
        .args(["--listen", "127.0.0.1:0", "--rate-limit-per-minute", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("--rate-limit-per-minute"), "{err}");
}
