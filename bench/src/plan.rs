//! The batch plan workers share: which batch is next, how many records it holds, when it is
//! due.
//!
//! Closed loop: workers claim batches as fast as they finish the previous one. Open loop: batch
//! `k` is due at `k × batch / rate` seconds after the start whether or not earlier batches were
//! answered, and latency is measured from that due time, so a stalled system shows up as
//! latency instead of silently slowing the sender (coordinated omission).
//!
//! Invariants: no batch is claimed at or after the time limit; a duration run schedules no
//! batch due at or after its end; a record-count run hands out exactly that many records.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// When a run stops sending.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum End {
    /// After this many records have been sent (acknowledged or failed).
    Records(u64),
    /// After this long from the start (warm-up included): closed-loop runs stop claiming,
    /// open-loop runs schedule nothing due later.
    Duration(Duration),
}

/// One batch a worker has claimed.
#[derive(Debug, PartialEq)]
pub struct Batch {
    /// The batch's position in the plan, from 0.
    pub index: u64,
    pub records: usize,
    /// Offset from the start at which it is due (open loop only).
    pub due: Option<Duration>,
}

pub struct Plan {
    end: End,
    batch_records: usize,
    rate_records_per_s: Option<f64>,
    time_limit: Duration,
    next_batch: AtomicU64,
    time_limit_hit: AtomicBool,
}

impl Plan {
    pub fn new(end: End, batch_records: usize, rate_records_per_s: Option<f64>, time_limit: Duration) -> Plan {
        assert!(batch_records >= 1, "batches hold at least one record");
        assert!(rate_records_per_s.is_none_or(|rate| rate.is_finite() && rate > 0.0), "rates are positive");
        Plan {
            end,
            batch_records,
            rate_records_per_s,
            time_limit,
            next_batch: AtomicU64::new(0),
            time_limit_hit: AtomicBool::new(false),
        }
    }

    /// Claims the next batch, or `None` when the run is over. `elapsed` is the time since start.
    pub fn claim(&self, elapsed: Duration) -> Option<Batch> {
        if elapsed >= self.time_limit {
            self.time_limit_hit.store(true, Ordering::Relaxed);
            return None;
        }
        let index = self.next_batch.fetch_add(1, Ordering::Relaxed);
        let due = self
            .rate_records_per_s
            .map(|rate| Duration::from_secs_f64(index as f64 * self.batch_records as f64 / rate));
        let batch_records = self.batch_records as u64;
        let records = match self.end {
            End::Records(total) => {
                let first = index.checked_mul(batch_records)?;
                if first >= total {
                    return None;
                }
                (total - first).min(batch_records)
            }
            End::Duration(duration) => {
                if due.unwrap_or(elapsed) >= duration {
                    return None;
                }
                batch_records
            }
        };
        if due.is_some_and(|due| due >= self.time_limit) {
            self.time_limit_hit.store(true, Ordering::Relaxed);
            return None;
        }
        Some(Batch { index, records: records as usize, due })
    }

    /// True when the time limit cut the plan short.
    pub fn time_limit_hit(&self) -> bool {
        self.time_limit_hit.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(end: End, batch_records: usize, rate: Option<f64>) -> Plan {
        Plan::new(end, batch_records, rate, Duration::from_secs(600))
    }

    #[test]
    fn record_count_runs_end_with_a_partial_batch() {
        let plan = plan(End::Records(250), 100, None);
        let sizes: Vec<usize> =
            std::iter::from_fn(|| plan.claim(Duration::ZERO)).map(|batch| batch.records).take(10).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
    }

    #[test]
    fn open_loop_batches_are_due_at_the_rate() {
        let plan = plan(End::Duration(Duration::from_secs(1)), 100, Some(500.0));
        let due: Vec<u128> = std::iter::from_fn(|| plan.claim(Duration::ZERO))
            .map(|batch| batch.due.expect("open loop").as_millis())
            .take(10)
            .collect();
        assert_eq!(due, vec![0, 200, 400, 600, 800]);
    }

    #[test]
    fn open_loop_single_records_at_a_thousand_per_second_are_a_millisecond_apart() {
        let plan = plan(End::Duration(Duration::from_millis(5)), 1, Some(1_000.0));
        let due: Vec<u128> = std::iter::from_fn(|| plan.claim(Duration::ZERO))
            .map(|batch| batch.due.expect("due").as_micros())
            .collect();
        assert_eq!(due, vec![0, 1_000, 2_000, 3_000, 4_000]);
    }

    #[test]
    fn closed_loop_duration_runs_stop_at_the_deadline() {
        let plan = plan(End::Duration(Duration::from_secs(2)), 10, None);
        assert!(plan.claim(Duration::from_millis(1_999)).is_some());
        assert!(plan.claim(Duration::from_secs(2)).is_none());
        assert!(!plan.time_limit_hit());
    }

    #[test]
    fn the_time_limit_stops_any_run() {
        let plan = plan(End::Records(1_000_000), 10, None);
        assert!(plan.claim(Duration::from_secs(600)).is_none());
        assert!(plan.time_limit_hit());
        let open = Plan::new(End::Records(1_000_000), 10, Some(1.0), Duration::from_secs(15));
        assert!(open.claim(Duration::ZERO).is_some(), "due at 0 s");
        assert!(open.claim(Duration::ZERO).is_some(), "due at 10 s");
        assert!(open.claim(Duration::ZERO).is_none(), "due at 20 s, after the limit");
        assert!(open.time_limit_hit());
    }
}
