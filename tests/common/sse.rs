//! Streamed `/chat`: the request with `"stream": true`, and its Server-Sent Events read one by
//! one as they arrive.

use std::io::{BufRead, BufReader, Read};

use serde_json::Value;

use super::{Service, header_pairs, http_agent};

/// One event of a `/chat` stream: its name (`meta`, `delta`, `done`, `error`) and JSON data.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// A streamed answer whose head has arrived; the events are read on demand.
pub struct EventStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<Box<dyn Read>>,
}

impl Service {
    /// POSTs `body` to /chat with `"stream": true` and returns once the answer's head is in.
    pub fn stream(&self, body: &Value) -> EventStream {
        stream_chat(&self.base_url, body)
    }
}

/// POSTs `body` to `{base_url}/chat` with `"stream": true`; returns once the head is in.
pub fn stream_chat(base_url: &str, body: &Value) -> EventStream {
    let mut body = body.clone();
    body["stream"] = Value::Bool(true);
    let response = http_agent()
        .post(&format!("{base_url}/chat"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("streamed POST {base_url}/chat: {e}"));
    let status = response.status().as_u16();
    let headers = header_pairs(&response);
    let reader = BufReader::new(Box::new(response.into_body().into_reader()) as Box<dyn Read>);
    EventStream {
        status,
        headers,
        reader,
    }
}

impl EventStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next event, or `None` at the end of the stream (or when the connection breaks).
    pub fn next_event(&mut self) -> Option<Event> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if let Some(event) = event_of(&lines) {
                    return Some(event);
                }
                continue;
            }
            lines.push(line.to_owned());
        }
    }

    /// Every event left, until the stream ends.
    pub fn rest(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.next_event()).collect()
    }
}

/// The event in one block of `event:`/`data:` lines; `None` for a block without data.
fn event_of(lines: &[String]) -> Option<Event> {
    let (mut name, mut data) = (String::new(), String::new());
    for line in lines {
        if let Some(v) = line.strip_prefix("event: ") {
            name = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        }
    }
    if data.is_empty() {
        return None;
    }
    let data = serde_json::from_str(&data)
        .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
    Some(Event { name, data })
}
