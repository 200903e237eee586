//! The GenerateContent request: wire types and validation as strict as Google's.
//!
//! Google parses request JSON against the protobuf schema: unknown fields anywhere are a
//! 400 INVALID_ARGUMENT, and both the lowerCamelCase JSON name and the snake_case proto name
//! of a field are accepted. [`parse_request`] walks the JSON against a small schema, reports
//! errors with Google's wording and proto-style paths (`contents[0].parts[1]`), then rewrites
//! the document with camelCase names so serde can read it into the typed structs below.
//!
//! Beyond scalars, enums and messages it knows proto3 JSON's `bytes` (base64, standard or
//! URL-safe: `thoughtSignature`), `google.protobuf.Struct` / `Value` (kept as sent: function
//! arguments and responses, JSON Schemas), `map<string, Message>` (a schema's `properties`) and
//! oneofs (a part's `text` / `functionCall` / `functionResponse`: setting two is Google's
//! "Oneof field 'data' is already set" 400). The rules on tools and function turns live in
//! [`crate::tools`], those on structured output in [`crate::structured`].

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
    #[serde(default)]
    pub tools: Vec<Tool>,
    pub tool_config: Option<ToolConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Content {
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// One part: at most one of `text`, `function_call`, `function_response` (the `data` oneof).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    pub text: Option<String>,
    pub thought: Option<bool>,
    /// As sent: base64 (standard or URL-safe) of the signature bytes.
    pub thought_signature: Option<String>,
    pub function_call: Option<FunctionCall>,
    pub function_response: Option<FunctionResponse>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FunctionCall {
    #[serde(default)]
    pub name: String,
    /// A JSON object.
    pub args: Option<Value>,
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FunctionResponse {
    #[serde(default)]
    pub name: String,
    /// A JSON object.
    pub response: Option<Value>,
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    #[serde(default)]
    pub function_declarations: Vec<FunctionDeclaration>,
}

/// A declared function. The OpenAPI-subset schemas (`parameters`, `response`) are kept as JSON
/// with camelCase keys (`$ref`, `$defs`) and upper-case type names, the JSON Schema ones as sent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeclaration {
    #[serde(default)]
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<Value>,
    pub parameters_json_schema: Option<Value>,
    pub response: Option<Value>,
    pub response_json_schema: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    pub function_calling_config: Option<FunctionCallingConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig {
    /// `MODE_UNSPECIFIED`, `AUTO`, `ANY`, `NONE` or `VALIDATED`.
    pub mode: Option<String>,
    #[serde(default)]
    pub allowed_function_names: Vec<String>,
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
    /// OpenAPI subset, normalised like [`FunctionDeclaration::parameters`].
    pub response_schema: Option<Value>,
    /// Any JSON Schema, as sent.
    pub response_json_schema: Option<Value>,
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

impl Part {
    /// Prompt characters: the text (thoughts included), or the compact JSON of a function call
    /// (`{"name":…,"args":…}`) or response (`{"name":…,"response":…}`).
    pub fn chars(&self) -> usize {
        let text = self.text.as_deref().map_or(0, |t| t.chars().count());
        let call = self.function_call.as_ref().map_or(0, |c| {
            let args = c.args.clone().unwrap_or_else(|| Value::Object(Map::new()));
            serde_json::json!({"name": c.name, "args": args})
                .to_string()
                .chars()
                .count()
        });
        let response = self.function_response.as_ref().map_or(0, |r| {
            let response = r
                .response
                .clone()
                .unwrap_or_else(|| Value::Object(Map::new()));
            serde_json::json!({"name": r.name, "response": response})
                .to_string()
                .chars()
                .count()
        });
        text + call + response
    }
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

    /// Prompt characters of all parts, thoughts included (they count as prompt input), function
    /// calls and responses as their JSON ([`Part::chars`]).
    pub fn chars(&self) -> usize {
        self.parts.iter().map(Part::chars).sum()
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

    /// Prompt characters of the function declarations: each name, description and parameter
    /// schema (as compact JSON).
    pub fn tools_chars(&self) -> usize {
        crate::tools::declarations(self)
            .map(|d| {
                let schema = d
                    .parameters_json_schema
                    .as_ref()
                    .or(d.parameters.as_ref())
                    .map_or(0, |s| s.to_string().chars().count());
                d.name.chars().count()
                    + d.description.as_deref().map_or(0, |t| t.chars().count())
                    + schema
            })
            .sum()
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
    /// `int64`: a number or a numeric string, any 64-bit value.
    Int64,
    /// `bytes`: a base64 string (standard or URL-safe alphabet, padding optional); kept as sent.
    Bytes,
    /// `google.protobuf.Struct`: any JSON object, kept as sent.
    Struct,
    /// `google.protobuf.Value`: any JSON, kept as sent.
    AnyValue,
    /// `map<string, Message>`, e.g. a schema's `properties`.
    MsgMap(&'static Message),
    /// A field Vertex AI knows but the emulator does not model (e.g. `tools[].googleSearch`):
    /// a 400 saying so.
    Unmodelled,
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
    /// The oneof the field belongs to, e.g. `data` for a part's text, function call, ….
    oneof: Option<&'static str>,
}

const fn one(json: &'static str, proto: &'static str, kind: Kind) -> Field {
    Field {
        json,
        proto,
        kind,
        repeated: false,
        oneof: None,
    }
}

const fn many(json: &'static str, proto: &'static str, kind: Kind) -> Field {
    Field {
        json,
        proto,
        kind,
        repeated: true,
        oneof: None,
    }
}

/// A member of the oneof `group`.
const fn either(group: &'static str, json: &'static str, proto: &'static str, kind: Kind) -> Field {
    Field {
        json,
        proto,
        kind,
        repeated: false,
        oneof: Some(group),
    }
}

const TYPE_PREFIX: &str = "type.googleapis.com/google.cloud.aiplatform.v1.";

static FUNCTION_CALL: Message = Message {
    type_name: "FunctionCall",
    fields: &[
        one("name", "name", Kind::Str),
        one("args", "args", Kind::Struct),
        one("id", "id", Kind::Str),
    ],
};

static FUNCTION_RESPONSE: Message = Message {
    type_name: "FunctionResponse",
    fields: &[
        one("name", "name", Kind::Str),
        one("response", "response", Kind::Struct),
        one("id", "id", Kind::Str),
    ],
};

static PART: Message = Message {
    type_name: "Part",
    fields: &[
        either("data", "text", "text", Kind::Str),
        either(
            "data",
            "functionCall",
            "function_call",
            Kind::Msg(&FUNCTION_CALL),
        ),
        either(
            "data",
            "functionResponse",
            "function_response",
            Kind::Msg(&FUNCTION_RESPONSE),
        ),
        one("thought", "thought", Kind::Bool),
        one("thoughtSignature", "thought_signature", Kind::Bytes),
    ],
};

/// The OpenAPI types, by proto number.
const SCHEMA_TYPES: &[&str] = &[
    "TYPE_UNSPECIFIED",
    "STRING",
    "NUMBER",
    "INTEGER",
    "BOOLEAN",
    "ARRAY",
    "OBJECT",
    "NULL",
];

/// Vertex AI's OpenAPI 3.0 subset (`parameters`, `responseSchema`); `ref` and `defs` have the
/// JSON names `$ref` and `$defs`.
static SCHEMA: Message = Message {
    type_name: "Schema",
    fields: &[
        one("type", "type", Kind::EnumAnyCase("Type", SCHEMA_TYPES)),
        one("format", "format", Kind::Str),
        one("title", "title", Kind::Str),
        one("description", "description", Kind::Str),
        one("nullable", "nullable", Kind::Bool),
        one("default", "default", Kind::AnyValue),
        one("items", "items", Kind::Msg(&SCHEMA)),
        one("minItems", "min_items", Kind::Int64),
        one("maxItems", "max_items", Kind::Int64),
        many("enum", "enum", Kind::Str),
        one("properties", "properties", Kind::MsgMap(&SCHEMA)),
        many("propertyOrdering", "property_ordering", Kind::Str),
        many("required", "required", Kind::Str),
        one("minProperties", "min_properties", Kind::Int64),
        one("maxProperties", "max_properties", Kind::Int64),
        one("minimum", "minimum", Kind::Float),
        one("maximum", "maximum", Kind::Float),
        one("minLength", "min_length", Kind::Int64),
        one("maxLength", "max_length", Kind::Int64),
        one("pattern", "pattern", Kind::Str),
        one("example", "example", Kind::AnyValue),
        many("anyOf", "any_of", Kind::Msg(&SCHEMA)),
        one(
            "additionalProperties",
            "additional_properties",
            Kind::AnyValue,
        ),
        one("$ref", "ref", Kind::Str),
        one("$defs", "defs", Kind::MsgMap(&SCHEMA)),
    ],
};

static FUNCTION_DECLARATION: Message = Message {
    type_name: "FunctionDeclaration",
    fields: &[
        one("name", "name", Kind::Str),
        one("description", "description", Kind::Str),
        one("parameters", "parameters", Kind::Msg(&SCHEMA)),
        one(
            "parametersJsonSchema",
            "parameters_json_schema",
            Kind::AnyValue,
        ),
        one("response", "response", Kind::Msg(&SCHEMA)),
        one("responseJsonSchema", "response_json_schema", Kind::AnyValue),
    ],
};

static TOOL: Message = Message {
    type_name: "Tool",
    fields: &[
        many(
            "functionDeclarations",
            "function_declarations",
            Kind::Msg(&FUNCTION_DECLARATION),
        ),
        one("retrieval", "retrieval", Kind::Unmodelled),
        one(
            "googleSearchRetrieval",
            "google_search_retrieval",
            Kind::Unmodelled,
        ),
        one("googleSearch", "google_search", Kind::Unmodelled),
        one("googleMaps", "google_maps", Kind::Unmodelled),
        one(
            "enterpriseWebSearch",
            "enterprise_web_search",
            Kind::Unmodelled,
        ),
        one("codeExecution", "code_execution", Kind::Unmodelled),
        one("urlContext", "url_context", Kind::Unmodelled),
        one("computerUse", "computer_use", Kind::Unmodelled),
    ],
};

static FUNCTION_CALLING_CONFIG: Message = Message {
    type_name: "FunctionCallingConfig",
    fields: &[
        one(
            "mode",
            "mode",
            Kind::Enum("FunctionCallingConfig.Mode", crate::tools::MODES),
        ),
        many("allowedFunctionNames", "allowed_function_names", Kind::Str),
    ],
};

static TOOL_CONFIG: Message = Message {
    type_name: "ToolConfig",
    fields: &[
        one(
            "functionCallingConfig",
            "function_calling_config",
            Kind::Msg(&FUNCTION_CALLING_CONFIG),
        ),
        one("retrievalConfig", "retrieval_config", Kind::Unmodelled),
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
        one("responseSchema", "response_schema", Kind::Msg(&SCHEMA)),
        one("responseJsonSchema", "response_json_schema", Kind::AnyValue),
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

/// Every HarmCategory name, by proto number; the first is not accepted in a safety setting.
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
        many("tools", "tools", Kind::Msg(&TOOL)),
        one("toolConfig", "tool_config", Kind::Msg(&TOOL_CONFIG)),
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
    let mut oneofs_set: Vec<&str> = Vec::new();
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
        if let Some(group) = field.oneof {
            if oneofs_set.contains(&group) {
                return Err(payload_error(format_args!(
                    "Oneof field '{group}' is already set. Cannot set '{key}'"
                )));
            }
            oneofs_set.push(group);
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
        Kind::Int64 => "TYPE_INT64".into(),
        Kind::Bytes => "TYPE_BYTES".into(),
        Kind::Struct => "type.googleapis.com/google.protobuf.Struct".into(),
        Kind::AnyValue => "type.googleapis.com/google.protobuf.Value".into(),
        Kind::MsgMap(message) => format!("map<string, {TYPE_PREFIX}{}>", message.type_name),
        Kind::Unmodelled => "unmodelled".into(),
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
        // An empty name marks an unused number.
        Kind::Enum(_, names) => match value {
            Value::String(s) if !s.is_empty() && names.contains(&s.as_str()) => Ok(value.clone()),
            Value::Number(n) => n
                .as_u64()
                .and_then(|i| names.get(i as usize))
                .filter(|name| !name.is_empty())
                .map(|name| Value::String(name.to_string()))
                .ok_or_else(bad),
            _ => Err(bad()),
        },
        Kind::EnumAnyCase(_, names) => match value {
            Value::String(s) => names
                .iter()
                .find(|name| !name.is_empty() && name.eq_ignore_ascii_case(s))
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
        Kind::Int64 => {
            let number = match value {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            number.map(|n| Value::Number(n.into())).ok_or_else(bad)
        }
        Kind::Bytes => match value {
            Value::String(s) if crate::b64::decode(s).is_some() => Ok(value.clone()),
            Value::String(_) => Err(payload_error(format_args!(
                "Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for {value}"
            ))),
            _ => Err(bad()),
        },
        Kind::Struct => value.is_object().then(|| value.clone()).ok_or_else(bad),
        Kind::AnyValue => Ok(value.clone()),
        Kind::MsgMap(message) => {
            let Value::Object(map) = value else {
                return Err(bad());
            };
            let mut out = Map::new();
            for (key, item) in map {
                let item_path = format!("{path}[{key}]");
                out.insert(key.clone(), normalize_message(item, message, &item_path)?);
            }
            Ok(Value::Object(out))
        }
        Kind::Unmodelled => Err(ApiError::invalid_argument(format!(
            "Unable to submit request because the Vertex AI emulator does not model '{path}'. \
             It emulates function declarations only."
        ))),
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
        check_parts(content, Some(content.role()), &format!("contents[{i}]"))?;
    }
    if request.contents.last().map(Content::role) != Some("user") {
        return invalid(
            "Please ensure that multiturn requests alternate between user and model, \
             and end with a user turn."
                .into(),
        );
    }
    if let Some(system) = &request.system_instruction {
        check_parts(system, None, "system_instruction")?;
    }
    crate::tools::check_conversation(request)?;
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
    crate::structured::check_config(config)?;
    crate::tools::check_tools(request)?;
    check_safety_settings(&request.safety_settings)
}

/// Checks the parts of a content; `role` is `None` for the system instruction.
fn check_parts(content: &Content, role: Option<&str>, path: &str) -> Result<(), ApiError> {
    if content.parts.is_empty() {
        return Err(ApiError::invalid_argument(format!(
            "Unable to submit request because it must include at least one parts field, which \
             describes the prompt input. Missing at '{path}.parts'."
        )));
    }
    for (j, part) in content.parts.iter().enumerate() {
        let path = format!("{path}.parts[{j}]");
        let function = part.function_call.is_some() || part.function_response.is_some();
        if !function && part.text.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::invalid_argument(format!(
                "Unable to submit request because it has an empty text parameter at \
                 '{path}'. Add a value to the parameter and try again."
            )));
        }
        crate::tools::check_function_part(part, role, &path)?;
    }
    Ok(())
}

/// The harm categories a safety setting may name.
pub const SAFETY_CATEGORIES: &[&str] = &[
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
];

/// Each setting names a real category (not HARM_CATEGORY_UNSPECIFIED, not left out), once.
/// Thresholds and methods are checked by the enum parser.
fn check_safety_settings(settings: &[SafetySetting]) -> Result<(), ApiError> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, setting) in settings.iter().enumerate() {
        let category = setting
            .category
            .as_deref()
            .unwrap_or("HARM_CATEGORY_UNSPECIFIED");
        if !SAFETY_CATEGORIES.contains(&category) {
            return Err(ApiError::invalid_argument(format!(
                "Unable to submit request because safety_settings[{i}].category is {category}. \
                 Set it to one of {}.",
                SAFETY_CATEGORIES.join(", ")
            )));
        }
        if seen.contains(&category) {
            return Err(ApiError::invalid_argument(format!(
                "Unable to submit request because safety_settings[{i}] sets {category} again. \
                 Each category can only have one safety setting."
            )));
        }
        seen.push(category);
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
            message(json!({"contents": [user("hi")], "tool": []})),
            "Invalid JSON payload received. Unknown name \"tool\": Cannot find field."
        );
        assert_eq!(
            message(json!({"contents": [user("hi")],
                           "tools": [{"functionDeclarations": [{"name": "f", "strict": true}]}]})),
            "Invalid JSON payload received. Unknown name \"strict\" at \
             'tools[0].function_declarations[0]': Cannot find field."
        );
        assert!(
            message(json!({"contents": [user("hi")],
                           "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowed": []}}}))
            .contains("Unknown name \"allowed\" at 'tool_config.function_calling_config'")
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

    fn call(name: &str) -> Value {
        json!({"functionCall": {"name": name, "args": {"city": "Paris"}}})
    }

    fn tools(names: &[&str]) -> Value {
        let declarations: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
        json!([{"functionDeclarations": declarations}])
    }

    #[test]
    fn function_parts_parse_in_both_spellings() {
        let signature = crate::b64::encode(b"skip_thought_signature_validator");
        let request = parse(json!({
            "contents": [
                user("weather?"),
                {"role": "model", "parts": [{"function_call": {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"},
                                             "thought_signature": signature}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"t": 20}, "id": "c1"}}]}
            ],
            "tools": [{"function_declarations": [{"name": "get_weather", "description": "Weather",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string", "min_length": 1}},
                                       "required": ["city"], "property_ordering": ["city"]}}]}],
            "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["get_weather"]}}
        }))
        .unwrap();
        let call = request.contents[1].parts[0].function_call.as_ref().unwrap();
        assert_eq!(call.name, "get_weather");
        assert_eq!(call.args, Some(json!({"city": "Paris"})));
        assert_eq!(call.id.as_deref(), Some("c1"));
        assert_eq!(
            request.contents[1].parts[0].thought_signature.as_deref(),
            Some(signature.as_str())
        );
        let response = request.contents[2].parts[0]
            .function_response
            .as_ref()
            .unwrap();
        assert_eq!(response.response, Some(json!({"t": 20})));
        let declaration = &request.tools[0].function_declarations[0];
        // The OpenAPI schema is kept with camelCase keys and canonical type names.
        assert_eq!(
            declaration.parameters,
            Some(
                json!({"type": "OBJECT", "properties": {"city": {"type": "STRING", "minLength": 1}},
                        "required": ["city"], "propertyOrdering": ["city"]})
            )
        );
        assert_eq!(request.last_user_text(), "");
        let config = request
            .tool_config
            .unwrap()
            .function_calling_config
            .unwrap();
        assert_eq!(config.mode.as_deref(), Some("ANY"));
        assert_eq!(
            config.allowed_function_names,
            vec!["get_weather".to_string()]
        );
    }

    #[test]
    fn a_part_holds_one_kind_of_data() {
        // The body's keys are read in sorted order, so the second one named is the later.
        assert_eq!(
            message(
                json!({"contents": [{"parts": [{"text": "a", "functionResponse": {"name": "f", "response": {}}}]}]})
            ),
            "Invalid JSON payload received. Oneof field 'data' is already set. Cannot set 'text'"
        );
        assert!(
            message(json!({"contents": [user("a"), {"role": "model", "parts": [
                {"function_call": {"name": "f"}, "text": ""}]}, user("b")]}))
            .contains("Oneof field 'data' is already set. Cannot set 'text'")
        );
        // null is "not set".
        assert!(
            parse(json!({"contents": [{"parts": [{"text": "a", "functionCall": null}]}]})).is_ok()
        );
        assert!(
            message(json!({"contents": [{"parts": [{"thoughtSignature": "c2tpcA=="}]}]}))
                .contains("empty text parameter at 'contents[0].parts[0]'")
        );
        assert!(
            message(json!({"contents": [user("a"), {"role": "model", "parts": [{"functionCall": {"name": "f", "args": "x"}}]}, user("b")]}))
                .contains("Invalid value at 'contents[1].parts[0].function_call.args' (type.googleapis.com/google.protobuf.Struct), \"x\"")
        );
    }

    #[test]
    fn thought_signatures_must_be_base64() {
        let with_signature = |signature: &str| json!({"contents": [{"parts": [{"text": "a", "thoughtSignature": signature}]}]});
        assert_eq!(
            message(with_signature("not base64!")),
            "Invalid JSON payload received. Invalid value at 'contents[0].parts[0].thought_signature' \
             (TYPE_BYTES), Base64 decoding failed for \"not base64!\""
        );
        // Base64 of something the emulator did not issue: the Gemini 3 check rejects it.
        assert_eq!(
            message(with_signature("YWJj")),
            "Corrupted thought signature."
        );
        for sentinel in [
            "skip_thought_signature_validator",
            "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I=",
        ] {
            assert!(parse(with_signature(sentinel)).is_ok(), "{sentinel}");
        }
    }

    #[test]
    fn function_turns_follow_gemini_rules() {
        let sig = "skip_thought_signature_validator";
        let model = |parts: Value| json!({"role": "model", "parts": parts});
        let answers = |n: usize| {
            let parts: Vec<Value> = (0..n)
                .map(|_| json!({"functionResponse": {"name": "f", "response": {}}}))
                .collect();
            json!({"role": "user", "parts": parts})
        };
        let signed = json!([{"functionCall": {"name": "f"}, "thoughtSignature": sig}]);
        assert!(parse(json!({"contents": [user("q"), model(signed.clone()), answers(1)]})).is_ok());
        let cases = [
            (
                json!([user("q"), {"role": "user", "parts": [call("f")]}]),
                "holds a function_call in a user turn",
            ),
            (
                json!([
                    user("q"),
                    model(json!([{"functionResponse": {"name": "f", "response": {}}}])),
                    user("x")
                ]),
                "holds a function_response in a model turn",
            ),
            (
                json!([model(signed.clone()), answers(1)]),
                "Please ensure that function call turn comes immediately after a user turn or after a function response turn.",
            ),
            (
                json!([user("q"), answers(1)]),
                "Please ensure that function response turn comes immediately after a function call turn.",
            ),
            (
                json!([user("q"), model(signed.clone()), answers(2)]),
                "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.",
            ),
            (
                json!([
                    user("q"),
                    model(json!([{"functionCall": {"name": ""}, "thoughtSignature": sig}])),
                    answers(1)
                ]),
                "empty function_call.name at 'contents[1].parts[0]'",
            ),
            (
                json!([user("q"), model(signed.clone()), {"role": "user", "parts": [{"functionResponse": {"name": "f"}}]}]),
                "missing function_response.response at 'contents[2].parts[0]'",
            ),
        ];
        for (contents, expected) in cases {
            let err = message(json!({"contents": contents}));
            assert!(err.contains(expected), "{contents}: {err}");
        }
        assert!(
            message(json!({"contents": [user("q")], "systemInstruction": {"parts": [call("f")]}}))
                .contains("'system_instruction.parts[0]' holds a function_call")
        );
    }

    #[test]
    fn the_current_turn_needs_signatures() {
        let sig = crate::tools::thought_signature("m", "f", &json!({}));
        let model = |parts: Value| json!({"role": "model", "parts": parts});
        let answer =
            json!({"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]});
        // An old turn without signatures is fine; the current one is not.
        let unsigned = model(json!([call("f")]));
        let old = json!([
            user("a"),
            unsigned,
            answer,
            model(json!([{"text": "done"}])),
            user("b")
        ]);
        assert!(parse(json!({"contents": old})).is_ok());
        let err = message(json!({"contents": [user("a"), unsigned, answer]}));
        assert_eq!(
            err,
            "Function call is missing a thought_signature in functionCall parts. This is required \
             for tools to work correctly, and missing thought_signature may lead to degraded model \
             performance. Additional data, function call `f` , position 2. Please refer to \
             https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
        );
        // Only the first call of a model content needs one; every model content of the turn does.
        let first_signed =
            model(json!([{"functionCall": {"name": "f"}, "thoughtSignature": sig}, call("g")]));
        let two_answers = json!({"role": "user", "parts": [
            {"functionResponse": {"name": "f", "response": {}}}, {"functionResponse": {"name": "g", "response": {}}}]});
        assert!(parse(json!({"contents": [user("a"), first_signed, two_answers]})).is_ok());
        let second_signed =
            model(json!([call("f"), {"functionCall": {"name": "g"}, "thoughtSignature": sig}]));
        assert!(
            message(json!({"contents": [user("a"), second_signed, two_answers]}))
                .contains("function call `f` , position 2")
        );
        let signed = model(json!([{"functionCall": {"name": "f"}, "thoughtSignature": sig}]));
        let err = message(
            json!({"contents": [user("a"), signed, answer, model(json!([call("h")])), answer]}),
        );
        assert!(err.contains("function call `h` , position 4"), "{err}");
        // A corrupted signature is caught in any turn, on any part.
        let corrupted = model(json!([{"text": "hm", "thoughtSignature": "YWJj"}]));
        assert_eq!(
            message(json!({"contents": [user("a"), corrupted, user("b")]})),
            "Corrupted thought signature."
        );
    }

    #[test]
    fn declarations_and_tool_config_are_checked() {
        let with = |tools: Value, config: Value| json!({"contents": [user("q")], "tools": tools, "toolConfig": config});
        assert!(parse(with(tools(&["a", "b.c", "d:e-f"]), json!({}))).is_ok());
        assert!(
            message(with(tools(&["ok", "bad name"]), json!({})))
                .contains("`bad name` is not a valid function name at 'tools[0].function_declarations[1].name'")
        );
        assert!(
            message(with(tools(&["9lives"]), json!({})))
                .contains("`9lives` is not a valid function name")
        );
        assert!(message(with(tools(&[""]), json!({}))).contains("`` is not a valid function name"));
        let twice = json!([{"functionDeclarations": [{"name": "a"}]}, {"functionDeclarations": [{"name": "a"}]}]);
        assert!(message(with(twice, json!({}))).contains(
            "the function `a` at 'tools[1].function_declarations[0]' is declared more than once"
        ));
        let both = json!([{"functionDeclarations": [{"name": "a", "parameters": {"type": "OBJECT"},
                                                      "parametersJsonSchema": {"type": "object"}}]}]);
        assert!(
            message(with(both, json!({})))
                .contains("sets both parameters and parameters_json_schema")
        );
        for mode in ["AUTO", "NONE", "MODE_UNSPECIFIED"] {
            let config =
                json!({"functionCallingConfig": {"mode": mode, "allowedFunctionNames": ["a"]}});
            assert!(
                message(with(tools(&["a"]), config)).contains(&format!(
                    "allowed_function_names is set but the mode is {mode}"
                )),
                "{mode}"
            );
        }
        for mode in ["ANY", "VALIDATED"] {
            let config =
                json!({"functionCallingConfig": {"mode": mode, "allowedFunctionNames": ["a"]}});
            assert!(parse(with(tools(&["a", "b"]), config)).is_ok(), "{mode}");
            let config = json!({"functionCallingConfig": {"mode": mode, "allowedFunctionNames": ["a", "zz"]}});
            assert!(
                message(with(tools(&["a"]), config))
                    .contains("allowed_function_names contains `zz`, which is not declared")
            );
        }
        // A tool config without tools is fine; modes by number too (4 is unused).
        assert!(parse(json!({"contents": [user("q")], "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}})).is_ok());
        let mode = |value: Value| {
            parse(with(
                tools(&["a"]),
                json!({"functionCallingConfig": {"mode": value}}),
            ))
            .map(|r| {
                r.tool_config
                    .unwrap()
                    .function_calling_config
                    .unwrap()
                    .mode
                    .unwrap()
            })
        };
        assert_eq!(mode(json!(5)).unwrap(), "VALIDATED");
        assert_eq!(mode(json!(2)).unwrap(), "ANY");
        for bad in [json!(4), json!(""), json!("auto"), json!("SOMETIMES")] {
            assert!(
                mode(bad.clone())
                    .unwrap_err()
                    .message
                    .contains("FunctionCallingConfig.Mode"),
                "{bad}"
            );
        }
        assert_eq!(
            message(json!({"contents": [user("q")], "tools": [{"googleSearch": {}}]})),
            "Unable to submit request because the Vertex AI emulator does not model \
             'tools[0].google_search'. It emulates function declarations only."
        );
    }

    #[test]
    fn safety_settings_are_strict() {
        let settings =
            |settings: Value| json!({"contents": [user("q")], "safetySettings": settings});
        let all: Vec<Value> = SAFETY_CATEGORIES
            .iter()
            .zip([
                "OFF",
                "BLOCK_NONE",
                "BLOCK_ONLY_HIGH",
                "BLOCK_LOW_AND_ABOVE",
                "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
            ])
            .map(|(c, t)| json!({"category": c, "threshold": t, "method": "SEVERITY"}))
            .collect();
        let request = parse(settings(json!(all))).unwrap();
        assert_eq!(request.safety_settings.len(), 5);
        assert_eq!(
            request.safety_settings[4].category.as_deref(),
            Some("HARM_CATEGORY_CIVIC_INTEGRITY")
        );
        assert_eq!(
            request.safety_settings[0].method.as_deref(),
            Some("SEVERITY")
        );
        for unspecified in [
            json!({"category": "HARM_CATEGORY_UNSPECIFIED", "threshold": "OFF"}),
            json!({"category": 0, "threshold": "OFF"}),
            json!({"threshold": "OFF"}),
        ] {
            assert!(
                message(settings(json!([unspecified])))
                    .contains("safety_settings[0].category is HARM_CATEGORY_UNSPECIFIED"),
                "{unspecified}"
            );
        }
        let twice = json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"},
                           {"category": 3, "threshold": "BLOCK_NONE"}]);
        assert!(
            message(settings(twice))
                .contains("safety_settings[1] sets HARM_CATEGORY_HARASSMENT again")
        );
        for (field, value, type_name) in [
            (
                "threshold",
                "BLOCK_SOME",
                "SafetySetting.HarmBlockThreshold",
            ),
            ("method", "SOMETIMES", "SafetySetting.HarmBlockMethod"),
            ("category", "HARM_CATEGORY_JOKES", "HarmCategory"),
        ] {
            let mut setting = json!({"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"});
            setting[field] = json!(value);
            assert!(
                message(settings(json!([setting]))).contains(type_name),
                "{field}"
            );
        }
    }
}
