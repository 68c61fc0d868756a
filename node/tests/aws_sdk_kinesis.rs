//! The official AWS SDK for Rust (`aws-sdk-kinesis`) against three real `riffle-node` processes.
//!
//! The cluster is written by `riffle_node::dev::write_dev_cluster_configs` with the Kinesis API
//! on; the SDK signs with the `riffle-dev` key read from the cluster's credentials file, so every
//! request goes through SigV4 verification. The story: create a 2-shard stream (through node 1),
//! wait until it is ACTIVE, write with PutRecord and PutRecords (through node 2), read every shard
//! from TRIM_HORIZON (through node 3) and check each record comes back in order with the shard
//! and sequence number its acknowledgement gave; then DescribeStream of a missing stream must be
//! the SDK's typed `ResourceNotFoundException`. An interceptor checks every request goes out as
//! JSON 1.1 (`application/x-amz-json-1.1` with `X-Amz-Target: Kinesis_20131202.<Operation>`).
//!
//! Rerun with `cargo test -p riffle-node --test aws_sdk_kinesis -- --nocapture`; node logs are
//! kept in the temporary directory printed on failure.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kinesis::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_kinesis::error::{BoxError, SdkError};
use aws_sdk_kinesis::operation::describe_stream::DescribeStreamError;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use aws_sdk_kinesis::Client;

mod common;

const RERUN: &str = "cargo test -p riffle-node --test aws_sdk_kinesis -- --nocapture";
const NODE_COUNT: usize = 3;
const STREAM: &str = "aws-sdk";
const SHARD_COUNT: i32 = 2;
/// Records written one by one with PutRecord, then in one PutRecords batch.
const PUT_RECORD_COUNT: u32 = 10;
const PUT_RECORDS_COUNT: u32 = 40;
/// Polls (each `POLL_PAUSE_MS` apart) of anything the test waits for: the cluster's first
/// CreateStream, ACTIVE, and reads catching up.
const POLLS_MAX: u32 = 300;
const POLL_PAUSE_MS: u64 = 200;

/// Three node processes and their files; kills every child when dropped, also on panic.
struct Cluster {
    directory: Option<tempfile::TempDir>,
    kinesis_port: u16,
    children: Vec<Child>,
}

impl Cluster {
    fn start() -> Cluster {
        let directory =
            tempfile::Builder::new().prefix("riffle-aws-sdk-").tempdir().expect("creating a temporary directory");
        let grpc = common::free_port_base(9);
        let (peer, kinesis) = (grpc + 3, grpc + 6);
        let ports = riffle_node::dev::DevPorts { grpc, peer, kinesis: Some(kinesis), kinesis_anonymous: true };
        let configs =
            riffle_node::dev::write_dev_cluster_configs(directory.path(), ports).expect("writing the dev configs");
        assert_eq!(configs.len(), NODE_COUNT);
        let mut cluster = Cluster { directory: Some(directory), kinesis_port: kinesis, children: Vec::new() };
        for (index, config) in configs.iter().enumerate() {
            let log_path = cluster.log_path(index as u64 + 1);
            let log = File::options().create(true).append(true).open(&log_path).expect("opening a node log");
            let child = Command::new(env!("CARGO_BIN_EXE_riffle-node"))
                .arg("--config")
                .arg(config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cloning a log handle"))
                .stderr(log)
                .spawn()
                .expect("starting riffle-node");
            cluster.children.push(child);
        }
        cluster
    }

    fn root(&self) -> &Path {
        self.directory.as_ref().expect("the directory lives as long as the cluster").path()
    }

    fn log_path(&self, node_id: u64) -> PathBuf {
        self.root().join(format!("node-{node_id}.log"))
    }

    fn kinesis_endpoint(&self, node_id: u64) -> String {
        format!("http://127.0.0.1:{}", self.kinesis_port + node_id as u16 - 1)
    }

    /// The `riffle-dev` secret from the AWS shared credentials file the dev configs wrote.
    fn dev_secret(&self) -> String {
        let path = riffle_node::dev::dev_credentials_path(self.root());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        text.lines()
            .find_map(|line| {
                let (name, value) = line.split_once('=')?;
                (name.trim() == "aws_secret_access_key").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no aws_secret_access_key in {}", path.display()))
    }

    fn assert_running(&mut self) {
        for (index, child) in self.children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("node {} exited by itself ({status})", index + 1);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            if let Some(directory) = self.directory.take() {
                let kept = directory.keep();
                eprintln!("aws_sdk_kinesis failed; node logs are kept:");
                for node_id in 1..=NODE_COUNT as u64 {
                    eprintln!("  {}", kept.join(format!("node-{node_id}.log")).display());
                }
                eprintln!("rerun: {RERUN}");
            }
        }
    }
}

/// Records the protocol headers of every request the SDK sends.
#[derive(Debug, Default, Clone)]
struct WireLog {
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl Intercept for WireLog {
    fn name(&self) -> &'static str {
        "WireLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context.request().headers();
        let content_type = headers.get("content-type").unwrap_or_default().to_string();
        let target = headers.get("x-amz-target").unwrap_or_default().to_string();
        let body = context.request().body().bytes().unwrap_or_default();
        if !body.starts_with(b"{") {
            return Err(format!("{target} body is not JSON: {:?}", String::from_utf8_lossy(body)).into());
        }
        self.requests.lock().expect("the wire log lock").push((content_type, target));
        Ok(())
    }
}

/// A client of one node, signing with the `riffle-dev` key, over a rustls (ring) HTTP client.
fn client(endpoint: String, secret: &str, wire_log: &WireLog) -> Client {
    let http_client = common::sdk_http_client();
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            riffle_node::dev::DEV_ACCESS_KEY_ID,
            secret,
            None,
            None,
            "riffle-dev-credentials-file",
        ))
        .endpoint_url(endpoint)
        .http_client(http_client)
        .interceptor(wire_log.clone())
        .build();
    Client::from_conf(config)
}

async fn pause() {
    tokio::time::sleep(Duration::from_millis(POLL_PAUSE_MS)).await;
}

/// CreateStream, retried while the cluster is still electing its first leaders. A retry after
/// an attempt that did create the stream is answered `ResourceInUseException`, which counts.
async fn create_stream(cluster: &mut Cluster, admin: &Client) {
    let mut last_error = String::new();
    for _ in 0..POLLS_MAX {
        cluster.assert_running();
        match admin.create_stream().stream_name(STREAM).shard_count(SHARD_COUNT).send().await {
            Ok(_) => return,
            Err(error) => {
                let service_error = error.as_service_error();
                if service_error.is_some_and(|service_error| service_error.is_resource_in_use_exception()) {
                    return;
                }
                last_error = format!("{:?}", aws_sdk_kinesis::error::DisplayErrorContext(&error));
            }
        }
        pause().await;
    }
    panic!("CreateStream never succeeded; last error: {last_error}; rerun: {RERUN}");
}

/// DescribeStreamSummary until ACTIVE; returns the shard ids from ListShards.
async fn wait_until_active(cluster: &mut Cluster, admin: &Client) -> Vec<String> {
    let mut last = String::new();
    for _ in 0..POLLS_MAX {
        cluster.assert_running();
        match admin.describe_stream_summary().stream_name(STREAM).send().await {
            Ok(output) => {
                let summary = output.stream_description_summary().expect("a stream description summary");
                if summary.stream_status() == &StreamStatus::Active {
                    assert_eq!(summary.open_shard_count(), SHARD_COUNT);
                    let shards = admin.list_shards().stream_name(STREAM).send().await.expect("ListShards");
                    let ids: Vec<String> = shards.shards().iter().map(|shard| shard.shard_id().to_string()).collect();
                    assert_eq!(ids.len(), SHARD_COUNT as usize, "ListShards of an ACTIVE stream: {ids:?}");
                    return ids;
                }
                last = format!("status {:?}", summary.stream_status());
            }
            Err(error) => last = format!("{:?}", aws_sdk_kinesis::error::DisplayErrorContext(&error)),
        }
        pause().await;
    }
    panic!("stream {STREAM} never became ACTIVE; last: {last}; rerun: {RERUN}");
}

fn value(index: u32) -> Vec<u8> {
    format!("record-{index:04}").into_bytes()
}

/// Partition keys that spread over the hash space, so both shards get records.
fn partition_key(index: u32) -> String {
    format!("pk-{}", index.wrapping_mul(2_654_435_761))
}

/// Reads one shard from TRIM_HORIZON until `expected` records have come back and the shard
/// reports it is caught up (`MillisBehindLatest` 0 on an empty page), bounded by `POLLS_MAX`.
async fn read_shard(reader: &Client, shard_id: &str, expected: usize) -> Vec<(String, Vec<u8>)> {
    let iterator = reader
        .get_shard_iterator()
        .stream_name(STREAM)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!("GetShardIterator {shard_id}: {:?}", aws_sdk_kinesis::error::DisplayErrorContext(&error))
        });
    let mut iterator = iterator.shard_iterator().expect("a shard iterator").to_string();
    let mut records = Vec::new();
    for _ in 0..POLLS_MAX {
        let page = reader.get_records().shard_iterator(&iterator).limit(7).send().await.unwrap_or_else(|error| {
            panic!("GetRecords {shard_id}: {:?}", aws_sdk_kinesis::error::DisplayErrorContext(&error))
        });
        for record in page.records() {
            records.push((record.sequence_number().to_string(), record.data().as_ref().to_vec()));
        }
        let caught_up = page.records().is_empty() && page.millis_behind_latest() == Some(0);
        if records.len() >= expected && caught_up {
            return records;
        }
        iterator = page.next_shard_iterator().expect("an open shard has a next iterator").to_string();
        if page.records().is_empty() {
            pause().await;
        }
    }
    panic!("shard {shard_id} gave {} of {expected} records; rerun: {RERUN}", records.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_round_trip_against_a_three_node_cluster() {
    let mut cluster = Cluster::start();
    let secret = cluster.dev_secret();
    let wire_log = WireLog::default();
    let admin = client(cluster.kinesis_endpoint(1), &secret, &wire_log);
    let writer = client(cluster.kinesis_endpoint(2), &secret, &wire_log);
    let reader = client(cluster.kinesis_endpoint(3), &secret, &wire_log);

    create_stream(&mut cluster, &admin).await;
    let shard_ids = wait_until_active(&mut cluster, &admin).await;

    // Acknowledged (shard, sequence number, data), in the order the acknowledgements came.
    let mut acked: Vec<(String, String, Vec<u8>)> = Vec::new();
    for index in 0..PUT_RECORD_COUNT {
        let output = writer
            .put_record()
            .stream_name(STREAM)
            .partition_key(partition_key(index))
            .data(Blob::new(value(index)))
            .send()
            .await
            .unwrap_or_else(|error| {
                panic!("PutRecord {index}: {:?}; rerun: {RERUN}", aws_sdk_kinesis::error::DisplayErrorContext(&error))
            });
        acked.push((output.shard_id().to_string(), output.sequence_number().to_string(), value(index)));
    }
    let batch: Vec<PutRecordsRequestEntry> = (PUT_RECORD_COUNT..PUT_RECORD_COUNT + PUT_RECORDS_COUNT)
        .map(|index| {
            PutRecordsRequestEntry::builder()
                .partition_key(partition_key(index))
                .data(Blob::new(value(index)))
                .build()
                .expect("a complete PutRecords entry")
        })
        .collect();
    let output =
        writer.put_records().stream_name(STREAM).set_records(Some(batch)).send().await.unwrap_or_else(|error| {
            panic!("PutRecords: {:?}; rerun: {RERUN}", aws_sdk_kinesis::error::DisplayErrorContext(&error))
        });
    assert_eq!(output.failed_record_count(), Some(0), "PutRecords: {output:?}");
    assert_eq!(output.records().len(), PUT_RECORDS_COUNT as usize);
    for (index, result) in (PUT_RECORD_COUNT..).zip(output.records()) {
        let shard_id = result.shard_id().unwrap_or_else(|| panic!("PutRecords entry {index} has no shard: {result:?}"));
        let sequence_number = result.sequence_number().expect("a successful entry has a sequence number");
        acked.push((shard_id.to_string(), sequence_number.to_string(), value(index)));
    }

    // Per shard, in acknowledgement order; the writes are sequential, so that is the log order.
    let mut expected: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for (shard_id, sequence_number, data) in acked {
        assert!(shard_ids.contains(&shard_id), "acknowledged on unknown shard {shard_id}");
        expected.entry(shard_id).or_default().push((sequence_number, data));
    }
    assert_eq!(expected.len(), SHARD_COUNT as usize, "every shard got records: {:?}", expected.keys());
    for shard_id in &shard_ids {
        let want = &expected[shard_id];
        for pair in want.windows(2) {
            assert!(
                (pair[0].0.len(), &pair[0].0) < (pair[1].0.len(), &pair[1].0),
                "acknowledged sequence numbers on {shard_id} do not increase: {} then {}",
                pair[0].0,
                pair[1].0
            );
        }
        let got = read_shard(&reader, shard_id, want.len()).await;
        println!("{shard_id}: {} records read back as acknowledged", got.len());
        assert_eq!(&got, want, "shard {shard_id} read back differs from what was acknowledged; rerun: {RERUN}");
    }

    // A missing stream is the SDK's typed ResourceNotFoundException.
    let error = admin.describe_stream().stream_name("no-such-stream").send().await.expect_err("a missing stream");
    match &error {
        SdkError::ServiceError(service_error) => match service_error.err() {
            DescribeStreamError::ResourceNotFoundException(not_found) => {
                assert!(not_found.message().is_some_and(|message| message.contains("no-such-stream")), "{not_found:?}")
            }
            other => panic!("DescribeStream of a missing stream: {other:?}"),
        },
        other => panic!("DescribeStream of a missing stream: {:?}", aws_sdk_kinesis::error::DisplayErrorContext(other)),
    }

    // Every request went out as JSON 1.1 with the Kinesis target header.
    let requests = wire_log.requests.lock().expect("the wire log lock").clone();
    assert!(!requests.is_empty());
    for (content_type, target) in &requests {
        assert_eq!(content_type, "application/x-amz-json-1.1", "request {target}");
        assert!(target.starts_with("Kinesis_20131202."), "X-Amz-Target {target:?}");
    }
    println!("{} requests, all {} with X-Amz-Target Kinesis_20131202.*", requests.len(), requests[0].0);
    cluster.assert_running();
}
