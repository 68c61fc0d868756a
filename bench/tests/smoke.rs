//! The CI smoke test of `riffle-bench`: a real three-node `riffle-node dev` cluster on free
//! loopback ports, a ~3 s `produce` through the gRPC driver and one through the Kinesis HTTP
//! driver, then a `consume` of the whole stream. It checks outcomes only — the JSON reports
//! parse, records were acknowledged, and the drain read at least what the producers had
//! acknowledged — never timings.
//!
//! The node binary is `$RIFFLE_NODE_BINARY`, else the `riffle-node` of this test's own build
//! (`cargo test --workspace` builds it); without one the test prints a note and passes. The
//! cluster runs in its own process group and is stopped by a guard, on success and on failure.

use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for the cluster to stop after SIGINT before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// Bounds passed to every bench run, so a broken cluster fails the test instead of hanging it.
const RUN_TIME_LIMIT_S: &str = "60";
const WAIT_READY_S: &str = "60";

fn node_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RIFFLE_NODE_BINARY") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().expect("this test's path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("riffle-node");
    binary.is_file().then_some(binary)
}

/// Three consecutive free TCP ports for gRPC and Kinesis and three UDP ports for QUIC peers,
/// from bases spread by this process's id.
fn free_ports() -> (u16, u16, u16) {
    let tcp_free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    let udp_free = |port: u16| UdpSocket::bind(("127.0.0.1", port)).is_ok();
    let start = 20_000 + (std::process::id() % 1_000) as u16 * 10;
    for attempt in 0..500u16 {
        let base = 20_000 + (start - 20_000 + attempt * 10) % 10_000;
        let (grpc, peer, kinesis) = (base, base + 3, base + 6);
        if (0..3).all(|offset| tcp_free(grpc + offset) && udp_free(peer + offset) && tcp_free(kinesis + offset)) {
            return (grpc, peer, kinesis);
        }
    }
    panic!("no free ports for a cluster between 20000 and 30000");
}

/// A running `riffle-node dev`, stopped when dropped.
struct Cluster {
    child: Child,
    log: PathBuf,
}

impl Cluster {
    fn start(binary: &Path, directory: &Path, (grpc, peer, kinesis): (u16, u16, u16)) -> Cluster {
        let log = directory.join("cluster.log");
        let output = std::fs::File::create(&log).expect("a log file");
        let child = Command::new(binary)
            .args(["dev", "--data-dir"])
            .arg(directory.join("data"))
            .args(["--grpc-port", &grpc.to_string(), "--peer-port", &peer.to_string()])
            .args(["--kinesis-port", &kinesis.to_string()])
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("a second handle"))
            .stderr(output)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        Cluster { child, log }
    }

    fn signal(&self, signal: libc::c_int) {
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: kill has no memory-safety preconditions; the group is this test's child's.
        unsafe { libc::kill(group, signal) };
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.signal(libc::SIGINT);
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("the cluster did not stop within {} s of SIGINT; killing it", STOP_WAIT.as_secs());
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Runs `riffle-bench ARGUMENTS --json FILE` and returns the parsed report; panics with the
/// output and the cluster log on failure.
fn bench(arguments: &[String], json: &Path, cluster: &Cluster) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_riffle-bench"))
        .args(arguments)
        .args(["--quiet", "--time-limit-s", RUN_TIME_LIMIT_S, "--wait-ready-s", WAIT_READY_S, "--json"])
        .arg(json)
        .stdin(Stdio::null())
        .output()
        .expect("running riffle-bench");
    if !output.status.success() {
        let log = std::fs::read_to_string(&cluster.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "riffle-bench {} failed ({})\nstdout:\n{}\nstderr:\n{}\ncluster log (last lines, newest first):\n{}",
            arguments.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            tail.join("\n")
        );
    }
    let text = std::fs::read_to_string(json).expect("the JSON report was written");
    serde_json::from_str(&text).expect("the JSON report parses")
}

/// `words` followed by `--endpoint E` for each of `endpoints`.
fn arguments(words: &[&str], endpoints: &[String]) -> Vec<String> {
    let mut arguments: Vec<String> = words.iter().map(|word| word.to_string()).collect();
    for endpoint in endpoints {
        arguments.extend(["--endpoint".to_string(), endpoint.clone()]);
    }
    arguments
}

fn records(report: &serde_json::Value) -> u64 {
    report["results"]["records"].as_u64().expect("results.records is a count")
}

#[test]
fn produce_through_both_apis_then_consume_everything() {
    let Some(binary) = node_binary() else {
        eprintln!(
            "skipped: no riffle-node binary (build it, e.g. `cargo test --workspace`, or set RIFFLE_NODE_BINARY)"
        );
        return;
    };
    let directory = tempfile::tempdir().expect("a scratch directory");
    let ports = free_ports();
    let cluster = Cluster::start(&binary, directory.path(), ports);
    let (grpc, _, kinesis) = ports;
    let grpc_endpoints: Vec<String> = (0..3).map(|offset| format!("http://127.0.0.1:{}", grpc + offset)).collect();
    let kinesis_endpoints: Vec<String> =
        (0..3).map(|offset| format!("http://127.0.0.1:{}", kinesis + offset)).collect();
    let common = ["--stream", "smoke", "--shards", "2", "--concurrency", "2", "--batch", "50", "--duration-s", "3"];
    let scratch = |name: &str| directory.path().join(name);

    // Phase 1: produce over gRPC, creating the stream.
    let produce = [["produce", "--system", "riffle", "--record-bytes", "256"].as_slice(), &common].concat();
    let grpc_report = bench(&arguments(&produce, &grpc_endpoints), &scratch("grpc.json"), &cluster);
    assert_eq!(grpc_report["tool"], "riffle-bench");
    assert_eq!(grpc_report["system"]["driver"], "riffle-grpc");
    assert_eq!(grpc_report["workload"]["kind"], "produce");
    assert!(records(&grpc_report) > 0, "the gRPC producers had records acknowledged");
    assert!(grpc_report["results"]["latency_us"]["record"]["p99"].as_u64().is_some());

    // Phase 2: produce over the Kinesis HTTP API, sizes drawn from a range.
    let sizes = ["--record-bytes-min", "100", "--record-bytes-max", "400"];
    let produce = [["produce", "--system", "kinesis"].as_slice(), &sizes, &common].concat();
    let kinesis_report = bench(&arguments(&produce, &kinesis_endpoints), &scratch("kinesis.json"), &cluster);
    assert_eq!(kinesis_report["system"]["driver"], "kinesis-http");
    assert!(records(&kinesis_report) > 0, "the Kinesis producers had records acknowledged");

    // Phase 3: drain the stream; it holds at least everything acknowledged.
    let acknowledged = records(&grpc_report) + records(&kinesis_report);
    let expected = acknowledged.to_string();
    let consume = ["consume", "--stream", "smoke", "--expect-records", expected.as_str()];
    let consume_report = bench(&arguments(&consume, &grpc_endpoints), &scratch("consume.json"), &cluster);
    assert_eq!(consume_report["workload"]["kind"], "consume");
    assert!(
        records(&consume_report) >= acknowledged,
        "consume read {} records, the producers had {acknowledged} acknowledged",
        records(&consume_report)
    );
    assert!(consume_report["results"]["latency_us"]["record"].is_null(), "a drain measures no put latency");
    drop(cluster);
}
