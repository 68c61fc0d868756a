//! Process-level test: a node loses its disk and comes back.
//!
//! The story: `riffle-node dev` runs three nodes; a writer puts records through every node
//! without retrying a value. Node 3 is killed with SIGKILL and, while it is down, its raft log
//! and segments are deleted: it restarts with the same id and an empty disk. It must notice (its
//! log says so), catch up from its peers, and only then count in votes. Then node 1 is killed,
//! so every quorum needs node 3: writes must go on, and in the end every acknowledged record is
//! read back once, in order per partition key.
//!
//! Rerun with `cargo test -p riffle-node --test disk_loss -- --nocapture`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use riffle_client::Client;
use tokio::sync::watch;

mod common;

use common::{await_acks, check_values, connect, node_pid, read_shard, write_values, Dev, POLLS_MAX, POLL_PAUSE};

const RERUN: &str = "cargo test -p riffle-node --test disk_loss -- --nocapture";
const STREAM: &str = "amnesia";
const KEYS: u32 = 8;
const RESTART_DELAY_MS: u64 = 1_500;
const VALUES_PER_PHASE: usize = 40;

/// Whether node `node`'s log holds `needle`.
fn node_log_has(dev: &Dev, node: u32, needle: &str) -> bool {
    std::fs::read_to_string(dev.data_dir().join(format!("node-{node}/node.log"))).is_ok_and(|log| log.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_disk_catches_up_before_it_counts_in_a_quorum() {
    let grpc_port = common::free_port_base(9);
    let mut dev = Dev::start(grpc_port, RESTART_DELAY_MS, RERUN);
    let pids: Vec<i32> = (1..=3).map(|node| node_pid(&dev.wait_for_line(&format!("node {node} (zone")))).collect();
    dev.wait_for_line("Ctrl-C stops all three nodes.");
    let client = connect(grpc_port).await;
    common::create_active_stream(&client, STREAM, 2, RERUN).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let (count, mut counted) = watch::channel(0usize);
    let writer =
        tokio::spawn(write_values(connect(grpc_port).await, STREAM, KEYS, stop.clone(), acknowledged.clone(), count));
    await_acks(&mut counted, VALUES_PER_PHASE, RERUN).await;

    // Node 3 dies and loses its disk while it is down.
    // SAFETY: signals a node process this test's dev started.
    assert_eq!(unsafe { libc::kill(pids[2], libc::SIGKILL) }, 0, "killing node 3");
    dev.wait_for_line("node 3 exited");
    let node_dir = dev.data_dir().join("node-3");
    for part in ["raft", "segments"] {
        std::fs::remove_dir_all(node_dir.join(part)).unwrap_or_else(|error| panic!("wiping node 3's {part}: {error}"));
    }
    let restarted = dev.wait_for_line("node 3 restarted");
    assert!(
        node_log_has(&dev, 3, "lost its data") || {
            // The log line may take a moment to be written.
            let mut seen = false;
            for _ in 0..POLLS_MAX {
                if node_log_has(&dev, 3, "lost its data") {
                    seen = true;
                    break;
                }
                tokio::time::sleep(POLL_PAUSE).await;
            }
            seen
        },
        "node 3 did not notice it lost its data ({restarted}); rerun: {RERUN}"
    );
    let written = *counted.borrow();
    await_acks(&mut counted, written + VALUES_PER_PHASE, RERUN).await;
    let mut caught_up = false;
    for _ in 0..POLLS_MAX {
        if node_log_has(&dev, 3, "caught up after losing its disk") {
            caught_up = true;
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    assert!(caught_up, "node 3 never caught up with the metadata; rerun: {RERUN}");

    // Node 1 dies: every quorum now needs node 3, which must hold what it was sent.
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pids[0], libc::SIGKILL) }, 0, "killing node 1");
    dev.wait_for_line("node 1 exited");
    let written = *counted.borrow();
    await_acks(&mut counted, written + VALUES_PER_PHASE, RERUN).await;
    // The cluster status, through node 2: three nodes in three zones, node 3 (which lost its
    // disk) reachable, and every group with a leader (node 1 may be back already).
    let status = Client::connect(vec![format!("http://127.0.0.1:{}", grpc_port + 1)])
        .await
        .expect("an endpoint")
        .cluster_status()
        .await
        .expect("a cluster status");
    let zones: Vec<(u64, &str)> = status.nodes.iter().map(|node| (node.node_id, node.zone.as_str())).collect();
    assert_eq!(zones, [(1, "a"), (2, "b"), (3, "c")], "rerun: {RERUN}");
    assert!(status.nodes[2].reachable, "node 3 answers; rerun: {RERUN}");
    assert_eq!(status.groups.len(), 3, "the metadata group and two shards: {:?}", status.groups);
    assert!(status.groups.iter().all(|group| group.leader.is_some()), "{:?}; rerun: {RERUN}", status.groups);
    let leaders: u32 = status.nodes.iter().map(|node| node.leaders).sum();
    assert_eq!(leaders, 3, "each group counted once under its leader: {:?}", status.nodes);
    dev.wait_for_line("node 1 restarted");
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("the writer ends");

    let mut read = Vec::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        read.extend(read_shard(&client, STREAM, shard, RERUN).await);
    }
    let acknowledged = acknowledged.lock().expect("ack list lock").clone();
    check_values(&read, &acknowledged, RERUN);
}
