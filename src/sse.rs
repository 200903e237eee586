//! Server-Sent Events framing: the response head and the two event forms the chat streams use
//! (named events for `/chat`, `data:`-only ones for `/v1`).

use serde_json::Value;

use crate::response::ApiResponse;

/// Headers of every event-stream response.
pub const HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    // Proxies that buffer (nginx and the like) would hold the deltas back.
    ("x-accel-buffering", "no"),
];

/// The head of an event-stream response: a 200 with [`HEADERS`], its body to follow.
pub fn head() -> ApiResponse {
    let mut head = ApiResponse::with_body(200, HEADERS[0].1, Vec::new());
    head.headers
        .extend(HEADERS[1..].iter().map(|(n, v)| (*n, (*v).to_owned())));
    head
}

/// One event: `event: NAME` and a single `data:` line (compact JSON has no raw newlines).
pub fn event(name: &str, data: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// A `data:`-only event, as OpenAI-style streams send them.
pub fn data(data: &str) -> Vec<u8> {
    format!("data: {data}\n\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_one_data_line_each() {
        let e = event("delta", &json!({"text": "a\nb"}));
        assert_eq!(
            String::from_utf8(e).unwrap(),
            "event: delta\ndata: {\"text\":\"a\\nb\"}\n\n"
        );
        assert_eq!(data("[DONE]"), b"data: [DONE]\n\n");
    }
}
