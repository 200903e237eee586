//! ion-host against hostile and clumsy clients, over raw loopback sockets: slow and idle
//! connections, slow uploads, oversized bodies, bad header bytes, malformed requests, accept
//! failures and shutdown with such connections open. Every wait is bounded; timeouts are set
//! small and checked with generous margins.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
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
        ],
        &emulator_env(&emulator),
    );
    let head = b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    let mut holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect(&service);
            stream.write_all(head).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = connect(&service);
    third.write_all(head).unwrap();
    let (status, head_text, body) = read_raw_response(&mut third).expect("an answer");
    assert_eq!(status, 503, "{head_text}{body}");
    assert_json_error(503, &body, "overloaded");
    assert!(head_text.to_ascii_lowercase().contains("retry-after: 1"));
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
