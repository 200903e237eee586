//! Function calling: the rules Vertex AI enforces on `tools`, `toolConfig` and the function
//! parts of a conversation (thought signatures included), the calls the emulator makes, and
//! the signatures it issues.
//!
//! Gemini 3 rule, enforced for every model served: the *current turn* is every content after
//! the last `user` content that holds a text part (the function-call loop since the user's last
//! real message). In each `model` content of the current turn the first `functionCall` part
//! must carry a `thoughtSignature`. Any signature present anywhere must be one the emulator
//! issued ([`thought_signature`]) or [`SKIP_THOUGHT_SIGNATURE`] (raw or base64-encoded).
//!
//! A signature is the base64 (standard alphabet, no padding needed: 33 bytes) of
//! `emu-sig:{16 hex digits}.{8 hex digits}`: a 64-bit FNV-1a hash of the model, the function
//! name and the arguments as canonical JSON (keys sorted), then a 32-bit check of that hash, so
//! any change to the string is caught.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::b64;
use crate::faults::Steering;
use crate::protocol::{Content, FunctionDeclaration, GenerateContentRequest, Part};
use crate::reply::fnv1a;
use crate::schema;
use crate::status::ApiError;

/// The documented value that turns the thought-signature check off for one part. The field is
/// `bytes`, so it arrives base64-encoded; the raw string is accepted too.
pub const SKIP_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

const SIGNATURE_PREFIX: &str = "emu-sig:";

/// The function-calling modes (`toolConfig.functionCallingConfig.mode`), by proto number; 4 is
/// unused.
pub const MODES: &[&str] = &["MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "", "VALIDATED"];

fn invalid(message: String) -> Result<(), ApiError> {
    Err(ApiError::invalid_argument(message))
}

// ---------------------------------------------------------------------------------------------
// Signatures

/// JSON with object keys sorted at every level, whatever order they arrived in.
pub fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|key| {
                    format!(
                        "{}:{}",
                        Value::from(key.as_str()),
                        canonical_json(&map[key])
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

fn signature_check(hash_hex: &str) -> u32 {
    let hash = fnv1a(&[SIGNATURE_PREFIX.as_bytes(), hash_hex.as_bytes()]);
    (hash ^ (hash >> 32)) as u32
}

/// The signature the emulator puts on a function call it makes.
pub fn thought_signature(model: &str, name: &str, args: &Value) -> String {
    let hash = fnv1a(&[
        model.as_bytes(),
        name.as_bytes(),
        canonical_json(args).as_bytes(),
    ]);
    let hash_hex = format!("{hash:016x}");
    let check = signature_check(&hash_hex);
    b64::encode(format!("{SIGNATURE_PREFIX}{hash_hex}.{check:08x}").as_bytes())
}

/// Whether a `thoughtSignature` is one the emulator issued, or the skip sentinel.
pub fn signature_is_valid(signature: &str) -> bool {
    if signature == SKIP_THOUGHT_SIGNATURE {
        return true;
    }
    let Some(bytes) = b64::decode(signature) else {
        return false;
    };
    if bytes == SKIP_THOUGHT_SIGNATURE.as_bytes() {
        return true;
    }
    let Some(rest) = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.strip_prefix(SIGNATURE_PREFIX))
    else {
        return false;
    };
    let Some((hash_hex, check_hex)) = rest.split_once('.') else {
        return false;
    };
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    lower_hex(hash_hex, 16)
        && lower_hex(check_hex, 8)
        && u32::from_str_radix(check_hex, 16) == Ok(signature_check(hash_hex))
}

// ---------------------------------------------------------------------------------------------
// Validation

/// `^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$`
pub fn valid_function_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn signature(part: &Part) -> Option<&str> {
    part.thought_signature.as_deref().filter(|s| !s.is_empty())
}

fn function_calls(content: &Content) -> impl Iterator<Item = &Part> {
    content.parts.iter().filter(|p| p.function_call.is_some())
}

fn function_responses(content: &Content) -> usize {
    content
        .parts
        .iter()
        .filter(|p| p.function_response.is_some())
        .count()
}

/// One part's function rules: where a function part may be, and its required fields. `role` is
/// `None` for the system instruction.
pub fn check_function_part(part: &Part, role: Option<&str>, path: &str) -> Result<(), ApiError> {
    if let Some(call) = &part.function_call {
        match role {
            Some("model") => {}
            Some(role) => {
                return invalid(format!(
                    "Unable to submit request because '{path}' holds a function_call in a {role} \
                     turn. Function calls can only be in model turns."
                ));
            }
            None => {
                return invalid(format!(
                    "Unable to submit request because '{path}' holds a function_call. The system \
                     instruction can only hold text."
                ));
            }
        }
        if call.name.is_empty() {
            return invalid(format!(
                "Unable to submit request because it has an empty function_call.name at '{path}'. \
                 Add a value to the parameter and try again."
            ));
        }
    }
    if let Some(response) = &part.function_response {
        match role {
            Some("user") => {}
            Some(role) => {
                return invalid(format!(
                    "Unable to submit request because '{path}' holds a function_response in a \
                     {role} turn. Function responses can only be in user turns."
                ));
            }
            None => {
                return invalid(format!(
                    "Unable to submit request because '{path}' holds a function_response. The \
                     system instruction can only hold text."
                ));
            }
        }
        if response.name.is_empty() {
            return invalid(format!(
                "Unable to submit request because it has an empty function_response.name at \
                 '{path}'. Add a value to the parameter and try again."
            ));
        }
        if response.response.is_none() {
            return invalid(format!(
                "Unable to submit request because it is missing function_response.response at \
                 '{path}'. Add a value to the parameter and try again."
            ));
        }
    }
    Ok(())
}

/// Where the current turn starts: right after the last user content holding a text part.
fn current_turn_start(contents: &[Content]) -> usize {
    contents
        .iter()
        .rposition(|c| c.role() == "user" && c.parts.iter().any(|p| p.text.is_some()))
        .map_or(0, |i| i + 1)
}

/// The order of function-call and function-response turns, and the thought signatures.
pub fn check_conversation(request: &GenerateContentRequest) -> Result<(), ApiError> {
    let contents = &request.contents;
    for (i, content) in contents.iter().enumerate() {
        let previous = i.checked_sub(1).map(|j| &contents[j]);
        let calls = function_calls(content).count();
        if calls > 0 && previous.map(Content::role) != Some("user") {
            return invalid(
                "Please ensure that function call turn comes immediately after a user turn or \
                 after a function response turn."
                    .into(),
            );
        }
        let responses = function_responses(content);
        if responses > 0 {
            let previous_calls = previous
                .filter(|p| p.role() == "model")
                .map_or(0, |p| function_calls(p).count());
            if previous_calls == 0 {
                return invalid(
                    "Please ensure that function response turn comes immediately after a \
                     function call turn."
                        .into(),
                );
            }
            if responses != previous_calls {
                return invalid(
                    "Please ensure that the number of function response parts is equal to the \
                     number of function call parts of the function call turn."
                        .into(),
                );
            }
        }
    }
    let system_parts = request.system_instruction.iter().flat_map(|c| &c.parts);
    let all_parts = contents.iter().flat_map(|c| &c.parts).chain(system_parts);
    for part in all_parts {
        if signature(part).is_some_and(|s| !signature_is_valid(s)) {
            return invalid("Corrupted thought signature.".into());
        }
    }
    let start = current_turn_start(contents);
    for (i, content) in contents.iter().enumerate().skip(start) {
        if content.role() != "model" {
            continue;
        }
        if let Some(first) = function_calls(content).next()
            && signature(first).is_none()
        {
            let name = first.function_call.as_ref().map_or("", |c| c.name.as_str());
            return invalid(format!(
                "Function call is missing a thought_signature in functionCall parts. This is \
                 required for tools to work correctly, and missing thought_signature may lead to \
                 degraded model performance. Additional data, function call `{name}` , position \
                 {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures \
                 for more details.",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Every function declaration, in order.
pub fn declarations(
    request: &GenerateContentRequest,
) -> impl Iterator<Item = &FunctionDeclaration> {
    request.tools.iter().flat_map(|t| &t.function_declarations)
}

/// The function-calling mode, `MODE_UNSPECIFIED` when not set.
pub fn mode(request: &GenerateContentRequest) -> &str {
    request
        .tool_config
        .as_ref()
        .and_then(|t| t.function_calling_config.as_ref())
        .and_then(|f| f.mode.as_deref())
        .unwrap_or("MODE_UNSPECIFIED")
}

fn allowed_names(request: &GenerateContentRequest) -> &[String] {
    request
        .tool_config
        .as_ref()
        .and_then(|t| t.function_calling_config.as_ref())
        .map_or(&[], |f| f.allowed_function_names.as_slice())
}

/// `tools` and `toolConfig`: valid unique names, one parameter schema each, allowed names only
/// with ANY / VALIDATED and only declared ones.
pub fn check_tools(request: &GenerateContentRequest) -> Result<(), ApiError> {
    let mut names = HashSet::new();
    for (t, tool) in request.tools.iter().enumerate() {
        for (d, declaration) in tool.function_declarations.iter().enumerate() {
            let path = format!("tools[{t}].function_declarations[{d}]");
            let name = &declaration.name;
            if !valid_function_name(name) {
                return invalid(format!(
                    "Unable to submit request because `{name}` is not a valid function name at \
                     '{path}.name'. Function names must start with a letter or an underscore and \
                     contain only a-z, A-Z, 0-9, underscores, dots, colons and dashes, with a \
                     maximum length of 64."
                ));
            }
            if declaration.parameters.is_some() && declaration.parameters_json_schema.is_some() {
                return invalid(format!(
                    "Unable to submit request because '{path}' sets both parameters and \
                     parameters_json_schema. Set only one of them."
                ));
            }
            if declaration.response.is_some() && declaration.response_json_schema.is_some() {
                return invalid(format!(
                    "Unable to submit request because '{path}' sets both response and \
                     response_json_schema. Set only one of them."
                ));
            }
            if !names.insert(name.as_str()) {
                return invalid(format!(
                    "Unable to submit request because the function `{name}` at '{path}' is \
                     declared more than once. Function names must be unique."
                ));
            }
        }
    }
    let mode = mode(request);
    let allowed = allowed_names(request);
    if !allowed.is_empty() && !matches!(mode, "ANY" | "VALIDATED") {
        return invalid(format!(
            "Unable to submit request because tool_config.function_calling_config.\
             allowed_function_names is set but the mode is {mode}. Allowed function names can \
             only be set with mode ANY or VALIDATED."
        ));
    }
    if let Some(unknown) = allowed.iter().find(|name| !names.contains(name.as_str())) {
        return invalid(format!(
            "Unable to submit request because tool_config.function_calling_config.\
             allowed_function_names contains `{unknown}`, which is not declared in \
             tools[].function_declarations."
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Answers

/// The arguments the emulator calls a function with: an instance of its parameter schema
/// (see [`crate::schema`]), `{}` without one.
pub fn arguments(declaration: &FunctionDeclaration, text: &str) -> Value {
    match declaration
        .parameters_json_schema
        .as_ref()
        .or(declaration.parameters.as_ref())
        .map(|schema| schema::instance(schema, text))
    {
        Some(object @ Value::Object(_)) => object,
        _ => Value::Object(Map::new()),
    }
}

/// The calls the answer to `request` makes (name and arguments), in order; empty when it
/// answers with text. It calls when functions are declared, the mode is not NONE, the last
/// content is the user's text (not function responses) and, in mode AUTO / unspecified, the
/// `no-tool` marker is absent: the first allowed function (`allowedFunctionNames` order if set,
/// otherwise declaration order), or the first two with `parallel-calls`.
pub fn planned_calls(request: &GenerateContentRequest, steering: Steering) -> Vec<(String, Value)> {
    let mode = mode(request);
    let last_is_text = request
        .contents
        .last()
        .is_some_and(|c| c.role() == "user" && function_responses(c) == 0);
    let forced = matches!(mode, "ANY" | "VALIDATED");
    if mode == "NONE" || !last_is_text || (steering.no_tool && !forced) {
        return Vec::new();
    }
    let allowed = allowed_names(request);
    let candidates: Vec<&FunctionDeclaration> = if allowed.is_empty() {
        declarations(request).collect()
    } else {
        allowed
            .iter()
            .filter_map(|name| declarations(request).find(|d| &d.name == name))
            .collect()
    };
    let text = request.last_user_text();
    let wanted = if steering.parallel_calls { 2 } else { 1 };
    candidates
        .into_iter()
        .take(wanted)
        .map(|d| (d.name.clone(), arguments(d, &text)))
        .collect()
}

/// `name=JSON; name2=JSON` for the function responses of the last content, in part order;
/// `None` when it holds none.
pub fn tool_results(request: &GenerateContentRequest) -> Option<String> {
    let results: Vec<String> = request
        .contents
        .last()?
        .parts
        .iter()
        .filter_map(|p| p.function_response.as_ref())
        .map(|r| {
            let response = r.response.clone().unwrap_or(Value::Object(Map::new()));
            format!("{}={response}", r.name)
        })
        .collect();
    (!results.is_empty()).then(|| results.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signatures_verify_and_catch_any_change() {
        let signature =
            thought_signature("gemini-3.5-flash", "get_weather", &json!({"city": "Paris"}));
        assert!(signature_is_valid(&signature), "{signature}");
        assert_eq!(signature.len(), 44);
        let decoded = String::from_utf8(b64::decode(&signature).unwrap()).unwrap();
        assert!(decoded.starts_with("emu-sig:"), "{decoded}");
        // Deterministic, and key order does not matter.
        assert_eq!(
            thought_signature("m", "f", &json!({"a": 1, "b": [{"d": 2, "c": 3}]})),
            thought_signature(
                "m",
                "f",
                &serde_json::from_str(r#"{"b":[{"c":3,"d":2}],"a":1}"#).unwrap()
            )
        );
        assert_ne!(
            thought_signature("m", "f", &json!({})),
            thought_signature("m", "g", &json!({}))
        );
        // Every one-character change is caught.
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        for i in 0..signature.len() {
            for c in alphabet.chars() {
                let mut tampered: Vec<char> = signature.chars().collect();
                if tampered[i] == c {
                    continue;
                }
                tampered[i] = c;
                let tampered: String = tampered.into_iter().collect();
                assert!(!signature_is_valid(&tampered), "{tampered}");
            }
        }
        for bad in [
            "",
            "abc",
            "emu-sig:0123456789abcdef",
            &b64::encode(b"emu-sig:0123456789abcdef.00000000"),
        ] {
            assert!(!signature_is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn the_sentinel_is_accepted_raw_and_encoded() {
        assert!(signature_is_valid(SKIP_THOUGHT_SIGNATURE));
        assert!(signature_is_valid(&b64::encode(
            SKIP_THOUGHT_SIGNATURE.as_bytes()
        )));
        assert!(!signature_is_valid("skip_thought_signature_validatoR"));
    }

    #[test]
    fn function_names() {
        for good in [
            "a",
            "_",
            "get_weather",
            "default_api:get.weather-v2",
            &"x".repeat(64),
        ] {
            assert!(valid_function_name(good), "{good}");
        }
        for bad in ["", "1abc", "-a", "has space", "ü", "a/b", &"x".repeat(65)] {
            assert!(!valid_function_name(bad), "{bad}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys() {
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": {"z": null, "y": "é\""}, "c": [true, 1.5]})),
            r#"{"a":{"y":"é\"","z":null},"b":1,"c":[true,1.5]}"#
        );
    }
}
