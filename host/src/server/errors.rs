//! Every error the host answers by itself, in the component's error shape
//! `{"error","status_code","code"}`: the request errors of the handler, and the protocol errors
//! hyper answers on its own (their bodiless responses are rewritten by the connection).

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

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
    /// No instance slot or no body memory left.
    Overloaded,
    /// The client used up its allowance (`--rate-limit-per-minute`).
    RateLimited(Limited),
    /// The component gave no response head within the request deadline.
    DeadlineExceeded,
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
            HostError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            HostError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
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
            HostError::Overloaded => "overloaded",
            HostError::RateLimited(_) => "rate_limited",
            HostError::DeadlineExceeded => "deadline_exceeded",
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
            HostError::Overloaded => "too many requests in flight; retry shortly".to_owned(),
            HostError::RateLimited(limited) => limited.message(),
            HostError::DeadlineExceeded => {
                "the request took longer than the server allows".to_owned()
            }
            HostError::Internal => "the request could not be completed".to_owned(),
        }
    }

    /// The body was not read to its end: the connection cannot carry another request.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            HostError::PayloadTooLarge { .. } | HostError::BodyTimeout | HostError::BodyUnreadable
        )
    }

    pub fn into_response(self) -> hyper::Response<HyperOutgoingBody> {
        let mut response = json_response(self.status(), self.code(), &self.message());
        let headers = response.headers_mut();
        if self == HostError::Overloaded {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let HostError::RateLimited(limited) = &self {
            headers.extend(limited.headers());
        }
        if self.closes_connection() {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

fn error_body(status: StatusCode, code: &str, message: &str) -> String {
    serde_json::json!({ "error": message, "status_code": status.as_u16(), "code": code })
        .to_string()
}

fn json_response(
    status: StatusCode,
    code: &str,
    message: &str,
) -> hyper::Response<HyperOutgoingBody> {
    let body = error_body(status, code, message);
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
        let response = HostError::PayloadTooLarge { limit: 10 }.into_response();
        assert_eq!(response.status(), 413);
        assert_eq!(response.headers()[CONNECTION], "close");
        let response = HostError::Overloaded.into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert!(!response.headers().contains_key(CONNECTION));
    }
}
