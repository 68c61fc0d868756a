//! The write load a shard's leader measures for on-demand scaling: offered writes (bytes of data
//! plus partition keys, and records) per second, before any throttling, so a shard refusing
//! writes still shows the demand it cannot take.
//!
//! Counts go into one-second buckets of the node's wall [`Clock`](crate::seam::Clock); a rate
//! is the average over the last whole seconds of a window. A leader measures only while it
//! leads: when the term it measures changes, the history starts again, and a report says how
//! long it covers so the metadata leader decides only from a whole window.

use std::collections::VecDeque;

/// One second of offered writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Second {
    /// Whole seconds since the epoch.
    at: i64,
    bytes: u64,
    records: u64,
}

/// Offered write load per second over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    pub bytes_per_s: u64,
    pub records_per_s: u64,
}

/// A shard leader's meter. Memory is bounded by the longest window.
#[derive(Debug)]
pub struct LoadMeter {
    seconds: VecDeque<Second>,
    /// Seconds kept at most (the longest window).
    horizon_s: usize,
    /// The leader term measured, and when measuring in it began.
    term: u64,
    since_ms: i64,
}

impl LoadMeter {
    /// A meter keeping `horizon_ms` of history (at least one second).
    pub fn new(horizon_ms: u64, now_ms: i64) -> LoadMeter {
        let horizon_s = horizon_ms.div_ceil(1000).clamp(1, 86_400) as usize;
        LoadMeter { seconds: VecDeque::with_capacity(horizon_s.min(64)), horizon_s, term: 0, since_ms: now_ms }
    }

    /// Counts an offered write at `now_ms`.
    pub fn record(&mut self, now_ms: i64, records: u64, bytes: u64) {
        let at = now_ms.div_euclid(1000);
        match self.seconds.back_mut() {
            Some(last) if last.at == at => {
                last.bytes = last.bytes.saturating_add(bytes);
                last.records = last.records.saturating_add(records);
            }
            // A clock that stepped back counts into the latest second.
            Some(last) if last.at > at => {
                last.bytes = last.bytes.saturating_add(bytes);
                last.records = last.records.saturating_add(records);
            }
            _ => {
                self.seconds.push_back(Second { at, bytes, records });
                self.trim(at);
            }
        }
    }

    fn trim(&mut self, now_s: i64) {
        // The horizon's whole seconds before the current one, and the current one.
        while self.seconds.front().is_some_and(|first| first.at < now_s - self.horizon_s as i64) {
            self.seconds.pop_front();
        }
    }

    /// Starts measuring `term` at `now_ms` unless it is the term measured already: a new
    /// leadership's history begins empty.
    pub fn lead(&mut self, term: u64, now_ms: i64) {
        if term != self.term {
            self.term = term;
            self.since_ms = now_ms;
            self.seconds.clear();
        }
    }

    /// How long the current term has been measured, at most the horizon.
    pub fn measured_ms(&self, now_ms: i64) -> u64 {
        (now_ms.saturating_sub(self.since_ms).max(0) as u64).min(self.horizon_s as u64 * 1000)
    }

    /// The average over the `window_ms` (whole seconds) before the current second. Seconds
    /// before measuring began count as empty: a caller checks [`LoadMeter::measured_ms`] first.
    pub fn rate(&mut self, now_ms: i64, window_ms: u64) -> Rate {
        let now_s = now_ms.div_euclid(1000);
        self.trim(now_s);
        let window_s = window_ms.div_ceil(1000).clamp(1, self.horizon_s as u64) as i64;
        let (mut bytes, mut records) = (0u64, 0u64);
        for second in self.seconds.iter().filter(|second| second.at < now_s && second.at >= now_s - window_s) {
            bytes = bytes.saturating_add(second.bytes);
            records = records.saturating_add(second.records);
        }
        Rate { bytes_per_s: bytes / window_s as u64, records_per_s: records / window_s as u64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_averages_whole_seconds_of_its_window() {
        let mut meter = LoadMeter::new(10_000, 0);
        meter.lead(1, 0);
        for second in 0..4 {
            meter.record(second * 1000 + 10, 100, 1_000);
            meter.record(second * 1000 + 900, 100, 1_000);
        }
        // The current second (4) is not whole yet and does not count.
        meter.record(4_100, 1_000, 1_000_000);
        assert_eq!(meter.rate(4_500, 4_000), Rate { bytes_per_s: 2_000, records_per_s: 200 });
        assert_eq!(meter.rate(4_500, 2_000), Rate { bytes_per_s: 2_000, records_per_s: 200 });
        assert_eq!(meter.rate(4_500, 8_000), Rate { bytes_per_s: 1_000, records_per_s: 100 });
        assert_eq!(meter.measured_ms(4_500), 4_500);
    }

    #[test]
    fn history_is_bounded_by_the_horizon_and_restarts_with_a_new_term() {
        let mut meter = LoadMeter::new(3_000, 0);
        meter.lead(1, 0);
        for second in 0..100 {
            meter.record(second * 1000, 1, 10);
        }
        assert!(meter.seconds.len() <= 4);
        assert_eq!(meter.measured_ms(100_000), 3_000);
        assert_eq!(meter.rate(100_000, 60_000), Rate { bytes_per_s: 10, records_per_s: 1 });
        meter.lead(2, 100_000);
        assert_eq!(meter.rate(101_000, 3_000), Rate::default());
        assert_eq!(meter.measured_ms(101_000), 1_000);
        // The same term again keeps the history.
        meter.record(101_000, 3, 30);
        meter.lead(2, 101_500);
        assert_eq!(meter.rate(102_000, 1_000), Rate { bytes_per_s: 30, records_per_s: 3 });
    }

    #[test]
    fn a_clock_stepping_back_counts_into_the_latest_second() {
        let mut meter = LoadMeter::new(5_000, 0);
        meter.record(3_000, 1, 10);
        meter.record(1_000, 1, 10);
        assert_eq!(meter.rate(4_000, 1_000), Rate { bytes_per_s: 20, records_per_s: 2 });
    }
}
