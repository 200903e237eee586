//! Keeps `openapi.json` true to the code: every route and method, every error `code` the
//! component or ion-host can answer, and every status those errors carry must be documented,
//! and the document may describe nothing that does not exist. (The e2e test
//! `tests/api_contract.rs` checks the same document against the running service.)

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::api::ROUTES;
use crate::config::ConfigError;
use crate::error::{ApiError, UpstreamError};
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
    // The one path with a parameter, which the router matches by prefix.
    let conversation = &paths["/conversations/{conversation_id}"];
    for method in ["get", "head", "delete", "options"] {
        assert!(
            conversation[method].is_object(),
            "{method} /conversations/{{id}}"
        );
        let routed = crate::api::route(
            &method.to_ascii_uppercase(),
            "/conversations/0123456789abcdef0123456789abcdef",
        );
        assert!(routed.is_ok(), "{method}: {routed:?}");
    }
    // Nothing documented that the router does not serve.
    for (path, item) in paths
        .iter()
        .filter(|(p, _)| !p.starts_with("/conversations/"))
    {
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
    for error in samples() {
        let response = error.to_response();
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        let Some(code) = body["code"].as_str() else {
            continue; // 422 (FastAPI shape) and 307 carry no code.
        };
        produced.insert(code.to_owned());
        assert!(documented.contains(code), "code {code} is not documented");
        // The chat routes document every status a chat error can have.
        let chat_statuses = spec["paths"]["/chat"]["post"]["responses"]
            .as_object()
            .unwrap();
        let route_level = ["not_found", "method_not_allowed", "model_not_found"];
        if code == "cors_origin_not_allowed" {
            assert!(spec["paths"]["/chat"]["options"]["responses"]["403"].is_object());
        } else if !route_level.contains(&code) {
            assert!(
                chat_statuses.contains_key(&response.status.to_string()),
                "{code}: status {} is not documented for POST /chat",
                response.status
            );
        }
    }
    assert!(
        spec["paths"]["/v1/chat/completions"]["post"]["responses"]["404"].is_object(),
        "model_not_found"
    );
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
            pattern_range_covers(&pattern, c),
            forbidden,
            "U+{:04X}: the pattern and validation disagree",
            u32::from(c)
        );
    }
}

/// Whether the pattern's first (negated) character class names `c`, as `\uAAAA` or a range
/// `\uAAAA-\uBBBB`: the only regex syntax the document uses there, so no regex engine is needed.
fn pattern_range_covers(pattern: &str, c: char) -> bool {
    let class = pattern
        .split_once("[^")
        .and_then(|(_, rest)| rest.split_once(']'))
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
