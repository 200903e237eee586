//! ion-host against hostile and clumsy clients, over raw loopback sockets: slow and idle
//! connections, slow uploads, oversized bodies, bad header bytes, malformed requests, accept
//! failures and shutdown with such connections open. Every wait is bounded; timeouts are set
//! small and checked with generous margins.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::serial;
use crate::common::*;
use serde_json::Value;

/// Longest any test waits for the server to act on a timeout of a second or two.
const PATIENCE: Duration = Duration::from_secs(15);

fn connect(service: &Service) -> TcpStream {
    let stream = TcpStream::connect(service.addr()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Waits until the server closes `stream` (EOF or reset); false if still open after PATIENCE.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return true,
        }
    }
    false
}

fn assert_json_error(status: u16, body: &str, code: &str) {
    let json: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    assert_eq!(json["status_code"], status, "{body}");
    assert_eq!(json["code"], code, "{body}");
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[test]
fn slow_heads_and_idle_connections_are_closed_on_their_own_timeouts() {
    let _timed = serial::timed();
    let emulator = start_emulator();
    let service = Service::start_host(
        &[
            "--header-read-timeout-ms",
            "1000",
            "--idle-timeout-ms",
            "4000",
        ],
        &emulator_env(&emulator),
    );

    // Slowloris: a head that never ends, one byte at a time.
    let mut slow = connect(&service);
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < PATIENCE {
        let mut buf = [0u8; 256];
        match slow.read(&mut buf) {
            Ok(0) => closed = true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => closed = true,
        }
        if closed || slow.write_all(b"X").is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "a head sent one byte at a time is cut off");
    eprintln!("slowloris closed after {:?}", started.elapsed());

    // A connection that never sends anything, and a half-sent request line.
    let mut silent = connect(&service);
    let mut half = connect(&service);
    half.write_all(b"GET /hea").unwrap();
    assert!(
        closed_by_server(&mut silent),
        "a silent connection is closed"
    );
    assert!(
        closed_by_server(&mut half),
        "a half-sent request line is closed"
    );

    // Keep-alive: idle longer than the head timeout is fine; idle past the idle timeout is not.
    let mut idle = connect(&service);
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_raw_response(&mut idle).unwrap().0, 200);
    std::thread::sleep(Duration::from_millis(2000));
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_raw_response(&mut idle);
    assert_eq!(
        reply.map(|r| r.0),
        Some(200),
        "an idle keep-alive connection outlives the head timeout"
    );
    let idle_since = Instant::now();
    assert!(closed_by_server(&mut idle), "an idle connection is closed");
    eprintln!("idle keep-alive closed after {:?}", idle_since.elapsed());

    assert_eq!(
        service.get("/health").status,
        200,
        "the server keeps serving"
    );
}

#[test]
fn a_body_that_does_not_arrive_in_time_gets_408() {
    let emulator = start_emulator();
    let service = Service::start_host(
        &["--body-read-timeout-ms", "1000"],
        &emulator_env(&emulator),
    );
    let mut stream = connect(&service);
    stream
        .write_all(
            b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mess",
        )
        .unwrap();
    let (status, head, body) =
        read_raw_response(&mut stream).expect("an answer before the client gives up");
    assert_eq!(status, 408, "{head}{body}");
    assert_json_error(408, &body, "request_timeout");
    assert!(closed_by_server(&mut stream), "then the connection closes");
}

#[test]
fn slow_uploads_hold_no_instance_slot() {
    let emulator = start_emulator();
    let service = Service::start_host(
        &["--max-concurrent-requests", "2"],
        &emulator_env(&emulator),
    );
    // More slow uploaders than slots, each stalled mid-body.
    let mut uploaders = Vec::new();
    for _ in 0..5 {
        let mut stream = connect(&service);
        stream
            .write_all(
                b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mess",
            )
            .unwrap();
        uploaders.push(stream);
    }
    std::thread::sleep(Duration::from_millis(300));
    let health = service.get("/health");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(service.ask("느린 업로드가 있어도").status, 200);

    // The stalled uploads are served once their bytes arrive (one at a time: two slots).
    let rest = br#"age": "hello"}"#;
    let padding = vec![b' '; 100 - 6 - rest.len()];
    for stream in &mut uploaders {
        stream.write_all(rest).unwrap();
        stream.write_all(&padding).unwrap();
        let (status, _, body) = read_raw_response(stream).expect("an answer");
        assert_eq!(status, 200, "{body}");
    }
}

#[test]
fn bodies_being_read_share_a_bounded_memory_budget() {
    let emulator = start_emulator();
    let service = Service::start_host(
        &[
            "--max-body-bytes",
            "1000",
            "--max-buffered-body-bytes",
            "2500",
            "--body-read-timeout-ms",
            "20000",
        ],
        &emulator_env(&emulator),
    );
    // The budget holds what has arrived: each of these sends all but the last byte.
    let head = b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    let almost = vec![b' '; 999];
    let mut holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect(&service);
            stream.write_all(head).unwrap();
            stream.write_all(&almost).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = connect(&service);
    third.write_all(head).unwrap();
    third.write_all(&almost).unwrap();
    let (status, head_text, body) = read_raw_response(&mut third).expect("an answer");
    assert_eq!(status, 503, "{head_text}{body}");
    assert_json_error(503, &body, "overloaded");
    assert_eq!(
        header_value(&head_text, "retry-after"),
        Some("20"),
        "a body being read gives its share back within the body timeout: {head_text}"
    );
    // Small bodies still fit beside them, and the budget comes back when the holders go.
    assert_eq!(service.ask("작은 요청").status, 200);
    holders.clear();
    std::thread::sleep(Duration::from_millis(300));
    let big = format!(r#"{{"message": "{}"}}"#, "a".repeat(900));
    assert_eq!(service.chat(&big).status, 200);
}

/// Writes a whole request then reads, as Python's http.client and curl (without `Expect`) do;
/// returns the status read, or None if writing or reading failed.
fn write_all_then_read(service: &Service, head: &[u8], body: &[u8]) -> Option<u16> {
    let mut stream = connect(service);
    stream.write_all(head).ok()?;
    stream.write_all(body).ok()?;
    read_raw_response(&mut stream).map(|r| r.0)
}

#[test]
fn a_413_reaches_clients_that_write_the_whole_body_before_reading() {
    let emulator = start_emulator();
    let service = Service::start_host(&["--max-body-bytes", "1024"], &emulator_env(&emulator));
    // Far more than the kernel buffers on both sides hold: the server must read it.
    let body = vec![b'a'; 20 * 1024 * 1024];

    let announced = format!(
        "POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let tries = 30;
    let read = (0..tries)
        .filter(|_| write_all_then_read(&service, announced.as_bytes(), &body) == Some(413))
        .count();
    eprintln!("413 for an announced oversized body read {read}/{tries}");
    assert_eq!(read, tries, "every client reads the 413");

    // A chunked body that turns out too large.
    let chunked_head = b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(&body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let tries = 10;
    let read = (0..tries)
        .filter(|_| write_all_then_read(&service, chunked_head, &chunked) == Some(413))
        .count();
    eprintln!("413 for a chunked oversized body read {read}/{tries}");
    assert_eq!(read, tries, "every client reads the 413");
    assert_eq!(service.get("/health").status, 200);
}

#[test]
fn bad_bytes_in_headers_get_a_json_400() {
    let emulator = start_emulator();
    let service = Service::start_host(&[], &emulator_env(&emulator));
    for (request, code) in [
        (
            &b"GET /health HTTP/1.1\r\nHost: h\xffst\r\n\r\n"[..],
            "invalid_header",
        ),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Name: caf\xe9\r\n\r\n",
            "invalid_header",
        ),
        (b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n", "invalid_host"),
    ] {
        let mut stream = connect(&service);
        stream.write_all(request).unwrap();
        let (status, head, body) = read_raw_response(&mut stream).expect("an answer");
        assert_eq!(
            status,
            400,
            "{}: {head}{body}",
            String::from_utf8_lossy(request)
        );
        assert_json_error(400, &body, code);
    }
}

#[test]
fn protocol_errors_get_json_bodies() {
    let emulator = start_emulator();
    let service = Service::start_host(&[], &emulator_env(&emulator));
    let many_headers: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_header = format!("X-Big: {}\r\n", "a".repeat(70 * 1024));
    let cases: Vec<(String, u16, &str)> =
        vec![
        ("GARBAGE\r\n\r\n".into(), 400, "bad_request"),
        ("GET /health HTTP/9.9\r\nHost: x\r\n\r\n".into(), 400, "bad_request"),
        ("GET /health HTTP/1.1\r\nBad Header\r\n\r\n".into(), 400, "bad_request"),
        (
            "POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".into(),
            400,
            "bad_request",
        ),
        (
            "POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"
                .into(),
            400,
            "bad_request",
        ),
        (
            "POST /chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".into(),
            400,
            "bad_request",
        ),
        (
            format!("GET /health HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"),
            431,
            "headers_too_large",
        ),
        (
            format!("GET /health HTTP/1.1\r\nHost: x\r\n{huge_header}\r\n"),
            431,
            "headers_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let shown: String = request.chars().take(60).collect();
        let mut stream = connect(&service);
        // The server may answer and close before a huge head is fully sent.
        let _ = stream.write_all(request.as_bytes());
        let (got, head, body) =
            read_raw_response(&mut stream).unwrap_or_else(|| panic!("no answer to {shown:?}"));
        assert_eq!(got, status, "{shown:?}: {head}{body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        assert_json_error(status, &body, code);
    }

    // A bad request after a good one on the same connection is answered the same way.
    let mut stream = connect(&service);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_raw_response(&mut stream).unwrap().0, 200);
    stream.write_all(b"GARBAGE\r\n\r\n").unwrap();
    let (status, _, body) = read_raw_response(&mut stream).expect("an answer");
    assert_eq!(status, 400);
    assert_json_error(400, &body, "bad_request");
    assert_eq!(service.get("/health").status, 200);
}

#[test]
fn accept_failures_back_off_and_are_logged_at_a_bounded_rate() {
    let emulator = start_emulator();
    let service = Service::start_host(
        &["--header-read-timeout-ms", "2000"],
        &emulator_env(&emulator),
    );
    // Leave the process a handful of spare file descriptors, then use them all up.
    let open = std::fs::read_dir(format!("/proc/{}/fd", service.pid()))
        .unwrap()
        .count();
    let limit = open + 4;
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(service.pid().to_string())
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success());
    let started = Instant::now();
    let squatters: Vec<TcpStream> = (0..8).map(|_| connect(&service)).collect();

    // While the squatters hold every descriptor, accepting fails; once the head timeout
    // closes them, the server accepts again.
    let health = service.get("/health");
    let window = started.elapsed();
    assert_eq!(health.status, 200, "{}", health.body);
    drop(squatters);
    let failures: Vec<String> = service
        .stdout_lines()
        .into_iter()
        .filter(|l| l.contains("accept failed"))
        .collect();
    eprintln!(
        "{} accept-failure log lines in {window:?}: {failures:#?}",
        failures.len()
    );
    assert!(!failures.is_empty(), "the failures are logged");
    assert!(
        failures.len() as f64 <= window.as_secs_f64() + 2.0,
        "at most about one line a second"
    );
    assert!(
        failures.iter().any(|l| l.contains("Too many open files")),
        "{failures:?}"
    );
}

#[test]
fn sigterm_closes_idle_connections_at_once_and_drains_requests() {
    let emulator = start_emulator();
    let mut env = emulator_env(&emulator);
    env.retain(|(key, _)| key != "SPIN_VARIABLE_REQUEST_TIMEOUT_MS");
    env.push(("SPIN_VARIABLE_REQUEST_TIMEOUT_MS".into(), "10000".into()));
    let mut service = Service::start_host(&["--shutdown-grace-ms", "60000"], &env);

    let mut idle = connect(&service);
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_raw_response(&mut idle).unwrap().0, 200);
    let mut half = connect(&service);
    half.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
    let url = service.url("/chat");
    let slow = std::thread::spawn(move || {
        request(
            "POST",
            &url,
            &[("content-type", "application/json")],
            br#"{"message": "slow one [[emulator:slow=2000]]"}"#,
        )
    });
    wait_for_upstream_requests(&emulator, 1);

    let terminated = Instant::now();
    service.terminate();
    assert!(closed_by_server(&mut idle), "the idle connection closes");
    assert!(closed_by_server(&mut half), "the half-sent head closes");
    let reply = slow.join().unwrap();
    assert_eq!(
        reply.status, 200,
        "the request in flight completes: {}",
        reply.body
    );
    let status = service
        .wait_exit(Duration::from_secs(30))
        .expect("ion-host exits long before the 60 s grace period");
    assert_eq!(status.code(), Some(0));
    eprintln!("exited {:?} after SIGTERM", terminated.elapsed());
}

/// Variables for a service wired to `emulator`, with the component's own upstream deadline set
/// to `timeout_ms` (long enough for the paced streams of these tests).
fn env_with_upstream_timeout(emulator: &Emulator, timeout_ms: u64) -> Vec<(String, String)> {
    let mut env = emulator_env(emulator);
    env.retain(|(key, _)| key != "SPIN_VARIABLE_REQUEST_TIMEOUT_MS");
    env.push((
        "SPIN_VARIABLE_REQUEST_TIMEOUT_MS".into(),
        timeout_ms.to_string(),
    ));
    env
}

/// Sends `POST path` with a JSON body and extra header lines, and reads the response head.
/// Returns the socket (for the rest of the body), the status, the head, and any body bytes
/// read along with the head. None if the connection closed first.
fn post_and_read_head(
    service: &Service,
    path: &str,
    extra_headers: &str,
    body: &str,
) -> Option<(TcpStream, u16, String, Vec<u8>)> {
    let mut stream = connect(service);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((stream, status, head, data[head_end..].to_vec()))
}

/// A streamed `/chat` request for `message`: the socket and the status of its answer.
fn open_chat_stream(service: &Service, message: &str) -> Option<(TcpStream, u16, String)> {
    let body = serde_json::json!({ "message": message, "stream": true }).to_string();
    post_and_read_head(service, "/chat", "", &body).map(|(s, status, head, _)| (s, status, head))
}

/// Reads what is left until the server ends the response (a chunked body's last chunk, or
/// the connection closing), within PATIENCE.
fn read_rest(stream: &mut TcpStream, mut data: Vec<u8>) -> String {
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline && !data.ends_with(b"\r\n0\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The per-chat log lines ion-host printed.
fn chat_lines(service: &Service) -> Vec<Value> {
    service
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "chat")
        .collect()
}

#[test]
fn streams_beyond_the_cap_get_503_and_health_never_fails() {
    let emulator = start_emulator();
    let service = Service::start_host(
        &["--max-concurrent-requests", "4"],
        &env_with_upstream_timeout(&emulator, 10_000),
    );
    // Three times the cap: the surplus would exhaust the instance pool (the cap plus a few
    // slots for /health) if streams gave their slot back at their first byte.
    let mut streams = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let message = format!("긴 스트림 {i} [[emulator:chunk-delay=3000]]");
        let (stream, status, head) = open_chat_stream(&service, &message).expect("an answer");
        if status != 200 {
            assert_eq!(status, 503, "stream {i}: {head}");
        }
        statuses.push(status);
        streams.push(stream);
    }
    let open = statuses.iter().filter(|s| **s == 200).count();
    eprintln!("stream statuses at cap 4: {statuses:?}");
    assert_eq!(open, 4, "streams hold their slot: {statuses:?}");

    // While they run: requests beyond the cap get an honest 503, /health is always answered.
    for _ in 0..5 {
        let health = service.get("/health");
        assert_eq!(health.status, 200, "{}", health.body);
    }
    let refused = service.ask("가득 찼을 때");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_json_error(503, &refused.body, "overloaded");
    // Streams that have run 2 s and more are not about to end within the second.
    std::thread::sleep(Duration::from_secs(2));
    let refused = service.ask("조금 뒤에");
    assert_eq!(refused.status, 503, "{}", refused.body);
    let retry_after: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    eprintln!("Retry-After with four streams 2 s old: {retry_after}");
    assert!(
        (2..=120).contains(&retry_after),
        "not understated, never past the deadline: {retry_after}"
    );

    // Once the streams end, their slots are free again.
    drop(streams);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = service.ask("다 끝난 뒤");
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert!(Instant::now() < deadline, "the slots come back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn idle_uploads_hold_no_body_memory_and_the_body_limit_is_the_components() {
    let _timed = serial::timed();
    let emulator = start_emulator();
    let service = Service::start_host(
        &[
            "--max-buffered-body-bytes",
            "1048576",
            "--body-read-timeout-ms",
            "3000",
        ],
        &emulator_env(&emulator),
    );
    // The default limit is the component's own 128 KiB: more is refused before it is sent.
    let started = Instant::now();
    let mut oversized = connect(&service);
    oversized
        .write_all(
            b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 131073\r\n\r\n",
        )
        .unwrap();
    let (status, head, body) = read_raw_response(&mut oversized).expect("an answer");
    assert_eq!(status, 413, "{head}{body}");
    assert_json_error(413, &body, "payload_too_large");
    assert!(started.elapsed() < Duration::from_secs(2), "at once");

    // Twenty clients announce the largest body and send none: eight of them would fill a
    // budget reserved up front.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = connect(&service);
            stream
                .write_all(
                    b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 131072\r\n\r\n",
                )
                .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..3 {
        let reply = service.ask(&format!("빈 업로드 옆에서 {i}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // Each idle upload still gets its 408 on time.
    for mut stream in idle {
        let (status, _, body) = read_raw_response(&mut stream).expect("an answer");
        assert_eq!(status, 408, "{body}");
    }
}

#[test]
fn clients_that_stop_reading_lose_their_connection_after_the_send_timeout() {
    let _timed = serial::timed();
    let emulator = start_emulator();
    let service = Service::start_host(&["--send-timeout-ms", "1000"], &emulator_env(&emulator));
    let open = std::fs::read_dir(format!("/proc/{}/fd", service.pid()))
        .unwrap()
        .count();
    let limit = open + 24;
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(service.pid().to_string())
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success());

    // Clients that ask for far more than the socket buffers hold and never read: their
    // connections fill every descriptor the server has.
    let requests = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(400);
    let readers_that_stopped: Vec<TcpStream> = (0..30)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(service.addr()).ok()?;
            stream
                .set_write_timeout(Some(Duration::from_secs(2)))
                .ok()?;
            let _ = stream.write_all(requests.as_bytes());
            Some(stream)
        })
        .collect();

    // /health is answered, five times of five, while they hold on.
    let started = Instant::now();
    for i in 0..5 {
        let mut probe = connect(&service);
        probe
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let reply = read_raw_response(&mut probe);
        assert_eq!(
            reply.as_ref().map(|r| r.0),
            Some(200),
            "/health try {i} after {:?}",
            started.elapsed()
        );
    }
    eprintln!("5/5 /health answered within {:?}", started.elapsed());
    // The server lets go of every one of them, while they still hold on.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now_open = std::fs::read_dir(format!("/proc/{}/fd", service.pid()))
            .unwrap()
            .count();
        if now_open <= open + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{now_open} descriptors open, {open} before the clients came"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(readers_that_stopped);
}

#[test]
fn a_client_gets_its_share_of_requests_in_progress() {
    let emulator = start_emulator();
    let service = Service::start_host(
        &[
            "--trusted-proxy-hops",
            "1",
            "--max-requests-per-client",
            "2",
        ],
        &env_with_upstream_timeout(&emulator, 10_000),
    );
    let greedy = "X-Forwarded-For: 203.0.113.7\r\n";
    let body = |i: usize| {
        serde_json::json!({ "message": format!("욕심 {i} [[emulator:chunk-delay=1500]]"), "stream": true })
            .to_string()
    };
    let held: Vec<TcpStream> = (0..2)
        .map(|i| {
            let (stream, status, head, _) =
                post_and_read_head(&service, "/chat", greedy, &body(i)).expect("an answer");
            assert_eq!(status, 200, "{head}");
            stream
        })
        .collect();
    let (mut third, status, head, rest) =
        post_and_read_head(&service, "/chat", greedy, &body(2)).expect("an answer");
    assert_eq!(status, 429, "{head}");
    let body_text = read_rest(&mut third, rest);
    assert!(body_text.contains("too_many_in_progress"), "{body_text}");
    assert!(header_value(&head, "retry-after").is_some(), "{head}");
    assert_eq!(header_value(&head, "connection"), Some("close"), "{head}");

    // Other clients, and /health from this one, are not held back.
    let other = request(
        "POST",
        &service.url("/chat"),
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", "198.51.100.4"),
        ],
        r#"{"message": "다른 사람"}"#.as_bytes(),
    );
    assert_eq!(other.status, 200, "{}", other.body);
    let health = request(
        "GET",
        &service.url("/health"),
        &[("x-forwarded-for", "203.0.113.7")],
        b"",
    );
    assert_eq!(health.status, 200);
    drop(held);
}

#[test]
fn a_stream_past_the_request_deadline_ends_with_an_error_event_and_its_log_line() {
    let emulator = start_emulator();
    let service = Service::start_host(
        &["--request-timeout-ms", "3000"],
        &env_with_upstream_timeout(&emulator, 20_000),
    );
    // /chat: the first chunk comes at once, the next ones 2.5 s apart: the deadline falls in
    // a pause.
    let mut stream =
        service.stream(&serde_json::json!({"message": "마감 [[emulator:chunk-delay=2500]]"}));
    assert_eq!(stream.status, 200);
    let events = stream.rest();
    let last = events.last().expect("events before the deadline");
    assert_eq!(last.name, "error", "{events:?}");
    assert_eq!(last.data["code"], "deadline_exceeded", "{events:?}");
    assert!(events.iter().all(|e| e.name != "done"), "{events:?}");

    // /v1: an error chunk in OpenAI's shape, and no [DONE].
    let body = serde_json::json!({
        "model": "ion-auto",
        "stream": true,
        "messages": [{ "role": "user", "content": "마감 v1 [[emulator:chunk-delay=2500]]" }],
    })
    .to_string();
    let (mut stream, status, head, rest) =
        post_and_read_head(&service, "/v1/chat/completions", "", &body).expect("an answer");
    assert_eq!(status, 200, "{head}");
    let text = read_rest(&mut stream, rest);
    let error = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|d| d.get("error").is_some())
        .unwrap_or_else(|| panic!("no error chunk: {text}"));
    assert_eq!(error["error"]["code"], "deadline_exceeded", "{text}");
    assert!(!text.contains("[DONE]"), "{text}");

    // Each wrote its per-chat line with the outcome.
    std::thread::sleep(Duration::from_millis(200));
    let lines = chat_lines(&service);
    for route in ["/chat", "/v1/chat/completions"] {
        let line = lines
            .iter()
            .find(|l| l["chat"]["route"] == route)
            .unwrap_or_else(|| panic!("no chat line for {route}: {lines:?}"));
        assert_eq!(line["chat"]["outcome"], "deadline_exceeded", "{line}");
        assert_eq!(line["chat"]["status"], 200, "{line}");
        assert_eq!(line["severity"], "ERROR", "{line}");
    }
    assert!(
        lines
            .iter()
            .find(|l| l["chat"]["route"] == "/chat")
            .unwrap()["chat"]["persona"]
            .is_string(),
        "the persona is read from the stream's meta event"
    );
}

#[test]
fn sigterm_ends_a_stream_still_running_after_the_grace_period_with_an_error_event() {
    let emulator = start_emulator();
    let mut service = Service::start_host(
        &["--shutdown-grace-ms", "2000"],
        &env_with_upstream_timeout(&emulator, 20_000),
    );
    let mut stream =
        service.stream(&serde_json::json!({"message": "종료 [[emulator:chunk-delay=4000]]"}));
    assert_eq!(stream.status, 200);
    service.terminate();
    let events = stream.rest();
    let last = events.last().expect("events before SIGTERM");
    assert_eq!(last.name, "error", "{events:?}");
    assert_eq!(last.data["code"], "shutting_down", "{events:?}");
    let status = service
        .wait_exit(Duration::from_secs(15))
        .expect("ion-host exits after its grace period");
    assert_eq!(status.code(), Some(0));
    let lines = chat_lines(&service);
    assert!(
        lines
            .iter()
            .any(|l| l["chat"]["outcome"] == "shutting_down" && l["chat"]["route"] == "/chat"),
        "{lines:?}"
    );
}

/// Hangs up on `stream` once `ready` holds for the emulator's only request, then returns how
/// long the emulator took to see its client (ion-host) go away.
fn hang_up_and_time_cancellation(
    emulator: &Emulator,
    stream: TcpStream,
    ready: impl Fn(&vertex_emulator::RecordedRequest) -> bool,
) -> Duration {
    let deadline = Instant::now() + PATIENCE;
    while !emulator.requests().last().is_some_and(&ready) {
        assert!(Instant::now() < deadline, "the upstream call started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let hung_up = Instant::now();
    drop(stream);
    let requests = emulator.wait_until_settled(Duration::from_secs(10));
    let took = hung_up.elapsed();
    let last = requests.last().unwrap();
    assert!(
        last.client_disconnected(),
        "the upstream call is cancelled: {:?}",
        last.delivery
    );
    took
}

#[test]
fn a_client_hang_up_cancels_the_upstream_call_in_every_phase() {
    let _timed = serial::timed();
    let emulator = start_emulator();
    let service = Service::start_host(&[], &env_with_upstream_timeout(&emulator, 30_000));
    let in_progress =
        |r: &vertex_emulator::RecordedRequest| r.delivery == vertex_emulator::Delivery::InProgress;

    // Waiting for the first byte.
    emulator.clear_requests();
    let mut stream = connect(&service);
    let body = r#"{"message": "첫 바이트 [[emulator:slow=20000]]", "stream": true}"#;
    stream
        .write_all(
            format!(
                "POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    let took = hang_up_and_time_cancellation(&emulator, stream, in_progress);
    eprintln!("hang-up before the first byte: upstream cancelled after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // During a pause in the stream: the head and first event are in, the next is 20 s away.
    emulator.clear_requests();
    let (stream, status, head) =
        open_chat_stream(&service, "멈춤 [[emulator:chunk-delay=20000]]").expect("an answer");
    assert_eq!(status, 200, "{head}");
    // The head is only sent with the first event.
    std::thread::sleep(Duration::from_millis(300));
    let took = hang_up_and_time_cancellation(&emulator, stream, in_progress);
    eprintln!("hang-up during an upstream pause: upstream cancelled after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // While streaming.
    emulator.clear_requests();
    let (mut stream, status, head) =
        open_chat_stream(&service, "흐름 [[emulator:chunk-delay=300]]").expect("an answer");
    assert_eq!(status, 200, "{head}");
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf).unwrap();
    let took = hang_up_and_time_cancellation(&emulator, stream, in_progress);
    eprintln!("hang-up while streaming: upstream cancelled after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(service.get("/health").status, 200);
}

#[test]
fn a_client_hang_up_while_connecting_upstream_closes_that_connection() {
    let _timed = serial::timed();
    // An "upstream" that accepts connections and never answers the TLS handshake: the call
    // stays in its connecting phase.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("https://{}", upstream.local_addr().unwrap());
    let env = vec![
        (
            "SPIN_VARIABLE_PROJECT_ID".to_owned(),
            "e2e-project".to_owned(),
        ),
        ("SPIN_VARIABLE_ACCESS_TOKEN".to_owned(), TOKEN.to_owned()),
        ("SPIN_VARIABLE_VERTEX_ENDPOINT".to_owned(), endpoint),
        (
            "SPIN_VARIABLE_REQUEST_TIMEOUT_MS".to_owned(),
            "30000".to_owned(),
        ),
    ];
    let service = Service::start_host(&[], &env);
    let mut client = connect(&service);
    let body = r#"{"message": "연결 중"}"#;
    client
        .write_all(
            format!(
                "POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    let (mut accepted, _) = upstream.accept().unwrap();
    accepted
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The TLS ClientHello arrives; it is never answered.
    let mut buf = [0u8; 4096];
    assert!(accepted.read(&mut buf).unwrap() > 0);
    let hung_up = Instant::now();
    drop(client);
    let closed = loop {
        match accepted.read(&mut buf) {
            Ok(0) | Err(_) => break hung_up.elapsed(),
            Ok(_) => continue,
        }
    };
    eprintln!("hang-up while connecting: upstream connection closed after {closed:?}");
    assert!(closed < Duration::from_secs(1), "{closed:?}");
}

#[test]
fn host_errors_on_v1_are_in_openais_shape_and_readable_cross_origin() {
    let emulator = start_emulator();
    let mut env = emulator_env(&emulator);
    env.push((
        "SPIN_VARIABLE_ALLOWED_ORIGINS".into(),
        "https://app.example".into(),
    ));
    let service = Service::start_host(
        &["--max-body-bytes", "1000", "--rate-limit-per-minute", "2"],
        &env,
    );
    let origin = "Origin: https://app.example\r\n";
    let big = format!(r#"{{"message": "{}"}}"#, "a".repeat(2000));

    // 413 on /v1: OpenAI's shape, with CORS.
    let (mut stream, status, head, rest) =
        post_and_read_head(&service, "/v1/chat/completions", origin, &big).expect("an answer");
    assert_eq!(status, 413, "{head}");
    let text = read_rest(&mut stream, rest);
    let json: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(json["error"]["code"], "payload_too_large", "{text}");
    assert_eq!(json["error"]["type"], "invalid_request_error", "{text}");
    assert!(json["error"]["message"].is_string(), "{text}");
    assert_eq!(
        header_value(&head, "access-control-allow-origin"),
        Some("https://app.example"),
        "{head}"
    );

    // 413 on /chat: the service's shape, with CORS too.
    let (mut stream, status, head, rest) =
        post_and_read_head(&service, "/chat", origin, &big).expect("an answer");
    assert_eq!(status, 413, "{head}");
    assert_json_error(
        413,
        read_rest(&mut stream, rest).trim(),
        "payload_too_large",
    );
    assert_eq!(
        header_value(&head, "access-control-allow-origin"),
        Some("https://app.example")
    );

    // 429 on /v1 (the two requests above took the allowance).
    let reply = request(
        "GET",
        &service.url("/v1/models"),
        &[("origin", "https://app.example")],
        b"",
    );
    assert_eq!(reply.status, 429, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["error"]["code"], "rate_limited", "{}", reply.body);
    assert_eq!(json["error"]["type"], "rate_limit_error", "{}", reply.body);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        reply
            .header("access-control-expose-headers")
            .is_some_and(|h| h.contains("retry-after")),
        "the wait is readable"
    );
}

#[test]
fn ipv6_clients_are_limited_by_their_slash_64() {
    let emulator = start_emulator();
    let service = Service::start_host(
        &["--trusted-proxy-hops", "1", "--rate-limit-per-minute", "2"],
        &emulator_env(&emulator),
    );
    let from = |address: &str| {
        request(
            "GET",
            &service.url("/v1/models"),
            &[("x-forwarded-for", address)],
            b"",
        )
        .status
    };
    assert_eq!(from("2001:db8:1:2::1"), 200);
    assert_eq!(from("2001:db8:1:2::2"), 200);
    assert_eq!(
        from("2001:db8:1:2:ffff:ffff:ffff:3"),
        429,
        "another address of the same /64 is the same client"
    );
    assert_eq!(from("2001:db8:1:3::1"), 200, "the next /64 is not");
}
