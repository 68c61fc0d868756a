//! The three workloads — [`produce`], [`consume`], [`e2e`] — written once over the drivers.
//!
//! Each sets up everything that needs the network (producers, readers) before the run's
//! [`Clock`] starts, so connecting is not measured, then runs bounded tasks and merges their
//! measurements into one [`Outcome`].
//!
//! Invariants: every task ends by itself — producers at the plan's end or the time limit,
//! readers at their stop condition, the time limit, or after a bounded run of errors.

pub mod consume;
pub mod e2e;
pub mod produce;

use std::time::Duration;

use crate::measure::{Second, Totals};
use crate::plan::End;

/// Consecutive failed reads after which a reader gives its shard up.
pub const READ_ERRORS_MAX: u32 = 50;

/// The parameters every workload reads; validated by the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Producer tasks.
    pub concurrency: usize,
    /// Records per request (NATS: publishes in flight per task); for reads, records per read.
    pub batch: usize,
    /// Distinct partition keys.
    pub keys: usize,
    /// Open loop at this many records per second; closed loop when `None`.
    pub rate_records_per_s: Option<f64>,
    /// When producing stops (warm-up included).
    pub end: End,
    pub warmup: Duration,
    /// Hard bound on the run's main phase.
    pub time_limit: Duration,
    /// Pause between polls of a caught-up reader.
    pub poll_interval: Duration,
    /// Consume: stop once this many records were read.
    pub expect_records: Option<u64>,
    /// A progress line every second to stderr.
    pub progress: bool,
}

/// What a workload measured.
pub struct Outcome {
    /// From the measuring start (after the warm-up) to the end of the measured phase.
    pub elapsed: Duration,
    pub totals: Totals,
    pub timeline: Vec<Second>,
    /// Records the producers had acknowledged, when the run both produced and read (e2e).
    pub produced_records: Option<u64>,
    /// Read requests, when the run both produced and read (e2e).
    pub read_requests: Option<u64>,
    /// True when the time limit cut the run short.
    pub ended_by_time_limit: bool,
}
