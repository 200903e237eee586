//! Function calling between OpenAI's and Gemini's terms: `tools` and `tool_choice` become
//! `functionDeclarations` and `toolConfig`; Gemini's `functionCall` parts become `tool_calls`.
//!
//! Gemini 3 signs each step of a function-call loop (`thoughtSignature`) and refuses a
//! request whose current turn replays a call without its signature. OpenAI clients know
//! nothing of it, so the signature travels inside the tool call's id
//! (`call_<hex>__thought__<signature>`, the convention LiteLLM uses) and is put back on the
//! `functionCall` part when the client sends the call back in its history.

use serde_json::{Map, Value, json};

use crate::gemini::{
    FunctionCall, FunctionCallingConfig, FunctionDeclaration, FunctionResponse, Part, Tool,
    ToolCall, ToolConfig,
};

use super::request::{Invalid, invalid};

/// Between a tool call id's own part and the thought signature it carries.
const SIGNATURE_SEPARATOR: &str = "__thought__";
/// Most tools a request may declare (OpenAI's limit).
const MAX_TOOLS: usize = 128;

/// The declared functions and how the model may use them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tools {
    pub tools: Vec<Tool>,
    pub config: Option<ToolConfig>,
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls`.
pub fn parse(fields: &Map<String, Value>) -> Result<Tools, Invalid> {
    let mut declarations: Vec<FunctionDeclaration> = Vec::new();
    match fields.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) if tools.len() <= MAX_TOOLS => {
            for (i, tool) in tools.iter().enumerate() {
                let declaration = declaration(tool)
                    .map_err(|msg| invalid(&format!("tools.{i}"), "invalid_value", &msg))?;
                if declarations.iter().any(|d| d.name == declaration.name) {
                    return Err(invalid(
                        &format!("tools.{i}.function.name"),
                        "invalid_value",
                        &format!("the function {:?} is declared twice", declaration.name),
                    ));
                }
                declarations.push(declaration);
            }
        }
        Some(_) => {
            return Err(invalid(
                "tools",
                "invalid_type",
                &format!("tools must be a list of at most {MAX_TOOLS} function tools"),
            ));
        }
    }
    if let Some(parallel) = fields.get("parallel_tool_calls").filter(|v| !v.is_null()) {
        match parallel.as_bool() {
            Some(true) => {}
            Some(false) => {
                return Err(invalid(
                    "parallel_tool_calls",
                    "unsupported_value",
                    "parallel_tool_calls: false is not supported: Gemini may call several \
                     functions in one step",
                ));
            }
            None => {
                return Err(invalid(
                    "parallel_tool_calls",
                    "invalid_type",
                    "parallel_tool_calls must be a boolean",
                ));
            }
        }
    }
    let config = match fields.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(choice) => Some(tool_config(choice, &declarations)?),
    };
    let tools = if declarations.is_empty() {
        Vec::new()
    } else {
        vec![Tool {
            function_declarations: declarations,
        }]
    };
    Ok(Tools { tools, config })
}

/// One `{"type": "function", "function": {...}}`.
fn declaration(tool: &Value) -> Result<FunctionDeclaration, String> {
    if tool["type"] != "function" {
        return Err("only tools of type \"function\" are supported".into());
    }
    let function = tool
        .get("function")
        .and_then(Value::as_object)
        .ok_or("a function tool needs a `function` object")?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| is_function_name(n))
        .ok_or(
            "function.name must be 1 to 64 letters, digits, `_` or `-`, starting with a letter \
             or `_`",
        )?;
    let description = match function.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err("function.description must be a string".into()),
    };
    let parameters = match function.get("parameters") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => Some(p.clone()),
        Some(_) => return Err("function.parameters must be a JSON Schema object".into()),
    };
    match function.get("strict") {
        None | Some(Value::Null | Value::Bool(_)) => {}
        Some(_) => return Err("function.strict must be a boolean".into()),
    }
    Ok(FunctionDeclaration {
        name: name.to_owned(),
        description,
        parameters_json_schema: parameters,
    })
}

/// A name both OpenAI (`^[a-zA-Z0-9_-]{1,64}$`) and Gemini (a letter or `_` first) accept.
fn is_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `tool_choice`: `none`, `auto`, `required`, or one named function.
fn tool_config(choice: &Value, declared: &[FunctionDeclaration]) -> Result<ToolConfig, Invalid> {
    let (mode, allowed) = match choice.as_str() {
        Some("none") => ("NONE", Vec::new()),
        Some("auto") => ("AUTO", Vec::new()),
        Some("required") => ("ANY", Vec::new()),
        Some(_) => {
            return Err(invalid(
                "tool_choice",
                "invalid_value",
                "tool_choice must be none, auto, required or {\"type\": \"function\", \
                 \"function\": {\"name\": ...}}",
            ));
        }
        None => {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| choice["type"] == "function")
                .ok_or_else(|| {
                    invalid(
                        "tool_choice",
                        "invalid_value",
                        "tool_choice names a function as {\"type\": \"function\", \"function\": \
                         {\"name\": ...}}",
                    )
                })?;
            if !declared.iter().any(|d| d.name == name) {
                return Err(invalid(
                    "tool_choice",
                    "invalid_value",
                    &format!("tool_choice names {name:?}, which is not one of the tools"),
                ));
            }
            ("ANY", vec![name.to_owned()])
        }
    };
    if declared.is_empty() && mode != "NONE" {
        return Err(invalid(
            "tool_choice",
            "invalid_value",
            "tool_choice is only allowed when tools are declared",
        ));
    }
    Ok(ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names: allowed,
        },
    })
}

/// A tool call's id for the client: random, carrying the call's signature when it has one.
pub fn call_id(random: u64, signature: Option<&str>) -> String {
    match signature {
        Some(sig) => format!("call_{random:016x}{SIGNATURE_SEPARATOR}{sig}"),
        None => format!("call_{random:016x}"),
    }
}

/// The signature a tool call id carries.
pub fn signature_of(id: &str) -> Option<&str> {
    id.split_once(SIGNATURE_SEPARATOR)
        .map(|(_, sig)| sig)
        .filter(|sig| !sig.is_empty())
}

/// A tool call as OpenAI writes it; `index` only in a streamed delta.
pub fn call_json(call: &ToolCall, id: &str, index: Option<usize>) -> Value {
    let mut value = json!({
        "id": id,
        "type": "function",
        "function": { "name": call.name, "arguments": call.args.to_string() },
    });
    if let Some(index) = index {
        value["index"] = json!(index);
    }
    value
}

/// An assistant message's `tool_calls` as Gemini `functionCall` parts, signatures restored.
pub fn call_parts(calls: &[Value], at: usize) -> Result<Vec<(String, Part)>, Invalid> {
    calls
        .iter()
        .enumerate()
        .map(|(j, call)| {
            let param = format!("messages.{at}.tool_calls.{j}");
            let id = call["id"].as_str().filter(|id| !id.is_empty());
            let name = call["function"]["name"].as_str();
            let (Some(id), Some(name), "function") =
                (id, name, call["type"].as_str().unwrap_or("function"))
            else {
                return Err(invalid(
                    &param,
                    "invalid_value",
                    "a tool call needs an id, type \"function\" and function.name",
                ));
            };
            let args = match &call["function"]["arguments"] {
                Value::String(raw) if raw.trim().is_empty() => json!({}),
                Value::String(raw) => match serde_json::from_str::<Value>(raw) {
                    Ok(args @ Value::Object(_)) => args,
                    _ => {
                        return Err(invalid(
                            &format!("{param}.function.arguments"),
                            "invalid_value",
                            "function.arguments must be a JSON object, as a string",
                        ));
                    }
                },
                _ => {
                    return Err(invalid(
                        &format!("{param}.function.arguments"),
                        "invalid_type",
                        "function.arguments must be a string",
                    ));
                }
            };
            let part = Part {
                function_call: Some(FunctionCall {
                    name: name.to_owned(),
                    args,
                }),
                thought_signature: signature_of(id).map(str::to_owned),
                ..Part::default()
            };
            Ok((id.to_owned(), part))
        })
        .collect()
}

/// A `tool` message's result as a `functionResponse` part: a JSON object is passed as it is,
/// anything else as `{"content": text}`.
pub fn result_part(name: &str, content: &str) -> Part {
    let response = match serde_json::from_str::<Value>(content) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "content": content }),
    };
    Part {
        function_response: Some(FunctionResponse {
            name: name.to_owned(),
            response,
        }),
        ..Part::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
    }

    #[test]
    fn tools_become_function_declarations() {
        let tools = parse(&fields(
            json!({"tools": [weather()], "tool_choice": "required"}),
        ))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&tools.tools).unwrap(),
            json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather",
                    "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}}]}])
        );
        assert_eq!(
            serde_json::to_value(&tools.config).unwrap(),
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        let named = parse(&fields(json!({"tools": [weather()],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&named.config).unwrap(),
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
        );
        assert_eq!(parse(&fields(json!({}))).unwrap(), Tools::default());
    }

    #[test]
    fn what_gemini_cannot_take_is_refused() {
        for body in [
            json!({"tools": [{"type": "code_interpreter"}]}),
            json!({"tools": [{"type": "function", "function": {"name": "1st"}}]}),
            json!({"tools": [{"type": "function", "function": {"name": "a.b"}}]}),
            json!({"tools": [weather(), weather()]}),
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}),
            json!({"tools": "all"}),
            json!({"tool_choice": "required"}),
            json!({"tools": [weather()], "tool_choice": {"type": "function", "function": {"name": "other"}}}),
            json!({"tools": [weather()], "tool_choice": "sometimes"}),
            json!({"tools": [weather()], "parallel_tool_calls": false}),
            json!({"tools": [weather()], "parallel_tool_calls": "yes"}),
        ] {
            assert!(parse(&fields(body.clone())).is_err(), "{body}");
        }
        assert!(parse(&fields(json!({"tool_choice": "none"}))).is_ok());
    }

    #[test]
    fn a_signature_rides_in_the_call_id_and_comes_back() {
        let id = call_id(0xabc, Some("c2lnbmF0dXJl"));
        assert_eq!(id, "call_0000000000000abc__thought__c2lnbmF0dXJl");
        assert_eq!(signature_of(&id), Some("c2lnbmF0dXJl"));
        assert_eq!(signature_of(&call_id(1, None)), None);

        let calls = [json!({"id": id, "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Seoul\"}"}})];
        let parts = call_parts(&calls, 1).unwrap();
        assert_eq!(
            serde_json::to_value(&parts[0].1).unwrap(),
            json!({"functionCall": {"name": "get_weather", "args": {"city": "Seoul"}},
                   "thoughtSignature": "c2lnbmF0dXJl"})
        );
        let bad = [json!({"id": "x", "type": "function",
                          "function": {"name": "f", "arguments": "[1]"}})];
        assert!(call_parts(&bad, 1).is_err());
    }

    #[test]
    fn results_are_objects() {
        let part = result_part("f", "{\"temp\": 3}");
        assert_eq!(part.function_response.unwrap().response, json!({"temp": 3}));
        let part = result_part("f", "sunny");
        assert_eq!(
            part.function_response.unwrap().response,
            json!({"content": "sunny"})
        );
    }
}
