//! Structured output over real HTTP: `responseMimeType`, `responseSchema` and
//! `responseJsonSchema`, the JSON answers, and their validation.

use crate::common::*;
use serde_json::{Map, Value, json};

/// What pydantic v2 emits for
/// `class Step(BaseModel): title: str = Field(max_length=12); minutes: int = Field(ge=5, le=90)`
/// and `class Plan(BaseModel): level: Literal["beginner", "expert"]; steps: list[Step] =
/// Field(min_length=2); mentor: Optional[str] = None; score: float = Field(gt=0, lt=1)`.
fn pydantic_plan_schema() -> Value {
    json!({
        "$defs": {
            "Step": {
                "properties": {
                    "title": {"maxLength": 12, "title": "Title", "type": "string"},
                    "minutes": {"maximum": 90, "minimum": 5, "title": "Minutes", "type": "integer"}
                },
                "required": ["title", "minutes"],
                "title": "Step",
                "type": "object",
                "additionalProperties": false
            }
        },
        "properties": {
            "level": {"enum": ["beginner", "expert"], "title": "Level", "type": "string"},
            "steps": {"items": {"$ref": "#/$defs/Step"}, "minItems": 2, "title": "Steps", "type": "array"},
            "mentor": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Mentor"},
            "score": {"exclusiveMaximum": 1, "exclusiveMinimum": 0, "title": "Score", "type": "number"}
        },
        "required": ["level", "steps", "score"],
        "title": "Plan",
        "type": "object",
        "additionalProperties": false
    })
}

/// A small JSON Schema checker for what these tests use: `type` (a name or a list, any case),
/// `properties`, `required`, `additionalProperties: false`, `enum`, `const`, `$ref` into `$defs`
/// / `definitions`, `anyOf` / `oneOf`, `items`, `minItems` / `maxItems`, `minLength` /
/// `maxLength`, `minimum` / `maximum` and their exclusive forms. Returns the first violation.
fn check(root: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let fail = |why: String| Err(format!("{at}: {why} (value {value}, schema {schema})"));
    let Some(schema) = schema.as_object() else {
        return Ok(());
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let target = root
            .pointer(reference.trim_start_matches('#'))
            .ok_or(format!("{at}: unresolved {reference}"))?;
        check(root, target, value, at)?;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let matching = branches
                .iter()
                .filter(|b| check(root, b, value, at).is_ok())
                .count();
            if matching == 0 || (key == "oneOf" && matching > 1) {
                return fail(format!("{matching} {key} branches match"));
            }
        }
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return fail("not the const".into());
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        return fail("not in the enum".into());
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<String> = match types {
            Value::Array(list) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_lowercase)
                .collect(),
            other => vec![other.as_str().unwrap_or("").to_lowercase()],
        };
        let fits = |t: &str| match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        };
        if !types.iter().any(|t| fits(t)) {
            return fail(format!("not of type {types:?}"));
        }
    }
    let number = |key: &str| schema.get(key).and_then(Value::as_f64);
    let count = |key: &str| schema.get(key).and_then(Value::as_u64).map(|n| n as usize);
    if let Some(n) = value.as_f64() {
        let out = number("minimum").is_some_and(|m| n < m)
            || number("maximum").is_some_and(|m| n > m)
            || number("exclusiveMinimum").is_some_and(|m| n <= m)
            || number("exclusiveMaximum").is_some_and(|m| n >= m);
        if out {
            return fail("out of bounds".into());
        }
    }
    if let Some(s) = value.as_str() {
        let chars = s.chars().count();
        if count("minLength").is_some_and(|m| chars < m)
            || count("maxLength").is_some_and(|m| chars > m)
        {
            return fail("bad length".into());
        }
    }
    if let Some(items) = value.as_array() {
        if count("minItems").is_some_and(|m| items.len() < m)
            || count("maxItems").is_some_and(|m| items.len() > m)
        {
            return fail("bad item count".into());
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(root, item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(object) = value.as_object() {
        let empty = Map::new();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !object.contains_key(name.as_str().unwrap()) {
                return fail(format!("{name} is missing"));
            }
        }
        for (key, item) in object {
            match properties.get(key) {
                Some(property) => check(root, property, item, &format!("{at}.{key}"))?,
                None if schema.get("additionalProperties") == Some(&json!(false)) => {
                    return fail(format!("{key} is not allowed"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

fn validates(schema: &Value, value: &Value) -> Result<(), String> {
    check(schema, schema, value, "$")
}

#[test]
fn the_checker_catches_what_it_should() {
    let schema = pydantic_plan_schema();
    let good = json!({"level": "expert", "score": 0.5, "mentor": null,
                      "steps": [{"title": "a", "minutes": 5}, {"title": "b", "minutes": 90}]});
    assert_eq!(validates(&schema, &good), Ok(()));
    for (pointer, bad) in [
        ("/level", json!("novice")),
        ("/score", json!(1)),
        ("/steps/0/minutes", json!(4)),
        ("/steps/0/minutes", json!(5.5)),
        ("/steps/1/title", json!("much too long title")),
        ("/steps", json!([{"title": "a", "minutes": 5}])),
        ("/mentor", json!(3)),
    ] {
        let mut value = good.clone();
        *value.pointer_mut(pointer).unwrap() = bad;
        assert!(validates(&schema, &value).is_err(), "{pointer}");
    }
    let mut extra = good.clone();
    extra["steps"][0]["extra"] = json!(1);
    assert!(validates(&schema, &extra).is_err());
    let mut missing = good;
    missing.as_object_mut().unwrap().remove("score");
    assert!(validates(&schema, &missing).is_err());
}

fn ask(text: &str, generation_config: Value) -> Value {
    json!({
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generationConfig": generation_config,
    })
}

fn answer(response: &Response) -> Value {
    let text = response.reply_text();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn json_answers_validate_against_a_json_schema_with_defs() {
    let emulator = background();
    let schema = pydantic_plan_schema();
    let question = "Plan my first week of Rust, with short steps please";
    let body = ask(
        question,
        json!({"responseMimeType": "application/json", "responseJsonSchema": schema}),
    );
    let response = post(&emulator, &generate_path(), &body);
    let value = answer(&response);
    assert_eq!(validates(&schema, &value), Ok(()), "{value}");
    // Deterministic, from the schema and the user's text.
    assert_eq!(
        value,
        json!({
            "level": "beginner",
            "steps": [{"title": "Plan my firs", "minutes": 5}, {"title": "Plan my firs", "minutes": 5}],
            "mentor": question.chars().take(40).collect::<String>(),
            "score": 0.5
        })
    );
    // Billed as text.
    let text = response.reply_text();
    let usage = &response.json()["usageMetadata"];
    assert_eq!(
        usage["candidatesTokenCount"],
        text.chars().count().div_ceil(4)
    );

    // Streamed, the pieces concatenate to the same JSON.
    let events = sse_events(&post(&emulator, &sse_path(), &body).body);
    let joined: String = events.iter().map(delta).collect();
    assert_eq!(joined, text);
    assert_eq!(
        events.last().unwrap()["candidates"][0]["finishReason"],
        "STOP"
    );
}

#[test]
fn json_answers_follow_an_openapi_response_schema() {
    let emulator = background();
    // The OpenAPI subset, snake_case names, lower-case types, $ref/$defs.
    let schema = json!({
        "type": "object",
        "properties": {
            "topic": {"type": "string", "min_length": 50},
            "rating": {"type": "INTEGER", "minimum": 1, "maximum": 5},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["rust", "go"]}, "min_items": 3},
            "author": {"$ref": "#/$defs/Person"}
        },
        "required": ["topic", "rating"],
        "property_ordering": ["topic", "rating", "tags", "author"],
        "$defs": {"Person": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "number", "nullable": true}}}}
    });
    let body = ask(
        "Review",
        json!({"response_mime_type": "application/json", "response_schema": schema}),
    );
    let value = answer(&post(&emulator, &generate_path(), &body));
    assert_eq!(
        value,
        json!({
            "topic": format!("Review{}", "x".repeat(44)),
            "rating": 1,
            "tags": ["rust", "rust", "rust"],
            "author": {"name": "Review", "age": 1.5}
        })
    );
    let recorded = emulator.requests().pop().unwrap().request.unwrap();
    let kept = recorded.generation_config.response_schema.unwrap();
    assert_eq!(
        kept["properties"]["topic"],
        json!({"type": "STRING", "minLength": 50})
    );
    assert_eq!(kept["$defs"]["Person"]["type"], "OBJECT");
}

#[test]
fn json_without_a_schema_wraps_the_usual_text() {
    let emulator = background();
    let plain = post(&emulator, &generate_path(), &user_body("hello json")).reply_text();
    let body = ask(
        "hello json",
        json!({"responseMimeType": "application/json"}),
    );
    let response = post(&emulator, &generate_path(), &body);
    assert_eq!(answer(&response), json!({"answer": plain}));
    assert_eq!(response.reply_text(), json!({"answer": plain}).to_string());
    let streamed: String = sse_events(&post(&emulator, &sse_path(), &body).body)
        .iter()
        .map(delta)
        .collect();
    assert_eq!(streamed, response.reply_text());
}

#[test]
fn enum_answers_are_the_first_value() {
    let emulator = background();
    let body = ask(
        "Pick one",
        json!({"responseMimeType": "text/x.enum",
               "responseSchema": {"type": "STRING", "enum": ["positive", "negative"]}}),
    );
    assert_eq!(
        post(&emulator, &generate_path(), &body).reply_text(),
        "positive"
    );
}

#[test]
fn a_json_answer_is_cut_at_max_output_tokens() {
    let emulator = background();
    let body = ask(
        "cut me",
        json!({"responseMimeType": "application/json", "maxOutputTokens": 3,
               "thinkingConfig": {"thinkingBudget": 0}}),
    );
    let json = post(&emulator, &generate_path(), &body).json();
    assert_eq!(json["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(
        json["candidates"][0]["content"]["parts"][0]["text"],
        "{\"answer\":\"["
    );
}

#[test]
fn mime_types_and_schemas_are_validated() {
    let emulator = background();
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let cases = [
        (
            json!({"responseMimeType": "application/xml"}),
            "response_mime_type value of application/xml but the supported values are \
             text/plain, application/json, text/x.enum",
        ),
        (
            json!({"responseMimeType": "application/json", "responseSchema": schema,
                   "responseJsonSchema": schema}),
            "response_schema and response_json_schema are both set",
        ),
        (
            json!({"responseJsonSchema": schema}),
            "response_mime_type must be set to application/json when response_json_schema is set",
        ),
        (
            json!({"responseMimeType": "text/plain", "responseSchema": schema}),
            "response_mime_type must be set to application/json",
        ),
        (
            json!({"responseMimeType": "text/x.enum", "responseSchema": {"type": "STRING"}}),
            "response_schema must have an enum when response_mime_type is text/x.enum",
        ),
        (
            json!({"responseMimeType": "application/json",
                   "responseSchema": {"type": "OBJECT", "additional_properties": false, "oneOf": []}}),
            "Unknown name \"oneOf\" at 'generation_config.response_schema'",
        ),
    ];
    for (config, needle) in cases {
        for path in [generate_path(), sse_path()] {
            let message = post(&emulator, &path, &ask("q", config.clone()))
                .expect_error(400, "INVALID_ARGUMENT");
            assert!(message.contains(needle), "{config}: {message}");
        }
    }
}
