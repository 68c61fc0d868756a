//! `riffle-failover`: how long do writes stall when a node dies, and when it comes back?
//!
//! What it does: starts its own local cluster (`riffle-node dev` on ports that do not collide
//! with the default ones), creates a stream, and runs writers that put one record at a time into
//! every shard (an explicit hash key inside the shard), each put through a node picked at random,
//! as clients behind a load balancer do. After `--kill-at-s` it kills the node leading shard 0
//! with SIGKILL; `riffle-node dev` restarts it `--restart-delay-ms` later. The run ends after
//! `--duration-s`, and the report gives, per shard and per phase (before the kill, while the node
//! is down, after it restarted), the longest gap between two acknowledgements — the stall a
//! client of that shard saw — with the errors seen, as a table and as JSON.
//!
//! What it is not: a throughput benchmark (one put in flight per writer), nor a correctness check
//! (`node/tests/cluster_failover.rs` and the simulator check what was kept).
//!
//! Invariants: the run ends by itself; the cluster is stopped (SIGINT to `riffle-node dev`, then
//! SIGKILL of its process group) and its directory removed on every exit path.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use riffle_client::proto::PutRecordRequest;
use riffle_client::{Client, ClientConfig};
use serde::Serialize;

/// Polls (250 ms apart) while waiting for the cluster and the stream.
const READY_POLLS_MAX: u32 = 480;
const POLL: Duration = Duration::from_millis(250);
/// Gaps shorter than this are not listed one by one in the JSON report.
const GAP_LISTED_MS: u64 = 250;

#[derive(Debug, Parser)]
#[command(name = "riffle-failover", version, about = "Measures write stalls when a node dies and restarts")]
struct Arguments {
    /// The riffle-node binary (default: next to this one).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// gRPC port of node 1 of the cluster this run starts (QUIC peers at +10, Kinesis at +20).
    #[arg(long, default_value_t = 57051)]
    grpc_port: u16,
    /// Shards of the stream.
    #[arg(long, default_value_t = 6)]
    shards: u32,
    /// Writers per shard, each with one put in flight.
    #[arg(long, default_value_t = 2)]
    writers_per_shard: u32,
    /// Seconds of writes before the kill.
    #[arg(long, default_value_t = 8)]
    kill_at_s: u64,
    /// How long the killed node stays down before `riffle-node dev` restarts it.
    #[arg(long, default_value_t = 4_000)]
    restart_delay_ms: u64,
    /// Seconds the whole run lasts (writes included).
    #[arg(long, default_value_t = 30)]
    duration_s: u64,
    /// How long one put may take before the writer counts it failed and moves on.
    #[arg(long, default_value_t = 10_000)]
    request_timeout_ms: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the cluster's directory (node logs) here instead of removing it.
    #[arg(long)]
    keep_dir: Option<PathBuf>,
}

/// The phases of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    BeforeKill,
    NodeDown,
    AfterRestart,
}

const PHASES: [Phase; 3] = [Phase::BeforeKill, Phase::NodeDown, Phase::AfterRestart];

/// What the writers observed, shared between them.
#[derive(Debug, Default)]
struct Observations {
    /// Per shard: the first and the last acknowledgement (ms since the writers started).
    first_ack_ms: BTreeMap<u32, u64>,
    last_ack_ms: BTreeMap<u32, u64>,
    /// Per shard and phase: the longest gap between acknowledgements, by the phase it ended in.
    longest_gap_ms: BTreeMap<(u32, Phase), u64>,
    acks: BTreeMap<(u32, Phase), u64>,
    /// Per phase: error messages (type only) and counts.
    errors: BTreeMap<(Phase, String), u64>,
    gaps: Vec<Gap>,
}

#[derive(Debug, Clone, Serialize)]
struct Gap {
    shard: u32,
    from_ms: u64,
    to_ms: u64,
}

/// When the phases began (ms since the writers started).
#[derive(Debug, Default, Clone, Copy)]
struct Timeline {
    killed_ms: Option<u64>,
    restarted_ms: Option<u64>,
}

impl Timeline {
    fn phase(&self, at_ms: u64) -> Phase {
        match (self.killed_ms, self.restarted_ms) {
            (_, Some(restarted)) if at_ms >= restarted => Phase::AfterRestart,
            (Some(killed), _) if at_ms >= killed => Phase::NodeDown,
            _ => Phase::BeforeKill,
        }
    }
}

impl Observations {
    fn ack(&mut self, shard: u32, at_ms: u64, timeline: &Timeline) {
        let Some(previous) = self.last_ack_ms.insert(shard, at_ms) else {
            // The first acknowledgement: how long the first put took is reported on its own.
            self.first_ack_ms.insert(shard, at_ms);
            *self.acks.entry((shard, timeline.phase(at_ms))).or_default() += 1;
            return;
        };
        let gap = at_ms.saturating_sub(previous);
        // A gap belongs to the phase it ends in: a stall that began just before the kill is the
        // kill's, one that ended after the restart is the restart's.
        let phase = timeline.phase(at_ms);
        let longest = self.longest_gap_ms.entry((shard, phase)).or_default();
        *longest = (*longest).max(gap);
        *self.acks.entry((shard, timeline.phase(at_ms))).or_default() += 1;
        if gap >= GAP_LISTED_MS {
            self.gaps.push(Gap { shard, from_ms: previous, to_ms: at_ms });
        }
    }
}

#[derive(Debug, Serialize)]
struct ShardReport {
    shard: u32,
    led_by_killed_node: bool,
    first_ack_ms: Option<u64>,
    longest_gap_ms: BTreeMap<Phase, u64>,
    acks: BTreeMap<Phase, u64>,
}

#[derive(Debug, Serialize)]
struct Report {
    shards: u32,
    writers_per_shard: u32,
    killed_node: u64,
    killed_at_ms: u64,
    restarted_at_ms: Option<u64>,
    duration_ms: u64,
    durability: &'static str,
    per_shard: Vec<ShardReport>,
    /// The longest stall over the shards the killed node led, and over the others, per phase.
    longest_gap_led_ms: BTreeMap<Phase, u64>,
    longest_gap_other_ms: BTreeMap<Phase, u64>,
    errors: BTreeMap<String, BTreeMap<String, u64>>,
    gaps_over_250_ms: Vec<Gap>,
}

/// The `riffle-node dev` process; stopped and its directory removed when dropped.
struct Cluster {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pids: BTreeMap<u64, i32>,
    /// Removed when the run ends unless `--keep-dir` named the directory.
    _directory: Option<tempfile::TempDir>,
}

impl Cluster {
    fn start(node_bin: &PathBuf, grpc_port: u16, restart_delay_ms: u64, keep: Option<&PathBuf>) -> Result<Cluster> {
        let (directory, path) = match keep {
            Some(path) => (None, path.clone()),
            None => {
                let directory = tempfile::Builder::new().prefix("riffle-failover-").tempdir()?;
                let path = directory.path().to_path_buf();
                (Some(directory), path)
            }
        };
        let mut child = Command::new(node_bin)
            .arg("dev")
            .arg("--data-dir")
            .arg(&path)
            .args(["--grpc-port", &grpc_port.to_string()])
            .args(["--peer-port", &(grpc_port + 10).to_string()])
            .args(["--kinesis-port", &(grpc_port + 20).to_string()])
            .args(["--restart-delay-ms", &restart_delay_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", node_bin.display()))?;
        let stdout = child.stdout.take().context("dev's stdout")?;
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut cluster = Cluster { child, lines, pids: BTreeMap::new(), _directory: directory };
        while cluster.pids.len() < 3 {
            let line = cluster.next_line(Duration::from_secs(60))?;
            if let Some((node, pid)) = node_and_pid(&line, "  node ") {
                cluster.pids.insert(node, pid);
            }
        }
        Ok(cluster)
    }

    fn next_line(&self, within: Duration) -> Result<String> {
        self.lines.recv_timeout(within).context("riffle-node dev printed nothing more")
    }

    fn kill(&self, node: u64) -> Result<()> {
        let pid = self.pids.get(&node).context("no such node")?;
        let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status()?;
        if !status.success() {
            bail!("kill -KILL {pid} failed");
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        for _ in 0..120 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = Command::new("kill").args(["-KILL", &format!("-{pid}")]).status();
        let _ = self.child.wait();
    }
}

/// `node 3 …: pid 1234` (after `prefix`) → (3, 1234).
fn node_and_pid(line: &str, prefix: &str) -> Option<(u64, i32)> {
    let rest = line.strip_prefix(prefix)?;
    let node = rest.split_whitespace().next()?.parse().ok()?;
    let pid = rest.split_whitespace().skip_while(|word| *word != "pid" && *word != "pid:").nth(1)?;
    Some((node, pid.trim_end_matches(',').parse().ok()?))
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(arguments)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("riffle-failover: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(arguments: Arguments) -> Result<()> {
    if arguments.shards == 0 || arguments.writers_per_shard == 0 || arguments.kill_at_s >= arguments.duration_s {
        bail!("need at least one shard and writer, and --kill-at-s below --duration-s");
    }
    let node_bin = match &arguments.node_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("riffle-node"),
    };
    let cluster =
        Cluster::start(&node_bin, arguments.grpc_port, arguments.restart_delay_ms, arguments.keep_dir.as_ref())?;
    let endpoints: Vec<String> =
        (0..3).map(|offset| format!("http://127.0.0.1:{}", arguments.grpc_port + offset)).collect();
    let admin = Client::connect(endpoints.clone()).await?;
    let mut ready = false;
    for _ in 0..READY_POLLS_MAX {
        if admin.list_streams().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    if !ready {
        bail!("the cluster did not answer");
    }
    let stream = "failover";
    admin.create_stream(stream, arguments.shards, None).await?;
    let mut shards = Vec::new();
    for _ in 0..READY_POLLS_MAX {
        let description = admin.describe_stream(stream).await?;
        if description.shards.iter().all(|shard| shard.leader_node.is_some())
            && description.shards.len() == arguments.shards as usize
        {
            shards = description.shards;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    if shards.is_empty() {
        bail!("the stream's shards did not all get a leader");
    }
    let killed_node = shards[0].leader_node.context("shard 0 has a leader")?;
    let led: Vec<u32> = shards
        .iter()
        .enumerate()
        .filter(|(_, shard)| shard.leader_node == Some(killed_node))
        .map(|(index, _)| index as u32)
        .collect();
    println!(
        "stream {stream}: {} shards; will kill node {killed_node} (leads shards {led:?}) at {} s",
        arguments.shards, arguments.kill_at_s
    );

    // One client per node, no retries: each put goes to the node it was sent to.
    let config = ClientConfig {
        retries_max: 0,
        request_timeout_ms: arguments.request_timeout_ms,
        connect_timeout_ms: 1_000,
        ..ClientConfig::default()
    };
    let mut clients = Vec::new();
    for endpoint in &endpoints {
        clients.push(Client::connect_with_config(vec![endpoint.clone()], config.clone()).await?);
    }
    let clients = Arc::new(clients);
    let observations = Arc::new(Mutex::new(Observations::default()));
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let start = Instant::now();
    let end = start + Duration::from_secs(arguments.duration_s);
    let mut writers = Vec::new();
    for (index, shard) in shards.iter().enumerate() {
        let range = shard.hash_key_range.clone().context("a shard's hash range")?;
        let low: u128 = range.starting_hash_key.parse()?;
        let high: u128 = range.ending_hash_key.parse()?;
        let hash_key = (low + (high - low) / 2).to_string();
        for writer in 0..arguments.writers_per_shard {
            let clients = clients.clone();
            let observations = observations.clone();
            let timeline = timeline.clone();
            let hash_key = hash_key.clone();
            let mut seed = (index as u64 + 1) * 7919 + u64::from(writer) * 104_729 + 1;
            writers.push(tokio::spawn(async move {
                let mut number = 0u64;
                while Instant::now() < end {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let client = &clients[(seed % clients.len() as u64) as usize];
                    let request = PutRecordRequest {
                        stream_name: stream.to_string(),
                        data: Bytes::from(format!("{index}-{writer}-{number}")),
                        partition_key: format!("w{writer}"),
                        explicit_hash_key: Some(hash_key.clone()),
                        sequence_number_for_ordering: None,
                    };
                    number += 1;
                    let outcome = client.put_record(request).await;
                    let at_ms = start.elapsed().as_millis() as u64;
                    let timeline = *timeline.lock().expect("timeline lock");
                    let failed = {
                        let mut observed = observations.lock().expect("observations lock");
                        match outcome {
                            Ok(_) => {
                                observed.ack(index as u32, at_ms, &timeline);
                                false
                            }
                            Err(error) => {
                                let kind = error.to_string().split(':').next().unwrap_or_default().to_string();
                                *observed.errors.entry((timeline.phase(at_ms), kind)).or_default() += 1;
                                true
                            }
                        }
                    };
                    if failed {
                        // A refused put is retried at once through another node, but not in a
                        // tight loop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }));
        }
    }

    tokio::time::sleep_until((start + Duration::from_secs(arguments.kill_at_s)).into()).await;
    cluster.kill(killed_node)?;
    timeline.lock().expect("timeline lock").killed_ms = Some(start.elapsed().as_millis() as u64);
    println!("{:>6} ms  killed node {killed_node}", start.elapsed().as_millis());
    // `riffle-node dev` says when it restarted the node.
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        let Ok(line) = tokio::task::block_in_place(|| cluster.next_line(left)) else { break };
        if line.contains(&format!("node {killed_node} restarted")) {
            timeline.lock().expect("timeline lock").restarted_ms = Some(start.elapsed().as_millis() as u64);
            println!("{:>6} ms  node {killed_node} restarted", start.elapsed().as_millis());
            break;
        }
    }
    for writer in writers {
        writer.await?;
    }
    let duration_ms = start.elapsed().as_millis() as u64;
    let timeline = *timeline.lock().expect("timeline lock");
    let mut observed = observations.lock().expect("observations lock");
    // A shard whose writes never resumed stalled until the end.
    let last: Vec<(u32, u64)> = observed.last_ack_ms.iter().map(|(shard, at)| (*shard, *at)).collect();
    for (shard, at_ms) in last {
        let phase = timeline.phase(duration_ms);
        let longest = observed.longest_gap_ms.entry((shard, phase)).or_default();
        *longest = (*longest).max(duration_ms - at_ms);
    }
    let per_shard: Vec<ShardReport> = (0..arguments.shards)
        .map(|shard| ShardReport {
            shard,
            led_by_killed_node: led.contains(&shard),
            first_ack_ms: observed.first_ack_ms.get(&shard).copied(),
            longest_gap_ms: PHASES
                .iter()
                .map(|phase| (*phase, observed.longest_gap_ms.get(&(shard, *phase)).copied().unwrap_or(0)))
                .collect(),
            acks: PHASES
                .iter()
                .map(|phase| (*phase, observed.acks.get(&(shard, *phase)).copied().unwrap_or(0)))
                .collect(),
        })
        .collect();
    let longest = |led_only: bool| -> BTreeMap<Phase, u64> {
        PHASES
            .iter()
            .map(|phase| {
                let gap = per_shard
                    .iter()
                    .filter(|shard| shard.led_by_killed_node == led_only)
                    .map(|shard| shard.longest_gap_ms[phase])
                    .max()
                    .unwrap_or(0);
                (*phase, gap)
            })
            .collect()
    };
    let mut errors: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for ((phase, kind), count) in &observed.errors {
        errors.entry(format!("{phase:?}")).or_default().insert(kind.clone(), *count);
    }
    let report = Report {
        shards: arguments.shards,
        writers_per_shard: arguments.writers_per_shard,
        killed_node,
        killed_at_ms: timeline.killed_ms.unwrap_or(0),
        restarted_at_ms: timeline.restarted_ms,
        duration_ms,
        durability: "quorum fsync before ack (riffle-node dev, three nodes on one machine)",
        longest_gap_led_ms: longest(true),
        longest_gap_other_ms: longest(false),
        per_shard,
        errors,
        gaps_over_250_ms: std::mem::take(&mut observed.gaps),
    };
    println!();
    println!("longest gap between acknowledgements per shard, ms (* = led by the killed node)");
    println!("{:>8} {:>10} {:>12} {:>12} {:>14}", "shard", "first ack", "before kill", "node down", "after restart");
    for shard in &report.per_shard {
        println!(
            "{:>7}{} {:>10} {:>12} {:>12} {:>14}",
            shard.shard,
            if shard.led_by_killed_node { "*" } else { " " },
            shard.first_ack_ms.map_or("-".to_string(), |at| at.to_string()),
            shard.longest_gap_ms[&Phase::BeforeKill],
            shard.longest_gap_ms[&Phase::NodeDown],
            shard.longest_gap_ms[&Phase::AfterRestart]
        );
    }
    println!("errors by phase: {:?}", report.errors);
    if let Some(path) = &arguments.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        println!("report written to {}", path.display());
    }
    Ok(())
}
