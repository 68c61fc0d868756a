//! Process-level test: a node joins under load, a whole zone is lost, a dead node is
//! decommissioned.
//!
//! The story: `riffle-node dev` runs nodes 1, 2, 3 in zones a, b, c (dead nodes stay down), a
//! stream has four shards, and a writer puts records through every node without retrying a
//! value. Node 4 joins zone a (`riffle-node dev-join`): it must receive a fair share of zone
//! a's replicas (two of four) and lead at least one shard. Then zone a is lost — nodes 1 and 4
//! killed — and writes must go on through zones b and c. Node 4 comes back; node 1, still dead,
//! is decommissioned: its replicas move to node 4 and it is removed. In the end every
//! acknowledged record is read back once, in order per partition key.
//!
//! Rerun with `cargo test -p riffle-node --test membership -- --nocapture`.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use riffle_client::Client;
use tokio::sync::watch;

mod common;

use common::{await_acks, check_values, connect, node_pid, read_shard, write_values, Dev, POLLS_MAX, POLL_PAUSE};

const RERUN: &str = "cargo test -p riffle-node --test membership -- --nocapture";
const STREAM: &str = "members";
const SHARDS: u32 = 4;
const KEYS: u32 = 8;
/// Dead nodes stay down for the whole test.
const RESTART_DELAY_MS: u64 = 600_000;
const VALUES_PER_PHASE: usize = 40;

/// Node 4, run by `riffle-node dev-join` (its log is `node-4/node.log`).
struct Joined(Option<Child>);

impl Joined {
    fn start(dev: &Dev, base: u16) -> Joined {
        let log_path = dev.data_dir().join("node-4.out");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("node 4's log");
        let child = Command::new(env!("CARGO_BIN_EXE_riffle-node"))
            .arg("dev-join")
            .arg("--data-dir")
            .arg(dev.data_dir())
            .args(["--node-id", "4", "--zone", "a"])
            .args(["--grpc-port", &(base + 9).to_string()])
            .args(["--peer-port", &(base + 10).to_string()])
            .args(["--kinesis-port", &(base + 11).to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("starting riffle-node dev-join");
        Joined(Some(child))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls the cluster status (boundedly) until `done` holds for it.
async fn await_status(
    client: &Client,
    what: &str,
    done: impl Fn(&riffle_client::proto::ClusterStatusResponse) -> bool,
) {
    let mut last = None;
    for _ in 0..POLLS_MAX * 2 {
        if let Ok(status) = client.cluster_status().await {
            if done(&status) {
                return;
            }
            last = Some(status);
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    panic!("the cluster never reached: {what}; last status: {last:#?}; rerun: {RERUN}");
}

fn node_of(status: &riffle_client::proto::ClusterStatusResponse, id: u64) -> Option<&riffle_client::proto::NodeStatus> {
    status.nodes.iter().find(|node| node.node_id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_and_leave_and_a_zone_is_lost_under_load() {
    let base = common::free_port_base(12);
    let mut dev = Dev::start(base, RESTART_DELAY_MS, RERUN);
    let pids: Vec<i32> = (1..=3).map(|node| node_pid(&dev.wait_for_line(&format!("node {node} (zone")))).collect();
    dev.wait_for_line("Ctrl-C stops all three nodes.");
    let client = connect(base).await;
    common::create_active_stream(&client, STREAM, SHARDS, RERUN).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let (count, mut counted) = watch::channel(0usize);
    let writer =
        tokio::spawn(write_values(connect(base).await, STREAM, KEYS, stop.clone(), acknowledged.clone(), count));
    let mut target = VALUES_PER_PHASE;
    await_acks(&mut counted, target, RERUN).await;

    // Node 4 joins zone a and takes half of its replicas and a share of the leaders.
    let mut joined = Joined::start(&dev, base);
    await_status(&client, "node 4 holds two replicas and leads a shard", |status| {
        node_of(status, 4).is_some_and(|node| node.reachable && node.replicas == 2 && node.leaders >= 1)
            && node_of(status, 1).is_some_and(|node| node.replicas == 3)
    })
    .await;
    target += VALUES_PER_PHASE;
    await_acks(&mut counted, target, RERUN).await;

    // Zone a is lost: writes go on through zones b and c.
    joined.kill();
    // SAFETY: signals a node process this test's dev started.
    assert_eq!(unsafe { libc::kill(pids[0], libc::SIGKILL) }, 0, "killing node 1");
    dev.wait_for_line("node 1 exited");
    target = *counted.borrow() + VALUES_PER_PHASE;
    await_acks(&mut counted, target, RERUN).await;
    let status = client.cluster_status().await.expect("a status from zone b or c");
    for id in [1, 4] {
        assert!(
            node_of(&status, id).is_some_and(|node| !node.reachable),
            "node {id} should be down while zone a is lost: {status:#?}; rerun: {RERUN}"
        );
    }

    // Node 4 returns; node 1 stays dead and is decommissioned: its replicas move to node 4.
    let _joined = Joined::start(&dev, base);
    target = *counted.borrow() + VALUES_PER_PHASE;
    await_acks(&mut counted, target, RERUN).await;
    let mut decommissioned = false;
    for _ in 0..POLLS_MAX {
        if client.decommission_node(1).await.is_ok() {
            decommissioned = true;
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    assert!(decommissioned, "node 1 could not be decommissioned; rerun: {RERUN}");
    await_status(&client, "node 1 is removed and node 4 holds every shard", |status| {
        node_of(status, 1).is_some_and(|node| node.state == "removed")
            && node_of(status, 4).is_some_and(|node| node.replicas == SHARDS + 1)
    })
    .await;
    target = *counted.borrow() + VALUES_PER_PHASE;
    await_acks(&mut counted, target, RERUN).await;

    stop.store(true, Ordering::SeqCst);
    writer.await.expect("the writer ends");
    let mut read = Vec::new();
    for shard in 0..SHARDS {
        read.extend(read_shard(&client, STREAM, &format!("shardId-{shard:012}"), RERUN).await);
    }
    let acknowledged = acknowledged.lock().expect("ack list lock").clone();
    check_values(&read, &acknowledged, RERUN);
    println!("{} values acknowledged, {} read", acknowledged.len(), read.len());
}
