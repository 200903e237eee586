//! When and how long to wait before calling Vertex AI again.
//!
//! Google's guidance for Gemini: retry 429, 500 and 503 (and connection failures) with
//! exponential backoff and jitter, a small number of attempts, all inside one overall deadline,
//! and never other 4xx. This module only decides; [`crate::vertex`] waits and calls.

use std::time::Duration;

use crate::error::UpstreamError;

/// Retry limits for one chat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry; it doubles per retry.
    pub base: Duration,
    /// Longest backoff between two attempts.
    pub cap: Duration,
}

impl RetryPolicy {
    pub fn new(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(8),
        }
    }

    /// The wait before the next attempt after `failed` attempts, or `None` to give up.
    ///
    /// Full jitter (a uniform draw below the exponential ceiling, `random` in 0..1) spreads
    /// retries of many clients apart; a server's own hint (`Retry-After`/`RetryInfo`) is a floor.
    /// Gives up when attempts are used up or the wait would not end before `remaining` does.
    pub fn next_delay(
        &self,
        failed: u32,
        error: &UpstreamError,
        remaining: Duration,
        random: f64,
    ) -> Option<Duration> {
        if failed >= self.max_attempts || !is_retryable(error) {
            return None;
        }
        let ceiling = self
            .base
            .saturating_mul(1 << failed.saturating_sub(1).min(16))
            .min(self.cap);
        let jittered = ceiling.mul_f64(random.clamp(0.0, 1.0));
        let delay = match error {
            UpstreamError::Status {
                retry_after: Some(hint),
                ..
            } => jittered.max(*hint),
            _ => jittered,
        };
        // Waiting past the deadline only to fail would waste the caller's time.
        (delay < remaining).then_some(delay)
    }
}

/// Transient failures worth another attempt: rate limits, server errors that mean "try again",
/// and connections that failed. Everything else would fail the same way again.
pub fn is_retryable(error: &UpstreamError) -> bool {
    match error {
        UpstreamError::Status { status, .. } => matches!(status, 429 | 500 | 503),
        UpstreamError::Unreachable { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, hint: Option<Duration>) -> UpstreamError {
        UpstreamError::Status {
            status: code,
            reason: None,
            message: None,
            retry_after: hint,
        }
    }

    const PLENTY: Duration = Duration::from_secs(60);

    #[test]
    fn retries_only_transient_failures() {
        let policy = RetryPolicy::new(3);
        for code in [429, 500, 503] {
            assert!(
                policy
                    .next_delay(1, &status(code, None), PLENTY, 0.5)
                    .is_some()
            );
        }
        for code in [400, 401, 403, 404, 501, 502, 504] {
            assert_eq!(policy.next_delay(1, &status(code, None), PLENTY, 0.5), None);
        }
        let refused = UpstreamError::Unreachable {
            what: "connection refused",
            detail: String::new(),
        };
        assert!(policy.next_delay(1, &refused, PLENTY, 0.5).is_some());
        let blocked = UpstreamError::Blocked {
            reason: "SAFETY".into(),
            stage: "prompt",
        };
        assert_eq!(policy.next_delay(1, &blocked, PLENTY, 0.5), None);
    }

    #[test]
    fn backoff_doubles_with_full_jitter_up_to_the_cap() {
        let policy = RetryPolicy::new(10);
        let e = status(503, None);
        assert_eq!(
            policy.next_delay(1, &e, PLENTY, 1.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            policy.next_delay(2, &e, PLENTY, 1.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            policy.next_delay(3, &e, PLENTY, 0.5),
            Some(Duration::from_secs(1))
        );
        assert_eq!(policy.next_delay(9, &e, PLENTY, 1.0), Some(policy.cap));
        assert_eq!(policy.next_delay(2, &e, PLENTY, 0.0), Some(Duration::ZERO));
    }

    #[test]
    fn attempts_and_deadline_bound_the_retries() {
        let policy = RetryPolicy::new(3);
        let e = status(503, None);
        assert!(policy.next_delay(2, &e, PLENTY, 1.0).is_some());
        assert_eq!(policy.next_delay(3, &e, PLENTY, 1.0), None);
        assert_eq!(
            policy.next_delay(1, &e, Duration::from_millis(100), 1.0),
            None
        );
    }

    #[test]
    fn the_server_hint_is_a_floor() {
        let policy = RetryPolicy::new(3);
        let e = status(429, Some(Duration::from_secs(2)));
        assert_eq!(
            policy.next_delay(1, &e, PLENTY, 0.1),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            policy.next_delay(1, &e, Duration::from_secs(1), 0.1),
            None,
            "a hint past the deadline gives up at once"
        );
    }
}
