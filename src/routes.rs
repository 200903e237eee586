//! The endpoint table: which paths exist, the methods each takes, and how a method and path
//! resolve to a [`Route`] or to a 404, 405 or trailing-slash 307.
//!
//! Path parameters are checked against their documented patterns here, so that a path that
//! cannot name a resource is a 404 whatever the method (an `OPTIONS` included).

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
    /// `/v1/models/{model}` (the handler reads the id from the path).
    Model,
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
/// Methods of `/v1/models/{model}`.
const MODEL_METHODS: &str = "GET, HEAD";
pub(crate) const MODELS_PREFIX: &str = "/v1/models/";

/// A path ending in an id: its prefix, whether an id is well formed, its route and methods.
struct IdPath {
    prefix: &'static str,
    well_formed: fn(&str) -> bool,
    route: Route,
    allow: &'static str,
}

const ID_PATHS: [IdPath; 3] = [
    IdPath {
        prefix: CONVERSATIONS_PREFIX,
        well_formed: |id| crate::conversation::ConversationId::parse(id).is_some(),
        route: Route::Conversation,
        allow: CONVERSATION_METHODS,
    },
    IdPath {
        prefix: crate::access::admin::KEY_PATH_PREFIX,
        well_formed: crate::access::keys::is_id,
        route: Route::AdminKeys,
        allow: KEY_METHODS,
    },
    IdPath {
        prefix: MODELS_PREFIX,
        // Any model id reaches the handler, which answers OpenAI's 404 for an unknown one.
        well_formed: |_| true,
        route: Route::Model,
        allow: MODEL_METHODS,
    },
];

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
    for IdPath {
        prefix,
        well_formed,
        route,
        allow,
    } in ID_PATHS
    {
        let Some(id) = path.strip_prefix(prefix) else {
            continue;
        };
        if id.is_empty() || id.contains('/') {
            continue;
        }
        return match method {
            // A preflight for a path that cannot exist is a 404. The other methods reach their
            // handler, which says what is wrong with the id (a 422 naming the pattern, or 404).
            "OPTIONS" if !well_formed(id) => Err(ApiError::NotFound {
                path: printable(path),
            }),
            "OPTIONS" => Ok(Route::Options { allow }),
            m if allow.split(", ").any(|a| a == m) => Ok(route),
            _ => Err(ApiError::MethodNotAllowed { allow }),
        };
    }
    let Some(&(_, route, allow)) = ROUTES.iter().find(|(p, _, _)| *p == path) else {
        let trimmed = path.trim_end_matches('/');
        if trimmed.len() + 1 == path.len()
            && let Some(&(_, _, allow)) = ROUTES.iter().find(|(p, _, _)| *p == trimmed)
        {
            // Only the methods the route takes are redirected; any other (OPTIONS and TRACE
            // included) is refused here, where the client asked.
            if !allow.split(", ").any(|m| m == method) {
                return Err(ApiError::MethodNotAllowed { allow });
            }
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

    #[test]
    fn a_trailing_slash_refuses_the_methods_its_route_does_not_take() {
        for (method, path, allow) in [
            ("TRACE", "/chat/", "POST"),
            ("OPTIONS", "/chat/", "POST"),
            ("GET", "/v1/chat/completions/", "POST"),
            ("TRACE", "/v1/models/", "GET, HEAD"),
            ("DELETE", "/admin/keys/", "GET, POST"),
        ] {
            assert_eq!(
                route(method, path),
                Err(ApiError::MethodNotAllowed { allow }),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn ids_in_paths() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            route("GET", &format!("/conversations/{id}")).unwrap(),
            Route::Conversation
        );
        assert_eq!(
            route("OPTIONS", &format!("/conversations/{id}")).unwrap(),
            Route::Options {
                allow: CONVERSATION_METHODS
            }
        );
        // The handler names the pattern for a malformed id; a preflight has no handler.
        assert_eq!(
            route("GET", "/conversations/xyz").unwrap(),
            Route::Conversation
        );
        for path in ["/conversations/xyz", "/admin/keys/0123", "/conversations/A"] {
            assert!(
                matches!(route("OPTIONS", path), Err(ApiError::NotFound { .. })),
                "{path}"
            );
        }
        assert_eq!(
            route("OPTIONS", "/admin/keys/0123456789ab").unwrap(),
            Route::Options { allow: KEY_METHODS }
        );
        assert_eq!(route("GET", "/v1/models/ion-auto").unwrap(), Route::Model);
        assert_eq!(route("HEAD", "/v1/models/x?y=1").unwrap(), Route::Model);
        assert_eq!(
            route("POST", "/v1/models/ion-auto"),
            Err(ApiError::MethodNotAllowed {
                allow: MODEL_METHODS
            })
        );
        assert!(matches!(
            route("GET", "/v1/models/a/b"),
            Err(ApiError::NotFound { .. })
        ));
    }
}
