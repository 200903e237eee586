//! Cross-origin headers on the host's own answers (413, 429, 503, …), so that a browser app on
//! an allowed origin can read them as it reads the component's. The policy is the component's
//! own: the `allowed_origins` variable, empty for none, `*` for any, else a comma-separated list.

use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ORIGIN, VARY};
use http::{HeaderMap, HeaderValue};

/// Response headers a browser script may read besides the CORS-safelisted ones (as the
/// component exposes them).
const EXPOSED_HEADERS: &str = "retry-after, x-request-id, ratelimit, ratelimit-policy";

/// Which origins may read the answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsPolicy {
    #[default]
    None,
    Any,
    Origins(Vec<String>),
}

/// The CORS headers one request's answer gets.
#[derive(Debug, Clone, Default)]
pub struct CorsHeaders {
    allow_origin: Option<HeaderValue>,
    vary_origin: bool,
}

impl CorsPolicy {
    /// Parses `allowed_origins` as the component does.
    pub fn parse(value: &str) -> CorsPolicy {
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

    /// The headers for a request with these headers.
    pub fn headers_for(&self, request: &HeaderMap) -> CorsHeaders {
        let origin = request
            .get(ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(str::trim);
        let allow_origin = match (self, origin) {
            (CorsPolicy::None, _) | (_, None) => None,
            (CorsPolicy::Any, Some(_)) => Some(HeaderValue::from_static("*")),
            (CorsPolicy::Origins(list), Some(origin)) => list
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
                .then(|| HeaderValue::from_str(origin).ok())
                .flatten(),
        };
        CorsHeaders {
            allow_origin,
            vary_origin: matches!(self, CorsPolicy::Origins(_)),
        }
    }
}

impl CorsHeaders {
    pub fn apply(&self, headers: &mut HeaderMap) {
        if self.vary_origin {
            headers.append(VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(origin) = &self.allow_origin {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        headers
    }

    fn applied(policy: &CorsPolicy, request: &HeaderMap) -> HeaderMap {
        let mut headers = HeaderMap::new();
        policy.headers_for(request).apply(&mut headers);
        headers
    }

    #[test]
    fn allowed_origins_can_read_host_errors() {
        let policy = CorsPolicy::parse("https://app.example.com/, https://admin.example.com");
        let headers = applied(&policy, &with_origin("https://app.example.com"));
        assert_eq!(
            headers[ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert!(
            headers[ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("retry-after")
        );
        assert_eq!(headers[VARY], "Origin");

        let headers = applied(&policy, &with_origin("https://evil.example"));
        assert!(!headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(headers[VARY], "Origin");

        let any = CorsPolicy::parse("*");
        let headers = applied(&any, &with_origin("https://x.example"));
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(applied(&any, &HeaderMap::new()).is_empty());
        assert!(applied(&CorsPolicy::parse(""), &with_origin("https://x.example")).is_empty());
    }
}
