//! The GenerateContent request: wire types and validation as strict as Google's.
//!
//! Google parses request JSON against the protobuf schema: unknown fields anywhere are a
//! 400 INVALID_ARGUMENT, and both the lowerCamelCase JSON name and the snake_case proto name
//! of a field are accepted. [`parse_request`] walks the JSON against a small schema, reports
//! errors with Google's wording and proto-style paths (`contents[0].parts[1]`), then rewrites
//! the document with camelCase names so serde can read it into the typed structs below.

use serde::Deserialize;
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;

use crate::status::ApiError;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    #[serde(default)]
    pub contents: Vec<Content>,
    pub system_instruction: Option<Content>,
    #[serde(default)]
    pub generation_config: GenerationConfig,
    #[serde(default)]
    pub safety_settings: Vec<SafetySetting>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Content {
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Part {
    pub text: Option<String>,
    pub thought: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<f64>,
    pub max_output_tokens: Option<i64>,
    pub candidate_count: Option<i64>,
    #[serde(default)]
    pub stop_sequences: Vec<String>,
    pub response_mime_type: Option<String>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub thinking_config: Option<ThinkingConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    pub thinking_budget: Option<i64>,
    /// The canonical enum name (`MINIMAL`, `LOW`, `MEDIUM`, `HIGH` or
    /// `THINKING_LEVEL_UNSPECIFIED`), whatever case the request used.
    pub thinking_level: Option<String>,
    pub include_thoughts: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SafetySetting {
    pub category: Option<String>,
    pub threshold: Option<String>,
    pub method: Option<String>,
}

impl Content {
    /// The text of the answer-bearing parts (thought parts left out), concatenated.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter(|p| p.thought != Some(true))
            .filter_map(|p| p.text.as_deref())
            .collect()
    }

    /// Characters of all part texts, thoughts included (they count as prompt input).
    pub fn chars(&self) -> usize {
        self.parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .map(|t| t.chars().count())
            .sum()
    }

    /// A missing or empty role means `user`, as on Vertex AI.
    pub fn role(&self) -> &str {
        match self.role.as_deref() {
            None | Some("") => "user",
            Some(role) => role,
        }
    }
}

impl GenerateContentRequest {
    /// The text of the last turn (which validation guarantees is a user turn).
    pub fn last_user_text(&self) -> String {
        self.contents.last().map(Content::text).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Schema

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Float,
    Int,
    /// Enum value names, in proto number order (index = number).
    Enum(&'static str, &'static [&'static str]),
    /// Like `Enum`, but names match in any case (`"low"` = `"LOW"`), as Google accepts for
    /// `thinkingLevel`; the canonical upper-case name is kept.
    EnumAnyCase(&'static str, &'static [&'static str]),
    Msg(&'static Message),
    /// `map<string, string>`, e.g. `labels`.
    StrMap,
}

struct Message {
    type_name: &'static str,
    fields: &'static [Field],
}

struct Field {
    json: &'static str,
    proto: &'static str,
    kind: Kind,
    repeated: bool,
}

const fn one(json: &'static str, proto: &'static str, kind: Kind) -> Field {
    Field {
        json,
        proto,
        kind,
        repeated: false,
    }
}

const fn many(json: &'static str, proto: &'static str, kind: Kind) -> Field {
    Field {
        json,
        proto,
        kind,
        repeated: true,
    }
}

const TYPE_PREFIX: &str = "type.googleapis.com/google.cloud.aiplatform.v1.";

static PART: Message = Message {
    type_name: "Part",
    fields: &[
        one("text", "text", Kind::Str),
        one("thought", "thought", Kind::Bool),
    ],
};

static CONTENT: Message = Message {
    type_name: "Content",
    fields: &[
        one("role", "role", Kind::Str),
        many("parts", "parts", Kind::Msg(&PART)),
    ],
};

/// In proto number order: MINIMAL came last, after the original three levels.
pub const THINKING_LEVELS: &[&str] = &[
    "THINKING_LEVEL_UNSPECIFIED",
    "LOW",
    "MEDIUM",
    "HIGH",
    "MINIMAL",
];

static THINKING_CONFIG: Message = Message {
    type_name: "GenerationConfig.ThinkingConfig",
    fields: &[
        one("thinkingBudget", "thinking_budget", Kind::Int),
        one(
            "thinkingLevel",
            "thinking_level",
            Kind::EnumAnyCase(
                "GenerationConfig.ThinkingConfig.ThinkingLevel",
                THINKING_LEVELS,
            ),
        ),
        one("includeThoughts", "include_thoughts", Kind::Bool),
    ],
};

static GENERATION_CONFIG: Message = Message {
    type_name: "GenerationConfig",
    fields: &[
        one("temperature", "temperature", Kind::Float),
        one("topP", "top_p", Kind::Float),
        one("topK", "top_k", Kind::Float),
        one("maxOutputTokens", "max_output_tokens", Kind::Int),
        one("candidateCount", "candidate_count", Kind::Int),
        many("stopSequences", "stop_sequences", Kind::Str),
        one("responseMimeType", "response_mime_type", Kind::Str),
        one("seed", "seed", Kind::Int),
        one("presencePenalty", "presence_penalty", Kind::Float),
        one("frequencyPenalty", "frequency_penalty", Kind::Float),
        one(
            "thinkingConfig",
            "thinking_config",
            Kind::Msg(&THINKING_CONFIG),
        ),
    ],
};

const HARM_CATEGORIES: &[&str] = &[
    "HARM_CATEGORY_UNSPECIFIED",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
];

const HARM_THRESHOLDS: &[&str] = &[
    "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
    "BLOCK_LOW_AND_ABOVE",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_NONE",
    "OFF",
];

const HARM_METHODS: &[&str] = &["HARM_BLOCK_METHOD_UNSPECIFIED", "SEVERITY", "PROBABILITY"];

static SAFETY_SETTING: Message = Message {
    type_name: "SafetySetting",
    fields: &[
        one(
            "category",
            "category",
            Kind::Enum("HarmCategory", HARM_CATEGORIES),
        ),
        one(
            "threshold",
            "threshold",
            Kind::Enum("SafetySetting.HarmBlockThreshold", HARM_THRESHOLDS),
        ),
        one(
            "method",
            "method",
            Kind::Enum("SafetySetting.HarmBlockMethod", HARM_METHODS),
        ),
    ],
};

static REQUEST: Message = Message {
    type_name: "GenerateContentRequest",
    fields: &[
        many("contents", "contents", Kind::Msg(&CONTENT)),
        one(
            "systemInstruction",
            "system_instruction",
            Kind::Msg(&CONTENT),
        ),
        one(
            "generationConfig",
            "generation_config",
            Kind::Msg(&GENERATION_CONFIG),
        ),
        many(
            "safetySettings",
            "safety_settings",
            Kind::Msg(&SAFETY_SETTING),
        ),
        one("labels", "labels", Kind::StrMap),
    ],
};

// ---------------------------------------------------------------------------------------------
// Parsing

fn payload_error(detail: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_argument(format!("Invalid JSON payload received. {detail}"))
}

fn invalid_value(path: &str, type_name: &str, value: &Value) -> ApiError {
    payload_error(format_args!(
        "Invalid value at '{path}' ({type_name}), {value}"
    ))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Largest `maxOutputTokens` Gemini 3 models accept.
pub const MAX_OUTPUT_TOKENS_LIMIT: i64 = 65_536;

/// Parses and checks a request body: JSON syntax, schema (unknown names, value types), then
/// the semantic rules of [`validate`]. An empty body counts as `{}`, as with Google.
pub fn parse_request(body: &[u8]) -> Result<GenerateContentRequest, ApiError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| payload_error(format_args!("Unexpected token or malformed JSON: {e}.")))?
    };
    let normalized = normalize_message(&value, &REQUEST, "")?;
    let request: GenerateContentRequest =
        serde_json::from_value(normalized).map_err(|e| payload_error(format_args!("{e}")))?;
    validate(&request)?;
    Ok(request)
}

fn normalize_message(value: &Value, message: &Message, path: &str) -> Result<Value, ApiError> {
    let object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(payload_error(
                "Proto field is not repeating, cannot start list.",
            ));
        }
        other => {
            return Err(invalid_value(
                path,
                &format!("{TYPE_PREFIX}{}", message.type_name),
                other,
            ));
        }
    };
    let mut out = Map::new();
    for (key, field_value) in object {
        let Some(field) = message
            .fields
            .iter()
            .find(|f| f.json == key || f.proto == key)
        else {
            return Err(payload_error(if path.is_empty() {
                format!("Unknown name \"{key}\": Cannot find field.")
            } else {
                format!("Unknown name \"{key}\" at '{path}': Cannot find field.")
            }));
        };
        let field_path = join(path, field.proto);
        if out.contains_key(field.json) {
            return Err(payload_error(format_args!(
                "Field '{field_path}' is specified more than once."
            )));
        }
        // JSON null means "not set" in proto3 JSON.
        if field_value.is_null() {
            continue;
        }
        let normalized = if field.repeated {
            let Value::Array(items) = field_value else {
                return Err(invalid_value(
                    &field_path,
                    &kind_name(field.kind),
                    field_value,
                ));
            };
            let items = items
                .iter()
                .enumerate()
                .map(|(i, item)| normalize_value(item, field.kind, &format!("{field_path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Array(items)
        } else {
            if field_value.is_array() {
                return Err(payload_error(
                    "Proto field is not repeating, cannot start list.",
                ));
            }
            normalize_value(field_value, field.kind, &field_path)?
        };
        out.insert(field.json.to_string(), normalized);
    }
    Ok(Value::Object(out))
}

fn kind_name(kind: Kind) -> String {
    match kind {
        Kind::Str => "TYPE_STRING".into(),
        Kind::Bool => "TYPE_BOOL".into(),
        Kind::Float => "TYPE_FLOAT".into(),
        Kind::Int => "TYPE_INT32".into(),
        Kind::Enum(name, _) | Kind::EnumAnyCase(name, _) => format!("{TYPE_PREFIX}{name}"),
        Kind::Msg(message) => format!("{TYPE_PREFIX}{}", message.type_name),
        Kind::StrMap => "map<string, string>".into(),
    }
}

/// Checks one (non-repeated) value against its kind; proto3 JSON also accepts numbers as strings.
fn normalize_value(value: &Value, kind: Kind, path: &str) -> Result<Value, ApiError> {
    let bad = || invalid_value(path, &kind_name(kind), value);
    match kind {
        Kind::Str => value.is_string().then(|| value.clone()).ok_or_else(bad),
        Kind::Bool => value.is_boolean().then(|| value.clone()).ok_or_else(bad),
        Kind::Float => {
            let number = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
                _ => None,
            };
            number
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(bad)
        }
        Kind::Int => {
            let number = match value {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            number
                .filter(|n| i32::try_from(*n).is_ok())
                .map(|n| Value::Number(n.into()))
                .ok_or_else(bad)
        }
        Kind::Enum(_, names) => match value {
            Value::String(s) if names.contains(&s.as_str()) => Ok(value.clone()),
            Value::Number(n) => n
                .as_u64()
                .and_then(|i| names.get(i as usize))
                .map(|name| Value::String(name.to_string()))
                .ok_or_else(bad),
            _ => Err(bad()),
        },
        Kind::EnumAnyCase(_, names) => match value {
            Value::String(s) => names
                .iter()
                .find(|name| name.eq_ignore_ascii_case(s))
                .map(|name| Value::String(name.to_string()))
                .ok_or_else(bad),
            _ => normalize_value(value, Kind::Enum("", names), path).map_err(|_| bad()),
        },
        Kind::Msg(message) => normalize_message(value, message, path),
        Kind::StrMap => {
            let Value::Object(map) = value else {
                return Err(bad());
            };
            for (key, item) in map {
                if !item.is_string() {
                    return Err(invalid_value(
                        &format!("{path}[{key}]"),
                        "TYPE_STRING",
                        item,
                    ));
                }
            }
            Ok(value.clone())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Semantic checks

/// The request-level rules Vertex AI enforces after parsing.
pub fn validate(request: &GenerateContentRequest) -> Result<(), ApiError> {
    let invalid = |m: String| Err(ApiError::invalid_argument(m));
    if request.contents.is_empty() {
        return invalid(
            "Unable to submit request because it must include at least one contents field, \
             which describes the prompt input. Learn more: \
             https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini"
                .into(),
        );
    }
    for (i, content) in request.contents.iter().enumerate() {
        if !matches!(content.role(), "user" | "model") {
            return invalid(format!(
                "Please use a valid role: user, model. Got '{}' at 'contents[{i}].role'.",
                content.role()
            ));
        }
        check_parts(content, &format!("contents[{i}]"))?;
    }
    if request.contents.last().map(Content::role) != Some("user") {
        return invalid(
            "Please ensure that multiturn requests alternate between user and model, \
             and end with a user turn."
                .into(),
        );
    }
    if let Some(system) = &request.system_instruction {
        check_parts(system, "system_instruction")?;
    }
    let config = &request.generation_config;
    if let Some(t) = config.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return invalid(format!(
            "Unable to submit request because it has a temperature value of {t} but the \
             supported range is from 0 (inclusive) to 2.0001 (exclusive). Update the value and \
             try again."
        ));
    }
    if let Some(n) = config.candidate_count
        && n != 1
    {
        return invalid(format!(
            "Unable to submit request because candidateCount is {n} but only 1 candidate is \
             supported."
        ));
    }
    if let Some(n) = config.max_output_tokens
        && !(1..=MAX_OUTPUT_TOKENS_LIMIT).contains(&n)
    {
        return invalid(format!(
            "Unable to submit request because it has a maxOutputTokens value of {n} but the \
             supported range is from 1 (inclusive) to 65537 (exclusive). Update the value and \
             try again."
        ));
    }
    Ok(())
}

fn check_parts(content: &Content, path: &str) -> Result<(), ApiError> {
    if content.parts.is_empty() {
        return Err(ApiError::invalid_argument(format!(
            "Unable to submit request because it must include at least one parts field, which \
             describes the prompt input. Missing at '{path}.parts'."
        )));
    }
    for (j, part) in content.parts.iter().enumerate() {
        if part.text.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::invalid_argument(format!(
                "Unable to submit request because it has an empty text parameter at \
                 '{path}.parts[{j}]'. Add a value to the parameter and try again."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<GenerateContentRequest, ApiError> {
        parse_request(value.to_string().as_bytes())
    }

    fn message(value: Value) -> String {
        let err = parse(value).expect_err("expected a 400");
        assert_eq!((err.code, err.status), (400, "INVALID_ARGUMENT"));
        err.message
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "parts": [{"text": text}]})
    }

    #[test]
    fn full_camel_case_request_parses() {
        let request = parse(json!({
            "contents": [user("hi"), {"role": "model", "parts": [{"text": "yo", "thought": false}]}, user("again")],
            "systemInstruction": {"role": "system", "parts": [{"text": "Be kind."}]},
            "generationConfig": {
                "temperature": 0.7, "topP": 0.95, "topK": 40, "maxOutputTokens": 1024,
                "candidateCount": 1, "stopSequences": ["END"], "responseMimeType": "text/plain",
                "seed": 7, "presencePenalty": 0.1, "frequencyPenalty": 0.2,
                "thinkingConfig": {"thinkingBudget": 0, "includeThoughts": false}
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_MEDIUM_AND_ABOVE"}],
            "labels": {"team": "mentoring"}
        }))
        .unwrap();
        assert_eq!(request.contents.len(), 3);
        assert_eq!(request.last_user_text(), "again");
        assert_eq!(request.system_instruction.unwrap().text(), "Be kind.");
        let config = request.generation_config;
        assert_eq!(config.temperature, Some(0.7));
        assert_eq!(config.top_k, Some(40.0));
        assert_eq!(config.max_output_tokens, Some(1024));
        assert_eq!(config.stop_sequences, vec!["END".to_string()]);
        assert_eq!(config.thinking_config.unwrap().thinking_budget, Some(0));
        assert_eq!(
            request.safety_settings[0].threshold.as_deref(),
            Some("BLOCK_MEDIUM_AND_ABOVE")
        );
        assert_eq!(request.labels["team"], "mentoring");
    }

    #[test]
    fn snake_case_names_are_accepted_too() {
        let request = parse(json!({
            "contents": [user("hi")],
            "system_instruction": {"parts": [{"text": "S"}]},
            "generation_config": {"max_output_tokens": 5, "top_p": 0.5,
                                  "thinking_config": {"thinking_budget": 12, "include_thoughts": true}},
            "safety_settings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "OFF"}]
        }))
        .unwrap();
        assert_eq!(request.generation_config.max_output_tokens, Some(5));
        assert_eq!(request.generation_config.top_p, Some(0.5));
        let thinking = request.generation_config.thinking_config.unwrap();
        assert_eq!(thinking.include_thoughts, Some(true));
        assert_eq!(request.system_instruction.unwrap().text(), "S");
    }

    #[test]
    fn numbers_as_strings_and_nulls_follow_proto3_json() {
        let request = parse(json!({
            "contents": [user("hi")],
            "generationConfig": {"maxOutputTokens": "64", "temperature": "0.5", "seed": 3.0, "topK": null}
        }))
        .unwrap();
        assert_eq!(request.generation_config.max_output_tokens, Some(64));
        assert_eq!(request.generation_config.temperature, Some(0.5));
        assert_eq!(request.generation_config.seed, Some(3));
        assert_eq!(request.generation_config.top_k, None);
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        assert_eq!(
            message(json!({"contents": [user("hi")], "generationConfig": {"foo": 1}})),
            "Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': Cannot find field."
        );
        assert_eq!(
            message(json!({"contents": [user("hi")], "tools": []})),
            "Invalid JSON payload received. Unknown name \"tools\": Cannot find field."
        );
        assert_eq!(
            message(
                json!({"contents": [user("a"), {"role": "user", "parts": [{"text": "b", "inlineData": {}}]}]})
            ),
            "Invalid JSON payload received. Unknown name \"inlineData\" at 'contents[1].parts[0]': Cannot find field."
        );
        assert!(
            message(json!({"contents": [user("hi")],
                           "generationConfig": {"thinkingConfig": {"budget": 1}}}))
            .contains("Unknown name \"budget\" at 'generation_config.thinking_config'")
        );
        assert!(
            message(json!({"contents": [user("hi")], "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "level": 1}]}))
            .contains("Unknown name \"level\" at 'safety_settings[0]'")
        );
        // The wrong case convention is just an unknown name.
        assert!(
            message(json!({"contents": [user("hi")], "generationConfig": {"MaxOutputTokens": 1}}))
                .contains("Unknown name \"MaxOutputTokens\"")
        );
    }

    #[test]
    fn malformed_json_and_wrong_types_are_rejected() {
        let err = parse_request(b"{\"contents\": [").unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.starts_with("Invalid JSON payload received."));
        assert!(
            message(json!({"contents": [user("hi")], "generationConfig": {"temperature": "hot"}}))
                .contains("Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"")
        );
        assert!(
            message(
                json!({"contents": [user("hi")], "generationConfig": {"maxOutputTokens": 1.5}})
            )
            .contains("'generation_config.max_output_tokens' (TYPE_INT32)")
        );
        assert!(
            message(json!({"contents": {"role": "user"}})).contains("Invalid value at 'contents'")
        );
        assert!(
            message(json!({"contents": [user("hi")], "systemInstruction": []}))
                .contains("cannot start list")
        );
        assert!(
            message(json!({"contents": [{"parts": [{"text": 5}]}]}))
                .contains("'contents[0].parts[0].text' (TYPE_STRING)")
        );
        assert!(
            message(json!({"contents": [user("hi")], "labels": {"a": 1}})).contains("labels[a]")
        );
        assert!(message(json!([])).contains("cannot start list"));
        assert!(
            message(json!({"contents": [user("hi")], "safetySettings": [{"category": "HARM_CATEGORY_NICE"}]}))
                .contains("HarmCategory")
        );
        assert!(
            message(json!({"contents": [user("hi")], "contents_": []}))
                .contains("Unknown name \"contents_\"")
        );
        assert!(
            message(json!({"contents": [user("hi")], "generationConfig": {"topP": 1, "top_p": 1}}))
                .contains("specified more than once")
        );
    }

    #[test]
    fn semantic_rules() {
        assert!(message(json!({})).contains("at least one contents"));
        assert!(message(json!({"contents": []})).contains("at least one contents"));
        assert!(
            parse_request(b"")
                .unwrap_err()
                .message
                .contains("at least one contents")
        );
        assert!(
            message(json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}))
                .contains("valid role")
        );
        assert!(
            message(json!({"contents": [user("x"), {"role": "model", "parts": [{"text": "y"}]}]}))
                .contains("end with a user turn")
        );
        assert!(
            message(json!({"contents": [{"role": "user", "parts": [{}]}]})).contains("empty text")
        );
        assert!(
            message(json!({"contents": [{"role": "user", "parts": [{"text": ""}]}]}))
                .contains("empty text")
        );
        assert!(
            message(json!({"contents": [{"role": "user", "parts": []}]}))
                .contains("at least one parts")
        );
        assert!(
            message(json!({"contents": [user("x")], "systemInstruction": {"parts": [{"thought": true}]}}))
                .contains("'system_instruction.parts[0]'")
        );
        for bad in [json!(-0.1), json!(2.5)] {
            assert!(
                message(json!({"contents": [user("x")], "generationConfig": {"temperature": bad}}))
                    .contains("temperature value")
            );
        }
        for good in [0.0, 2.0] {
            assert!(
                parse(json!({"contents": [user("x")], "generationConfig": {"temperature": good}}))
                    .is_ok()
            );
        }
        assert!(
            message(json!({"contents": [user("x")], "generationConfig": {"candidateCount": 2}}))
                .contains("candidateCount is 2")
        );
        assert!(
            message(json!({"contents": [user("x")], "generationConfig": {"maxOutputTokens": 0}}))
                .contains("maxOutputTokens value of 0")
        );
        assert!(
            message(json!({"contents": [user("x")], "generationConfig": {"maxOutputTokens": 65537}}))
                .contains("maxOutputTokens value of 65537 but the supported range is from 1 (inclusive) to 65537 (exclusive)")
        );
        assert!(
            parse(json!({"contents": [user("x")], "generationConfig": {"maxOutputTokens": 65536}}))
                .is_ok()
        );
    }

    #[test]
    fn thinking_level_accepts_enum_names_in_any_case_and_numbers() {
        let level = |value: Value| {
            parse(json!({"contents": [user("x")],
                         "generationConfig": {"thinkingConfig": {"thinkingLevel": value}}}))
            .map(|r| {
                r.generation_config
                    .thinking_config
                    .unwrap()
                    .thinking_level
                    .unwrap()
            })
        };
        for (given, canonical) in [
            ("MINIMAL", "MINIMAL"),
            ("low", "LOW"),
            ("Medium", "MEDIUM"),
            ("high", "HIGH"),
            ("THINKING_LEVEL_UNSPECIFIED", "THINKING_LEVEL_UNSPECIFIED"),
        ] {
            assert_eq!(level(json!(given)).unwrap(), canonical);
        }
        assert_eq!(level(json!(1)).unwrap(), "LOW");
        assert_eq!(level(json!(4)).unwrap(), "MINIMAL");
        let snake = parse(json!({"contents": [user("x")],
                                 "generation_config": {"thinking_config": {"thinking_level": "low"}}}))
        .unwrap();
        assert_eq!(
            snake
                .generation_config
                .thinking_config
                .unwrap()
                .thinking_level
                .as_deref(),
            Some("LOW")
        );
        for bad in [
            json!("extreme"),
            json!("OFF"),
            json!(9),
            json!(true),
            json!(""),
        ] {
            let err = level(bad.clone()).unwrap_err();
            assert_eq!(
                err.message,
                format!(
                    "Invalid JSON payload received. Invalid value at \
                     'generation_config.thinking_config.thinking_level' \
                     (type.googleapis.com/google.cloud.aiplatform.v1.GenerationConfig.ThinkingConfig.ThinkingLevel), {bad}"
                )
            );
        }
    }

    #[test]
    fn missing_role_means_user() {
        let request = parse(json!({"contents": [{"parts": [{"text": "hello"}]}]})).unwrap();
        assert_eq!(request.contents[0].role(), "user");
        assert_eq!(request.last_user_text(), "hello");
    }

    #[test]
    fn thought_parts_are_not_said_but_are_counted() {
        let content: Content = serde_json::from_value(json!({"parts": [
            {"text": "abc", "thought": true}, {"text": "de"}, {"text": "f"}
        ]}))
        .unwrap();
        assert_eq!(content.text(), "def");
        assert_eq!(content.chars(), 6);
    }
}
