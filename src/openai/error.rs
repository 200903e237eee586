//! Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with OpenAI's
//! status codes: an invalid request is a 400 (where `/chat` keeps FastAPI's 422, and a request
//! Vertex AI refused a 502), an unknown path a 404 naming the URL as OpenAI does. `code` is this service's stable error code (or,
//! for an invalid request, the rule it broke).

use serde_json::{Value, json};

use crate::chat_log::ChatRecord;
use crate::error::{ApiError, UpstreamError};
use crate::reply::Reply;
use crate::response::ApiResponse;

/// A failure in OpenAI's error shape, noted in the log record.
pub fn failed<B>(error: ApiError, record: &mut ChatRecord) -> Reply<B> {
    let response = error_response(&error);
    record.set_failure(&error);
    record.status = response.status;
    Reply::Whole(response)
}

/// An error in OpenAI's shape and status, with the error's own headers. The dispatcher uses
/// it too, for a body it could not read and a caller it refused, so `/v1` never answers in
/// `/chat`'s shape.
pub fn error_response(error: &ApiError) -> ApiResponse {
    respond(error, None)
}

/// A path or method under `/v1` that has no route: OpenAI's `Invalid URL (METHOD /path)`.
pub fn route_error(error: &ApiError, method: &str, path: &str) -> ApiResponse {
    let message = match error {
        ApiError::NotFound { .. } => Some(format!(
            "Invalid URL ({} {})",
            crate::request::printable(method),
            crate::request::printable(path.split('?').next().unwrap_or_default())
        )),
        _ => None,
    };
    respond(error, message)
}

/// The response: OpenAI's status and shape, the error's own headers (`Allow`, `Retry-After`, …).
fn respond(error: &ApiError, message: Option<String>) -> ApiResponse {
    let mut response = ApiResponse::json(status(error), &openai_error(error, message));
    response.headers.extend(error.answer().headers);
    response
}

/// OpenAI's status for an error: 400 for an invalid request, else `/chat`'s. That includes a
/// request Vertex AI refused as invalid (400 INVALID_ARGUMENT): on `/v1` the caller wrote nearly
/// all of it (the conversation, tool calls and their signatures, tool and output schemas), so
/// the refusal is theirs to fix, with Vertex AI's own words; `/chat` builds its requests itself
/// and keeps the 502.
pub fn status(error: &ApiError) -> u16 {
    let refused = |e: &UpstreamError| matches!(e, UpstreamError::Status { status: 400, .. });
    match error {
        ApiError::Upstream(e) | ApiError::UpstreamAfter { error: e, .. } if refused(e) => 400,
        _ => match error.status() {
            422 => 400,
            status => status,
        },
    }
}

/// The error object (the first issue of a validation error).
pub fn openai_error(error: &ApiError, message: Option<String>) -> Value {
    let answer = error.answer();
    let (text, code, param) = match error {
        ApiError::Validation(issue) => {
            let param = issue
                .loc
                .iter()
                .skip(1)
                .map(|p| match p {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(".");
            let param = (!param.is_empty()).then_some(param);
            (json!(issue.msg), json!(issue.kind), json!(param))
        }
        ApiError::ModelNotFound { .. } => (
            answer.body["error"].clone(),
            answer.body["code"].clone(),
            json!("model"),
        ),
        _ => (
            answer.body["error"].clone(),
            answer.body["code"].clone(),
            Value::Null,
        ),
    };
    let text = message.map(Value::String).unwrap_or(text);
    // OpenAI's own types for a bad key and a spent quota.
    let kind = match (status(error), code.as_str()) {
        (_, Some("invalid_api_key")) => "invalid_request_error",
        (_, Some("budget_exceeded")) => "insufficient_quota",
        (401 | 403, _) => "authentication_error",
        (404, _) => "not_found_error",
        (429, _) => "rate_limit_error",
        (400..=499, _) => "invalid_request_error",
        _ => "server_error",
    };
    json!({ "error": { "message": text, "type": kind, "param": param, "code": code } })
}
