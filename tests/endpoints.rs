//! `/`, `/health`, `/docs`, `/openapi.json` and successful `/chat` calls, over real HTTP, on
//! ion-host and on `spin up`.

use crate::common::*;
use serde_json::Value;

#[test]
fn service_description_and_health() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));

        let index = service.get("/");
        assert_eq!(index.status, 200, "{runtime:?}");
        assert_eq!(index.header("content-type"), Some("application/json"));
        let index = index.json();
        assert_eq!(index["service"], "Ion Mentoring API", "{runtime:?}");
        assert_eq!(index["version"], "1.0.0");
        assert_eq!(index["status"], "running");
        assert_eq!(index["health"], "/health");
        assert_eq!(index["chat"], "/chat");
        assert_eq!(index["docs"], "/docs");
        assert_eq!(index["personas"].as_array().map(Vec::len), Some(4));

        let health = service.get("/health");
        assert_eq!(health.status, 200, "{runtime:?}");
        assert_eq!(
            health.json(),
            serde_json::json!({"status": "healthy", "version": "1.0.0", "pipeline_ready": true})
        );
        let head = request("HEAD", &service.url("/health"), &[], b"");
        assert_eq!(head.status, 200, "{runtime:?}");
        assert!(head.body.is_empty());

        let spec = service.get("/openapi.json");
        assert_eq!(spec.status, 200);
        assert!(spec.json()["paths"]["/chat"]["post"].is_object());
        let docs = service.get("/docs");
        assert_eq!(docs.status, 200);
        assert!(
            docs.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        assert!(docs.body.contains("/openapi.json"));
    }
    // Liveness never calls Vertex AI.
    assert!(emulator.requests().is_empty());
}

/// message → (persona, resonance key, confidence)
const ROUTES: &[(&str, &str, &str, f64)] = &[
    ("어떻게 해야 하나요?", "Elro", "curious-burst-inquiry", 0.8),
    (
        "빨리 해줘!!! 급해!!!",
        "Nana",
        "urgent-burst-expressive",
        1.0,
    ),
    (
        "왜 이렇게 답답하지? 문제가 이상해",
        "Lua",
        "frustrated-flowing-inquiry",
        0.9,
    ),
    (
        "지난 분기 결과 리포트를 확인하고 정리했습니다.",
        "Riri",
        "analytical-flowing-statement",
        1.0,
    ),
];

#[test]
fn chat_routes_to_a_persona_and_answers_through_vertex() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        for (message, persona, key, confidence) in ROUTES {
            let before = emulator.requests().len();
            let reply = service.ask(message);
            assert_eq!(reply.status, 200, "{runtime:?} {message}: {}", reply.body);
            let body = reply.json();
            assert_eq!(body["persona_used"], *persona, "{runtime:?} {message}");
            assert_eq!(body["resonance_key"], *key, "{runtime:?} {message}");
            assert_eq!(body["confidence"], *confidence, "{runtime:?} {message}");

            // The emulator's answer echoes the persona's instruction and the user's message,
            // so both must have reached Vertex AI.
            let content = body["content"].as_str().unwrap();
            assert!(content.starts_with("[Vertex AI emulator"), "{content}");
            assert!(content.contains(persona), "{content}");
            assert!(
                content.ends_with(&format!("you said: {message}")),
                "{content}"
            );

            let metadata = &body["metadata"];
            assert_eq!(metadata["model"], "gemini-3.5-flash");
            assert_eq!(metadata["finish_reason"], "STOP");
            let usage = &metadata["usage"];
            assert!(usage["prompt_tokens"].as_u64().unwrap() > 0, "{usage}");
            assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{usage}");
            assert_eq!(
                usage["total_tokens"].as_u64(),
                Some(
                    usage["prompt_tokens"].as_u64().unwrap()
                        + usage["completion_tokens"].as_u64().unwrap()
                        + usage["thoughts_tokens"].as_u64().unwrap()
                )
            );
            assert!(metadata["rhythm"]["pace"].is_string());
            assert!(metadata["rhythm"]["avg_length"].is_number());
            assert!(metadata["tone"]["confidence"].is_number());
            assert!(metadata["routing"]["secondary_persona"].is_string());
            assert!(metadata["routing"]["reasoning"].is_string());

            // Exactly one upstream call, to the real path shape, with the token.
            let requests = emulator.requests();
            assert_eq!(requests.len(), before + 1, "{runtime:?}");
            let sent = requests.last().unwrap();
            assert_eq!(
                sent.path,
                "/v1/projects/e2e-project/locations/global/publishers/google/models/gemini-3.5-flash:generateContent"
            );
            assert_eq!(
                sent.authorization.as_deref(),
                Some(&*format!("Bearer {TOKEN}"))
            );
            assert_eq!(sent.body["contents"][0]["role"], "user");
            assert_eq!(sent.body["contents"][0]["parts"][0]["text"], *message);
            let instruction = sent.body["systemInstruction"]["parts"][0]["text"]
                .as_str()
                .unwrap();
            assert!(instruction.contains(persona), "{instruction}");
            assert!(instruction.contains(key), "{instruction}");
        }
    }
}

#[test]
fn original_callers_keep_working() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        // Extra fields (user_id) are ignored; the message is trimmed; emoji and newlines pass.
        let reply =
            service.chat(r#"{"message": "  안녕하세요 🚀\n오늘 뭐 할까요?  ", "user_id": "u-42"}"#);
        assert_eq!(reply.status, 200, "{runtime:?}: {}", reply.body);
        let body = reply.json();
        for field in [
            "content",
            "persona_used",
            "resonance_key",
            "confidence",
            "metadata",
        ] {
            assert!(!body[field].is_null(), "{runtime:?}: {field} missing");
        }
        let sent = emulator.requests().last().unwrap().body.clone();
        assert_eq!(
            sent["contents"][0]["parts"][0]["text"],
            "안녕하세요 🚀\n오늘 뭐 할까요?"
        );
        // A configured model replaces the default everywhere.
        drop(service);
        let mut env = emulator_env(&emulator);
        env.push(("SPIN_VARIABLE_MODEL".into(), "gemini-3.5-flash-lite".into()));
        let service = Service::start(runtime, &env);
        let reply = service.ask("hello");
        assert_eq!(reply.status, 200, "{runtime:?}: {}", reply.body);
        assert_eq!(
            reply.json()["metadata"]["model"],
            Value::from("gemini-3.5-flash-lite")
        );
        assert!(
            emulator
                .requests()
                .last()
                .unwrap()
                .path
                .contains("/models/gemini-3.5-flash-lite:")
        );
    }
}
