//! The endpoint table: which paths exist, the methods each takes, and how a method and path
//! resolve to a [`Route`] or to a 404, 405 or trailing-slash 307.

use crate::error::ApiError;
use crate::request::printable;
use crate::ui;

/// The endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Index,
    Health,
    Chat,
    Docs,
    OpenApi,
    ChatCompletions,
    Models,
    /// `OPTIONS` on an endpoint whose methods are these.
    Options {
        allow: &'static str,
    },
    /// A file of the chat page.
    Ui(ui::Asset),
    /// `/conversations/{id}` (the handler reads the id from the path).
    Conversation,
    /// `/admin/keys` and `/admin/keys/{id}`: the admin API.
    AdminKeys,
    /// `GET /usage`: the caller's own limits and use today.
    Usage,
}

/// Methods of `/conversations/{id}`.
const CONVERSATION_METHODS: &str = "GET, HEAD, DELETE";
pub(crate) const CONVERSATIONS_PREFIX: &str = "/conversations/";
/// Methods of `/admin/keys/{id}`.
const KEY_METHODS: &str = "GET, DELETE";

/// Every path and the methods it takes.
pub(crate) const ROUTES: &[(&str, Route, &str)] = &[
    ("/", Route::Index, "GET, HEAD"),
    ("/health", Route::Health, "GET, HEAD"),
    ("/docs", Route::Docs, "GET, HEAD"),
    ("/openapi.json", Route::OpenApi, "GET, HEAD"),
    ("/chat", Route::Chat, "POST"),
    ("/v1/chat/completions", Route::ChatCompletions, "POST"),
    ("/v1/models", Route::Models, "GET, HEAD"),
    ("/usage", Route::Usage, "GET, HEAD"),
    (
        crate::access::admin::KEYS_PATH,
        Route::AdminKeys,
        "GET, POST",
    ),
];

/// Resolves a method and path (query string allowed) to a route, or a 404/405, or (as
/// FastAPI does) a 307 from a trailing-slash path to the route without it.
pub fn route(method: &str, path_and_query: &str) -> Result<Route, ApiError> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    // The chat page's files are not part of the API (nor of openapi.json).
    if let Some(asset) = ui::Asset::from_path(path) {
        return match method {
            "GET" | "HEAD" => Ok(Route::Ui(asset)),
            _ => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        };
    }
    if let Some(id) = path.strip_prefix(CONVERSATIONS_PREFIX)
        && !id.is_empty()
        && !id.contains('/')
    {
        return match method {
            "OPTIONS" => Ok(Route::Options {
                allow: CONVERSATION_METHODS,
            }),
            "GET" | "HEAD" | "DELETE" => Ok(Route::Conversation),
            _ => Err(ApiError::MethodNotAllowed {
                allow: CONVERSATION_METHODS,
            }),
        };
    }
    if let Some(id) = path.strip_prefix(crate::access::admin::KEY_PATH_PREFIX)
        && !id.is_empty()
        && !id.contains('/')
    {
        return match method {
            "OPTIONS" => Ok(Route::Options { allow: KEY_METHODS }),
            "GET" | "DELETE" => Ok(Route::AdminKeys),
            _ => Err(ApiError::MethodNotAllowed { allow: KEY_METHODS }),
        };
    }
    let Some(&(_, route, allow)) = ROUTES.iter().find(|(p, _, _)| *p == path) else {
        let trimmed = path.trim_end_matches('/');
        if trimmed.len() + 1 == path.len() && ROUTES.iter().any(|(p, _, _)| *p == trimmed) {
            let location = match query {
                Some(q) => format!("{trimmed}?{q}"),
                None => trimmed.to_owned(),
            };
            return Err(ApiError::Redirect { location });
        }
        return Err(ApiError::NotFound {
            path: printable(path),
        });
    };
    if method == "OPTIONS" {
        return Ok(Route::Options { allow });
    }
    if allow.split(", ").any(|m| m == method) {
        Ok(route)
    } else {
        Err(ApiError::MethodNotAllowed { allow })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert_eq!(route("GET", "/").unwrap(), Route::Index);
        assert_eq!(route("HEAD", "/health?probe=1").unwrap(), Route::Health);
        assert_eq!(route("POST", "/chat").unwrap(), Route::Chat);
        assert_eq!(
            route("POST", "/v1/chat/completions").unwrap(),
            Route::ChatCompletions
        );
        assert_eq!(route("GET", "/v1/models").unwrap(), Route::Models);
        assert_eq!(
            route("GET", "/chat"),
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            route("DELETE", "/health"),
            Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" })
        );
        assert_eq!(
            route("OPTIONS", "/chat").unwrap(),
            Route::Options { allow: "POST" }
        );
        assert!(matches!(
            route("GET", "/nope"),
            Err(ApiError::NotFound { .. })
        ));
        assert!(matches!(
            route("GET", "/chat//"),
            Err(ApiError::NotFound { .. })
        ));
    }

    #[test]
    fn a_trailing_slash_redirects_as_fastapi_did() {
        assert_eq!(
            route("POST", "/chat/?x=1"),
            Err(ApiError::Redirect {
                location: "/chat?x=1".into()
            })
        );
        let r = route("GET", "/health/").unwrap_err().to_response();
        assert_eq!(r.status, 307);
        assert_eq!(r.header("location"), Some("/health"));
    }
}
