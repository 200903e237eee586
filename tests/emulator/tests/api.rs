//! Protocol behaviour over real HTTP: reply shapes, streaming, auth, models, validation.

use crate::common::*;
use serde_json::{Value, json};
use vertex_emulator::{Emulator, EmulatorConfig, SERVED_MODELS};

fn tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

#[test]
fn unary_reply_has_the_real_shape() {
    let emulator = background();
    let body = json!({
        "systemInstruction": {"parts": [{"text": "You are Elro, a patient mentor.\nNever rush."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}]},
            {"role": "model", "parts": [{"text": "Hi! How can I help?"}]},
            {"role": "user", "parts": [{"text": "How do I start learning Rust?"}]}
        ],
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 1024, "candidateCount": 1}
    });
    let response = post(&emulator, &generate_path(), &body);
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let json = response.json();
    let candidate = &json["candidates"][0];
    assert_eq!(candidate["index"], 0);
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(candidate["finishReason"], "STOP");
    let ratings = candidate["safetyRatings"].as_array().unwrap();
    assert!(!ratings.is_empty());
    assert!(ratings.iter().all(|r| r["probability"] == "NEGLIGIBLE"));

    let text = response.reply_text();
    assert_eq!(
        text,
        "[Vertex AI emulator · gemini-3.5-flash · turn 3] You are Elro, a patient mentor. — you said: How do I start learning Rust?"
    );

    let prompt_chars = "You are Elro, a patient mentor.\nNever rush."
        .chars()
        .count()
        + "Hello".len()
        + "Hi! How can I help?".len()
        + "How do I start learning Rust?".len();
    let usage = &json["usageMetadata"];
    let candidates = tokens(text.chars().count());
    assert_eq!(usage["promptTokenCount"], tokens(prompt_chars));
    assert_eq!(usage["candidatesTokenCount"], candidates);
    // gemini-3.5-flash thinks at MEDIUM (512 tokens) by default.
    assert_eq!(usage["thoughtsTokenCount"], 512);
    assert_eq!(
        usage["totalTokenCount"],
        tokens(prompt_chars) + candidates + 512
    );
    assert_eq!(json["modelVersion"], MODEL);
    let create_time = json["createTime"].as_str().unwrap();
    assert_eq!(
        create_time.len(),
        "2026-11-26T08:00:00.123456Z".len(),
        "{create_time}"
    );
    assert!(create_time.ends_with('Z') && create_time.as_bytes()[10] == b'T');
    let id = json["responseId"].as_str().unwrap();
    assert!(!id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()));

    // Same request, same id; another request, another id.
    let again = post(&emulator, &generate_path(), &body).json();
    assert_eq!(again["responseId"], json["responseId"]);
    let other = post(&emulator, &generate_path(), &user_body("other")).json();
    assert_ne!(other["responseId"], json["responseId"]);
}

#[test]
fn reply_without_system_instruction_and_other_model_location() {
    let emulator = background();
    let path =
        "/v1/projects/p2/locations/global/publishers/google/models/gemini-3-flash:generateContent";
    let text = post(&emulator, path, &user_body("ping")).reply_text();
    assert_eq!(
        text,
        "[Vertex AI emulator · gemini-3-flash · turn 1] (no system instruction) — you said: ping"
    );
}

#[test]
fn max_output_tokens_cuts_the_reply() {
    let emulator = background();
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "tell me everything"}]}],
                      "generationConfig": {"maxOutputTokens": 5, "thinkingConfig": {"thinkingBudget": 0}}});
    let json = post(&emulator, &generate_path(), &body).json();
    assert_eq!(json["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(
        json["candidates"][0]["content"]["parts"][0]["text"],
        "[Vertex AI emulator "
    );
    assert_eq!(json["usageMetadata"]["candidatesTokenCount"], 5);
}

#[test]
fn sse_stream_splits_the_unary_text_into_deltas() {
    let emulator = background();
    let body = json!({
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Explain ownership in a few words please"}]}]
    });
    let unary = post(&emulator, &generate_path(), &body);
    let response = post(&emulator, &sse_path(), &body);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let text = response.text();
    assert!(!text.contains("[DONE]"));
    let events = sse_events(&response.body);
    assert!(events.len() >= 3, "{} events", events.len());

    let joined: String = events.iter().map(delta).collect();
    assert_eq!(joined, unary.reply_text());

    let unary_usage = &unary.json()["usageMetadata"];
    let prompt = unary_usage["promptTokenCount"].clone();
    let mut sent = String::new();
    for event in &events[..events.len() - 1] {
        // Partial usage: what has been generated so far.
        sent.push_str(delta(event));
        let usage = &event["usageMetadata"];
        assert_eq!(usage["promptTokenCount"], prompt, "{event}");
        assert_eq!(usage["thoughtsTokenCount"], 512, "{event}");
        assert_eq!(
            usage["candidatesTokenCount"],
            tokens(sent.chars().count()),
            "{event}"
        );
        assert_ne!(usage, unary_usage);
        assert!(
            event["candidates"][0].get("finishReason").is_none(),
            "{event}"
        );
        assert_eq!(event["candidates"][0]["content"]["role"], "model");
        assert_eq!(event["modelVersion"], MODEL);
    }
    let last = events.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(&last["usageMetadata"], unary_usage);
}

#[test]
fn stream_without_alt_sse_is_a_json_array_of_the_same_chunks() {
    let emulator = background();
    let body = user_body("one two three four five six");
    let path = model_path(MODEL, "streamGenerateContent");
    let array = post(&emulator, &path, &body);
    assert_eq!(array.status, 200);
    assert!(
        array
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let chunks = array.json();
    let chunks = chunks.as_array().expect("a JSON array");
    let sse = sse_events(&post(&emulator, &sse_path(), &body).body);
    assert_eq!(chunks.len(), sse.len());
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("createTime");
        v
    };
    for (a, b) in chunks.iter().zip(&sse) {
        assert_eq!(strip(a), strip(b));
    }
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let emulator = background();
    let mut connection = Connection::open(emulator.addr());
    let auth = format!("Bearer {TOKEN}");
    for i in 0..5 {
        let body = user_body(&format!("message {i}")).to_string();
        let path = if i % 2 == 0 {
            generate_path()
        } else {
            sse_path()
        };
        let response = connection
            .send("POST", &path, &[("Authorization", &auth)], body.as_bytes())
            .expect("response on the same connection");
        assert_eq!(response.status, 200);
        assert!(response.text().contains(&format!("you said: message {i}")));
    }
    // Errors keep the connection too.
    let response = connection.send("GET", "/nope", &[], b"").unwrap();
    assert_eq!(response.status, 404);
    let response = connection
        .send(
            "POST",
            &generate_path(),
            &[("Authorization", &auth)],
            user_body("after").to_string().as_bytes(),
        )
        .unwrap();
    assert!(response.reply_text().ends_with("after"));
}

#[test]
fn unknown_paths_and_methods_are_404_with_status_body() {
    let emulator = background();
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    for (method, path) in [
        ("GET", "/".to_string()),
        ("POST", "/v1/models".to_string()),
        ("GET", generate_path()),
        ("PUT", generate_path()),
        ("POST", model_path(MODEL, "countTokens")),
        ("POST", generate_path().replace("/v1/", "/v9/")),
    ] {
        let response = send(&emulator, method, &path, &headers, b"{}").unwrap();
        let message = response.expect_error(404, "NOT_FOUND");
        assert!(
            message.contains("was not found"),
            "{method} {path}: {message}"
        );
    }
}

#[test]
fn missing_or_empty_bearer_is_401() {
    let emulator = background();
    let body = user_body("hi").to_string();
    for headers in [
        vec![],
        vec![("Authorization", "Bearer ")],
        vec![("Authorization", "Bearer")],
        vec![("Authorization", "Basic dXNlcjpwYXNz")],
    ] {
        let response = send(
            &emulator,
            "POST",
            &generate_path(),
            &headers,
            body.as_bytes(),
        )
        .unwrap();
        let message = response.expect_error(401, "UNAUTHENTICATED");
        assert!(
            message.starts_with("Request is missing required authentication credential"),
            "{headers:?}: {message}"
        );
    }
    // Streaming is guarded the same way.
    let response = send(&emulator, "POST", &sse_path(), &[], body.as_bytes()).unwrap();
    response.expect_error(401, "UNAUTHENTICATED");
}

#[test]
fn expected_token_must_match() {
    let emulator = Emulator::start_in_background(EmulatorConfig {
        expected_token: Some("s3cret".into()),
        ..Default::default()
    })
    .unwrap();
    let body = user_body("hi").to_string();
    let wrong = send(
        &emulator,
        "POST",
        &generate_path(),
        &[("Authorization", "Bearer other")],
        body.as_bytes(),
    )
    .unwrap();
    let message = wrong.expect_error(401, "UNAUTHENTICATED");
    assert!(
        message.starts_with("Request had invalid authentication credentials"),
        "{message}"
    );
    let right = send(
        &emulator,
        "POST",
        &generate_path(),
        &[("Authorization", "Bearer s3cret")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(right.status, 200, "{}", right.text());
}

#[test]
fn retired_and_non_gemini_models_are_404() {
    let emulator = background();
    for model in [
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.5-pro",
        "gemini-2.5-flash-preview-05-20",
        "gemini-2.0-flash-001",
        "gemini-2.0-flash-lite",
        "gemini-1.5-flash-002",
        "gemini-1.5-pro",
        "gemini-1.0-pro-002",
        "gemini-pro",
        "text-bison",
        "claude-sonnet",
    ] {
        for verb in ["generateContent", "streamGenerateContent"] {
            let response = post(&emulator, &model_path(model, verb), &user_body("hi"));
            let message = response.expect_error(404, "NOT_FOUND");
            assert_eq!(
                message,
                format!(
                    "Publisher Model `projects/test-project/locations/us-central1/publishers/google/models/{model}` \
                     was not found or your project does not have access to it. Please ensure you are using a valid \
                     model version. For more information, see: \
                     https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions"
                )
            );
        }
    }
}

#[test]
fn todays_models_are_served() {
    let emulator = background();
    for model in
        SERVED_MODELS
            .iter()
            .copied()
            .chain(["gemini-3-flash", "gemini-3.8-flash", "gemini-3-pro"])
    {
        let path = format!(
            "/v1/projects/p/locations/global/publishers/google/models/{model}:generateContent"
        );
        let response = post(&emulator, &path, &user_body("hello"));
        assert!(
            response
                .reply_text()
                .starts_with(&format!("[Vertex AI emulator · {model} · turn 1]")),
            "{model}"
        );
        assert_eq!(response.json()["modelVersion"], model);
    }
    assert!(SERVED_MODELS.contains(&"gemini-3.5-flash"));
}

#[test]
fn unknown_fields_are_400_naming_the_field() {
    let emulator = background();
    let cases = [
        (
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"foo": 1}}),
            "Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': Cannot find field.",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "tool": []}),
            "Invalid JSON payload received. Unknown name \"tool\": Cannot find field.",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"text": "hi", "inline_data": {}}]}]}),
            "Invalid JSON payload received. Unknown name \"inline_data\" at 'contents[0].parts[0]': Cannot find field.",
        ),
    ];
    for (body, expected) in cases {
        let message =
            post(&emulator, &generate_path(), &body).expect_error(400, "INVALID_ARGUMENT");
        assert_eq!(message, expected);
    }
}

#[test]
fn snake_case_names_are_accepted() {
    let emulator = background();
    let body = json!({
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "system_instruction": {"parts": [{"text": "Snake."}]},
        "generation_config": {"max_output_tokens": 100, "top_p": 0.9,
                              "thinking_config": {"thinking_budget": 0}},
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
        "labels": {"env": "test"}
    });
    let text = post(&emulator, &generate_path(), &body).reply_text();
    assert!(text.contains("] Snake. — you said: hi"), "{text}");
}

#[test]
fn malformed_json_is_400() {
    let emulator = background();
    let auth = format!("Bearer {TOKEN}");
    for body in [
        &b"{\"contents\": ["[..],
        b"not json",
        b"{\"contents\": [] ,}",
    ] {
        let response = send(
            &emulator,
            "POST",
            &generate_path(),
            &[("Authorization", &auth)],
            body,
        )
        .unwrap();
        let message = response.expect_error(400, "INVALID_ARGUMENT");
        assert!(
            message.starts_with("Invalid JSON payload received."),
            "{message}"
        );
    }
}

#[test]
fn semantic_checks_are_400() {
    let emulator = background();
    let user = |t: &str| json!({"role": "user", "parts": [{"text": t}]});
    let cases = [
        (json!({"contents": []}), "contents"),
        (json!({}), "contents"),
        (
            json!({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}),
            "valid role",
        ),
        (
            json!({"contents": [user("x"), {"role": "model", "parts": [{"text": "y"}]}]}),
            "user turn",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"thought": true}]}]}),
            "empty text",
        ),
        (
            json!({"contents": [user("x")], "generationConfig": {"temperature": 2.1}}),
            "temperature",
        ),
        (
            json!({"contents": [user("x")], "generationConfig": {"temperature": -1}}),
            "temperature",
        ),
        (
            json!({"contents": [user("x")], "generationConfig": {"candidateCount": 2}}),
            "candidateCount",
        ),
        (
            json!({"contents": [user("x")], "generationConfig": {"maxOutputTokens": 0}}),
            "maxOutputTokens",
        ),
        (
            json!({"contents": [user("x")], "generationConfig": {"temperature": "warm"}}),
            "generation_config.temperature",
        ),
    ];
    for (body, needle) in cases {
        let message =
            post(&emulator, &generate_path(), &body).expect_error(400, "INVALID_ARGUMENT");
        assert!(message.contains(needle), "{body}: {message}");
    }
}

#[test]
fn auth_then_model_then_body_is_the_check_order() {
    let emulator = background();
    let bad_body = b"{\"bogus\": 1}";
    let retired = model_path("gemini-2.5-flash", "generateContent");
    let none = send(&emulator, "POST", &retired, &[], bad_body).unwrap();
    none.expect_error(401, "UNAUTHENTICATED");
    let auth = format!("Bearer {TOKEN}");
    let model = send(
        &emulator,
        "POST",
        &retired,
        &[("Authorization", &auth)],
        bad_body,
    )
    .unwrap();
    model.expect_error(404, "NOT_FOUND");
    let body = send(
        &emulator,
        "POST",
        &generate_path(),
        &[("Authorization", &auth)],
        bad_body,
    )
    .unwrap();
    body.expect_error(400, "INVALID_ARGUMENT");
}

#[test]
fn conversations_show_their_turn_and_echo_the_newest_message() {
    let emulator = background();
    let turn = |role: &str, text: &str| json!({"role": role, "parts": [{"text": text}]});
    let mut contents = vec![turn("user", "My name is Ana.")];
    for (n, reply) in [(1, "Hi Ana!"), (3, "Rust is a good pick."), (5, "")] {
        let body = json!({"contents": contents});
        let text = post(&emulator, &generate_path(), &body).reply_text();
        let newest = contents.last().unwrap()["parts"][0]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            text,
            format!(
                "[Vertex AI emulator · {MODEL} · turn {n}] (no system instruction) — you said: {newest}"
            )
        );
        let streamed: String = sse_events(&post(&emulator, &sse_path(), &body).body)
            .iter()
            .map(delta)
            .collect();
        assert_eq!(streamed, text);
        if reply.is_empty() {
            break;
        }
        contents.push(turn("model", reply));
        contents.push(turn("user", &format!("question {}", n + 2)));
    }
}

#[test]
fn conversations_must_use_user_and_model_and_end_with_the_user() {
    let emulator = background();
    let turn = |role: &str| json!({"role": role, "parts": [{"text": "x"}]});
    for (contents, expected) in [
        (
            vec![turn("user"), turn("assistant"), turn("user")],
            "Please use a valid role: user, model. Got 'assistant' at 'contents[1].role'.",
        ),
        (
            vec![turn("system"), turn("user")],
            "Please use a valid role: user, model. Got 'system' at 'contents[0].role'.",
        ),
        (
            vec![turn("user"), turn("model")],
            "Please ensure that multiturn requests alternate between user and model, and end with a user turn.",
        ),
    ] {
        for path in [generate_path(), sse_path()] {
            let message = post(&emulator, &path, &json!({"contents": contents}))
                .expect_error(400, "INVALID_ARGUMENT");
            assert_eq!(message, expected);
        }
    }
}

#[test]
fn safety_settings_are_validated_strictly_and_recorded() {
    let emulator = background();
    let with = |settings: Value| json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "safetySettings": settings});
    let good = json!([
        {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_LOW_AND_ABOVE"},
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_MEDIUM_AND_ABOVE", "method": "PROBABILITY"},
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF", "method": "SEVERITY"},
        {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "threshold": "BLOCK_NONE"},
        {"category": "HARM_CATEGORY_CIVIC_INTEGRITY", "threshold": "HARM_BLOCK_THRESHOLD_UNSPECIFIED"}
    ]);
    let response = post(&emulator, &generate_path(), &with(good));
    assert_eq!(response.status, 200, "{}", response.text());
    let recorded = emulator.requests().pop().unwrap().request.unwrap();
    let arrived: Vec<(Option<&str>, Option<&str>, Option<&str>)> = recorded
        .safety_settings
        .iter()
        .map(|s| {
            (
                s.category.as_deref(),
                s.threshold.as_deref(),
                s.method.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        arrived,
        [
            (
                Some("HARM_CATEGORY_HATE_SPEECH"),
                Some("BLOCK_LOW_AND_ABOVE"),
                None
            ),
            (
                Some("HARM_CATEGORY_DANGEROUS_CONTENT"),
                Some("BLOCK_MEDIUM_AND_ABOVE"),
                Some("PROBABILITY")
            ),
            (
                Some("HARM_CATEGORY_HARASSMENT"),
                Some("OFF"),
                Some("SEVERITY")
            ),
            (
                Some("HARM_CATEGORY_SEXUALLY_EXPLICIT"),
                Some("BLOCK_NONE"),
                None
            ),
            (
                Some("HARM_CATEGORY_CIVIC_INTEGRITY"),
                Some("HARM_BLOCK_THRESHOLD_UNSPECIFIED"),
                None
            ),
        ]
    );
    let cases = [
        (
            json!([{"category": "HARM_CATEGORY_UNSPECIFIED", "threshold": "OFF"}]),
            "safety_settings[0].category is HARM_CATEGORY_UNSPECIFIED",
        ),
        (
            json!([{"threshold": "OFF"}]),
            "safety_settings[0].category is HARM_CATEGORY_UNSPECIFIED",
        ),
        (
            json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"},
                   {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "OFF"},
                   {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]),
            "safety_settings[2] sets HARM_CATEGORY_HARASSMENT again",
        ),
        (
            json!([{"category": "HARM_CATEGORY_MEDICAL", "threshold": "OFF"}]),
            "Invalid value at 'safety_settings[0].category' (type.googleapis.com/google.cloud.aiplatform.v1.HarmCategory)",
        ),
        (
            json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_MOST"}]),
            "Invalid value at 'safety_settings[0].threshold'",
        ),
        (
            json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF", "method": "VIBES"}]),
            "Invalid value at 'safety_settings[0].method'",
        ),
    ];
    for (settings, needle) in cases {
        let message = post(&emulator, &generate_path(), &with(settings.clone()))
            .expect_error(400, "INVALID_ARGUMENT");
        assert!(message.contains(needle), "{settings}: {message}");
    }
}
