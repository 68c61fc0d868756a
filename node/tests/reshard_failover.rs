//! Process-level test: a split whose parent's leader is killed in the middle.
//!
//! The story: `riffle-node dev` runs three nodes; a writer puts records with 8 partition keys
//! through every node, one value after another, without retrying a value (an unknown outcome
//! is simply not counted as acknowledged). SplitShard (the official AWS SDK, through the
//! Kinesis API) closes shard 0, and at once the node leading shard 0 is killed with SIGKILL.
//! `dev` restarts it; another replica takes the lead and finishes the seal. The stream must
//! become ACTIVE again with shard 0 closed and its two children open, and reading the whole
//! lineage (parents before children) must give every acknowledged record once, in order per
//! partition key.
//!
//! Rerun with `cargo test -p riffle-node --test reshard_failover -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::StreamStatus;
use riffle_client::proto::{GetShardIteratorRequest, PutRecordRequest, ShardIteratorType};
use riffle_client::{Client, ClientConfig};
use tokio::sync::watch;

mod common;

use common::{node_pid, Dev};

const RERUN: &str = "cargo test -p riffle-node --test reshard_failover -- --nocapture";
const STREAM: &str = "reshard";
const KEYS: u32 = 8;
const RESTART_DELAY_MS: u64 = 500;
/// Values written before the split, and at least this many after the kill.
const VALUES_BEFORE: u32 = 40;
const VALUES_AFTER: u32 = 60;
const POLLS_MAX: u32 = 300;
const POLL_PAUSE: Duration = Duration::from_millis(200);
const READ_PAGES_MAX: u32 = 2_000;
/// Longest wait for the writer's acknowledgements; far above what a slow debug build needs.
const ACK_WAIT: Duration = Duration::from_secs(120);

fn kinesis(kinesis_port: u16) -> aws_sdk_kinesis::Client {
    let http_client = common::sdk_http_client();
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("anonymous", "anonymous", None, None, "test"))
        .endpoint_url(format!("http://127.0.0.1:{kinesis_port}"))
        .http_client(http_client)
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

async fn connect(grpc_port: u16) -> Client {
    let endpoints = (0..3).map(|node| format!("http://127.0.0.1:{}", grpc_port + node)).collect();
    let config = ClientConfig { retries_max: 6, request_timeout_ms: 10_000, ..ClientConfig::default() };
    Client::connect_with_config(endpoints, config).await.expect("valid endpoints")
}

/// Writes values in order until `stop`, recording those acknowledged (in order) and telling
/// `count` how many there are.
async fn write(client: Client, stop: Arc<AtomicBool>, acknowledged: Arc<Mutex<Vec<u32>>>, count: watch::Sender<usize>) {
    let mut value = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let request = PutRecordRequest {
            stream_name: STREAM.into(),
            data: format!("{value}").into_bytes().into(),
            partition_key: format!("key-{}", value % KEYS),
            explicit_hash_key: None,
            sequence_number_for_ordering: None,
        };
        if client.put_record(request).await.is_ok() {
            acknowledged.lock().expect("ack list lock").push(value);
            count.send_modify(|count| *count += 1);
        } else {
            // Paces attempts while a leader is elected; it synchronises nothing.
            tokio::time::sleep(POLL_PAUSE).await;
        }
        value += 1;
    }
}

/// Waits (at most [`ACK_WAIT`]) until the writer has `target` acknowledgements.
async fn await_acks(counted: &mut watch::Receiver<usize>, target: usize) {
    let reached = tokio::time::timeout(ACK_WAIT, counted.wait_for(|count| *count >= target)).await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "the writer did not reach {target} acknowledgements within {} s; rerun: {RERUN}",
        ACK_WAIT.as_secs()
    );
}

/// Every record of one shard from TRIM_HORIZON, as (partition key, value).
async fn read_shard(client: &Client, shard_id: &str) -> Vec<(String, u32)> {
    let request = GetShardIteratorRequest {
        stream_name: STREAM.into(),
        shard_id: shard_id.into(),
        shard_iterator_type: ShardIteratorType::TrimHorizon as i32,
        starting_sequence_number: None,
        timestamp_ms: None,
    };
    let mut iterator = client.get_shard_iterator(request).await.expect("an iterator").shard_iterator;
    let mut records = Vec::new();
    for _ in 0..READ_PAGES_MAX {
        let page = client.get_records(&iterator, Some(1_000)).await.expect("a page");
        let empty = page.records.is_empty();
        for record in page.records {
            let value = String::from_utf8_lossy(&record.data).parse().expect("values are numbers");
            records.push((record.partition_key, value));
        }
        match page.next_shard_iterator {
            None => return records,
            Some(_) if empty && page.millis_behind_latest == 0 => return records,
            Some(next) => iterator = next,
        }
    }
    panic!("{shard_id} did not end within {READ_PAGES_MAX} pages; rerun: {RERUN}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_whose_parent_leader_dies_completes_and_keeps_every_record_in_order() {
    let grpc_port = common::free_port_base(9);
    let kinesis_port = grpc_port + 6;
    let mut dev = Dev::start(grpc_port, RESTART_DELAY_MS, RERUN);
    let pids: Vec<i32> = (1..=3).map(|node| node_pid(&dev.wait_for_line(&format!("node {node} (zone")))).collect();
    dev.wait_for_line("Ctrl-C stops all three nodes.");
    let client = connect(grpc_port).await;
    let mut created = false;
    for _ in 0..POLLS_MAX {
        if client.create_stream(STREAM, 2, None).await.is_ok() {
            created = true;
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    assert!(created, "the stream was never created; rerun: {RERUN}");
    client.wait_for_stream_active(STREAM, POLLS_MAX).await.expect("ACTIVE");

    // Phase 1: writes flow.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let (count, mut counted) = watch::channel(0usize);
    let writer = tokio::spawn(write(connect(grpc_port).await, stop.clone(), acknowledged.clone(), count));
    await_acks(&mut counted, VALUES_BEFORE as usize).await;

    // Phase 2: split shard 0 and kill its leader at once.
    let description = client.describe_stream(STREAM).await.expect("a description");
    let parent = &description.shards[0];
    let leader = parent.leader_node.expect("shard 0 has a leader");
    let start: u128 = parent.hash_key_range.as_ref().expect("a range").starting_hash_key.parse().expect("a number");
    let end: u128 = parent.hash_key_range.as_ref().expect("a range").ending_hash_key.parse().expect("a number");
    let sdk = kinesis(kinesis_port + (leader as u16 % 3));
    sdk.split_shard()
        .stream_name(STREAM)
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((start + (end - start) / 2).to_string())
        .send()
        .await
        .expect("SplitShard is accepted");
    // SAFETY: signals a node process this test's dev started.
    assert_eq!(unsafe { libc::kill(pids[leader as usize - 1], libc::SIGKILL) }, 0, "killing the parent's leader");
    dev.wait_for_line(&format!("node {leader} exited"));
    dev.wait_for_line(&format!("node {leader} restarted"));

    // Phase 3: the reshard completes; writes continue into the children.
    let survivor = kinesis(kinesis_port + (leader as u16 % 3));
    let mut active = false;
    for _ in 0..POLLS_MAX {
        let summary = survivor.describe_stream_summary().stream_name(STREAM).send().await;
        if summary.ok().and_then(|answer| answer.stream_description_summary).map(|summary| summary.stream_status)
            == Some(StreamStatus::Active)
        {
            active = true;
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    assert!(active, "the stream never became ACTIVE again after the split; rerun: {RERUN}");
    let written = *counted.borrow();
    await_acks(&mut counted, written + VALUES_AFTER as usize).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("the writer ends");

    let shards = client.list_shards(STREAM).await.expect("the shards");
    assert_eq!(shards.len(), 4, "shard 0 split into two children: {shards:?}");
    let parent = &shards[0];
    assert!(
        parent.sequence_number_range.as_ref().and_then(|range| range.ending_sequence_number.as_ref()).is_some(),
        "shard 0 is closed"
    );
    for child in &shards[2..] {
        assert_eq!(child.parent_shard_id.as_deref(), Some("shardId-000000000000"));
    }

    // Phase 4: the lineage, parents first, holds every acknowledged record once, in order per key.
    let mut read = Vec::new();
    for shard in ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002", "shardId-000000000003"] {
        read.extend(read_shard(&client, shard).await);
    }
    let acknowledged = acknowledged.lock().expect("ack list lock").clone();
    let mut seen = BTreeSet::new();
    let mut last_per_key: BTreeMap<String, u32> = BTreeMap::new();
    for (key, value) in &read {
        assert!(seen.insert(*value), "value {value} read twice; rerun: {RERUN}");
        if let Some(previous) = last_per_key.insert(key.clone(), *value) {
            assert!(previous < *value, "{key}: {value} read after {previous}; rerun: {RERUN}");
        }
    }
    let missing: Vec<u32> = acknowledged.iter().filter(|value| !seen.contains(value)).copied().collect();
    assert!(missing.is_empty(), "acknowledged values missing: {missing:?}; rerun: {RERUN}");
    assert!(acknowledged.len() >= (VALUES_BEFORE + VALUES_AFTER) as usize, "the writer made progress");
}
