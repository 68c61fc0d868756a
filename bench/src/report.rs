//! The run report: everything needed to compare two runs — where and when it ran, the system
//! and what it promised, the workload, and the results — as a table and as JSON.
//!
//! The JSON field names are a contract with `bench/compare`: fields may be added, never renamed
//! or removed. MB means 10^6 bytes of record data (keys and framing not counted). A latency
//! summary is `null` when the workload does not measure that latency.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::machine::{Machine, Revision};
use crate::measure::Second;
use crate::workload::Outcome;

pub const TOOL: &str = "riffle-bench";

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub label: Option<String>,
    /// When the run ended, UTC.
    pub timestamp_utc: String,
    pub revision: Option<Revision>,
    pub machine: Machine,
    pub system: SystemReport,
    pub workload: WorkloadReport,
    pub results: Results,
}

#[derive(Debug, Serialize)]
pub struct SystemReport {
    /// `riffle`, `kinesis` or `nats`.
    pub name: &'static str,
    /// `riffle-grpc`, `kinesis-http` or `nats-jetstream`.
    pub driver: &'static str,
    pub endpoints: Vec<String>,
    /// What an acknowledgement promised during the run.
    pub durability: String,
}

#[derive(Debug, Serialize)]
pub struct WorkloadReport {
    /// `produce`, `consume` or `e2e`.
    pub kind: &'static str,
    pub stream: String,
    pub shards: u32,
    pub record_bytes_min: usize,
    pub record_bytes_max: usize,
    /// Mean size of the records the run cycles through.
    pub record_bytes_mean: f64,
    /// Records per request (NATS: publishes in flight per task); consume: records per read.
    pub batch: usize,
    pub keys: usize,
    pub concurrency: usize,
    /// `closed-loop` or `open-loop`.
    pub mode: &'static str,
    pub rate_records_per_s: Option<f64>,
    /// Measured seconds asked for (after the warm-up); `null` for record-count and drain runs.
    pub duration_s: Option<f64>,
    pub warmup_s: f64,
    /// Reader poll interval (e2e; consume's pause between empty reads).
    pub poll_interval_ms: Option<u64>,
    /// Record-count runs: records to send.
    pub records: Option<u64>,
    /// Consume: records to read before stopping.
    pub expect_records: Option<u64>,
    pub time_limit_s: u64,
    pub seed: u64,
}

#[derive(Debug, Serialize)]
pub struct Results {
    /// From the end of the warm-up to the end of the measured phase.
    pub elapsed_s: f64,
    /// Acknowledged (produce), read (consume) or read end to end (e2e).
    pub records: u64,
    pub bytes: u64,
    pub records_per_s: f64,
    /// 10^6 bytes of record data per second.
    pub mb_per_s: f64,
    /// Produce and e2e: write requests (NATS: publish windows); consume: read requests.
    pub requests: u64,
    pub errors: BTreeMap<String, u64>,
    pub latency_us: Latencies,
    /// One entry per measured second; the latency is per record (produce) or end to end (e2e).
    pub timeline: Vec<TimelinePoint>,
    /// e2e: records the producers had acknowledged.
    pub produced_records: Option<u64>,
    /// e2e: read requests.
    pub read_requests: Option<u64>,
    /// True when the time limit cut the run short.
    pub ended_by_time_limit: bool,
}

#[derive(Debug, Serialize)]
pub struct Latencies {
    /// Per request, from its due time (open loop) or sending (closed loop) to its answer.
    pub request: Option<LatencySummary>,
    /// Per acknowledged record, likewise (a batch's records share its request's latency).
    pub record: Option<LatencySummary>,
    /// Per record read: read time minus intended send time.
    pub end_to_end: Option<LatencySummary>,
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
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
            p999: histogram.value_at_quantile(0.999),
            p9999: histogram.value_at_quantile(0.9999),
            max: histogram.max(),
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct TimelinePoint {
    /// The second's end, from the measuring start: 1 for the first second.
    pub t_s: u64,
    pub records: u64,
    pub bytes: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// Which latencies a workload measures.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub record: bool,
    pub end_to_end: bool,
}

impl Results {
    pub fn of(outcome: &Outcome, measured: Measured) -> Results {
        let seconds = outcome.elapsed.as_secs_f64().max(f64::EPSILON);
        let totals = &outcome.totals;
        Results {
            elapsed_s: outcome.elapsed.as_secs_f64(),
            records: totals.records,
            bytes: totals.bytes,
            records_per_s: totals.records as f64 / seconds,
            mb_per_s: totals.bytes as f64 / 1e6 / seconds,
            requests: totals.requests,
            errors: totals.errors.clone(),
            latency_us: Latencies {
                request: Some(LatencySummary::of(&totals.request)),
                record: measured.record.then(|| LatencySummary::of(&totals.record)),
                end_to_end: measured.end_to_end.then(|| LatencySummary::of(&totals.end_to_end)),
            },
            timeline: timeline(&outcome.timeline),
            produced_records: outcome.produced_records,
            read_requests: outcome.read_requests,
            ended_by_time_limit: outcome.ended_by_time_limit,
        }
    }
}

fn timeline(seconds: &[Second]) -> Vec<TimelinePoint> {
    (1u64..)
        .zip(seconds)
        .map(|(t_s, second)| {
            let has_latency = !second.latency.is_empty();
            TimelinePoint {
                t_s,
                records: second.records,
                bytes: second.bytes,
                p50_us: has_latency.then(|| second.latency.value_at_quantile(0.50)),
                p99_us: has_latency.then(|| second.latency.value_at_quantile(0.99)),
            }
        })
        .collect()
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
        let workload = &self.workload;
        let results = &self.results;
        let mut line = |key: &str, value: String| {
            let _ = writeln!(out, "  {key:<26} {value}");
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
        line("system", format!("{} ({}) at {}", self.system.name, self.system.driver, self.system.endpoints.join(" ")));
        line("durability", self.system.durability.clone());
        let sizes = if workload.record_bytes_min == workload.record_bytes_max {
            format!("{} B", workload.record_bytes_min)
        } else {
            format!("{}–{} B", workload.record_bytes_min, workload.record_bytes_max)
        };
        line(
            "workload",
            format!(
                "{} {}, {sizes} records, batch {}, concurrency {}, {} keys, stream {} ({} shards)",
                workload.kind,
                workload.mode,
                workload.batch,
                workload.concurrency,
                workload.keys,
                workload.stream,
                workload.shards
            ),
        );
        let target = match (workload.duration_s, workload.records, workload.rate_records_per_s) {
            (Some(duration), _, Some(rate)) => format!("{duration} s at {rate} records/s"),
            (Some(duration), _, None) => format!("{duration} s"),
            (None, Some(records), _) => format!("{records} records"),
            (None, None, _) => match workload.expect_records {
                Some(expected) => format!("until {expected} records are read"),
                None => "until every shard is drained".to_string(),
            },
        };
        line("target", format!("{target}, warm-up {} s", workload.warmup_s));
        line("elapsed (measured)", format!("{:.2} s", results.elapsed_s));
        line("records", results.records.to_string());
        if let Some(produced) = results.produced_records {
            line("records acknowledged", produced.to_string());
        }
        line("throughput", format!("{:.0} records/s, {:.2} MB/s", results.records_per_s, results.mb_per_s));
        line("requests", results.requests.to_string());
        let latencies = [
            ("latency per request", &results.latency_us.request),
            ("latency per record", &results.latency_us.record),
            ("latency end to end", &results.latency_us.end_to_end),
        ];
        for (title, summary) in latencies {
            if let Some(summary) = summary {
                line(
                    title,
                    format!(
                        "p50 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  (mean {}, n {})",
                        milliseconds(summary.p50),
                        milliseconds(summary.p99),
                        milliseconds(summary.p999),
                        milliseconds(summary.p9999),
                        milliseconds(summary.max),
                        milliseconds(summary.mean.round() as u64),
                        summary.count
                    ),
                );
            }
        }
        if results.errors.is_empty() {
            line("errors", "none".to_string());
        } else {
            for (kind, count) in &results.errors {
                line("error", format!("{count} × {kind}"));
            }
        }
        if results.ended_by_time_limit {
            line("NOTE", format!("stopped by the {} s time limit", workload.time_limit_s));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::measure::{new_histogram, Totals};

    fn report(outcome: &Outcome) -> Report {
        Report {
            tool: TOOL,
            label: Some("test".into()),
            timestamp_utc: "2026-01-01T00:00:00Z".into(),
            revision: None,
            machine: Machine::default(),
            system: SystemReport {
                name: "riffle",
                driver: "riffle-grpc",
                endpoints: vec!["http://127.0.0.1:50051".into()],
                durability: "3 replicas, fsync on a quorum before ack".into(),
            },
            workload: WorkloadReport {
                kind: "produce",
                stream: "bench".into(),
                shards: 4,
                record_bytes_min: 1024,
                record_bytes_max: 1024,
                record_bytes_mean: 1024.0,
                batch: 100,
                keys: 4096,
                concurrency: 8,
                mode: "closed-loop",
                rate_records_per_s: None,
                duration_s: Some(2.0),
                warmup_s: 0.0,
                poll_interval_ms: None,
                records: None,
                expect_records: None,
                time_limit_s: 900,
                seed: 1,
            },
            results: Results::of(outcome, Measured { record: true, end_to_end: false }),
        }
    }

    #[test]
    fn summaries_read_the_histogram() {
        let mut histogram = new_histogram();
        for micros in 1..=1_000u64 {
            histogram.record(micros).expect("within bounds");
        }
        let summary = LatencySummary::of(&histogram);
        assert_eq!(summary.count, 1_000);
        assert_eq!((summary.p50, summary.p90, summary.p99), (500, 900, 990));
        assert_eq!((summary.p999, summary.p9999, summary.max), (999, 1_000, 1_000));
    }

    #[test]
    fn the_json_has_the_contract_fields_and_nulls_for_unmeasured_latencies() {
        let mut totals = Totals::new();
        totals.records = 2_000;
        totals.bytes = 2_048_000;
        totals.requests = 20;
        totals.request.record(1_500).expect("within bounds");
        totals.record.record_n(1_500, 2_000).expect("within bounds");
        totals.errors.insert("request: transport".into(), 1);
        let outcome = Outcome {
            elapsed: Duration::from_secs(2),
            totals,
            timeline: Vec::new(),
            produced_records: None,
            read_requests: None,
            ended_by_time_limit: false,
        };
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&report(&outcome)).expect("encodes")).expect("decodes");
        assert_eq!(json["tool"], "riffle-bench");
        assert_eq!(json["system"]["driver"], "riffle-grpc");
        assert_eq!(json["workload"]["kind"], "produce");
        assert_eq!(json["workload"]["mode"], "closed-loop");
        let results = &json["results"];
        assert_eq!(results["records"], 2_000);
        assert_eq!(results["records_per_s"], 1_000.0);
        assert_eq!(results["mb_per_s"], 1.024);
        assert_eq!(results["errors"]["request: transport"], 1);
        assert_eq!(results["latency_us"]["record"]["count"], 2_000);
        assert!(results["latency_us"]["record"]["p9999"].is_u64());
        assert!(results["latency_us"]["end_to_end"].is_null());
        assert!(results["timeline"].as_array().expect("a list").is_empty());
        for key in ["cpus", "cpu_model", "kernel", "memory_mib", "disk"] {
            assert!(json["machine"].get(key).is_some(), "machine.{key}");
        }
    }

    #[test]
    fn timeline_points_number_seconds_from_one_with_null_latency_when_none() {
        let mut with_latency = Second::new();
        with_latency.records = 10;
        with_latency.latency.record_n(2_000, 10).expect("within bounds");
        let mut without = Second::new();
        without.records = 5;
        let points = timeline(&[with_latency, without]);
        assert_eq!(points[0].t_s, 1);
        assert_eq!(points[0].p50_us.map(|p50| p50 / 100), Some(20));
        assert_eq!(points[1], TimelinePoint { t_s: 2, records: 5, bytes: 0, p50_us: None, p99_us: None });
    }

    #[test]
    fn the_table_names_the_figures() {
        let outcome = Outcome {
            elapsed: Duration::from_secs(1),
            totals: Totals::new(),
            timeline: Vec::new(),
            produced_records: None,
            read_requests: None,
            ended_by_time_limit: true,
        };
        let table = report(&outcome).table();
        for needle in ["riffle-grpc", "3 replicas", "records/s", "latency per record", "time limit"] {
            assert!(table.contains(needle), "{needle} in\n{table}");
        }
        assert!(!table.contains("end to end"), "unmeasured latencies are left out");
    }
}
