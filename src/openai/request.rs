//! Reading a chat-completions body into the shared chat flow's terms: the conversation (for
//! `/chat`'s routing and limits, and as Gemini `contents`), the options, tools and output
//! format. Every field OpenAI defines is either honoured or refused with a 400 naming it;
//! fields OpenAI does not define are ignored.

use serde_json::{Map, Value, json};

use crate::config::{ThinkingLevel, Variables};
use crate::error::ApiError;
use crate::gemini::{self, Content, Part};
use crate::persona::Persona;
use crate::validation::{self, ChatRequest, Role, ValidationIssue};

use super::{AUTO_MODEL, tools};

/// Most stop sequences Gemini takes.
const MAX_STOP_SEQUENCES: usize = 5;

/// A refused request (a 400 on `/v1`).
pub type Invalid = ApiError;

/// A chat-completions request, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The model the request named (echoed in the answer).
    pub model: String,
    /// The newest user message and the text turns before it: routed, and held to `/chat`'s
    /// limits.
    pub chat: ChatRequest,
    /// The caller's system and developer messages, joined.
    pub system: Option<String>,
    /// Everything else Gemini is asked, the whole conversation included.
    pub options: gemini::Options,
    pub include_usage: bool,
}

/// Reads a chat-completions body.
pub fn parse(body: &[u8], vars: &impl Variables) -> Result<Completion, ApiError> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        // `/chat`'s parser reports JSON errors (and an empty body) in its usual shape.
        Err(_) => return Err(validation::parse_chat_request(body).unwrap_err().into()),
    };
    let Value::Object(fields) = value else {
        return Err(invalid_at(
            &[],
            "model_attributes_type",
            "the body must be a JSON object",
        ));
    };
    refuse_unsupported(&fields)?;

    let model = match fields.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_owned(),
        _ => {
            return Err(invalid(
                "model",
                "missing",
                "`model` is required (see GET /v1/models)",
            ));
        }
    };
    let persona = persona_for(&model, vars)?;
    let conversation = Conversation::read(fields.get("messages"))?;

    let mut chat_fields = Map::new();
    chat_fields.insert("message".into(), json!(conversation.question));
    chat_fields.insert(
        "history".into(),
        Value::Array(
            conversation
                .history
                .iter()
                .map(|(role, content)| {
                    json!({
                        "role": if *role == Role::User { "user" } else { "assistant" },
                        "content": content,
                    })
                })
                .collect(),
        ),
    );
    if let Some(tokens) = fields
        .get("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| fields.get("max_tokens"))
    {
        chat_fields.insert("max_output_tokens".into(), tokens.clone());
    }
    if let Some(effort) = fields.get("reasoning_effort").filter(|v| !v.is_null()) {
        let level = match effort.as_str() {
            Some("none") => Some(ThinkingLevel::Minimal),
            Some(e) => ThinkingLevel::parse(e),
            None => None,
        };
        match level {
            Some(level) => chat_fields.insert("thinking_level".into(), json!(level.as_str())),
            None => {
                return Err(invalid(
                    "reasoning_effort",
                    "literal_error",
                    "reasoning_effort must be one of none, minimal, low, medium, high",
                ));
            }
        };
    }
    if let Some(stream) = fields.get("stream") {
        chat_fields.insert("stream".into(), stream.clone());
    }
    let mut chat =
        validation::parse_chat_request(Value::Object(chat_fields).to_string().as_bytes())?;
    chat.persona = persona;

    if let Some(n) = fields.get("n").filter(|v| !v.is_null())
        && n.as_u64() != Some(1)
    {
        return Err(invalid("n", "unsupported_value", "only n = 1 is supported"));
    }
    let tools = tools::parse(&fields)?;
    let (response_mime_type, response_json_schema) =
        response_format(fields.get("response_format"))?;
    let options = gemini::Options {
        temperature: number(&fields, "temperature", 0.0..=2.0)?,
        top_p: number(&fields, "top_p", 0.0..=1.0)?,
        presence_penalty: number(&fields, "presence_penalty", -2.0..=2.0)?,
        frequency_penalty: number(&fields, "frequency_penalty", -2.0..=2.0)?,
        seed: match fields.get("seed") {
            None | Some(Value::Null) => None,
            Some(seed) => Some(
                // Gemini's seed is an int32.
                seed.as_i64()
                    .filter(|s| i32::try_from(*s).is_ok())
                    .ok_or_else(|| {
                        invalid("seed", "invalid_value", "seed must be a 32-bit integer")
                    })?,
            ),
        },
        stop_sequences: stop_sequences(fields.get("stop"))?,
        contents: Some(conversation.contents),
        tools: tools.tools,
        tool_config: tools.config,
        response_mime_type,
        response_json_schema,
    };
    let include_usage = match fields.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(invalid(
                    "stream_options.include_usage",
                    "invalid_type",
                    "stream_options.include_usage must be a boolean",
                ));
            }
        },
        Some(_) => {
            return Err(invalid(
                "stream_options",
                "invalid_type",
                "stream_options must be an object",
            ));
        }
    };
    Ok(Completion {
        model,
        chat,
        system: conversation.system,
        options,
        include_usage,
    })
}

/// OpenAI request fields this service cannot honour: refused, never silently dropped. A
/// field's neutral value (`false`, `null`, an empty map) is accepted.
fn refuse_unsupported(fields: &Map<String, Value>) -> Result<(), Invalid> {
    let neutral = |name: &str, ok: &dyn Fn(&Value) -> bool| match fields.get(name) {
        Some(v) if !v.is_null() && !ok(v) => Err(invalid(
            name,
            "unsupported_value",
            &format!("`{name}` is not supported by this service (Gemini has no equivalent)"),
        )),
        _ => Ok(()),
    };
    neutral("logprobs", &|v| v == &json!(false))?;
    neutral("top_logprobs", &|v| v == &json!(0))?;
    neutral("logit_bias", &|v| v.as_object().is_some_and(Map::is_empty))?;
    neutral("audio", &|_| false)?;
    neutral("prediction", &|_| false)?;
    neutral("web_search_options", &|_| false)?;
    neutral("functions", &|_| false)?;
    neutral("function_call", &|_| false)?;
    neutral("modalities", &|v| v == &json!(["text"]))?;
    neutral("store", &|v| v == &json!(false))?;
    Ok(())
}

/// `model`: a persona (`ion-lua`, …), or `ion-auto` / the configured Gemini model (routed).
fn persona_for(model: &str, vars: &impl Variables) -> Result<Option<Persona>, ApiError> {
    if model == AUTO_MODEL || super::gemini_models(vars).iter().any(|m| m == model) {
        return Ok(None);
    }
    match model.strip_prefix("ion-").and_then(Persona::parse) {
        Some(p) => Ok(Some(p)),
        None => Err(ApiError::ModelNotFound {
            model: model
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect(),
        }),
    }
}

/// `messages`, read once into what each consumer needs.
struct Conversation {
    system: Option<String>,
    /// The newest user message (or, in a conversation without one, the system message).
    question: String,
    /// Text turns before `question`.
    history: Vec<(Role, String)>,
    /// The whole conversation as Gemini contents (function calls and results included).
    contents: Vec<Content>,
}

impl Conversation {
    fn read(messages: Option<&Value>) -> Result<Conversation, Invalid> {
        let Some(Value::Array(messages)) =
            messages.filter(|m| m.as_array().is_some_and(|a| !a.is_empty()))
        else {
            return Err(invalid(
                "messages",
                "missing",
                "`messages` must be a non-empty array",
            ));
        };
        let mut system: Vec<String> = Vec::new();
        // (role, text) of the user and assistant text, in order, with the index of the last
        // user message.
        let mut texts: Vec<(Role, String)> = Vec::new();
        let mut last_user: Option<usize> = None;
        let mut contents: Vec<Content> = Vec::new();
        // Tool call ids the assistant made, and their function names.
        let mut calls: Vec<(String, String)> = Vec::new();
        let mut last_role = "";
        for (i, message) in messages.iter().enumerate() {
            let role = message["role"].as_str().unwrap_or_default();
            let param = format!("messages.{i}.content");
            if !(message["name"].is_null() || message["name"].is_string()) {
                return Err(invalid(
                    &format!("messages.{i}.name"),
                    "invalid_type",
                    "name must be a string",
                ));
            }
            match role {
                "system" | "developer" => {
                    system.push(said(&message["content"], &param)?);
                    continue;
                }
                "user" => {
                    let text = said(&message["content"], &param)?;
                    last_user = Some(texts.len());
                    texts.push((Role::User, text.clone()));
                    push(&mut contents, "user", Part::text(text));
                }
                "assistant" => {
                    let tool_calls = match &message["tool_calls"] {
                        Value::Null => &[][..],
                        Value::Array(c) => c.as_slice(),
                        _ => {
                            return Err(invalid(
                                &format!("messages.{i}.tool_calls"),
                                "invalid_type",
                                "tool_calls must be a list",
                            ));
                        }
                    };
                    let text = match &message["content"] {
                        Value::Null if !tool_calls.is_empty() => None,
                        Value::String(s) if s.is_empty() && !tool_calls.is_empty() => None,
                        content => Some(said(content, &param)?),
                    };
                    if let Some(text) = text {
                        texts.push((Role::Assistant, text.clone()));
                        push(&mut contents, "model", Part::text(text));
                    }
                    for (id, part) in tools::call_parts(tool_calls, i)? {
                        if calls.iter().any(|(made, _)| *made == id) {
                            return Err(invalid(
                                &format!("messages.{i}.tool_calls"),
                                "invalid_value",
                                &format!(
                                    "the tool call id {id:?} is used twice in the conversation"
                                ),
                            ));
                        }
                        let name = part
                            .function_call
                            .as_ref()
                            .map(|c| c.name.clone())
                            .unwrap_or_default();
                        calls.push((id, name));
                        push(&mut contents, "model", part);
                    }
                }
                "tool" => {
                    let id = message["tool_call_id"].as_str().unwrap_or_default();
                    let Some((_, name)) = calls.iter().find(|(call, _)| call == id) else {
                        return Err(invalid(
                            &format!("messages.{i}.tool_call_id"),
                            "invalid_value",
                            "tool_call_id must be the id of a tool call an earlier assistant message made",
                        ));
                    };
                    let text = text_of(&message["content"]).ok_or_else(|| content_error(&param))?;
                    push(&mut contents, "user", tools::result_part(name, &text));
                }
                _ => {
                    return Err(invalid(
                        &format!("messages.{i}.role"),
                        "invalid_value",
                        "role must be one of system, developer, user, assistant, tool",
                    ));
                }
            }
            last_role = role;
        }
        let system = (!system.is_empty()).then(|| system.join("\n\n"));
        let Some(last_user) = last_user else {
            // Only system (and no user) messages: the system message is the prompt.
            return match (system, contents.is_empty()) {
                (Some(prompt), true) => Ok(Conversation {
                    system: None,
                    question: prompt.clone(),
                    history: Vec::new(),
                    contents: vec![Content {
                        role: Some("user".into()),
                        parts: vec![Part::text(prompt)],
                    }],
                }),
                _ => Err(invalid(
                    "messages",
                    "invalid_value",
                    "the conversation needs a user message",
                )),
            };
        };
        if last_role == "assistant" {
            return Err(invalid(
                "messages",
                "invalid_value",
                "the last message must be from the user (or a tool's result): Gemini does not \
                 continue an assistant message",
            ));
        }
        let question = texts[last_user].1.clone();
        texts.truncate(last_user);
        Ok(Conversation {
            system,
            question,
            history: texts,
            contents,
        })
    }
}

/// Appends a part, joining it to the last content when the role is the same (Gemini expects
/// the roles to alternate).
fn push(contents: &mut Vec<Content>, role: &str, part: Part) {
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.push(part),
        _ => contents.push(Content {
            role: Some(role.into()),
            parts: vec![part],
        }),
    }
}

/// A message's text: a string, or the text parts of a content list (at least one; each part
/// not blank and without control characters, as the document says).
fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) if !parts.is_empty() => parts
            .iter()
            .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                (Some("text"), Some(text))
                    if !text.trim().is_empty() && validation::forbidden_control(text).is_none() =>
                {
                    Some(text)
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(|texts| texts.concat()),
        _ => None,
    }
}

/// A user or assistant message's text, held to `/chat`'s rules wherever it stands: not
/// blank, and no control characters but tab, newline and CR.
fn said(content: &Value, param: &str) -> Result<String, Invalid> {
    let text = text_of(content).ok_or_else(|| content_error(param))?;
    if text.trim().is_empty() {
        return Err(invalid(param, "value_error", "content must not be blank"));
    }
    if let Some(c) = validation::forbidden_control(&text) {
        return Err(invalid(
            param,
            "value_error",
            &format!(
                "content must not contain control characters (found U+{:04X})",
                u32::from(c)
            ),
        ));
    }
    Ok(text)
}

fn content_error(param: &str) -> Invalid {
    invalid(
        param,
        "invalid_value",
        "content must be a string or a list of text parts (images and audio are not supported)",
    )
}

/// `response_format`: text, a JSON object, or JSON following a schema.
fn response_format(
    format: Option<&Value>,
) -> Result<(Option<&'static str>, Option<Value>), Invalid> {
    const JSON: &str = "application/json";
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok((None, None));
    };
    match format["type"].as_str() {
        Some("text") => Ok((None, None)),
        Some("json_object") => Ok((Some(JSON), None)),
        Some("json_schema") => {
            let spec = &format["json_schema"];
            let named = spec["name"].as_str().is_some_and(|n| {
                !n.is_empty()
                    && n.len() <= 64
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
            if !named {
                return Err(invalid(
                    "response_format.json_schema.name",
                    "invalid_value",
                    "json_schema.name must be 1 to 64 letters, digits, `_` or `-`",
                ));
            }
            for (field, ok) in [
                ("description", spec["description"].is_string()),
                ("strict", spec["strict"].is_boolean()),
            ] {
                if !spec[field].is_null() && !ok {
                    return Err(invalid(
                        &format!("response_format.json_schema.{field}"),
                        "invalid_type",
                        &format!("json_schema.{field} has the wrong type"),
                    ));
                }
            }
            match &spec["schema"] {
                Value::Null => Ok((Some(JSON), None)),
                schema @ Value::Object(_) => Ok((Some(JSON), Some(schema.clone()))),
                _ => Err(invalid(
                    "response_format.json_schema.schema",
                    "invalid_type",
                    "json_schema.schema must be a JSON Schema object",
                )),
            }
        }
        _ => Err(invalid(
            "response_format",
            "invalid_value",
            "response_format.type must be text, json_object or json_schema",
        )),
    }
}

fn number(
    fields: &Map<String, Value>,
    name: &str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Option<f64>, Invalid> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if range.contains(&x) => Ok(Some(x)),
            _ => Err(invalid(
                name,
                "invalid_value",
                &format!(
                    "{name} must be a number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

fn stop_sequences(stop: Option<&Value>) -> Result<Vec<String>, Invalid> {
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items))
            if items.len() <= MAX_STOP_SEQUENCES && items.iter().all(Value::is_string) =>
        {
            Ok(items
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect())
        }
        Some(_) => Err(invalid(
            "stop",
            "invalid_value",
            "stop must be a string or a list of at most 5 strings",
        )),
    }
}

/// A refused field, named by its dotted path in the body.
pub fn invalid(param: &str, kind: &'static str, msg: &str) -> Invalid {
    ApiError::Validation(Box::new(ValidationIssue {
        kind,
        loc: vec![json!("body"), json!(param)],
        msg: msg.into(),
        input: Value::Null,
        ctx: None,
    }))
}

fn invalid_at(path: &[&str], kind: &'static str, msg: &str) -> Invalid {
    ApiError::Validation(Box::new(ValidationIssue {
        kind,
        loc: std::iter::once("body")
            .chain(path.iter().copied())
            .map(|p| json!(p))
            .collect(),
        msg: msg.into(),
        input: Value::Null,
        ctx: None,
    }))
}
