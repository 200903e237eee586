//! Every error the host answers by itself, in the component's error shape
//! `{"error","status_code","code"}` (OpenAI's `{"error": {"message","type","param","code"}}` on
//! `/v1`, as the component answers there): the request errors of the handler, the error event
//! that ends a stream the host cuts, and the protocol errors hyper answers on its own (their
//! bodiless responses are rewritten by the connection).

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::cors::CorsHeaders;
use crate::ratelimit::Limited;

/// Why the host answered a request without (or instead of) the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// A header value with bytes other than visible ASCII, space and tab.
    InvalidHeader { name: String },
    /// A `Host` header that is not a valid authority.
    InvalidHost,
    /// The body is (announced or turned out) larger than the limit.
    PayloadTooLarge { limit: u64 },
    /// The body did not arrive within the body-read timeout.
    BodyTimeout,
    /// The body could not be read (bad chunked encoding, connection lost).
    BodyUnreadable,
    /// No instance slot or no body memory left; one is expected within `retry_after` seconds.
    Overloaded { retry_after: u64 },
    /// The client used up its allowance (`--rate-limit-per-minute`).
    RateLimited(Limited),
    /// The client already has `limit` requests in progress (`--max-requests-per-client`).
    ClientBusy { limit: u32, retry_after: u64 },
    /// The component gave no response (or, for a stream, did not finish it) within the
    /// request deadline.
    DeadlineExceeded,
    /// The server is stopping and the grace period is over.
    ShuttingDown,
    /// What the component stored could not be put on disk, so its answer is not sent.
    StoreUnavailable,
    /// The component failed; the detail is logged, not sent.
    Internal,
}

impl HostError {
    pub fn status(&self) -> StatusCode {
        match self {
            HostError::InvalidHeader { .. } | HostError::InvalidHost => StatusCode::BAD_REQUEST,
            HostError::BodyUnreadable => StatusCode::BAD_REQUEST,
            HostError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HostError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            HostError::Overloaded { .. }
            | HostError::ShuttingDown
            | HostError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            HostError::RateLimited(_) | HostError::ClientBusy { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            HostError::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            HostError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            HostError::InvalidHeader { .. } => "invalid_header",
            HostError::InvalidHost => "invalid_host",
            HostError::PayloadTooLarge { .. } => "payload_too_large",
            HostError::BodyTimeout => "request_timeout",
            HostError::BodyUnreadable => "invalid_body",
            HostError::Overloaded { .. } => "overloaded",
            HostError::RateLimited(_) => "rate_limited",
            HostError::ClientBusy { .. } => "too_many_in_progress",
            HostError::DeadlineExceeded => "deadline_exceeded",
            HostError::ShuttingDown => "shutting_down",
            HostError::StoreUnavailable => "store_unavailable",
            HostError::Internal => "internal_error",
        }
    }

    pub fn message(&self) -> String {
        match self {
            HostError::InvalidHeader { name } => format!(
                "header {name:?} has bytes that are not visible ASCII; send header values as ASCII"
            ),
            HostError::InvalidHost => "the Host header is not a valid host[:port]".to_owned(),
            HostError::PayloadTooLarge { limit } => {
                format!("request body is larger than {limit} bytes")
            }
            HostError::BodyTimeout => "the request body did not arrive in time".to_owned(),
            HostError::BodyUnreadable => "the request body could not be read".to_owned(),
            HostError::Overloaded { retry_after } => {
                format!("too many requests in flight; retry in {retry_after} s")
            }
            HostError::RateLimited(limited) => limited.message(),
            HostError::ClientBusy { limit, retry_after } => format!(
                "this client already has {limit} requests in progress, the most allowed; \
                 retry in {retry_after} s, or once one of them has ended"
            ),
            HostError::DeadlineExceeded => {
                "the request took longer than the server allows".to_owned()
            }
            HostError::ShuttingDown => {
                "the server is shutting down; retry, another instance will answer".to_owned()
            }
            HostError::StoreUnavailable => {
                "the service's key-value store (conversations, API keys) is unavailable right \
                 now; retry shortly"
                    .to_owned()
            }
            HostError::Internal => "the request could not be completed".to_owned(),
        }
    }

    /// The connection cannot (body not read to its end) or should not (a client over its
    /// share, whose connection is worth more to others) carry another request.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            HostError::PayloadTooLarge { .. }
                | HostError::BodyTimeout
                | HostError::BodyUnreadable
                | HostError::ClientBusy { .. }
        )
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            HostError::Overloaded { retry_after } | HostError::ClientBusy { retry_after, .. } => {
                Some(*retry_after)
            }
            HostError::ShuttingDown => Some(1),
            HostError::StoreUnavailable => Some(5),
            _ => None,
        }
    }

    /// The body in the shape of the route that was asked.
    fn body(&self, shape: Shape) -> Value {
        let status = self.status().as_u16();
        match shape {
            Shape::Service => {
                json!({ "error": self.message(), "status_code": status, "code": self.code() })
            }
            Shape::OpenAi => json!({ "error": {
                "message": self.message(),
                "type": openai_type(status),
                "param": null,
                "code": self.code(),
            }}),
        }
    }

    /// The response for a request to `path`, with the CORS headers its origin gets.
    pub fn into_response(
        self,
        path: &str,
        cors: &CorsHeaders,
    ) -> hyper::Response<HyperOutgoingBody> {
        let mut response = json_response(self.status(), &self.body(Shape::for_path(path)));
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let HostError::RateLimited(limited) = &self {
            headers.extend(limited.headers());
        }
        if self.closes_connection() {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        cors.apply(headers);
        response
    }

    /// What ends a stream the host cuts: an `error` event on `/chat`, an error chunk on `/v1`,
    /// each with the body a whole response would have had.
    pub fn stream_event(&self, path: &str) -> Bytes {
        let shape = Shape::for_path(path);
        let body = self.body(shape);
        Bytes::from(match shape {
            Shape::Service => format!("event: error\ndata: {body}\n\n"),
            Shape::OpenAi => format!("data: {body}\n\n"),
        })
    }
}

/// The error shape of a route: the service's own, or OpenAI's under `/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Service,
    OpenAi,
}

impl Shape {
    fn for_path(path: &str) -> Shape {
        if path == "/v1" || path.starts_with("/v1/") {
            Shape::OpenAi
        } else {
            Shape::Service
        }
    }
}

/// OpenAI's error `type` for a status, as the component maps its own errors on `/v1`.
fn openai_type(status: u16) -> &'static str {
    match status {
        401 | 403 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn error_body(status: StatusCode, code: &str, message: &str) -> String {
    json!({ "error": message, "status_code": status.as_u16(), "code": code }).to_string()
}

fn json_response(status: StatusCode, body: &Value) -> hyper::Response<HyperOutgoingBody> {
    let body = body.to_string();
    let mut response = hyper::Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The complete HTTP/1.1 response sent instead of hyper's bodiless answer to a request it could
/// not parse (`status` is the one hyper chose). The connection closes after it, as hyper's does.
pub fn protocol_error_response(status: StatusCode) -> Vec<u8> {
    let (code, message) = match status {
        StatusCode::BAD_REQUEST => (
            "bad_request",
            "the request is not valid HTTP/1.1: check the request line, header syntax, \
             Content-Length and Transfer-Encoding",
        ),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request target is too long"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            "the request head is too large: at most 64 KiB and 100 headers",
        ),
        _ => (
            "protocol_error",
            "the request could not be read as HTTP/1.1",
        ),
    };
    let body = error_body(status, code, message);
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_errors_are_json_in_the_error_shape() {
        let raw = protocol_error_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["status_code"], 431);
        assert_eq!(json["code"], "headers_too_large");
    }

    #[test]
    fn unread_bodies_close_the_connection_and_overload_says_when_to_retry() {
        let none = CorsHeaders::default();
        let response = HostError::PayloadTooLarge { limit: 10 }.into_response("/chat", &none);
        assert_eq!(response.status(), 413);
        assert_eq!(response.headers()[CONNECTION], "close");
        let response = HostError::Overloaded { retry_after: 7 }.into_response("/chat", &none);
        assert_eq!(response.headers()[RETRY_AFTER], "7");
        assert!(!response.headers().contains_key(CONNECTION));
        let busy = HostError::ClientBusy {
            limit: 2,
            retry_after: 3,
        };
        let response = busy.into_response("/chat", &none);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        assert_eq!(response.headers()[CONNECTION], "close");
    }

    #[test]
    fn v1_errors_are_in_openais_shape() {
        let error = HostError::PayloadTooLarge { limit: 10 };
        let body = error.body(Shape::for_path("/v1/chat/completions"));
        assert_eq!(body["error"]["code"], "payload_too_large");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["message"].is_string());
        assert!(body["error"]["param"].is_null());
        let body = HostError::Overloaded { retry_after: 1 }.body(Shape::for_path("/chat"));
        assert_eq!(body["code"], "overloaded");
        assert_eq!(body["status_code"], 503);
        assert_eq!(
            Shape::for_path("/v1x"),
            Shape::Service,
            "only the /v1 routes"
        );
    }

    #[test]
    fn cut_streams_end_with_an_error_event_in_the_routes_format() {
        let chat = HostError::DeadlineExceeded.stream_event("/chat");
        let text = std::str::from_utf8(&chat).unwrap();
        let data = text
            .strip_prefix("event: error\ndata: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap();
        let json: Value = serde_json::from_str(data).unwrap();
        assert_eq!(json["code"], "deadline_exceeded");
        assert_eq!(json["status_code"], 504);
        let v1 = HostError::ShuttingDown.stream_event("/v1/chat/completions");
        let text = std::str::from_utf8(&v1).unwrap();
        let data = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap();
        let json: Value = serde_json::from_str(data).unwrap();
        assert_eq!(json["error"]["code"], "shutting_down");
        assert_eq!(json["error"]["type"], "server_error");
    }
}
