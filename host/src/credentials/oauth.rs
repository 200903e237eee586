//! One token request: send it through the pooled client within a time bound, read the
//! `{"access_token", "expires_in"}` answer (Google's OAuth endpoint and the metadata server
//! share that shape), and turn a refusal into an error that says why without any secret.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::error::Category;
use tokio::time::Instant;

use crate::http_client::{ClientBody, HttpClient, SendError, Timeouts, full_body};

/// Google's OAuth 2.0 token endpoint, used when a credentials file names none.
pub(super) const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Largest token response read; real ones are a few hundred bytes.
const MAX_RESPONSE: usize = 64 * 1024;

/// The token endpoint for a file's optional `token_uri`, checked to be an http(s) URL.
pub(super) fn token_uri(from_file: Option<String>) -> Result<String> {
    let Some(uri) = from_file.filter(|u| !u.is_empty()) else {
        return Ok(GOOGLE_TOKEN_URI.to_owned());
    };
    let parsed: Option<http::Uri> = uri.parse().ok();
    let valid = parsed.is_some_and(|u| {
        matches!(u.scheme_str(), Some("https" | "http")) && u.authority().is_some()
    });
    if !valid {
        bail!("token_uri {uri:?} is not an http(s) URL");
    }
    Ok(uri)
}

/// An access token and when it stops working.
#[derive(Clone)]
pub(super) struct AccessToken {
    pub value: String,
    pub expires_at: Instant,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

/// The error body of Google's OAuth endpoint, e.g. `{"error": "invalid_grant",
/// "error_description": "Invalid JWT Signature."}`.
#[derive(Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

/// Why an exchange failed, split by whether anything answered.
pub(super) enum Failure {
    /// Nothing answered: the name does not resolve, nothing listens, or no answer in time.
    Unreachable(anyhow::Error),
    /// Something answered, but the exchange broke.
    Other(anyhow::Error),
}

impl From<Failure> for anyhow::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unreachable(e) | Failure::Other(e) => e,
        }
    }
}

/// A form-encoded POST body.
pub(super) fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// `POST url` with a form body; the token in the answer.
pub(super) async fn post_form(
    client: &HttpClient,
    url: &str,
    body: String,
    timeout: Duration,
) -> Result<AccessToken> {
    let request = http::Request::post(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(full_body(Bytes::from(body)))
        .with_context(|| format!("invalid token endpoint {url}"))?;
    let requested_at = Instant::now();
    let (status, body) = fetch(client, request, timeout, url).await?;
    parse_token(status, &body, requested_at, url)
}

/// Sends `request` and reads the whole answer, all within `timeout`. `what` names the
/// endpoint in errors.
pub(super) async fn fetch(
    client: &HttpClient,
    request: http::Request<ClientBody>,
    timeout: Duration,
    what: &str,
) -> Result<(http::StatusCode, Bytes), Failure> {
    let timeouts = Timeouts {
        connect: timeout,
        first_byte: timeout,
        between_bytes: timeout,
    };
    let answered = AtomicBool::new(false);
    let exchange = async {
        let response = client.send(request, timeouts).await.map_err(|e| match e {
            SendError::FirstByteTimeout => {
                Failure::Unreachable(anyhow!("{what}: no answer within {timeout:?}"))
            }
            SendError::Connect { .. } => Failure::Unreachable(anyhow!("{what}: {e}")),
            _ => Failure::Other(anyhow!("{what}: {e}")),
        })?;
        answered.store(true, Ordering::Relaxed);
        let status = response.status();
        let body = read_body(response.into_body())
            .await
            .map_err(|e| Failure::Other(anyhow!("{what}: cannot read the answer: {e}")))?;
        Ok((status, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) if answered.load(Ordering::Relaxed) => Err(Failure::Other(anyhow!(
            "{what}: the answer was not complete within {timeout:?}"
        ))),
        Err(_) => Err(Failure::Unreachable(anyhow!(
            "{what}: no answer within {timeout:?}"
        ))),
    }
}

/// The whole body, up to [`MAX_RESPONSE`] bytes.
async fn read_body(mut body: ClientBody) -> Result<Bytes> {
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| anyhow!(e))?;
        if let Ok(chunk) = frame.into_data() {
            if data.len() + chunk.len() > MAX_RESPONSE {
                bail!("more than {MAX_RESPONSE} bytes");
            }
            data.extend_from_slice(&chunk);
        }
    }
    Ok(Bytes::from(data))
}

/// The token in a successful answer, or an error describing a refusal.
pub(super) fn parse_token(
    status: http::StatusCode,
    body: &[u8],
    requested_at: Instant,
    what: &str,
) -> Result<AccessToken> {
    if !status.is_success() {
        bail!("{what} answered {status}: {}", refusal_detail(body));
    }
    // The body holds the token: the error says what was wrong, never what was there.
    let response: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        let reason = match e.classify() {
            Category::Data => "it lacks a string access_token or a numeric expires_in",
            Category::Syntax | Category::Eof | Category::Io => "it is not JSON",
        };
        anyhow!("{what} answered {status} without a usable token: {reason}")
    })?;
    if response.access_token.is_empty() {
        bail!("{what} answered {status} with an empty access_token");
    }
    Ok(AccessToken {
        value: response.access_token,
        expires_at: requested_at + Duration::from_secs(response.expires_in),
    })
}

/// What an error answer says: OAuth's `error: error_description`, else the start of the text.
pub(super) fn refusal_detail(body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<OAuthError>(body) {
        return match e.error_description {
            Some(d) if !d.is_empty() => format!("{}: {}", e.error, printable(&d, 300)),
            _ => printable(&e.error, 300),
        };
    }
    let text = printable(&String::from_utf8_lossy(body), 300);
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text
    }
}

/// `text` on one line, control characters dropped, cut after `max` characters.
fn printable(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = one_line.chars().filter(|c| !c.is_control());
    let mut out: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encodes_reserved_characters() {
        assert_eq!(
            form(&[("a", "x y"), ("b", "1/2+3=&")]),
            "a=x+y&b=1%2F2%2B3%3D%26"
        );
    }

    #[test]
    fn refusal_detail_reads_oauth_errors_and_text() {
        assert_eq!(
            refusal_detail(br#"{"error":"invalid_grant","error_description":"Bad Request"}"#),
            "invalid_grant: Bad Request"
        );
        assert_eq!(
            refusal_detail(br#"{"error":"invalid_client"}"#),
            "invalid_client"
        );
        assert_eq!(refusal_detail(b"Missing\r\n header"), "Missing header");
        assert_eq!(refusal_detail(b""), "(empty body)");
        assert_eq!(refusal_detail(&[b'x'; 400]).chars().count(), 301);
    }

    #[test]
    fn a_malformed_answer_does_not_echo_the_body() {
        let body = br#"{"access_token": "ya29.secret", "expires_in": "soon"}"#;
        let err = parse_token(http::StatusCode::OK, body, Instant::now(), "endpoint")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("ya29.secret"), "{err}");
        assert!(!err.contains("soon"), "{err}");
        assert!(err.contains("without a usable token"), "{err}");
    }

    #[test]
    fn expiry_counts_from_the_request() {
        let at = Instant::now();
        let token = parse_token(
            http::StatusCode::OK,
            br#"{"access_token":"t","expires_in":3599,"token_type":"Bearer"}"#,
            at,
            "endpoint",
        )
        .unwrap();
        assert_eq!(token.value, "t");
        assert_eq!(token.expires_at, at + Duration::from_secs(3599));
    }
}
