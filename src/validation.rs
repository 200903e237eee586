//! Parsing and validating the `POST /chat` body.
//!
//! Errors come out in the shape FastAPI (pydantic v2) gives, because the original service's
//! callers parse it: `{"detail": [{"type", "loc", "msg", "input", "ctx"?}]}` with status 422.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::{MAX_OUTPUT_TOKENS_LIMIT, ThinkingLevel};
use crate::conversation::ConversationId;
use crate::persona::Persona;

/// Longest accepted message, in characters (Unicode scalar values), after trimming.
pub const MAX_MESSAGE_CHARS: usize = 1000;
/// Most earlier turns a request may carry.
pub const MAX_HISTORY_TURNS: usize = 40;
/// Most characters all earlier turns may hold together.
pub const MAX_HISTORY_CHARS: usize = 24_000;

/// A validated chat request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The trimmed message.
    pub message: String,
    /// Earlier turns, oldest first.
    pub history: Vec<Turn>,
    /// A persona chosen by the caller; `None` routes by resonance.
    pub persona: Option<Persona>,
    pub thinking_level: Option<ThinkingLevel>,
    pub max_output_tokens: Option<u32>,
    /// Answer as Server-Sent Events.
    pub stream: bool,
    /// A server-side conversation to continue (never together with `history`).
    pub conversation_id: Option<ConversationId>,
}

/// Who said a turn of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One earlier turn of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub content: String,
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
    if let Some(c) = forbidden_control(message) {
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

    let history = parse_history(fields)?;
    let conversation_id = parse_conversation_id(fields)?;
    if conversation_id.is_some() && !history.is_empty() {
        return Err(issue(
            &["conversation_id"],
            "value_error",
            "Value error, send either conversation_id (the server keeps the history) or \
             history (you keep it), not both",
            fields["conversation_id"].clone(),
        )
        .with_ctx(json!({"error": "conversation_id and history are exclusive"})));
    }

    Ok(ChatRequest {
        message: message.to_owned(),
        history,
        conversation_id,
        // `auto` (or no persona) routes by resonance.
        persona: parse_choice(fields, "persona", |v| {
            if v.trim().eq_ignore_ascii_case("auto") {
                Some(None)
            } else {
                Persona::parse(v).map(Some)
            }
        })?
        .flatten(),
        thinking_level: parse_choice(fields, "thinking_level", |v| {
            ThinkingLevel::parse(v).map(Some)
        })?
        .flatten(),
        max_output_tokens: parse_max_output_tokens(fields)?,
        stream: match fields.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(issue(
                    &["stream"],
                    "bool_type",
                    "Input should be a valid boolean",
                    other.clone(),
                ));
            }
        },
    })
}

/// The valid values of each choice field, as FastAPI lists them in a `literal_error`.
fn expected(field: &str) -> String {
    let names: Vec<String> = match field {
        "persona" => std::iter::once("auto")
            .chain(Persona::ALL.map(Persona::name))
            .map(|n| format!("'{n}'"))
            .collect(),
        _ => ThinkingLevel::ALL
            .map(|l| format!("'{}'", l.as_str()))
            .to_vec(),
    };
    match names.split_last() {
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A string field with a fixed set of values; `parse` gives `None` for an unknown one.
fn parse_choice<T>(
    fields: &Map<String, Value>,
    name: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, Box<ValidationIssue>> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match parse(s) {
            Some(value) => Ok(Some(value)),
            None => {
                let expected = expected(name);
                Err(issue(
                    &[name],
                    "literal_error",
                    format!("Input should be {expected}"),
                    json!(printable(s)),
                )
                .with_ctx(json!({ "expected": expected })))
            }
        },
        Some(other) => Err(issue(
            &[name],
            "string_type",
            "Input should be a valid string",
            other.clone(),
        )),
    }
}

fn parse_max_output_tokens(
    fields: &Map<String, Value>,
) -> Result<Option<u32>, Box<ValidationIssue>> {
    let value = match fields.get("max_output_tokens") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let Some(n) = value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0)
            .map(|f| f as i64)
    }) else {
        return Err(issue(
            &["max_output_tokens"],
            "int_type",
            "Input should be a valid integer",
            value.clone(),
        ));
    };
    if n < 1 {
        return Err(issue(
            &["max_output_tokens"],
            "greater_than_equal",
            "Input should be greater than or equal to 1",
            value.clone(),
        )
        .with_ctx(json!({"ge": 1})));
    }
    if n > i64::from(MAX_OUTPUT_TOKENS_LIMIT) {
        return Err(issue(
            &["max_output_tokens"],
            "less_than_equal",
            format!("Input should be less than or equal to {MAX_OUTPUT_TOKENS_LIMIT}"),
            value.clone(),
        )
        .with_ctx(json!({"le": MAX_OUTPUT_TOKENS_LIMIT})));
    }
    Ok(Some(n as u32))
}

fn parse_conversation_id(
    fields: &Map<String, Value>,
) -> Result<Option<ConversationId>, Box<ValidationIssue>> {
    match fields.get("conversation_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => ConversationId::parse(s).map(Some).ok_or_else(|| {
            issue(
                &["conversation_id"],
                "string_pattern_mismatch",
                "String should match pattern '^[0-9a-f]{32}$'",
                json!(printable(s)),
            )
            .with_ctx(json!({"pattern": "^[0-9a-f]{32}$"}))
        }),
        Some(other) => Err(issue(
            &["conversation_id"],
            "string_type",
            "Input should be a valid string",
            other.clone(),
        )),
    }
}

fn parse_history(fields: &Map<String, Value>) -> Result<Vec<Turn>, Box<ValidationIssue>> {
    let items = match fields.get("history") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(issue(
                &["history"],
                "list_type",
                "Input should be a valid list",
                other.clone(),
            ));
        }
    };
    if items.len() > MAX_HISTORY_TURNS {
        return Err(issue(
            &["history"],
            "too_long",
            format!(
                "List should have at most {MAX_HISTORY_TURNS} items after validation, not {}",
                items.len()
            ),
            json!(format!("<{} turns>", items.len())),
        )
        .with_ctx(json!({"field_type": "List", "max_length": MAX_HISTORY_TURNS, "actual_length": items.len()})));
    }
    let mut turns = Vec::with_capacity(items.len());
    let mut total_chars = 0;
    for (i, item) in items.iter().enumerate() {
        let Value::Object(turn) = item else {
            return Err(issue_at(
                vec![json!("body"), json!("history"), json!(i)],
                "model_type",
                "Input should be a valid dictionary or object to extract fields from",
                item.clone(),
            ));
        };
        let at = |field: &str| vec![json!("body"), json!("history"), json!(i), json!(field)];
        let role = match turn.get("role") {
            Some(Value::String(r)) if r == "user" => Role::User,
            Some(Value::String(r)) if r == "assistant" => Role::Assistant,
            Some(other) => {
                return Err(issue_at(
                    at("role"),
                    "literal_error",
                    "Input should be 'user' or 'assistant'",
                    other.clone(),
                )
                .with_ctx(json!({"expected": "'user' or 'assistant'"})));
            }
            None => {
                return Err(issue_at(
                    at("role"),
                    "missing",
                    "Field required",
                    item.clone(),
                ));
            }
        };
        let content = match turn.get("content") {
            Some(Value::String(c)) => c,
            Some(other) => {
                return Err(issue_at(
                    at("content"),
                    "string_type",
                    "Input should be a valid string",
                    other.clone(),
                ));
            }
            None => {
                return Err(issue_at(
                    at("content"),
                    "missing",
                    "Field required",
                    item.clone(),
                ));
            }
        };
        if content.trim().is_empty() {
            return Err(issue_at(
                at("content"),
                "value_error",
                "Value error, content must not be blank",
                json!(content),
            )
            .with_ctx(json!({"error": "content must not be blank"})));
        }
        if let Some(c) = forbidden_control(content) {
            return Err(issue_at(
                at("content"),
                "value_error",
                format!(
                    "Value error, content must not contain control characters (found U+{:04X})",
                    u32::from(c)
                ),
                json!(format!("<{} characters>", content.chars().count())),
            )
            .with_ctx(json!({"error": "control characters are not allowed"})));
        }
        let chars = content.chars().count();
        // One turn alone can hold the whole budget; the schema states this bound per turn.
        if chars > MAX_HISTORY_CHARS {
            return Err(issue_at(
                at("content"),
                "string_too_long",
                format!("String should have at most {MAX_HISTORY_CHARS} characters"),
                json!(format!("<{chars} characters>")),
            )
            .with_ctx(json!({"max_length": MAX_HISTORY_CHARS})));
        }
        total_chars += chars;
        if total_chars > MAX_HISTORY_CHARS {
            return Err(issue(
                &["history"],
                "value_error",
                format!(
                    "Value error, history holds more than {MAX_HISTORY_CHARS} characters in total"
                ),
                json!(format!("<{} turns>", items.len())),
            )
            .with_ctx(json!({"error": "history too long", "max_characters": MAX_HISTORY_CHARS})));
        }
        turns.push(Turn {
            role,
            content: content.clone(),
        });
    }
    Ok(turns)
}

/// A control character other than tab, newline and carriage return.
pub fn forbidden_control(text: &str) -> Option<char> {
    text.chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

fn issue(
    path: &[&str],
    kind: &'static str,
    msg: impl Into<String>,
    input: Value,
) -> Box<ValidationIssue> {
    let loc = std::iter::once("body")
        .chain(path.iter().copied())
        .map(|p| json!(p))
        .collect();
    issue_at(loc, kind, msg, input)
}

fn issue_at(
    loc: Vec<Value>,
    kind: &'static str,
    msg: impl Into<String>,
    input: Value,
) -> Box<ValidationIssue> {
    Box::new(ValidationIssue {
        kind,
        loc,
        msg: msg.into(),
        input,
        ctx: None,
    })
}

/// Caller text echoed in an error: bounded and free of control characters.
fn printable(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect()
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
    fn options_are_read() {
        let req = parse_chat_request(
            json!({
                "message": "next?",
                "history": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"}
                ],
                "persona": "riri",
                "thinking_level": "High",
                "max_output_tokens": 2048,
                "stream": true
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(req.history.len(), 2);
        assert_eq!(req.history[1].role, Role::Assistant);
        assert_eq!(req.persona, Some(Persona::Riri));
        assert_eq!(req.thinking_level, Some(ThinkingLevel::High));
        assert_eq!(req.max_output_tokens, Some(2048));
        assert!(req.stream);

        let plain = parse_chat_request(br#"{"message": "hi", "persona": "auto", "history": null}"#)
            .unwrap();
        assert_eq!(plain.persona, None);
        assert!(plain.history.is_empty());
        assert!(!plain.stream);
    }

    #[test]
    fn bad_options_name_the_field_and_the_valid_values() {
        let issue = parse_chat_request(br#"{"message": "hi", "persona": "Gandalf"}"#).unwrap_err();
        assert_eq!(issue.kind, "literal_error");
        assert_eq!(issue.loc, vec![json!("body"), json!("persona")]);
        assert_eq!(
            issue.msg,
            "Input should be 'auto', 'Lua', 'Elro', 'Riri' or 'Nana'"
        );
        let issue =
            parse_chat_request(br#"{"message": "hi", "thinking_level": "max"}"#).unwrap_err();
        assert!(issue.msg.contains("'minimal', 'low', 'medium' or 'high'"));
        assert_eq!(kind(r#"{"message": "hi", "stream": "yes"}"#), "bool_type");
        assert_eq!(
            kind(r#"{"message": "hi", "max_output_tokens": 0}"#),
            "greater_than_equal"
        );
        assert_eq!(
            kind(r#"{"message": "hi", "max_output_tokens": 70000}"#),
            "less_than_equal"
        );
        assert_eq!(
            kind(r#"{"message": "hi", "max_output_tokens": "9"}"#),
            "int_type"
        );
        assert_eq!(kind(r#"{"message": "hi", "history": "x"}"#), "list_type");
        assert_eq!(kind(r#"{"message": "hi", "history": [1]}"#), "model_type");
        let issue = parse_chat_request(
            br#"{"message": "hi", "history": [{"role": "system", "content": "x"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            issue.loc,
            vec![json!("body"), json!("history"), json!(0), json!("role")]
        );
        assert_eq!(
            kind(r#"{"message": "hi", "history": [{"role": "user", "content": " "}]}"#),
            "value_error"
        );
    }

    #[test]
    fn history_is_bounded() {
        let turns: Vec<Value> = (0..=MAX_HISTORY_TURNS)
            .map(|_| json!({"role": "user", "content": "x"}))
            .collect();
        let body = json!({"message": "hi", "history": turns}).to_string();
        let issue = parse_chat_request(body.as_bytes()).unwrap_err();
        assert_eq!(issue.kind, "too_long");
        assert!(issue.msg.contains(&MAX_HISTORY_TURNS.to_string()));

        let big = "가".repeat(MAX_HISTORY_CHARS / 2 + 1);
        let body = json!({"message": "hi", "history": [
            {"role": "user", "content": big}, {"role": "assistant", "content": big}
        ]})
        .to_string();
        let issue = parse_chat_request(body.as_bytes()).unwrap_err();
        assert_eq!(issue.kind, "value_error");
        assert!(
            issue.msg.contains(&MAX_HISTORY_CHARS.to_string()),
            "{}",
            issue.msg
        );

        // One turn over the whole budget is named where it is.
        let body = json!({"message": "hi", "history": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "y".repeat(MAX_HISTORY_CHARS + 1)}
        ]})
        .to_string();
        let issue = parse_chat_request(body.as_bytes()).unwrap_err();
        assert_eq!(issue.kind, "string_too_long");
        assert_eq!(
            issue.loc,
            vec![json!("body"), json!("history"), json!(1), json!("content")]
        );
    }

    #[test]
    fn too_long_input_is_not_echoed() {
        let body = json!({ "message": "x".repeat(10_000) }).to_string();
        let issue = parse_chat_request(body.as_bytes()).unwrap_err();
        assert_eq!(issue.input, json!("<10000 characters>"));
    }
}
