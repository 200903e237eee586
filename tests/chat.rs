//! The chat on today's Vertex AI, over real HTTP on ion-host and on `spin up`: the current
//! model and thinking, streaming (deltas relayed while the upstream is still sending, and a
//! client hang-up cancelling it), conversations, per-request options, retries, the trailing
//! slash and CORS.

use std::time::Duration;

use crate::common::serial;
use crate::common::*;
use serde_json::{Value, json};
use vertex_emulator::Delivery;

fn last_request(emulator: &Emulator) -> vertex_emulator::RecordedRequest {
    emulator
        .requests()
        .pop()
        .expect("the emulator saw a request")
}

#[test]
fn todays_model_and_thinking_are_requested_and_reported() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        let reply = service.ask("How should I plan my first week as a mentor?");
        assert_eq!(reply.status, 200, "{runtime:?}: {}", reply.body);
        let body = reply.json();
        let meta = &body["metadata"];
        assert_eq!(meta["model"], "gemini-3.5-flash", "{runtime:?}");
        assert_eq!(meta["finish_reason"], "STOP");
        assert_eq!(meta["truncated"], false);
        assert_eq!(meta["attempts"], 1);
        let usage = &meta["usage"];
        let thoughts = usage["thoughts_tokens"].as_u64().unwrap();
        assert!(thoughts > 0, "{runtime:?}: thinking is reported: {usage}");
        assert_eq!(
            usage["total_tokens"].as_u64().unwrap(),
            usage["prompt_tokens"].as_u64().unwrap()
                + usage["completion_tokens"].as_u64().unwrap()
                + thoughts
        );

        let sent = last_request(&emulator);
        assert!(
            sent.path
                .ends_with("/models/gemini-3.5-flash:generateContent"),
            "{}",
            sent.path
        );
        let config = &sent.body["generationConfig"];
        assert_eq!(config["thinkingConfig"]["thinkingLevel"], "LOW");
        assert_eq!(config["maxOutputTokens"], 8192);
        assert!(
            config.get("temperature").is_none(),
            "no temperature unless configured: {config}"
        );
    }
}

#[test]
fn thinking_that_eats_the_budget_is_said_plainly() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        // High thinking in a small budget: the answer is cut, and the response says so.
        let reply = service.chat(
            &json!({"message": "Explain ownership in Rust in detail, with examples.",
                    "thinking_level": "minimal", "max_output_tokens": 20})
            .to_string(),
        );
        assert_eq!(reply.status, 200, "{runtime:?}: {}", reply.body);
        let meta = &reply.json()["metadata"];
        assert_eq!(meta["finish_reason"], "MAX_TOKENS", "{runtime:?}");
        assert_eq!(meta["truncated"], true);

        // Nothing left for the answer at all: the request's own budget, so a 200 whose answer
        // was cut to nothing, said plainly (never a server error, never made-up text).
        let reply = service.chat(
            &json!({"message": "hi", "thinking_level": "high", "max_output_tokens": 64})
                .to_string(),
        );
        assert_eq!(reply.status, 200, "{runtime:?}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["content"], "", "{runtime:?}");
        assert_eq!(body["metadata"]["truncated"], true);
        assert_eq!(body["metadata"]["finish_reason"], "MAX_TOKENS");
        assert!(
            body["metadata"]["usage"]["thoughts_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );
        let sent = last_request(&emulator);
        assert_eq!(
            sent.body["generationConfig"]["thinkingConfig"]["thinkingLevel"],
            "HIGH"
        );

        // The same streamed: `meta`, no delta, then `done` saying it was cut.
        let mut events = service
            .stream(&json!({"message": "hi", "thinking_level": "high", "max_output_tokens": 64}));
        assert_eq!(events.status, 200, "{runtime:?}");
        let names: Vec<_> = events.rest();
        assert_eq!(
            names.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["meta", "done"],
            "{runtime:?}: {names:?}"
        );
        assert_eq!(names[1].data["truncated"], true);

        // A conversation whose first answer was cut to nothing goes on.
        let first = service.chat(
            &json!({"message": "hi", "thinking_level": "high", "max_output_tokens": 64})
                .to_string(),
        );
        let id = first.json()["conversation_id"].as_str().unwrap().to_owned();
        let next = service.chat(&json!({"message": "and now?", "conversation_id": id}).to_string());
        assert_eq!(next.status, 200, "{runtime:?}: {}", next.body);
    }
}

#[test]
fn a_stream_relays_deltas_while_the_upstream_is_still_sending() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        let mut events =
            service.stream(&json!({"message": "How do I start? [[emulator:chunk-delay=300]]"}));
        assert_eq!(events.status, 200, "{runtime:?}");
        assert!(
            events
                .header("content-type")
                .unwrap()
                .starts_with("text/event-stream")
        );
        assert_eq!(events.header("cache-control"), Some("no-cache"));

        let meta = events.next_event().expect("meta event");
        assert_eq!(meta.name, "meta", "{runtime:?}");
        assert_eq!(meta.data["persona_used"], "Elro");
        assert_eq!(meta.data["resonance_key"], "curious-burst-inquiry");
        let first = events.next_event().expect("first delta");
        assert_eq!(first.name, "delta");
        assert!(!first.data["text"].as_str().unwrap().is_empty());
        // The first delta is here while Vertex AI is still sending the rest: nothing on the
        // way buffers the answer.
        assert_eq!(
            last_request(&emulator).delivery,
            Delivery::InProgress,
            "{runtime:?}: the first delta arrived only after the upstream finished"
        );

        let rest = events.rest();
        let (done, deltas) = rest.split_last().expect("more events");
        assert!(!deltas.is_empty());
        assert!(deltas.iter().all(|e| e.name == "delta"), "{rest:?}");
        assert_eq!(done.name, "done", "{runtime:?}: {done:?}");
        assert_eq!(done.data["finish_reason"], "STOP");
        assert_eq!(done.data["truncated"], false);
        assert_eq!(done.data["metadata"]["attempts"], 1);
        assert!(done.data["usage"]["thoughts_tokens"].as_u64().unwrap() > 0);
        let text: String = std::iter::once(&first)
            .chain(deltas)
            .map(|e| e.data["text"].as_str().unwrap())
            .collect();
        assert!(
            text.ends_with("you said: How do I start? [[emulator:chunk-delay=300]]"),
            "{text}"
        );
        assert!(
            last_request(&emulator)
                .path
                .ends_with(":streamGenerateContent?alt=sse")
        );
    }
}

#[test]
fn accept_event_stream_also_streams() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        let reply = request(
            "POST",
            &service.url("/chat"),
            &[
                ("content-type", "application/json"),
                ("accept", "text/event-stream"),
            ],
            br#"{"message": "hi"}"#,
        );
        assert_eq!(reply.status, 200, "{runtime:?}");
        assert!(reply.body.starts_with("event: meta\n"), "{}", reply.body);
        assert!(reply.body.contains("event: done\n"));
    }
}

#[test]
fn a_client_that_hangs_up_mid_stream_cancels_the_upstream_call() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        emulator.clear_requests();
        let mut events =
            service.stream(&json!({"message": "Tell me everything [[emulator:chunk-delay=500]]"}));
        assert_eq!(events.status, 200);
        assert_eq!(events.next_event().unwrap().name, "meta");
        assert_eq!(events.next_event().unwrap().name, "delta");
        drop(events);
        let requests = emulator.wait_until_settled(Duration::from_secs(10));
        assert_eq!(requests.len(), 1);
        assert_eq!(
            requests[0].delivery,
            Delivery::ClientDisconnected,
            "{runtime:?}: the upstream stream ran on after the client left"
        );
    }
}

#[test]
fn a_stream_that_fails_part_way_ends_with_an_error_event() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        let mut events = service.stream(&json!({"message": "hi [[emulator:stream-error]]"}));
        assert_eq!(events.status, 200, "{runtime:?}");
        let all = events.rest();
        let last = all.last().unwrap();
        assert_eq!(last.name, "error", "{runtime:?}: {all:?}");
        assert_eq!(last.data["code"], "upstream_error");
        assert_eq!(last.data["status_code"], 502);
        assert!(all.iter().any(|e| e.name == "delta"));
        assert!(all.iter().all(|e| e.name != "done"));

        // Before the first byte, a failure keeps the unary status codes.
        let reply =
            service.chat(&json!({"message": "hi [[emulator:403]]", "stream": true}).to_string());
        assert_eq!(reply.status, 502, "{runtime:?}");
        assert_eq!(reply.json()["code"], "upstream_auth_failed");
    }
}

#[test]
fn history_persona_and_options_reach_gemini() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        let reply = service.chat(
            &json!({
                "message": "그 다음은요?",
                "history": [
                    {"role": "user", "content": "Rust를 배우고 싶어요"},
                    {"role": "assistant", "content": "좋아요, 소유권부터 시작해요."}
                ],
                "persona": "riri",
                "thinking_level": "medium",
                "max_output_tokens": 2048,
                "user_id": "u-42"
            })
            .to_string(),
        );
        assert_eq!(reply.status, 200, "{runtime:?}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["persona_used"], "Riri");
        assert!(
            body["content"].as_str().unwrap().contains("turn 3"),
            "{body}"
        );

        let sent = last_request(&emulator).body;
        let roles: Vec<&str> = sent["contents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "model", "user"], "{runtime:?}");
        assert_eq!(sent["contents"][2]["parts"][0]["text"], "그 다음은요?");
        assert_eq!(sent["generationConfig"]["maxOutputTokens"], 2048);
        assert_eq!(
            sent["generationConfig"]["thinkingConfig"]["thinkingLevel"],
            "MEDIUM"
        );
        assert!(
            sent["systemInstruction"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .contains("Riri")
        );

        for (body, loc, needle) in [
            (
                json!({"message": "hi", "persona": "Gandalf"}),
                json!(["body", "persona"]),
                "'auto', 'Lua', 'Elro', 'Riri' or 'Nana'",
            ),
            (
                json!({"message": "hi", "history": (0..41).map(|_| json!({"role": "user", "content": "x"})).collect::<Vec<_>>()}),
                json!(["body", "history"]),
                "at most 40",
            ),
            (
                json!({"message": "hi", "max_output_tokens": 100000}),
                json!(["body", "max_output_tokens"]),
                "65536",
            ),
            (
                json!({"message": "hi", "thinking_level": "max"}),
                json!(["body", "thinking_level"]),
                "'minimal', 'low', 'medium' or 'high'",
            ),
        ] {
            let reply = service.chat(&body.to_string());
            assert_eq!(reply.status, 422, "{runtime:?} {body}");
            let detail = &reply.json()["detail"][0];
            assert_eq!(detail["loc"], loc, "{runtime:?}");
            assert!(detail["msg"].as_str().unwrap().contains(needle), "{detail}");
        }
    }
}

#[test]
fn transient_failures_are_retried_and_persistent_ones_reported() {
    let _timed = serial::timed();
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));

        emulator.clear_requests();
        let reply = service.ask("한 번 실패해도 괜찮아요 [[emulator:503x1]]");
        assert_eq!(reply.status, 200, "{runtime:?}: {}", reply.body);
        assert_eq!(reply.json()["metadata"]["attempts"], 2);
        let statuses: Vec<_> = emulator.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Some(503), Some(200)], "{runtime:?}");

        // Streams are retried too, before their first byte.
        emulator.reset_faults();
        let mut events = service.stream(&json!({"message": "again [[emulator:500x1]]"}));
        assert_eq!(events.status, 200, "{runtime:?}");
        let done = events.rest().pop().unwrap();
        assert_eq!(done.data["metadata"]["attempts"], 2, "{done:?}");

        // A rate limit that does not clear within the deadline (1.5 s here) reaches the
        // caller as a 429 with Retry-After, after as many attempts as fit.
        emulator.clear_requests();
        let started = std::time::Instant::now();
        let reply = service.ask("[[emulator:429,retry-delay=400]]");
        assert_eq!(reply.status, 429, "{runtime:?}: {}", reply.body);
        assert!(reply.header("retry-after").is_some());
        let attempts = reply.json()["attempts"].as_u64().unwrap();
        assert!((2..=3).contains(&attempts), "{runtime:?}: {attempts}");
        assert_eq!(emulator.requests().len() as u64, attempts);
        assert!(started.elapsed() < Duration::from_secs(10));

        // Other client errors are never retried; a timeout is a 504.
        emulator.clear_requests();
        assert_eq!(service.ask("[[emulator:400]]").status, 502);
        assert_eq!(emulator.requests().len(), 1, "{runtime:?}: 400 was retried");
        let reply = service.ask("[[emulator:slow=4000]]");
        assert_eq!(reply.status, 504, "{runtime:?}");
        assert_eq!(reply.json()["code"], "upstream_timeout");
    }
}

#[test]
fn the_original_callers_requests_behave_as_before() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        let reply = service.chat(r#"{"message": "어떻게 해야 하나요?", "user_id": "legacy"}"#);
        assert_eq!(reply.status, 200);
        let body = reply.json();
        for field in [
            "content",
            "persona_used",
            "resonance_key",
            "confidence",
            "metadata",
        ] {
            assert!(body.get(field).is_some(), "{runtime:?}: {field}");
        }
        assert_eq!(reply.header("content-type"), Some("application/json"));

        // FastAPI answered a trailing slash with a 307 (method and body kept) to the route
        // without it.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let redirect = agent
            .post(&service.url("/chat/"))
            .header("content-type", "application/json")
            .send(r#"{"message": "hi"}"#)
            .unwrap();
        assert_eq!(redirect.status().as_u16(), 307, "{runtime:?}");
        assert_eq!(
            redirect
                .headers()
                .get("location")
                .unwrap()
                .to_str()
                .unwrap(),
            "/chat"
        );
        let redirect = agent.get(&service.url("/health/")).call().unwrap();
        assert_eq!(redirect.status().as_u16(), 307, "{runtime:?}");
        assert_eq!(
            redirect
                .headers()
                .get("location")
                .unwrap()
                .to_str()
                .unwrap(),
            "/health"
        );
        // Only the methods the route takes are redirected; any other is refused where asked.
        for (method, path, allow) in [
            ("TRACE", "/chat/", "POST"),
            ("OPTIONS", "/chat/", "POST"),
            ("DELETE", "/v1/models/", "GET, HEAD"),
        ] {
            let reply = request(method, &service.url(path), &[], b"");
            assert_eq!(
                reply.status, 405,
                "{runtime:?} {method} {path}: {}",
                reply.body
            );
            assert_eq!(
                reply.header("allow"),
                Some(allow),
                "{runtime:?} {method} {path}"
            );
        }
        // Under /v1 an unknown path is answered as OpenAI answers it.
        let reply = service.get("/v1/nope");
        assert_eq!(reply.status, 404, "{runtime:?}");
        assert_eq!(
            reply.json()["error"]["message"],
            "Invalid URL (GET /v1/nope)"
        );
        assert_eq!(reply.json()["error"]["type"], "not_found_error");
    }
}

#[test]
fn cors_is_off_by_default_and_follows_allowed_origins() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        let preflight = [
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ];
        let reply = request("OPTIONS", &service.url("/chat"), &preflight, b"");
        assert_eq!(reply.status, 403, "{runtime:?}: {}", reply.body);
        assert_eq!(reply.header("access-control-allow-origin"), None);

        let mut env = emulator_env(&emulator);
        env.push((
            "SPIN_VARIABLE_ALLOWED_ORIGINS".into(),
            "https://app.example, https://other.example".into(),
        ));
        let service = Service::start(runtime, &env);
        let reply = request("OPTIONS", &service.url("/chat"), &preflight, b"");
        assert_eq!(reply.status, 204, "{runtime:?}: {}", reply.body);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(
            reply.header("access-control-allow-methods"),
            Some("POST, OPTIONS")
        );
        assert_eq!(
            reply.header("access-control-allow-headers"),
            Some("content-type")
        );
        let reply = request(
            "POST",
            &service.url("/chat"),
            &[
                ("origin", "https://app.example"),
                ("content-type", "application/json"),
            ],
            br#"{"message": "hi"}"#,
        );
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        let reply = request(
            "GET",
            &service.url("/health"),
            &[("origin", "https://evil.example")],
            b"",
        );
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("access-control-allow-origin"), None);
    }
}

#[test]
fn each_chat_writes_one_structured_log_line_without_its_text() {
    let emulator = start_emulator();
    let service = Service::start(Runtime::IonHost, &emulator_env(&emulator));
    let secret = "my very private question about salaries";
    assert_eq!(
        service.ask(&format!("{secret} [[emulator:503x1]]")).status,
        200
    );
    // ion-host logs once the response has gone out: wait for the request's access-log line,
    // which follows the component's own lines.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !service
        .stdout_lines()
        .iter()
        .any(|l| l.contains("\"POST /chat 200\""))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = service.stdout_lines();
    let chat_lines: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|entry| match entry.get("chat") {
            Some(_) => Some(entry),
            // A host that keeps guest lines as text still carries the JSON inside.
            None => entry["message"]
                .as_str()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
                .filter(|m| m.get("chat").is_some()),
        })
        .collect();
    assert_eq!(chat_lines.len(), 1, "{lines:#?}");
    let chat = &chat_lines[0]["chat"];
    assert_eq!(chat["route"], "/chat");
    assert_eq!(chat["outcome"], "ok");
    assert_eq!(chat["attempts"], 2);
    assert_eq!(chat["model"], "gemini-3.5-flash");
    assert!(chat["thoughts_tokens"].as_u64().unwrap() > 0);
    assert!(chat["upstream_latency_ms"].is_u64());
    assert!(
        lines.iter().all(|l| !l.contains(secret)),
        "the message text reached the log"
    );
}
