//! Order statistics over raw samples. Every sample is kept (a run holds at most a few
//! million), so percentiles are exact rather than bucketed.

use std::time::Duration;

/// Percentiles and extremes of a set of durations, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub min: u64,
    pub mean: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Summary {
    /// Sorts `samples` in place and summarises them; `None` when there are none.
    pub fn of(samples: &mut [u64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Some(Summary {
            count: samples.len(),
            min: samples[0],
            mean: (sum / samples.len() as u128) as u64,
            p50: percentile(samples, 50.0),
            p90: percentile(samples, 90.0),
            p99: percentile(samples, 99.0),
            p999: percentile(samples, 99.9),
            max: samples[samples.len() - 1],
        })
    }
}

/// The nearest-rank percentile of sorted samples: the smallest sample such that at least
/// `p` percent of all samples are less than or equal to it.
///
/// Panics if `sorted` is empty or `p` is outside 0–100.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    assert!(
        (0.0..=100.0).contains(&p),
        "percentile {p} is not within 0-100"
    );
    let n = sorted.len();
    // In integer thousandths of a percent, so that 99% of 100 samples is exactly rank 99
    // rather than a float a hair above 99 that rounds up to 100.
    let thousandths = (p * 1000.0).round() as u128;
    let rank = (thousandths * n as u128).div_ceil(100_000).max(1);
    sorted[rank.min(n as u128) as usize - 1]
}

/// The median of sorted samples: the middle one, or the mean of the two middle ones.
///
/// Panics if `sorted` is empty.
pub fn median(sorted: &[u64]) -> u64 {
    assert!(!sorted.is_empty(), "median of no samples");
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        let (a, b) = (sorted[n / 2 - 1], sorted[n / 2]);
        a / 2 + b / 2 + (a % 2 + b % 2) / 2
    }
}

/// `value − subtrahend` in milliseconds, signed (a baseline can be slower than the run).
pub fn minus_ms(value_ns: u64, subtrahend_ns: u64) -> f64 {
    (value_ns as f64 - subtrahend_ns as f64) / 1e6
}

pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Requests per second over a window.
pub fn rate(count: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.0), 1);
        assert_eq!(percentile(&samples, 1.0), 1);
        assert_eq!(percentile(&samples, 50.0), 50);
        assert_eq!(percentile(&samples, 90.0), 90);
        assert_eq!(percentile(&samples, 99.0), 99);
        assert_eq!(percentile(&samples, 99.9), 100);
        assert_eq!(percentile(&samples, 100.0), 100);
    }

    #[test]
    fn percentiles_of_few_samples_are_real_samples() {
        assert_eq!(percentile(&[7], 99.0), 7);
        // 50% of 3 samples: rank ceil(1.5) = 2.
        assert_eq!(percentile(&[1, 5, 9], 50.0), 5);
        // 90% of 10 samples: rank 9; 99% of 10 samples: rank 10.
        let ten: Vec<u64> = (10..20).collect();
        assert_eq!(percentile(&ten, 90.0), 18);
        assert_eq!(percentile(&ten, 99.0), 19);
    }

    #[test]
    fn summary_sorts_and_reports_extremes_and_mean() {
        let mut samples = vec![30, 10, 20, 40];
        let s = Summary::of(&mut samples).unwrap();
        assert_eq!(samples, vec![10, 20, 30, 40]);
        assert_eq!((s.count, s.min, s.max, s.mean), (4, 10, 40, 25));
        assert_eq!((s.p50, s.p90, s.p99), (20, 40, 40));
        assert_eq!(Summary::of(&mut []), None);
    }

    #[test]
    fn a_tail_shows_in_p99_but_not_in_p50() {
        let mut samples = vec![1_000_000u64; 990];
        samples.extend(std::iter::repeat_n(50_000_000, 10));
        let s = Summary::of(&mut samples).unwrap();
        assert_eq!(s.p50, 1_000_000);
        assert_eq!(s.p99, 1_000_000);
        assert_eq!(s.p999, 50_000_000);
        samples.push(50_000_000);
        let s = Summary::of(&mut samples).unwrap();
        assert_eq!(s.p99, 50_000_000);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3]), 3);
        assert_eq!(median(&[1, 2, 100]), 2);
        assert_eq!(median(&[1, 2, 4, 100]), 3);
        assert_eq!(median(&[u64::MAX - 1, u64::MAX]), u64::MAX - 1);
        assert_eq!(median(&[3, 5]), 4);
    }

    #[test]
    fn differences_and_rates() {
        assert_eq!(minus_ms(51_500_000, 50_000_000), 1.5);
        assert_eq!(minus_ms(49_000_000, 50_000_000), -1.0);
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }
}
