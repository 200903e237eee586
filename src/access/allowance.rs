//! One caller's allowance as the store keeps it: the requests of the last minute and the tokens
//! of the current day, in one small record that instances change by compare-and-swap.
//!
//! Requests are counted in one-second slots. A request is admitted when fewer than the limit
//! were admitted in the slots of the last 60 seconds plus the current one, so no 60-second span
//! ever holds more than the limit (the count errs by up to a second on the strict side). A
//! record holds at most 61 slots, whatever the limit.
//!
//! Time is the later of this instance's clock and the newest slot in the record: an instance
//! whose clock is a few seconds behind never moves a record's time backwards, so its requests
//! are counted with everyone else's rather than in a minute of their own.

use serde::{Deserialize, Serialize};

/// The span a requests-per-minute limit counts over, in seconds.
pub const WINDOW_SECS: u64 = 60;
pub const DAY_SECS: u64 = 86_400;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowance {
    /// `[unix second, requests admitted in it]`, oldest first.
    #[serde(default, rename = "w")]
    slots: Vec<(u64, u32)>,
    /// The UTC day (days since 1970-01-01) that `tokens` counts.
    #[serde(default, rename = "d")]
    day: u64,
    /// Tokens used on `day`.
    #[serde(default, rename = "t")]
    tokens: u64,
    /// Ids of the last few writes. A writer told its compare-and-swap failed looks for its own
    /// id before it tries again: Spin 4's Redis store reports every swap as failed after it
    /// has written it (its `UNWATCH` takes an argument Redis refuses), and a retry would count
    /// the request twice.
    #[serde(default, rename = "i")]
    writes: Vec<u64>,
}

/// Write ids a record remembers.
const REMEMBERED_WRITES: usize = 4;

/// Where a caller stands after a request was counted (or refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Requests left in the current window.
    pub requests_left: u32,
    /// Seconds until the oldest counted request leaves the window.
    pub requests_reset: u64,
    /// Tokens used today.
    pub tokens_used: u64,
    /// Seconds until the day's tokens start again from zero (UTC midnight).
    pub tokens_reset: u64,
}

/// Why a request was refused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The requests-per-minute limit: wait `retry_after` seconds.
    Requests { retry_after: u64 },
    /// The day's tokens are spent: they start again in `retry_after` seconds.
    Tokens { used: u64, retry_after: u64 },
}

impl Allowance {
    /// Reads a stored record; a missing or unreadable one is a fresh allowance.
    pub fn decode(bytes: Option<&[u8]>) -> Allowance {
        bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default()
    }

    /// The record to store, marked as written by `write_id`.
    pub fn encode(&mut self, write_id: u64) -> Vec<u8> {
        self.writes.push(write_id);
        let excess = self.writes.len().saturating_sub(REMEMBERED_WRITES);
        self.writes.drain(..excess);
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether the write `write_id` is in this record (it landed).
    pub fn has_write(&self, write_id: u64) -> bool {
        self.writes.contains(&write_id)
    }

    /// The record's time (see the module comment).
    pub fn clock(&self, now: u64) -> u64 {
        self.slots
            .last()
            .map_or(now, |&(second, _)| second.max(now))
    }

    /// Counts one request at `now` against `requests_per_minute` (0: no limit) and
    /// `daily_tokens` (0: no budget). A refused request is not counted.
    pub fn take(
        &mut self,
        now: u64,
        requests_per_minute: u32,
        daily_tokens: u64,
    ) -> Result<Standing, Refusal> {
        let now = self.clock(now);
        self.forget_before(now);
        let used = self.tokens_on(now / DAY_SECS);
        if daily_tokens > 0 && used >= daily_tokens {
            return Err(Refusal::Tokens {
                used,
                retry_after: seconds_to_midnight(now),
            });
        }
        if requests_per_minute > 0 {
            let counted = self.counted();
            if counted >= requests_per_minute {
                return Err(Refusal::Requests {
                    retry_after: self.wait_for(counted - requests_per_minute + 1, now),
                });
            }
            match self.slots.last_mut() {
                Some((second, count)) if *second == now => *count += 1,
                _ => self.slots.push((now, 1)),
            }
        }
        Ok(self.standing(now, requests_per_minute))
    }

    /// Adds the tokens a chat used (on the record's current day).
    pub fn charge(&mut self, now: u64, tokens: u64) {
        let now = self.clock(now);
        let today = now / DAY_SECS;
        if self.day != today {
            self.day = today;
            self.tokens = 0;
        }
        self.tokens = self.tokens.saturating_add(tokens);
    }

    /// Where the caller stands at `now`, without counting anything.
    pub fn standing(&self, now: u64, requests_per_minute: u32) -> Standing {
        let now = self.clock(now);
        let live: Vec<(u64, u32)> = self.live_slots(now).collect();
        let counted: u32 = live.iter().map(|&(_, c)| c).sum();
        Standing {
            requests_left: requests_per_minute.saturating_sub(counted),
            requests_reset: live
                .first()
                .map_or(0, |&(second, _)| leaves_window_in(second, now)),
            tokens_used: self.tokens_on(now / DAY_SECS),
            tokens_reset: seconds_to_midnight(now),
        }
    }

    fn tokens_on(&self, day: u64) -> u64 {
        if self.day == day { self.tokens } else { 0 }
    }

    fn live_slots(&self, now: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.slots
            .iter()
            .copied()
            .filter(move |&(second, _)| second + WINDOW_SECS >= now)
    }

    fn forget_before(&mut self, now: u64) {
        self.slots
            .retain(|&(second, _)| second + WINDOW_SECS >= now);
    }

    fn counted(&self) -> u32 {
        self.slots.iter().map(|&(_, c)| c).sum()
    }

    /// Seconds until `n` of the counted requests have left the window.
    fn wait_for(&self, n: u32, now: u64) -> u64 {
        let mut left = 0;
        for &(second, count) in &self.slots {
            left += count;
            if left >= n {
                return leaves_window_in(second, now);
            }
        }
        1
    }
}

/// A request counted in slot `second` stops counting this many seconds after `now`.
fn leaves_window_in(second: u64, now: u64) -> u64 {
    (second + WINDOW_SECS + 1).saturating_sub(now).max(1)
}

fn seconds_to_midnight(now: u64) -> u64 {
    DAY_SECS - now % DAY_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_795_000_000; // 2026-11-18 11:06:40 UTC

    #[test]
    fn no_sixty_second_span_holds_more_than_the_limit() {
        let mut a = Allowance::default();
        for _ in 0..3 {
            a.take(T0, 3, 0).unwrap();
        }
        assert_eq!(
            a.take(T0 + 1, 3, 0),
            Err(Refusal::Requests { retry_after: 60 })
        );
        // Still refused at T0 + 60: the first three were less than 60 s ago... or exactly.
        assert!(a.take(T0 + 60, 3, 0).is_err());
        let later = a.take(T0 + 61, 3, 0).unwrap();
        assert_eq!(later.requests_left, 2);
        assert_eq!(later.requests_reset, 61);
    }

    #[test]
    fn a_steady_caller_gets_the_limit_per_minute_and_no_more() {
        // One request a second for five minutes against 30 a minute: at most 30 in any
        // 60-second span, and close to 30 per minute overall.
        let mut a = Allowance::default();
        let admitted: Vec<u64> = (0..300)
            .map(|s| T0 + s)
            .filter(|&t| a.take(t, 30, 0).is_ok())
            .collect();
        for &start in &admitted {
            let in_span = admitted
                .iter()
                .filter(|&&t| t >= start && t < start + 60)
                .count();
            assert!(in_span <= 30, "{in_span} in the minute from {start}");
        }
        assert!(admitted.len() >= 140, "{} admitted", admitted.len());
        assert!(a.slots.len() <= 61);
    }

    #[test]
    fn refusals_say_when_a_request_will_be_let_in() {
        let mut a = Allowance::default();
        a.take(T0, 2, 0).unwrap();
        a.take(T0 + 10, 2, 0).unwrap();
        let Err(Refusal::Requests { retry_after }) = a.take(T0 + 20, 2, 0) else {
            panic!("expected a refusal");
        };
        assert_eq!(retry_after, 41);
        assert!(a.take(T0 + 20 + retry_after, 2, 0).is_ok());
    }

    #[test]
    fn tokens_are_counted_per_utc_day() {
        let mut a = Allowance::default();
        a.take(T0, 0, 1_000).unwrap();
        a.charge(T0, 900);
        assert_eq!(a.take(T0, 0, 1_000).unwrap().tokens_used, 900);
        a.charge(T0, 200); // a chat may overshoot: its size is known only afterwards
        let midnight = (T0 / DAY_SECS + 1) * DAY_SECS;
        assert_eq!(
            a.take(T0, 0, 1_000),
            Err(Refusal::Tokens {
                used: 1_100,
                retry_after: midnight - T0
            })
        );
        let next_day = a.take(midnight, 0, 1_000).unwrap();
        assert_eq!(next_day.tokens_used, 0);
        assert_eq!(next_day.tokens_reset, DAY_SECS);
    }

    #[test]
    fn a_clock_behind_the_record_uses_the_records_time() {
        let mut a = Allowance::default();
        a.take(T0 + 5, 2, 0).unwrap(); // an instance 5 s ahead
        a.take(T0, 2, 0).unwrap(); // one 5 s behind: counted at T0 + 5
        assert_eq!(a.slots, vec![(T0 + 5, 2)]);
        assert!(a.take(T0 + 30, 2, 0).is_err());
        assert!(a.take(T0 + 66, 2, 0).is_ok());
    }

    #[test]
    fn unreadable_records_start_afresh_and_round_trip() {
        assert_eq!(
            Allowance::decode(Some(b"\xffnot json")),
            Allowance::default()
        );
        let mut a = Allowance::default();
        a.take(T0, 5, 10).unwrap();
        a.charge(T0, 7);
        let bytes = a.encode(1);
        assert_eq!(Allowance::decode(Some(&bytes)), a);
        for id in 2..=5 {
            a.encode(id);
        }
        assert!(a.has_write(5) && a.has_write(2) && !a.has_write(1));
    }
}
