//! Accept failures (out of file descriptors and the like) back off instead of spinning, and are
//! logged at most once a second with a count.

use std::time::{Duration, Instant};

use crate::logging;

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct AcceptErrors {
    backoff: Duration,
    unreported: u64,
    last_report: Option<Instant>,
}

impl AcceptErrors {
    /// Records a failure; returns how long to wait before accepting again.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.unreported += 1;
        let now = Instant::now();
        if self
            .last_report
            .is_none_or(|last| now.duration_since(last) >= LOG_EVERY)
        {
            logging::error(&format!(
                "accept failed {} time(s) since the last report, last: {error}; backing off",
                self.unreported
            ));
            self.unreported = 0;
            self.last_report = Some(now);
        }
        self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
        self.backoff
    }

    /// Records a success: the next failure starts with a short backoff again.
    pub fn accepted(&mut self) {
        self.backoff = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_second_and_resets() {
        let mut errors = AcceptErrors::default();
        let e = std::io::Error::from_raw_os_error(24);
        let waits: Vec<Duration> = (0..10).map(|_| errors.failed(&e)).collect();
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        assert_eq!(errors.unreported, 9, "reported once, then counted");
        errors.accepted();
        assert_eq!(errors.failed(&e), FIRST_BACKOFF);
    }
}
