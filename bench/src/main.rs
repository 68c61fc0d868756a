//! `riffle-bench`: the benchmark tool for Riffle and the systems it is compared with.
//!
//! What it is: one command line over three drivers ([`driver`]: Riffle's gRPC API, any Kinesis
//! HTTP endpoint, NATS JetStream) and three workloads ([`workload`]): `produce` (closed loop,
//! or open loop at `--rate` with latency from each batch's due time), `consume` (drain a stream
//! from its oldest record), `e2e` (put → read latency at a fixed rate). `machine` measures the
//! machine's own disk and loopback limits ([`limits`]). Every run ends with a report — records/s,
//! MB/s, latency p50…p99.99 per request, per record and end to end, errors by type, a per-second
//! timeline, the durability the system promised, the machine, the git revision and the
//! parameters — as a table, as JSON (`--json`, a contract with `bench/compare`) and as plots
//! (`--plots`).
//!
//! What it is not: a correctness checker (that is `riffle-jepsen`), nor a retrying client:
//! failures are counted by type and the figures are for first attempts.
//!
//! Invariants: every run ends by itself (`--duration-s`, `--records`, or a drain condition, and
//! always `--time-limit-s`); every wait is bounded; parameters are checked once, up front.

mod driver;
mod limits;
mod machine;
mod measure;
mod plan;
mod plot;
mod records;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use riffle_client::{PUT_RECORDS_BYTES_MAX, PUT_RECORDS_RECORDS_MAX};

use crate::driver::{Driver, System, Target};
use crate::machine::{Machine, Revision};
use crate::plan::End;
use crate::records::{partition_key, RecordPool, TIMESTAMP_BYTES};
use crate::report::{Measured, Report, Results, SystemReport, WorkloadReport};
use crate::workload::{Outcome, Settings};

/// Largest record the Kinesis API accepts.
const RECORD_BYTES_MAX: usize = 1024 * 1024;
/// Most producer tasks one run may start.
const CONCURRENCY_MAX: usize = 1_024;
/// Most partition keys one run may use.
const KEYS_MAX: usize = 1_000_000;
/// Most records one read asks for (Kinesis' GetRecords limit).
const READ_RECORDS_MAX: usize = 10_000;
/// Bytes a partition key and the entry's framing add to a record, at most, in PutRecords.
const ENTRY_OVERHEAD_BYTES: usize = 64;
/// Bytes a read record carries besides its data (key, sequence number, arrival time, framing).
const READ_RECORD_OVERHEAD_BYTES: usize = 192;

/// Seconds a produce run lasts when neither `--duration-s` nor `--records` is given.
const DEFAULT_DURATION_S: f64 = 10.0;
/// Records per second of an e2e run without `--rate`.
const DEFAULT_E2E_RATE: f64 = 1_000.0;

/// The Kinesis access key used when neither `--access-key` nor AWS_ACCESS_KEY_ID is set: a key
/// no server knows, which a local Riffle cluster (`riffle-node dev`, anonymous access on by
/// default) and kinesalite accept. (The dev cluster's own key `riffle-dev` has a secret
/// generated per cluster, in `<data dir>/kinesis-credentials`.)
const DEV_ACCESS_KEY: &str = "riffle-bench";
const DEV_SECRET_KEY: &str = "riffle-bench";

#[derive(Debug, Parser)]
#[command(name = "riffle-bench", version, about = "Benchmarks Riffle, Kinesis endpoints and NATS JetStream")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write records as fast as `--concurrency` tasks go, or at `--rate` (open loop).
    Produce(RunArguments),
    /// Read the whole stream from its oldest record, every shard, until drained.
    Consume(RunArguments),
    /// Put → read latency: write at `--rate`, poll every shard, measure read time minus send time.
    E2e(RunArguments),
    /// Measure this machine's disk and loopback limits (a few seconds each).
    Machine(MachineArguments),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Produce,
    Consume,
    EndToEnd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Produce => "produce",
            Kind::Consume => "consume",
            Kind::EndToEnd => "e2e",
        }
    }
}

#[derive(Debug, Args)]
struct RunArguments {
    /// The kind of system to drive.
    #[arg(long, value_enum, default_value_t = System::Riffle)]
    system: System,
    /// Endpoint to use (repeat for several; tasks spread over them). Default per system:
    /// http://127.0.0.1:50051 (riffle), http://127.0.0.1:4567 (kinesis), nats://127.0.0.1:4222.
    #[arg(long = "endpoint", value_name = "URL")]
    endpoints: Vec<String>,
    /// Kinesis: the region requests are signed for.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Kinesis: access key id (default $AWS_ACCESS_KEY_ID, else the local Riffle cluster's).
    #[arg(long)]
    access_key: Option<String>,
    /// Kinesis: secret access key (default $AWS_SECRET_ACCESS_KEY, else the local cluster's).
    #[arg(long)]
    secret_key: Option<String>,
    /// NATS: replicas of a stream this run creates (file storage).
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// What an acknowledgement promises, for the report, replacing what the tool finds out.
    #[arg(long)]
    durability: Option<String>,
    /// The stream (NATS: its subjects are STREAM.0 … STREAM.<shards-1>).
    #[arg(long, default_value = "bench")]
    stream: String,
    /// Shards (NATS: subjects) of a stream this run creates.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Create the stream if it is missing (produce and e2e always do).
    #[arg(long)]
    create: bool,
    /// Delete the stream at the end of the run.
    #[arg(long)]
    delete_after: bool,
    /// Bytes of data per record (default 1024); or give a range with the next two.
    #[arg(long, conflicts_with_all = ["record_bytes_min", "record_bytes_max"])]
    record_bytes: Option<usize>,
    /// Smallest record of a uniform range of sizes (drawn with `--seed`).
    #[arg(long, requires = "record_bytes_max")]
    record_bytes_min: Option<usize>,
    /// Largest record of a uniform range of sizes.
    #[arg(long, requires = "record_bytes_min")]
    record_bytes_max: Option<usize>,
    /// Records per PutRecords (at most 500); NATS: publishes in flight per task before awaiting
    /// their acks; consume: records per read. Default 100 (e2e 10; consume 10000, riffle: what fits 4 MiB).
    #[arg(long)]
    batch: Option<usize>,
    /// Distinct partition keys the records cycle through.
    #[arg(long, default_value_t = 4_096)]
    keys: usize,
    /// Producer tasks, each with its own connection and one batch in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Open loop: records per second, whatever the system does; latency is measured from each
    /// batch's due time. Without it, closed loop. e2e default 1000.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds to measure, after the warm-up (produce and e2e; default 10).
    #[arg(long, conflicts_with = "records")]
    duration_s: Option<f64>,
    /// Records to send instead of a duration (produce and e2e).
    #[arg(long)]
    records: Option<u64>,
    /// Seconds sent (or read) first and left out of the results.
    #[arg(long, default_value_t = 0.0)]
    warmup_s: f64,
    /// Hard bound on the run: no request starts after it.
    #[arg(long, default_value_t = 900)]
    time_limit_s: u64,
    /// e2e: how often readers poll a caught-up shard; consume: the pause after an empty read.
    #[arg(long, default_value_t = 200)]
    poll_interval_ms: u64,
    /// Consume: stop once this many records were read (otherwise: when every shard is drained).
    #[arg(long)]
    expect_records: Option<u64>,
    /// Seed of the record sizes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Longest wait for the system to answer at all before starting.
    #[arg(long, default_value_t = 30)]
    wait_ready_s: u64,
    /// Longest wait for one request.
    #[arg(long, default_value_t = 10_000)]
    request_timeout_ms: u64,
    /// A directory on the system's data disk, for the report's disk facts (default: here).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Free text stored in the report, e.g. "throughput, 1 KiB".
    #[arg(long)]
    label: Option<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write throughput.png and latency.png (per second) into this directory.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct MachineArguments {
    /// A directory on the disk under test (default: a scratch directory here).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Free text stored in the report.
    #[arg(long)]
    label: Option<String>,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A run's parameters after checking.
struct Run {
    target: Target,
    create: bool,
    record_bytes_min: usize,
    record_bytes_max: usize,
    settings: Settings,
    duration_s: Option<f64>,
}

impl RunArguments {
    fn check(&self, kind: Kind) -> Result<Run> {
        let system = self.system;
        let (record_bytes_min, record_bytes_max) =
            match (self.record_bytes, self.record_bytes_min, self.record_bytes_max) {
                (Some(bytes), _, _) => (bytes, bytes),
                (None, Some(min), Some(max)) => (min, max),
                _ => (1024, 1024),
            };
        if record_bytes_min == 0 || record_bytes_min > record_bytes_max || record_bytes_max > RECORD_BYTES_MAX {
            bail!("record sizes must be 1 ≤ min ≤ max ≤ {RECORD_BYTES_MAX}");
        }
        if kind == Kind::EndToEnd && record_bytes_min < TIMESTAMP_BYTES {
            bail!("e2e records hold an {TIMESTAMP_BYTES}-byte send time: records must be at least {TIMESTAMP_BYTES} bytes");
        }
        let batch = self.batch.unwrap_or(match (kind, system) {
            (Kind::Produce, _) => 100,
            (Kind::EndToEnd, _) => 10,
            // An answer must fit the gRPC client's message limit; sized for the records the
            // flags describe (a reader halves its reads if they do not fit).
            (Kind::Consume, System::Riffle) => (driver::grpc::RESPONSE_BYTES_MAX
                / (record_bytes_max + READ_RECORD_OVERHEAD_BYTES))
                .clamp(1, READ_RECORDS_MAX),
            (Kind::Consume, _) => READ_RECORDS_MAX,
        });
        let batch_max = match (kind, system) {
            (Kind::Consume, _) => READ_RECORDS_MAX,
            (_, System::Nats) => driver::nats::PUBLISH_WINDOW_MAX,
            _ => PUT_RECORDS_RECORDS_MAX,
        };
        if batch == 0 || batch > batch_max {
            bail!("--batch must be 1 to {batch_max} here");
        }
        if kind != Kind::Consume
            && system != System::Nats
            && batch * (record_bytes_max + ENTRY_OVERHEAD_BYTES) > PUT_RECORDS_BYTES_MAX
        {
            bail!("--batch × record size exceeds PutRecords' {PUT_RECORDS_BYTES_MAX} bytes; use smaller batches");
        }
        if self.concurrency == 0 || self.concurrency > CONCURRENCY_MAX {
            bail!("--concurrency must be 1 to {CONCURRENCY_MAX}");
        }
        if self.keys == 0 || self.keys > KEYS_MAX {
            bail!("--keys must be 1 to {KEYS_MAX}");
        }
        if self.shards == 0 {
            bail!("--shards must be at least 1");
        }
        if self.replicas == 0 || self.replicas > 5 {
            bail!("--replicas must be 1 to 5 (JetStream's limit)");
        }
        let rate = match (kind, self.rate) {
            (Kind::EndToEnd, None) => Some(DEFAULT_E2E_RATE),
            (_, rate) => rate,
        };
        if rate.is_some_and(|rate| !(rate.is_finite() && rate > 0.0)) {
            bail!("--rate must be a positive number of records per second");
        }
        if !(self.warmup_s.is_finite() && self.warmup_s >= 0.0) {
            bail!("--warmup-s must be zero or more seconds");
        }
        if self.duration_s.is_some_and(|seconds| !(seconds.is_finite() && seconds > 0.0)) || self.records == Some(0) {
            bail!("--duration-s and --records must be positive");
        }
        if self.time_limit_s == 0 || self.request_timeout_ms == 0 || self.poll_interval_ms == 0 {
            bail!("--time-limit-s, --request-timeout-ms and --poll-interval-ms must be at least 1");
        }
        let warmup = Duration::from_secs_f64(self.warmup_s);
        let (end, duration_s) = match (self.records, self.duration_s, kind) {
            (_, _, Kind::Consume) => (End::Records(0), None),
            (Some(records), _, _) => (End::Records(records), None),
            (None, duration, _) => {
                let seconds = duration.unwrap_or(DEFAULT_DURATION_S);
                (End::Duration(warmup + Duration::from_secs_f64(seconds)), Some(seconds))
            }
        };
        let endpoints = if self.endpoints.is_empty() {
            vec![system.default_endpoint().to_string()]
        } else {
            self.endpoints.clone()
        };
        let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let target = Target {
            system,
            endpoints,
            stream: self.stream.clone(),
            shards: self.shards,
            region: self.region.clone(),
            access_key: self
                .access_key
                .clone()
                .or_else(|| from_env("AWS_ACCESS_KEY_ID"))
                .unwrap_or_else(|| DEV_ACCESS_KEY.to_string()),
            secret_key: self
                .secret_key
                .clone()
                .or_else(|| from_env("AWS_SECRET_ACCESS_KEY"))
                .unwrap_or_else(|| DEV_SECRET_KEY.to_string()),
            nats_replicas: self.replicas,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            wait_ready: Duration::from_secs(self.wait_ready_s),
        };
        Ok(Run {
            target,
            create: self.create || kind != Kind::Consume,
            record_bytes_min,
            record_bytes_max,
            settings: Settings {
                concurrency: self.concurrency,
                batch,
                keys: self.keys,
                rate_records_per_s: rate,
                end,
                warmup,
                time_limit: Duration::from_secs(self.time_limit_s),
                poll_interval: Duration::from_millis(self.poll_interval_ms),
                expect_records: self.expect_records,
                progress: !self.quiet,
            },
            duration_s,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Produce(arguments) => runtime.block_on(run(arguments, Kind::Produce)),
        Command::Consume(arguments) => runtime.block_on(run(arguments, Kind::Consume)),
        Command::E2e(arguments) => runtime.block_on(run(arguments, Kind::EndToEnd)),
        Command::Machine(arguments) => machine(arguments),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one workload; `Ok(false)` when it did not do what it was for (nothing acknowledged or
/// read end to end; consume short of `--expect-records`).
async fn run(arguments: RunArguments, kind: Kind) -> Result<bool> {
    let run = arguments.check(kind)?;
    let mut driver = Driver::connect(&run.target).await?;
    let stream = driver.prepare(run.create).await?;
    let durability = arguments.durability.clone().unwrap_or(stream.durability);
    let pool = Arc::new(RecordPool::new(run.record_bytes_min, run.record_bytes_max, arguments.seed));
    let keys: Arc<[String]> = (0..run.settings.keys).map(partition_key).collect();
    eprintln!(
        "riffle-bench {}: {} ({}) stream {} with {} shards; {durability}",
        kind.name(),
        run.target.system.name(),
        run.target.endpoints.join(" "),
        run.target.stream,
        stream.shards
    );
    let outcome: Outcome = match kind {
        Kind::Produce => workload::produce::run(&driver, &run.settings, pool.clone(), &keys).await?,
        Kind::Consume => workload::consume::run(&driver, &run.settings).await?,
        Kind::EndToEnd => workload::e2e::run(&driver, &run.settings, pool.clone(), &keys).await?,
    };
    if arguments.delete_after {
        if let Err(error) = driver.delete_stream().await {
            eprintln!("warning: {error:#}");
        }
    }
    let here = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let measured = Measured { record: kind != Kind::Consume, end_to_end: kind == Kind::EndToEnd };
    let settings = &run.settings;
    let report = Report {
        tool: report::TOOL,
        label: arguments.label.clone(),
        timestamp_utc: machine::utc_timestamp_now(),
        // The checkout run from, else the one this binary was built from.
        revision: Revision::detect(&here).or_else(|| Revision::detect(Path::new(env!("CARGO_MANIFEST_DIR")))),
        machine: Machine::detect(Some(arguments.data_dir.as_deref().unwrap_or(&here))),
        system: SystemReport {
            name: run.target.system.name(),
            driver: run.target.system.driver_name(),
            endpoints: run.target.endpoints.clone(),
            durability,
        },
        workload: WorkloadReport {
            kind: kind.name(),
            stream: run.target.stream.clone(),
            shards: stream.shards,
            record_bytes_min: run.record_bytes_min,
            record_bytes_max: run.record_bytes_max,
            record_bytes_mean: pool.mean_bytes(),
            batch: settings.batch,
            keys: settings.keys,
            concurrency: settings.concurrency,
            mode: if settings.rate_records_per_s.is_some() { "open-loop" } else { "closed-loop" },
            rate_records_per_s: settings.rate_records_per_s,
            duration_s: run.duration_s,
            warmup_s: settings.warmup.as_secs_f64(),
            poll_interval_ms: matches!(kind, Kind::Consume | Kind::EndToEnd)
                .then(|| u64::try_from(settings.poll_interval.as_millis()).unwrap_or(u64::MAX)),
            records: match settings.end {
                End::Records(records) if kind != Kind::Consume => Some(records),
                _ => None,
            },
            expect_records: settings.expect_records,
            time_limit_s: arguments.time_limit_s,
            seed: arguments.seed,
        },
        results: Results::of(&outcome, measured),
    };
    println!("riffle-bench {} report", kind.name());
    print!("{}", report.table());
    if let Some(path) = &arguments.json {
        write_json(path, &report)?;
        println!("  {:<26} {}", "JSON report", path.display());
    }
    if let Some(directory) = &arguments.plots {
        plot::write(directory, &report.results.timeline)?;
        println!("  {:<26} {}", "plots", directory.display());
    }
    Ok(match kind {
        Kind::Produce | Kind::EndToEnd => report.results.records > 0,
        Kind::Consume => settings.expect_records.is_none_or(|expected| report.results.records >= expected),
    })
}

fn machine(arguments: MachineArguments) -> Result<bool> {
    let scratch;
    let directory = match &arguments.dir {
        Some(directory) => directory.as_path(),
        None => {
            scratch = tempfile::Builder::new()
                .prefix("riffle-bench-disk-")
                .tempdir_in(".")
                .context("making a scratch directory here")?;
            scratch.path()
        }
    };
    let limits = limits::measure(directory, arguments.label.clone())?;
    println!("riffle-bench machine report");
    print!("{}", limits.table());
    if let Some(path) = &arguments.json {
        write_json(path, &limits)?;
        println!("  {:<34} {}", "JSON report", path.display());
    }
    Ok(true)
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(value).context("encoding the report")?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}
