//! One container, run as Cloud Run runs it, through its whole life: the API, the openai
//! client, a burst within the memory limit, the SIGTERM drain, and its logs.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::podman::{CloudRunMetadata, Container, built_image, podman};
use super::{MEMORY_LIMIT, MEMORY_LIMIT_BYTES, METADATA_PROJECT, METADATA_TOKEN, STOP_GRACE_SECS};
use crate::common::serial;
use crate::common::*;

/// One container, started as Cloud Run starts it, through its whole life: every check that
/// needs it runs in order, and the SIGTERM drain ends it.
#[test]
fn runs_like_cloud_run() {
    let _heavy = serial::heavy();
    let Some(image) = built_image() else { return };
    let emulator = start_emulator();
    let metadata = CloudRunMetadata::start();
    let container = Container::run(&image, &emulator, &metadata);

    serves_the_api(&container, &emulator);
    the_openai_client_works(&container);
    a_burst_stays_within_the_memory_limit(&container);
    sigterm_drains_requests_and_streams(&container, &emulator);

    let logs = container.logs();
    logs_are_json_on_stdout(&logs);
}

fn serves_the_api(container: &Container, emulator: &vertex_emulator::Emulator) {
    let base = &container.base_url;

    let index = request("GET", &format!("{base}/"), &[], b"");
    assert_eq!(index.status, 200, "GET /: {}", index.body);
    assert_eq!(index.json()["chat"], "/chat", "{}", index.body);

    let health = request("GET", &format!("{base}/health"), &[], b"");
    assert_eq!(health.status, 200, "GET /health: {}", health.body);

    let page = request("GET", &format!("{base}/"), &[("accept", "text/html")], b"");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
            && page.body.contains("/ui/app.js"),
        "GET / from a browser should be the chat page: {page:?}"
    );
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/markdown.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/docs", "text/html"),
        ("/openapi.json", "application/json"),
    ] {
        let r = request("GET", &format!("{base}{path}"), &[], b"");
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with(kind)),
            "GET {path}: content-type {:?}, expected {kind}",
            r.header("content-type")
        );
    }

    // /chat, answered through the metadata server's credentials and project.
    let chat = request(
        "POST",
        &format!("{base}/chat"),
        &[("content-type", "application/json")],
        br#"{"message": "How do I start learning Rust?"}"#,
    );
    assert_eq!(chat.status, 200, "POST /chat: {}", chat.body);
    let body = chat.json();
    assert!(
        body["persona_used"].as_str().is_some_and(|p| !p.is_empty())
            && body["content"]
                .as_str()
                .is_some_and(|c| c.contains("Vertex AI emulator")),
        "POST /chat: {body}"
    );
    let call = emulator.requests().pop().expect("the emulator saw /chat");
    assert_eq!(
        call.authorization.as_deref(),
        Some(format!("Bearer {METADATA_TOKEN}").as_str()),
        "the Vertex AI call should carry the metadata server's token"
    );
    assert!(
        call.path
            .contains(&format!("/projects/{METADATA_PROJECT}/")),
        "the project id should come from the metadata server: {}",
        call.path
    );

    // Streamed: meta, deltas, done.
    let mut stream = stream_chat(
        base,
        &serde_json::json!({"message": "Explain ownership briefly"}),
    );
    assert_eq!(stream.status, 200, "streamed /chat");
    let names: Vec<String> = stream.rest().into_iter().map(|e| e.name).collect();
    assert!(
        names.first().is_some_and(|n| n == "meta")
            && names.iter().any(|n| n == "delta")
            && names.last().is_some_and(|n| n == "done"),
        "streamed /chat: events {names:?}"
    );

    // OpenAI's route, plain and streamed.
    let completion = request(
        "POST",
        &format!("{base}/v1/chat/completions"),
        &[("content-type", "application/json")],
        br#"{"model": "ion-auto", "messages": [{"role": "user", "content": "Hello"}]}"#,
    );
    assert_eq!(completion.status, 200, "/v1: {}", completion.body);
    assert_eq!(completion.json()["object"], "chat.completion");
    let chunks = request(
        "POST",
        &format!("{base}/v1/chat/completions"),
        &[("content-type", "application/json")],
        br#"{"model": "ion-auto", "stream": true, "messages": [{"role": "user", "content": "Hello"}]}"#,
    );
    assert_eq!(chunks.status, 200, "/v1 streamed: {}", chunks.body);
    assert!(
        chunks.body.contains("chat.completion.chunk") && chunks.body.contains("data: [DONE]"),
        "/v1 streamed:\n{}",
        chunks.body
    );

    // Bad input is a clear 422 in the container too, in the original service's shape.
    let malformed = request(
        "POST",
        &format!("{base}/chat"),
        &[("content-type", "application/json")],
        b"{not json",
    );
    assert!(
        malformed.status == 422 && malformed.json()["detail"][0]["type"] == "json_invalid",
        "malformed JSON: {malformed:?}"
    );
}

fn the_openai_client_works(container: &Container) {
    if std::env::var_os("ION_TEST_PYTHON_VENV").is_none()
        && !workspace_root()
            .join("target/python-tests/bin/python")
            .exists()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the Python test tools are missing (scripts/test.sh installs them)"
        );
        eprintln!(
            "note: no Python test tools (./scripts/test.sh installs them); openai client skipped"
        );
        return;
    }
    let script = python::python_dir().join("openai_client.py");
    python::run_tool(
        "openai client against the container",
        "python",
        &[script.to_str().unwrap(), &container.base_url],
        &[],
    );
}

/// 1000 `/chat` requests from 32 clients at once: every one answered, and the process inside
/// the 512 MiB limit (not OOM-killed, its RSS below the limit) afterwards.
fn a_burst_stays_within_the_memory_limit(container: &Container) {
    const REQUESTS: usize = 1000;
    const CLIENTS: usize = 32;
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, failures) = (next.clone(), failures.clone());
            let url = format!("{}/chat", container.base_url);
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::SeqCst) < REQUESTS {
                    let r = request(
                        "POST",
                        &url,
                        &[("content-type", "application/json")],
                        br#"{"message": "burst"}"#,
                    );
                    if r.status != 200 {
                        failures.lock().unwrap().push((r.status, r.body));
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} burst requests failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    let state = container.state();
    assert_eq!(state["Running"], true, "after the burst: {state}");
    assert_eq!(state["OOMKilled"], false, "after the burst: {state}");
    let rss = container.rss_bytes();
    println!(
        "burst: {REQUESTS} /chat in {:.1} s; RSS afterwards {:.1} MiB (limit {MEMORY_LIMIT})",
        started.elapsed().as_secs_f64(),
        rss as f64 / 1048576.0
    );
    assert!(
        rss < MEMORY_LIMIT_BYTES,
        "RSS {rss} bytes after the burst, at or past the {MEMORY_LIMIT} limit"
    );
}

/// `podman stop -t 10` sends SIGTERM to PID 1 (ion-host), and SIGKILL 10 s later. A plain
/// `/chat` and a stream that are in flight when SIGTERM arrives both complete, and ion-host
/// exits 0 well before the SIGKILL.
fn sigterm_drains_requests_and_streams(
    container: &Container,
    emulator: &vertex_emulator::Emulator,
) {
    emulator.clear_requests();
    let url = format!("{}/chat", container.base_url);
    // ~2 s of answer, paced by the emulator: still streaming when SIGTERM arrives.
    let stream = {
        let base_url = container.base_url.clone();
        std::thread::spawn(move || {
            let body = serde_json::json!({"message": "Tell me about lifetimes [[emulator:chunk-delay=200]]"});
            let mut stream = stream_chat(&base_url, &body);
            (stream.status, stream.rest())
        })
    };
    let plain = std::thread::spawn(move || {
        request(
            "POST",
            &url,
            &[("content-type", "application/json")],
            br#"{"message": "And borrowing? [[emulator:chunk-delay=200]]"}"#,
        )
    });
    wait_for_upstream_requests(emulator, 2);

    let started = Instant::now();
    let stop = podman(&[
        "stop",
        "--time",
        &STOP_GRACE_SECS.to_string(),
        &container.name,
    ]);
    let took = started.elapsed();
    assert!(stop.status.success(), "podman stop: {stop:?}");

    let (status, events) = stream.join().unwrap();
    assert_eq!(status, 200, "the stream: {events:?}");
    assert!(
        events.last().is_some_and(|e| e.name == "done") && events.iter().all(|e| e.name != "error"),
        "a stream in flight at SIGTERM should finish with its `done` event: {events:?}"
    );
    let plain = plain.join().unwrap();
    assert_eq!(
        plain.status, 200,
        "the plain /chat in flight: {}",
        plain.body
    );

    let state = container.state();
    assert_eq!(
        state["ExitCode"], 0,
        "ion-host should exit 0 after SIGTERM (137 means SIGKILL at the end of the grace): {state}"
    );
    assert!(
        took < Duration::from_secs(STOP_GRACE_SECS),
        "the container took {took:?} to stop: the grace ran out"
    );
    println!(
        "SIGTERM → exit 0 in {:.2} s with a stream in flight",
        took.as_secs_f64()
    );
}

/// Cloud Logging reads stdout: one JSON object per line, each with a severity, the served
/// requests among them. The readiness line is the one plain line.
fn logs_are_json_on_stdout(logs: &Output) {
    let stdout = String::from_utf8_lossy(&logs.stdout);
    let entries: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|line| !line.starts_with("ion-host listening on "))
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
            assert!(
                entry["severity"].is_string(),
                "log entry without severity: {line}"
            );
            entry
        })
        .collect();
    for route in ["/chat", "/v1/chat/completions"] {
        assert!(
            entries.iter().any(|e| e["httpRequest"]["requestUrl"]
                .as_str()
                .is_some_and(|u| u.ends_with(route))),
            "no request log entry for {route} on stdout"
        );
    }
}
