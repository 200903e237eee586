//! The request log tests read: every generate request, with the status it got and whether its
//! response reached the end or the client went away first.
//!
//! A [`Tracker`] follows each logged request's response: the handler sets the status, the
//! response body marks the end once its last frame has been handed to the connection, and a
//! tracker dropped before that (hyper drops the body, or the handler, when the client hangs
//! up) marks the request [`Delivery::ClientDisconnected`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use http::header::AUTHORIZATION;

use crate::protocol::GenerateContentRequest;

/// How many recorded requests are kept; older ones are dropped first.
pub const RECORD_LIMIT: usize = 1000;

/// What became of the response to a recorded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Still being answered (waiting, or a stream still sending).
    InProgress,
    /// The whole response was handed to the connection.
    Completed,
    /// The client closed the connection before the response was complete, e.g. in the middle
    /// of a stream: what a cancelled upstream call looks like from Vertex AI's side.
    ClientDisconnected,
    /// The `drop` fault closed the connection without a response.
    Dropped,
}

/// A request that reached a `generateContent` / `streamGenerateContent` route, whatever the
/// outcome (rejected and faulted ones included, so attempts can be counted).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/projects/p/.../models/gemini-3.5-flash:streamGenerateContent?alt=sse`.
    pub path: String,
    /// The raw `Authorization` header value.
    pub authorization: Option<String>,
    /// The W3C `traceparent` header: the trace the caller continues here.
    pub traceparent: Option<String>,
    /// The body as JSON, or `Null` when it is not JSON.
    pub body: serde_json::Value,
    /// The body as the emulator understood it (camelCase and snake_case names alike): its
    /// contents with their function calls, responses and thought signatures, tools, tool
    /// config, generation config, safety settings, … Set once the request passed validation;
    /// `None` for a request rejected before (a bad token, model or body).
    pub request: Option<GenerateContentRequest>,
    /// The HTTP status of the response; `None` while undecided or when the `drop` fault
    /// closed the connection.
    pub status: Option<u16>,
    pub delivery: Delivery,
}

impl RecordedRequest {
    /// The response went out in full.
    pub fn completed(&self) -> bool {
        self.delivery == Delivery::Completed
    }

    /// The client went away before the response was complete.
    pub fn client_disconnected(&self) -> bool {
        self.delivery == Delivery::ClientDisconnected
    }
}

#[derive(Default)]
struct Log {
    next_id: u64,
    entries: VecDeque<(u64, RecordedRequest)>,
}

/// The shared request log.
#[derive(Default)]
pub struct Records {
    log: Mutex<Log>,
}

impl Records {
    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a request and returns the tracker of its response.
    pub fn start(self: &Arc<Self>, parts: &http::request::Parts, body: &[u8]) -> Tracker {
        let entry = RecordedRequest {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_string(), |pq| pq.to_string()),
            authorization: parts
                .headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            traceparent: parts
                .headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
            request: None,
            status: None,
            delivery: Delivery::InProgress,
        };
        let mut log = self.lock();
        let id = log.next_id;
        log.next_id += 1;
        if log.entries.len() >= RECORD_LIMIT {
            log.entries.pop_front();
        }
        log.entries.push_back((id, entry));
        Tracker {
            records: self.clone(),
            id,
            finished: false,
        }
    }

    pub fn snapshot(&self) -> Vec<RecordedRequest> {
        self.lock()
            .entries
            .iter()
            .map(|(_, entry)| entry.clone())
            .collect()
    }

    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut RecordedRequest)) {
        let mut log = self.lock();
        // Ids grow with position, so the entry (if not yet evicted) is found by bisection.
        if let Ok(index) = log.entries.binary_search_by_key(&id, |(id, _)| *id) {
            change(&mut log.entries[index].1);
        }
    }
}

/// Follows the response to one recorded request.
pub struct Tracker {
    records: Arc<Records>,
    id: u64,
    finished: bool,
}

impl Tracker {
    pub fn set_status(&self, status: Option<u16>) {
        self.records.update(self.id, |entry| entry.status = status);
    }

    pub fn set_request(&self, request: GenerateContentRequest) {
        self.records
            .update(self.id, |entry| entry.request = Some(request));
    }

    pub fn finish(mut self, delivery: Delivery) {
        self.finished = true;
        self.records
            .update(self.id, |entry| entry.delivery = delivery);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if !self.finished {
            self.records.update(self.id, |entry| {
                entry.delivery = Delivery::ClientDisconnected;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> http::request::Parts {
        http::Request::post("/v1/x?alt=sse")
            .header("authorization", "Bearer t")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn trackers_update_their_own_entry() {
        let records = Arc::new(Records::default());
        let first = records.start(&parts(), b"{\"a\": 1}");
        let second = records.start(&parts(), b"not json");
        second.set_status(Some(200));
        second.set_request(GenerateContentRequest::default());
        second.finish(Delivery::Completed);
        first.set_status(Some(200));
        drop(first);
        let log = records.snapshot();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].path, "/v1/x?alt=sse");
        assert_eq!(log[0].authorization.as_deref(), Some("Bearer t"));
        assert_eq!(log[0].body, serde_json::json!({"a": 1}));
        assert!(log[0].client_disconnected() && !log[0].completed());
        assert_eq!(log[1].body, serde_json::Value::Null);
        assert_eq!(log[0].request, None);
        assert_eq!(log[1].request, Some(GenerateContentRequest::default()));
        assert_eq!(log[1].status, Some(200));
        assert!(log[1].completed());
    }

    #[test]
    fn the_log_keeps_the_newest_entries() {
        let records = Arc::new(Records::default());
        let oldest = records.start(&parts(), b"0");
        for i in 1..=RECORD_LIMIT {
            records
                .start(&parts(), i.to_string().as_bytes())
                .finish(Delivery::Completed);
        }
        // Updating an evicted entry is harmless.
        oldest.finish(Delivery::Completed);
        let log = records.snapshot();
        assert_eq!(log.len(), RECORD_LIMIT);
        assert_eq!(log[0].body, serde_json::json!(1));
        assert_eq!(log[RECORD_LIMIT - 1].body, serde_json::json!(RECORD_LIMIT));
        records.clear();
        assert!(records.snapshot().is_empty());
    }
}
