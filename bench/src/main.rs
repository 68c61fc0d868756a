//! `riffle-bench`: a PutRecords load generator for Riffle with hdrhistogram latencies.
//!
//! What it is: a closed-loop (as fast as `--concurrency` workers go) or open-loop (`--rate`,
//! latency measured from each request's due time, so stalls are not hidden) writer of fixed-size
//! records over the native gRPC API. It creates the stream if missing, waits for every shard to
//! have a leader, prints a progress line every second, and ends with a report — records/s, MiB/s,
//! latency percentiles, errors, the durability mode, the machine, the git revision and the
//! parameters — as a table and, with `--json`, as a JSON file.
//!
//! What it is not: a read benchmark, nor a driver for peer systems; failed records are counted,
//! not retried, so the figures are for first attempts.
//!
//! Invariants: every run ends by itself (`--records` or `--duration-s`, and always
//! `--time-limit-s`); every wait is a bounded number of polls.

mod machine;
mod report;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use riffle_client::proto::StreamStatus;
use riffle_client::{stream_status_name, Client, ClientConfig, PUT_RECORDS_BYTES_MAX, PUT_RECORDS_RECORDS_MAX};

use crate::machine::{Machine, Revision};
use crate::report::{Parameters, Report, Results};
use crate::workload::{End, Workload};

/// Records a run sends when neither `--records` nor `--duration-s` is given.
const DEFAULT_RECORDS: u64 = 100_000;

/// Pause between polls while waiting for the cluster or the stream.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Polls while waiting for a new stream to become ACTIVE and for its shard leaders.
const STREAM_POLLS_MAX: u32 = 240;

/// Largest record the service accepts (the Kinesis limit).
const RECORD_BYTES_MAX: usize = 1024 * 1024;

/// Most workers one run may start.
const CONCURRENCY_MAX: usize = 1_024;

#[derive(Debug, Parser)]
#[command(name = "riffle-bench", version, about = "PutRecords load generator for Riffle")]
struct Arguments {
    /// Node to send to (repeat for several; workers spread over them).
    #[arg(long = "endpoint", value_name = "URL", default_value = "http://127.0.0.1:50051")]
    endpoints: Vec<String>,
    /// Stream to write to; created with `--shards` shards if missing.
    #[arg(long, default_value = "bench")]
    stream: String,
    /// Shards of the stream when this run creates it.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Records to send, then stop (default 100000 unless `--duration-s` is given).
    #[arg(long, conflicts_with = "duration_s")]
    records: Option<u64>,
    /// Seconds to send for, then stop.
    #[arg(long)]
    duration_s: Option<u64>,
    /// Concurrent workers, each with its own connection and at most one request in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Records per PutRecords request (at most 500).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Open loop: records per second to schedule, whatever the cluster does. Latency is
    /// measured from each request's due time.
    #[arg(long)]
    rate: Option<f64>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Free text stored in the report, e.g. "throughput, 1 KiB".
    #[arg(long)]
    label: Option<String>,
    /// Wait up to this many seconds for the cluster to answer before starting.
    #[arg(long, default_value_t = 0)]
    wait_ready_s: u64,
    /// Hard bound on the sending phase: no request starts after it.
    #[arg(long, default_value_t = 900)]
    time_limit_s: u64,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

impl Arguments {
    fn validate(&self) -> Result<()> {
        if self.batch == 0 || self.batch > PUT_RECORDS_RECORDS_MAX {
            bail!("--batch must be 1 to {PUT_RECORDS_RECORDS_MAX}");
        }
        if self.record_bytes == 0 || self.record_bytes > RECORD_BYTES_MAX {
            bail!("--record-bytes must be 1 to {RECORD_BYTES_MAX}");
        }
        // Partition keys add at most a few dozen bytes per record.
        if self.batch * (self.record_bytes + 64) > PUT_RECORDS_BYTES_MAX {
            bail!("--batch × --record-bytes exceeds PutRecords' {PUT_RECORDS_BYTES_MAX} bytes; use smaller batches");
        }
        if self.concurrency == 0 || self.concurrency > CONCURRENCY_MAX {
            bail!("--concurrency must be 1 to {CONCURRENCY_MAX}");
        }
        if self.shards == 0 {
            bail!("--shards must be at least 1");
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate must be a positive number of records per second");
            }
        }
        if self.records == Some(0) || self.duration_s == Some(0) {
            bail!("--records and --duration-s must be at least 1");
        }
        if self.time_limit_s == 0 {
            bail!("--time-limit-s must be at least 1");
        }
        Ok(())
    }

    fn end(&self) -> End {
        match (self.records, self.duration_s) {
            (Some(records), _) => End::Records(records),
            (None, Some(seconds)) => End::Duration(Duration::from_secs(seconds)),
            (None, None) => End::Records(DEFAULT_RECORDS),
        }
    }
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(arguments)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark; `Ok(false)` when not a single record was acknowledged.
async fn run(arguments: Arguments) -> Result<bool> {
    arguments.validate()?;
    let admin = Client::connect(arguments.endpoints.clone()).await.context("connecting")?;
    if arguments.wait_ready_s > 0 {
        wait_ready(&admin, arguments.wait_ready_s).await?;
    }
    let shards = ensure_stream(&admin, &arguments.stream, arguments.shards).await?;
    // Every node must know the stream and its leaders, or the first requests through it would
    // measure its catching up rather than the steady state.
    let mut replicas = 0;
    for endpoint in &arguments.endpoints {
        let node = Client::connect(vec![endpoint.clone()]).await.with_context(|| format!("connecting {endpoint}"))?;
        replicas = wait_for_leaders(&node, &arguments.stream).await?;
    }

    let mut clients = Vec::with_capacity(arguments.concurrency);
    for worker in 0..arguments.concurrency {
        // Each worker starts at a different node, so the load and the forwarding spread out.
        let mut endpoints = arguments.endpoints.clone();
        let first = worker % endpoints.len();
        endpoints.rotate_left(first);
        clients.push(
            Client::connect_with_config(endpoints, ClientConfig::default()).await.context("connecting a worker")?,
        );
    }
    let workload = Workload {
        stream: arguments.stream.clone(),
        record_bytes: arguments.record_bytes,
        end: arguments.end(),
        concurrency: arguments.concurrency,
        batch_records: arguments.batch,
        rate_records_per_s: arguments.rate,
        time_limit: Duration::from_secs(arguments.time_limit_s),
        progress: !arguments.quiet,
    };
    eprintln!(
        "riffle-bench: {} to stream {} ({shards} shards, {replicas} replicas each)",
        describe_workload(&workload),
        workload.stream
    );
    let outcome = workload::run(&workload, clients).await;

    let (records, duration_s) = match workload.end {
        End::Records(records) => (Some(records), None),
        End::Duration(duration) => (None, Some(duration.as_secs())),
    };
    let report = Report {
        label: arguments.label.clone(),
        timestamp_utc: machine::utc_timestamp_now(),
        revision: Revision::detect(&std::env::current_dir().unwrap_or_else(|_| ".".into())),
        machine: Machine::detect(),
        durability: format!("{replicas} replicas, fsync on a quorum before ack (raft-engine group commit)"),
        parameters: Parameters {
            endpoints: arguments.endpoints.clone(),
            stream: arguments.stream.clone(),
            shards,
            record_bytes: arguments.record_bytes,
            mode: if arguments.rate.is_some() { "open-loop" } else { "closed-loop" },
            records,
            duration_s,
            concurrency: arguments.concurrency,
            batch_records: arguments.batch,
            rate_records_per_s: arguments.rate,
            time_limit_s: arguments.time_limit_s,
        },
        results: Results::of(&outcome, arguments.record_bytes),
    };
    println!("riffle-bench report");
    print!("{}", report.table());
    if let Some(path) = &arguments.json {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("  {:<24} {}", "JSON report", path.display());
    }
    Ok(outcome.records_acked > 0)
}

fn describe_workload(workload: &Workload) -> String {
    let end = match workload.end {
        End::Records(records) => format!("{records} records"),
        End::Duration(duration) => format!("{} s", duration.as_secs()),
    };
    let pace = workload
        .rate_records_per_s
        .map_or_else(|| "as fast as possible".to_string(), |rate| format!("at {rate} records/s (open loop)"));
    format!(
        "{end} of {} B {pace}, {} per request, concurrency {}",
        workload.record_bytes, workload.batch_records, workload.concurrency
    )
}

/// Polls ListStreams until a node answers, for at most `seconds`.
async fn wait_ready(client: &Client, seconds: u64) -> Result<()> {
    let polls = (Duration::from_secs(seconds).as_millis() / POLL_INTERVAL.as_millis()).max(1);
    let mut last_error = None;
    for _ in 0..polls {
        match client.list_streams().await {
            Ok(_) => return Ok(()),
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    bail!(
        "the cluster did not answer within {seconds} s (last error: {})",
        last_error.map_or_else(|| "none".to_string(), |error| error.to_string())
    )
}

/// Creates the stream if it is missing and waits until it is ACTIVE; returns its shard count.
async fn ensure_stream(client: &Client, stream: &str, shards: u32) -> Result<u32> {
    match client.describe_stream_summary(stream).await {
        Ok(summary) => {
            if summary.open_shard_count != shards {
                eprintln!(
                    "note: stream {stream} exists with {} open shards; using it as it is",
                    summary.open_shard_count
                );
            }
        }
        Err(error) if error.error_type() == Some("ResourceNotFoundException") => {
            match client.create_stream(stream, shards, None).await {
                Ok(_) => {}
                // Another bench run created it meanwhile.
                Err(error) if error.error_type() == Some("ResourceInUseException") => {}
                Err(error) => return Err(error).context(format!("creating stream {stream}")),
            }
        }
        Err(error) => return Err(error).context(format!("describing stream {stream}")),
    }
    // A node may answer from metadata that has not yet applied the create, so "not found"
    // right after creating means "not yet", for a bounded number of polls.
    let mut last = String::new();
    for _ in 0..STREAM_POLLS_MAX {
        match client.describe_stream_summary(stream).await {
            Ok(summary) if summary.stream_status == StreamStatus::Active as i32 => return Ok(summary.open_shard_count),
            Ok(summary) => {
                last = stream_status_name(StreamStatus::try_from(summary.stream_status).unwrap_or_default()).to_string()
            }
            Err(error) if error.error_type() == Some("ResourceNotFoundException") => last = error.to_string(),
            Err(error) => return Err(error).context(format!("waiting for stream {stream}")),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    bail!("stream {stream} is not ACTIVE after {STREAM_POLLS_MAX} polls (last: {last})")
}

/// Polls DescribeStream until every shard has a leader, so the first requests do not measure
/// an election; returns the replica count of the first shard.
async fn wait_for_leaders(client: &Client, stream: &str) -> Result<usize> {
    let mut shards_without_leader = 0;
    for _ in 0..STREAM_POLLS_MAX {
        let description =
            client.describe_stream(stream).await.with_context(|| format!("describing stream {stream}"))?;
        shards_without_leader = description.shards.iter().filter(|shard| shard.leader_node.is_none()).count();
        if shards_without_leader == 0 {
            return Ok(description.shards.first().map_or(0, |shard| shard.replica_nodes.len()));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    bail!("{shards_without_leader} shards of {stream} still have no leader after {STREAM_POLLS_MAX} polls")
}
