//! Serving behaviour: latency, pacing, recording, concurrency, lifecycle and the async API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};
use vertex_emulator::{Emulator, EmulatorConfig, RECORD_LIMIT};

#[test]
fn latency_applies_to_every_response() {
    let latency = Duration::from_millis(250);
    let emulator = Emulator::start_in_background(EmulatorConfig {
        latency,
        ..Default::default()
    })
    .unwrap();
    let start = Instant::now();
    assert_eq!(
        post(&emulator, &generate_path(), &user_body("hi")).status,
        200
    );
    assert!(start.elapsed() >= latency, "success: {:?}", start.elapsed());

    let start = Instant::now();
    let response = send(&emulator, "POST", &generate_path(), &[], b"{}").unwrap();
    assert_eq!(response.status, 401);
    assert!(start.elapsed() >= latency, "error: {:?}", start.elapsed());

    let start = Instant::now();
    assert_eq!(send(&emulator, "GET", "/", &[], b"").unwrap().status, 404);
    assert!(
        start.elapsed() >= latency,
        "not found: {:?}",
        start.elapsed()
    );

    let start = Instant::now();
    post(&emulator, &generate_path(), &user_body("[[emulator:503]]"))
        .expect_error(503, "UNAVAILABLE");
    assert!(start.elapsed() >= latency, "fault: {:?}", start.elapsed());
}

#[test]
fn slow_fault_adds_to_latency() {
    let emulator = Emulator::start_in_background(EmulatorConfig {
        latency: Duration::from_millis(150),
        ..Default::default()
    })
    .unwrap();
    let start = Instant::now();
    assert_eq!(
        post(
            &emulator,
            &generate_path(),
            &user_body("[[emulator:slow=200]]")
        )
        .status,
        200
    );
    assert!(
        start.elapsed() >= Duration::from_millis(350),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn chunk_delay_paces_stream_events() {
    let delay = Duration::from_millis(60);
    let emulator = Emulator::start_in_background(EmulatorConfig {
        chunk_delay: delay,
        ..Default::default()
    })
    .unwrap();
    let start = Instant::now();
    let response = post(
        &emulator,
        &sse_path(),
        &user_body("one two three four five"),
    );
    let elapsed = start.elapsed();
    let events = sse_events(&response.body);
    assert!(events.len() >= 3);
    let minimum = delay * (events.len() as u32 - 1);
    assert!(
        elapsed >= minimum,
        "{elapsed:?} < {minimum:?} for {} events",
        events.len()
    );
}

#[test]
fn records_generate_requests_oldest_first() {
    let emulator = background();
    post(&emulator, &generate_path(), &user_body("first"));
    post(&emulator, &sse_path(), &user_body("second"));
    send(
        &emulator,
        "POST",
        &generate_path(),
        &[("Authorization", "Bearer x")],
        b"not json",
    )
    .unwrap();
    send(
        &emulator,
        "POST",
        &generate_path(),
        &[],
        user_body("no auth").to_string().as_bytes(),
    )
    .unwrap();
    // Not a generate route: not recorded.
    send(&emulator, "GET", "/health", &[], b"").unwrap();

    let records = emulator.requests();
    assert_eq!(records.len(), 4, "{records:#?}");
    assert_eq!(records[0].method, "POST");
    assert_eq!(records[0].path, generate_path());
    assert_eq!(
        records[0].authorization.as_deref(),
        Some("Bearer test-token")
    );
    assert_eq!(records[0].body, user_body("first"));
    assert_eq!(records[1].path, sse_path());
    assert_eq!(records[1].body["contents"][0]["parts"][0]["text"], "second");
    assert_eq!(records[2].body, Value::Null);
    assert_eq!(records[2].authorization.as_deref(), Some("Bearer x"));
    assert_eq!(records[3].authorization, None);
    let statuses: Vec<_> = records.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(200), Some(200), Some(400), Some(401)]);
    assert!(records.iter().all(|r| r.completed()), "{records:#?}");

    emulator.clear_requests();
    assert!(emulator.requests().is_empty());
}

#[test]
fn recording_keeps_only_the_last_requests() {
    let emulator = background();
    let mut connection = Connection::open(emulator.addr());
    let auth = format!("Bearer {TOKEN}");
    let total = RECORD_LIMIT + 5;
    for i in 0..total {
        let body = json!({"contents": [{"parts": [{"text": format!("n{i}")}]}]}).to_string();
        let response = connection
            .send(
                "POST",
                &generate_path(),
                &[("Authorization", &auth)],
                body.as_bytes(),
            )
            .unwrap();
        assert_eq!(response.status, 200);
    }
    let records = emulator.requests();
    assert_eq!(records.len(), RECORD_LIMIT);
    assert_eq!(records[0].body["contents"][0]["parts"][0]["text"], "n5");
    assert_eq!(
        records.last().unwrap().body["contents"][0]["parts"][0]["text"],
        format!("n{}", total - 1)
    );
}

#[test]
fn recording_can_be_off() {
    let emulator = Emulator::start_in_background(EmulatorConfig {
        record: false,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        post(&emulator, &generate_path(), &user_body("hi")).status,
        200
    );
    assert!(emulator.requests().is_empty());
}

#[test]
fn a_slow_request_does_not_hold_up_others() {
    let emulator = background();
    let done = Arc::new(AtomicBool::new(false));
    let slow = {
        let done = done.clone();
        let addr = emulator.addr();
        std::thread::spawn(move || {
            let auth = format!("Bearer {TOKEN}");
            let body = user_body("[[emulator:slow=3000]]").to_string();
            let response = Connection::open(addr)
                .send(
                    "POST",
                    &generate_path(),
                    &[("Authorization", &auth)],
                    body.as_bytes(),
                )
                .unwrap();
            done.store(true, Ordering::SeqCst);
            response.status
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        assert_eq!(
            post(&emulator, &generate_path(), &user_body("quick")).status,
            200
        );
    }
    assert!(
        !done.load(Ordering::SeqCst),
        "quick requests waited for the slow one"
    );
    assert_eq!(slow.join().unwrap(), 200);
}

#[test]
fn many_concurrent_connections_all_succeed() {
    let emulator = Emulator::start_in_background(EmulatorConfig {
        latency: Duration::from_millis(200),
        record: false,
        ..Default::default()
    })
    .unwrap();
    let addr = emulator.addr();
    let threads: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let auth = format!("Bearer {TOKEN}");
                let path = if i % 2 == 0 {
                    generate_path()
                } else {
                    sse_path()
                };
                let body = user_body(&format!("client {i}")).to_string();
                let response = Connection::open(addr)
                    .send("POST", &path, &[("Authorization", &auth)], body.as_bytes())
                    .unwrap();
                (
                    response.status,
                    response.text().contains(&format!("you said: client {i}")),
                )
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), (200, true));
    }
}

#[test]
fn oversized_body_is_rejected() {
    let emulator = background();
    let auth = format!("Bearer {TOKEN}");
    let body = vec![b' '; vertex_emulator::MAX_BODY_BYTES + 1];
    let response = send(
        &emulator,
        "POST",
        &generate_path(),
        &[("Authorization", &auth)],
        &body,
    )
    .unwrap();
    let message = response.expect_error(400, "INVALID_ARGUMENT");
    assert!(message.contains("exceeds the limit"), "{message}");
}

#[test]
fn dropping_the_emulator_stops_serving() {
    let emulator = background();
    let addr = emulator.addr();
    assert_eq!(
        post(&emulator, &generate_path(), &user_body("hi")).status,
        200
    );
    emulator.shutdown();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if std::net::TcpStream::connect(addr).is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_bind_serves_and_shuts_down() {
    let emulator = Emulator::bind("127.0.0.1:0", EmulatorConfig::default())
        .await
        .unwrap();
    assert!(emulator.url().starts_with("http://127.0.0.1:"));
    assert_ne!(emulator.addr().port(), 0);
    assert_eq!(emulator.url(), format!("http://{}", emulator.addr()));
    let addr = emulator.addr();
    let response = tokio::task::spawn_blocking(move || {
        let auth = format!("Bearer {TOKEN}");
        Connection::open(addr).send(
            "POST",
            &generate_path(),
            &[("Authorization", &auth)],
            user_body("async").to_string().as_bytes(),
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert!(response.reply_text().ends_with("you said: async"));
    assert_eq!(emulator.requests().len(), 1);

    emulator.shutdown_and_wait().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn start_takes_a_listener_and_bind_reports_busy_ports() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let emulator = Emulator::start(listener, EmulatorConfig::default())
        .await
        .unwrap();
    assert_eq!(emulator.addr(), addr);
    let err = Emulator::bind(&addr.to_string(), EmulatorConfig::default())
        .await
        .expect_err("port is taken");
    assert!(
        format!("{err:#}").contains(&format!("cannot listen on {addr}")),
        "{err:#}"
    );
    let err = Emulator::bind_in_background(&addr.to_string(), EmulatorConfig::default())
        .expect_err("port is taken");
    assert!(format!("{err:#}").contains("cannot listen"), "{err:#}");
}

#[tokio::test]
async fn background_emulator_works_inside_a_runtime() {
    // Created and dropped inside a current-thread runtime: must neither panic nor block.
    let emulator = Emulator::start_in_background(EmulatorConfig::default()).unwrap();
    let addr = emulator.addr();
    let status = tokio::task::spawn_blocking(move || {
        let auth = format!("Bearer {TOKEN}");
        Connection::open(addr)
            .send(
                "POST",
                &generate_path(),
                &[("Authorization", &auth)],
                user_body("hi").to_string().as_bytes(),
            )
            .unwrap()
            .status
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    drop(emulator);
}

#[test]
fn stream_events_are_sent_as_they_are_due() {
    use std::io::{Read, Write};
    let delay = Duration::from_millis(100);
    let emulator = Emulator::start_in_background(EmulatorConfig {
        chunk_delay: delay,
        ..Default::default()
    })
    .unwrap();
    let body = user_body("one two three four five").to_string();
    let mut stream = std::net::TcpStream::connect(emulator.addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    write!(
        stream,
        "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        sse_path(),
        body.len()
    )
    .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let mut first_event_at = None;
    loop {
        let n = stream.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received);
        if first_event_at.is_none()
            && text
                .find("data: ")
                .is_some_and(|i| text[i..].contains("\r\n\r\n"))
        {
            first_event_at = Some(Instant::now());
        }
    }
    let finished = Instant::now();
    let first = first_event_at.expect("an event");
    let events = String::from_utf8_lossy(&received).matches("data: ").count();
    assert!(events >= 3, "{events} events");
    // Buffering the whole stream would deliver the first event together with the last.
    let spread = finished - first;
    assert!(
        spread >= delay * (events as u32 - 1),
        "{spread:?} for {events} events"
    );
}
