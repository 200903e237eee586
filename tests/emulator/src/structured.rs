//! Structured output: `generationConfig.responseMimeType`, `responseSchema` (OpenAPI subset)
//! and `responseJsonSchema` (JSON Schema), checked like Vertex AI, and the answer text they
//! ask for.
//!
//! With `application/json` the answer is compact JSON: an instance of the schema (see
//! [`crate::schema`]; its strings come from the last user text), or `{"answer": TEXT}` without a
//! schema, TEXT being the usual reply text. With `text/x.enum` and a schema with an `enum`, the
//! answer is its first value. It is billed, cut and streamed like any text.

use serde_json::{Value, json};

use crate::protocol::{GenerateContentRequest, GenerationConfig};
use crate::reply::reply_text;
use crate::schema;
use crate::status::ApiError;

/// The `responseMimeType` values Vertex AI accepts for Gemini.
pub const RESPONSE_MIME_TYPES: &[&str] = &["text/plain", "application/json", "text/x.enum"];

/// The mime type asked for; an empty string is the proto3 default, i.e. not set.
fn mime_type(config: &GenerationConfig) -> Option<&str> {
    config
        .response_mime_type
        .as_deref()
        .filter(|m| !m.is_empty())
}

fn has_enum(schema: &Value) -> bool {
    schema
        .get("enum")
        .and_then(Value::as_array)
        .is_some_and(|values| !values.is_empty())
}

/// The rules on `responseMimeType`, `responseSchema` and `responseJsonSchema`.
pub fn check_config(config: &GenerationConfig) -> Result<(), ApiError> {
    let invalid = |message: String| Err(ApiError::invalid_argument(message));
    let mime = mime_type(config);
    if let Some(mime) = mime
        && !RESPONSE_MIME_TYPES.contains(&mime)
    {
        return invalid(format!(
            "Unable to submit request because it has a response_mime_type value of {mime} but \
             the supported values are {}.",
            RESPONSE_MIME_TYPES.join(", ")
        ));
    }
    match (&config.response_schema, &config.response_json_schema) {
        (Some(_), Some(_)) => invalid(
            "Unable to submit request because response_schema and response_json_schema are \
             both set. Set only one of them."
                .into(),
        ),
        (None, Some(_)) if mime != Some("application/json") => invalid(
            "Unable to submit request because response_mime_type must be set to \
             application/json when response_json_schema is set."
                .into(),
        ),
        (Some(schema), None) => match mime {
            Some("application/json") => Ok(()),
            Some("text/x.enum") if has_enum(schema) => Ok(()),
            Some("text/x.enum") => invalid(
                "Unable to submit request because response_schema must have an enum when \
                 response_mime_type is text/x.enum."
                    .into(),
            ),
            _ => invalid(
                "Unable to submit request because response_mime_type must be set to \
                 application/json (or text/x.enum for an enum) when response_schema is set."
                    .into(),
            ),
        },
        _ => Ok(()),
    }
}

/// The full answer text before any `maxOutputTokens` cut: [`reply_text`], or the structured
/// form the request asks for.
pub fn answer_text(model: &str, request: &GenerateContentRequest) -> String {
    let config = &request.generation_config;
    let schema = config
        .response_json_schema
        .as_ref()
        .or(config.response_schema.as_ref());
    match (mime_type(config), schema) {
        (Some("application/json"), Some(schema)) => {
            schema::instance(schema, &request.last_user_text()).to_string()
        }
        (Some("application/json"), None) => {
            json!({"answer": reply_text(model, request)}).to_string()
        }
        (Some("text/x.enum"), Some(schema)) if has_enum(schema) => match &schema["enum"][0] {
            Value::String(value) => value.clone(),
            other => other.to_string(),
        },
        _ => reply_text(model, request),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_request;

    fn request(config: Value) -> Result<GenerateContentRequest, ApiError> {
        let body = json!({
            "contents": [{"role": "user", "parts": [{"text": "Name a colour"}]}],
            "generationConfig": config,
        });
        parse_request(body.to_string().as_bytes())
    }

    fn message(config: Value) -> String {
        let err = request(config).unwrap_err();
        assert_eq!((err.code, err.status), (400, "INVALID_ARGUMENT"));
        err.message
    }

    #[test]
    fn mime_types_and_schemas_must_agree() {
        for mime in ["", "text/plain", "application/json", "text/x.enum"] {
            assert!(request(json!({"responseMimeType": mime})).is_ok(), "{mime}");
        }
        for mime in ["application/xml", "text/html", "APPLICATION/JSON", "json"] {
            assert!(
                message(json!({"responseMimeType": mime})).contains(&format!(
                    "response_mime_type value of {mime} but the supported values are text/plain, \
                     application/json, text/x.enum"
                ))
            );
        }
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert!(
            message(json!({"responseMimeType": "application/json",
                           "responseSchema": schema, "responseJsonSchema": schema}))
            .contains("response_schema and response_json_schema are both set")
        );
        for mime in [None, Some("text/plain"), Some("text/x.enum")] {
            let mut config = json!({"responseJsonSchema": schema});
            if let Some(mime) = mime {
                config["responseMimeType"] = json!(mime);
            }
            assert!(
                message(config).contains(
                    "response_mime_type must be set to application/json when \
                     response_json_schema is set"
                ),
                "{mime:?}"
            );
            let mut config = json!({"response_schema": schema});
            if let Some(mime) = mime {
                config["response_mime_type"] = json!(mime);
            }
            let expected = if mime == Some("text/x.enum") {
                "response_schema must have an enum when response_mime_type is text/x.enum"
            } else {
                "when response_schema is set"
            };
            assert!(message(config).contains(expected), "{mime:?}");
        }
        let colours = json!({"type": "STRING", "enum": ["red", "green"]});
        let ok = request(json!({"responseMimeType": "text/x.enum", "responseSchema": colours}));
        assert_eq!(answer_text("m", &ok.unwrap()), "red");
        assert!(
            message(json!({"responseMimeType": "text/x.enum",
                           "responseSchema": {"type": "STRING"}}))
            .contains("must have an enum")
        );
    }

    #[test]
    fn the_openapi_schema_is_parsed_strictly() {
        assert!(
            message(json!({"responseMimeType": "application/json",
                           "responseSchema": {"type": "OBJECT", "properties": {"a": {"kind": "x"}}}}))
            .contains("Unknown name \"kind\" at 'generation_config.response_schema.properties[a]'")
        );
        assert!(
            message(json!({"responseMimeType": "application/json",
                           "responseSchema": {"type": "DATE"}}))
            .contains("'generation_config.response_schema.type'")
        );
        // Any JSON Schema keyword goes in responseJsonSchema.
        assert!(
            request(json!({"responseMimeType": "application/json",
                           "responseJsonSchema": {"type": "object", "kind": "x", "$comment": "y"}}))
            .is_ok()
        );
    }

    #[test]
    fn json_answers() {
        let plain = request(json!({"responseMimeType": "application/json"})).unwrap();
        let text: Value = serde_json::from_str(&answer_text("m", &plain)).unwrap();
        assert_eq!(text, json!({"answer": reply_text("m", &plain)}));

        let typed = request(json!({
            "responseMimeType": "application/json",
            "responseSchema": {"type": "OBJECT", "properties": {
                "colour": {"type": "STRING"}, "shade": {"$ref": "#/$defs/Shade"}},
                "$defs": {"Shade": {"type": "INTEGER", "minimum": 3}}}
        }))
        .unwrap();
        let text: Value = serde_json::from_str(&answer_text("m", &typed)).unwrap();
        assert_eq!(text, json!({"colour": "Name a colour", "shade": 3}));

        let snake = request(json!({
            "response_mime_type": "application/json",
            "response_schema": {"type": "object", "properties": {"n": {"ref": "#/defs/N"}},
                                "defs": {"N": {"type": "boolean"}}}
        }))
        .unwrap();
        assert_eq!(answer_text("m", &snake), r#"{"n":true}"#);
    }
}
