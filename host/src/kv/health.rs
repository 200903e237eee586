//! The log lines of a store's outages: a warning at most every 30 s while it fails, and one
//! "recovered" line when a call succeeds again after a logged outage.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::logging;

/// Least time between two "unavailable" warnings of one store.
const WARN_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Health {
    /// Set while calls fail: the success path only reads this.
    failing: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_warning: Option<Instant>,
    /// Failures since the last warning, not logged one by one.
    unlogged: u64,
    /// When the current outage began, if it was logged.
    outage_logged_at: Option<Instant>,
}

impl State {
    /// The warning to log for a failure at `now`, if one is due.
    fn failed(&mut self, label: &str, error: &str, now: Instant) -> Option<String> {
        if self
            .last_warning
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            self.unlogged += 1;
            return None;
        }
        let mut message = format!("key-value store '{label}' unavailable: {error}");
        if self.unlogged > 0 {
            message.push_str(&format!(
                " ({} more failed calls since the last warning)",
                self.unlogged
            ));
        }
        self.last_warning = Some(now);
        self.unlogged = 0;
        self.outage_logged_at.get_or_insert(now);
        Some(message)
    }

    /// The line to log for a success at `now` after failures, if their outage was logged.
    fn succeeded(&mut self, label: &str, now: Instant) -> Option<String> {
        let since = self.outage_logged_at.take()?;
        let mut message = format!(
            "key-value store '{label}' recovered after {:.1} s",
            now.duration_since(since).as_secs_f64()
        );
        if self.unlogged > 0 {
            message.push_str(&format!(
                " ({} more failed calls since the last warning)",
                self.unlogged
            ));
            self.unlogged = 0;
        }
        Some(message)
    }
}

impl Health {
    pub fn failed(&self, label: &str, error: &str) {
        self.failing.store(true, Ordering::Relaxed);
        let message = self.state.lock().unwrap_or_else(|e| e.into_inner()).failed(
            label,
            error,
            Instant::now(),
        );
        if let Some(message) = message {
            logging::warn(&message);
        }
    }

    pub fn succeeded(&self, label: &str) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Another success may have logged the recovery meanwhile.
        if !self.failing.swap(false, Ordering::Relaxed) {
            return;
        }
        let message = state.succeeded(label, Instant::now());
        drop(state);
        if let Some(message) = message {
            logging::info(&message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_per_interval_and_recovers_once() {
        let mut state = State::default();
        let t0 = Instant::now();
        let first = state.failed("default", "connection refused", t0).unwrap();
        assert_eq!(
            first,
            "key-value store 'default' unavailable: connection refused"
        );
        for i in 1..=5 {
            assert_eq!(
                state.failed("default", "x", t0 + Duration::from_secs(i)),
                None
            );
        }
        let again = state
            .failed("default", "timed out", t0 + Duration::from_secs(31))
            .unwrap();
        assert!(
            again.contains("timed out") && again.contains("5 more"),
            "{again}"
        );
        let recovered = state
            .succeeded("default", t0 + Duration::from_secs(40))
            .unwrap();
        assert_eq!(
            recovered,
            "key-value store 'default' recovered after 40.0 s"
        );
        assert_eq!(
            state.succeeded("default", t0 + Duration::from_secs(41)),
            None
        );
    }

    #[test]
    fn a_new_outage_within_the_interval_is_not_logged_nor_its_recovery() {
        let mut state = State::default();
        let t0 = Instant::now();
        assert!(state.failed("s", "e", t0).is_some());
        assert!(state.succeeded("s", t0 + Duration::from_secs(1)).is_some());
        assert_eq!(state.failed("s", "e", t0 + Duration::from_secs(2)), None);
        assert_eq!(state.succeeded("s", t0 + Duration::from_secs(3)), None);
        // Its count goes into the next warning.
        let next = state
            .failed("s", "e", t0 + Duration::from_secs(30))
            .unwrap();
        assert!(next.contains("1 more"), "{next}");
    }
}
