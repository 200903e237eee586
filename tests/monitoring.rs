//! monitoring/ against the logs ion-host really writes: every log field a log-based metric
//! filters on or extracts exists in the per-chat entry (and numbers are numbers), every
//! log-based metric a dashboard, alert or SLO uses is defined in monitoring/metrics/, every
//! label used with one is extracted by it, and every outcome value an alert names is one the
//! component reports. The entries come from ion-host serving the component against the
//! emulator: a chat that succeeds, one that Vertex AI rate-limits, a streamed one and one on the
//! OpenAI route.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::*;
use serde_json::{Value, json};

/// Resource labels of `cloud_run_revision`, usable with any metric.
const RESOURCE_LABELS: &[&str] = &[
    "monitored_resource",
    "project_id",
    "service_name",
    "revision_name",
    "configuration_name",
    "location",
    "le",
];

/// Every monitoring/ file, by path relative to monitoring/.
fn monitoring_files() -> BTreeMap<String, Value> {
    let root = workspace_root().join("monitoring");
    let mut files = BTreeMap::new();
    for dir in ["metrics", "dashboards", "alerts", "slo"] {
        let entries =
            std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("monitoring/{dir}: {e}"));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                let json = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
                files.insert(format!("{dir}/{}", file_name(&path)), json);
            }
        }
    }
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Every string inside a JSON value, with the object it sits in.
fn strings<'a>(
    value: &'a Value,
    parent: Option<&'a Value>,
    out: &mut Vec<(&'a str, Option<&'a Value>)>,
) {
    match value {
        Value::String(s) => out.push((s, parent)),
        Value::Array(items) => items.iter().for_each(|v| strings(v, parent, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, Some(value), out)),
        _ => {}
    }
}

/// The identifier-like text that starts at `at`: letters, digits, `_` and (if `dots`) `.`.
fn word_at(text: &str, at: usize, dots: bool) -> &str {
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || (dots && c == '.')))
        .unwrap_or(rest.len());
    rest[..end].trim_end_matches('.')
}

/// `jsonPayload.a.b` → the value at `entry["a"]["b"]` (Cloud Logging puts a line's fields,
/// other than the special ones, under jsonPayload).
fn lookup<'a>(entry: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(entry, |v, key| v.get(key))
}

/// A log-based metric's name and its label keys.
fn defined_metrics(files: &BTreeMap<String, Value>) -> BTreeMap<String, BTreeSet<String>> {
    files
        .iter()
        .filter(|(path, _)| path.starts_with("metrics/"))
        .map(|(path, metric)| {
            let name = metric["name"].as_str().unwrap_or_default().to_owned();
            assert_eq!(
                format!("metrics/{name}.json"),
                *path,
                "a metric file is named after its metric"
            );
            let labels = metric["labelExtractors"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            (name, labels)
        })
        .collect()
}

/// Problems with `files` against `chats`, the per-chat entries ion-host wrote.
fn problems(files: &BTreeMap<String, Value>, chats: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let metrics = defined_metrics(files);
    let mut payload_fields = 0;

    for (path, json) in files {
        let mut found = Vec::new();
        strings(json, None, &mut found);
        for (text, parent) in found {
            // Log fields: jsonPayload.x.y exists in a chat entry; jsonPayload.x="v" matches one.
            for (at, _) in text.match_indices("jsonPayload.") {
                payload_fields += 1;
                let field = word_at(text, at + "jsonPayload.".len(), true);
                if !chats
                    .iter()
                    .any(|c| lookup(c, field).is_some_and(|v| !v.is_null()))
                {
                    problems.push(format!(
                        "{path}: jsonPayload.{field} is not in the chat entry"
                    ));
                    continue;
                }
                let after = &text[at + "jsonPayload.".len() + field.len()..];
                if let Some(literal) = after.strip_prefix("=\"").and_then(|r| r.split('"').next())
                    && !chats
                        .iter()
                        .any(|c| lookup(c, field) == Some(&json!(literal)))
                {
                    problems.push(format!(
                        "{path}: no chat entry has jsonPayload.{field}=\"{literal}\""
                    ));
                }
            }
            // Distribution values are numbers in a successful chat.
            if parent
                .and_then(|p| p.get("valueExtractor"))
                .and_then(Value::as_str)
                == Some(text)
            {
                let field = text
                    .strip_prefix("EXTRACT(jsonPayload.")
                    .and_then(|r| r.strip_suffix(')'))
                    .unwrap_or_default();
                if !chats
                    .iter()
                    .any(|c| lookup(c, field).is_some_and(Value::is_number))
                {
                    problems.push(format!("{path}: {text} is never a number"));
                }
            }
            // Log-based metrics named in filters, with the labels used alongside them.
            for (at, _) in text.match_indices("logging.googleapis.com/user/") {
                let name = word_at(text, at + "logging.googleapis.com/user/".len(), false);
                let Some(labels) = metrics.get(name) else {
                    problems.push(format!("{path}: log-based metric {name} is not defined"));
                    continue;
                };
                let group_by = parent
                    .and_then(|p| p.get("aggregation"))
                    .and_then(|a| a["groupByFields"].as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str);
                for used in filter_labels(text)
                    .into_iter()
                    .chain(group_by.flat_map(filter_labels))
                {
                    if !labels.contains(&used) {
                        problems.push(format!("{path}: {name} has no label {used:?}"));
                    }
                }
            }
            // The same in PromQL: logging_googleapis_com:user_NAME{label="value", ...}.
            for (at, _) in text.match_indices("logging_googleapis_com:user_") {
                let series = word_at(text, at + "logging_googleapis_com:user_".len(), false);
                let name = ["_sum", "_count", "_bucket"]
                    .iter()
                    .find_map(|s| series.strip_suffix(s).filter(|n| metrics.contains_key(*n)))
                    .unwrap_or(series);
                let Some(labels) = metrics.get(name) else {
                    problems.push(format!("{path}: log-based metric {name} is not defined"));
                    continue;
                };
                let rest = &text[at + "logging_googleapis_com:user_".len() + series.len()..];
                let selector = rest
                    .strip_prefix('{')
                    .and_then(|r| r.split('}').next())
                    .unwrap_or_default();
                for matcher in selector.split(',').filter(|m| !m.trim().is_empty()) {
                    let (label, value) = matcher.split_once('=').unwrap_or((matcher, ""));
                    let label = label.trim().trim_end_matches(['!', '~']);
                    if RESOURCE_LABELS.contains(&label) {
                        continue;
                    }
                    if !labels.contains(label) {
                        problems.push(format!("{path}: {name} has no label {label:?}"));
                        continue;
                    }
                    let value = value.trim().trim_matches('"');
                    if !chats
                        .iter()
                        .any(|c| c[label] == json!(value) || c["chat"][label] == json!(value))
                    {
                        problems.push(format!("{path}: no chat entry has {label}=\"{value}\""));
                    }
                }
            }
        }
    }
    if payload_fields == 0 {
        problems.push("no monitoring file reads a log field".to_owned());
    }
    problems
}

/// Label keys in a Monitoring filter or group-by field: `metric.label."k"` or `metric.label.k`.
fn filter_labels(text: &str) -> Vec<String> {
    let mut labels = Vec::new();
    for prefix in ["metric.label.", "metric.labels."] {
        for (at, _) in text.match_indices(prefix) {
            let start = at + prefix.len();
            let quoted = text[start..].starts_with('"');
            labels.push(word_at(text, start + usize::from(quoted), false).to_owned());
        }
    }
    labels
}

/// The JSON entries ion-host wrote whose message is "chat".
fn chat_entries(service: &Service) -> Vec<Value> {
    service
        .stdout_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["message"] == "chat")
        .collect()
}

#[test]
fn monitoring_reads_fields_the_chat_entry_really_has() {
    let emulator = start_emulator();
    let service = Service::start_host(&[], &emulator_env(&emulator));
    let secret = "비밀 질문: 어떻게 시작하나요?";
    assert_eq!(service.ask(secret).status, 200);
    let limited = service.ask("[[emulator:429]]");
    assert_eq!(limited.status, 429, "{}", limited.body);
    let mut streamed = service.stream(&json!({"message": "Tell me more"}));
    assert_eq!(streamed.status, 200);
    let events = streamed.rest();
    assert_eq!(
        events.last().map(|e| e.name.as_str()),
        Some("done"),
        "{events:?}"
    );
    let openai = request(
        "POST",
        &service.url("/v1/chat/completions"),
        &[("content-type", "application/json")],
        br#"{"model": "gemini-3.5-flash", "messages": [{"role": "user", "content": "Hi"}]}"#,
    );
    assert_eq!(openai.status, 200, "{}", openai.body);

    // Lines reach stdout through a pipe: give the last one a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let chats = loop {
        let chats = chat_entries(&service);
        if chats.len() >= 4 || std::time::Instant::now() > deadline {
            break chats;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(chats.len(), 4, "one chat entry per chat: {chats:#?}");
    let kinds: BTreeSet<String> = chats
        .iter()
        .map(|c| format!("{} stream={}", c["chat"]["route"], c["chat"]["stream"]))
        .collect();
    assert!(kinds.contains("\"/chat\" stream=true"), "{kinds:?}");
    assert!(
        kinds.contains("\"/v1/chat/completions\" stream=false"),
        "{kinds:?}"
    );
    for chat in &chats {
        assert!(
            chat["logging.googleapis.com/labels"]["request_id"].is_string(),
            "the host adds the request id: {chat}"
        );
    }
    assert_eq!(chats[0]["severity"], "INFO");
    assert_eq!(chats[0]["chat"]["outcome"], "ok");
    assert_eq!(chats[1]["severity"], "WARNING");
    assert!(
        !service.stdout_lines().join("\n").contains(secret),
        "the message text stays out of the logs"
    );

    let problems = problems(&monitoring_files(), &chats);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The per-chat entry of contract A as ion-host writes it, for checking the checker.
fn sample_chat() -> Value {
    json!({
        "severity": "INFO",
        "message": "chat",
        "chat": {
            "route": "/chat", "stream": false, "model": "gemini-3.5-flash", "persona": "Elro",
            "resonance_key": "curious-burst-inquiry", "outcome": "ok", "status": 200,
            "finish_reason": "STOP", "attempts": 1, "prompt_tokens": 120,
            "completion_tokens": 60, "thoughts_tokens": 32, "total_tokens": 212,
            "upstream_latency_ms": 153, "total_latency_ms": 160
        },
        "logging.googleapis.com/labels": {"request_id": "r1", "stream": "stdout"}
    })
}

#[test]
fn the_check_finds_missing_fields_metrics_and_labels() {
    let files = monitoring_files();
    let mut limited = sample_chat();
    limited["chat"]["outcome"] = json!("upstream_rate_limited");
    let good = [sample_chat(), limited];
    assert_eq!(problems(&files, &good), Vec::<String>::new());

    // A field the component stops writing.
    let mut renamed = good.clone();
    for chat in &mut renamed {
        let fields = chat["chat"].as_object_mut().unwrap();
        let persona = fields.remove("persona").unwrap();
        fields.insert("persona_used".into(), persona);
    }
    let found = problems(&files, &renamed);
    assert!(
        found.iter().any(|p| p.contains("jsonPayload.chat.persona")),
        "{found:#?}"
    );

    // Tokens that are never numbers.
    let mut nulls = good.clone();
    for chat in &mut nulls {
        chat["chat"]["total_tokens"] = Value::Null;
    }
    let found = problems(&files, &nulls);
    assert!(
        found.iter().any(|p| p.contains("total_tokens")),
        "{found:#?}"
    );

    // An outcome an alert names that never happens.
    let found = problems(&files, &[sample_chat()]);
    assert!(
        found.iter().any(|p| p.contains("upstream_rate_limited")),
        "{found:#?}"
    );

    // A dashboard using an undefined metric or label.
    let mut broken = files.clone();
    let dashboard = broken.get_mut("dashboards/ion-mentoring.json").unwrap();
    let text = dashboard
        .to_string()
        .replace("user/ion_chat_attempts", "user/ion_chat_retries")
        .replace(
            "metric.label.\\\"persona\\\"",
            "metric.label.\\\"character\\\"",
        );
    *dashboard = serde_json::from_str(&text).unwrap();
    let found = problems(&broken, &good);
    assert!(
        found
            .iter()
            .any(|p| p.contains("ion_chat_retries is not defined")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.contains("\"character\"")),
        "{found:#?}"
    );
}
