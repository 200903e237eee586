//! The service's own endpoints: `GET /` (as JSON), `/health`, `/docs` and `/openapi.json`.

use serde_json::json;

use crate::persona;
use crate::response::ApiResponse;

pub const SERVICE_NAME: &str = "Ion Mentoring API";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const OPENAPI: &str = include_str!("openapi.json");
const DOCS_HTML: &str = include_str!("docs.html");
/// `/docs` may run only its own inline style and script (named by their sha256) and fetch only
/// from this origin. Editing either block of docs.html changes its hash: the contract test
/// (tests/python/contract_check.py) checks these and prints the right ones.
pub const DOCS_CSP: &str = "default-src 'none'; connect-src 'self'; style-src 'sha256-wWNdOBqCBjcAJo1qEvHqWzCVjWM1zGKf5oEfocuW/Cw='; script-src 'sha256-4adQiC7SW0TaBMcT+dxrQ+QLbSL/Op6lzE1fieeOIeI='; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`
pub fn index() -> ApiResponse {
    ApiResponse::json(
        200,
        &json!({
            "service": SERVICE_NAME,
            "version": VERSION,
            "status": "running",
            "docs": "/docs",
            "openapi": "/openapi.json",
            "health": "/health",
            "chat": "/chat",
            "openai": "/v1/chat/completions",
            "usage": "/usage",
            "personas": persona::Persona::ALL
                .map(|p| json!({ "name": p.name(), "character": p.character() })),
        }),
    )
}

/// `GET /health`: liveness only, no upstream call.
pub fn health() -> ApiResponse {
    ApiResponse::json(
        200,
        &json!({ "status": "healthy", "version": VERSION, "pipeline_ready": true }),
    )
}

/// `GET /openapi.json`
pub fn openapi() -> ApiResponse {
    ApiResponse::with_body(200, "application/json", OPENAPI)
}

/// `GET /docs`
pub fn docs() -> ApiResponse {
    ApiResponse::with_body(200, "text/html; charset=utf-8", DOCS_HTML)
        .with_header("content-security-policy", DOCS_CSP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn body_of(r: &ApiResponse) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn index_and_health_keep_the_original_fields() {
        let b = body_of(&index());
        assert_eq!(b["status"], "running");
        assert_eq!(b["version"], "1.0.0");
        assert_eq!(b["health"], "/health");
        let b = body_of(&health());
        assert_eq!(b["status"], "healthy");
        assert_eq!(b["pipeline_ready"], true);
    }

    #[test]
    fn docs_is_self_contained_under_a_csp() {
        let r = docs();
        assert_eq!(r.header("content-security-policy"), Some(DOCS_CSP));
        assert!(DOCS_CSP.starts_with("default-src 'none'"));
        let page = String::from_utf8(r.body).unwrap();
        for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "cdn."] {
            assert!(!page.contains(external), "/docs loads {external}...");
        }
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("fetch(\"/openapi.json\")"));
    }

    #[test]
    fn openapi_is_valid_json_describing_chat() {
        let spec: Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(spec["paths"]["/chat"]["post"].is_object());
    }
}
