//! OpenTelemetry export against a real OTLP receiver (`tests/python/otlp_receiver.py`, which
//! decodes the protobuf with the official definitions): ion-host's spans and metrics carry the
//! names and values of the pinned semantic conventions (v1.41.0), a retried call shows every
//! attempt, the trace continues from the caller to Vertex AI and into the logs, no message text
//! leaves, and an exporter that is down never fails a request.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const MODEL: &str = "gemini-3.5-flash";

/// The receiver process; killed on drop.
struct Receiver {
    child: Child,
    url: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start() -> Receiver {
        let mut child = Command::new(python::venv().join("bin/python"))
            .arg(python::python_dir().join("otlp_receiver.py"))
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the OTLP receiver starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("receiver said {first:?}"))
            .to_owned();
        Receiver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn get(&self, path: &str) -> Value {
        let reply = request("GET", &format!("{}{path}", self.url), &[], b"");
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        reply.json()
    }

    fn spans(&self) -> Vec<Value> {
        self.get("/spans").as_array().unwrap().clone()
    }

    fn metric_points(&self) -> Vec<Value> {
        self.get("/metrics").as_array().unwrap().clone()
    }

    fn fail_with(&self, status: u16) {
        let reply = request(
            "POST",
            &format!("{}/control/fail", self.url),
            &[("content-type", "application/json")],
            json!({ "status": status }).to_string().as_bytes(),
        );
        assert_eq!(reply.status, 200);
    }

    /// The environment that points ion-host here, with short batching intervals.
    fn env(&self, emulator: &Emulator) -> Vec<(String, String)> {
        let mut env = emulator_env(emulator);
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.url.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ] {
            env.push((name.into(), value.into()));
        }
        env
    }
}

/// Polls `check` until it returns something (10 s at most).
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The spans of one trace, once its server span has arrived.
fn trace(receiver: &Receiver, trace_id: &str) -> Vec<Value> {
    eventually(&format!("the server span of trace {trace_id}"), || {
        let spans: Vec<Value> = receiver
            .spans()
            .into_iter()
            .filter(|s| s["trace_id"] == trace_id)
            .collect();
        spans
            .iter()
            .any(|s| s["kind"] == "SPAN_KIND_SERVER")
            .then_some(spans)
    })
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

#[test]
fn a_retried_chat_is_one_trace_from_the_caller_through_every_attempt() {
    let receiver = Receiver::start();
    let emulator = start_emulator();
    let service = Service::start(Runtime::IonHost, &receiver.env(&emulator));
    let message = "How do I start a side project? [[emulator:503x1]]";
    let reply = service.chat_with_headers(
        &json!({ "message": message }),
        &[("traceparent", &format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();

    let spans = trace(&receiver, TRACE_ID);
    let server = spans
        .iter()
        .find(|s| s["kind"] == "SPAN_KIND_SERVER")
        .unwrap();
    assert_eq!(server["name"], "POST /chat");
    assert_eq!(server["parent_span_id"], CALLER_SPAN);
    assert_eq!(attribute(server, "http.request.method"), "POST");
    assert_eq!(attribute(server, "http.route"), "/chat");
    assert_eq!(attribute(server, "http.response.status_code"), 200);
    let server_id = server["span_id"].as_str().unwrap();

    let mut attempts: Vec<&Value> = spans
        .iter()
        .filter(|s| s["kind"] == "SPAN_KIND_CLIENT")
        .collect();
    attempts.sort_by_key(|s| s["start_time_unix_nano"].as_u64());
    assert_eq!(attempts.len(), 2, "one span per attempt: {spans:#?}");
    for attempt in &attempts {
        assert_eq!(attempt["name"], format!("chat {MODEL}"));
        assert_eq!(attempt["parent_span_id"], server_id);
        assert_eq!(attribute(attempt, "gen_ai.operation.name"), "chat");
        assert_eq!(attribute(attempt, "gen_ai.provider.name"), "gcp.vertex_ai");
        assert_eq!(attribute(attempt, "gen_ai.request.model"), MODEL);
        assert_eq!(attribute(attempt, "server.address"), "127.0.0.1");
        assert!(attribute(attempt, "server.port").is_i64());
        assert!(attribute(attempt, "gen_ai.request.max_tokens").as_i64() > Some(0));
    }
    let (failed, answered) = (attempts[0], attempts[1]);
    assert_eq!(attribute(failed, "error.type"), "503");
    assert_eq!(failed["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(attribute(answered, "error.type"), &Value::Null);
    assert_eq!(attribute(answered, "http.request.resend_count"), 1);
    assert_eq!(attribute(answered, "gen_ai.response.model"), MODEL);
    assert!(
        attribute(answered, "gen_ai.response.id")
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(
        attribute(answered, "gen_ai.response.finish_reasons"),
        &json!(["stop"])
    );
    let usage = &answer["metadata"]["usage"];
    assert_eq!(
        attribute(answered, "gen_ai.usage.input_tokens"),
        &usage["prompt_tokens"]
    );
    let output =
        usage["completion_tokens"].as_i64().unwrap() + usage["thoughts_tokens"].as_i64().unwrap();
    assert_eq!(attribute(answered, "gen_ai.usage.output_tokens"), output);
    assert_eq!(
        attribute(answered, "gen_ai.usage.reasoning.output_tokens"),
        &usage["thoughts_tokens"]
    );
    assert_eq!(
        attribute(answered, "gen_ai.usage.cache_read.input_tokens"),
        &usage["cached_tokens"]
    );
    // The wait before the retry is visible between the two attempts.
    let wait = spans
        .iter()
        .find(|s| s["name"] == "retry wait")
        .expect("a retry wait span");
    assert_eq!(attribute(wait, "error.type"), "503");
    assert!(wait["start_time_unix_nano"].as_u64() >= failed["end_time_unix_nano"].as_u64());
    assert!(wait["end_time_unix_nano"].as_u64() <= answered["start_time_unix_nano"].as_u64());

    // The trace went on to Vertex AI: each request names its attempt's span.
    let upstream: Vec<String> = emulator
        .requests()
        .iter()
        .filter_map(|r| r.traceparent.clone())
        .collect();
    let expected: Vec<String> = attempts
        .iter()
        .map(|a| format!("00-{TRACE_ID}-{}-01", a["span_id"].as_str().unwrap()))
        .collect();
    assert_eq!(upstream, expected);

    // The logs name the same trace and the request's span.
    let logged = service
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["message"] == "POST /chat 200")
        .expect("the access log entry");
    assert_eq!(
        logged["logging.googleapis.com/trace"],
        format!("projects/e2e-project/traces/{TRACE_ID}")
    );
    assert_eq!(logged["logging.googleapis.com/spanId"], server_id);

    // The resource says who sent it; no message or answer text left.
    assert_eq!(server["resource"]["service.name"], "ion-mentoring");
    assert_eq!(server["resource"]["gcp.project_id"], "e2e-project");
    assert!(server["resource"]["service.instance.id"].is_string());
    assert_eq!(server["scope"]["name"], "ion-host");
    let exported = receiver.get("/received").to_string();
    let content = answer["content"].as_str().unwrap();
    for text in ["side project", &content[content.len() / 2..]] {
        assert!(!exported.contains(text), "{text:?} was exported");
    }
}

#[test]
fn metrics_have_the_conventions_instruments_with_time_to_first_chunk_for_streams() {
    let receiver = Receiver::start();
    let emulator = start_emulator();
    let service = Service::start(Runtime::IonHost, &receiver.env(&emulator));
    let reply = service.ask("어떻게 시작하나요? [[emulator:429x1]]");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let streamed = service.chat(
        &json!({ "message": "How do I go on? [[emulator:chunk-delay=50]]", "stream": true })
            .to_string(),
    );
    assert_eq!(streamed.status, 200);

    let points = eventually(
        "every instrument, the stream's first chunk included",
        || {
            let points = receiver.metric_points();
            let ttfc = points.iter().any(|p| {
                p["name"] == "gen_ai.client.operation.time_to_first_chunk"
                    && p["count"].as_u64() >= Some(1)
            });
            let two_chats = points.iter().any(|p| {
                p["name"] == "http.server.request.duration"
                    && p["attributes"]["http.route"] == "/chat"
                    && p["count"].as_u64() >= Some(2)
            });
            (ttfc && two_chats).then_some(points)
        },
    );
    let find = |name: &str, check: &dyn Fn(&Value) -> bool| {
        points
            .iter()
            .find(|p| p["name"] == name && check(p))
            .unwrap_or_else(|| panic!("no {name} point as expected in {points:#?}"))
            .clone()
    };
    for point in &points {
        assert_eq!(point["kind"], "histogram", "{point}");
        assert_eq!(
            point["temporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE",
            "{point}"
        );
    }
    let server = find("http.server.request.duration", &|p| {
        p["attributes"]["http.route"] == "/chat"
            && p["attributes"]["http.response.status_code"] == 200
    });
    assert_eq!(server["unit"], "s");
    assert_eq!(server["attributes"]["http.request.method"], "POST");
    let failed = find("gen_ai.client.operation.duration", &|p| {
        p["attributes"]["error.type"] == "429"
    });
    assert_eq!(failed["unit"], "s");
    assert_eq!(failed["attributes"]["gen_ai.operation.name"], "chat");
    assert_eq!(
        failed["attributes"]["gen_ai.provider.name"],
        "gcp.vertex_ai"
    );
    assert_eq!(failed["attributes"]["gen_ai.request.model"], MODEL);
    let answered = find("gen_ai.client.operation.duration", &|p| {
        p["attributes"]["error.type"].is_null()
    });
    assert_eq!(answered["attributes"]["gen_ai.response.model"], MODEL);
    assert_eq!(
        answered["explicit_bounds"][0], 0.01,
        "the conventions' advised buckets"
    );
    for token_type in ["input", "output"] {
        let tokens = find("gen_ai.client.token.usage", &|p| {
            p["attributes"]["gen_ai.token.type"] == token_type
        });
        assert_eq!(tokens["unit"], "{token}");
        assert!(tokens["sum"].as_f64() > Some(0.0));
    }
    let first_chunk = find("gen_ai.client.operation.time_to_first_chunk", &|_| true);
    assert_eq!(first_chunk["unit"], "s");
    assert_eq!(first_chunk["count"], 1, "only the streamed chat has one");
    assert_eq!(first_chunk["resource"]["service.name"], "ion-mentoring");
}

#[test]
fn cloud_runs_trace_header_and_the_callers_sampling_decision_are_followed() {
    let receiver = Receiver::start();
    let emulator = start_emulator();
    let service = Service::start(Runtime::IonHost, &receiver.env(&emulator));

    // X-Cloud-Trace-Context: the span id is decimal.
    let cloud_trace = "105445aa7843bc8bf206b12000100000";
    let reply = service.chat_with_headers(
        &json!({ "message": "What should I learn first?" }),
        &[("x-cloud-trace-context", &format!("{cloud_trace}/1;o=1"))],
    );
    assert_eq!(reply.status, 200);
    let spans = trace(&receiver, cloud_trace);
    let server = spans
        .iter()
        .find(|s| s["kind"] == "SPAN_KIND_SERVER")
        .unwrap();
    assert_eq!(server["parent_span_id"], "0000000000000001");

    // A caller that did not sample: no spans, the decision passed on, metrics still counted.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let before = emulator.requests().len();
    let reply = service.chat_with_headers(
        &json!({ "message": "And after that?" }),
        &[(
            "traceparent",
            &format!("00-{unsampled}-b7ad6b7169203331-00"),
        )],
    );
    assert_eq!(reply.status, 200);
    let sent = emulator.requests()[before]
        .traceparent
        .clone()
        .expect("a traceparent");
    assert!(
        sent.starts_with(&format!("00-{unsampled}-")) && sent.ends_with("-00"),
        "{sent}"
    );
    eventually("both chats counted", || {
        receiver
            .metric_points()
            .iter()
            .any(|p| {
                p["name"] == "http.server.request.duration"
                    && p["attributes"]["http.route"] == "/chat"
                    && p["count"].as_u64() >= Some(2)
            })
            .then_some(())
    });
    assert!(
        !receiver.spans().iter().any(|s| s["trace_id"] == unsampled),
        "an unsampled trace was exported"
    );
}

#[test]
fn an_exporter_that_is_down_never_fails_a_request_and_is_reported_once() {
    let receiver = Receiver::start();
    receiver.fail_with(503);
    let emulator = start_emulator();
    let service = Service::start(Runtime::IonHost, &receiver.env(&emulator));
    for i in 0..5 {
        let reply = service.ask(&format!("Question {i}: how do I focus?"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        std::thread::sleep(Duration::from_millis(150));
    }
    eventually("several failed exports", || {
        let stats = receiver.get("/control/stats");
        (stats["failed_requests"].as_u64() >= Some(3)).then_some(())
    });
    let reports: Vec<Value> = service
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("telemetry dropped"))
        })
        .collect();
    assert_eq!(
        reports.len(),
        1,
        "at most one report a minute: {reports:#?}"
    );
    assert_eq!(reports[0]["severity"], "WARNING");
    assert!(
        reports[0]["message"].as_str().unwrap().contains("503"),
        "{}",
        reports[0]
    );
    // The report comes at the first failure, a span batch's or a metrics export's (every
    // 300 ms here), whichever fails first.
    let counts = &reports[0]["telemetry"];
    assert!(
        counts["dropped_spans"].as_u64().unwrap_or(0)
            + counts["failed_metric_exports"].as_u64().unwrap_or(0)
            >= 1,
        "{}",
        reports[0]
    );

    // Nowhere to send to at all: the same.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let mut env = emulator_env(&emulator);
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), closed));
    env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
    let service = Service::start(Runtime::IonHost, &env);
    for _ in 0..3 {
        assert_eq!(service.ask("Is anyone listening?").status, 200);
    }
}

#[test]
fn what_waits_for_export_is_sent_at_shutdown() {
    let receiver = Receiver::start();
    let emulator = start_emulator();
    let mut env = emulator_env(&emulator);
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.url.clone()));
    // Nothing would go out on a schedule while the test runs.
    env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "600000".into()));
    env.push(("OTEL_METRIC_EXPORT_INTERVAL".into(), "600000".into()));
    let mut service = Service::start(Runtime::IonHost, &env);
    assert_eq!(service.ask("What is left to do?").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert!(receiver.spans().is_empty(), "exported before shutdown");
    service.terminate();
    assert!(service.wait_exit(Duration::from_secs(10)).is_some());
    let spans = receiver.spans();
    assert!(
        spans.iter().any(|s| s["name"] == format!("chat {MODEL}")),
        "{spans:#?}"
    );
    assert!(
        receiver
            .metric_points()
            .iter()
            .any(|p| p["name"] == "gen_ai.client.operation.duration")
    );
}

#[test]
fn console_traces_print_each_span_as_a_log_entry() {
    let emulator = start_emulator();
    let mut env = emulator_env(&emulator);
    env.push(("OTEL_TRACES_EXPORTER".into(), "console".into()));
    env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
    let service = Service::start(Runtime::IonHost, &env);
    assert_eq!(service.ask("Show me the trace").status, 200);
    let span = eventually("the client span in the log", || {
        service
            .stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["message"] == format!("span chat {MODEL}"))
    });
    assert_eq!(span["span"]["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(
        span["span"]["attributes"]["gen_ai.provider.name"],
        "gcp.vertex_ai"
    );
}

#[test]
fn message_content_is_on_the_spans_only_when_an_operator_opts_in() {
    let receiver = Receiver::start();
    let emulator = start_emulator();
    let mut env = receiver.env(&emulator);
    env.push((
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT".into(),
        "true".into(),
    ));
    let service = Service::start(Runtime::IonHost, &env);
    let trace_id = "5af7651916cd43dd8448eb211c80319c";
    let parent = format!("00-{trace_id}-b7ad6b7169203331-01");
    for stream in [false, true] {
        // Different questions: the second is not answered from the cache.
        let question = format!("Where do I begin with Rust? (streamed: {stream})");
        let reply = service.chat_with_headers(
            &json!({ "message": question, "stream": stream }),
            &[("traceparent", &parent)],
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let attempts = eventually("both chats' client spans", || {
        let attempts: Vec<Value> = receiver
            .spans()
            .into_iter()
            .filter(|s| s["trace_id"] == trace_id && s["kind"] == "SPAN_KIND_CLIENT")
            .collect();
        (attempts.len() == 2).then_some(attempts)
    });
    for attempt in &attempts {
        let json_attribute = |key: &str| -> Value {
            serde_json::from_str(
                attribute(attempt, key)
                    .as_str()
                    .unwrap_or_else(|| panic!("{key} in {attempt:#}")),
            )
            .unwrap()
        };
        let input = json_attribute("gen_ai.input.messages");
        assert_eq!(input[0]["role"], "user");
        assert_eq!(input[0]["parts"][0]["type"], "text");
        assert!(
            input[0]["parts"][0]["content"]
                .as_str()
                .unwrap()
                .contains("Where do I begin with Rust?")
        );
        let instructions = json_attribute("gen_ai.system_instructions");
        assert!(instructions[0]["content"].as_str().unwrap().contains("Ion"));
        let output = json_attribute("gen_ai.output.messages");
        assert_eq!(output[0]["role"], "assistant");
        assert_eq!(output[0]["finish_reason"], "stop");
        assert!(
            output[0]["parts"][0]["content"]
                .as_str()
                .unwrap()
                .starts_with("[Vertex AI emulator"),
            "{output}"
        );
    }
}

/// What the README tells a `spin up` user: Spin exports its own spans when given an OTLP
/// endpoint. They continue the caller's trace and include the call to Vertex AI, in HTTP's
/// conventions; the GenAI spans are ion-host's.
#[test]
fn spin_up_exports_its_own_spans_when_given_an_endpoint() {
    let receiver = Receiver::start();
    let emulator = start_emulator();
    let mut env = emulator_env(&emulator);
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.url.clone()));
    let service = Service::start(Runtime::Spin, &env);
    let trace_id = "7bf92f3577b34da6a3ce929d0e0e4736";
    let reply = service.chat_with_headers(
        &json!({ "message": "Is Spin traced too?" }),
        &[("traceparent", &format!("00-{trace_id}-{CALLER_SPAN}-01"))],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let spans = eventually("Spin's spans of the chat", || {
        let spans: Vec<Value> = receiver
            .spans()
            .into_iter()
            .filter(|s| s["trace_id"] == trace_id)
            .collect();
        let has_call = spans.iter().any(|s| {
            s["kind"] == "SPAN_KIND_CLIENT"
                && attribute(s, "url.full")
                    .as_str()
                    .is_some_and(|u| u.ends_with(&format!("models/{MODEL}:generateContent")))
        });
        has_call.then_some(spans)
    });
    let server = spans
        .iter()
        .find(|s| s["kind"] == "SPAN_KIND_SERVER")
        .expect("Spin's server span");
    assert_eq!(server["parent_span_id"], CALLER_SPAN);
    assert!(
        !spans.iter().any(|s| s["name"] == format!("chat {MODEL}")),
        "the GenAI spans are ion-host's"
    );
}
