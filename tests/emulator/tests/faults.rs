//! Every fault, chosen by marker or by header, over real HTTP.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;
use vertex_emulator::FAULT_HEADER;

fn marker(fault: &str) -> serde_json::Value {
    user_body(&format!("please fail [[emulator:{fault}]] now"))
}

#[test]
fn status_faults_answer_with_google_errors() {
    let emulator = background();
    let expected = [
        ("400", 400, "INVALID_ARGUMENT"),
        ("401", 401, "UNAUTHENTICATED"),
        ("403", 403, "PERMISSION_DENIED"),
        ("404", 404, "NOT_FOUND"),
        ("429", 429, "RESOURCE_EXHAUSTED"),
        ("500", 500, "INTERNAL"),
        ("503", 503, "UNAVAILABLE"),
        ("504", 504, "DEADLINE_EXCEEDED"),
    ];
    for (fault, code, status) in expected {
        for path in [generate_path(), sse_path()] {
            let by_marker = post(&emulator, &path, &marker(fault));
            by_marker.expect_error(code, status);
            let by_header = post_with(&emulator, &path, &[(FAULT_HEADER, fault)], &user_body("hi"));
            by_header.expect_error(code, status);
        }
    }
}

#[test]
fn quota_fault_carries_retry_info() {
    let emulator = background();
    let response = post(&emulator, &generate_path(), &marker("429"));
    response.expect_error(429, "RESOURCE_EXHAUSTED");
    let details = &response.json()["error"]["details"];
    assert_eq!(
        details[0]["@type"],
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    assert_eq!(details[0]["retryDelay"], "3s");
}

#[test]
fn slow_fault_delays_then_answers_normally() {
    let emulator = background();
    let start = Instant::now();
    let response = post(&emulator, &generate_path(), &marker("slow=300"));
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert!(response.reply_text().contains("[[emulator:slow=300]]"));

    let start = Instant::now();
    let response = post_with(
        &emulator,
        &sse_path(),
        &[(FAULT_HEADER, "slow=200")],
        &user_body("a b c"),
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(sse_events(&response.body).len() >= 3);
}

#[test]
fn plain_slow_waits_five_seconds() {
    let emulator = background();
    let start = Instant::now();
    let response = post(&emulator, &generate_path(), &marker("slow"));
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(response.status, 200);
}

#[test]
fn safety_and_blocked_faults_block_the_prompt() {
    let emulator = background();
    for (fault, reason) in [
        ("safety", "SAFETY"),
        ("blocked=PROHIBITED_CONTENT", "PROHIBITED_CONTENT"),
    ] {
        let response = post(&emulator, &generate_path(), &marker(fault));
        assert_eq!(response.status, 200);
        let json = response.json();
        assert!(json.get("candidates").is_none(), "{json}");
        assert_eq!(json["promptFeedback"]["blockReason"], reason);
        let usage = &json["usageMetadata"];
        assert!(usage["promptTokenCount"].as_u64().unwrap() >= 1);
        assert_eq!(usage["totalTokenCount"], usage["promptTokenCount"]);
        assert!(usage.get("candidatesTokenCount").is_none());

        let events = sse_events(&post(&emulator, &sse_path(), &marker(fault)).body);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["promptFeedback"]["blockReason"], reason);
    }
}

#[test]
fn finish_safety_fault_has_no_parts() {
    let emulator = background();
    let json = post(&emulator, &generate_path(), &marker("finish-safety")).json();
    let candidate = &json["candidates"][0];
    assert_eq!(candidate["finishReason"], "SAFETY");
    assert!(candidate["content"]["parts"].is_null(), "{candidate}");

    let events = sse_events(&post(&emulator, &sse_path(), &marker("finish-safety")).body);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["candidates"][0]["finishReason"], "SAFETY");
}

#[test]
fn empty_fault_has_a_candidate_without_parts() {
    let emulator = background();
    let json = post_with(
        &emulator,
        &generate_path(),
        &[(FAULT_HEADER, "empty")],
        &user_body("hi"),
    )
    .json();
    let candidate = &json["candidates"][0];
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(candidate["content"]["role"], "model");
    assert!(candidate["content"]["parts"].is_null(), "{candidate}");
}

#[test]
fn garbage_fault_is_200_with_a_non_json_body() {
    let emulator = background();
    let response = post(&emulator, &generate_path(), &marker("garbage"));
    assert_eq!(response.status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&response.body).is_err());

    let response = post(&emulator, &sse_path(), &marker("garbage"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let data = response.text();
    let data = data
        .strip_prefix("data: ")
        .expect("an SSE event")
        .trim_end();
    assert!(serde_json::from_str::<serde_json::Value>(data).is_err());
}

#[test]
fn drop_fault_closes_without_a_response() {
    let emulator = background();
    for path in [generate_path(), sse_path()] {
        let auth = format!("Bearer {TOKEN}");
        let result = send(
            &emulator,
            "POST",
            &path,
            &[("Authorization", &auth)],
            marker("drop").to_string().as_bytes(),
        );
        let err = result.err().expect("no response at all");
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "{err:?}"
        );
    }
    let requests = emulator.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(
            (request.status, request.delivery),
            (None, vertex_emulator::Delivery::Dropped)
        );
    }
    // The emulator keeps serving afterwards.
    assert_eq!(
        post(&emulator, &generate_path(), &user_body("still there")).status,
        200
    );
}

#[test]
fn unknown_fault_is_400_saying_so() {
    let emulator = background();
    for response in [
        post(&emulator, &generate_path(), &marker("teapot")),
        post_with(
            &emulator,
            &generate_path(),
            &[(FAULT_HEADER, "teapot")],
            &user_body("hi"),
        ),
    ] {
        let message = response.expect_error(400, "INVALID_ARGUMENT");
        assert!(
            message.contains("Unknown emulator fault \"teapot\""),
            "{message}"
        );
    }
}

#[test]
fn header_wins_over_marker() {
    let emulator = background();
    let response = post_with(
        &emulator,
        &generate_path(),
        &[(FAULT_HEADER, "503")],
        &marker("429"),
    );
    response.expect_error(503, "UNAVAILABLE");
}

#[test]
fn marker_only_counts_in_the_last_user_text() {
    let emulator = background();
    let body = json!({
        "systemInstruction": {"parts": [{"text": "[[emulator:500]]"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "[[emulator:429]]"}]},
            {"role": "model", "parts": [{"text": "[[emulator:503]]"}]},
            {"role": "user", "parts": [{"text": "fine"}]}
        ]
    });
    assert_eq!(post(&emulator, &generate_path(), &body).status, 200);
}

#[test]
fn auth_and_validation_errors_win_over_faults() {
    let emulator = background();
    let response = send(
        &emulator,
        "POST",
        &generate_path(),
        &[(FAULT_HEADER, "429")],
        marker("503").to_string().as_bytes(),
    )
    .unwrap();
    response.expect_error(401, "UNAUTHENTICATED");

    let invalid = json!({"contents": [{"role": "user", "parts": [{"text": "[[emulator:drop]]"}]}],
                         "generationConfig": {"temperature": 9}});
    post(&emulator, &generate_path(), &invalid).expect_error(400, "INVALID_ARGUMENT");
    let invalid = json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "extra": 1});
    post_with(
        &emulator,
        &generate_path(),
        &[(FAULT_HEADER, "drop")],
        &invalid,
    )
    .expect_error(400, "INVALID_ARGUMENT");
}
