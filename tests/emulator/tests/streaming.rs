//! Streaming as Vertex AI does it: several deltas, paced on request, and a record of clients
//! that hang up before the end.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::common::*;
use vertex_emulator::{Delivery, Emulator, EmulatorConfig, FAULT_HEADER};

const LONG_QUESTION: &str = "How should I plan my first month of learning Rust if I already know \
    some Python and a little C, and I want to build a small web service by the end of it?";

/// Sends a raw SSE request and returns the open socket.
fn open_stream(emulator: &Emulator, fault: &str, text: &str) -> TcpStream {
    let body = user_body(text).to_string();
    let mut stream = TcpStream::connect(emulator.addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n{FAULT_HEADER}: {fault}\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        sse_path(),
        body.len()
    )
    .unwrap();
    stream
}

/// Reads until the first complete SSE event has arrived.
fn read_first_event(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "closed before the first event");
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received).to_string();
        if text
            .find("data: ")
            .is_some_and(|i| text[i..].contains("\r\n\r\n"))
        {
            return text;
        }
    }
}

#[test]
fn a_normal_answer_streams_as_several_deltas() {
    let emulator = background();
    for text in ["hi", "one two", LONG_QUESTION] {
        let events = sse_events(&post(&emulator, &sse_path(), &user_body(text)).body);
        assert!(events.len() >= 3, "{text}: {} events", events.len());
        let joined: String = events.iter().map(delta).collect();
        assert!(joined.ends_with(&format!("you said: {text}")));
    }
}

#[test]
fn chunk_delay_fault_paces_one_request() {
    let emulator = background();
    let delay = Duration::from_millis(80);
    let start = Instant::now();
    let response = post_with(
        &emulator,
        &sse_path(),
        &[(FAULT_HEADER, "chunk-delay=80")],
        &user_body("one two three four five six"),
    );
    let elapsed = start.elapsed();
    let events = sse_events(&response.body);
    assert!(events.len() >= 3);
    assert!(
        elapsed >= delay * (events.len() as u32 - 1),
        "{elapsed:?} for {} events",
        events.len()
    );
    // By marker too, and it overrides the configured pause.
    let paced = Emulator::start_in_background(EmulatorConfig {
        chunk_delay: Duration::from_secs(30),
        ..Default::default()
    })
    .unwrap();
    let start = Instant::now();
    let response = post(
        &paced,
        &sse_path(),
        &user_body("one two three four [[emulator:chunk-delay=0]]"),
    );
    assert!(sse_events(&response.body).len() >= 3);
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn the_first_delta_arrives_before_the_last() {
    let emulator = background();
    // Long pauses and many chunks, so even a busy machine reads the first event alone.
    let delay = Duration::from_millis(250);
    let mut stream = open_stream(&emulator, "chunk-delay=250", LONG_QUESTION);
    let first = read_first_event(&mut stream);
    let first_at = Instant::now();
    assert!(!first.contains("finishReason"), "{first}");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("\"finishReason\":\"STOP\""), "{rest}");
    let later_events = rest.matches("data: ").count();
    assert!(later_events >= 2);
    assert!(first_at.elapsed() >= delay * (later_events as u32 - 1));
}

#[test]
fn a_client_that_hangs_up_mid_stream_is_recorded() {
    let emulator = background();
    let mut stream = open_stream(&emulator, "chunk-delay=100", LONG_QUESTION);
    read_first_event(&mut stream);
    stream.shutdown(Shutdown::Both).unwrap();
    drop(stream);
    let requests = emulator.wait_until_settled(Duration::from_secs(20));
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].status, Some(200));
    assert_eq!(requests[0].delivery, Delivery::ClientDisconnected);
    assert!(requests[0].client_disconnected() && !requests[0].completed());

    // A stream read to the end is complete.
    emulator.clear_requests();
    let mut stream = open_stream(&emulator, "chunk-delay=10", LONG_QUESTION);
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let requests = emulator.wait_until_settled(Duration::from_secs(20));
    assert_eq!(requests[0].delivery, Delivery::Completed);
}

#[test]
fn a_client_that_hangs_up_while_waiting_is_recorded() {
    let emulator = background();
    let stream = open_stream(&emulator, "slow=3000", "anyone there?");
    // Give the emulator time to read the request, then leave.
    std::thread::sleep(Duration::from_millis(200));
    stream.shutdown(Shutdown::Both).unwrap();
    drop(stream);
    let requests = emulator.wait_until_settled(Duration::from_secs(20));
    assert_eq!(requests.len(), 1);
    assert!(requests[0].client_disconnected(), "{:?}", requests[0]);
}
