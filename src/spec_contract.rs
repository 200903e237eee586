//! Keeps `openapi.json` true to the code: every route and method, every error `code` the
//! component or ion-host can answer, and every status and header those errors carry where
//! they can be answered must be documented, the fields of the access layer's bodies and the
//! patterns of the validated strings must be the ones the code has, and the document may
//! describe nothing that does not exist. (The e2e test `tests/api_contract.rs` checks the same
//! document against the running service.)

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::access::admin::{self, AdminCall};
use crate::access::{AccessSettings, Credentials};
use crate::config::ConfigError;
use crate::config::tests::Fixed;
use crate::error::{ApiError, UpstreamError};
use crate::response::ApiResponse;
use crate::routes::ROUTES;
use crate::routes::Route;
use crate::store::tests::MemoryStore;
use crate::validation::ValidationIssue;

fn spec() -> Value {
    serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is JSON")
}

/// One error of each kind (and of each upstream status class). The match below has no
/// wildcard, so a new variant does not compile until it is named here too.
fn samples() -> Vec<ApiError> {
    let upstream = |status| UpstreamError::Status {
        status,
        reason: None,
        message: None,
        retry_after: None,
    };
    let mut errors = vec![
        ApiError::Validation(Box::new(ValidationIssue {
            kind: "missing",
            loc: vec![],
            msg: String::new(),
            input: Value::Null,
            ctx: None,
        })),
        ApiError::PayloadTooLarge { limit: 1 },
        ApiError::BodyUnreadable { detail: "x".into() },
        ApiError::UnsupportedMediaType {
            content_type: "text/plain".into(),
        },
        ApiError::NotFound { path: "/x".into() },
        ApiError::MethodNotAllowed { allow: "POST" },
        ApiError::NotConfigured(ConfigError {
            variable: "project_id",
            problem: "missing".into(),
        }),
        ApiError::Redirect {
            location: "/chat".into(),
        },
        ApiError::ModelNotFound { model: "x".into() },
        ApiError::CorsRejected { origin: "x".into() },
        ApiError::UpstreamAfter {
            error: upstream(503),
            attempts: 3,
        },
        ApiError::StoreUnavailable { detail: "x".into() },
        ApiError::ConversationNotFound,
        ApiError::ConversationFull { limit: 1 },
        ApiError::InvalidApiKey { missing: true },
        ApiError::RateLimited {
            requests_per_minute: 1,
            retry_after: 1,
        },
        ApiError::BudgetExceeded {
            daily_tokens: 1,
            used: 1,
            retry_after: 1,
            now: 0,
        },
        ApiError::AdminUnauthorized,
        ApiError::KeyNotFound,
    ];
    let upstream_errors = [
        upstream(429),
        upstream(401),
        upstream(403),
        upstream(404),
        upstream(408),
        upstream(504),
        upstream(500),
        upstream(400),
        UpstreamError::Timeout {
            after: Duration::from_secs(1),
        },
        UpstreamError::Unreachable {
            what: "refused",
            detail: String::new(),
        },
        UpstreamError::Denied { url: "u".into() },
        UpstreamError::CredentialsUnavailable,
        UpstreamError::InvalidResponse {
            detail: String::new(),
        },
        UpstreamError::Blocked {
            reason: "SAFETY".into(),
            stage: "prompt",
        },
        UpstreamError::EmptyAnswer {
            finish_reason: None,
        },
    ];
    for e in &upstream_errors {
        match e {
            UpstreamError::Status { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::Unreachable { .. }
            | UpstreamError::Denied { .. }
            | UpstreamError::CredentialsUnavailable
            | UpstreamError::InvalidResponse { .. }
            | UpstreamError::Blocked { .. }
            | UpstreamError::EmptyAnswer { .. } => {}
        }
    }
    errors.extend(upstream_errors.into_iter().map(ApiError::Upstream));
    for e in &errors {
        match e {
            ApiError::Validation(_)
            | ApiError::PayloadTooLarge { .. }
            | ApiError::BodyUnreadable { .. }
            | ApiError::UnsupportedMediaType { .. }
            | ApiError::NotFound { .. }
            | ApiError::MethodNotAllowed { .. }
            | ApiError::NotConfigured(_)
            | ApiError::Upstream(_)
            | ApiError::UpstreamAfter { .. }
            | ApiError::Redirect { .. }
            | ApiError::ModelNotFound { .. }
            | ApiError::CorsRejected { .. }
            | ApiError::StoreUnavailable { .. }
            | ApiError::ConversationNotFound
            | ApiError::ConversationFull { .. }
            | ApiError::InvalidApiKey { .. }
            | ApiError::RateLimited { .. }
            | ApiError::BudgetExceeded { .. }
            | ApiError::AdminUnauthorized
            | ApiError::KeyNotFound => {}
        }
    }
    errors
}

/// The codes ion-host answers by itself, read from its error module as text (ion-host is
/// another crate, built for another target): the literals of `HostError::code` and the
/// `(code, message)` pairs of `protocol_error_response`.
fn host_codes() -> BTreeSet<String> {
    let errors = include_str!("../host/src/server/errors.rs");
    let body_of = |signature: &str| {
        let start = errors
            .find(signature)
            .expect("ion-host's error module has it");
        let rest = &errors[start..];
        &rest[..rest[1..]
            .find("\n    pub fn ")
            .map_or(rest.len(), |i| i + 1)]
    };
    let literal = |text: &str| -> Option<String> {
        let text = text.trim_start().strip_prefix('"')?;
        let code = &text[..text.find('"')?];
        (!code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .then(|| code.to_owned())
    };
    let mut codes: BTreeSet<String> = body_of("pub fn code(")
        .split("=> ")
        .skip(1)
        .filter_map(literal)
        .collect();
    codes.extend(
        body_of("pub fn protocol_error_response(")
            .split('(')
            .skip(1)
            .filter_map(literal),
    );
    codes
}

fn documented_codes(spec: &Value) -> BTreeSet<String> {
    spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        .as_array()
        .expect("Error.code lists the codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

/// The paths the router matches by prefix, one id each (the document names them with a
/// `{parameter}`).
fn prefix_routes() -> [(&'static str, String); 3] {
    [
        ("/v1/models/{model}", "/v1/models/ion-auto".into()),
        (
            "/conversations/{conversation_id}",
            "/conversations/0123456789abcdef0123456789abcdef".into(),
        ),
        (
            "/admin/keys/{key_id}",
            format!("{}0123456789ab", crate::access::admin::KEY_PATH_PREFIX),
        ),
    ]
}

/// Every method the document gives a path item, upper-case.
fn documented_methods(item: &Value) -> BTreeSet<String> {
    item.as_object()
        .unwrap()
        .keys()
        .map(|m| m.to_ascii_uppercase())
        .collect()
}

#[test]
fn every_route_and_method_is_documented() {
    let spec = spec();
    let paths = spec["paths"].as_object().unwrap();
    for (path, _, allow) in ROUTES {
        let item = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not in openapi.json"));
        for method in allow.split(", ").chain(["OPTIONS"]) {
            assert!(
                item[method.to_ascii_lowercase()].is_object(),
                "{method} {path} is not in openapi.json"
            );
        }
        if *path != "/" {
            let slash = &paths
                .get(&format!("{path}/"))
                .unwrap_or_else(|| panic!("{path}/ (the 307) is not in openapi.json"));
            let method = allow.split(", ").next().unwrap().to_ascii_lowercase();
            assert!(slash[&method]["responses"]["307"].is_object(), "{path}/");
        }
    }
    // The paths with a parameter, which the router matches by prefix: the methods the router
    // takes there (its `Allow`) are exactly the documented ones, each routed, and the
    // document's own example id is served too.
    for (template, sample) in prefix_routes() {
        let item = paths
            .get(template)
            .unwrap_or_else(|| panic!("{template} is not in openapi.json"));
        let Ok(Route::Options { allow }) = crate::routes::route("OPTIONS", &sample) else {
            panic!("OPTIONS {sample} is not routed");
        };
        let served: BTreeSet<String> = allow
            .split(", ")
            .chain(["OPTIONS"])
            .map(str::to_owned)
            .collect();
        assert_eq!(documented_methods(item), served, "{template}");
        let parameter = template
            .split_once('{')
            .and_then(|(_, rest)| rest.strip_suffix('}'))
            .unwrap();
        for method in &served {
            let routed = crate::routes::route(method, &sample);
            assert!(
                matches!(routed, Ok(r) if (r == Route::Options { allow }) == (method == "OPTIONS")),
                "{method} {sample}: {routed:?}"
            );
            let operation = &item[method.to_ascii_lowercase()];
            let example = operation["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == parameter))
                .and_then(|p| p["schema"]["examples"][0].as_str())
                .unwrap_or_else(|| panic!("{method} {template} names no example {parameter}"));
            let concrete = template.replace(&format!("{{{parameter}}}"), example);
            assert!(
                crate::routes::route(method, &concrete).is_ok(),
                "{method} {concrete}"
            );
        }
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
            if !served.contains(method) {
                assert_eq!(
                    crate::routes::route(method, &sample),
                    Err(ApiError::MethodNotAllowed { allow }),
                    "{method} {sample}"
                );
            }
        }
    }
    // Nothing documented that the router does not serve.
    let templates: BTreeSet<&str> = prefix_routes().map(|(t, _)| t).into_iter().collect();
    for (path, item) in paths.iter() {
        if path.contains('{') {
            assert!(
                templates.contains(path.as_str()),
                "openapi.json documents {path}, which is no route"
            );
            continue;
        }
        let route = path
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(path);
        let (_, _, allow) = ROUTES
            .iter()
            .find(|(p, _, _)| *p == route)
            .unwrap_or_else(|| panic!("openapi.json documents {path}, which is no route"));
        for method in item.as_object().unwrap().keys() {
            assert!(
                method == "options" || allow.to_ascii_lowercase().contains(method.as_str()),
                "openapi.json documents {method} {path}, which the route does not take"
            );
        }
    }
}

/// Follows a `$ref` within the document.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let target = reference
                .strip_prefix('#')
                .and_then(|pointer| spec.pointer(pointer))
                .unwrap_or_else(|| panic!("{reference} is not in openapi.json"));
            resolve(spec, target)
        }
        None => value,
    }
}

/// The codes a documented JSON body may carry: the `enum` an `allOf` puts on `Error.code`,
/// over every branch of a `oneOf`. `None` when some branch takes any code (a plain `Error`,
/// or OpenAI's shape, whose `code` is free).
fn codes_of(spec: &Value, schema: &Value) -> Option<BTreeSet<String>> {
    let schema = resolve(spec, schema);
    if let Some(branches) = schema["oneOf"].as_array() {
        let mut codes = BTreeSet::new();
        for branch in branches {
            codes.extend(codes_of(spec, branch)?);
        }
        return Some(codes);
    }
    if let Some(parts) = schema["allOf"].as_array() {
        return parts
            .iter()
            .find_map(|part| part["properties"]["code"]["enum"].as_array())
            .map(|codes| {
                codes
                    .iter()
                    .map(|c| c.as_str().unwrap().to_owned())
                    .collect()
            });
    }
    if schema == &spec["components"]["schemas"]["ValidationError"] {
        return Some(BTreeSet::new()); // FastAPI's shape: no code.
    }
    None
}

/// Checks that `operation` documents `response`'s status, every header it carries, and (when
/// the documented body names its codes) `code`.
fn assert_documents(spec: &Value, operation: &str, code: &str, response: &ApiResponse) {
    let (method, path) = operation.split_once(' ').unwrap();
    let status = response.status.to_string();
    let documented = &spec["paths"][path][method.to_ascii_lowercase()]["responses"][&status];
    assert!(
        documented.is_object(),
        "{code}: status {status} is not documented for {operation}"
    );
    let documented = resolve(spec, documented);
    let headers = documented["headers"].as_object().unwrap();
    for (name, _) in &response.headers {
        assert!(
            *name == "content-type" || headers.keys().any(|h| h.eq_ignore_ascii_case(name)),
            "{code}: header {name} is not documented for {status} on {operation}"
        );
    }
    if let Some(codes) = codes_of(spec, &documented["content"]["application/json"]["schema"]) {
        assert!(
            codes.contains(code),
            "{code}: {operation} documents {status} with the codes {codes:?} only"
        );
    }
}

#[test]
fn every_error_code_and_its_status_is_documented() {
    let spec = spec();
    let documented = documented_codes(&spec);
    let mut produced = host_codes();
    assert!(
        produced.contains("overloaded") && produced.contains("bad_request"),
        "{produced:?}"
    );
    let undocumented: Vec<_> = produced.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "ion-host answers these codes, which openapi.json does not document: {undocumented:?}"
    );
    let openai_types: BTreeSet<&str> = spec["components"]["schemas"]["OpenAIError"]["properties"]
        ["error"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let chat = ["POST /chat", "POST /v1/chat/completions"];
    let admin = [
        "GET /admin/keys",
        "POST /admin/keys",
        "GET /admin/keys/{key_id}",
        "DELETE /admin/keys/{key_id}",
    ];
    for error in samples() {
        // The OpenAI shape of every error has a documented `type`.
        let crate::reply::Reply::<()>::Whole(openai) =
            crate::openai::failed(error.clone(), &mut crate::chat_log::ChatRecord::new("/v1"))
        else {
            unreachable!("a failure is a whole response")
        };
        let openai_body: Value = serde_json::from_slice(&openai.body).unwrap();
        let kind = openai_body["error"]["type"].as_str().unwrap();
        assert!(
            openai_types.contains(kind),
            "OpenAI type {kind} is not documented"
        );

        let response = error.to_response();
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        let Some(code) = body["code"].as_str() else {
            continue; // 422 (FastAPI shape) and 307 carry no code.
        };
        produced.insert(code.to_owned());
        assert!(documented.contains(code), "code {code} is not documented");
        // Where each code can be answered, the document says so: the chat routes document
        // every status (and header) a chat error can have; the admin API its own.
        let operations: Vec<&str> = match code {
            "not_found" | "method_not_allowed" | "model_not_found" => vec![],
            "cors_origin_not_allowed" => {
                assert!(spec["paths"]["/chat"]["options"]["responses"]["403"].is_object());
                vec![]
            }
            "invalid_admin_token" => admin.to_vec(),
            "key_not_found" => admin[2..].to_vec(),
            "invalid_api_key" => [&chat[..], &["GET /usage", "HEAD /usage"]].concat(),
            _ => chat.to_vec(),
        };
        for operation in operations {
            // `/v1` answers in OpenAI's shape and statuses (a 400 where `/chat` has 422).
            let answered = if operation.contains(" /v1/") {
                &openai
            } else {
                &response
            };
            assert_documents(&spec, operation, code, answered);
        }
    }
    assert!(
        spec["paths"]["/v1/chat/completions"]["post"]["responses"]["404"].is_object(),
        "model_not_found"
    );
    let not_found = ApiError::NotFound { path: "/x".into() }.to_response();
    for operation in admin {
        // The admin API without `admin_token` answers like an unknown path.
        assert_documents(&spec, operation, "not_found", &not_found);
    }
    let phantom: Vec<_> = documented.difference(&produced).collect();
    assert!(
        phantom.is_empty(),
        "documented but never produced: {phantom:?}"
    );
}

#[test]
fn the_message_pattern_agrees_with_validation() {
    // The pattern's first class excludes exactly the control characters validation rejects.
    let spec = spec();
    let pattern = spec["components"]["schemas"]["ChatRequest"]["properties"]["message"]["pattern"]
        .as_str()
        .unwrap()
        .to_owned();
    for c in (0u32..0x3000).filter_map(char::from_u32) {
        let forbidden = crate::validation::forbidden_control(&c.to_string()).is_some();
        assert_eq!(
            class_covers(&pattern, 0, c),
            forbidden,
            "U+{:04X}: the pattern and validation disagree",
            u32::from(c)
        );
    }
}

/// Whether the pattern's `index`-th negated character class (from 0) names `c`, as `\uAAAA`
/// or a range `\uAAAA-\uBBBB`: the only regex syntax the document uses there, so no regex
/// engine is needed.
fn class_covers(pattern: &str, index: usize, c: char) -> bool {
    let class = pattern
        .split("[^")
        .nth(index + 1)
        .and_then(|rest| rest.split_once(']'))
        .map(|(class, _)| class)
        .unwrap_or_default();
    let hex = |s: &str| u32::from_str_radix(s.get(2..6)?, 16).ok();
    let mut rest = class;
    while let Some(at) = rest.find("\\u") {
        rest = &rest[at..];
        let Some(low) = hex(rest) else { break };
        rest = &rest[6..];
        if let Some(range) = rest.strip_prefix('-') {
            if let Some(high) = hex(range) {
                if (low..=high).contains(&u32::from(c)) {
                    return true;
                }
                rest = &range[6..];
            }
        } else if low == u32::from(c) {
            return true;
        }
    }
    false
}

/// An admin API on an in-memory store, keyed and anonymous callers with limits, and the
/// admin token.
struct Access {
    settings: AccessSettings,
    kv: MemoryStore,
    token: String,
}

const NOW: u64 = 1_795_000_000;

impl Access {
    fn new() -> Access {
        let token = "0123456789abcdef0123456789abcdef";
        let vars = [
            ("auth_mode", "keys_or_anonymous"),
            ("admin_token", token),
            ("anonymous_requests_per_minute", "5"),
            ("anonymous_daily_tokens", "1000"),
        ];
        Access {
            settings: AccessSettings::load(&Fixed(vars.into_iter().collect())).unwrap(),
            kv: MemoryStore::default(),
            token: format!("Bearer {token}"),
        }
    }

    fn admin(&self, method: &str, path: &str, body: &[u8]) -> Result<ApiResponse, ApiError> {
        let call = AdminCall {
            method,
            path,
            authorization: Some(self.token.as_bytes()),
            body,
        };
        admin::keys_api(&call, &self.settings, &self.kv, &|| [7; 16], NOW)
    }
}

/// Property names, and required ones, of an object schema (through `$ref` and `allOf`).
fn fields(spec: &Value, schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = resolve(spec, schema);
    let names = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut properties = names(&schema["properties"]);
    let mut required: BTreeSet<String> = schema["required"]
        .as_array()
        .map(|r| r.iter().map(|n| n.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (p, r) = fields(spec, part);
        properties.extend(p);
        required.extend(r);
    }
    (properties, required)
}

/// The body sends every documented field, and only those, and the document requires them all.
fn assert_fields(spec: &Value, schema: &Value, body: &Value, what: &str) {
    let (properties, required) = fields(spec, schema);
    let sent: BTreeSet<String> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        sent, properties,
        "{what}: the fields sent and documented differ"
    );
    assert_eq!(required, properties, "{what}: a field is always sent");
}

fn body_of(operation: &str, response: &ApiResponse, spec: &Value) -> Value {
    let (method, path) = operation.split_once(' ').unwrap();
    let documented =
        &spec["paths"][path][method.to_ascii_lowercase()]["responses"][response.status.to_string()];
    assert!(
        documented.is_object(),
        "{operation}: {} is not documented",
        response.status
    );
    serde_json::from_slice(&response.body).unwrap_or(Value::Null)
}

#[test]
fn the_access_bodies_have_the_documented_fields() {
    let spec = spec();
    let schema = |name: &str| spec["components"]["schemas"][name].clone();
    let access = Access::new();

    let created = access
        .admin("POST", "/admin/keys", br#"{"name": "mentee app"}"#)
        .unwrap();
    let created = body_of("POST /admin/keys", &created, &spec);
    assert_fields(
        &spec,
        &schema("CreatedApiKey"),
        &created,
        "POST /admin/keys",
    );
    let id = created["id"].as_str().unwrap().to_owned();

    let listed = access.admin("GET", "/admin/keys", b"").unwrap();
    let listed = body_of("GET /admin/keys", &listed, &spec);
    assert_fields(&spec, &schema("ApiKeyList"), &listed, "GET /admin/keys");
    assert_fields(&spec, &schema("ApiKey"), &listed["keys"][0], "a listed key");

    let shown = access
        .admin("GET", &format!("/admin/keys/{id}"), b"")
        .unwrap();
    let shown = body_of("GET /admin/keys/{key_id}", &shown, &spec);
    assert_fields(
        &spec,
        &schema("ApiKeyWithUsage"),
        &shown,
        "GET /admin/keys/{id}",
    );
    assert_fields(
        &spec,
        &schema("Allowance"),
        &shown["usage"],
        "a key's usage",
    );

    let report = schema("UsageReport");
    let key = format!("Bearer {}", created["key"].as_str().unwrap());
    for authorization in [None, Some(key.as_bytes())] {
        let credentials = Credentials {
            authorization,
            client_addr: Some("203.0.113.9:4000"),
        };
        let usage = admin::usage(&credentials, &access.settings, &access.kv, NOW).unwrap();
        let usage = body_of("GET /usage", &usage, &spec);
        assert_fields(&spec, &report, &usage, "GET /usage");
        assert_fields(
            &spec,
            &schema("Allowance"),
            &usage["usage"],
            "GET /usage: usage",
        );
        if authorization.is_some() {
            assert_fields(
                &spec,
                &report["properties"]["key"],
                &usage["key"],
                "its key",
            );
        } else {
            assert!(usage["key"].is_null());
        }
    }

    let revoked = access
        .admin("DELETE", &format!("/admin/keys/{id}"), b"")
        .unwrap();
    body_of("DELETE /admin/keys/{key_id}", &revoked, &spec);

    let index = crate::info::index();
    let index = body_of("GET /", &index, &spec);
    assert_fields(&spec, &schema("ServiceInfo"), &index, "GET /");
}

#[test]
fn the_key_name_pattern_agrees_with_the_admin_api() {
    // The first class excludes exactly the characters a name may not contain, the second the
    // ones a name may not consist of alone (controls and whitespace, which trimming removes).
    let spec = spec();
    let pattern = spec["components"]["schemas"]["NewApiKey"]["properties"]["name"]["pattern"]
        .as_str()
        .unwrap()
        .to_owned();
    let accepted = |name: String| {
        let body = serde_json::json!({ "name": name }).to_string();
        match Access::new().admin("POST", "/admin/keys", body.as_bytes()) {
            Ok(response) => response.status == 201,
            Err(ApiError::Validation(_)) => false,
            Err(e) => panic!("{name:?}: {e:?}"),
        }
    };
    for c in (0u32..=0x3000).filter_map(char::from_u32) {
        assert_eq!(
            class_covers(&pattern, 0, c),
            !accepted(format!("a{c}a")),
            "U+{:04X} inside a name: the pattern and the admin API disagree",
            u32::from(c)
        );
        assert_eq!(
            class_covers(&pattern, 1, c),
            !accepted(c.to_string()),
            "U+{:04X} as a whole name: the pattern and the admin API disagree",
            u32::from(c)
        );
    }
}
