//! Process-level test of `riffle-node dev`: the local cluster survives a node's loss.
//!
//! The story: `riffle-node dev` starts three nodes and prints their process ids; a stream is
//! created and written. One node is killed with SIGKILL: `dev` says so and that the other two
//! keep serving, and writes through them go on. `dev` restarts the node after its delay; the
//! restarted node answers and takes writes, and every acknowledged record is read back through
//! it. SIGINT to `dev` stops every node and `dev` exits cleanly.
//!
//! Rerun with `cargo test -p riffle-node --test dev_cluster -- --nocapture`.

use std::collections::BTreeSet;
use std::time::Duration;

use riffle_client::proto::{GetShardIteratorRequest, PutRecordRequest, ShardIteratorType};
use riffle_client::{Client, ClientConfig};

mod common;

use common::{alive, node_pid, Dev};

const RERUN: &str = "cargo test -p riffle-node --test dev_cluster -- --nocapture";
const STREAM: &str = "survivor";
const SHARD_COUNT: u32 = 2;
const RECORDS_PER_PHASE: u32 = 20;
const RESTART_DELAY_MS: u64 = 300;
/// Attempts at one record before the test fails (a leader may be in election meanwhile).
const PUT_ATTEMPTS_MAX: u32 = 60;
/// Polls of a condition, `POLL_PAUSE` apart.
const POLLS_MAX: u32 = 300;
const POLL_PAUSE: Duration = Duration::from_millis(200);
const READ_PAGES_MAX: u32 = 1_000;

async fn connect(grpc_port: u16, nodes: &[u16]) -> Client {
    let endpoints = nodes.iter().map(|node| format!("http://127.0.0.1:{}", grpc_port + node - 1)).collect();
    let config = ClientConfig { retries_max: 6, request_timeout_ms: 10_000, ..ClientConfig::default() };
    Client::connect_with_config(endpoints, config).await.expect("valid endpoints")
}

/// Puts values `first..first + RECORDS_PER_PHASE`, each retried (bounded) until acknowledged.
/// A retried value may be stored twice; the reader only checks that each one is present.
async fn put_phase(client: &Client, first: u32) {
    for value in first..first + RECORDS_PER_PHASE {
        let mut last_error = String::new();
        let mut acknowledged = false;
        for _ in 0..PUT_ATTEMPTS_MAX {
            let request = PutRecordRequest {
                stream_name: STREAM.into(),
                data: format!("v{value}").into_bytes().into(),
                partition_key: format!("key-{value}"),
                explicit_hash_key: None,
                sequence_number_for_ordering: None,
            };
            match client.put_record(request).await {
                Ok(_) => {
                    acknowledged = true;
                    break;
                }
                Err(error) => {
                    last_error = error.to_string();
                    // Paces retries while a leader is elected; it synchronises nothing.
                    tokio::time::sleep(POLL_PAUSE).await;
                }
            }
        }
        assert!(acknowledged, "v{value} was never acknowledged (last error: {last_error}); rerun: {RERUN}");
    }
}

/// Every value stored in the stream, read from TRIM_HORIZON shard by shard.
async fn read_values(client: &Client) -> BTreeSet<String> {
    let mut values = BTreeSet::new();
    for shard in 0..SHARD_COUNT {
        let request = GetShardIteratorRequest {
            stream_name: STREAM.into(),
            shard_id: format!("shardId-{shard:012}"),
            shard_iterator_type: ShardIteratorType::TrimHorizon as i32,
            starting_sequence_number: None,
            timestamp_ms: None,
        };
        let mut iterator = client.get_shard_iterator(request).await.expect("an iterator").shard_iterator;
        for _ in 0..READ_PAGES_MAX {
            let page = client.get_records(&iterator, Some(1_000)).await.expect("a page of records");
            let empty = page.records.is_empty();
            values.extend(page.records.into_iter().map(|record| String::from_utf8_lossy(&record.data).into_owned()));
            match page.next_shard_iterator {
                Some(next) if !(empty && page.millis_behind_latest == 0) => iterator = next,
                _ => break,
            }
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_cluster_keeps_serving_through_a_node_kill_and_restarts_it() {
    let grpc_port = common::free_port_base(9);
    let mut dev = Dev::start(grpc_port, RESTART_DELAY_MS, RERUN);

    // Phase 1: three nodes, a stream, some records.
    let pids: Vec<i32> = (1..=3).map(|node| node_pid(&dev.wait_for_line(&format!("node {node} (zone")))).collect();
    dev.wait_for_line("Ctrl-C stops all three nodes.");
    let everyone = connect(grpc_port, &[1, 2, 3]).await;
    let mut created = false;
    for _ in 0..POLLS_MAX {
        match everyone.create_stream(STREAM, SHARD_COUNT, None).await {
            Ok(_) => {
                created = true;
                break;
            }
            // The nodes may still be electing the metadata leader.
            Err(_) => tokio::time::sleep(POLL_PAUSE).await,
        }
    }
    assert!(created, "the stream was never created; rerun: {RERUN}");
    everyone.wait_for_stream_active(STREAM, POLLS_MAX).await.expect("the stream becomes ACTIVE");
    put_phase(&everyone, 0).await;

    // Phase 2: node 2 is killed; dev says the others keep serving, and they do.
    // SAFETY: signals a node process this test's dev started.
    assert_eq!(unsafe { libc::kill(pids[1], libc::SIGKILL) }, 0, "killing node 2");
    let exited = dev.wait_for_line("node 2 exited");
    assert!(exited.contains("SIGKILL") && exited.contains("nodes 1 and 3 keep serving"), "{exited}");
    assert!(exited.contains(&format!("restarting it in {RESTART_DELAY_MS} ms")), "{exited}");
    let survivors = connect(grpc_port, &[1, 3]).await;
    put_phase(&survivors, RECORDS_PER_PHASE).await;

    // Phase 3: dev restarts node 2, which serves again.
    let restarted = dev.wait_for_line("node 2 restarted");
    let new_pid = node_pid(&restarted);
    assert_ne!(new_pid, pids[1], "node 2 runs as a new process");
    let restarted_node = connect(grpc_port, &[2]).await;
    let mut answered = false;
    for _ in 0..POLLS_MAX {
        if restarted_node.describe_stream(STREAM).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    assert!(answered, "the restarted node 2 never answered; rerun: {RERUN}");
    put_phase(&restarted_node, 2 * RECORDS_PER_PHASE).await;
    let stored = read_values(&restarted_node).await;
    let missing: Vec<String> =
        (0..3 * RECORDS_PER_PHASE).map(|value| format!("v{value}")).filter(|value| !stored.contains(value)).collect();
    assert!(missing.is_empty(), "acknowledged records missing after the restart: {missing:?}; rerun: {RERUN}");

    // Phase 4: SIGINT stops every node and dev itself, cleanly.
    // SAFETY: signals the dev process this test started.
    assert_eq!(unsafe { libc::kill(dev.pid(), libc::SIGINT) }, 0, "interrupting dev");
    dev.wait_for_line("stopped");
    let mut child = dev.child.take().expect("dev is running");
    let status = child.wait().expect("dev exits");
    assert!(status.success(), "dev exited with {status}; it printed:\n{}", dev.seen.join("\n"));
    for pid in [pids[0], new_pid, pids[2]] {
        assert!(!alive(pid), "node process {pid} outlived dev");
    }
}
