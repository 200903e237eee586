//! Counters behind transient faults (`503x2`, …): the first N attempts of the same request
//! fail, the next one succeeds, and the count starts over after that success, so the same
//! scenario can be replayed (for instance once per runtime under test).
//!
//! "The same request" is the same model and method (`gemini-3.5-flash:GenerateContent`), fault
//! spec and last user text: what a client's retries of one call share.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct TransientFailures {
    failed: Mutex<HashMap<String, u32>>,
}

impl TransientFailures {
    /// Whether this attempt must fail, given it fails `times` times before one success.
    pub fn should_fail(&self, method: &str, spec: &str, last_user_text: &str, times: u32) -> bool {
        let key = format!("{method}\u{0}{spec}\u{0}{last_user_text}");
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let count = failed.entry(key.clone()).or_insert(0);
        if *count < times {
            *count += 1;
            true
        } else {
            failed.remove(&key);
            false
        }
    }

    /// Forgets every count.
    pub fn clear(&self) {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_n_times_then_succeeds_then_starts_over() {
        let counters = TransientFailures::default();
        let attempt = || counters.should_fail("m", "503x2", "hi [[emulator:503x2]]", 2);
        assert_eq!(
            [
                attempt(),
                attempt(),
                attempt(),
                attempt(),
                attempt(),
                attempt()
            ],
            [true, true, false, true, true, false]
        );
    }

    #[test]
    fn requests_count_separately() {
        let counters = TransientFailures::default();
        assert!(counters.should_fail("m", "429x1", "a", 1));
        assert!(counters.should_fail("m", "429x1", "b", 1));
        assert!(counters.should_fail("other", "429x1", "a", 1));
        assert!(counters.should_fail("m", "503x1", "a", 1));
        assert!(!counters.should_fail("m", "429x1", "a", 1));
        counters.clear();
        assert!(counters.should_fail("m", "429x1", "b", 1));
    }
}
