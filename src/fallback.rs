//! When a chat moves on to the next model of its list ([`crate::model_list`]): once a model's
//! own retries ([`crate::retry`]) have ended in a failure that another model need not share.
//! This module only decides; [`crate::vertex`] calls the next model.

use crate::error::UpstreamError;

/// Whether the final failure of one model lets the next model be tried.
///
/// - 429 and any 5xx: that model is out of capacity or failing on Google's side; quotas and
///   serving are per model, so another may answer.
/// - 404 NOT_FOUND: Vertex AI does not serve that model (retired, or an unknown id) in this
///   location; another id may be served.
/// - A timeout or a connection failure: possibly that model's serving alone. The shared
///   deadline keeps trying the next one from running past the chat's budget.
///
/// Anything else would fail the same on every model, so it is final at once: a rejected
/// request (400), credentials (401, 403), blocked content, an unreadable reply, a destination
/// the runtime denies, or missing runtime credentials.
pub fn tries_next_model(error: &UpstreamError) -> bool {
    match error {
        UpstreamError::Status { status, .. } => matches!(status, 404 | 429 | 500..=599),
        UpstreamError::Timeout { .. } | UpstreamError::Unreachable { .. } => true,
        UpstreamError::Denied { .. }
        | UpstreamError::CredentialsUnavailable
        | UpstreamError::InvalidResponse { .. }
        | UpstreamError::Blocked { .. }
        | UpstreamError::EmptyAnswer { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn status(code: u16) -> UpstreamError {
        UpstreamError::Status {
            status: code,
            reason: None,
            message: None,
            retry_after: None,
        }
    }

    #[test]
    fn capacity_server_and_model_failures_move_on() {
        for code in [404, 429, 500, 501, 502, 503, 504, 599] {
            assert!(tries_next_model(&status(code)), "{code}");
        }
        assert!(tries_next_model(&UpstreamError::Timeout {
            after: Duration::from_secs(1)
        }));
        assert!(tries_next_model(&UpstreamError::Unreachable {
            what: "the connection was refused",
            detail: String::new(),
        }));
    }

    #[test]
    fn failures_every_model_would_share_are_final() {
        for code in [400, 401, 403, 409, 413] {
            assert!(!tries_next_model(&status(code)), "{code}");
        }
        for error in [
            UpstreamError::Denied { url: "u".into() },
            UpstreamError::CredentialsUnavailable,
            UpstreamError::InvalidResponse { detail: "x".into() },
            UpstreamError::Blocked {
                reason: "SAFETY".into(),
                stage: "prompt",
            },
            UpstreamError::EmptyAnswer {
                finish_reason: None,
            },
        ] {
            assert!(!tries_next_model(&error), "{error:?}");
        }
    }
}
