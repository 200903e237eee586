//! Transient faults for retry tests, and the request log that counts the attempts.

use crate::common::*;
use serde_json::json;
use vertex_emulator::FAULT_HEADER;

fn statuses(emulator: &vertex_emulator::Emulator) -> Vec<Option<u16>> {
    emulator.requests().iter().map(|r| r.status).collect()
}

#[test]
fn status_x_n_fails_n_times_then_answers() {
    let emulator = background();
    for (fault, code, status) in [
        ("503x2", 503, "UNAVAILABLE"),
        ("500x1", 500, "INTERNAL"),
        ("429x3", 429, "RESOURCE_EXHAUSTED"),
        ("504x1", 504, "DEADLINE_EXCEEDED"),
    ] {
        let times: usize = fault.split_once('x').unwrap().1.parse().unwrap();
        for path in [generate_path(), sse_path()] {
            emulator.clear_requests();
            let body = user_body(&format!("retry me [[emulator:{fault}]] on {path}"));
            for _ in 0..times {
                post(&emulator, &path, &body).expect_error(code, status);
            }
            let ok = post(&emulator, &path, &body);
            assert_eq!(ok.status, 200, "{fault}: {}", ok.text());
            assert!(ok.text().contains("retry me"));
            // Every attempt is recorded with its status.
            let mut expected = vec![Some(code); times];
            expected.push(Some(200));
            assert_eq!(statuses(&emulator), expected, "{fault} {path}");
            assert!(emulator.requests().iter().all(|r| r.completed()));
        }
    }
}

#[test]
fn the_count_starts_over_after_the_success() {
    let emulator = background();
    let body = user_body("again [[emulator:503x1]]");
    for _ in 0..3 {
        post(&emulator, &generate_path(), &body).expect_error(503, "UNAVAILABLE");
        assert_eq!(post(&emulator, &generate_path(), &body).status, 200);
    }
    // reset_faults forgets a count half-way.
    let body = user_body("twice [[emulator:503x2]]");
    post(&emulator, &generate_path(), &body).expect_error(503, "UNAVAILABLE");
    emulator.reset_faults();
    post(&emulator, &generate_path(), &body).expect_error(503, "UNAVAILABLE");
    post(&emulator, &generate_path(), &body).expect_error(503, "UNAVAILABLE");
    assert_eq!(post(&emulator, &generate_path(), &body).status, 200);
}

#[test]
fn different_requests_count_separately() {
    let emulator = background();
    let a = user_body("a [[emulator:503x1]]");
    let b = user_body("b [[emulator:503x1]]");
    post(&emulator, &generate_path(), &a).expect_error(503, "UNAVAILABLE");
    post(&emulator, &generate_path(), &b).expect_error(503, "UNAVAILABLE");
    // Another model, or another method, is another request.
    let stream = sse_path();
    post(&emulator, &stream, &a).expect_error(503, "UNAVAILABLE");
    assert_eq!(post(&emulator, &stream, &a).status, 200);
    let other = model_path("gemini-3.5-flash-lite", "generateContent");
    post(&emulator, &other, &a).expect_error(503, "UNAVAILABLE");
    assert_eq!(post(&emulator, &generate_path(), &a).status, 200);
    assert_eq!(post(&emulator, &generate_path(), &b).status, 200);
    assert_eq!(post(&emulator, &other, &a).status, 200);

    // By header: the same header and text.
    let plain = user_body("header retry");
    let header = [(FAULT_HEADER, "500x1")];
    post_with(&emulator, &generate_path(), &header, &plain).expect_error(500, "INTERNAL");
    assert_eq!(
        post_with(&emulator, &generate_path(), &header, &plain).status,
        200
    );
}

#[test]
fn quota_errors_carry_retry_info_and_retry_after() {
    let emulator = background();
    for (fault, retry_delay, retry_after) in [
        ("429", "3s", "3"),
        ("429x1", "0.200s", "1"),
        ("429x1,retry-delay=1500", "1.500s", "2"),
        ("429,retry-delay=0", "0s", "0"),
        ("429,retry-delay=2000", "2s", "2"),
    ] {
        for path in [generate_path(), sse_path()] {
            let response = post(
                &emulator,
                &path,
                &user_body(&format!("q [[emulator:{fault}]]")),
            );
            response.expect_error(429, "RESOURCE_EXHAUSTED");
            assert_eq!(response.header("retry-after"), Some(retry_after), "{fault}");
            let detail = &response.json()["error"]["details"][0];
            assert_eq!(detail["@type"], "type.googleapis.com/google.rpc.RetryInfo");
            assert_eq!(detail["retryDelay"], retry_delay, "{fault}");
        }
    }
    // Other errors have no Retry-After.
    let response = post(&emulator, &generate_path(), &user_body("[[emulator:503]]"));
    response.expect_error(503, "UNAVAILABLE");
    assert_eq!(response.header("retry-after"), None);
}

#[test]
fn stream_error_sends_good_chunks_then_an_error_event() {
    let emulator = background();
    let body =
        user_body("a long enough question to stream in many chunks [[emulator:stream-error]]");
    let response = post(&emulator, &sse_path(), &body);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let events = sse_events(&response.body);
    assert_eq!(events.len(), 3, "{events:#?}");
    for good in &events[..2] {
        assert!(!delta(good).is_empty());
        assert!(good["candidates"][0].get("finishReason").is_none());
    }
    assert_eq!(
        events[2],
        json!({"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}})
    );
    // The deltas are the start of the normal answer.
    let normal = post(&emulator, &generate_path(), &body);
    assert_eq!(normal.status, 500);
    let full = post_with(&emulator, &sse_path(), &[(FAULT_HEADER, "slow=0")], &body);
    let full: String = sse_events(&full.body).iter().map(delta).collect();
    let started = format!("{}{}", delta(&events[0]), delta(&events[1]));
    assert!(full.starts_with(&started), "{full:?} / {started:?}");

    // Without alt=sse: the same, as the last element of the JSON array.
    let array = post(
        &emulator,
        &model_path(MODEL, "streamGenerateContent"),
        &body,
    )
    .json();
    let array = array.as_array().unwrap();
    assert_eq!(array.len(), 3);
    assert_eq!(array[2]["error"]["status"], "INTERNAL");

    // Unary: a plain 500.
    let message = post(&emulator, &generate_path(), &body).expect_error(500, "INTERNAL");
    assert_eq!(message, "Internal error encountered.");
    assert!(emulator.requests().iter().all(|r| r.completed()));
}

#[test]
fn faults_combine_with_modifiers() {
    let emulator = background();
    let body = user_body("x [[emulator:503x1,slow=10]]");
    post(&emulator, &generate_path(), &body).expect_error(503, "UNAVAILABLE");
    assert_eq!(post(&emulator, &generate_path(), &body).status, 200);
    let message = post(
        &emulator,
        &generate_path(),
        &user_body("[[emulator:503,429]]"),
    )
    .expect_error(400, "INVALID_ARGUMENT");
    assert!(
        message.contains("conflicts with another fault"),
        "{message}"
    );
}
