//! A minimal blocking HTTP/1.1 client and request helpers for the integration tests.
//! Raw sockets on purpose: the tests also need to see dropped connections and raw bodies.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};
use vertex_emulator::Emulator;

pub const TOKEN: &str = "test-token";
pub const MODEL: &str = "gemini-3.5-flash";

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Asserts a google.rpc.Status error and returns its message.
    pub fn expect_error(&self, code: u16, status: &str) -> String {
        assert_eq!(self.status, code, "body: {}", self.text());
        assert!(
            self.header("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "{:?}",
            self.headers
        );
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["status"], status, "{body}");
        body["error"]["message"]
            .as_str()
            .expect("message")
            .to_string()
    }

    /// The text of a unary reply.
    pub fn reply_text(&self) -> String {
        assert_eq!(self.status, 200, "body: {}", self.text());
        self.json()["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .expect("reply text")
            .to_string()
    }
}

/// One keep-alive connection.
pub struct Connection {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Connection {
            reader: BufReader::new(stream),
            host: addr.to_string(),
        }
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        let stream = self.reader.get_mut();
        stream.write_all(&request)?;
        stream.flush()?;
        self.read_response()
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn read_response(&mut self) -> io::Result<Response> {
        let status_line = self.read_line()?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v): &(String, String)| v.clone())
        };
        let mut body = Vec::new();
        if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let size_line = self.read_line()?;
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                        .map_err(|e| io::Error::other(format!("chunk size {size_line:?}: {e}")))?;
                if size == 0 {
                    while !self.read_line()?.is_empty() {}
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.reader.read_exact(&mut body[start..])?;
                self.read_line()?;
            }
        } else if let Some(length) = find("content-length") {
            body.resize(length.parse().expect("content-length"), 0);
            self.reader.read_exact(&mut body)?;
        } else {
            self.reader.read_to_end(&mut body)?;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

pub fn model_path(model: &str, verb: &str) -> String {
    format!(
        "/v1/projects/test-project/locations/us-central1/publishers/google/models/{model}:{verb}"
    )
}

pub fn generate_path() -> String {
    model_path(MODEL, "generateContent")
}

pub fn sse_path() -> String {
    model_path(MODEL, "streamGenerateContent") + "?alt=sse"
}

pub fn user_body(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

/// Sends one request on a fresh connection.
pub fn send(
    emulator: &Emulator,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    Connection::open(emulator.addr()).send(method, path, headers, body)
}

/// POSTs a JSON body with a valid bearer token.
pub fn post(emulator: &Emulator, path: &str, body: &Value) -> Response {
    post_with(emulator, path, &[], body)
}

pub fn post_with(
    emulator: &Emulator,
    path: &str,
    extra: &[(&str, &str)],
    body: &Value,
) -> Response {
    let auth = format!("Bearer {TOKEN}");
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    send(
        emulator,
        "POST",
        path,
        &headers,
        body.to_string().as_bytes(),
    )
    .expect("response")
}

/// Parses an SSE body: every event must be `data: JSON` followed by a blank line (CRLF).
pub fn sse_events(body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).expect("UTF-8");
    assert!(text.ends_with("\r\n\r\n"), "{text:?}");
    text.split_terminator("\r\n\r\n")
        .map(|event| {
            let data = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"));
            assert!(!data.contains('\n'), "one line per event: {data:?}");
            serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"))
        })
        .collect()
}

pub fn delta(chunk: &Value) -> &str {
    chunk["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no delta in {chunk}"))
}

pub fn background() -> Emulator {
    Emulator::start_in_background(Default::default()).expect("emulator")
}
