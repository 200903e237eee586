//! Vertex AI failures, missing configuration and outbound policy over real HTTP: each is an
//! honest, distinct non-200 JSON error. Checked on ion-host and on `spin up`.

use crate::common::*;

/// emulator fault → (status, code)
const FAULTS: &[(&str, u16, &str)] = &[
    ("429", 429, "upstream_rate_limited"),
    ("500", 502, "upstream_error"),
    ("503", 502, "upstream_error"),
    ("504", 504, "upstream_timeout"),
    ("400", 502, "upstream_rejected"),
    ("401", 502, "upstream_auth_failed"),
    ("403", 502, "upstream_auth_failed"),
    ("404", 502, "upstream_model_not_found"),
    ("slow=4000", 504, "upstream_timeout"),
    ("safety", 400, "content_blocked"),
    ("blocked=PROHIBITED_CONTENT", 400, "content_blocked"),
    ("finish-safety", 400, "content_blocked"),
    ("empty", 502, "upstream_empty_answer"),
    ("garbage", 502, "upstream_invalid_response"),
    ("drop", 502, "upstream_unreachable"),
];

#[test]
fn upstream_faults_are_honest_errors() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        for (fault, status, code) in FAULTS {
            let reply = service.ask(&format!("도와주세요 [[emulator:{fault}]]"));
            assert_eq!(reply.status, *status, "{runtime:?} {fault}: {}", reply.body);
            let body = reply.json();
            assert_eq!(body["code"], *code, "{runtime:?} {fault}: {body}");
            assert_eq!(body["status_code"], *status, "{runtime:?} {fault}");
            let message = body["error"].as_str().unwrap_or_default();
            assert!(!message.is_empty());
            // Said in words: no runtime debug text (`ErrorCode::…`, `Error { handle: … }`).
            for debug in ["ErrorCode", "Error {", "handle:", "StreamError"] {
                assert!(!message.contains(debug), "{runtime:?} {fault}: {message}");
            }
            assert!(
                body.get("content").is_none(),
                "{runtime:?} {fault}: no made-up answer"
            );
        }

        let limited = service.ask("[[emulator:429]]");
        assert_eq!(
            limited.header("retry-after"),
            Some("3"),
            "{runtime:?}: RetryInfo is passed on"
        );
        assert_eq!(limited.json()["upstream"]["reason"], "RESOURCE_EXHAUSTED");
        let blocked = service
            .ask("[[emulator:blocked=PROHIBITED_CONTENT]]")
            .json();
        assert_eq!(blocked["block_reason"], "PROHIBITED_CONTENT");
        assert_eq!(blocked["stage"], "prompt");

        // The service is fine afterwards.
        assert_eq!(service.ask("다시 해볼게요").status, 200, "{runtime:?}");
    }
}

#[test]
fn retired_model_and_wrong_token_are_reported_as_such() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let mut env = emulator_env(&emulator);
        // Retired on purpose: the 2.5 family left Vertex AI on 2026-10-16, and the emulator
        // answers it with Vertex's 404, as a stale configuration would meet it.
        env.push(("SPIN_VARIABLE_MODEL".into(), "gemini-2.5-flash".into()));
        let service = Service::start(runtime, &env);
        let reply = service.ask("hello");
        assert_eq!(reply.status, 502, "{runtime:?}: {}", reply.body);
        assert_eq!(reply.json()["code"], "upstream_model_not_found");
        assert_eq!(reply.json()["upstream"]["status"], 404);
    }
}

#[test]
fn a_retired_model_hands_over_to_the_fallback_model() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        emulator.clear_requests();
        let mut env = emulator_env(&emulator);
        // The emulator answers the retired 2.5 family with Vertex's 404, as after 2026-10-16.
        env.push(("SPIN_VARIABLE_MODEL".into(), "gemini-2.5-flash".into()));
        env.push((
            "SPIN_VARIABLE_FALLBACK_MODELS".into(),
            " gemini-3.5-flash ".into(),
        ));
        let service = Service::start(runtime, &env);
        let reply = service.ask("hello");
        assert_eq!(reply.status, 200, "{runtime:?}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["metadata"]["model"], "gemini-3.5-flash", "{runtime:?}");
        assert_eq!(
            body["metadata"]["attempts"], 2,
            "{runtime:?}: a 404 is not retried"
        );
        let called: Vec<(String, Option<u16>)> = emulator
            .requests()
            .iter()
            .map(|r| {
                let (_, model) = r.path.split_once("/models/").unwrap();
                (model.split(':').next().unwrap().to_owned(), r.status)
            })
            .collect();
        assert_eq!(
            called,
            [
                ("gemini-2.5-flash".to_owned(), Some(404)),
                ("gemini-3.5-flash".to_owned(), Some(200))
            ],
            "{runtime:?}"
        );

        if runtime == Runtime::IonHost {
            // Lines reach stdout through a pipe: give the chat's line a moment.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let lines = loop {
                let lines: Vec<serde_json::Value> = service
                    .stdout_lines()
                    .iter()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect();
                if lines.iter().any(|l| l["message"] == "chat")
                    || std::time::Instant::now() > deadline
                {
                    break lines;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            };
            let startup = lines
                .iter()
                .find(|l| l["model_check"]["model"] == "gemini-2.5-flash")
                .expect("a startup line about the retired model");
            assert_eq!(startup["severity"], "ERROR");
            assert_eq!(startup["model_check"]["status"], "retired");
            let message = startup["message"].as_str().unwrap();
            assert!(
                message.contains("2026-10-16") && message.contains("gemini-3.5-flash-lite"),
                "{message}"
            );
            let chat = lines
                .iter()
                .find(|l| l["message"] == "chat")
                .expect("the per-chat line");
            assert_eq!(chat["chat"]["model"], "gemini-3.5-flash");
            assert_eq!(
                chat["chat"]["models_tried"],
                serde_json::json!(["gemini-2.5-flash", "gemini-3.5-flash"])
            );
        }
    }
}

#[test]
fn missing_configuration_is_a_503_that_says_what_to_set() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(
            runtime,
            &[("SPIN_VARIABLE_VERTEX_ENDPOINT".into(), emulator.url())],
        );
        let reply = service.ask("hello");
        assert_eq!(reply.status, 503, "{runtime:?}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["code"], "not_configured");
        assert_eq!(body["variable"], "project_id");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("SPIN_VARIABLE_PROJECT_ID")
        );
        // Liveness stays green: configuration is a readiness matter for /chat only.
        assert_eq!(service.get("/health").status, 200);
        drop(service);

        let service = Service::start(
            runtime,
            &[
                ("SPIN_VARIABLE_PROJECT_ID".into(), "p".into()),
                ("SPIN_VARIABLE_VERTEX_ENDPOINT".into(), emulator.url()),
            ],
        );
        let reply = service.ask("hello");
        assert_eq!(reply.status, 503, "{runtime:?}: {}", reply.body);
        assert_eq!(reply.json()["variable"], "access_token");
    }
    assert!(emulator.requests().is_empty());
}

#[test]
fn unreachable_vertex_is_a_502() {
    let closed_port = free_port();
    for runtime in runtimes() {
        let service = Service::start(
            runtime,
            &[
                ("SPIN_VARIABLE_PROJECT_ID".into(), "p".into()),
                ("SPIN_VARIABLE_ACCESS_TOKEN".into(), TOKEN.into()),
                (
                    "SPIN_VARIABLE_VERTEX_ENDPOINT".into(),
                    format!("http://127.0.0.1:{closed_port}"),
                ),
            ],
        );
        let reply = service.ask("hello");
        assert_eq!(reply.status, 502, "{runtime:?}: {}", reply.body);
        assert_eq!(reply.json()["code"], "upstream_unreachable");
    }
}

#[test]
fn outbound_policy_denies_hosts_missing_from_the_manifest() {
    let emulator = start_emulator();
    let manifest = std::fs::read_to_string(workspace_root().join("spin.toml")).unwrap();
    let without_template = manifest.replace("\"{{ vertex_endpoint }}\",", "");
    assert_ne!(
        manifest, without_template,
        "spin.toml lists the endpoint template"
    );
    for runtime in runtimes() {
        let service =
            Service::start_with_manifest(runtime, &without_template, &emulator_env(&emulator));
        let reply = service.ask("hello");
        assert_eq!(reply.status, 503, "{runtime:?}: {}", reply.body);
        assert_eq!(reply.json()["code"], "outbound_not_allowed");
    }
    assert!(
        emulator.requests().is_empty(),
        "a denied request never leaves the runtime"
    );
}

#[test]
fn safety_settings_reach_vertex_ai_as_configured() {
    let emulator = start_emulator();
    let thresholds = |emulator: &Emulator| -> Vec<(String, String)> {
        let last = emulator.requests().pop().expect("a generate request");
        let request = last.request.expect("the emulator accepted the request");
        request
            .safety_settings
            .into_iter()
            .map(|s| {
                (
                    s.category.unwrap_or_default(),
                    s.threshold.unwrap_or_default(),
                )
            })
            .collect()
    };
    for runtime in runtimes() {
        // The default: the four categories at BLOCK_MEDIUM_AND_ABOVE (src/safety.rs).
        let service = Service::start(runtime, &emulator_env(&emulator));
        assert_eq!(service.ask("안녕하세요").status, 200, "{runtime:?}");
        let sent = thresholds(&emulator);
        assert_eq!(sent.len(), 4, "{runtime:?}: {sent:?}");
        assert!(sent.iter().all(|(_, t)| t == "BLOCK_MEDIUM_AND_ABOVE"));
        drop(service);

        let mut env = emulator_env(&emulator);
        env.push((
            "SPIN_VARIABLE_SAFETY_SETTINGS".into(),
            "harassment=block_only_high,HARM_CATEGORY_DANGEROUS_CONTENT=OFF".into(),
        ));
        let service = Service::start(runtime, &env);
        assert_eq!(service.ask("안녕하세요").status, 200, "{runtime:?}");
        assert_eq!(
            thresholds(&emulator),
            [
                (
                    "HARM_CATEGORY_HARASSMENT".to_owned(),
                    "BLOCK_ONLY_HIGH".to_owned()
                ),
                (
                    "HARM_CATEGORY_DANGEROUS_CONTENT".to_owned(),
                    "OFF".to_owned()
                )
            ],
            "{runtime:?}"
        );
        drop(service);

        // A mistake is an honest 503 naming the variable, not a guess.
        let mut env = emulator_env(&emulator);
        env.push((
            "SPIN_VARIABLE_SAFETY_SETTINGS".into(),
            "VIOLENCE=OFF".into(),
        ));
        let service = Service::start(runtime, &env);
        let reply = service.ask("안녕하세요");
        assert_eq!(reply.status, 503, "{runtime:?}: {}", reply.body);
        assert_eq!(reply.json()["variable"], "safety_settings");
    }
}
