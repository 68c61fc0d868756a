//! `riffle-check`: what a history of operations against a Riffle cluster must satisfy.
//!
//! One library for every tester: the simulator (`riffle-sim`) builds a [`History`] from its
//! simulated clients, the process-level fault harness (`riffle-jepsen`) from real ones; both
//! read the cluster out at the end into a [`FinalState`] and call [`check_all`]. Each
//! [`Violation`] names the check that failed and the records involved.
//!
//! Operations follow Jepsen's model: an invocation, then a completion that is `ok` (done, with
//! what it returned), `fail` (definitely not applied) or `info` (unknown: it may or may not have
//! been applied, now or later). Put values are unique per producer call, so a value identifies
//! its write; a producer that retries an unknown put sends the same value again (a new
//! [`Put`] with the same value), which may legitimately append it twice.
//!
//! The checks, by name:
//! - `order`: sequence numbers strictly increase within a shard, in read order;
//! - `duplicate`: no value is stored more times than it was attempted (retries included);
//! - `phantom`: every value read was written; `refused`: no put that failed definitely is read;
//! - `lost`: every acknowledged put is read at the shard and sequence number it was
//!   acknowledged with, unless retention expired it (below its shard's trim point, invoked at
//!   least a retention period before the end); `early-expiry`: a trim that came too soon;
//! - `linearizable`: if one acknowledged put completed before another began, in the same shard,
//!   its sequence number is smaller;
//! - `seal`, `key-lineage`: a closed shard holds nothing past its end; per partition key, a put
//!   acknowledged before another began is in the same shard or an ancestor of the other's;
//! - `timestamp-order`: arrival timestamps never decrease along a shard;
//! - reads during the run ([`ReadChain`]): `dirty-read` (a record the final state does not
//!   hold at that sequence), `read-skip` and `read-regress` (successive records of one iterator
//!   chain are neighbours in the shard), `read-start` (each iterator type starts where Kinesis
//!   says), `stale-read` (a read that reports the shard's tip misses a put acknowledged before
//!   it began);
//! - metadata ([`MetaOperation`]): `stale-metadata`, `metadata-phantom`, `metadata-status`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod lineage;
mod metadata;
mod puts;
mod reads;

pub use lineage::{check_lineage, Lineage};
pub use metadata::{check_metadata, MetaAction, MetaOperation};
pub use puts::check_puts;
pub use reads::{check_reads, check_timestamps, Page, ReadChain, StartPosition};

/// How an operation completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Acknowledged: the record is durable at this shard and sequence number.
    Ok { shard: u32, sequence: String },
    /// Refused: definitely not applied.
    Fail(String),
    /// Unknown: may or may not have been applied.
    Info(String),
}

impl Outcome {
    /// How one record of a PutRecords answer ended: acknowledged at its shard and sequence
    /// number; unknown for `InternalFailure` (the record may have been stored); refused for any
    /// other error code. One rule for every tester.
    pub fn of_put_records_entry(
        shard: Option<u32>,
        sequence: Option<String>,
        error_code: Option<String>,
        error_message: Option<String>,
    ) -> Outcome {
        match (shard, sequence, error_code) {
            (Some(shard), Some(sequence), None) => Outcome::Ok { shard, sequence },
            (_, _, Some(code)) if code == "InternalFailure" => Outcome::Info(error_message.unwrap_or(code)),
            (_, _, code) => {
                Outcome::Fail(format!("{}: {}", code.unwrap_or_default(), error_message.unwrap_or_default()))
            }
        }
    }
}

/// One put attempt (of PutRecord, or one record of a PutRecords call), from invocation to
/// completion. Times are microseconds on one clock for the whole history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Put {
    pub client: u32,
    pub value: String,
    pub key: String,
    pub invoked_us: u64,
    pub completed_us: u64,
    pub outcome: Outcome,
}

/// One record as read: its rendered sequence number, its value and its arrival timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub sequence: String,
    pub value: String,
    pub arrival_ms: i64,
}

/// Everything read from one shard at the end, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRead {
    pub shard: u32,
    pub records: Vec<Record>,
}

/// What retention may have removed by the end of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Expiry {
    pub retention_us: u64,
    /// When the final reads ended (µs on the history's clock).
    pub end_us: u64,
    /// Per shard, the lowest trim point among its placed replicas (rendered sequence; records below it
    /// expired), or `None` for a closed shard that expired whole.
    pub trimmed: BTreeMap<u32, Option<String>>,
}

impl Expiry {
    /// Whether a record at `shard`/`sequence` may be missing because it expired.
    pub fn expired(&self, shard: u32, sequence: &str) -> bool {
        match self.trimmed.get(&shard) {
            Some(None) => true,
            Some(Some(trim)) => sequence_less(sequence, trim),
            None => false,
        }
    }
}

/// Everything the testers recorded while the workload ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    pub puts: Vec<Put>,
    pub meta: Vec<MetaOperation>,
    pub chains: Vec<ReadChain>,
}

/// The cluster read out at the end: every shard from its start, the lineage, what expired.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FinalState {
    pub reads: Vec<ShardRead>,
    pub lineage: Lineage,
    pub expiry: Expiry,
}

/// A check that failed, with what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The check's name (see the crate documentation).
    pub check: &'static str,
    pub message: String,
}

impl Violation {
    pub fn new(check: &'static str, message: impl Into<String>) -> Violation {
        Violation { check, message: message.into() }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "[{}] {}", self.check, self.message)
    }
}

/// Runs every check.
pub fn check_all(history: &History, end: &FinalState) -> Vec<Violation> {
    let mut violations = check_puts(&history.puts, &end.reads, &end.expiry);
    violations.extend(check_lineage(&history.puts, &end.reads, &end.lineage));
    violations.extend(check_timestamps(&end.reads));
    violations.extend(check_reads(&history.chains, &history.puts, end));
    violations.extend(check_metadata(&history.meta));
    violations
}

/// Orders rendered sequence numbers (decimal strings without leading zeros).
pub fn sequence_less(left: &str, right: &str) -> bool {
    (left.len(), left) < (right.len(), right)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn put(value: &str, invoked_us: u64, completed_us: u64, outcome: Outcome) -> Put {
        Put { client: 0, value: value.into(), key: "k".into(), invoked_us, completed_us, outcome }
    }

    pub fn ok(shard: u32, sequence: &str) -> Outcome {
        Outcome::Ok { shard, sequence: sequence.into() }
    }

    pub fn record(sequence: &str, value: &str) -> Record {
        Record { sequence: sequence.into(), value: value.into(), arrival_ms: sequence.parse().unwrap_or(0) }
    }

    pub fn read(shard: u32, records: &[(&str, &str)]) -> ShardRead {
        ShardRead { shard, records: records.iter().map(|(sequence, value)| record(sequence, value)).collect() }
    }
}
