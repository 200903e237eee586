//! Parsing and validating the `POST /chat` body.
//!
//! Errors come out in the shape FastAPI (pydantic v2) gives, because the original service's
//! callers parse it: `{"detail": [{"type", "loc", "msg", "input", "ctx"?}]}` with status 422.

use serde::Serialize;
use serde_json::{Value, json};

/// Longest accepted message, in characters (Unicode scalar values), after trimming.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// A validated chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The trimmed message.
    pub message: String,
}

/// One entry of a 422 `detail` list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationIssue {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub loc: Vec<Value>,
    pub msg: String,
    pub input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

impl ValidationIssue {
    fn message_field(kind: &'static str, msg: impl Into<String>, input: Value) -> Box<Self> {
        Box::new(ValidationIssue {
            kind,
            loc: vec![json!("body"), json!("message")],
            msg: msg.into(),
            input,
            ctx: None,
        })
    }

    fn with_ctx(mut self: Box<Self>, ctx: Value) -> Box<Self> {
        self.ctx = Some(ctx);
        self
    }
}

/// Parses a `/chat` body (already size-checked) into a [`ChatRequest`].
pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, Box<ValidationIssue>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Box::new(ValidationIssue {
            kind: "missing",
            loc: vec![json!("body")],
            msg: "Field required".into(),
            input: Value::Null,
            ctx: None,
        }));
    }

    let value: Value = serde_json::from_slice(body).map_err(|e| json_invalid(body, &e))?;
    let Value::Object(fields) = &value else {
        return Err(Box::new(ValidationIssue {
            kind: "model_attributes_type",
            loc: vec![json!("body")],
            msg: "Input should be a valid dictionary or object to extract fields from".into(),
            input: value,
            ctx: None,
        }));
    };

    // Unknown fields (such as the original callers' `user_id`) are ignored.
    let raw = match fields.get("message") {
        None => {
            return Err(ValidationIssue::message_field(
                "missing",
                "Field required",
                value.clone(),
            ));
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ValidationIssue::message_field(
                "string_type",
                "Input should be a valid string",
                other.clone(),
            ));
        }
    };

    let input = Value::String(raw.clone());
    let message = raw.trim();
    if raw.is_empty() {
        return Err(ValidationIssue::message_field(
            "string_too_short",
            "String should have at least 1 character",
            input,
        )
        .with_ctx(json!({"min_length": 1})));
    }
    if message.is_empty() {
        return Err(ValidationIssue::message_field(
            "value_error",
            "Value error, message must not be blank",
            input,
        )
        .with_ctx(json!({"error": "message must not be blank"})));
    }
    let chars = message.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        // Echoing a huge input back helps nobody: report its length instead.
        return Err(ValidationIssue::message_field(
            "string_too_long",
            format!("String should have at most {MAX_MESSAGE_CHARS} characters"),
            json!(format!("<{chars} characters>")),
        )
        .with_ctx(json!({"max_length": MAX_MESSAGE_CHARS})));
    }
    if let Some(c) = message
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ValidationIssue::message_field(
            "value_error",
            format!(
                "Value error, message must not contain control characters (found U+{:04X})",
                u32::from(c)
            ),
            input,
        )
        .with_ctx(json!({"error": "control characters are not allowed"})));
    }

    Ok(ChatRequest {
        message: message.to_owned(),
    })
}

fn json_invalid(body: &[u8], error: &serde_json::Error) -> Box<ValidationIssue> {
    // FastAPI reports the byte offset of the failure as the second `loc` element.
    let offset = offset_of(body, error.line(), error.column());
    Box::new(ValidationIssue {
        kind: "json_invalid",
        loc: vec![json!("body"), json!(offset)],
        msg: "JSON decode error".into(),
        input: json!({}),
        ctx: Some(json!({"error": error.to_string()})),
    })
}

/// Byte offset of a 1-based (line, column) position as serde_json reports it.
fn offset_of(body: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = body
        .split(|b| *b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(body: &str) -> &'static str {
        parse_chat_request(body.as_bytes()).unwrap_err().kind
    }

    #[test]
    fn accepts_and_trims_a_message() {
        let req = parse_chat_request(br#"{"message": "  hello  ", "user_id": "u-1"}"#).unwrap();
        assert_eq!(req.message, "hello");
    }

    #[test]
    fn counts_characters_not_bytes() {
        let korean = "가".repeat(MAX_MESSAGE_CHARS); // 3000 bytes
        let body = json!({ "message": korean }).to_string();
        assert!(parse_chat_request(body.as_bytes()).is_ok());
        let body = json!({ "message": format!("{korean}가") }).to_string();
        assert_eq!(kind(&body), "string_too_long");
    }

    #[test]
    fn emoji_and_newlines_are_fine() {
        let req = parse_chat_request("{\"message\": \"🚀 launch\\nplan 👩‍💻\"}".as_bytes()).unwrap();
        assert_eq!(req.message, "🚀 launch\nplan 👩‍💻");
    }

    #[test]
    fn error_kinds() {
        assert_eq!(kind(""), "missing");
        assert_eq!(kind("{}"), "missing");
        assert_eq!(kind(r#"{"msg": "hi"}"#), "missing");
        assert_eq!(kind(r#"{"message": 42}"#), "string_type");
        assert_eq!(kind(r#"{"message": null}"#), "string_type");
        assert_eq!(kind(r#"{"message": ["a"]}"#), "string_type");
        assert_eq!(kind(r#"{"message": ""}"#), "string_too_short");
        assert_eq!(kind(r#"{"message": " \n\t "}"#), "value_error");
        assert_eq!(kind(r#"{"message": "a\u0000b"}"#), "value_error");
        assert_eq!(kind(r#"{"message": "hi""#), "json_invalid");
        assert_eq!(kind("not json"), "json_invalid");
        assert_eq!(kind("[1, 2]"), "model_attributes_type");
        assert_eq!(kind("\"just a string\""), "model_attributes_type");
    }

    #[test]
    fn invalid_utf8_is_json_invalid() {
        let issue = parse_chat_request(b"{\"message\": \"\xff\xfe\"}").unwrap_err();
        assert_eq!(issue.kind, "json_invalid");
    }

    #[test]
    fn fastapi_shape() {
        let issue = parse_chat_request(br#"{"message": ""}"#).unwrap_err();
        assert_eq!(
            serde_json::to_value(&issue).unwrap(),
            json!({
                "type": "string_too_short",
                "loc": ["body", "message"],
                "msg": "String should have at least 1 character",
                "input": "",
                "ctx": {"min_length": 1}
            })
        );
        let issue = parse_chat_request(b"{\n  \"message\": oops}").unwrap_err();
        assert_eq!(issue.loc, vec![json!("body"), json!(15)]);
    }

    #[test]
    fn too_long_input_is_not_echoed() {
        let body = json!({ "message": "x".repeat(10_000) }).to_string();
        let issue = parse_chat_request(body.as_bytes()).unwrap_err();
        assert_eq!(issue.input, json!("<10000 characters>"));
    }
}
