//! What the process-level tests share: free loopback ports, and `riffle-node dev` as a child
//! process whose output the test follows.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest wait for one line of `dev`'s output; far above what a slow debug build needs.
const LINE_WAIT: Duration = Duration::from_secs(90);

/// Candidate port bases tried before giving up.
const PORT_BASE_ATTEMPTS_MAX: u32 = 200;

/// A base port such that `base .. base + span` are all free for both TCP and UDP on loopback
/// (gRPC and the Kinesis API listen on TCP, QUIC peers on UDP). Searched below Linux's
/// ephemeral range, starting at a point derived from the process id so concurrent test
/// binaries start apart.
pub fn free_port_base(span: u16) -> u16 {
    const LOW: u32 = 12_000;
    const RANGE: u32 = 18_000;
    let mut candidate = (std::process::id().wrapping_mul(7919)) % RANGE;
    for _ in 0..PORT_BASE_ATTEMPTS_MAX {
        let base = (LOW + candidate) as u16;
        let free = (base..base + span).all(|port| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
                && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        if free {
            return base;
        }
        candidate = (candidate + u32::from(span)) % RANGE;
    }
    panic!("no free loopback ports found after {PORT_BASE_ATTEMPTS_MAX} tries");
}

/// The `dev` process, its output lines, and everything it printed so far (for failure reports).
pub struct Dev {
    pub child: Option<Child>,
    lines: mpsc::Receiver<String>,
    rerun: &'static str,
    pub seen: Vec<String>,
    _directory: tempfile::TempDir,
}

impl Dev {
    /// Starts `riffle-node dev` with its ports from `grpc_port` (gRPC, then QUIC peers at +3,
    /// the Kinesis API at +6), restarting dead nodes after `restart_delay_ms`.
    pub fn start(grpc_port: u16, restart_delay_ms: u64, rerun: &'static str) -> Dev {
        Dev::start_with(grpc_port, restart_delay_ms, &[], rerun)
    }

    /// [`Dev::start`] with `settings` (`KEY=VALUE`) passed as `--set` to every node.
    pub fn start_with(grpc_port: u16, restart_delay_ms: u64, settings: &[&str], rerun: &'static str) -> Dev {
        let directory = tempfile::Builder::new().prefix("riffle-dev-test-").tempdir().expect("a temporary directory");
        let mut command = Command::new(env!("CARGO_BIN_EXE_riffle-node"));
        command.arg("dev");
        for setting in settings {
            command.args(["--set", setting]);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(directory.path())
            .args(["--grpc-port", &grpc_port.to_string()])
            .args(["--peer-port", &(grpc_port + 3).to_string()])
            .args(["--kinesis-port", &(grpc_port + 6).to_string()])
            .args(["--restart-delay-ms", &restart_delay_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group, so a failing test can stop dev and every node at once.
            .process_group(0)
            .spawn()
            .expect("starting riffle-node dev");
        let stdout = child.stdout.take().expect("dev's stdout is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Dev { child: Some(child), lines, seen: Vec::new(), rerun, _directory: directory }
    }

    /// The next line of output that contains `needle`.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + LINE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "dev never printed {needle:?} (within {} s); it printed:\n{}\nrerun: {}",
                    LINE_WAIT.as_secs(),
                    self.seen.join("\n"),
                    self.rerun
                ),
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("dev is running").id() as i32
    }

    /// The cluster's data directory (`node-N/` per node).
    pub fn data_dir(&self) -> &std::path::Path {
        self._directory.path()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signals a process group this test created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // A failed test keeps the cluster's files (node logs) for a look.
            let kept = self.data_dir().with_extension("kept");
            if std::fs::rename(self.data_dir(), &kept).is_ok() {
                eprintln!("the cluster's files (node-N/node.log) are kept in {}", kept.display());
            }
        }
    }
}

/// The process id in a line `  node N (zone x): pid P  gRPC …`.
pub fn node_pid(line: &str) -> i32 {
    line.split_whitespace()
        .skip_while(|word| *word != "pid")
        .nth(1)
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The HTTP client the AWS SDK tests use: rustls on ring (already built for QUIC) instead of
/// the SDK's default aws-lc.
pub fn sdk_http_client() -> aws_sdk_kinesis::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Pause between polls of a condition the cluster reaches by itself, and how many polls at most.
pub const POLL_PAUSE: Duration = Duration::from_millis(200);
pub const POLLS_MAX: u32 = 300;
/// Longest wait for a writer's acknowledgements; far above what a slow debug build needs.
const ACK_WAIT: Duration = Duration::from_secs(120);
const READ_PAGES_MAX: u32 = 2_000;

/// The official AWS SDK's Kinesis client against node `kinesis_port`, anonymous.
pub fn kinesis(kinesis_port: u16) -> aws_sdk_kinesis::Client {
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("anonymous", "anonymous", None, None, "test"))
        .endpoint_url(format!("http://127.0.0.1:{kinesis_port}"))
        .http_client(sdk_http_client())
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// A gRPC client of all three nodes of a `dev` cluster, retrying transport errors.
pub async fn connect(grpc_port: u16) -> riffle_client::Client {
    let endpoints = (0..3).map(|node| format!("http://127.0.0.1:{}", grpc_port + node)).collect();
    let config = riffle_client::ClientConfig {
        retries_max: 6,
        request_timeout_ms: 10_000,
        ..riffle_client::ClientConfig::default()
    };
    riffle_client::Client::connect_with_config(endpoints, config).await.expect("valid endpoints")
}

/// Puts the values 0, 1, 2… in order (partition key `key-<value % keys>`) until `stop`, without
/// retrying a value; records those acknowledged, in order, and counts them in `count`.
pub async fn write_values(
    client: riffle_client::Client,
    stream: &'static str,
    keys: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acknowledged: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
    count: tokio::sync::watch::Sender<usize>,
) {
    let mut value = 0u32;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let request = riffle_client::proto::PutRecordRequest {
            stream_name: stream.into(),
            data: format!("{value}").into_bytes().into(),
            partition_key: format!("key-{}", value % keys),
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

/// Waits (boundedly) until a writer has `target` acknowledgements.
pub async fn await_acks(counted: &mut tokio::sync::watch::Receiver<usize>, target: usize, rerun: &str) {
    let reached = tokio::time::timeout(ACK_WAIT, counted.wait_for(|count| *count >= target)).await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "the writer did not reach {target} acknowledgements within {} s; rerun: {rerun}",
        ACK_WAIT.as_secs()
    );
}

/// Every record of one shard from TRIM_HORIZON, as (partition key, data as text).
pub async fn read_shard(
    client: &riffle_client::Client,
    stream: &str,
    shard_id: &str,
    rerun: &str,
) -> Vec<(String, String)> {
    let request = riffle_client::proto::GetShardIteratorRequest {
        stream_name: stream.into(),
        shard_id: shard_id.into(),
        shard_iterator_type: riffle_client::proto::ShardIteratorType::TrimHorizon as i32,
        starting_sequence_number: None,
        timestamp_ms: None,
    };
    let mut iterator = client.get_shard_iterator(request).await.expect("an iterator").shard_iterator;
    let mut records = Vec::new();
    for _ in 0..READ_PAGES_MAX {
        let page = client.get_records(&iterator, Some(1_000)).await.expect("a page");
        let empty = page.records.is_empty();
        for record in page.records {
            records.push((record.partition_key, String::from_utf8_lossy(&record.data).into_owned()));
        }
        match page.next_shard_iterator {
            None => return records,
            Some(_) if empty && page.millis_behind_latest == 0 => return records,
            Some(next) => iterator = next,
        }
    }
    panic!("{shard_id} did not end within {READ_PAGES_MAX} pages; rerun: {rerun}");
}

/// Checks what [`write_values`] acknowledged against what was read (parents before children):
/// every acknowledged value once, and in order per partition key.
pub fn check_values(read: &[(String, String)], acknowledged: &[u32], rerun: &str) {
    let mut seen = std::collections::BTreeSet::new();
    let mut last_per_key: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
    for (key, value) in read {
        let value: u32 = value.parse().unwrap_or_else(|_| panic!("value {value:?} is not a number; rerun: {rerun}"));
        assert!(seen.insert(value), "value {value} read twice; rerun: {rerun}");
        if let Some(previous) = last_per_key.insert(key, value) {
            assert!(previous < value, "{key}: {value} read after {previous}; rerun: {rerun}");
        }
    }
    let missing: Vec<u32> = acknowledged.iter().filter(|value| !seen.contains(value)).copied().collect();
    assert!(missing.is_empty(), "acknowledged values missing: {missing:?}; rerun: {rerun}");
}

/// Creates `stream` with `shards` shards as soon as the cluster takes it (a fresh cluster may
/// still be electing), then waits until it is ACTIVE; both bounded.
pub async fn create_active_stream(client: &riffle_client::Client, stream: &str, shards: u32, rerun: &str) {
    let mut created = false;
    for _ in 0..POLLS_MAX {
        if client.create_stream(stream, shards, None).await.is_ok() {
            created = true;
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    assert!(created, "the stream was never created; rerun: {rerun}");
    client.wait_for_stream_active(stream, POLLS_MAX).await.expect("ACTIVE");
}
