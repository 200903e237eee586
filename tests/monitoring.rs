//! monitoring/ against the logs ion-host really writes: every log field a log-based metric
//! filters on or extracts exists in the per-chat entry (and numbers are numbers), every
//! log-based metric a dashboard, alert or SLO uses is defined in monitoring/metrics/, every
//! label used with one is extracted by it, and every outcome value an alert names is one the
//! component reports. The entries come from ion-host serving the component against the
//! emulator: a chat that succeeds, one that Vertex AI rate-limits, a streamed one and one on the
//! OpenAI route.
//!
//! And monitoring/ against the OpenTelemetry metrics ion-host exports ([`OTEL_METRICS`]): every
//! one it names, under the name Cloud Monitoring gives an OTLP metric sent to the Telemetry API
//! (`prometheus.googleapis.com/<name>/histogram`, or `{"<name>_bucket", ...}` in PromQL: the
//! OTel name with its dots, no unit suffix), is exported, with the attributes, values and bucket
//! boundaries it uses, and only ion-host's own series (`job`, `cluster`) are read.

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
    ["metric.label.", "metric.labels."]
        .iter()
        .flat_map(|prefix| filter_keys(text, prefix))
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// The keys after `prefix` in a Monitoring filter (`resource.label."k"`, `metric.label.k`; a
/// quoted key may hold dots), each with the value it is compared to (`="v"`), if any.
fn filter_keys<'a>(text: &'a str, prefix: &str) -> Vec<(&'a str, Option<&'a str>)> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            let (key, after) = match rest.strip_prefix('"') {
                Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
                None => {
                    let key = word_at(rest, 0, false);
                    (key, &rest[key.len()..])
                }
            };
            let value = after.strip_prefix("=\"").and_then(|v| v.split('"').next());
            (key, value)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// OpenTelemetry metrics

/// A metric ion-host exports over OTLP: an explicit-bucket histogram, cumulative.
struct OtelMetric {
    name: &'static str,
    /// Every attribute it may carry (some only sometimes, such as `error.type`).
    attributes: &'static [&'static str],
    /// The buckets' upper bounds: where monitoring/ cuts the histogram (an SLO's range, an
    /// `le`) it must be at one of them, or Cloud Monitoring can only estimate the count.
    bounds: &'static [f64],
}

/// The GenAI conventions' advice for durations, in seconds.
const GEN_AI_DURATION_BOUNDS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// The attributes of every Vertex AI attempt's metrics.
const GEN_AI_ATTRIBUTES: &[&str] = &[
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "server.address",
    "server.port",
    "error.type",
];

/// What ion-host exports (OpenTelemetry semantic conventions v1.41.0, GenAI in Development), and
/// so all monitoring/ may name of it; the bounds are the conventions' advice, which ion-host's
/// instruments use. Another test, tests/telemetry.rs, checks that ion-host really exports these
/// metrics and attributes, so a rename on either side fails a test.
const OTEL_METRICS: &[OtelMetric] = &[
    OtelMetric {
        name: "http.server.request.duration",
        // `http.route` only on the chat routes; `error.type` (the status) on 5xx.
        attributes: &[
            "http.request.method",
            "http.response.status_code",
            "url.scheme",
            "http.route",
            "error.type",
        ],
        bounds: &[
            0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
        ],
    },
    OtelMetric {
        // One per Vertex AI attempt; `error.type` on failure (`429`, `503`, `timeout`, ...).
        name: "gen_ai.client.operation.duration",
        attributes: GEN_AI_ATTRIBUTES,
        bounds: GEN_AI_DURATION_BOUNDS,
    },
    OtelMetric {
        name: "gen_ai.client.token.usage",
        attributes: &[
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "server.address",
            "server.port",
            "error.type",
            "gen_ai.token.type",
        ],
        bounds: &[
            1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
            4194304.0, 16777216.0, 67108864.0,
        ],
    },
    OtelMetric {
        // Streamed attempts only.
        name: "gen_ai.client.operation.time_to_first_chunk",
        attributes: GEN_AI_ATTRIBUTES,
        bounds: GEN_AI_DURATION_BOUNDS,
    },
];

/// Attributes with a closed set of values, and the values ion-host gives them.
const OTEL_VALUES: &[(&str, &[&str])] = &[
    ("http.route", &["/chat", "/v1/chat/completions"]),
    ("gen_ai.operation.name", &["chat"]),
    ("gen_ai.provider.name", &["gcp.vertex_ai"]),
    ("gen_ai.token.type", &["input", "output"]),
];

/// The labels of `prometheus_target`, the resource Google files every OTLP metric under:
/// `location` from `cloud.region`, `cluster` `__run__` on Cloud Run, `namespace`, `job` from
/// `service.name`, `instance` from `service.instance.id`.
const PROMETHEUS_TARGET_LABELS: &[&str] = &[
    "project_id",
    "location",
    "cluster",
    "namespace",
    "job",
    "instance",
];

/// What selects ion-host's own series: `job`, its `service.name` (deploy.yml sets
/// `OTEL_SERVICE_NAME`; scripts/monitoring.sh fills in `@OTEL_JOB@`), and Cloud Run's `cluster`.
const OTEL_SERIES: [(&str, &str); 2] = [("job", "@OTEL_JOB@"), ("cluster", "__run__")];

fn otel_metric(name: &str) -> Option<&'static OtelMetric> {
    OTEL_METRICS.iter().find(|m| m.name == name)
}

/// Problems with the OpenTelemetry metrics `files` name, and the names of those they use.
fn otel_problems(files: &BTreeMap<String, Value>) -> (Vec<String>, BTreeSet<&'static str>) {
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (path, json) in files {
        let mut found = Vec::new();
        strings(json, None, &mut found);
        for (text, parent) in found {
            // The googlemanagedprometheus exporter's names; the Telemetry API keeps the dots.
            for metric in OTEL_METRICS {
                let mangled = metric.name.replace('.', "_");
                if text.contains(&mangled) {
                    problems.push(format!(
                        "{path}: {mangled}: Cloud Monitoring keeps the dots of {}",
                        metric.name
                    ));
                }
            }
            otel_filter_problems(path, text, parent, &mut problems, &mut used);
            otel_query_problems(path, text, &mut problems, &mut used);
        }
    }
    (problems, used)
}

/// A Monitoring filter (an SLO's): `metric.type="prometheus.googleapis.com/NAME/KIND"`, with
/// `resource.label."job"=...` and `metric.label."attribute"=...`, and the distribution cut's
/// range beside it in `parent`.
fn otel_filter_problems(
    path: &str,
    text: &str,
    parent: Option<&Value>,
    problems: &mut Vec<String>,
    used: &mut BTreeSet<&'static str>,
) {
    for (at, _) in text.match_indices("prometheus.googleapis.com/") {
        let rest = &text[at + "prometheus.googleapis.com/".len()..];
        let (name, kind) = rest.split_once('/').unwrap_or((rest, ""));
        let kind = word_at(kind, 0, false);
        let Some(metric) = otel_metric(name) else {
            problems.push(format!("{path}: ion-host exports no metric {name:?}"));
            continue;
        };
        used.insert(metric.name);
        if kind != "histogram" {
            problems.push(format!("{path}: {name} is a histogram, not {kind:?}"));
        }
        if !text.contains("resource.type=\"prometheus_target\"") {
            problems.push(format!("{path}: {name} is on prometheus_target"));
        }
        let resource = filter_keys(text, "resource.label.");
        for (label, _) in &resource {
            if !PROMETHEUS_TARGET_LABELS.contains(label) {
                problems.push(format!("{path}: prometheus_target has no label {label:?}"));
            }
        }
        for (label, value) in OTEL_SERIES {
            if !resource.contains(&(label, Some(value))) {
                problems.push(format!(
                    "{path}: {name} is not selected by {label}={value:?}"
                ));
            }
        }
        let group_by = parent
            .and_then(|p| p.get("aggregation"))
            .and_then(|a| a["groupByFields"].as_array())
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .flat_map(|field| filter_keys(field, "metric.label."));
        for (label, value) in filter_keys(text, "metric.label.")
            .into_iter()
            .chain(group_by)
        {
            check_attribute(path, metric, label, value.into_iter().collect(), problems);
        }
        // A distribution cut: at bucket boundaries.
        let range = parent.and_then(|p| p.get("range"));
        for bound in ["min", "max"]
            .iter()
            .filter_map(|k| range?.get(k)?.as_f64())
        {
            check_bound(path, metric, bound, problems);
        }
    }
}

/// PromQL in Google's UTF-8 form: `{"NAME_bucket", job="...", "dotted.label"=~"a|b"}`, and
/// the labels a query groups by.
fn otel_query_problems(
    path: &str,
    text: &str,
    problems: &mut Vec<String>,
    used: &mut BTreeSet<&'static str>,
) {
    let mut in_query = Vec::new();
    for selector in braces(text) {
        let mut items = split_outside_quotes(selector, ',')
            .into_iter()
            .map(str::trim);
        let Some(series) = items
            .next()
            .and_then(|i| i.strip_prefix('"')?.strip_suffix('"'))
            .filter(|s| !s.contains('"'))
        else {
            continue; // no quoted metric name: one of Cloud Run's or a log-based metric
        };
        let Some((base, suffix)) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| Some((series.strip_suffix(s)?, *s)))
        else {
            problems.push(format!(
                "{path}: {series}: a histogram is read as NAME_bucket, _sum or _count"
            ));
            continue;
        };
        let Some(metric) = otel_metric(base) else {
            problems.push(format!("{path}: ion-host exports no metric {base:?}"));
            continue;
        };
        used.insert(metric.name);
        in_query.push(metric);
        let matchers: Vec<(String, &str, &str)> = items.filter_map(matcher).collect();
        for (label, value) in OTEL_SERIES {
            if !matchers.contains(&(label.to_owned(), "=", value)) {
                problems.push(format!(
                    "{path}: {series} is not selected by {label}={value:?}"
                ));
            }
        }
        for (label, op, value) in &matchers {
            if PROMETHEUS_TARGET_LABELS.contains(&label.as_str()) {
                continue;
            }
            if label == "le" && suffix == "_bucket" {
                match value.parse() {
                    Ok(bound) => check_bound(path, metric, bound, problems),
                    Err(_) => problems.push(format!("{path}: le={value:?} is not a number")),
                }
                continue;
            }
            let values = match *op {
                "=~" | "!~" => value.split('|').collect(),
                _ => vec![*value],
            };
            check_attribute(path, metric, label, values, problems);
        }
    }
    if in_query.is_empty() {
        return;
    }
    for (at, _) in text.match_indices("by (") {
        let list = text[at + "by (".len()..]
            .split(')')
            .next()
            .unwrap_or_default();
        for label in list.split(',').map(|l| l.trim().trim_matches('"')) {
            let known = label == "le"
                || PROMETHEUS_TARGET_LABELS.contains(&label)
                || in_query.iter().any(|m| m.attributes.contains(&label));
            if !known {
                problems.push(format!("{path}: no metric of the query has {label:?}"));
            }
        }
    }
}

/// `label` is one of `metric`'s attributes, and `values` (none empty: an absent label) are ones
/// ion-host gives it.
fn check_attribute(
    path: &str,
    metric: &OtelMetric,
    label: &str,
    values: Vec<&str>,
    problems: &mut Vec<String>,
) {
    if !metric.attributes.contains(&label) {
        problems.push(format!(
            "{path}: {} has no attribute {label:?}",
            metric.name
        ));
        return;
    }
    let closed = OTEL_VALUES.iter().find(|(l, _)| *l == label);
    for value in values.into_iter().filter(|v| !v.is_empty()) {
        if closed.is_some_and(|(_, known)| !known.contains(&value)) {
            problems.push(format!("{path}: ion-host never sets {label}={value:?}"));
        }
    }
}

fn check_bound(path: &str, metric: &OtelMetric, bound: f64, problems: &mut Vec<String>) {
    if bound != 0.0 && !metric.bounds.contains(&bound) {
        problems.push(format!(
            "{path}: {} cut at {bound}, not at a bucket boundary ({:?})",
            metric.name, metric.bounds
        ));
    }
}

/// What stands between `{` and `}` outside quoted strings: PromQL's selectors.
fn braces(text: &str) -> Vec<&str> {
    let (mut quoted, mut open, mut found) = (false, None, Vec::new());
    for (at, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => open = Some(at + 1),
            '}' if !quoted => found.extend(open.take().map(|start| &text[start..at])),
            _ => {}
        }
    }
    found
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let (mut quoted, mut start, mut parts) = (false, 0, Vec::new());
    for (at, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&text[start..at]);
            start = at + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A PromQL label matcher, `label op "value"` or `"label" op "value"`: (label, op, value).
fn matcher(item: &str) -> Option<(String, &str, &str)> {
    let (label, rest) = match item.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"')?,
        None => item.split_at(item.find(['=', '!'])?),
    };
    let rest = rest.trim();
    let op = ["=~", "!~", "!=", "="]
        .into_iter()
        .find(|op| rest.starts_with(op))?;
    let value = rest[op.len()..]
        .trim()
        .strip_prefix('"')?
        .strip_suffix('"')?;
    Some((label.trim().to_owned(), op, value))
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

    // An SLO using an undefined metric, a dashboard an undefined label.
    let mut broken = files.clone();
    let slo = broken.get_mut("slo/latency.json").unwrap();
    let text = slo
        .to_string()
        .replace("user/ion_chat_total_latency", "user/ion_chat_duration");
    *slo = serde_json::from_str(&text).unwrap();
    let dashboard = broken.get_mut("dashboards/ion-mentoring.json").unwrap();
    let text = dashboard.to_string().replace(
        "metric.label.\\\"persona\\\"",
        "metric.label.\\\"character\\\"",
    );
    *dashboard = serde_json::from_str(&text).unwrap();
    let found = problems(&broken, &good);
    assert!(
        found
            .iter()
            .any(|p| p.contains("ion_chat_duration is not defined")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.contains("\"character\"")),
        "{found:#?}"
    );
}

#[test]
fn monitoring_names_only_the_otel_metrics_ion_host_exports() {
    let (problems, used) = otel_problems(&monitoring_files());
    assert!(problems.is_empty(), "{problems:#?}");
    // Each is read somewhere (the first-chunk SLO, the dashboard); none slipped past the check.
    let exported: BTreeSet<&str> = OTEL_METRICS.iter().map(|m| m.name).collect();
    assert_eq!(used, exported);
}

#[test]
fn the_check_finds_otel_names_cloud_monitoring_would_not_have() {
    let files = monitoring_files();
    let dashboard = "dashboards/ion-mentoring.json";
    let cases = [
        // The dots turned to underscores, as Google's older exporter did.
        (
            dashboard,
            "gen_ai.client.token.usage_sum",
            "gen_ai_client_token_usage_sum",
            "keeps the dots",
        ),
        // A unit suffix, which the Telemetry API does not add.
        (
            dashboard,
            "time_to_first_chunk_bucket",
            "time_to_first_chunk_seconds_bucket",
            "no metric \"gen_ai.client.operation.time_to_first_chunk_seconds\"",
        ),
        // An attribute ion-host does not export, and a value it never gives.
        (
            dashboard,
            r#"\"gen_ai.token.type\"=\"input\""#,
            r#"\"gen_ai.token.kind\"=\"input\""#,
            "no attribute \"gen_ai.token.kind\"",
        ),
        (
            dashboard,
            r#"\"gen_ai.token.type\"=\"input\""#,
            r#"\"gen_ai.token.type\"=\"prompt\""#,
            "never sets gen_ai.token.type=\"prompt\"",
        ),
        (
            dashboard,
            r#"by (\"error.type\")"#,
            r#"by (\"error.kind\")"#,
            "no metric of the query has \"error.kind\"",
        ),
        // Every service's series, not ion-host's.
        (
            "alerts/upstream-rate-limited.json",
            r#"job=\"@OTEL_JOB@\", "#,
            "",
            "not selected by job",
        ),
        // Not the histogram's kind, and a cut between two buckets.
        (
            "slo/first-chunk.json",
            "time_to_first_chunk/histogram",
            "time_to_first_chunk/counter",
            "not \"counter\"",
        ),
        (
            "slo/first-chunk.json",
            "\"max\":10.24",
            "\"max\":10.0",
            "not at a bucket boundary",
        ),
    ];
    for (path, from, to, expected) in cases {
        let mut broken = files.clone();
        let json = broken.get_mut(path).unwrap();
        let text = json.to_string();
        assert!(text.contains(from), "{path} has no {from}");
        *json = serde_json::from_str(&text.replace(from, to)).unwrap();
        let (found, _) = otel_problems(&broken);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{from} -> {to}: {found:#?}"
        );
    }
}
