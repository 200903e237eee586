//! Thinking over real HTTP: levels, budgets, thought tokens billed against maxOutputTokens.

use crate::common::*;
use serde_json::{Value, json};

fn tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

fn ask(generation_config: Value) -> Value {
    json!({
        "contents": [{"role": "user", "parts": [{"text": "What is a lifetime?"}]}],
        "generationConfig": generation_config,
    })
}

/// The full answer text to `ask(..)` from `MODEL`, as sent without any cut.
fn full_answer() -> String {
    format!(
        "[Vertex AI emulator · {MODEL} · turn 1] (no system instruction) — you said: What is a lifetime?"
    )
}

const PROMPT_TOKENS: u64 = 5; // "What is a lifetime?" = 19 characters

#[test]
fn each_level_spends_its_thought_tokens() {
    let emulator = background();
    let answer_tokens = tokens(full_answer().chars().count());
    for (level, thoughts) in [
        ("MINIMAL", 16),
        ("low", 64),
        ("MEDIUM", 512),
        ("high", 2048),
    ] {
        for path in [generate_path(), sse_path()] {
            let response = post(
                &emulator,
                &path,
                &ask(json!({"thinkingConfig": {"thinkingLevel": level}})),
            );
            assert_eq!(response.status, 200, "{}", response.text());
            let last = if path.contains("alt=sse") {
                sse_events(&response.body).pop().unwrap()
            } else {
                response.json()
            };
            let usage = &last["usageMetadata"];
            assert_eq!(usage["thoughtsTokenCount"], thoughts, "{level}: {usage}");
            assert_eq!(usage["candidatesTokenCount"], answer_tokens);
            assert_eq!(
                usage["totalTokenCount"],
                PROMPT_TOKENS + answer_tokens + thoughts
            );
            assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        }
    }
}

#[test]
fn flash_thinks_at_medium_without_a_thinking_config() {
    let emulator = background();
    for body in [
        ask(json!({})),
        ask(json!({"thinkingConfig": {"thinkingLevel": "THINKING_LEVEL_UNSPECIFIED"}})),
        ask(json!({"thinkingConfig": {"thinkingBudget": -1}})),
        user_body("What is a lifetime?"),
    ] {
        let json = post(&emulator, &generate_path(), &body).json();
        assert_eq!(json["usageMetadata"]["thoughtsTokenCount"], 512, "{body}");
    }
}

#[test]
fn a_budget_is_spent_exactly_and_zero_turns_thinking_off() {
    let emulator = background();
    let json = post(
        &emulator,
        &generate_path(),
        &ask(json!({"thinkingConfig": {"thinkingBudget": 300}})),
    )
    .json();
    assert_eq!(json["usageMetadata"]["thoughtsTokenCount"], 300);

    let json = post(
        &emulator,
        &generate_path(),
        &ask(json!({"thinking_config": {"thinking_budget": 0}})),
    )
    .json();
    let usage = &json["usageMetadata"];
    assert!(usage.get("thoughtsTokenCount").is_none(), "{usage}");
    let answer_tokens = tokens(full_answer().chars().count());
    assert_eq!(usage["totalTokenCount"], PROMPT_TOKENS + answer_tokens);
}

#[test]
fn thoughts_that_use_up_max_output_tokens_leave_no_content() {
    let emulator = background();
    // A chat-sized limit with the default (MEDIUM, 512 tokens) thinking: nothing left.
    for max in [512, 256] {
        let body = ask(json!({"maxOutputTokens": max}));
        let json = post(&emulator, &generate_path(), &body).json();
        let candidate = &json["candidates"][0];
        assert_eq!(candidate["finishReason"], "MAX_TOKENS", "{json}");
        assert!(candidate.get("content").is_none(), "{candidate}");
        let usage = &json["usageMetadata"];
        assert!(usage.get("candidatesTokenCount").is_none(), "{usage}");
        assert_eq!(usage["thoughtsTokenCount"], max);
        assert_eq!(usage["totalTokenCount"], PROMPT_TOKENS + max);

        // Streamed: one chunk, the same candidate without content.
        let events = sse_events(&post(&emulator, &sse_path(), &body).body);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert!(events[0]["candidates"][0].get("content").is_none());
        assert_eq!(events[0]["usageMetadata"], json["usageMetadata"]);
    }
}

#[test]
fn thoughts_plus_answer_over_the_limit_cut_the_answer() {
    let emulator = background();
    // LOW thinks 64 tokens; 6 tokens are left for the answer: its first 24 characters.
    let body = ask(json!({"maxOutputTokens": 70, "thinkingConfig": {"thinkingLevel": "LOW"}}));
    let json = post(&emulator, &generate_path(), &body).json();
    let candidate = &json["candidates"][0];
    assert_eq!(candidate["finishReason"], "MAX_TOKENS");
    let expected: String = full_answer().chars().take(24).collect();
    assert_eq!(candidate["content"]["parts"][0]["text"], expected);
    let usage = &json["usageMetadata"];
    assert_eq!(usage["candidatesTokenCount"], 6);
    assert_eq!(usage["thoughtsTokenCount"], 64);
    assert_eq!(usage["totalTokenCount"], PROMPT_TOKENS + 6 + 64);

    let events = sse_events(&post(&emulator, &sse_path(), &body).body);
    let joined: String = events.iter().map(delta).collect();
    assert_eq!(joined, expected);
    let last = events.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(last["usageMetadata"], json["usageMetadata"]);

    // Enough room: the whole answer.
    let roomy = ask(json!({"maxOutputTokens": 1024, "thinkingConfig": {"thinkingLevel": "LOW"}}));
    let response = post(&emulator, &generate_path(), &roomy);
    assert_eq!(response.reply_text(), full_answer());
    assert_eq!(response.json()["candidates"][0]["finishReason"], "STOP");
}

#[test]
fn thought_parts_only_with_include_thoughts() {
    let emulator = background();
    let plain = post(&emulator, &generate_path(), &ask(json!({}))).json();
    let parts = plain["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap();
    assert_eq!(parts.len(), 1);
    assert!(parts[0].get("thought").is_none());

    let body = ask(json!({"thinkingConfig": {"thinkingLevel": "low", "includeThoughts": true}}));
    let json = post(&emulator, &generate_path(), &body).json();
    let parts = json["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["thought"], true);
    assert_eq!(parts[1]["text"], full_answer());

    let events = sse_events(&post(&emulator, &sse_path(), &body).body);
    assert_eq!(
        events[0]["candidates"][0]["content"]["parts"][0]["thought"],
        true
    );
    let answer: String = events[1..].iter().map(delta).collect();
    assert_eq!(answer, full_answer());
}

#[test]
fn invalid_thinking_configs_are_400() {
    let emulator = background();
    let cases = [
        (
            json!({"thinkingConfig": {"thinkingLevel": "LOW", "thinkingBudget": 128}}),
            "You can only set only one of thinking budget and thinking level.".to_string(),
        ),
        (
            json!({"thinkingConfig": {"thinkingLevel": "extreme"}}),
            "Invalid JSON payload received. Invalid value at 'generation_config.thinking_config.thinking_level' \
             (type.googleapis.com/google.cloud.aiplatform.v1.GenerationConfig.ThinkingConfig.ThinkingLevel), \"extreme\""
                .to_string(),
        ),
        (
            json!({"thinkingConfig": {"thinkingBudget": 40000}}),
            "The thinking budget (40000) is invalid.".to_string(),
        ),
        (
            json!({"thinkingConfig": {"thinkingBudget": 0, "includeThoughts": true}}),
            "Unable to submit request because Thinking_config.include_thoughts is only enabled when \
             thinking is enabled.. Learn more: \
             https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini"
                .to_string(),
        ),
        (
            json!({"thinkingConfig": {"level": "LOW"}}),
            "Invalid JSON payload received. Unknown name \"level\" at 'generation_config.thinking_config': Cannot find field."
                .to_string(),
        ),
    ];
    for (config, expected) in cases {
        for path in [generate_path(), sse_path()] {
            let message =
                post(&emulator, &path, &ask(config.clone())).expect_error(400, "INVALID_ARGUMENT");
            assert_eq!(message, expected, "{config}");
        }
    }
}
