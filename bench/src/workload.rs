//! The PutRecords workload: workers sending batches, closed-loop or open-loop at a fixed rate.
//!
//! Closed loop: each of `concurrency` workers sends its next batch as soon as the previous one
//! is answered, so the figure is the most the cluster sustains at that concurrency. Open loop:
//! batch `k` is due at `k × batch / rate` seconds after the start whether or not earlier batches
//! were answered, and its latency is measured from that due time. A stalled cluster therefore
//! shows up as latency instead of silently slowing the sender (coordinated omission).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use riffle_client::proto::{PutRecordsRequest, PutRecordsRequestEntry};
use riffle_client::{Client, ClientError};

/// Highest latency the histograms hold, in microseconds; slower requests count as this.
pub const LATENCY_MAX_US: u64 = 120_000_000;

/// Significant decimal digits the histograms keep.
const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;

/// Distinct partition keys the workers cycle through.
const PARTITION_KEYS: usize = 4_096;

/// Interval of the progress line.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum End {
    /// After this many records have been sent (acknowledged or failed).
    Records(u64),
    /// After this long: closed-loop runs stop sending, open-loop runs schedule nothing later.
    Duration(Duration),
}

/// What to send.
#[derive(Clone, Debug)]
pub struct Workload {
    pub stream: String,
    pub record_bytes: usize,
    pub end: End,
    pub concurrency: usize,
    pub batch_records: usize,
    /// Records per second for an open-loop run; `None` for closed loop.
    pub rate_records_per_s: Option<f64>,
    /// Hard bound on the run: no batch starts after it, whatever `end` says.
    pub time_limit: Duration,
    /// Prints a progress line to stderr every second when set.
    pub progress: bool,
}

/// What happened.
pub struct Outcome {
    pub elapsed: Duration,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub records_acked: u64,
    pub records_failed: u64,
    /// Per request, in microseconds: from the due time (open loop) or from sending (closed loop)
    /// until the answer.
    pub latency: Histogram<u64>,
    /// Per request, in microseconds: from sending until the answer.
    pub service_time: Histogram<u64>,
    /// Failed records by error code and failed requests by error kind.
    pub errors: BTreeMap<String, u64>,
    /// True when `time_limit` cut the run short.
    pub ended_by_time_limit: bool,
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, HISTOGRAM_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// The batch plan shared by the workers: which batch is next, how big it is, when it is due.
struct Plan {
    end: End,
    batch_records: usize,
    rate_records_per_s: Option<f64>,
    time_limit: Duration,
    next_batch: AtomicU64,
    time_limit_hit: AtomicBool,
}

/// One batch a worker has claimed.
#[derive(Debug, PartialEq)]
struct Batch {
    records: usize,
    /// Offset from the start at which it is due (open loop only).
    due: Option<Duration>,
}

impl Plan {
    /// Claims the next batch, or `None` when the run is over. `elapsed` is the time since start.
    fn claim(&self, elapsed: Duration) -> Option<Batch> {
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
        Some(Batch { records: records as usize, due })
    }
}

/// Running totals the progress line reads.
#[derive(Default)]
struct Counters {
    records_acked: AtomicU64,
    records_failed: AtomicU64,
    requests_failed: AtomicU64,
}

struct WorkerResult {
    requests_ok: u64,
    requests_failed: u64,
    records_acked: u64,
    records_failed: u64,
    latency: Histogram<u64>,
    service_time: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

/// Runs `workload` with one client per worker (`clients.len()` must equal the concurrency).
pub async fn run(workload: &Workload, clients: Vec<Client>) -> Outcome {
    assert_eq!(clients.len(), workload.concurrency, "one client per worker");
    assert!(workload.batch_records >= 1, "batches hold at least one record");
    let plan = Arc::new(Plan {
        end: workload.end,
        batch_records: workload.batch_records,
        rate_records_per_s: workload.rate_records_per_s,
        time_limit: workload.time_limit,
        next_batch: AtomicU64::new(0),
        time_limit_hit: AtomicBool::new(false),
    });
    let payload = Bytes::from(payload(workload.record_bytes));
    let keys: Arc<[String]> = (0..PARTITION_KEYS).map(partition_key).collect();
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let progress = workload.progress.then(|| tokio::spawn(report_progress(start, counters.clone())));
    let mut workers = Vec::new();
    for (worker, client) in clients.into_iter().enumerate() {
        workers.push(tokio::spawn(run_worker(
            worker,
            client,
            workload.stream.clone(),
            plan.clone(),
            payload.clone(),
            keys.clone(),
            counters.clone(),
            start,
        )));
    }
    let mut outcome = Outcome {
        elapsed: Duration::ZERO,
        requests_ok: 0,
        requests_failed: 0,
        records_acked: 0,
        records_failed: 0,
        latency: new_histogram(),
        service_time: new_histogram(),
        errors: BTreeMap::new(),
        ended_by_time_limit: false,
    };
    for worker in workers {
        let result = worker.await.expect("a bench worker panicked");
        outcome.requests_ok += result.requests_ok;
        outcome.requests_failed += result.requests_failed;
        outcome.records_acked += result.records_acked;
        outcome.records_failed += result.records_failed;
        outcome.latency.add(&result.latency).expect("histograms share bounds");
        outcome.service_time.add(&result.service_time).expect("histograms share bounds");
        for (kind, count) in result.errors {
            *outcome.errors.entry(kind).or_default() += count;
        }
    }
    outcome.elapsed = start.elapsed();
    outcome.ended_by_time_limit = plan.time_limit_hit.load(Ordering::Relaxed);
    if let Some(progress) = progress {
        progress.abort();
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn run_worker(
    worker: usize,
    client: Client,
    stream: String,
    plan: Arc<Plan>,
    payload: Bytes,
    keys: Arc<[String]>,
    counters: Arc<Counters>,
    start: Instant,
) -> WorkerResult {
    let mut result = WorkerResult {
        requests_ok: 0,
        requests_failed: 0,
        records_acked: 0,
        records_failed: 0,
        latency: new_histogram(),
        service_time: new_histogram(),
        errors: BTreeMap::new(),
    };
    // Workers start at different keys so concurrent batches spread over the shards.
    let mut key_index = worker * 997;
    while let Some(batch) = plan.claim(start.elapsed()) {
        let records = (0..batch.records)
            .map(|_| {
                key_index = (key_index + 1) % keys.len();
                PutRecordsRequestEntry {
                    data: payload.clone(),
                    partition_key: keys[key_index].clone(),
                    explicit_hash_key: None,
                }
            })
            .collect();
        let request = PutRecordsRequest { stream_name: stream.clone(), records };
        if let Some(due) = batch.due {
            tokio::time::sleep_until((start + due).into()).await;
        }
        let sent = Instant::now();
        let answer = client.put_records(request).await;
        let answered = Instant::now();
        let service_us = micros(answered - sent);
        let latency_us = micros(answered - batch.due.map_or(sent, |due| start + due));
        result.service_time.saturating_record(service_us);
        result.latency.saturating_record(latency_us);
        match answer {
            Ok(response) => {
                result.requests_ok += 1;
                let failed = response.records.iter().filter(|entry| entry.error_code.is_some()).count() as u64;
                for entry in &response.records {
                    if let Some(code) = &entry.error_code {
                        *result.errors.entry(code.clone()).or_default() += 1;
                    }
                }
                let acked = batch.records as u64 - failed;
                result.records_acked += acked;
                result.records_failed += failed;
                counters.records_acked.fetch_add(acked, Ordering::Relaxed);
                counters.records_failed.fetch_add(failed, Ordering::Relaxed);
            }
            Err(error) => {
                result.requests_failed += 1;
                result.records_failed += batch.records as u64;
                *result.errors.entry(error_kind(&error)).or_default() += 1;
                counters.requests_failed.fetch_add(1, Ordering::Relaxed);
                counters.records_failed.fetch_add(batch.records as u64, Ordering::Relaxed);
            }
        }
    }
    result
}

/// A short, low-cardinality name for a failed call, for the error table.
fn error_kind(error: &ClientError) -> String {
    match error {
        ClientError::Service { error_type, .. } => format!("request: {error_type}"),
        ClientError::Status { code, .. } => format!("request: gRPC {code:?}"),
        ClientError::Transport { .. } => "request: transport".to_string(),
        other => format!("request: {other}"),
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Record data: printable, not all one byte, so nothing along the way compresses it to nothing.
fn payload(record_bytes: usize) -> Vec<u8> {
    (0..record_bytes).map(|index| b'a' + ((index * 7 + index / 26) % 26) as u8).collect()
}

/// Partition keys whose MD5 hashes spread evenly over the shards.
fn partition_key(index: usize) -> String {
    format!("bench-key-{index:05}")
}

async fn report_progress(start: Instant, counters: Arc<Counters>) {
    let mut interval = tokio::time::interval(PROGRESS_INTERVAL);
    interval.tick().await;
    let mut previous_acked = 0;
    let mut previous_at = start;
    loop {
        interval.tick().await;
        let now = Instant::now();
        let acked = counters.records_acked.load(Ordering::Relaxed);
        let failed = counters.records_failed.load(Ordering::Relaxed);
        let failed_requests = counters.requests_failed.load(Ordering::Relaxed);
        let interval_s = (now - previous_at).as_secs_f64().max(f64::EPSILON);
        let total_s = (now - start).as_secs_f64().max(f64::EPSILON);
        eprintln!(
            "[{:>5.1}s] {:>9.0} records/s now, {:>9.0} records/s overall, {acked} acked, {failed} failed records, {failed_requests} failed requests",
            total_s,
            (acked - previous_acked) as f64 / interval_s,
            acked as f64 / total_s,
        );
        previous_acked = acked;
        previous_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(end: End, batch_records: usize, rate: Option<f64>) -> Plan {
        Plan {
            end,
            batch_records,
            rate_records_per_s: rate,
            time_limit: Duration::from_secs(600),
            next_batch: AtomicU64::new(0),
            time_limit_hit: AtomicBool::new(false),
        }
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
        let due: Vec<Duration> = std::iter::from_fn(|| plan.claim(Duration::ZERO))
            .map(|batch| batch.due.expect("open loop"))
            .take(10)
            .collect();
        let millis: Vec<u128> = due.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, vec![0, 200, 400, 600, 800]);
    }

    #[test]
    fn closed_loop_duration_runs_stop_at_the_deadline() {
        let plan = plan(End::Duration(Duration::from_secs(2)), 10, None);
        assert!(plan.claim(Duration::from_millis(1_999)).is_some());
        assert!(plan.claim(Duration::from_secs(2)).is_none());
    }

    #[test]
    fn the_time_limit_stops_any_run() {
        let plan = plan(End::Records(1_000_000), 10, None);
        assert!(plan.claim(Duration::from_secs(600)).is_none());
        assert!(plan.time_limit_hit.load(Ordering::Relaxed));
    }

    #[test]
    fn payload_has_the_requested_size() {
        assert_eq!(payload(1024).len(), 1024);
        assert!(payload(0).is_empty());
    }
}
