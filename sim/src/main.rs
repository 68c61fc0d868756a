//! `riffle-sim`: run simulation seeds.
//!
//! `riffle-sim --seeds N` runs seeds 0..N (or from `--start`), `--seed S` replays one seed,
//! `--check-determinism` runs each seed twice and compares the trace hashes.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use riffle_sim::{run_seed, SimFailure, SimOptions};

#[derive(Parser)]
#[command(name = "riffle-sim", about = "Deterministic simulation of a three-zone Riffle cluster under faults")]
struct Arguments {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Replay this one seed (prints its report).
    #[arg(long)]
    seed: Option<u64>,
    /// Run every seed twice and require identical trace hashes.
    #[arg(long)]
    check_determinism: bool,
    /// Worker threads, each running its own seeds.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Puts per client per seed.
    #[arg(long, default_value_t = 80)]
    operations: u32,
    /// Readers following iterators while the puts run.
    #[arg(long, default_value_t = 2)]
    readers: u32,
    /// Clients writing and reading the stream's tags.
    #[arg(long, default_value_t = 2)]
    meta_clients: u32,
    /// Split, merge or UpdateShardCount attempts per seed.
    #[arg(long, default_value_t = 3)]
    reshards: u32,
    /// With --seed: shrink the failing seed's scenario (fault families, then the workload) to
    /// the smallest that still fails the same way, and print its replay command.
    #[arg(long)]
    minimize: bool,
    /// Run without faults.
    #[arg(long)]
    no_faults: bool,
    /// Never let a crash lose the node's whole disk (by default one crash per seed may, with
    /// probability 0.15).
    #[arg(long)]
    no_disk_loss: bool,
    /// No membership changes (by default, in a third of the seeds a fourth node joins during
    /// the workload, then node 1 is decommissioned).
    #[arg(long)]
    no_membership: bool,
    /// No single-message faults (by default each seed draws a mix of lost requests, lost
    /// responses and held-back messages for its chaos phase).
    #[arg(long)]
    no_message_faults: bool,
    /// Fault families to draw from, comma-separated (default all): partition, zone,
    /// one-way, flapping, crash, corrupt, pause, clock, io-error, drop, delay, duplicate,
    /// replay; `none`.
    #[arg(long, value_delimiter = ',')]
    faults: Option<Vec<String>>,
    /// Workload parts besides the producers, comma-separated (default all): readers (iterators
    /// of every type, following the lineage), meta (tag writers and readers), reshards,
    /// membership (a node joins, another is decommissioned), admin (retention changes, a second
    /// stream created and deleted); `puts` alone for none.
    #[arg(long, value_delimiter = ',')]
    workload: Option<Vec<String>>,
    /// Where a sweep writes the trace and history of its failing seeds.
    #[arg(long, default_value = "riffle-sim-failures")]
    out: std::path::PathBuf,
    /// Never let a crash be a power loss (by default one crash in ten stops every node at once,
    /// each losing what it had not synced).
    #[arg(long)]
    no_power_loss: bool,
    /// Plant a deliberate defect in the node code (ack-before-fsync, skip-record-on-read,
    /// stale-read, write-after-seal, timestamp-regress, end-shard-early) to see the checks
    /// catch it.
    #[arg(long, value_parser = parse_bug)]
    plant: Option<riffle_node::planted::Bug>,
}

/// The workload parts `--workload` selects among (the producers always run).
const WORKLOAD_PARTS: [&str; 5] = ["readers", "meta", "reshards", "membership", "admin"];

fn parse_bug(name: &str) -> Result<riffle_node::planted::Bug, String> {
    riffle_node::planted::Bug::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = riffle_node::planted::Bug::ALL.iter().map(|bug| bug.name()).collect();
        format!("no planted bug named {name}; known: {}", known.join(", "))
    })
}

fn main() -> Result<()> {
    let arguments = Arguments::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        // Logs of the simulated nodes, for replaying one seed.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let mut off = riffle_sim::default_off();
    if let Some(on) = &arguments.faults {
        for family in on {
            if family != "none" && !riffle_sim::FAULT_FAMILIES.contains(&family.as_str()) {
                bail!("no fault family {family}; known: {}", riffle_sim::FAULT_FAMILIES.join(", "));
            }
        }
        off = riffle_sim::FAULT_FAMILIES
            .iter()
            .filter(|family| !on.iter().any(|name| name == *family))
            .map(|family| family.to_string())
            .collect();
    }
    let parts: Vec<String> =
        arguments.workload.clone().unwrap_or_else(|| WORKLOAD_PARTS.iter().map(|part| part.to_string()).collect());
    for part in &parts {
        if part != "puts" && !WORKLOAD_PARTS.contains(&part.as_str()) {
            bail!("no workload part {part}; known: puts, {}", WORKLOAD_PARTS.join(", "));
        }
    }
    let has = |part: &str| parts.iter().any(|listed| listed == part);
    let options = SimOptions {
        off,
        operations_per_client: arguments.operations,
        readers: if has("readers") { arguments.readers } else { 0 },
        meta_clients: if has("meta") { arguments.meta_clients } else { 0 },
        reshards: if has("reshards") { arguments.reshards } else { 0 },
        admin: has("admin"),
        faults: !arguments.no_faults,
        disk_loss: !arguments.no_disk_loss,
        membership: !arguments.no_membership && has("membership"),
        message_faults: !arguments.no_message_faults,
        plant: arguments.plant,
        power_loss: !arguments.no_power_loss,
        ..SimOptions::default()
    };
    if let Some(seed) = arguments.seed {
        return match run_seed(seed, &options) {
            Ok(report) => {
                println!("{report:#?}");
                Ok(())
            }
            Err(failure) => {
                eprintln!("{failure}");
                let options = if arguments.minimize { minimize(seed, options, &failure) } else { options };
                std::fs::create_dir_all(&arguments.out)?;
                write_evidence(seed, &options, &arguments.out)?;
                bail!("seed {seed} failed")
            }
        };
    }
    let seeds: Vec<u64> = (arguments.start..arguments.start + arguments.seeds).collect();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<SimFailure>>> = Arc::default();
    let totals: Arc<Mutex<Totals>> = Arc::default();
    let started = Instant::now();
    let total = seeds.len() as u64;
    let seeds = Arc::new(seeds);
    let workers: Vec<_> = (0..arguments.jobs.max(1))
        .map(|_| {
            let (seeds, next, done, failures, totals, options) =
                (seeds.clone(), next.clone(), done.clone(), failures.clone(), totals.clone(), options.clone());
            let check_determinism = arguments.check_determinism;
            std::thread::spawn(move || loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(&seed) = seeds.get(index) else { return };
                let outcome = run_seed(seed, &options).and_then(|first| {
                    if !check_determinism {
                        return Ok(first);
                    }
                    let second = run_seed(seed, &options)?;
                    if first.trace_hash != second.trace_hash {
                        return Err(SimFailure {
                            seed,
                            message: format!(
                                "not deterministic: trace {} then {}",
                                first.trace_hash, second.trace_hash
                            ),
                            recent_events: Vec::new(),
                            flags: options.flags(),
                        });
                    }
                    Ok(first)
                });
                match outcome {
                    Ok(report) => totals.lock().expect("totals lock").add(&report),
                    Err(failure) => {
                        eprintln!("\n{failure}");
                        failures.lock().expect("failure list lock").push(failure);
                    }
                }
                let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
                let elapsed = started.elapsed().as_secs_f64();
                let simulated_s = totals.lock().expect("totals lock").virtual_ms as f64 / 1e3;
                let line = format!(
                    "{finished}/{total} seeds, {} failed, {:.1} s, {:.1} seeds/s, simulated time {:.0}× real",
                    failures.lock().expect("failure list lock").len(),
                    elapsed,
                    finished as f64 / elapsed.max(1e-9),
                    simulated_s / elapsed.max(1e-9),
                );
                if std::io::stderr().is_terminal() {
                    eprint!("\r{line}");
                } else if finished % (total / 10).max(1) == 0 || finished == total {
                    eprintln!("{line}");
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    eprintln!();
    let failures = failures.lock().expect("failure list lock");
    println!("{} passed, {} failed", total - failures.len() as u64, failures.len());
    println!("{}", totals.lock().expect("totals lock"));
    if !failures.is_empty() {
        for failure in failures.iter() {
            println!("failed seed {}: replay with `{}`", failure.seed, failure.replay_command());
        }
        // The evidence of the first few: each seed run again, keeping its whole trace and its
        // history (determinism makes the rerun the same run).
        std::fs::create_dir_all(&arguments.out)?;
        for failure in failures.iter().take(FAILURES_RECORDED_MAX) {
            write_evidence(failure.seed, &options, &arguments.out)?;
        }
        bail!("{} seed(s) failed", failures.len());
    }
    Ok(())
}

/// What a failure is, for comparing two: the first violated check's name, or the message up
/// to its first colon.
fn failure_kind(failure: &SimFailure) -> String {
    let message = &failure.message;
    if let Some(start) = message.find("\n  [") {
        let tag = &message[start + 3..];
        return tag[..tag.find(']').map_or(tag.len(), |end| end + 1)].to_string();
    }
    message.split(':').next().unwrap_or_default().to_string()
}

/// One change `--minimize` tries on a scenario.
type Shrink = Box<dyn Fn(&mut SimOptions)>;

/// Shrinks the scenario of failing `seed`: turns off each fault family, then each optional
/// part of the workload, then halves the puts, keeping every change after which the seed still
/// fails the same way. (Each change draws a different run from the same seed; what is kept is
/// a smaller scenario that fails alike, not a trimmed copy of the original run.)
fn minimize(seed: u64, mut options: SimOptions, failure: &SimFailure) -> SimOptions {
    let kind = failure_kind(failure);
    eprintln!("minimizing seed {seed}, failing with {kind}");
    let still_fails = |candidate: &SimOptions| match run_seed(seed, candidate) {
        Err(other) => failure_kind(&other) == kind,
        Ok(_) => false,
    };
    let mut steps: Vec<(String, Shrink)> = Vec::new();
    for family in riffle_sim::FAULT_FAMILIES {
        steps.push((
            format!("no {family}"),
            Box::new(move |options: &mut SimOptions| {
                options.off.insert(family.to_string());
            }),
        ));
    }
    steps.push(("no disk loss".into(), Box::new(|options: &mut SimOptions| options.disk_loss = false)));
    steps.push(("no membership changes".into(), Box::new(|options: &mut SimOptions| options.membership = false)));
    steps.push(("no message faults".into(), Box::new(|options: &mut SimOptions| options.message_faults = false)));
    steps.push(("no readers".into(), Box::new(|options: &mut SimOptions| options.readers = 0)));
    steps.push(("no metadata clients".into(), Box::new(|options: &mut SimOptions| options.meta_clients = 0)));
    steps.push(("no reshards".into(), Box::new(|options: &mut SimOptions| options.reshards = 0)));
    for _ in 0..3 {
        steps.push((
            "half the puts".into(),
            Box::new(|options: &mut SimOptions| {
                options.operations_per_client = (options.operations_per_client / 2).max(1)
            }),
        ));
    }
    for (name, change) in steps {
        let mut candidate = options.clone();
        change(&mut candidate);
        if candidate.flags() == options.flags() {
            continue;
        }
        let kept = still_fails(&candidate);
        eprintln!("  {name}: {}", if kept { "still fails, kept" } else { "passes or fails otherwise, undone" });
        if kept {
            options = candidate;
        }
    }
    println!("smallest scenario found: cargo run --release -p riffle-sim -- --seed {seed}{}", options.flags());
    options
}

/// Failing seeds of a sweep whose trace and history are written out.
const FAILURES_RECORDED_MAX: usize = 5;

/// Runs `seed` again keeping everything, and writes its trace and history into `out`.
fn write_evidence(seed: u64, options: &SimOptions, out: &std::path::Path) -> Result<()> {
    let recording = riffle_sim::run_seed_recorded(seed, options);
    let trace_path = out.join(format!("seed-{seed}.trace.txt"));
    std::fs::write(&trace_path, recording.trace.join("\n"))?;
    println!("  seed {seed}: every event in {}", trace_path.display());
    if let Some(history) = recording.history_json {
        let history_path = out.join(format!("seed-{seed}.history.json"));
        std::fs::write(&history_path, history)?;
        println!("  seed {seed}: history and final state (the checker's input) in {}", history_path.display());
    }
    Ok(())
}

/// What the passing seeds did, summed.
#[derive(Debug, Default)]
struct Totals {
    acknowledged: u64,
    crashes: u64,
    partitions: u64,
    zone_losses: u64,
    disk_losses: u64,
    joins: u64,
    decommissions: u64,
    splits: u64,
    merges: u64,
    expired_shards: u64,
    /// The failover probe's slowest new leader over the seeds, and the sum (for the mean).
    failover_ms_max: u64,
    failover_ms_sum: u64,
    /// Probes slower than two maximal election timeouts (3.2 s).
    failover_over_two_timeouts: u64,
    seeds: u64,
    pauses: u64,
    clock_jumps: u64,
    io_errors: u64,
    storage_failures: u64,
    corruptions: u64,
    redelivered: u64,
    power_losses: u64,
    read_chains: u64,
    read_pages: u64,
    virtual_ms: u64,
}

impl Totals {
    fn add(&mut self, report: &riffle_sim::SeedReport) {
        self.acknowledged += report.acknowledged as u64;
        self.crashes += u64::from(report.crashes);
        self.partitions += u64::from(report.partitions);
        self.zone_losses += u64::from(report.zone_losses);
        self.disk_losses += u64::from(report.disk_losses);
        self.joins += u64::from(report.joined);
        self.decommissions += u64::from(report.decommissioned);
        self.splits += report.splits as u64;
        self.merges += report.merges as u64;
        self.expired_shards += report.expired_shards as u64;
        self.failover_ms_max = self.failover_ms_max.max(report.failover_ms);
        self.failover_ms_sum += report.failover_ms;
        self.failover_over_two_timeouts += u64::from(report.failover_ms > 3_200);
        self.seeds += 1;
        self.pauses += u64::from(report.pauses);
        self.clock_jumps += u64::from(report.clock_jumps);
        self.io_errors += u64::from(report.io_errors);
        self.storage_failures += u64::from(report.storage_failures);
        self.corruptions += u64::from(report.corruptions);
        self.redelivered += report.redelivered;
        self.power_losses += u64::from(report.power_losses);
        self.read_chains += report.read_chains as u64;
        self.read_pages += report.read_pages as u64;
        self.virtual_ms += report.virtual_ms;
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "passing seeds together: {} acknowledged puts and {} read chains ({} pages) checked; {} crashes, \
             {} power losses, {} partitions ({} of a whole zone), {} pauses, {} clock jumps, {} storage errors armed ({} nodes stopped on one and restarted), \
             {} messages delivered twice, {} disk losses, {} damaged replicas; {} joins, {} decommissions; {} splits, {} merges; {} closed shards expired; \
             failover probe: new leaders {} ms after the cut on average, {} ms at most, {} probes over 3,200 ms",
            self.acknowledged,
            self.read_chains,
            self.read_pages,
            self.crashes,
            self.power_losses,
            self.partitions,
            self.zone_losses,
            self.pauses,
            self.clock_jumps,
            self.io_errors,
            self.storage_failures,
            self.redelivered,
            self.disk_losses,
            self.corruptions,
            self.joins,
            self.decommissions,
            self.splits,
            self.merges,
            self.expired_shards,
            self.failover_ms_sum / self.seeds.max(1),
            self.failover_ms_max,
            self.failover_over_two_timeouts
        )
    }
}
