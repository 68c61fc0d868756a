//! The benchmark report: everything needed to compare two runs, as a table and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::machine::{Machine, Revision};
use crate::workload::Outcome;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Serialize)]
pub struct Report {
    pub label: Option<String>,
    /// When the run ended, UTC.
    pub timestamp_utc: String,
    pub revision: Option<Revision>,
    pub machine: Machine,
    /// What an acknowledgement promised during the run.
    pub durability: String,
    pub parameters: Parameters,
    pub results: Results,
}

#[derive(Debug, Serialize)]
pub struct Parameters {
    pub endpoints: Vec<String>,
    pub stream: String,
    pub shards: u32,
    pub record_bytes: usize,
    /// `closed-loop` or `open-loop`.
    pub mode: &'static str,
    pub records: Option<u64>,
    pub duration_s: Option<u64>,
    pub concurrency: usize,
    pub batch_records: usize,
    pub rate_records_per_s: Option<f64>,
    pub time_limit_s: u64,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub elapsed_s: f64,
    pub records_acked: u64,
    pub records_failed: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Acknowledged records per second over the whole run.
    pub records_per_s: f64,
    /// MiB of acknowledged record data (not counting keys or framing) per second.
    pub mib_per_s: f64,
    pub requests_per_s: f64,
    /// Per PutRecords request; open-loop runs measure from the time the request was due.
    pub latency_us: LatencySummary,
    /// Per PutRecords request, from sending to the answer.
    pub service_time_us: LatencySummary,
    pub errors: BTreeMap<String, u64>,
    /// True when the time limit cut the run short.
    pub ended_by_time_limit: bool,
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
}

impl LatencySummary {
    pub fn of(histogram: &Histogram<u64>) -> LatencySummary {
        LatencySummary {
            count: histogram.len(),
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p99_9: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

impl Results {
    pub fn of(outcome: &Outcome, record_bytes: usize) -> Results {
        let seconds = outcome.elapsed.as_secs_f64().max(f64::EPSILON);
        Results {
            elapsed_s: outcome.elapsed.as_secs_f64(),
            records_acked: outcome.records_acked,
            records_failed: outcome.records_failed,
            requests_ok: outcome.requests_ok,
            requests_failed: outcome.requests_failed,
            records_per_s: outcome.records_acked as f64 / seconds,
            mib_per_s: outcome.records_acked as f64 * record_bytes as f64 / MIB / seconds,
            requests_per_s: (outcome.requests_ok + outcome.requests_failed) as f64 / seconds,
            latency_us: LatencySummary::of(&outcome.latency),
            service_time_us: LatencySummary::of(&outcome.service_time),
            errors: outcome.errors.clone(),
            ended_by_time_limit: outcome.ended_by_time_limit,
        }
    }
}

fn milliseconds(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

fn or_unknown<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "unknown".to_string(), T::to_string)
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let parameters = &self.parameters;
        let results = &self.results;
        let mut line = |key: &str, value: String| {
            let _ = writeln!(out, "  {key:<24} {value}");
        };
        line("label", self.label.clone().unwrap_or_else(|| "(none)".to_string()));
        line("time (UTC)", self.timestamp_utc.clone());
        line(
            "revision",
            self.revision.as_ref().map_or("unknown".to_string(), |revision| {
                format!("{}{}", revision.commit, if revision.dirty { " (with uncommitted changes)" } else { "" })
            }),
        );
        line(
            "machine",
            format!(
                "{} CPUs, {}, {} MiB RAM, Linux {}",
                or_unknown(&self.machine.cpus),
                or_unknown(&self.machine.cpu_model),
                or_unknown(&self.machine.memory_mib),
                or_unknown(&self.machine.kernel)
            ),
        );
        line("durability", self.durability.clone());
        line(
            "workload",
            format!(
                "{}, {} B records, {} per PutRecords, concurrency {}, {} shards, stream {}",
                parameters.mode,
                parameters.record_bytes,
                parameters.batch_records,
                parameters.concurrency,
                parameters.shards,
                parameters.stream
            ),
        );
        line(
            "target",
            match (parameters.records, parameters.duration_s, parameters.rate_records_per_s) {
                (Some(records), _, Some(rate)) => format!("{records} records at {rate} records/s"),
                (Some(records), _, None) => format!("{records} records"),
                (None, Some(duration), Some(rate)) => {
                    format!("{duration} s at {rate} records/s")
                }
                (None, Some(duration), None) => format!("{duration} s"),
                (None, None, _) => "unbounded".to_string(),
            },
        );
        line("endpoints", parameters.endpoints.join(" "));
        line("elapsed", format!("{:.2} s", results.elapsed_s));
        line("records acked", format!("{} ({} failed)", results.records_acked, results.records_failed));
        line(
            "requests",
            format!(
                "{} ok, {} failed, {:.0} requests/s",
                results.requests_ok, results.requests_failed, results.requests_per_s
            ),
        );
        line("throughput", format!("{:.0} records/s", results.records_per_s));
        line("data rate", format!("{:.2} MiB/s of record data", results.mib_per_s));
        let latency_title =
            if parameters.rate_records_per_s.is_some() { "latency (from due time)" } else { "latency per request" };
        for (title, summary) in [(latency_title, &results.latency_us), ("service time", &results.service_time_us)] {
            line(
                title,
                format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {}, {} requests)",
                    milliseconds(summary.p50),
                    milliseconds(summary.p90),
                    milliseconds(summary.p99),
                    milliseconds(summary.p99_9),
                    milliseconds(summary.max),
                    milliseconds(summary.mean.round() as u64),
                    summary.count
                ),
            );
        }
        if results.errors.is_empty() {
            line("errors", "none".to_string());
        } else {
            for (kind, count) in &results.errors {
                line("error", format!("{count} × {kind}"));
            }
        }
        if results.ended_by_time_limit {
            line("NOTE", format!("stopped by the {} s time limit before the target", parameters.time_limit_s));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::new_histogram;

    #[test]
    fn summaries_read_the_histogram() {
        let mut histogram = new_histogram();
        for micros in 1..=1_000u64 {
            histogram.record(micros).expect("within bounds");
        }
        let summary = LatencySummary::of(&histogram);
        assert_eq!(summary.count, 1_000);
        assert_eq!(summary.p50, 500);
        assert_eq!(summary.p90, 900);
        assert_eq!(summary.p99, 990);
        assert_eq!(summary.p99_9, 999);
        assert_eq!(summary.max, 1_000);
    }
}
