//! A caller's counters in the store, and the arithmetic on them. Every change is one atomic
//! increment (no read-modify-write), so any number of instances and concurrent requests count
//! against the same numbers without retries.
//!
//! **Requests per minute** are a sliding-window counter: a counter per caller per fixed
//! 60-second window (`rl/<caller>/<window>`), and a request is admitted when
//! `⌊previous × (1 − f)⌋ + current ≤ limit`, where `current` counts it, `previous` is the last
//! window's count and `f` the part of the current window that has passed: the previous window's
//! requests are taken as spread evenly across it. A burst is held to the limit (give or take
//! one, from the rounding); traffic bunched at the end of one window and the start of the next
//! can see a few more in some 60-second span. A refused request is taken back out.
//!
//! **Tokens per day** are one counter per caller per UTC day (`tok/<caller>/<day>`), read
//! before a chat and added to after it.
//!
//! Instances whose clocks differ by a few seconds switch windows a few seconds apart. One that
//! lags would not see what those ahead of it already count in the next window, so in the last
//! [`MAX_SKEW_SECS`] of a window the next window's counter is read too and counted in full.
//!
//! The store has no expiry, so the first increment of a window deletes the window three back
//! (an instance that lags still reads the one before its own), and the first charge of a day
//! deletes the day before: an idle caller leaves at most three small counters behind.

/// The span a requests-per-minute limit counts over, in seconds.
pub const WINDOW_SECS: u64 = 60;
/// How far apart instances' clocks may be and still count each other's requests.
pub const MAX_SKEW_SECS: u64 = 10;
pub const DAY_SECS: u64 = 86_400;

/// The counters of one caller at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub current_window: String,
    pub previous_window: String,
    /// Where instances whose clocks are ahead already count.
    pub next_window: String,
    /// Three windows back: no longer read, deleted once.
    pub stale_window: String,
    pub tokens_today: String,
    pub tokens_yesterday: String,
}

/// The counter keys of `subject` (e.g. `ip/203.0.113.7`, `key/0123456789ab`) at `now`.
pub fn keys(subject: &str, now: u64) -> Keys {
    let window = now / WINDOW_SECS;
    let day = now / DAY_SECS;
    Keys {
        current_window: format!("rl/{subject}/{window}"),
        previous_window: format!("rl/{subject}/{}", window.saturating_sub(1)),
        next_window: format!("rl/{subject}/{}", window + 1),
        stale_window: format!("rl/{subject}/{}", window.saturating_sub(3)),
        tokens_today: format!("tok/{subject}/{day}"),
        tokens_yesterday: format!("tok/{subject}/{}", day.saturating_sub(1)),
    }
}

/// Whether, at `now`, instances with clocks ahead may already count in the next window.
pub fn near_window_end(now: u64) -> bool {
    now % WINDOW_SECS >= WINDOW_SECS - MAX_SKEW_SECS
}

/// The requests counted against a caller at `now`: the previous window's share still inside
/// the last 60 seconds (rounded down), plus the current window's.
pub fn counted(previous: u64, current: u64, now: u64) -> u64 {
    let passed = now % WINDOW_SECS;
    previous * (WINDOW_SECS - passed) / WINDOW_SECS + current
}

/// Whether a request is admitted, `current` counting it.
pub fn admits(previous: u64, current: u64, now: u64, limit: u32) -> bool {
    counted(previous, current, now) <= u64::from(limit)
}

/// Requests left at `now` (after the ones counted).
pub fn remaining(previous: u64, current: u64, now: u64, limit: u32) -> u64 {
    u64::from(limit).saturating_sub(counted(previous, current, now))
}

/// Seconds until one more request would be admitted, if no other came in meanwhile.
pub fn retry_after(previous: u64, current: u64, now: u64, limit: u32) -> u64 {
    let window = now / WINDOW_SECS;
    (1..=2 * WINDOW_SECS)
        .find(|&wait| {
            let then = now + wait;
            let (previous, current) = match then / WINDOW_SECS - window {
                0 => (previous, current),
                1 => (current, 0),
                _ => (0, 0),
            };
            admits(previous, current + 1, then, limit)
        })
        .unwrap_or(2 * WINDOW_SECS)
}

/// Seconds until the current window ends (the `t` of the `RateLimit` field).
pub fn window_reset(now: u64) -> u64 {
    WINDOW_SECS - now % WINDOW_SECS
}

pub fn seconds_to_midnight(now: u64) -> u64 {
    DAY_SECS - now % DAY_SECS
}

/// A counter as the store holds it: a decimal integer (Redis, ion-host's embedded store), or
/// eight little-endian bytes (Spin's SQLite store). Anything else reads as 0.
pub fn parse(bytes: Option<&[u8]>) -> u64 {
    let Some(bytes) = bytes else { return 0 };
    let decimal = std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    let number = decimal.or_else(|| <[u8; 8]>::try_from(bytes).ok().map(i64::from_le_bytes));
    number.map_or(0, |n| n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-18 11:06:00 UTC: the start of a window.
    const T0: u64 = 1_794_999_960;

    /// A store's two counters for one caller, driven like `access::admit` drives them.
    #[derive(Default)]
    struct Caller {
        windows: std::collections::HashMap<u64, u64>,
    }

    impl Caller {
        fn request(&mut self, now: u64, limit: u32) -> Result<(), u64> {
            let window = now / WINDOW_SECS;
            let previous = self.windows.get(&(window - 1)).copied().unwrap_or(0);
            let current = self.windows.entry(window).or_insert(0);
            *current += 1;
            if admits(previous, *current, now, limit) {
                Ok(())
            } else {
                *current -= 1;
                Err(retry_after(previous, *current, now, limit))
            }
        }
    }

    #[test]
    fn a_burst_is_held_to_the_limit_even_across_a_window_boundary() {
        for start in [T0, T0 + 30, T0 + 58, T0 + 59] {
            let mut caller = Caller::default();
            let admitted = (0..200)
                .filter(|n| caller.request(start + n / 100, 30).is_ok())
                .count();
            assert!((30..=31).contains(&admitted), "from {start}: {admitted}");
        }
    }

    #[test]
    fn steady_traffic_gets_about_the_limit_per_minute() {
        // Two requests a second for ten minutes against 30 a minute.
        let mut caller = Caller::default();
        let admitted: Vec<u64> = (0..1200)
            .map(|n| T0 + n / 2)
            .filter(|&t| caller.request(t, 30).is_ok())
            .collect();
        let per_minute = admitted.len() as f64 / 10.0;
        assert!((28.0..=31.0).contains(&per_minute), "{per_minute}");
        for &start in &admitted {
            let in_span = admitted
                .iter()
                .filter(|&&t| t >= start && t < start + 60)
                .count();
            assert!(in_span <= 32, "{in_span} in the minute from {start}");
        }
    }

    #[test]
    fn refusals_say_when_a_request_will_be_let_in() {
        let mut caller = Caller::default();
        for n in 0..3 {
            caller.request(T0 + 10 + n, 3).unwrap();
        }
        let wait = caller.request(T0 + 20, 3).unwrap_err();
        // At the next window, 3 × (1 − f) rounds down to 2 once f > 0: one more fits.
        assert_eq!(wait, 41);
        assert!(caller.request(T0 + 20 + wait - 1, 3).is_err());
        assert!(caller.request(T0 + 20 + wait, 3).is_ok());
    }

    #[test]
    fn a_limit_of_one_waits_about_a_minute() {
        let mut caller = Caller::default();
        caller.request(T0 + 10, 1).unwrap();
        let wait = caller.request(T0 + 11, 1).unwrap_err();
        assert_eq!(wait, 50); // the next window's first second
        assert!(caller.request(T0 + 61, 1).is_ok());
    }

    #[test]
    fn keys_name_the_windows_and_days() {
        let k = keys("ip/203.0.113.7", T0);
        let window = T0 / 60;
        assert_eq!(k.current_window, format!("rl/ip/203.0.113.7/{window}"));
        assert_eq!(
            k.previous_window,
            format!("rl/ip/203.0.113.7/{}", window - 1)
        );
        assert_eq!(k.next_window, format!("rl/ip/203.0.113.7/{}", window + 1));
        assert_eq!(k.stale_window, format!("rl/ip/203.0.113.7/{}", window - 3));
        assert!(!near_window_end(T0) && !near_window_end(T0 + 49) && near_window_end(T0 + 50));
        assert_eq!(k.tokens_today, "tok/ip/203.0.113.7/20775");
        assert_eq!(k.tokens_yesterday, "tok/ip/203.0.113.7/20774");
        assert_eq!(seconds_to_midnight(20775 * DAY_SECS + 1), DAY_SECS - 1);
        assert_eq!(window_reset(T0 + 59), 1);
    }

    #[test]
    fn counters_that_are_not_numbers_read_as_zero() {
        assert_eq!(parse(Some(b"17")), 17);
        assert_eq!(parse(Some(b"-3")), 0);
        assert_eq!(parse(Some(b"\xffjunk")), 0);
        assert_eq!(parse(Some(&293i64.to_le_bytes())), 293);
        assert_eq!(
            parse(Some(b"12345678")),
            12_345_678,
            "eight digits are decimal"
        );
        assert_eq!(parse(None), 0);
    }
}
