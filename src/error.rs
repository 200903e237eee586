//! Every way a request can fail, and the one place where failures become HTTP responses.
//!
//! Error bodies keep the original service's shape, `{"error": "...", "status_code": N}`, plus a
//! stable machine-readable `code`. Validation errors keep FastAPI's 422 `{"detail": [...]}`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ConfigError;
use crate::response::ApiResponse;
use crate::validation::ValidationIssue;

/// A request that cannot be answered with a 2xx.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    Validation(Box<ValidationIssue>),
    PayloadTooLarge {
        limit: usize,
    },
    /// The client's body stream failed part-way; `detail` is for the log only.
    BodyUnreadable {
        detail: String,
    },
    UnsupportedMediaType {
        content_type: String,
    },
    NotFound {
        path: String,
    },
    MethodNotAllowed {
        allow: &'static str,
    },
    NotConfigured(ConfigError),
    Upstream(UpstreamError),
    /// A failed upstream call, with the attempts it took.
    UpstreamAfter {
        error: UpstreamError,
        attempts: u32,
    },
    /// A path with a trailing slash: FastAPI redirected it to the route without (307 keeps the
    /// method and body).
    Redirect {
        location: String,
    },
    /// An OpenAI-style request for a model this service does not offer.
    ModelNotFound {
        model: String,
    },
    /// A CORS preflight from an origin (or for a method) that is not allowed.
    CorsRejected {
        origin: String,
    },
    /// The key-value store failed or timed out; `detail` is for the log only.
    StoreUnavailable {
        detail: String,
    },
    /// No such conversation: never created, deleted, or expired.
    ConversationNotFound,
    /// The conversation holds its most turns.
    ConversationFull {
        limit: u64,
    },
    /// No key where one is required, or a key that is malformed, unknown or revoked.
    InvalidApiKey {
        missing: bool,
    },
    /// The caller's requests-per-minute limit (shared by every instance).
    RateLimited {
        requests_per_minute: u32,
        retry_after: u64,
    },
    /// The caller's daily token budget is spent; it starts again at UTC midnight.
    BudgetExceeded {
        daily_tokens: u64,
        used: u64,
        retry_after: u64,
        now: u64,
    },
    /// The admin API was called without its token, or with another.
    AdminUnauthorized,
    /// No API key with that id (the admin API).
    KeyNotFound,
}

/// A failed call to Vertex AI.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamError {
    /// Vertex answered with an error status (google.rpc.Status body).
    Status {
        status: u16,
        /// The google.rpc status name, e.g. `RESOURCE_EXHAUSTED`.
        reason: Option<String>,
        message: Option<String>,
        /// How long to wait, from `Retry-After` or a `RetryInfo` detail.
        retry_after: Option<Duration>,
    },
    /// No complete reply within the configured deadline.
    Timeout { after: Duration },
    /// No connection could be made (DNS, TCP, TLS, protocol). `what` is said to the client in
    /// words; `detail` (the runtime's own error) only goes to the log.
    Unreachable { what: &'static str, detail: String },
    /// The runtime's `allowed_outbound_hosts` refused the request.
    Denied { url: String },
    /// The runtime was to authenticate the request and has no usable credentials.
    CredentialsUnavailable,
    /// A 200 whose body is not a GenerateContentResponse.
    InvalidResponse { detail: String },
    /// The prompt or the answer was withheld by a content filter.
    Blocked { reason: String, stage: &'static str },
    /// A reply without answer text.
    EmptyAnswer { finish_reason: Option<String> },
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        ApiError::Upstream(e)
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        ApiError::NotConfigured(e)
    }
}

impl From<Box<ValidationIssue>> for ApiError {
    fn from(e: Box<ValidationIssue>) -> Self {
        ApiError::Validation(e)
    }
}

/// An error as the client is told it: status, code, JSON body and the headers that go with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorResponse {
    pub status: u16,
    /// The body's `code`, or for the two FastAPI shapes that carry none of their own,
    /// `validation_error` (422) and `redirect` (307).
    pub code: &'static str,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

/// The code of a FastAPI-shaped 422 (`{"detail": [...]}`), which has none in its body.
pub const VALIDATION_ERROR: &str = "validation_error";
/// The code of a trailing-slash 307, which has none in its body.
const REDIRECT: &str = "redirect";

impl ErrorResponse {
    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// A JSON response: `content-type`, then this error's own headers.
    pub fn into_response(self) -> ApiResponse {
        let mut response = ApiResponse::json(self.status, &self.body);
        response.headers.extend(self.headers);
        response
    }
}

/// Seconds a client is told to wait after a 429 when Vertex gave no hint.
const DEFAULT_RETRY_AFTER_SECS: u64 = 5;
/// Longest upstream message passed on to the caller.
const MAX_UPSTREAM_MESSAGE: usize = 300;

impl ApiError {
    /// Notes how many upstream attempts a failure took (said in the error body).
    pub fn with_attempts(self, attempts: u32) -> ApiError {
        match self {
            ApiError::Upstream(error) => ApiError::UpstreamAfter { error, attempts },
            other => other,
        }
    }

    /// The HTTP status the client is given.
    pub fn status(&self) -> u16 {
        self.answer().status
    }

    /// The stable machine-readable code (the body's `code`; see [`ErrorResponse::code`]).
    pub fn code(&self) -> &'static str {
        self.answer().code
    }

    /// The HTTP response for this error.
    pub fn to_response(&self) -> ApiResponse {
        self.answer().into_response()
    }

    /// This error as the client is told it.
    pub fn answer(&self) -> ErrorResponse {
        match self {
            ApiError::Validation(issue) => ErrorResponse {
                status: 422,
                code: VALIDATION_ERROR,
                body: json!({ "detail": [issue] }),
                headers: Vec::new(),
            },
            ApiError::PayloadTooLarge { limit } => error_body(
                413,
                "payload_too_large",
                format!("request body is larger than {limit} bytes"),
                json!({}),
            ),
            ApiError::BodyUnreadable { .. } => error_body(
                400,
                "body_unreadable",
                "the request body could not be read: the connection failed or the body was \
                 malformed part-way"
                    .into(),
                json!({}),
            ),
            ApiError::UnsupportedMediaType { content_type } => error_body(
                415,
                "unsupported_media_type",
                format!("Content-Type {content_type:?} is not supported: send application/json"),
                json!({}),
            ),
            ApiError::NotFound { path } => error_body(
                404,
                "not_found",
                format!("no route for {path}: see GET / for the endpoints"),
                json!({}),
            ),
            ApiError::MethodNotAllowed { allow } => error_body(
                405,
                "method_not_allowed",
                format!("method not allowed here; allowed: {allow}"),
                json!({}),
            )
            .with_header("allow", *allow),
            ApiError::NotConfigured(e) => error_body(
                503,
                "not_configured",
                format!("the service is not configured: {}", e.hint()),
                json!({ "variable": e.variable }),
            ),
            ApiError::Upstream(e) => e.answer(),
            ApiError::UpstreamAfter { error, attempts } => {
                let mut answer = error.answer();
                if let Value::Object(body) = &mut answer.body {
                    body.insert("attempts".into(), json!(attempts));
                }
                answer
            }
            ApiError::Redirect { location } => ErrorResponse {
                status: 307,
                code: REDIRECT,
                body: json!({ "detail": format!("this endpoint is {location}"), "location": location }),
                headers: Vec::new(),
            }
            .with_header("location", location.clone()),
            ApiError::ModelNotFound { model } => error_body(
                404,
                "model_not_found",
                format!(
                    "the model {model:?} does not exist here: see GET /v1/models for the choices"
                ),
                json!({}),
            ),
            ApiError::CorsRejected { origin } => error_body(
                403,
                "cors_origin_not_allowed",
                format!(
                    "cross-origin requests from {origin:?} are not allowed here (see the \
                     allowed_origins variable)"
                ),
                json!({}),
            ),
            ApiError::StoreUnavailable { .. } => error_body(
                503,
                "store_unavailable",
                "the service's key-value store (conversations, API keys) is unavailable right \
                 now; retry shortly, or send the history yourself (the `history` field) to chat \
                 without a stored conversation"
                    .into(),
                json!({}),
            )
            .with_header("retry-after", "5"),
            ApiError::ConversationNotFound => error_body(
                404,
                "conversation_not_found",
                "no such conversation: it was deleted, has expired, or never existed; start a new \
                 one by sending no conversation_id"
                    .into(),
                json!({}),
            ),
            ApiError::ConversationFull { limit } => error_body(
                422,
                "conversation_full",
                format!(
                    "this conversation holds its most turns ({limit}); start a new one by sending \
                     no conversation_id"
                ),
                json!({ "turn_limit": limit }),
            ),
            ApiError::InvalidApiKey { missing } => error_body(
                401,
                "invalid_api_key",
                if *missing {
                    "an API key is required: send it as `Authorization: Bearer ion_sk_...`".into()
                } else {
                    "the API key is not valid: it is malformed, unknown or revoked".into()
                },
                json!({}),
            )
            .with_header("www-authenticate", "Bearer"),
            ApiError::RateLimited {
                requests_per_minute,
                retry_after,
            } => error_body(
                429,
                "rate_limited",
                format!(
                    "too many requests: the limit is {requests_per_minute} per minute; retry in \
                     {retry_after} s"
                ),
                json!({ "retry_after": retry_after, "requests_per_minute": requests_per_minute }),
            )
            .with_header("retry-after", retry_after.to_string())
            .with_header(
                "ratelimit-policy",
                format!("\"requests\";q={requests_per_minute};w=60"),
            )
            .with_header("ratelimit", format!("\"requests\";r=0;t={retry_after}")),
            ApiError::BudgetExceeded {
                daily_tokens,
                used,
                retry_after,
                now,
            } => {
                let resets_at = crate::access::admin::rfc3339(now + retry_after);
                error_body(
                    429,
                    "budget_exceeded",
                    format!(
                        "today's token budget ({daily_tokens} tokens) is spent ({used} used); it \
                         starts again at {resets_at}, in {retry_after} s"
                    ),
                    json!({
                        "retry_after": retry_after,
                        "resets_at": resets_at,
                        "daily_token_budget": daily_tokens,
                        "tokens_used": used,
                    }),
                )
                .with_header("retry-after", retry_after.to_string())
                .with_header(
                    "ratelimit-policy",
                    format!("\"tokens\";q={daily_tokens};w=86400"),
                )
                .with_header("ratelimit", format!("\"tokens\";r=0;t={retry_after}"))
            }
            ApiError::AdminUnauthorized => error_body(
                401,
                "invalid_admin_token",
                "the admin API needs `Authorization: Bearer <admin_token>`".into(),
                json!({}),
            )
            .with_header("www-authenticate", "Bearer"),
            ApiError::KeyNotFound => error_body(
                404,
                "key_not_found",
                "no API key has that id (it may have been revoked)".into(),
                json!({}),
            ),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::StoreUnavailable { detail: e.detail }
    }
}

impl UpstreamError {
    fn answer(&self) -> ErrorResponse {
        match self {
            UpstreamError::Status {
                status,
                reason,
                message,
                retry_after,
            } => {
                let upstream = json!({ "status": status, "reason": reason });
                let said = describe(*status, reason.as_deref(), message.as_deref());
                match status {
                    429 => {
                        // Whole seconds, rounded up: Retry-After has no fractions.
                        let wait = retry_after
                            .map(|d| d.as_millis().div_ceil(1000).max(1) as u64)
                            .unwrap_or(DEFAULT_RETRY_AFTER_SECS);
                        error_body(
                            429,
                            "upstream_rate_limited",
                            format!("Vertex AI is rate limiting this service ({said}); retry after {wait} s"),
                            json!({ "upstream": upstream, "retry_after": wait }),
                        )
                        .with_header("retry-after", wait.to_string())
                    }
                    401 | 403 => error_body(
                        502,
                        "upstream_auth_failed",
                        format!(
                            "Vertex AI rejected the service's credentials ({said}); check \
                             access_token and the caller's roles/aiplatform.user role"
                        ),
                        json!({ "upstream": upstream }),
                    ),
                    404 => error_body(
                        502,
                        "upstream_model_not_found",
                        format!(
                            "Vertex AI does not serve the configured model here ({said}); check \
                             the model, location and project_id variables"
                        ),
                        json!({ "upstream": upstream }),
                    ),
                    408 | 504 => error_body(
                        504,
                        "upstream_timeout",
                        format!("Vertex AI did not answer in time ({said})"),
                        json!({ "upstream": upstream }),
                    ),
                    _ => error_body(
                        502,
                        if *status >= 500 {
                            "upstream_error"
                        } else {
                            "upstream_rejected"
                        },
                        format!("Vertex AI failed the request ({said})"),
                        json!({ "upstream": upstream }),
                    ),
                }
            }
            UpstreamError::Timeout { after } => error_body(
                504,
                "upstream_timeout",
                format!("Vertex AI did not answer within {} ms", after.as_millis()),
                json!({}),
            ),
            UpstreamError::Unreachable { what, .. } => error_body(
                502,
                "upstream_unreachable",
                format!("Vertex AI could not be reached: {what}"),
                json!({}),
            ),
            UpstreamError::Denied { url } => error_body(
                503,
                "outbound_not_allowed",
                format!(
                    "the runtime does not allow requests to {url}: add its origin to \
                     allowed_outbound_hosts in spin.toml, or set vertex_endpoint to an allowed one"
                ),
                json!({}),
            ),
            UpstreamError::CredentialsUnavailable => error_body(
                503,
                "credentials_unavailable",
                "the runtime could not obtain Google credentials for Vertex AI; its logs say why"
                    .into(),
                json!({}),
            ),
            UpstreamError::InvalidResponse { detail } => error_body(
                502,
                "upstream_invalid_response",
                format!("Vertex AI sent a reply this service cannot read: {detail}"),
                json!({}),
            ),
            UpstreamError::Blocked { reason, stage } => error_body(
                400,
                "content_blocked",
                format!(
                    "Gemini's content filters withheld the {stage} ({reason}); no answer was \
                     generated. Rephrase the message and try again"
                ),
                json!({ "block_reason": reason, "stage": stage }),
            ),
            UpstreamError::EmptyAnswer { finish_reason } => error_body(
                502,
                "upstream_empty_answer",
                format!(
                    "Gemini returned no answer text (finish reason {})",
                    finish_reason.as_deref().unwrap_or("none")
                ),
                json!({ "finish_reason": finish_reason }),
            ),
        }
    }
}

fn describe(status: u16, reason: Option<&str>, message: Option<&str>) -> String {
    let mut said = format!("HTTP {status}");
    if let Some(reason) = reason {
        said.push(' ');
        said.push_str(reason);
    }
    if let Some(message) = message {
        said.push_str(": ");
        said.extend(message.chars().take(MAX_UPSTREAM_MESSAGE));
    }
    said
}

fn error_body(status: u16, code: &'static str, message: String, extra: Value) -> ErrorResponse {
    let mut body = json!({ "error": message, "status_code": status, "code": code });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    ErrorResponse {
        status,
        code,
        body,
        headers: Vec::new(),
    }
}

/// Reads an upstream error status and its google.rpc.Status body.
pub fn upstream_status_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> UpstreamError {
    #[derive(Deserialize)]
    struct Envelope {
        error: RpcStatus,
    }
    #[derive(Deserialize)]
    struct RpcStatus {
        message: Option<String>,
        status: Option<String>,
        #[serde(default)]
        details: Vec<Value>,
    }

    let parsed = serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.error);
    let retry_info_delay = parsed.as_ref().and_then(|s| {
        s.details
            .iter()
            .filter(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
            .find_map(|d| d["retryDelay"].as_str().and_then(parse_duration))
    });
    let retry_after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .or(retry_info_delay);
    let (reason, message) = match parsed {
        Some(s) => (s.status, s.message),
        None => (None, None),
    };
    UpstreamError::Status {
        status,
        reason,
        message,
        retry_after,
    }
}

/// `"30s"` / `"1.5s"` (protobuf Duration JSON), capped at an hour.
fn parse_duration(value: &str) -> Option<Duration> {
    let secs: f64 = value.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &ApiResponse) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn rate_limit_keeps_429_and_sets_retry_after() {
        let e = upstream_status_error(
            429,
            None,
            br#"{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
                 "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]}}"#,
        );
        let r = ApiError::from(e).to_response();
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("2"));
        let b = body(&r);
        assert_eq!(b["code"], "upstream_rate_limited");
        assert_eq!(b["status_code"], 429);
        assert_eq!(b["upstream"]["reason"], "RESOURCE_EXHAUSTED");
        assert!(b["error"].as_str().unwrap().contains("Quota exceeded"));
    }

    #[test]
    fn retry_after_header_wins_and_default_applies() {
        let e = upstream_status_error(429, Some("7"), b"not json");
        assert_eq!(
            ApiError::from(e).to_response().header("retry-after"),
            Some("7")
        );
        let e = upstream_status_error(429, None, b"");
        assert_eq!(
            ApiError::from(e).to_response().header("retry-after"),
            Some("5")
        );
    }

    #[test]
    fn upstream_statuses_map_to_distinct_codes() {
        let cases = [
            (500, 502, "upstream_error"),
            (503, 502, "upstream_error"),
            (504, 504, "upstream_timeout"),
            (401, 502, "upstream_auth_failed"),
            (403, 502, "upstream_auth_failed"),
            (404, 502, "upstream_model_not_found"),
            (400, 502, "upstream_rejected"),
        ];
        for (upstream, status, code) in cases {
            let r = ApiError::from(upstream_status_error(upstream, None, b"{}")).to_response();
            assert_eq!(r.status, status, "upstream {upstream}");
            assert_eq!(body(&r)["code"], code, "upstream {upstream}");
        }
    }

    #[test]
    fn an_error_knows_the_code_and_status_its_body_says() {
        let errors = [
            ApiError::NotFound { path: "/x".into() },
            ApiError::MethodNotAllowed { allow: "POST" },
            ApiError::ConversationNotFound,
            ApiError::Upstream(UpstreamError::Timeout {
                after: Duration::from_secs(1),
            })
            .with_attempts(3),
            ApiError::from(upstream_status_error(429, None, b"")),
        ];
        for e in errors {
            let r = e.to_response();
            assert_eq!(e.status(), r.status);
            assert_eq!(body(&r)["code"], e.code(), "{e:?}");
        }
        let after = ApiError::Upstream(UpstreamError::CredentialsUnavailable).with_attempts(2);
        assert_eq!(after.code(), "credentials_unavailable");
        assert_eq!(body(&after.to_response())["attempts"], 2);
        let issue = crate::validation::parse_chat_request(b"{}").unwrap_err();
        let validation = ApiError::Validation(issue);
        assert_eq!(
            (validation.status(), validation.code()),
            (422, VALIDATION_ERROR)
        );
        assert!(body(&validation.to_response()).get("code").is_none());
    }

    #[test]
    fn method_not_allowed_has_allow_header() {
        let r = ApiError::MethodNotAllowed { allow: "POST" }.to_response();
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("POST"));
        assert_eq!(body(&r)["status_code"], 405);
    }

    #[test]
    fn every_error_body_is_json_with_error_and_status() {
        let errors = [
            ApiError::PayloadTooLarge { limit: 10 },
            ApiError::UnsupportedMediaType {
                content_type: "text/plain".into(),
            },
            ApiError::NotFound { path: "/x".into() },
            ApiError::Upstream(UpstreamError::Timeout {
                after: Duration::from_secs(1),
            }),
            ApiError::Upstream(UpstreamError::Denied { url: "u".into() }),
            ApiError::Upstream(UpstreamError::Blocked {
                reason: "SAFETY".into(),
                stage: "prompt",
            }),
        ];
        for e in errors {
            let r = e.to_response();
            assert_eq!(r.header("content-type"), Some("application/json"));
            let b = body(&r);
            assert!(b["error"].is_string(), "{b}");
            assert_eq!(b["status_code"], r.status);
        }
    }
}
