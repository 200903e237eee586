//! How much of the heap the server holds, roughly: open connections (each with its buffers and
//! task) and requests in progress (each with its store). When that falls well below its peak, a
//! burst is over and what it freed can go back to the kernel (see `crate::allocator`).

use std::sync::atomic::{AtomicUsize, Ordering};

/// The least fall (connections plus requests) worth giving memory back for: each held tens of
/// KiB, so below this the memory to gain is small and the collection not worth it.
const MIN_FALL: usize = 64;

/// Open connections, and what the last looks (`fell_from_peak`) saw.
#[derive(Debug, Default)]
pub struct Activity {
    connections: AtomicUsize,
    /// The peak of connections plus requests since the last fall.
    peak: AtomicUsize,
    /// Connections plus requests at the last look.
    last: AtomicUsize,
    /// The peak before the last fall, while the load may still be falling; 0 once settled.
    falling_from: AtomicUsize,
}

/// Connections plus requests, at their peak and now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fall {
    pub from: usize,
    pub to: usize,
    /// Reported once the fall has stopped, rather than as it happened.
    pub settled: bool,
}

/// An open connection, counted until dropped.
pub struct OpenConnection<'a>(&'a Activity);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    pub fn connection_opened(&self) -> OpenConnection<'_> {
        let open = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        if open > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(open, Ordering::Relaxed);
        }
        OpenConnection(self)
    }

    /// Called now and then (from one thread) with the requests in progress. Reports a fall
    /// when connections plus requests have fallen to half their peak or less, by at least
    /// `MIN_FALL` (the peak then starts again from here), and once more when, after a fall,
    /// they stop falling: what ended in between (the last connections, the tasks that held
    /// them) freed memory too.
    pub fn fell_from_peak(&self, requests: usize) -> Option<Fall> {
        let now = self.connections.load(Ordering::Relaxed) + requests;
        let last = self.last.swap(now, Ordering::Relaxed);
        let peak = self.peak.load(Ordering::Relaxed).max(now);
        if peak >= now + MIN_FALL && now <= peak / 2 {
            self.peak.store(now, Ordering::Relaxed);
            self.falling_from.store(peak, Ordering::Relaxed);
            return Some(Fall {
                from: peak,
                to: now,
                settled: false,
            });
        }
        self.peak.store(peak, Ordering::Relaxed);
        let falling_from = self.falling_from.load(Ordering::Relaxed);
        if falling_from == 0 || now < last {
            return None;
        }
        self.falling_from.store(0, Ordering::Relaxed);
        Some(Fall {
            from: falling_from,
            to: now,
            settled: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fall(from: usize, to: usize, settled: bool) -> Option<Fall> {
        Some(Fall { from, to, settled })
    }

    #[test]
    fn a_fall_is_reported_as_it_happens_and_once_settled() {
        let activity = Activity::default();
        let open: Vec<_> = (0..100).map(|_| activity.connection_opened()).collect();
        assert_eq!(activity.fell_from_peak(0), None, "nothing closed yet");
        drop(open);
        assert_eq!(activity.fell_from_peak(0), fall(100, 0, false));
        assert_eq!(activity.fell_from_peak(0), fall(100, 0, true));
        assert_eq!(activity.fell_from_peak(0), None, "reported once settled");
    }

    #[test]
    fn requests_in_progress_count_towards_the_peak() {
        let activity = Activity::default();
        let _one = activity.connection_opened();
        assert_eq!(activity.fell_from_peak(200), None, "the burst is on");
        assert_eq!(activity.fell_from_peak(150), None, "not half the peak yet");
        assert_eq!(activity.fell_from_peak(10), fall(201, 11, false));
    }

    #[test]
    fn the_tail_of_a_fall_is_reported_once_it_settles() {
        let activity = Activity::default();
        let mut open: Vec<_> = (0..1000).map(|_| activity.connection_opened()).collect();
        open.truncate(300);
        assert_eq!(activity.fell_from_peak(0), fall(1000, 300, false));
        open.truncate(20);
        assert_eq!(activity.fell_from_peak(0), fall(300, 20, false));
        open.truncate(5);
        assert_eq!(
            activity.fell_from_peak(0),
            None,
            "still falling, by less than MIN_FALL"
        );
        assert_eq!(activity.fell_from_peak(0), fall(300, 5, true));
        assert_eq!(activity.fell_from_peak(0), None);
    }

    #[test]
    fn small_falls_are_not_worth_a_collection() {
        let activity = Activity::default();
        let open: Vec<_> = (0..MIN_FALL - 1)
            .map(|_| activity.connection_opened())
            .collect();
        drop(open);
        assert_eq!(activity.fell_from_peak(0), None);
        assert_eq!(activity.fell_from_peak(0), None);
    }
}
