//! One run of a schedule: build the network and the cluster, run the clients and the nemesis,
//! heal, check liveness, drain every shard on every replica, check, report, clean up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riffle_check::{FinalState, Lineage, Outcome, Put, Record, ShardRead};
use riffle_client::proto as v1;
use riffle_node::config::TestStorage;
use serde::Serialize;

use crate::cluster::{Cluster, ClusterOptions};
use crate::nemesis::{self, Action, Situation};
use crate::net::{self, Host, Topology};
use crate::relay::{Relay, RelayPlan};
use crate::report::{self, Availability, FaultWindow, Verdict};
use crate::workload::{self, Api, Clients, Operation, Recorder, STREAM};

/// How long a fresh cluster may take to accept the stream.
const CLUSTER_READY_LIMIT: Duration = Duration::from_secs(120);
/// After healing, how long every shard has to accept a put again (the liveness bound).
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
/// How long replicas have, after the recovery, to agree with the shard's committed records.
const REPLICA_AGREEMENT_LIMIT: Duration = Duration::from_secs(60);
/// Pause between polls of something the cluster reaches by itself; it synchronises nothing.
const POLL_PAUSE: Duration = Duration::from_millis(250);
/// The client id of the recovery probes in the history.
const PROBE_CLIENT: u32 = 10_000;
/// Pages of one shard the final read follows at most.
const DRAIN_PAGES_MAX: u32 = 100_000;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct RunOptions {
    pub schedule: String,
    /// How long the workload and the nemesis run.
    pub time_limit: Duration,
    /// Put calls per second, over every producer.
    pub rate: f64,
    pub producers: u32,
    pub readers: u32,
    pub shards: u32,
    pub seed: u64,
    /// The `riffle-node` binary.
    pub binary: PathBuf,
    /// Where run directories go.
    pub out: PathBuf,
    /// The nodes' test-only storage mode.
    pub storage: TestStorage,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub verdict: Verdict,
    pub dir: PathBuf,
    pub violations: Vec<String>,
    pub puts: usize,
    pub acknowledged: usize,
    pub read_chains: usize,
    pub records_drained: usize,
    pub faults: usize,
    pub recovery_ms: Option<u64>,
    pub availability: Vec<Availability>,
    /// Per producer (client id): puts acknowledged, and how many of those the drained shards
    /// do not hold (lost).
    pub lost_per_writer: BTreeMap<u32, (usize, usize)>,
    pub notes: Vec<String>,
}

/// The command that runs the same schedule with the same seed again.
pub fn rerun_command(options: &RunOptions) -> String {
    let storage = match options.storage {
        TestStorage::LoseUnsynced => String::new(),
        TestStorage::AckBeforeFsync => " --storage ack-before-fsync".into(),
    };
    format!(
        "riffle-jepsen run --schedule {} --time-limit {} --rate {} --producers {} --readers {} --shards {} --seed {}{storage}",
        options.schedule,
        options.time_limit.as_secs(),
        options.rate,
        options.producers,
        options.readers,
        options.shards,
        options.seed
    )
}

static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs one schedule. The network and the processes are gone when this returns, also after an
/// error; `interrupted` (Ctrl-C) ends the fault phase early and goes on to heal and check.
pub fn run(options: &RunOptions, interrupted: Arc<AtomicBool>) -> Result<RunResult> {
    if !nemesis::is_schedule(&options.schedule) {
        bail!("no schedule {:?}; `riffle-jepsen schedules` lists them", options.schedule);
    }
    for stale in net::clean_stale()? {
        eprintln!("removed the network of an earlier run that did not clean up: {stale}");
    }
    let started = unix_seconds();
    let dir = options.out.join(format!("{}-{started}-seed{}", options.schedule, options.seed));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let spare = options.schedule == "kill-membership";
    let mut layout: Vec<(u64, String)> = vec![(1, "a".into()), (2, "b".into()), (3, "c".into())];
    if spare {
        layout.push((4, "a".into()));
    }
    let prefix = format!("{}r{}", net::prefix_for_this_process(), RUNS.fetch_add(1, Ordering::SeqCst));
    let mut topology = Topology::create(&prefix, &layout)?;
    // Link faults need node-to-node packets to go through the relay.
    let relay_plan = match uses_relay(&options.schedule) {
        true => {
            let (namespace, address) = topology.add_relay_host()?;
            let nodes = topology
                .nodes()
                .iter()
                .map(|node| (node.id, std::net::SocketAddr::from((node.address, crate::cluster::PEER_PORT))))
                .collect();
            Some((namespace, RelayPlan { address, nodes }))
        }
        false => None,
    };
    let cluster = Cluster::new(
        topology,
        &ClusterOptions {
            binary: options.binary.clone(),
            dir: dir.clone(),
            storage: Some(options.storage),
            founders: vec![1, 2, 3],
            relay: relay_plan.as_ref().map(|(_, plan)| plan.clone()),
        },
    )?;
    let relay = match &relay_plan {
        Some((namespace, plan)) => Some(Relay::start(namespace, plan)?),
        None => None,
    };
    // The clients live in their own namespace: a thread enters it and runs the async part.
    let options_for_thread = options.clone();
    let dir_for_thread = dir.clone();
    let worker = std::thread::Builder::new()
        .name("jepsen-run".into())
        .spawn(move || -> Result<RunResult> {
            let mut cluster = cluster;
            cluster.topology().enter_client_namespace()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the client runtime")?;
            let result = runtime.block_on(run_in_namespace(
                &options_for_thread,
                &dir_for_thread,
                &mut cluster,
                relay.as_ref(),
                interrupted,
            ));
            drop(relay);
            let shut = cluster.shut_down();
            let result = result?;
            shut?;
            Ok(result)
        })
        .context("starting the run thread")?;
    match worker.join() {
        Ok(result) => result,
        Err(_) => bail!("the run thread panicked; the run's files are in {}", dir.display()),
    }
}

/// Seconds since the Unix epoch, for directory names (sortable, unique per run and seed).
fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or(0)
}

fn progress(recorder: &Recorder, message: &str) {
    let seconds = recorder.now_us() as f64 / 1e6;
    eprintln!("[{seconds:7.1}s] {message}");
}

/// Whether a schedule needs the link relay.
fn uses_relay(schedule: &str) -> bool {
    matches!(schedule, "links" | "chaos")
}

async fn run_in_namespace(
    options: &RunOptions,
    dir: &std::path::Path,
    cluster: &mut Cluster,
    relay: Option<&Relay>,
    interrupted: Arc<AtomicBool>,
) -> Result<RunResult> {
    let recorder = Arc::new(Recorder::new());
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    for id in [1, 2, 3] {
        cluster.start(id)?;
    }
    progress(&recorder, &format!("started nodes 1-3; the run's files are in {}", dir.display()));
    let endpoints: Vec<(u64, String, String)> = cluster
        .ids()
        .into_iter()
        .filter_map(|id| Some((id, cluster.grpc_endpoint(id)?, cluster.kinesis_endpoint(id)?)))
        .collect();
    let founders = Clients::connect(&endpoints[..3]).await?;
    let everyone = Clients::connect(&endpoints).await?;
    create_stream(&founders, options.shards, cluster, &recorder).await?;
    // Ready when every shard has a leader that takes writes (probes, recorded like any put).
    let mut notes: Vec<String> = Vec::new();
    if recover(&founders, cluster, &recorder, &mut notes).await?.is_none() {
        bail!("the fresh cluster's shards did not all take a put within {} s", RECOVERY_LIMIT.as_secs());
    }
    progress(&recorder, &format!("stream {STREAM} is ACTIVE with {} shards, each taking writes", options.shards));

    // The workload.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let producer_rate = options.rate / f64::from(options.producers.max(1));
    for producer in 0..options.producers {
        tasks.push(tokio::spawn(workload::produce(
            producer,
            founders.clone(),
            recorder.clone(),
            producer_rate,
            rng.gen(),
            stop.clone(),
        )));
    }
    for reader in 0..options.readers {
        tasks.push(tokio::spawn(workload::read(reader, founders.clone(), recorder.clone(), rng.gen(), stop.clone())));
    }

    // The nemesis.
    let mut windows: Vec<FaultWindow> = Vec::new();
    let mut members: Vec<u64> = vec![1, 2, 3];
    let mut spares: Vec<u64> = cluster.ids().into_iter().filter(|id| !members.contains(id)).collect();
    let mut shards = options.shards;
    let deadline = Instant::now() + options.time_limit;
    let mut round = 0u64;
    let mut last_report = Instant::now();
    while Instant::now() < deadline && !interrupted.load(Ordering::SeqCst) {
        let leader = shard_leader(&founders).await;
        let zones: Vec<(u64, String)> =
            members.iter().map(|id| (*id, cluster.zone(*id).unwrap_or_default().to_string())).collect();
        let situation =
            Situation { members: &members, zones: &zones, leader, spares: &spares, shards, relay: relay.is_some() };
        let Some(package) = nemesis::next_package(&options.schedule, round, &mut rng, &situation) else {
            // No faults: wait out the run, supervising.
            supervised_wait(cluster, &recorder, &mut notes, Duration::from_secs(1), &interrupted).await?;
            if last_report.elapsed() > Duration::from_secs(10) {
                progress(&recorder, &summary_line(&recorder));
                last_report = Instant::now();
            }
            continue;
        };
        round += 1;
        progress(&recorder, &format!("fault: {}", package.name));
        let start_us = recorder.now_us();
        let mut details = Vec::new();
        for action in &package.actions {
            let detail =
                apply(action, cluster, relay, &everyone, &recorder, &mut rng, &mut notes, &interrupted).await?;
            if let Some(detail) = detail {
                details.push(detail);
            }
            match action {
                Action::Join(spare) => {
                    spares.retain(|id| id != spare);
                    members.push(*spare);
                }
                Action::Decommission(node) if cluster.is_departed(*node) => members.retain(|id| id != node),
                Action::Reshard(target) if details.last().is_some_and(|detail| detail.starts_with("resharded")) => {
                    shards = *target
                }
                _ => {}
            }
        }
        windows.push(FaultWindow { name: package.name.clone(), start_us, end_us: recorder.now_us(), details });
        supervised_wait(cluster, &recorder, &mut notes, nemesis::quiet(&mut rng), &interrupted).await?;
        progress(&recorder, &summary_line(&recorder));
        last_report = Instant::now();
    }
    if interrupted.load(Ordering::SeqCst) {
        notes.push("interrupted (Ctrl-C): the fault phase ended early".into());
    }

    // Heal everything, then stop the workload.
    progress(&recorder, "healing: every cut removed, every node resumed, clocks reset, stopped nodes started");
    heal_all(cluster, &members)?;
    if let Some(relay) = relay {
        relay.heal();
        let (forwarded, dropped, duplicated, delayed) = relay.counts();
        notes.push(format!(
            "link relay: {forwarded} packets forwarded, {dropped} dropped, {duplicated} duplicated, {delayed} delayed"
        ));
    }
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        let _ = task.await;
    }
    let heal_us = recorder.now_us();

    // Liveness: every open shard takes a put again within the bound.
    let recovery = recover(&founders, cluster, &recorder, &mut notes).await?;
    let recovery_ms = recovery.map(|recovered_us| (recovered_us.saturating_sub(heal_us)) / 1_000);
    let mut violations: Vec<String> = Vec::new();
    if recovery.is_none() {
        violations.push(format!(
            "[liveness] after healing, not every shard took a put within {} s",
            RECOVERY_LIMIT.as_secs()
        ));
    }
    progress(&recorder, &format!("recovery: {recovery_ms:?} ms after healing; draining every shard"));

    // Drain: every shard from TRIM_HORIZON, then every replica of it read directly.
    let (state, replica_problems, records_drained) = drain(&founders, cluster, &recorder).await?;
    violations.extend(replica_problems);
    let history = recorder.history();
    violations.extend(riffle_check::check_all(&history, &state).iter().map(ToString::to_string));
    for id in cluster.ids() {
        let log = dir.join(format!("node-{id}")).join("node.log");
        if let Ok(text) = std::fs::read_to_string(&log) {
            if let Some(line) = text.lines().find(|line| line.contains("panicked at")) {
                violations.push(format!("[panic] node {id}: {line}"));
            }
        }
    }
    notes.extend(cluster.unexpected_exits());
    let operations = recorder.operations();
    let availability = report::availability(&operations, &windows, heal_us);
    let acknowledged = history.puts.iter().filter(|put| matches!(put.outcome, Outcome::Ok { .. })).count();
    let drained: std::collections::HashSet<&str> =
        state.reads.iter().flat_map(|read| read.records.iter().map(|record| record.value.as_str())).collect();
    let mut lost_per_writer: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    for put in history.puts.iter().filter(|put| matches!(put.outcome, Outcome::Ok { .. })) {
        let entry = lost_per_writer.entry(put.client).or_default();
        entry.0 += 1;
        if !drained.contains(put.value.as_str()) {
            entry.1 += 1;
        }
    }
    let result = RunResult {
        verdict: if violations.is_empty() { Verdict::Valid } else { Verdict::Invalid },
        dir: dir.to_path_buf(),
        violations,
        puts: history.puts.len(),
        acknowledged,
        read_chains: history.chains.len(),
        records_drained,
        faults: windows.len(),
        recovery_ms,
        availability,
        lost_per_writer,
        notes,
    };
    report::write(dir, options, &result, &operations, &history, &state, &windows)?;
    Ok(result)
}

fn summary_line(recorder: &Recorder) -> String {
    let operations = recorder.operations();
    let count = |kind: &str| {
        operations.iter().filter(|operation| operation.f.starts_with("put") && operation.kind == kind).count()
    };
    let reads = operations.iter().filter(|operation| operation.f == "read" && operation.kind == "ok").count();
    format!("puts ok {} fail {} info {}; reads ok {reads}", count("ok"), count("fail"), count("info"))
}

/// Creates the stream through any founder as soon as the cluster takes it, then waits until
/// it is ACTIVE; both bounded.
async fn create_stream(clients: &Clients, shards: u32, cluster: &mut Cluster, recorder: &Recorder) -> Result<()> {
    let deadline = Instant::now() + CLUSTER_READY_LIMIT;
    let mut attempt = 0usize;
    let mut last_error;
    loop {
        let (_, grpc, _) = &clients.nodes[attempt % clients.nodes.len()];
        attempt += 1;
        match grpc.create_stream(STREAM, shards, None).await {
            Ok(_) => break,
            Err(error) if error.error_type() == Some("ResourceInUseException") => break,
            Err(error) => last_error = error.to_string(),
        }
        let exits = cluster.supervise()?;
        if !exits.is_empty() {
            progress(recorder, &format!("while starting: {exits:?}"));
        }
        if Instant::now() > deadline {
            bail!("the cluster did not take the stream within {} s: {last_error}", CLUSTER_READY_LIMIT.as_secs());
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    loop {
        let (_, grpc, _) = &clients.nodes[attempt % clients.nodes.len()];
        attempt += 1;
        if let Ok(summary) = grpc.describe_stream_summary(STREAM).await {
            if summary.stream_status == v1::StreamStatus::Active as i32 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the stream was not ACTIVE within {} s", CLUSTER_READY_LIMIT.as_secs());
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

/// The node that leads the stream's first open shard, as some node reports it.
async fn shard_leader(clients: &Clients) -> Option<u64> {
    for (_, grpc, _) in &clients.nodes {
        if let Ok(Ok(shards)) = tokio::time::timeout(Duration::from_secs(2), grpc.list_shards(STREAM)).await {
            let open = shards.iter().find(|shard| {
                shard.sequence_number_range.as_ref().is_some_and(|range| range.ending_sequence_number.is_none())
            });
            if let Some(leader) = open.and_then(|shard| shard.leader_node) {
                return Some(leader);
            }
        }
    }
    None
}

/// Waits `duration`, restarting nodes that stopped by themselves meanwhile.
async fn supervised_wait(
    cluster: &mut Cluster,
    recorder: &Recorder,
    notes: &mut Vec<String>,
    duration: Duration,
    interrupted: &AtomicBool,
) -> Result<()> {
    let end = Instant::now() + duration;
    loop {
        for exit in cluster.supervise()? {
            progress(recorder, &format!("{exit}; started again"));
            notes.push(exit);
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || interrupted.load(Ordering::SeqCst) {
            return Ok(());
        }
        tokio::time::sleep(left.min(POLL_PAUSE)).await;
    }
}

/// Carries out one action; returns what it did when that is worth a line in the report.
#[allow(clippy::too_many_arguments)]
async fn apply(
    action: &Action,
    cluster: &mut Cluster,
    relay: Option<&Relay>,
    clients: &Clients,
    recorder: &Recorder,
    rng: &mut ChaCha8Rng,
    notes: &mut Vec<String>,
    interrupted: &AtomicBool,
) -> Result<Option<String>> {
    match action {
        Action::Kill(nodes) => {
            for node in nodes {
                cluster.kill(*node)?;
            }
        }
        Action::Start(nodes) => {
            for node in nodes {
                cluster.start(*node)?;
            }
        }
        Action::Pause(nodes) => {
            for node in nodes {
                cluster.pause(*node)?;
            }
        }
        Action::Resume(nodes) => {
            for node in nodes {
                cluster.resume(*node)?;
            }
        }
        Action::Cut(cuts) => {
            for (from, to) in cuts {
                cluster.topology().cut(*from, *to)?;
                // Node-to-node packets through the relay do not pass the blackhole routes.
                if let (Some(relay), Host::Node(from), Host::Node(to)) = (relay, from, to) {
                    relay.cut(*from, *to);
                }
            }
        }
        Action::Heal => {
            cluster.topology().heal()?;
            if let Some(relay) = relay {
                relay.heal();
            }
        }
        Action::Link(directions, fault) => match relay {
            Some(relay) => {
                for (from, to) in directions {
                    relay.set(*from, *to, *fault);
                }
            }
            None => return Ok(Some("no link relay in this run: link fault skipped".into())),
        },
        Action::Clock(node, offset) => cluster.set_clock_offset(*node, *offset)?,
        Action::Corrupt(node, damage) => {
            let files = cluster.data_files(*node)?;
            return Ok(Some(nemesis::damage_file(rng, &files, *damage)?));
        }
        Action::Reshard(target) => {
            let (_, _, kinesis) = &clients.nodes[rng.gen_range(0..clients.nodes.len())];
            let call = kinesis
                .update_shard_count()
                .stream_name(STREAM)
                .target_shard_count(*target as i32)
                .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
                .send();
            let outcome = match tokio::time::timeout(Duration::from_secs(30), call).await {
                Ok(Ok(_)) => format!("resharded to {target} shards"),
                Ok(Err(error)) => {
                    format!("UpdateShardCount to {target}: {}", aws_sdk_kinesis::error::DisplayErrorContext(error))
                }
                Err(_) => format!("UpdateShardCount to {target}: timed out"),
            };
            return Ok(Some(outcome));
        }
        Action::Join(spare) => {
            cluster.start(*spare)?;
            return Ok(Some(format!("node {spare} started to join")));
        }
        Action::Decommission(node) => {
            // Idempotent: retried until it answers, within a bound.
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut last = String::new();
            while Instant::now() < deadline && !interrupted.load(Ordering::SeqCst) {
                for (_, grpc, _) in clients.nodes.iter().filter(|(id, _, _)| id != node) {
                    match tokio::time::timeout(Duration::from_secs(60), grpc.decommission_node(*node)).await {
                        Ok(Ok(())) => {
                            cluster.mark_departed(*node)?;
                            return Ok(Some(format!("node {node} decommissioned")));
                        }
                        Ok(Err(error)) => last = error.to_string(),
                        Err(_) => last = "timed out".into(),
                    }
                    for exit in cluster.supervise()? {
                        notes.push(exit);
                    }
                    if cluster.is_departed(*node) {
                        return Ok(Some(format!("node {node} decommissioned (it left and exited)")));
                    }
                }
                tokio::time::sleep(POLL_PAUSE).await;
            }
            return Ok(Some(format!("node {node} not decommissioned: {last}")));
        }
        Action::Wait(duration) => supervised_wait(cluster, recorder, notes, *duration, interrupted).await?,
    }
    Ok(None)
}

fn heal_all(cluster: &mut Cluster, members: &[u64]) -> Result<()> {
    cluster.topology().heal()?;
    for id in members {
        cluster.resume(*id)?;
        cluster.start(*id)?;
        cluster.set_clock_offset(*id, 0)?;
    }
    Ok(())
}

/// Open shards and their starting hash keys, as some node lists them.
async fn open_shards(clients: &Clients) -> Option<Vec<(u32, String)>> {
    for (_, grpc, _) in &clients.nodes {
        if let Ok(Ok(shards)) = tokio::time::timeout(Duration::from_secs(5), grpc.list_shards(STREAM)).await {
            return Some(
                shards
                    .iter()
                    .filter(|shard| {
                        shard.sequence_number_range.as_ref().is_some_and(|range| range.ending_sequence_number.is_none())
                    })
                    .filter_map(|shard| {
                        Some((
                            riffle_node::keys::parse_shard_id(&shard.shard_id)?,
                            shard.hash_key_range.as_ref()?.starting_hash_key.clone(),
                        ))
                    })
                    .collect(),
            );
        }
    }
    None
}

/// Puts a probe into every open shard until each has taken one (recorded in the history like
/// any put); returns when the last one succeeded, or `None` past [`RECOVERY_LIMIT`].
async fn recover(
    clients: &Clients,
    cluster: &mut Cluster,
    recorder: &Recorder,
    notes: &mut Vec<String>,
) -> Result<Option<u64>> {
    let deadline = Instant::now() + RECOVERY_LIMIT;
    let mut done: BTreeMap<u32, bool> = BTreeMap::new();
    let mut number = 0u64;
    let mut attempt = 0usize;
    while Instant::now() < deadline {
        for exit in cluster.supervise()? {
            notes.push(exit);
        }
        let Some(shards) = open_shards(clients).await else {
            tokio::time::sleep(POLL_PAUSE).await;
            continue;
        };
        done.retain(|shard, _| shards.iter().any(|(open, _)| open == shard));
        for (shard, hash_key) in &shards {
            if done.get(shard).copied().unwrap_or(false) {
                continue;
            }
            let (node, grpc, _) = &clients.nodes[attempt % clients.nodes.len()];
            attempt += 1;
            let value = format!("probe-{}-{number}", recorder.now_us());
            number += 1;
            // One partition key per shard: a key's puts stay in one lineage.
            let key = format!("probe-{shard}");
            let request = v1::PutRecordRequest {
                stream_name: STREAM.into(),
                data: value.clone().into_bytes().into(),
                partition_key: key.clone(),
                explicit_hash_key: Some(hash_key.clone()),
                sequence_number_for_ordering: None,
            };
            let invoked_us = recorder.now_us();
            let answer = tokio::time::timeout(workload::CALL_TIMEOUT, grpc.put_record(request)).await;
            let completed_us = recorder.now_us();
            let outcome = match answer {
                Ok(Ok(response)) => Outcome::Ok {
                    shard: riffle_node::keys::parse_shard_id(&response.shard_id).unwrap_or(u32::MAX),
                    sequence: response.sequence_number,
                },
                Ok(Err(error)) => match error.error_type() {
                    Some(kind) if kind != "InternalFailure" => Outcome::Fail(error.to_string()),
                    _ => Outcome::Info(error.to_string()),
                },
                Err(_) => Outcome::Info("timed out".into()),
            };
            let kind = match &outcome {
                Outcome::Ok { .. } => "ok",
                Outcome::Fail(_) => "fail",
                Outcome::Info(_) => "info",
            };
            if let Outcome::Ok { shard: landed, .. } = &outcome {
                done.insert(*landed, true);
            }
            recorder.record(Operation {
                process: "probe".into(),
                f: "probe",
                api: Api::Grpc,
                node: *node,
                invoked_us,
                completed_us,
                kind,
                detail: format!("{value} to shard {shard}"),
            });
            recorder.push_put(Put { client: PROBE_CLIENT, value, key, invoked_us, completed_us, outcome });
        }
        if !shards.is_empty() && shards.iter().all(|(shard, _)| done.get(shard).copied().unwrap_or(false)) {
            return Ok(Some(recorder.now_us()));
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    Ok(None)
}

/// Reads every shard of the stream from TRIM_HORIZON (through any node), then every replica of
/// it directly, until each replica holds exactly the shard's records (bounded).
async fn drain(
    founders: &Clients,
    cluster: &mut Cluster,
    recorder: &Recorder,
) -> Result<(FinalState, Vec<String>, usize)> {
    let mut listed = None;
    for attempt in 0..120usize {
        let (_, grpc, _) = &founders.nodes[attempt % founders.nodes.len()];
        if let Ok(Ok(shards)) = tokio::time::timeout(Duration::from_secs(5), grpc.list_shards(STREAM)).await {
            listed = Some(shards);
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    let mut lineage = Lineage::default();
    let mut reads = Vec::new();
    let mut problems = Vec::new();
    let Some(shards) = listed else {
        // Nothing to read: every acknowledged write counts as lost.
        problems.push("[drain] no node listed the stream's shards after healing (is the stream gone?)".to_string());
        return Ok((FinalState::default(), problems, 0));
    };
    let mut drained = 0usize;
    for shard in &shards {
        let Some(index) = riffle_node::keys::parse_shard_id(&shard.shard_id) else { continue };
        let parents: Vec<u32> = [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
            .into_iter()
            .flatten()
            .filter_map(|parent| riffle_node::keys::parse_shard_id(parent))
            .collect();
        if !parents.is_empty() {
            lineage.parents.insert(index, parents);
        }
        if let Some(ending) =
            shard.sequence_number_range.as_ref().and_then(|range| range.ending_sequence_number.clone())
        {
            lineage.ending.insert(index, ending);
        }
        let records = match read_shard(founders, index).await {
            Ok(records) => records,
            Err(error) => {
                problems.push(format!("[drain] shard {index} could not be read after healing: {error:#}"));
                continue;
            }
        };
        drained += records.len();
        let replicas: Vec<u64> = shard.replica_nodes.clone();
        problems.extend(check_replicas(cluster, index, &replicas, &records, recorder).await?);
        reads.push(ShardRead { shard: index, records });
    }
    Ok((FinalState { reads, lineage, expiry: Default::default() }, problems, drained))
}

async fn read_shard(clients: &Clients, shard: u32) -> Result<Vec<Record>> {
    let request = v1::GetShardIteratorRequest {
        stream_name: STREAM.into(),
        shard_id: riffle_node::keys::shard_id(shard),
        shard_iterator_type: v1::ShardIteratorType::TrimHorizon as i32,
        starting_sequence_number: None,
        timestamp_ms: None,
    };
    let mut last_error = String::new();
    // Any node will do; a read that fails part-way starts again from the beginning.
    for attempt in 0..60usize {
        let (_, grpc, _) = &clients.nodes[attempt % clients.nodes.len()];
        let mut iterator = match grpc.get_shard_iterator(request.clone()).await {
            Ok(response) => response.shard_iterator,
            Err(error) => {
                last_error = error.to_string();
                tokio::time::sleep(POLL_PAUSE).await;
                continue;
            }
        };
        let mut records = Vec::new();
        let mut complete = false;
        for _ in 0..DRAIN_PAGES_MAX {
            let page = match grpc.get_records(&iterator, Some(10_000)).await {
                Ok(page) => page,
                Err(error) => {
                    last_error = error.to_string();
                    break;
                }
            };
            let empty = page.records.is_empty();
            records.extend(page.records.into_iter().map(|record| Record {
                sequence: record.sequence_number,
                value: String::from_utf8_lossy(&record.data).into_owned(),
                arrival_ms: record.approximate_arrival_timestamp_ms,
            }));
            match page.next_shard_iterator {
                None => {
                    complete = true;
                    break;
                }
                Some(_) if empty && page.millis_behind_latest == 0 => {
                    complete = true;
                    break;
                }
                Some(next) => iterator = next,
            }
        }
        if complete {
            return Ok(records);
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    bail!("shard {shard} could not be read to its end: {last_error}")
}

/// Every record of one replica, read directly from node `node` (ReadReplica).
async fn read_replica(endpoint: &str, shard: u32) -> Result<Vec<Record>> {
    let mut client = v1::riffle_client::RiffleClient::connect(endpoint.to_string())
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let mut records = Vec::new();
    let mut start: Option<String> = None;
    for _ in 0..DRAIN_PAGES_MAX {
        let request = v1::ReadReplicaRequest {
            stream_name: STREAM.into(),
            shard_id: riffle_node::keys::shard_id(shard),
            starting_sequence_number: start.clone(),
            limit: Some(10_000),
        };
        let response = tokio::time::timeout(Duration::from_secs(10), client.read_replica(request))
            .await
            .context("ReadReplica timed out")?
            .map_err(|status| anyhow::anyhow!("ReadReplica: {}", status.message()))?
            .into_inner();
        records.extend(response.records.into_iter().map(|record| Record {
            sequence: record.sequence_number,
            value: String::from_utf8_lossy(&record.data).into_owned(),
            arrival_ms: record.approximate_arrival_timestamp_ms,
        }));
        match response.next_sequence_number {
            Some(next) => start = Some(next),
            None => return Ok(records),
        }
    }
    bail!("replica of shard {shard} at {endpoint} did not end within {DRAIN_PAGES_MAX} pages")
}

/// Each replica of the shard, read directly, must come to hold exactly `records` (replicas may
/// trail the leader for a moment after healing: polled, bounded).
async fn check_replicas(
    cluster: &mut Cluster,
    shard: u32,
    replicas: &[u64],
    records: &[Record],
    recorder: &Recorder,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for node in replicas {
        let Some(endpoint) = cluster.grpc_endpoint(*node) else {
            problems.push(format!("[replica] shard {shard}: replica node {node} is not in the topology"));
            continue;
        };
        let deadline = Instant::now() + REPLICA_AGREEMENT_LIMIT;
        loop {
            let seen = read_replica(&endpoint, shard).await;
            let difference = match &seen {
                Ok(replica) if replica == records => None,
                Ok(replica) => Some(describe_difference(replica, records)),
                Err(error) => Some(format!("{error:#}")),
            };
            let Some(difference) = difference else { break };
            if Instant::now() > deadline {
                problems.push(format!(
                    "[replica] shard {shard}: node {node}'s replica differs from the shard's records after {} s: {difference}",
                    REPLICA_AGREEMENT_LIMIT.as_secs()
                ));
                break;
            }
            for exit in cluster.supervise()? {
                progress(recorder, &exit);
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }
    Ok(problems)
}

fn describe_difference(replica: &[Record], records: &[Record]) -> String {
    let common = replica.iter().zip(records).take_while(|(left, right)| left == right).count();
    format!(
        "{} records on the replica, {} in the shard, the same for the first {common}; replica has {:?}, shard has {:?} there",
        replica.len(),
        records.len(),
        replica.get(common).map(|record| (&record.sequence, &record.value)),
        records.get(common).map(|record| (&record.sequence, &record.value))
    )
}
