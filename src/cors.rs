//! Cross-origin access for browsers, configured by the `allowed_origins` variable: empty (the
//! default) allows none, `*` allows any, else a comma-separated list of origins
//! (`https://app.example.com`). Lives in the component so both runtimes behave the same.

use crate::config::Variables;
use crate::response::ApiResponse;

/// Response headers a browser script may read besides the CORS-safelisted ones.
const EXPOSED_HEADERS: &str = "retry-after, x-request-id, ratelimit, ratelimit-policy";
/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsPolicy {
    None,
    Any,
    Origins(Vec<String>),
}

impl CorsPolicy {
    pub fn load(vars: &impl Variables) -> Self {
        Self::parse(vars.get("allowed_origins").as_deref().unwrap_or(""))
    }

    pub fn parse(value: &str) -> Self {
        let entries: Vec<String> = value
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        if entries.iter().any(|o| o == "*") {
            CorsPolicy::Any
        } else if entries.is_empty() {
            CorsPolicy::None
        } else {
            CorsPolicy::Origins(entries)
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if it is allowed.
    fn allow_origin(&self, origin: Option<&str>) -> Option<String> {
        let origin = origin?.trim();
        match self {
            CorsPolicy::None => None,
            CorsPolicy::Any => Some("*".into()),
            CorsPolicy::Origins(list) => list
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
                .then(|| origin.to_owned()),
        }
    }

    /// Adds the CORS headers to an actual (non-preflight) response.
    pub fn apply(&self, origin: Option<&str>, mut response: ApiResponse) -> ApiResponse {
        if let CorsPolicy::Origins(_) = self {
            // The answer depends on Origin: caches must keep one copy per origin.
            response.headers.push(("vary", "Origin".into()));
        }
        if let Some(allowed) = self.allow_origin(origin) {
            response
                .headers
                .push(("access-control-allow-origin", allowed));
            response
                .headers
                .push(("access-control-expose-headers", EXPOSED_HEADERS.into()));
        }
        response
    }

    /// Answers an `OPTIONS` request for a route whose methods are `allow`: a CORS preflight
    /// when it carries `Origin` and `Access-Control-Request-Method`, else a plain 204.
    pub fn preflight(
        &self,
        origin: Option<&str>,
        request_method: Option<&str>,
        request_headers: Option<&str>,
        allow: &'static str,
    ) -> ApiResponse {
        let allow_with_options = format!("{allow}, OPTIONS");
        let (Some(origin), Some(method)) = (origin, request_method) else {
            return ApiResponse::with_body(204, "text/plain", Vec::new())
                .with_header("allow", allow_with_options);
        };
        let method_ok = allow
            .split(", ")
            .any(|m| m.eq_ignore_ascii_case(method.trim()));
        match self.allow_origin(Some(origin)) {
            Some(allowed) if method_ok => {
                let mut response = ApiResponse::with_body(204, "text/plain", Vec::new())
                    .with_header("access-control-allow-origin", allowed)
                    .with_header("access-control-allow-methods", allow_with_options)
                    .with_header("access-control-max-age", PREFLIGHT_MAX_AGE)
                    .with_header("vary", "Origin, Access-Control-Request-Headers");
                if let Some(headers) = request_headers.filter(|h| is_header_list(h)) {
                    response = response.with_header("access-control-allow-headers", headers);
                }
                response
            }
            _ => crate::error::ApiError::CorsRejected {
                origin: origin
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect(),
            }
            .to_response(),
        }
    }
}

/// A comma-separated list of header names (echoed back, so nothing else may pass).
fn is_header_list(value: &str) -> bool {
    value.len() <= 1024
        && value.split(',').all(|name| {
            let name = name.trim();
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allows_no_cross_origin_access() {
        let policy = CorsPolicy::parse("");
        let r = policy.apply(
            Some("https://evil.example"),
            ApiResponse::json(200, &serde_json::json!({})),
        );
        assert_eq!(r.header("access-control-allow-origin"), None);
        let r = policy.preflight(Some("https://evil.example"), Some("POST"), None, "POST");
        assert_eq!(r.status, 403);
    }

    #[test]
    fn listed_origins_are_allowed_and_echoed() {
        let policy = CorsPolicy::parse(" https://a.example , https://B.example/ ");
        let ok = |o| {
            policy
                .apply(Some(o), ApiResponse::json(200, &serde_json::json!({})))
                .header("access-control-allow-origin")
                .map(str::to_owned)
        };
        assert_eq!(
            ok("https://a.example").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(
            ok("https://b.example").as_deref(),
            Some("https://b.example")
        );
        assert_eq!(ok("https://c.example"), None);

        let r = policy.preflight(
            Some("https://a.example"),
            Some("POST"),
            Some("content-type, authorization"),
            "POST",
        );
        assert_eq!(r.status, 204);
        assert_eq!(
            r.header("access-control-allow-methods"),
            Some("POST, OPTIONS")
        );
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some("content-type, authorization")
        );
        let r = policy.preflight(Some("https://a.example"), Some("DELETE"), None, "POST");
        assert_eq!(r.status, 403);
    }

    #[test]
    fn star_allows_any_origin() {
        let policy = CorsPolicy::parse("*");
        let r = policy.preflight(Some("https://x.example"), Some("GET"), None, "GET, HEAD");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    }

    #[test]
    fn plain_options_lists_the_methods() {
        let r = CorsPolicy::None.preflight(None, None, None, "GET, HEAD");
        assert_eq!(r.status, 204);
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    }

    #[test]
    fn hostile_request_headers_are_not_echoed() {
        let policy = CorsPolicy::parse("*");
        let r = policy.preflight(
            Some("https://x"),
            Some("POST"),
            Some("a\r\nset-cookie: x"),
            "POST",
        );
        assert_eq!(r.header("access-control-allow-headers"), None);
    }
}
