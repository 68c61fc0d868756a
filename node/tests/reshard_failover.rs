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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_kinesis::types::StreamStatus;
use tokio::sync::watch;

mod common;

use common::{
    await_acks, check_values, connect, kinesis, node_pid, read_shard, write_values, Dev, POLLS_MAX, POLL_PAUSE,
};

const RERUN: &str = "cargo test -p riffle-node --test reshard_failover -- --nocapture";
const STREAM: &str = "reshard";
const KEYS: u32 = 8;
const RESTART_DELAY_MS: u64 = 500;
/// Values written before the split, and at least this many after the kill.
const VALUES_BEFORE: u32 = 40;
const VALUES_AFTER: u32 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_whose_parent_leader_dies_completes_and_keeps_every_record_in_order() {
    let grpc_port = common::free_port_base(9);
    let kinesis_port = grpc_port + 6;
    let mut dev = Dev::start(grpc_port, RESTART_DELAY_MS, RERUN);
    let pids: Vec<i32> = (1..=3).map(|node| node_pid(&dev.wait_for_line(&format!("node {node} (zone")))).collect();
    dev.wait_for_line("Ctrl-C stops all three nodes.");
    let client = connect(grpc_port).await;
    common::create_active_stream(&client, STREAM, 2, RERUN).await;

    // Phase 1: writes flow.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let (count, mut counted) = watch::channel(0usize);
    let writer =
        tokio::spawn(write_values(connect(grpc_port).await, STREAM, KEYS, stop.clone(), acknowledged.clone(), count));
    await_acks(&mut counted, VALUES_BEFORE as usize, RERUN).await;

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
    await_acks(&mut counted, written + VALUES_AFTER as usize, RERUN).await;
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
        read.extend(read_shard(&client, STREAM, shard, RERUN).await);
    }
    let acknowledged = acknowledged.lock().expect("ack list lock").clone();
    check_values(&read, &acknowledged, RERUN);
    assert!(acknowledged.len() >= (VALUES_BEFORE + VALUES_AFTER) as usize, "the writer made progress");
}
