//! ion-host as it runs on Cloud Run: precompiled components, graceful shutdown, limits,
//! structured logs and host-side credentials, over real processes and HTTP.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::serial;
use crate::common::*;
use serde_json::Value;

fn compile(output: &std::path::Path) {
    let status = Command::new(host_binary())
        .arg("compile")
        .arg(component_wasm())
        .arg("-o")
        .arg(output)
        .status()
        .unwrap();
    assert!(status.success(), "ion-host compile failed");
}

#[test]
fn precompiled_component_is_served_and_a_bad_one_refused() {
    let dir = TempDir::new();
    let cwasm = dir.path().join("ion_mentoring.cwasm");
    compile(&cwasm);
    assert!(std::fs::metadata(&cwasm).unwrap().len() > 0);

    let emulator = start_emulator();
    let service = Service::start_host(
        &["--component", cwasm.to_str().unwrap()],
        &emulator_env(&emulator),
    );
    assert_eq!(service.get("/health").status, 200);
    assert_eq!(service.ask("어떻게 해야 하나요?").status, 200);
    drop(service);

    // A damaged precompiled file is refused at startup with a clear message.
    let mut bytes = std::fs::read(&cwasm).unwrap();
    let cut = bytes.len() / 2;
    bytes.truncate(cut);
    let broken = dir.path().join("broken.cwasm");
    std::fs::write(&broken, bytes).unwrap();
    let err = host_fails(
        &[
            "--listen",
            "127.0.0.1:0",
            "--component",
            broken.to_str().unwrap(),
        ],
        &[],
    );
    assert!(err.contains("broken.cwasm"), "{err}");
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let emulator = start_emulator();
    let env = emulator_env_with(&emulator, &[("SPIN_VARIABLE_REQUEST_TIMEOUT_MS", "10000")]);
    let mut service = Service::start_host(&["--shutdown-grace-ms", "5000"], &env);
    let url = service.url("/chat");
    let slow = std::thread::spawn(move || {
        request(
            "POST",
            &url,
            &[("content-type", "application/json")],
            br#"{"message": "slow one [[emulator:slow=1500]]"}"#,
        )
    });
    // Let the request reach the emulator, then ask the host to stop.
    wait_for_upstream_requests(&emulator, 1);
    service.terminate();
    let reply = slow.join().unwrap();
    assert_eq!(
        reply.status, 200,
        "the in-flight request completes: {}",
        reply.body
    );
    let status = service
        .wait_exit(Duration::from_secs(10))
        .expect("ion-host exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(service.base_url.trim_start_matches("http://")).is_err(),
        "no longer accepting"
    );
}

#[test]
fn in_flight_limit_sheds_load_with_503_and_retry_after() {
    let emulator = start_emulator();
    let service = Service::start_host(
        &["--max-concurrent-requests", "1"],
        &emulator_env(&emulator),
    );
    let url = service.url("/chat");
    let slow = std::thread::spawn(move || {
        request(
            "POST",
            &url,
            &[("content-type", "application/json")],
            br#"{"message": "[[emulator:slow=1000]]"}"#,
        )
    });
    wait_for_upstream_requests(&emulator, 1);
    let shed = service.get("/");
    assert_eq!(shed.status, 503, "{}", shed.body);
    let retry_after: u64 = shed
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert_eq!(shed.json()["code"], "overloaded");
    // Liveness has a reserve of its own: a full instance is not a dead one.
    assert_eq!(service.get("/health").status, 200, "/health at the cap");
    assert_eq!(slow.join().unwrap().status, 200);
    assert_eq!(service.get("/").status, 200, "capacity is back");
}

/// A client that sends its next request as soon as it has read an answer is never refused for
/// the slot of its own previous request, which the instance may still be giving back. One
/// keep-alive connection, each request written the moment the last answer's last byte is read;
/// answers from the component alone (a 422, `/`) are the quickest to follow.
#[test]
fn back_to_back_requests_at_the_limit_are_not_refused() {
    let emulator = start_emulator();
    let service = Service::start_host(
        &["--max-concurrent-requests", "1"],
        &emulator_env(&emulator),
    );
    let mut stream = TcpStream::connect(service.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let requests = [
        (
            "POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{not json",
            422,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n",
            200,
        ),
        (
            "POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"message\": \"hi\"}",
            200,
        ),
    ];
    for i in 0..600 {
        let (request, expected) = requests[i % requests.len()];
        stream.write_all(request.as_bytes()).unwrap();
        let (status, _, body) = read_raw_response(&mut stream)
            .unwrap_or_else(|| panic!("request {i}: the connection closed"));
        assert_eq!(status, expected, "request {i}: {body}");
    }
}

#[test]
fn body_size_deadline_and_memory_limits() {
    let _timed = serial::timed();
    let emulator = start_emulator();
    let env = emulator_env_with(&emulator, &[("SPIN_VARIABLE_REQUEST_TIMEOUT_MS", "10000")]);
    let service = Service::start_host(
        &["--max-body-bytes", "200", "--request-timeout-ms", "700"],
        &env,
    );
    let big = format!(r#"{{"message": "{}"}}"#, "a".repeat(300));
    let reply = service.chat(&big);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.json()["code"], "payload_too_large");

    let started = Instant::now();
    let reply = service.ask("[[emulator:slow=3000]]");
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.json()["code"], "deadline_exceeded");
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "cut at the host deadline"
    );
    assert_eq!(
        service.ask("정상 요청").status,
        200,
        "the server keeps serving"
    );
    drop(service);

    // A memory limit below what the component needs is a startup error, not a request error.
    let wasm = component_wasm();
    let err = host_fails(
        &[
            "--listen",
            "127.0.0.1:0",
            "--max-memory-mib",
            "1",
            "--component",
            wasm.to_str().unwrap(),
        ],
        &[],
    );
    assert!(err.contains("exceeds the limit"), "{err}");
}

#[test]
fn logs_are_cloud_logging_json_with_trace_and_request_id() {
    let emulator = start_emulator();
    let service = Service::start_host(&[], &emulator_env(&emulator));
    let secret_message = "내 비밀 질문은 무엇일까요?";
    let reply = request(
        "POST",
        &service.url("/chat"),
        &[
            ("content-type", "application/json"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("user-agent", "e2e-agent"),
        ],
        serde_json::json!({ "message": secret_message })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(reply.status, 200);
    let request_id = reply
        .header("x-request-id")
        .expect("x-request-id")
        .to_owned();
    // A failed chat: the component logs it under the request's id.
    let failed = service.ask("[[emulator:503]]");
    assert_eq!(failed.status, 502);
    let failed_id = failed.header("x-request-id").unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(200));

    let entries: Vec<Value> = service
        .stdout_lines()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert!(!entries.is_empty(), "stdout carries JSON log lines");
    let access = entries
        .iter()
        .find(|e| {
            e["httpRequest"]["status"] == 200
                && e["logging.googleapis.com/labels"]["request_id"] == request_id.as_str()
        })
        .expect("an access entry for the chat request");
    assert_eq!(access["severity"], "INFO");
    assert_eq!(access["httpRequest"]["requestMethod"], "POST");
    assert_eq!(access["httpRequest"]["userAgent"], "e2e-agent");
    assert!(
        access["httpRequest"]["latency"]
            .as_str()
            .unwrap()
            .ends_with('s')
    );
    assert_eq!(
        access["logging.googleapis.com/trace"],
        "projects/e2e-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(access["logging.googleapis.com/spanId"], "00f067aa0ba902b7");

    // The component's per-chat line carries the outcome under the same request id.
    let guest = entries
        .iter()
        .find(|e| {
            e["logging.googleapis.com/labels"]["request_id"] == failed_id.as_str()
                && e.get("httpRequest").is_none()
        })
        .expect("the guest's chat line");
    let chat = match guest.get("chat") {
        Some(chat) => chat.clone(),
        None => serde_json::from_str::<Value>(guest["message"].as_str().unwrap()).unwrap()["chat"]
            .clone(),
    };
    assert_eq!(chat["status"], 502, "{guest}");
    assert_eq!(chat["outcome"], "upstream_error");
    let failed_access = entries
        .iter()
        .find(|e| {
            e["logging.googleapis.com/labels"]["request_id"] == failed_id.as_str()
                && e.get("httpRequest").is_some()
        })
        .unwrap();
    assert_eq!(failed_access["severity"], "ERROR", "5xx are errors");

    let all = service.stdout_lines().join("\n");
    assert!(
        !all.contains(secret_message),
        "message bodies stay out of the logs"
    );
    assert!(!all.contains(TOKEN), "tokens stay out of the logs");
}

#[test]
fn runtime_credentials_come_from_the_host_not_the_component() {
    let emulator = start_emulator();
    // A static token in runtime mode: the host adds it; a 401 makes it try once more.
    let env = emulator_env_with(&emulator, &[("SPIN_VARIABLE_CREDENTIALS", "runtime")]);
    let service = Service::start_host(&[], &env);
    let reply = service.ask("hello");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sent = emulator.requests();
    assert_eq!(
        sent.last().unwrap().authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let before = emulator.requests().len();
    let reply = service.ask("[[emulator:401]]");
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["code"], "upstream_auth_failed");
    assert_eq!(
        emulator.requests().len(),
        before + 2,
        "one refresh-and-retry after a 401"
    );
    drop(service);

    // Application Default Credentials from the metadata server, project id included.
    let metadata = FakeMetadata::start("metadata-token", "metadata-project");
    let home = TempDir::new();
    let env = vec![
        (
            "SPIN_VARIABLE_CREDENTIALS".to_string(),
            "runtime".to_string(),
        ),
        ("SPIN_VARIABLE_VERTEX_ENDPOINT".to_string(), emulator.url()),
        ("GCE_METADATA_HOST".to_string(), metadata.host.clone()),
        ("HOME".to_string(), home.path().display().to_string()),
    ];
    let service = Service::start_host(&[], &env);
    for _ in 0..3 {
        assert_eq!(service.ask("hello").status, 200);
    }
    let sent = emulator.requests();
    let last = sent.last().unwrap();
    assert_eq!(last.authorization.as_deref(), Some("Bearer metadata-token"));
    assert!(
        last.path.contains("/projects/metadata-project/"),
        "{}",
        last.path
    );
    assert_eq!(
        metadata
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the token is cached across requests"
    );
}

#[test]
fn a_client_that_hangs_up_cancels_its_request() {
    let _timed = serial::timed();
    let emulator = start_emulator();
    let env = emulator_env_with(&emulator, &[("SPIN_VARIABLE_REQUEST_TIMEOUT_MS", "10000")]);
    let service = Service::start_host(&[], &env);
    let body = r#"{"message": "[[emulator:slow=5000]]"}"#;
    let mut stream =
        std::net::TcpStream::connect(service.base_url.trim_start_matches("http://")).unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!(
            "POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    wait_for_upstream_requests(&emulator, 1);
    drop(stream);

    // The request ends as 499 long before the upstream's 5 s, i.e. it was not waited for.
    let hung_up = Instant::now();
    let logged = loop {
        let entry = service.stdout_lines().iter().find_map(|line| {
            let entry: Value = serde_json::from_str(line).ok()?;
            (entry["httpRequest"]["status"] == 499).then_some(entry)
        });
        if entry.is_some() || hung_up.elapsed() > Duration::from_secs(4) {
            break entry;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let entry = logged.expect("a 499 entry for the abandoned request");
    assert_eq!(entry["httpRequest"]["requestUrl"], "/chat");
    assert_eq!(service.ask("다음 요청").status, 200);
}

#[test]
fn key_value_configuration_errors_stop_startup() {
    let dir = TempDir::new();
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        "[key_value_store.default]\ntype = \"azure_cosmos\"\naccount = \"x\"\n",
    )
    .unwrap();
    let err = host_fails(&["--runtime-config-file", config.to_str().unwrap()], &[]);
    assert!(
        err.contains("runtime-config.toml")
            && err.contains("[key_value_store.default]")
            && err.contains("\"azure_cosmos\" is not supported"),
        "{err}"
    );

    let err = host_fails(
        &[],
        &[(
            "ION_RUNTIME_CONFIG",
            r#"key_value_store.default = { type = "redis", url = "redis://h:1", pool = 3 }"#,
        )],
    );
    assert!(
        err.contains("ION_RUNTIME_CONFIG") && err.contains("unknown field `pool`"),
        "{err}"
    );

    // A state directory that cannot be created (its parent is a file).
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let state = file.join("state");
    let wasm = component_wasm();
    let err = host_fails(
        &[
            "--listen",
            "127.0.0.1:0",
            "--component",
            wasm.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        err.contains(state.to_str().unwrap()) && err.contains("--state-dir"),
        "{err}"
    );
}

#[test]
fn the_embedded_store_file_is_locked_and_released_on_sigterm() {
    let state = TempDir::new();
    let state_dir = state.path().to_str().unwrap().to_owned();
    let mut first = Service::start_host(&["--state-dir", &state_dir], &[]);
    assert!(state.path().join("ion_key_value.redb").is_file());

    // A second ion-host on the same file is refused, naming the file and the flag.
    let wasm = component_wasm();
    let err = host_fails(
        &[
            "--listen",
            "127.0.0.1:0",
            "--component",
            wasm.to_str().unwrap(),
            "--state-dir",
            &state_dir,
        ],
        &[],
    );
    assert!(
        err.contains("ion_key_value.redb")
            && err.contains("already open in another process")
            && err.contains("--state-dir"),
        "{err}"
    );

    // After SIGTERM the file is closed: the next ion-host opens it.
    first.terminate();
    let status = first
        .wait_exit(Duration::from_secs(10))
        .expect("ion-host exits");
    assert_eq!(status.code(), Some(0));
    let second = Service::start_host(&["--state-dir", &state_dir], &[]);
    assert_eq!(second.get("/health").status, 200);
}

#[test]
fn starts_and_serves_while_redis_is_down() {
    // Nothing listens on this port: the store is unavailable, ion-host serves all the same.
    let url = format!("redis://127.0.0.1:{}", free_port());
    let config = format!(r#"key_value_store.default = {{ type = "redis", url = "{url}" }}"#);
    let service = Service::start_host(&[], &[("ION_RUNTIME_CONFIG".to_owned(), config)]);
    assert_eq!(service.get("/health").status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = service.stdout_lines();
        if lines
            .iter()
            .any(|l| l.contains("key-value store 'default' unavailable"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no unavailable warning: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
