//! A runtime-neutral HTTP response: status, headers and a complete body.
//! The Spin adapter turns it into a `wasi:http` response; tests inspect it directly.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// A JSON response. Serialising plain data cannot fail; if it ever did, the body says so.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        let body = serde_json::to_vec(value)
            .unwrap_or_else(|_| br#"{"error":"response serialisation failed"}"#.to_vec());
        ApiResponse {
            status,
            headers: vec![("content-type", "application/json".into())],
            body,
        }
    }

    pub fn with_body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        ApiResponse {
            status,
            headers: vec![("content-type", content_type.into())],
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// First value of a header (names are stored lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
