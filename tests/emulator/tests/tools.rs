//! Function calling over real HTTP: the calls the emulator makes, the thought signatures
//! Gemini 3 requires back, the tool loop, and the validation of tools and function parts.

use crate::common::*;
use serde_json::{Value, json};
use vertex_emulator::{Emulator, FAULT_HEADER, SKIP_THOUGHT_SIGNATURE, signature_is_valid};

const QUESTION: &str = "What is the weather in Paris today, and what time is it there?";

fn declarations() -> Value {
    json!([{"functionDeclarations": [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "OBJECT",
                "properties": {
                    "city": {"type": "STRING"},
                    "unit": {"type": "STRING", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "INTEGER", "minimum": 1},
                    "hourly": {"type": "BOOLEAN"}
                },
                "required": ["city"]
            }
        },
        {
            "name": "get_time",
            "parametersJsonSchema": {
                "type": "object",
                "properties": {"zone": {"type": "string"}, "offsets": {"type": "array", "items": {"type": "number"}}},
                "required": ["zone"],
                "additionalProperties": false
            }
        }
    ]}])
}

fn user_text(text: &str) -> Value {
    json!({"role": "user", "parts": [{"text": text}]})
}

fn ask(contents: Value) -> Value {
    json!({"contents": contents, "tools": declarations()})
}

fn responses(results: &[(&str, Value)]) -> Value {
    let parts: Vec<Value> = results
        .iter()
        .map(|(name, response)| json!({"functionResponse": {"name": name, "response": response}}))
        .collect();
    json!({"role": "user", "parts": parts})
}

/// The model content of a unary reply, to send back as history.
fn model_content(reply: &Value) -> Value {
    let content = reply["candidates"][0]["content"].clone();
    assert_eq!(content["role"], "model", "{reply}");
    content
}

fn parts(reply: &Value) -> Vec<Value> {
    reply["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap_or_else(|| panic!("no parts in {reply}"))
        .clone()
}

fn truncated(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The answer to [`QUESTION`] alone: a signed function call.
fn first_answer(emulator: &Emulator) -> Value {
    post(
        emulator,
        &generate_path(),
        &ask(json!([user_text(QUESTION)])),
    )
    .json()
}

#[test]
fn a_two_step_tool_loop_ends_with_the_tool_results() {
    let emulator = background();
    // Step 1: the question; the model calls the first declared function.
    let first = post(
        &emulator,
        &generate_path(),
        &ask(json!([user_text(QUESTION)])),
    );
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.json();
    let calls = parts(&first);
    assert_eq!(calls.len(), 1, "{first}");
    assert_eq!(calls[0]["functionCall"]["name"], "get_weather");
    assert_eq!(
        calls[0]["functionCall"]["args"],
        json!({"city": truncated(QUESTION), "unit": "celsius", "days": 1, "hourly": true})
    );
    let signature = calls[0]["thoughtSignature"].as_str().expect("a signature");
    assert!(signature_is_valid(signature));
    assert_eq!(first["candidates"][0]["finishReason"], "STOP");
    let usage = &first["usageMetadata"];
    let call_chars = calls[0]["functionCall"].to_string().chars().count();
    assert_eq!(usage["candidatesTokenCount"], call_chars.div_ceil(4));
    assert_eq!(
        usage["totalTokenCount"],
        usage["promptTokenCount"].as_u64().unwrap() + call_chars.div_ceil(4) as u64 + 512
    );

    // Step 2: the call echoed back with its signature, and the function's result.
    let result = json!({"temperature": 21, "sky": "clear"});
    let contents = json!([
        user_text(QUESTION),
        model_content(&first),
        responses(&[("get_weather", result.clone())])
    ]);
    let second = post(&emulator, &generate_path(), &ask(contents.clone()));
    assert_eq!(
        second.reply_text(),
        format!(
            "[Vertex AI emulator · {MODEL} · turn 3] (no system instruction) — tool results: \
             get_weather={result}"
        )
    );
    let second = second.json();
    assert_eq!(parts(&second).len(), 1);
    assert_eq!(second["candidates"][0]["finishReason"], "STOP");

    // The records show what arrived, parsed.
    let requests = emulator.requests();
    assert_eq!(requests.len(), 2);
    let parsed = requests[1].request.as_ref().expect("a parsed request");
    let declared: Vec<&str> = parsed.tools[0]
        .function_declarations
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(declared, ["get_weather", "get_time"]);
    let echoed = &parsed.contents[1].parts[0];
    assert_eq!(echoed.thought_signature.as_deref(), Some(signature));
    assert_eq!(echoed.function_call.as_ref().unwrap().name, "get_weather");
    let answered = parsed.contents[2].parts[0]
        .function_response
        .as_ref()
        .unwrap();
    assert_eq!(answered.response, Some(result));
}

#[test]
fn a_longer_loop_needs_a_signature_on_every_call_of_the_turn() {
    let emulator = background();
    let first = first_answer(&emulator);
    let call = model_content(&first);
    let mut contents = vec![
        user_text(QUESTION),
        call.clone(),
        responses(&[("get_weather", json!({"t": 1}))]),
        call.clone(),
        responses(&[("get_weather", json!({"t": 2}))]),
    ];
    let text = post(&emulator, &generate_path(), &ask(json!(contents))).reply_text();
    assert!(
        text.ends_with(r#"turn 5] (no system instruction) — tool results: get_weather={"t":2}"#),
        "{text}"
    );
    // The second call of the turn without its signature.
    contents[3]["parts"][0]
        .as_object_mut()
        .unwrap()
        .remove("thoughtSignature");
    let message = post(&emulator, &generate_path(), &ask(json!(contents)))
        .expect_error(400, "INVALID_ARGUMENT");
    assert!(
        message.contains("function call `get_weather` , position 4."),
        "{message}"
    );
    // Once the user speaks again, the old turn needs no signatures any more.
    contents.push(json!({"role": "model", "parts": [{"text": "It is sunny."}]}));
    contents.push(user_text("Thanks! [[emulator:no-tool]]"));
    let text = post(&emulator, &generate_path(), &ask(json!(contents))).reply_text();
    assert!(
        text.ends_with("you said: Thanks! [[emulator:no-tool]]"),
        "{text}"
    );
}

#[test]
fn a_call_without_its_signature_is_400() {
    let emulator = background();
    let contents = json!([
        user_text(QUESTION),
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        responses(&[("get_weather", json!({"t": 1}))])
    ]);
    for path in [generate_path(), sse_path()] {
        let message =
            post(&emulator, &path, &ask(contents.clone())).expect_error(400, "INVALID_ARGUMENT");
        assert_eq!(
            message,
            "Function call is missing a thought_signature in functionCall parts. This is required \
             for tools to work correctly, and missing thought_signature may lead to degraded model \
             performance. Additional data, function call `get_weather` , position 2. Please refer \
             to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
        );
        assert!(message.starts_with("Function call is missing a thought_signature"));
    }
}

#[test]
fn a_tampered_or_foreign_signature_is_400() {
    let emulator = background();
    let first = first_answer(&emulator);
    let signature = parts(&first)[0]["thoughtSignature"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tampered = signature.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [tampered.as_str(), "abc", "YWJj", "ZW11LXNpZzowMDAw"] {
        let mut model = model_content(&first);
        model["parts"][0]["thoughtSignature"] = json!(bad);
        let contents = json!([
            user_text(QUESTION),
            model,
            responses(&[("get_weather", json!({}))])
        ]);
        let message =
            post(&emulator, &generate_path(), &ask(contents)).expect_error(400, "INVALID_ARGUMENT");
        assert_eq!(message, "Corrupted thought signature.", "{bad}");
    }
    // Not base64 at all: the JSON parser already refuses it.
    let mut model = model_content(&first);
    model["parts"][0]["thoughtSignature"] = json!("not*base64");
    let contents = json!([
        user_text(QUESTION),
        model,
        responses(&[("get_weather", json!({}))])
    ]);
    let message =
        post(&emulator, &generate_path(), &ask(contents)).expect_error(400, "INVALID_ARGUMENT");
    assert_eq!(
        message,
        "Invalid JSON payload received. Invalid value at 'contents[1].parts[0].thought_signature' \
         (TYPE_BYTES), Base64 decoding failed for \"not*base64\""
    );
    // A signature on a text part is checked the same way.
    let contents = json!([
        user_text("hi"),
        {"role": "model", "parts": [{"text": "hello", "thoughtSignature": "YWJj"}]},
        user_text("again")
    ]);
    let message =
        post(&emulator, &generate_path(), &ask(contents)).expect_error(400, "INVALID_ARGUMENT");
    assert_eq!(message, "Corrupted thought signature.");
}

#[test]
fn the_skip_sentinel_is_accepted_raw_and_base64() {
    let emulator = background();
    let encoded = "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I=";
    for sentinel in [SKIP_THOUGHT_SIGNATURE, encoded] {
        let contents = json!([
            user_text(QUESTION),
            {"role": "model", "parts": [{"functionCall": {"name": "get_time", "args": {"zone": "CET"}},
                                         "thought_signature": sentinel}]},
            responses(&[("get_time", json!({"time": "12:00"}))])
        ]);
        let text = post(&emulator, &generate_path(), &ask(contents)).reply_text();
        assert!(
            text.ends_with(r#"tool results: get_time={"time":"12:00"}"#),
            "{text}"
        );
    }
}

#[test]
fn parallel_calls_sign_the_first_and_a_follow_up_needs_only_that() {
    let emulator = background();
    let question = format!("{QUESTION} [[emulator:parallel-calls]]");
    let first = post(
        &emulator,
        &generate_path(),
        &ask(json!([user_text(&question)])),
    )
    .json();
    let calls = parts(&first);
    assert_eq!(calls.len(), 2, "{first}");
    assert_eq!(calls[0]["functionCall"]["name"], "get_weather");
    assert_eq!(calls[1]["functionCall"]["name"], "get_time");
    assert_eq!(
        calls[1]["functionCall"]["args"],
        json!({"zone": truncated(&question), "offsets": [1.5]})
    );
    assert!(signature_is_valid(
        calls[0]["thoughtSignature"].as_str().unwrap()
    ));
    assert!(calls[1].get("thoughtSignature").is_none(), "{}", calls[1]);

    // Echo both calls (only the first signed, as received) and answer both.
    let contents = json!([
        user_text(&question),
        model_content(&first),
        responses(&[
            ("get_weather", json!({"t": 21})),
            ("get_time", json!({"time": "12:00"}))
        ])
    ]);
    let text = post(&emulator, &generate_path(), &ask(contents.clone())).reply_text();
    assert!(
        text.ends_with(r#"tool results: get_weather={"t":21}; get_time={"time":"12:00"}"#),
        "{text}"
    );

    // One answer for two calls is the 400 Gemini gives.
    let short = json!([
        user_text(&question),
        model_content(&first),
        responses(&[("get_weather", json!({"t": 21}))])
    ]);
    let message =
        post(&emulator, &generate_path(), &ask(short)).expect_error(400, "INVALID_ARGUMENT");
    assert_eq!(
        message,
        "Please ensure that the number of function response parts is equal to the number of \
         function call parts of the function call turn."
    );

    // The marker works from the header too.
    let by_header = post_with(
        &emulator,
        &generate_path(),
        &[(FAULT_HEADER, "parallel-calls")],
        &ask(json!([user_text(QUESTION)])),
    );
    assert_eq!(parts(&by_header.json()).len(), 2);
}

#[test]
fn streamed_calls_arrive_whole_in_one_chunk() {
    let emulator = background();
    let body = ask(json!([user_text(&format!(
        "{QUESTION} [[emulator:parallel-calls]]"
    ))]));
    let unary = post(&emulator, &generate_path(), &body).json();
    let response = post(&emulator, &sse_path(), &body);
    assert_eq!(response.status, 200);
    let events = sse_events(&response.body);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(parts(event), parts(&unary));
    assert_eq!(event["candidates"][0]["finishReason"], "STOP");
    assert_eq!(event["usageMetadata"], unary["usageMetadata"]);

    // With a thought summary first, the calls are still one chunk, the last.
    let mut thinking = body.clone();
    thinking["generationConfig"] =
        json!({"thinkingConfig": {"thinkingLevel": "LOW", "includeThoughts": true}});
    let events = sse_events(&post(&emulator, &sse_path(), &thinking).body);
    assert_eq!(events.len(), 2);
    assert_eq!(parts(&events[0])[0]["thought"], true);
    assert!(events[0]["candidates"][0].get("finishReason").is_none());
    let calls = parts(&events[1]);
    assert_eq!(calls.len(), 2);
    assert!(calls[0]["thoughtSignature"].is_string());
    assert_eq!(events[1]["usageMetadata"]["thoughtsTokenCount"], 64);

    // Without alt=sse: a JSON array of the same single chunk.
    let array = post(
        &emulator,
        &model_path(MODEL, "streamGenerateContent"),
        &body,
    )
    .json();
    let array = array.as_array().unwrap();
    assert_eq!(array.len(), 1);
    assert_eq!(parts(&array[0]), parts(&unary));
}

#[test]
fn modes_decide_whether_to_call() {
    let emulator = background();
    let with_mode = |mode: &str, text: &str| {
        let mut body = ask(json!([user_text(text)]));
        body["toolConfig"] = json!({"functionCallingConfig": {"mode": mode}});
        post(&emulator, &generate_path(), &body).json()
    };
    let is_call = |reply: &Value| parts(reply)[0].get("functionCall").is_some();
    for mode in ["AUTO", "MODE_UNSPECIFIED", "ANY", "VALIDATED"] {
        assert!(is_call(&with_mode(mode, "weather?")), "{mode}");
    }
    assert!(!is_call(&with_mode("NONE", "weather?")));
    assert!(!is_call(&with_mode(
        "AUTO",
        "just chat [[emulator:no-tool]]"
    )));
    assert!(is_call(&with_mode("ANY", "just chat [[emulator:no-tool]]")));
    // Without tools a tool config changes nothing.
    let body = json!({"contents": [user_text("hi")],
                      "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}});
    assert!(
        post(&emulator, &generate_path(), &body)
            .reply_text()
            .ends_with("you said: hi")
    );
    // allowedFunctionNames picks the function.
    let mut body = ask(json!([user_text("time?")]));
    body["tool_config"] = json!({"function_calling_config": {
        "mode": "ANY", "allowed_function_names": ["get_time"]}});
    let reply = post(&emulator, &generate_path(), &body).json();
    assert_eq!(parts(&reply)[0]["functionCall"]["name"], "get_time");
    let recorded = emulator.requests().pop().unwrap().request.unwrap();
    let config = recorded
        .tool_config
        .unwrap()
        .function_calling_config
        .unwrap();
    assert_eq!(config.mode.as_deref(), Some("ANY"));
    assert_eq!(config.allowed_function_names, ["get_time"]);
}

#[test]
fn invalid_tools_and_function_parts_are_400() {
    let emulator = background();
    let question = json!([user_text("q")]);
    let tools = |declarations: Value| json!({"contents": question, "tools": [{"functionDeclarations": declarations}]});
    let signed = |name: &str| json!({"functionCall": {"name": name}, "thoughtSignature": SKIP_THOUGHT_SIGNATURE});
    let cases = [
        (
            tools(json!([{"name": "get weather"}])),
            "`get weather` is not a valid function name at 'tools[0].function_declarations[0].name'",
        ),
        (
            tools(json!([{"name": "ok"}, {"name": "9_lives"}])),
            "`9_lives` is not a valid function name at 'tools[0].function_declarations[1].name'",
        ),
        (
            tools(json!([{"name": "x".repeat(65)}])),
            "is not a valid function name",
        ),
        (
            tools(json!([{"name": "f", "parameters": {"type": "OBJECT"},
                          "parametersJsonSchema": {"type": "object"}}])),
            "sets both parameters and parameters_json_schema",
        ),
        (
            tools(json!([{"name": "f"}, {"name": "f"}])),
            "the function `f` at 'tools[0].function_declarations[1]' is declared more than once",
        ),
        (
            tools(json!([{"name": "f", "parameters": {"type": "OBJECT", "additional": true}}])),
            "Unknown name \"additional\" at 'tools[0].function_declarations[0].parameters'",
        ),
        (
            json!({"contents": question, "tools": declarations(),
                   "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["get_time"]}}}),
            "allowed_function_names is set but the mode is AUTO",
        ),
        (
            json!({"contents": question, "tools": declarations(),
                   "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_date"]}}}),
            "allowed_function_names contains `get_date`, which is not declared",
        ),
        (
            json!({"contents": question, "toolConfig": {"functionCallingConfig": {"mode": "MOSTLY"}}}),
            "Invalid value at 'tool_config.function_calling_config.mode'",
        ),
        (
            json!({"contents": question, "tools": [{"googleSearch": {}}]}),
            "does not model 'tools[0].google_search'",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [signed("f")]}]}),
            "'contents[0].parts[0]' holds a function_call in a user turn",
        ),
        (
            json!({"contents": [user_text("q"),
                                {"role": "model", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
                                user_text("r")]}),
            "'contents[1].parts[0]' holds a function_response in a model turn",
        ),
        (
            json!({"contents": [user_text("q"), {"role": "model", "parts": [signed("f")]}]}),
            "end with a user turn",
        ),
        (
            json!({"contents": [user_text("q"), responses(&[("f", json!({}))])]}),
            "Please ensure that function response turn comes immediately after a function call turn.",
        ),
        (
            json!({"contents": [{"role": "model", "parts": [signed("f")]}, responses(&[("f", json!({}))])]}),
            "Please ensure that function call turn comes immediately after a user turn or after a function response turn.",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [
                {"text": "a", "functionCall": {"name": "f"}}]}]}),
            "Oneof field 'data' is already set.",
        ),
    ];
    for (body, needle) in cases {
        let message =
            post(&emulator, &generate_path(), &body).expect_error(400, "INVALID_ARGUMENT");
        assert!(message.contains(needle), "{body}: {message}");
    }
    // Rejected requests are recorded without a parsed request.
    let last = emulator.requests().pop().unwrap();
    assert_eq!(last.status, Some(400));
    assert!(last.request.is_none());
}
