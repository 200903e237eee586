//! Routes and handlers: plain functions from request parts to [`ApiResponse`]s.

use serde_json::json;

use crate::config::{Settings, Variables};
use crate::error::ApiError;
use crate::gemini;
use crate::persona;
use crate::resonance;
use crate::response::ApiResponse;
use crate::ui;
use crate::validation::{self, MAX_MESSAGE_CHARS};
use crate::vertex::{self, Transport};

pub const SERVICE_NAME: &str = "Ion Mentoring API";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Largest `/chat` body accepted, in bytes. A 1000-character message escaped as `\uXXXX`
/// surrogate pairs needs 12 kB, so this leaves room for extra fields without inviting abuse.
pub const MAX_BODY_BYTES: usize = 32 * 1024;

const OPENAPI: &str = include_str!("openapi.json");
const DOCS_HTML: &str = include_str!("docs.html");

/// The endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Index,
    Health,
    Chat,
    Docs,
    OpenApi,
    /// A file of the chat page (`/ui/...`).
    Ui(ui::Asset),
}

/// Resolves a method and path (query string allowed) to a route, or a 404/405.
pub fn route(method: &str, path_and_query: &str) -> Result<Route, ApiError> {
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p);
    let (route, allow) = match path {
        "/" => (Route::Index, "GET, HEAD"),
        "/health" => (Route::Health, "GET, HEAD"),
        "/docs" => (Route::Docs, "GET, HEAD"),
        "/openapi.json" => (Route::OpenApi, "GET, HEAD"),
        "/chat" => (Route::Chat, "POST"),
        _ => match ui::Asset::from_path(path) {
            Some(asset) => (Route::Ui(asset), "GET, HEAD"),
            None => {
                return Err(ApiError::NotFound {
                    path: printable(path),
                });
            }
        },
    };
    let allowed = match route {
        Route::Chat => method == "POST",
        _ => method == "GET" || method == "HEAD",
    };
    if allowed {
        Ok(route)
    } else {
        Err(ApiError::MethodNotAllowed { allow })
    }
}

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
}

/// `/chat` takes JSON; a missing Content-Type is read as JSON, as the original service did.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let Some(value) = content_type else {
        return Ok(());
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            content_type: printable(value),
        })
    }
}

/// `POST /chat` with a body already read (at most [`MAX_BODY_BYTES`]).
pub async fn chat(
    body: &[u8],
    vars: &impl Variables,
    transport: &impl Transport,
) -> Result<ApiResponse, ApiError> {
    let request = validation::parse_chat_request(body)?;
    debug_assert!(request.message.chars().count() <= MAX_MESSAGE_CHARS);

    let resonance = resonance::analyze(&request.message);
    let routing = persona::route(&resonance);
    let settings = Settings::load(vars)?;

    let gemini_request = gemini::build_request(
        &settings,
        routing.persona.system_instruction(&resonance),
        &request.message,
    );
    let answer = vertex::generate(transport, &settings, &gemini_request).await?;

    Ok(ApiResponse::json(
        200,
        &json!({
            "content": answer.text,
            "persona_used": routing.persona.name(),
            "resonance_key": resonance.key(),
            "confidence": routing.confidence,
            "metadata": {
                "rhythm": { "pace": resonance.pace, "avg_length": resonance.avg_length },
                "tone": { "primary": resonance.tone, "confidence": resonance.tone.confidence() },
                "routing": {
                    "secondary_persona": routing.secondary.name(),
                    "reasoning": routing.reasoning,
                },
                "model": answer.model_version.unwrap_or(settings.model),
                "finish_reason": answer.finish_reason,
                "usage": {
                    "prompt_tokens": answer.usage.prompt_token_count,
                    "completion_tokens": answer.usage.candidates_token_count,
                    "total_tokens": answer.usage.total_token_count,
                },
            },
        }),
    ))
}

/// Caller-supplied text echoed in an error: bounded and free of control characters.
fn printable(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vars;
    use crate::vertex::{RawReply, TransportError, VertexCall};
    use futures::executor::block_on;
    use serde_json::Value;
    use std::cell::RefCell;

    /// Replies with a fixed result and remembers what it was asked.
    struct Scripted {
        reply: Result<RawReply, TransportError>,
        seen: RefCell<Vec<VertexCall>>,
    }

    impl Scripted {
        fn ok(status: u16, body: Value) -> Self {
            Scripted {
                reply: Ok(RawReply {
                    status,
                    retry_after: None,
                    body: body.to_string().into_bytes(),
                }),
                seen: RefCell::default(),
            }
        }
    }

    impl Transport for Scripted {
        async fn post(&self, call: VertexCall) -> Result<RawReply, TransportError> {
            self.seen.borrow_mut().push(call);
            self.reply.clone()
        }
    }

    fn configured() -> crate::config::tests::Fixed {
        vars(&[("project_id", "proj"), ("access_token", "tok")])
    }

    fn body_of(r: &ApiResponse) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn routes_and_methods() {
        assert_eq!(route("GET", "/").unwrap(), Route::Index);
        assert_eq!(route("HEAD", "/health?probe=1").unwrap(), Route::Health);
        assert_eq!(route("POST", "/chat").unwrap(), Route::Chat);
        assert_eq!(
            route("GET", "/chat"),
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            route("DELETE", "/health"),
            Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" })
        );
        assert!(matches!(
            route("GET", "/nope"),
            Err(ApiError::NotFound { .. })
        ));
        assert!(matches!(
            route("GET", "/health/"),
            Err(ApiError::NotFound { .. })
        ));
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(None).is_ok());
        assert!(check_content_type(Some("application/json")).is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
        assert!(check_content_type(Some("application/merge-patch+json")).is_ok());
        assert!(matches!(
            check_content_type(Some("text/plain")),
            Err(ApiError::UnsupportedMediaType { .. })
        ));
        assert!(check_content_type(Some("application/x-www-form-urlencoded")).is_err());
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
    fn openapi_is_valid_json_describing_chat() {
        let spec: Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(spec["paths"]["/chat"]["post"].is_object());
    }

    #[test]
    fn chat_answers_with_persona_and_metadata() {
        let transport = Scripted::ok(
            200,
            json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": "첫째, ..."}]},
                                "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 10, "totalTokenCount": 60},
                "modelVersion": "gemini-2.5-flash"
            }),
        );
        let body = json!({"message": " 어떻게 해야 하나요? ", "user_id": "u1"}).to_string();
        let r = block_on(chat(body.as_bytes(), &configured(), &transport)).unwrap();
        assert_eq!(r.status, 200);
        let b = body_of(&r);
        assert_eq!(b["content"], "첫째, ...");
        assert_eq!(b["persona_used"], "Elro");
        assert_eq!(b["resonance_key"], "curious-burst-inquiry");
        assert_eq!(b["confidence"], 0.8);
        assert_eq!(b["metadata"]["rhythm"]["pace"], "burst");
        assert_eq!(b["metadata"]["tone"]["primary"], "curious");
        assert_eq!(b["metadata"]["routing"]["secondary_persona"], "Riri");
        assert_eq!(b["metadata"]["finish_reason"], "STOP");
        assert_eq!(b["metadata"]["usage"]["total_tokens"], 60);
        assert_eq!(b["metadata"]["model"], "gemini-2.5-flash");

        let seen = transport.seen.borrow();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].bearer_token.as_deref(), Some("tok"));
        assert!(seen[0].url.contains("/projects/proj/locations/global/"));
        let sent: Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(
            sent["contents"][0]["parts"][0]["text"],
            "어떻게 해야 하나요?"
        );
        let instruction = sent["systemInstruction"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        assert!(instruction.contains("Elro"), "{instruction}");
    }

    #[test]
    fn validation_happens_before_configuration() {
        let transport = Scripted::ok(200, json!({}));
        let err = block_on(chat(br#"{"message": ""}"#, &vars(&[]), &transport)).unwrap_err();
        assert!(matches!(err, ApiError::Validation(_)));
        assert!(transport.seen.borrow().is_empty());
    }

    #[test]
    fn missing_configuration_is_503_without_an_upstream_call() {
        let transport = Scripted::ok(200, json!({}));
        let err = block_on(chat(br#"{"message": "hi"}"#, &vars(&[]), &transport)).unwrap_err();
        let r = err.to_response();
        assert_eq!(r.status, 503);
        assert!(
            body_of(&r)["error"]
                .as_str()
                .unwrap()
                .contains("SPIN_VARIABLE_PROJECT_ID")
        );
        assert!(transport.seen.borrow().is_empty());
    }

    #[test]
    fn transport_failures_are_honest() {
        for (failure, status) in [
            (TransportError::Timeout, 504),
            (TransportError::Denied, 503),
            (TransportError::RuntimeCredentials, 503),
            (TransportError::Failed("connection refused".into()), 502),
        ] {
            let transport = Scripted {
                reply: Err(failure),
                seen: RefCell::default(),
            };
            let err =
                block_on(chat(br#"{"message": "hi"}"#, &configured(), &transport)).unwrap_err();
            assert_eq!(err.to_response().status, status);
        }
    }

    #[test]
    fn upstream_error_status_is_not_a_200() {
        let transport = Scripted::ok(
            503,
            json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}),
        );
        let err = block_on(chat(br#"{"message": "hi"}"#, &configured(), &transport)).unwrap_err();
        let r = err.to_response();
        assert_eq!(r.status, 502);
        assert_eq!(body_of(&r)["upstream"]["reason"], "UNAVAILABLE");
    }
}
