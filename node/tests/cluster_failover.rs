//! Process-level failover test: three real `riffle-node` processes on loopback.
//!
//! The story: two writers put 10,000 uniquely valued records over a 4-shard stream; after about
//! 3,000 acknowledgements the leader of one shard is killed with SIGKILL while the writers keep
//! going through the surviving nodes. Once everything is acknowledged the killed node restarts
//! from its own data and, after it shows leaders for every shard, a different node is killed so
//! the restarted one is needed for every quorum. Then every shard is read from TRIM_HORIZON and
//! the history is checked: every acknowledged record is where its ack said (shard and sequence
//! number), sequence numbers increase within a shard, nothing unsent appears, and only retried
//! values appear twice.
//!
//! Rerun with `cargo test -p riffle-node --test cluster_failover -- --nocapture`; node logs are
//! kept in the temporary directory printed on failure.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use riffle_client::proto::{GetShardIteratorRequest, PutRecordsRequest, PutRecordsRequestEntry, ShardIteratorType};
use riffle_client::{Client, ClientConfig};
use tokio::sync::watch;

mod common;

const RERUN: &str = "cargo test -p riffle-node --test cluster_failover -- --nocapture";
const NODE_COUNT: usize = 3;
const STREAM: &str = "failover";
const SHARD_COUNT: u32 = 4;
const RECORD_COUNT: u32 = 10_000;
const WRITER_COUNT: u32 = 2;
const BATCH_RECORDS: usize = 50;
/// Acknowledgements seen before the first kill.
const ACKS_BEFORE_KILL: usize = 3_000;
/// Attempts at one value before the writer gives up (each failed attempt is followed by a pause).
const PUT_ATTEMPTS_MAX: u32 = 60;
const RETRY_PAUSE_MS: u64 = 250;
/// Polls (each `POLL_PAUSE_MS` apart) of any condition the test waits for.
const POLLS_MAX: u32 = 300;
const POLL_PAUSE_MS: u64 = 200;
/// Errors tolerated while reading one shard (a leader may be in election).
const READ_ERRORS_MAX: u32 = 150;
const READ_PAGES_MAX: u32 = 2_000;
const READ_LIMIT: u32 = 1_000;
/// Liveness bound on the write phase; far above what it needs on a slow debug build.
const WRITE_PHASE_TIMEOUT_S: u64 = 150;

/// Three node processes and their files; kills every child when dropped, also on panic.
struct Cluster {
    directory: Option<tempfile::TempDir>,
    configs: Vec<PathBuf>,
    grpc_port: u16,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn start() -> Cluster {
        let directory =
            tempfile::Builder::new().prefix("riffle-failover-").tempdir().expect("creating a temporary directory");
        let grpc_port = common::free_port_base(6);
        let peer_port = grpc_port + 3;
        let configs = riffle_node::dev::write_dev_configs(directory.path(), grpc_port, peer_port)
            .expect("writing the dev configs");
        assert_eq!(configs.len(), NODE_COUNT);
        let mut cluster = Cluster {
            directory: Some(directory),
            configs,
            grpc_port,
            children: (0..NODE_COUNT).map(|_| None).collect(),
        };
        for node_id in 1..=NODE_COUNT as u64 {
            cluster.spawn(node_id);
        }
        cluster
    }

    fn root(&self) -> &Path {
        self.directory.as_ref().expect("the directory lives as long as the cluster").path()
    }

    fn log_path(&self, node_id: u64) -> PathBuf {
        self.root().join(format!("node-{node_id}.log"))
    }

    fn endpoint(&self, node_id: u64) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port + node_id as u16 - 1)
    }

    fn endpoints_except(&self, excluded: &[u64]) -> Vec<String> {
        (1..=NODE_COUNT as u64).filter(|id| !excluded.contains(id)).map(|id| self.endpoint(id)).collect()
    }

    fn spawn(&mut self, node_id: u64) {
        let index = node_id as usize - 1;
        assert!(self.children[index].is_none(), "node {node_id} is already running");
        let log_path = self.log_path(node_id);
        let log = File::options().create(true).append(true).open(&log_path).expect("opening a node log");
        let child = Command::new(env!("CARGO_BIN_EXE_riffle-node"))
            .arg("--config")
            .arg(&self.configs[index])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning a log handle"))
            .stderr(log)
            .spawn()
            .expect("starting riffle-node");
        self.children[index] = Some(child);
    }

    /// SIGKILL: the node gets no chance to flush or say goodbye.
    fn kill(&mut self, node_id: u64) {
        let mut child =
            self.children[node_id as usize - 1].take().unwrap_or_else(|| panic!("node {node_id} is not running"));
        child.kill().expect("sending SIGKILL");
        child.wait().expect("reaping a killed node");
    }

    fn assert_running(&mut self) {
        for (index, child) in self.children.iter_mut().enumerate() {
            if let Some(child) = child {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("node {} exited by itself ({status})", index + 1);
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take).collect::<Vec<_>>().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            if let Some(directory) = self.directory.take() {
                let kept = directory.keep();
                eprintln!("cluster_failover failed; node logs are kept:");
                for node_id in 1..=NODE_COUNT as u64 {
                    eprintln!("  {}", kept.join(format!("node-{node_id}.log")).display());
                }
                eprintln!("rerun: {RERUN}");
            }
        }
    }
}

fn value_name(value: u32) -> String {
    format!("r-{value:06}")
}

fn parse_value(data: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(data).ok()?;
    let digits = text.strip_prefix("r-")?;
    if digits.len() != 6 {
        return None;
    }
    digits.parse().ok().filter(|value| *value < RECORD_COUNT)
}

/// A partition key that spreads values over the hash space without looking sequential.
fn partition_key(value: u32) -> String {
    let mut mixed = u64::from(value).wrapping_add(0x9e37_79b9_7f4a_7c15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("pk-{:016x}", mixed ^ (mixed >> 31))
}

/// Sequence numbers are decimal strings of one fixed length (too long for `u128`), so
/// comparing the strings compares the numbers.
const SEQUENCE_NUMBER_DIGITS: usize = 56;

fn assert_sequence_number(sequence_number: &str) {
    assert!(
        sequence_number.len() == SEQUENCE_NUMBER_DIGITS && sequence_number.bytes().all(|byte| byte.is_ascii_digit()),
        "sequence number {sequence_number:?} is not {SEQUENCE_NUMBER_DIGITS} decimal digits; rerun: {RERUN}"
    );
}

struct Ack {
    value: u32,
    shard_id: String,
    sequence_number: String,
    at: Instant,
}

#[derive(Default)]
struct WriterReport {
    acks: Vec<Ack>,
    /// Values sent more than once: their outcome was unknown at least once.
    retried: BTreeSet<u32>,
    failed_attempts: u64,
    /// Error kinds seen (per-record error codes and failed calls) and how often.
    errors: BTreeMap<String, u64>,
    /// The longest PutRecords call, whatever its outcome.
    slowest_call: Duration,
}

async fn write_values(client: Client, values: Vec<u32>, acked: Arc<watch::Sender<usize>>) -> WriterReport {
    let mut report = WriterReport::default();
    let mut pending: VecDeque<(u32, u32)> = values.into_iter().map(|value| (value, 0)).collect();
    while !pending.is_empty() {
        let batch: Vec<(u32, u32)> = pending.drain(..BATCH_RECORDS.min(pending.len())).collect();
        let request = PutRecordsRequest {
            stream_name: STREAM.to_string(),
            records: batch
                .iter()
                .map(|(value, _)| PutRecordsRequestEntry {
                    data: value_name(*value).into_bytes().into(),
                    partition_key: partition_key(*value),
                    explicit_hash_key: None,
                })
                .collect(),
        };
        let mut failed = Vec::new();
        let call_started = Instant::now();
        let outcome = client.put_records(request).await;
        report.slowest_call = report.slowest_call.max(call_started.elapsed());
        match outcome {
            Ok(response) => {
                let now = Instant::now();
                let mut acked_here = 0;
                for ((value, attempts), entry) in batch.into_iter().zip(response.records) {
                    match (&entry.error_code, entry.shard_id, entry.sequence_number) {
                        (None, Some(shard_id), Some(sequence_number)) => {
                            report.acks.push(Ack { value, shard_id, sequence_number, at: now });
                            acked_here += 1;
                        }
                        (code, _, _) => {
                            let kind = code.clone().unwrap_or_else(|| "entry without sequence number".into());
                            *report.errors.entry(kind).or_default() += 1;
                            failed.push((value, attempts));
                        }
                    }
                }
                acked.send_modify(|count| *count += acked_here);
            }
            Err(error) => {
                let kind = error.error_type().map(str::to_owned).unwrap_or_else(|| format!("{error}"));
                *report.errors.entry(kind).or_default() += 1;
                failed = batch;
            }
        }
        if !failed.is_empty() {
            report.failed_attempts += failed.len() as u64;
            for (value, attempts) in failed {
                assert!(
                    attempts + 1 < PUT_ATTEMPTS_MAX,
                    "{} was not acknowledged after {PUT_ATTEMPTS_MAX} attempts; errors seen: {:?}; rerun: {RERUN}",
                    value_name(value),
                    report.errors
                );
                report.retried.insert(value);
                pending.push_back((value, attempts + 1));
            }
            // Paces retries while a leader is elected; it synchronises nothing.
            tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
        }
    }
    report
}

fn client_config() -> ClientConfig {
    ClientConfig { retries_max: 6, request_timeout_ms: 10_000, ..ClientConfig::default() }
}

async fn connect(endpoints: Vec<String>) -> Client {
    Client::connect_with_config(endpoints, client_config()).await.expect("valid endpoints")
}

/// Polls DescribeStream until every shard names a leader; returns shard id → leader node.
async fn wait_for_leaders(client: &Client, what: &str) -> BTreeMap<String, u64> {
    let mut last = String::from("no answer yet");
    for _ in 0..POLLS_MAX {
        match client.describe_stream(STREAM).await {
            Ok(description) => {
                let leaders: BTreeMap<String, u64> = description
                    .shards
                    .iter()
                    .filter_map(|shard| shard.leader_node.map(|leader| (shard.shard_id.clone(), leader)))
                    .collect();
                if description.shards.len() == SHARD_COUNT as usize && leaders.len() == description.shards.len() {
                    return leaders;
                }
                last = format!("{} of {} shards have a leader", leaders.len(), description.shards.len());
            }
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(POLL_PAUSE_MS)).await;
    }
    panic!("{what}: not every shard showed a leader after {POLLS_MAX} polls (last: {last}); rerun: {RERUN}");
}

struct ReadRecord {
    value: u32,
    sequence_number: String,
}

/// Reads one shard from TRIM_HORIZON until a page is empty and nothing is behind.
async fn read_shard(client: &Client, shard_id: &str) -> Vec<ReadRecord> {
    let mut errors = 0;
    let mut last_error = String::new();
    let mut iterator = loop {
        let request = GetShardIteratorRequest {
            stream_name: STREAM.to_string(),
            shard_id: shard_id.to_string(),
            shard_iterator_type: ShardIteratorType::TrimHorizon as i32,
            starting_sequence_number: None,
            timestamp_ms: None,
        };
        match client.get_shard_iterator(request).await {
            Ok(response) => break response.shard_iterator,
            Err(error) => {
                errors += 1;
                assert!(errors < READ_ERRORS_MAX, "GetShardIterator({shard_id}) kept failing: {error}; rerun: {RERUN}");
                tokio::time::sleep(Duration::from_millis(POLL_PAUSE_MS)).await;
            }
        }
    };
    let mut records = Vec::new();
    for _ in 0..READ_PAGES_MAX {
        let response = match client.get_records(&iterator, Some(READ_LIMIT)).await {
            Ok(response) => response,
            Err(error) => {
                errors += 1;
                last_error = error.to_string();
                assert!(errors < READ_ERRORS_MAX, "GetRecords({shard_id}) kept failing: {last_error}; rerun: {RERUN}");
                tokio::time::sleep(Duration::from_millis(POLL_PAUSE_MS)).await;
                continue;
            }
        };
        let page_empty = response.records.is_empty();
        for record in response.records {
            let value = parse_value(&record.data).unwrap_or_else(|| {
                panic!(
                    "{shard_id} holds a record that was never sent: {:?} at {}; rerun: {RERUN}",
                    record.data, record.sequence_number
                )
            });
            records.push(ReadRecord { value, sequence_number: record.sequence_number });
        }
        if page_empty && response.millis_behind_latest == 0 {
            return records;
        }
        match response.next_shard_iterator {
            Some(next) => iterator = next,
            None => return records,
        }
    }
    panic!("{shard_id}: not at the end after {READ_PAGES_MAX} pages (last error: {last_error}); rerun: {RERUN}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_leader_kill_and_restart() {
    let started = Instant::now();
    let mut cluster = Cluster::start();
    let all_endpoints = cluster.endpoints_except(&[]);

    // Phase 1: a 4-shard stream, ACTIVE with a leader on every shard.
    let admin = connect(all_endpoints.clone()).await;
    let mut created = false;
    for _ in 0..POLLS_MAX {
        match admin.create_stream(STREAM, SHARD_COUNT, None).await {
            Ok(_) => {
                created = true;
                break;
            }
            Err(error) if error.error_type() == Some("ResourceInUseException") => {
                created = true;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(POLL_PAUSE_MS)).await,
        }
    }
    assert!(created, "CreateStream never succeeded; see the node logs; rerun: {RERUN}");
    admin
        .wait_for_stream_active(STREAM, POLLS_MAX)
        .await
        .unwrap_or_else(|error| panic!("stream not ACTIVE: {error}; rerun: {RERUN}"));
    let leaders = wait_for_leaders(&admin, "after CreateStream").await;
    let ready_at = Instant::now();

    // Phase 2: writers over all three endpoints; kill one shard's leader after ~3,000 acks.
    let (acked_sender, mut acked_receiver) = watch::channel(0usize);
    let acked_sender = Arc::new(acked_sender);
    let mut writers = Vec::new();
    for writer in 0..WRITER_COUNT {
        let values: Vec<u32> = (0..RECORD_COUNT).filter(|value| value % WRITER_COUNT == writer).collect();
        let client = connect(all_endpoints.clone()).await;
        writers.push(tokio::spawn(write_values(client, values, acked_sender.clone())));
    }
    let write_phase = async {
        acked_receiver.wait_for(|count| *count >= ACKS_BEFORE_KILL).await.expect("writers hold the sender");
        let leaders = wait_for_leaders(&admin, "before the kill").await;
        let (victim_shard, victim) =
            leaders.iter().next().map(|(shard, node)| (shard.clone(), *node)).expect("four shards");
        let acks_at_kill = *acked_receiver.borrow();
        cluster.kill(victim);
        let killed_at = Instant::now();
        let mut reports = Vec::new();
        for writer in writers {
            reports.push(writer.await.unwrap_or_else(|error| panic!("a writer failed: {error}")));
        }
        (victim_shard, victim, acks_at_kill, killed_at, reports)
    };
    let (victim_shard, victim, acks_at_kill, killed_at, reports) =
        tokio::time::timeout(Duration::from_secs(WRITE_PHASE_TIMEOUT_S), write_phase)
            .await
            .unwrap_or_else(|_| panic!("the writers did not finish within {WRITE_PHASE_TIMEOUT_S} s; rerun: {RERUN}"));
    let written_at = Instant::now();
    cluster.assert_running();

    let mut acks: HashMap<u32, Vec<(String, String)>> = HashMap::new();
    let mut retried = BTreeSet::new();
    let mut failed_attempts = 0;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut slowest_call = Duration::ZERO;
    let mut first_ack_after_kill: Option<Instant> = None;
    let mut first_victim_shard_ack_after_kill: Option<Instant> = None;
    for report in reports {
        for ack in report.acks {
            if ack.at > killed_at {
                first_ack_after_kill = Some(first_ack_after_kill.map_or(ack.at, |first| first.min(ack.at)));
                if ack.shard_id == victim_shard {
                    first_victim_shard_ack_after_kill =
                        Some(first_victim_shard_ack_after_kill.map_or(ack.at, |first| first.min(ack.at)));
                }
            }
            acks.entry(ack.value).or_default().push((ack.shard_id, ack.sequence_number));
        }
        retried.extend(report.retried);
        slowest_call = slowest_call.max(report.slowest_call);
        failed_attempts += report.failed_attempts;
        for (kind, count) in report.errors {
            *errors.entry(kind).or_default() += count;
        }
    }
    assert_eq!(acks.len(), RECORD_COUNT as usize, "every value is acknowledged; rerun: {RERUN}");

    // Phase 3: restart the killed node; it must show a leader for every shard itself.
    cluster.spawn(victim);
    let restarted_client = connect(vec![cluster.endpoint(victim)]).await;
    let leaders_after_restart = wait_for_leaders(&restarted_client, "through the restarted node").await;
    let caught_up_at = Instant::now();

    // Phase 4: kill another node, preferring one that leads shards, so the restarted node is
    // needed for every quorum and for every election that follows.
    let second_victim = (1..=NODE_COUNT as u64)
        .filter(|node| *node != victim)
        .max_by_key(|node| leaders_after_restart.values().filter(|leader| *leader == node).count())
        .expect("two other nodes");
    cluster.kill(second_victim);
    let reader = connect(cluster.endpoints_except(&[second_victim])).await;
    let mut read: BTreeMap<String, Vec<ReadRecord>> = BTreeMap::new();
    for shard_id in leaders.keys() {
        read.insert(shard_id.clone(), read_shard(&reader, shard_id).await);
    }
    cluster.assert_running();

    // Phase 5: check the history.
    let mut found: HashMap<u32, Vec<(String, String)>> = HashMap::new();
    for (shard_id, records) in &read {
        for record in records {
            assert_sequence_number(&record.sequence_number);
        }
        for pair in records.windows(2) {
            assert!(
                pair[0].sequence_number < pair[1].sequence_number,
                "{shard_id}: sequence numbers do not increase: {} then {}; rerun: {RERUN}",
                pair[0].sequence_number,
                pair[1].sequence_number
            );
        }
        for record in records {
            found.entry(record.value).or_default().push((shard_id.clone(), record.sequence_number.clone()));
        }
    }
    let mut lost = Vec::new();
    for (value, value_acks) in &acks {
        for ack in value_acks {
            if !found.get(value).is_some_and(|places| places.contains(ack)) {
                lost.push(format!(
                    "{} acked at {} {} but read at {:?}",
                    value_name(*value),
                    ack.0,
                    ack.1,
                    found.get(value)
                ));
            }
        }
    }
    lost.sort();
    assert!(
        lost.is_empty(),
        "{} acknowledged records are missing or moved, e.g. {:?}; rerun: {RERUN}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let unexpected_duplicates: Vec<String> = found
        .iter()
        .filter(|(value, places)| places.len() > 1 && !retried.contains(*value))
        .map(|(value, places)| format!("{} at {places:?}", value_name(*value)))
        .collect();
    assert!(
        unexpected_duplicates.is_empty(),
        "values sent once appear more than once: {:?}; rerun: {RERUN}",
        &unexpected_duplicates[..unexpected_duplicates.len().min(5)]
    );
    assert_eq!(found.len(), RECORD_COUNT as usize, "distinct values read; rerun: {RERUN}");

    let read_total: usize = read.values().map(Vec::len).sum();
    let since_kill = |at: Option<Instant>| {
        at.map_or("none".to_string(), |at| format!("{} ms", at.duration_since(killed_at).as_millis()))
    };
    eprintln!("cluster_failover summary:");
    eprintln!(
        "  acked {} records ({} distinct) over {SHARD_COUNT} shards; killed node {victim} (leader of {victim_shard}) at {acks_at_kill} acks",
        acks.values().map(Vec::len).sum::<usize>(),
        acks.len()
    );
    eprintln!("  retried values {}, failed attempts {failed_attempts}, errors {errors:?}", retried.len());
    eprintln!(
        "  first ack after the kill: {}; first ack on {victim_shard}: {}; slowest PutRecords call {} ms",
        since_kill(first_ack_after_kill),
        since_kill(first_victim_shard_ack_after_kill),
        slowest_call.as_millis()
    );
    eprintln!(
        "  read {read_total} records ({} duplicates of retried values); then killed node {second_victim}",
        read_total - found.len()
    );
    eprintln!(
        "  phases: ready {} ms, writes {} ms, restart caught up {} ms, total {} ms",
        ready_at.duration_since(started).as_millis(),
        written_at.duration_since(ready_at).as_millis(),
        caught_up_at.duration_since(written_at).as_millis(),
        started.elapsed().as_millis()
    );
}
