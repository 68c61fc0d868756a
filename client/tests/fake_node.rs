//! The client library and the `riffle` binary against an in-process fake node: a tonic server
//! with scripted answers, so pagination, error parsing over the wire, failover, stdin batching
//! and shard reading are checked without a real cluster.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use riffle_client::proto::riffle_server::{Riffle, RiffleServer};
use riffle_client::proto::{
    CreateStreamRequest, CreateStreamResponse, DeleteStreamRequest, DeleteStreamResponse, DescribeStreamRequest,
    DescribeStreamResponse, DescribeStreamSummaryRequest, DescribeStreamSummaryResponse, GetRecordsRequest,
    GetRecordsResponse, GetShardIteratorRequest, GetShardIteratorResponse, ListShardsRequest, ListShardsResponse,
    ListStreamsRequest, ListStreamsResponse, PutRecordRequest, PutRecordResponse, PutRecordsRequest,
    PutRecordsResponse, PutRecordsResultEntry, Record, Shard, StreamDescription, StreamStatus, StreamSummary,
};
use riffle_client::{Client, ClientConfig, ERROR_TYPE_METADATA_KEY};
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

const SHARD_COUNT: u32 = 3;
/// DescribeStreamSummary answers CREATING this many times before ACTIVE.
const CREATING_POLLS: u32 = 2;

/// (partition key, data) of the records in every shard of the fake node.
const STORED_RECORDS: [(&str, &[u8]); 3] = [("k1", b"one"), ("k2", b"two"), ("k3", &[0xff, 0xfe])];

#[derive(Default)]
struct FakeNode {
    summary_polls: Arc<AtomicU32>,
}

fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

fn shard(index: u32) -> Shard {
    Shard { shard_id: shard_id(index), ..Shard::default() }
}

fn not_found(stream_name: &str) -> Status {
    let mut status = Status::not_found(format!(
        "ResourceNotFoundException: Stream {stream_name} under account 000000000000 not found."
    ));
    status.metadata_mut().insert(ERROR_TYPE_METADATA_KEY, MetadataValue::from_static("ResourceNotFoundException"));
    status
}

#[tonic::async_trait]
impl Riffle for FakeNode {
    async fn create_stream(&self, _: Request<CreateStreamRequest>) -> Result<Response<CreateStreamResponse>, Status> {
        Ok(Response::new(CreateStreamResponse {}))
    }

    async fn delete_stream(
        &self,
        request: Request<DeleteStreamRequest>,
    ) -> Result<Response<DeleteStreamResponse>, Status> {
        Err(not_found(&request.into_inner().stream_name))
    }

    /// One shard per page, continuing after `exclusive_start_shard_id`.
    async fn describe_stream(
        &self,
        request: Request<DescribeStreamRequest>,
    ) -> Result<Response<DescribeStreamResponse>, Status> {
        let request = request.into_inner();
        let next = match request.exclusive_start_shard_id {
            None => 0,
            Some(id) => {
                (0..SHARD_COUNT)
                    .find(|index| shard_id(*index) == id)
                    .ok_or_else(|| Status::invalid_argument("InvalidArgumentException: bad start"))?
                    + 1
            }
        };
        Ok(Response::new(DescribeStreamResponse {
            stream_description: Some(StreamDescription {
                stream_name: request.stream_name,
                stream_status: StreamStatus::Active.into(),
                shards: vec![shard(next)],
                has_more_shards: next + 1 < SHARD_COUNT,
                ..StreamDescription::default()
            }),
        }))
    }

    async fn describe_stream_summary(
        &self,
        request: Request<DescribeStreamSummaryRequest>,
    ) -> Result<Response<DescribeStreamSummaryResponse>, Status> {
        let polls = self.summary_polls.fetch_add(1, Ordering::SeqCst);
        let status = if polls < CREATING_POLLS { StreamStatus::Creating } else { StreamStatus::Active };
        Ok(Response::new(DescribeStreamSummaryResponse {
            stream_description_summary: Some(StreamSummary {
                stream_name: request.into_inner().stream_name,
                stream_status: status.into(),
                open_shard_count: SHARD_COUNT,
                ..StreamSummary::default()
            }),
        }))
    }

    /// Two pages: `a`, `b`, then `c`.
    async fn cluster_status(
        &self,
        _request: Request<riffle_client::proto::ClusterStatusRequest>,
    ) -> Result<Response<riffle_client::proto::ClusterStatusResponse>, Status> {
        Err(Status::unimplemented("the fake node has no cluster"))
    }

    async fn join_cluster(
        &self,
        _request: Request<riffle_client::proto::JoinClusterRequest>,
    ) -> Result<Response<riffle_client::proto::JoinClusterResponse>, Status> {
        Err(Status::unimplemented("the fake node has no cluster"))
    }

    async fn list_nodes(
        &self,
        _request: Request<riffle_client::proto::ListNodesRequest>,
    ) -> Result<Response<riffle_client::proto::ListNodesResponse>, Status> {
        Err(Status::unimplemented("the fake node has no cluster"))
    }

    async fn decommission_node(
        &self,
        _request: Request<riffle_client::proto::DecommissionNodeRequest>,
    ) -> Result<Response<riffle_client::proto::DecommissionNodeResponse>, Status> {
        Err(Status::unimplemented("the fake node has no cluster"))
    }

    async fn read_replica(
        &self,
        _request: Request<riffle_client::proto::ReadReplicaRequest>,
    ) -> Result<Response<riffle_client::proto::ReadReplicaResponse>, Status> {
        Err(Status::unimplemented("the fake node holds no replicas"))
    }

    async fn list_streams(
        &self,
        request: Request<ListStreamsRequest>,
    ) -> Result<Response<ListStreamsResponse>, Status> {
        let (names, more) = match request.into_inner().exclusive_start_stream_name.as_deref() {
            None => (vec!["a", "b"], true),
            Some("b") => (vec!["c"], false),
            Some(other) => return Err(Status::invalid_argument(format!("start {other}"))),
        };
        Ok(Response::new(ListStreamsResponse {
            stream_names: names.into_iter().map(str::to_owned).collect(),
            has_more_streams: more,
            stream_summaries: Vec::new(),
        }))
    }

    /// Two pages joined by a token; a token must come without the stream name.
    async fn list_shards(&self, request: Request<ListShardsRequest>) -> Result<Response<ListShardsResponse>, Status> {
        let request = request.into_inner();
        let (shards, next_token) = match (request.stream_name.as_str(), request.next_token) {
            ("s", None) => (vec![shard(0), shard(1)], Some("page-2".to_owned())),
            ("", Some(token)) if token == "page-2" => (vec![shard(2)], None),
            _ => return Err(Status::invalid_argument("InvalidArgumentException: bad page")),
        };
        Ok(Response::new(ListShardsResponse { shards, next_token }))
    }

    async fn put_record(&self, request: Request<PutRecordRequest>) -> Result<Response<PutRecordResponse>, Status> {
        Err(not_found(&request.into_inner().stream_name))
    }

    /// Records whose partition key is `throttle` fail; the rest land in shard 0.
    async fn put_records(&self, request: Request<PutRecordsRequest>) -> Result<Response<PutRecordsResponse>, Status> {
        let records: Vec<PutRecordsResultEntry> = (1..)
            .zip(request.into_inner().records)
            .map(|(sequence, record)| {
                if record.partition_key == "throttle" {
                    PutRecordsResultEntry {
                        error_code: Some("ProvisionedThroughputExceededException".into()),
                        error_message: Some("Rate exceeded for shard shardId-000000000000".into()),
                        ..PutRecordsResultEntry::default()
                    }
                } else {
                    PutRecordsResultEntry {
                        sequence_number: Some(sequence.to_string()),
                        shard_id: Some(shard_id(0)),
                        ..PutRecordsResultEntry::default()
                    }
                }
            })
            .collect();
        let failed_record_count = records.iter().filter(|r| r.error_code.is_some()).count();
        Ok(Response::new(PutRecordsResponse { failed_record_count: failed_record_count as u32, records }))
    }

    async fn get_shard_iterator(
        &self,
        _: Request<GetShardIteratorRequest>,
    ) -> Result<Response<GetShardIteratorResponse>, Status> {
        Ok(Response::new(GetShardIteratorResponse { shard_iterator: "0".into() }))
    }

    /// The shard holds [`STORED_RECORDS`]; an iterator is the index of the next one, and each
    /// call returns at most two records.
    async fn get_records(&self, request: Request<GetRecordsRequest>) -> Result<Response<GetRecordsResponse>, Status> {
        let request = request.into_inner();
        let start: usize = request
            .shard_iterator
            .parse()
            .map_err(|_| Status::invalid_argument("InvalidArgumentException: bad iterator"))?;
        let limit = request.limit.unwrap_or(2).min(2) as usize;
        let records: Vec<Record> = STORED_RECORDS
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(index, (key, data))| Record {
                sequence_number: (index + 1).to_string(),
                partition_key: (*key).to_owned(),
                data: data.to_vec().into(),
                approximate_arrival_timestamp_ms: 0,
            })
            .collect();
        let next = start + records.len();
        Ok(Response::new(GetRecordsResponse {
            records,
            next_shard_iterator: Some(next.to_string()),
            millis_behind_latest: 0,
            child_shards: Vec::new(),
        }))
    }
}

/// Starts a fake node on a loopback port and returns its endpoint. The listener is bound before
/// this returns, so connections queue until the server task accepts them.
async fn start_fake_node() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let address = listener.local_addr().expect("bound listener has an address");
    tokio::spawn(
        Server::builder().serve_with_incoming(RiffleServer::new(FakeNode::default()), TcpIncoming::from(listener)),
    );
    format!("http://{address}")
}

fn fast_config() -> ClientConfig {
    ClientConfig {
        backoff_initial_ms: 1,
        backoff_max_ms: 1,
        stream_active_poll_interval_ms: 1,
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn listings_follow_every_page() {
    let endpoint = start_fake_node().await;
    let client = Client::connect_with_config(vec![endpoint], fast_config()).await.expect("valid endpoint");

    let description = client.describe_stream("s").await.expect("describe");
    let ids: Vec<String> = description.shards.iter().map(|s| s.shard_id.clone()).collect();
    assert_eq!(ids, (0..SHARD_COUNT).map(shard_id).collect::<Vec<_>>());
    assert!(!description.has_more_shards);

    let shards = client.list_shards("s").await.expect("list shards");
    assert_eq!(shards.len(), SHARD_COUNT as usize);

    let streams = client.list_streams().await.expect("list streams");
    assert_eq!(streams.stream_names, vec!["a", "b", "c"]);
    assert!(!streams.has_more_streams);
}

#[tokio::test]
async fn service_errors_carry_the_kinesis_type() {
    let endpoint = start_fake_node().await;
    let client = Client::connect_with_config(vec![endpoint], fast_config()).await.expect("valid endpoint");

    let error = client
        .put_record(PutRecordRequest {
            stream_name: "missing".into(),
            data: "d".into(),
            partition_key: "k".into(),
            ..PutRecordRequest::default()
        })
        .await
        .expect_err("the fake node rejects every PutRecord");

    assert_eq!(error.error_type(), Some("ResourceNotFoundException"));
    assert_eq!(error.to_string(), "ResourceNotFoundException: Stream missing under account 000000000000 not found.");
}

#[tokio::test]
async fn dead_endpoint_fails_over_to_a_live_one() {
    let endpoint = start_fake_node().await;
    // Port 1 on loopback refuses connections.
    let client = Client::connect_with_config(vec!["http://127.0.0.1:1".into(), endpoint], fast_config())
        .await
        .expect("valid endpoints");

    // A non-idempotent call is retried too, because the refused connection sent nothing.
    client.create_stream("s", SHARD_COUNT, None).await.expect("create on the live endpoint");

    let summary =
        client.wait_for_stream_active("s", CREATING_POLLS + 1).await.expect("ACTIVE on the last allowed poll");
    assert_eq!(summary.stream_status, i32::from(StreamStatus::Active));
}

#[tokio::test]
async fn waiting_for_active_is_bounded() {
    let endpoint = start_fake_node().await;
    let client = Client::connect_with_config(vec![endpoint], fast_config()).await.expect("valid endpoint");

    let error =
        client.wait_for_stream_active("s", CREATING_POLLS).await.expect_err("still CREATING when attempts run out");

    assert_eq!(error.to_string(), format!("stream s is still CREATING after {CREATING_POLLS} polls, not ACTIVE"));
}

/// Runs the `riffle` binary against `endpoint` with `stdin`; returns (exit code, stdout, stderr).
async fn riffle(endpoint: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_riffle"))
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the riffle binary starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin.as_bytes()).await.expect("write stdin");
    drop(input);
    let output = child.wait_with_output().await.expect("riffle finishes");
    (
        output.status.code().expect("riffle exits, not killed"),
        String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    )
}

#[tokio::test]
async fn cli_put_from_stdin_reports_partial_failures() {
    let endpoint = start_fake_node().await;

    let (code, stdout, stderr) = riffle(&endpoint, &["put", "s", "--key-from-line"], "first\nthrottle\r\nthird").await;

    assert_eq!(code, 1, "stderr: {stderr}");
    assert_eq!(stdout, "shardId-000000000000 1\nshardId-000000000000 3\n");
    assert!(stderr.contains("line 2: ProvisionedThroughputExceededException: Rate exceeded"), "{stderr}");
    assert!(stderr.contains("error: put 2 records, 1 failed"), "{stderr}");
}

#[tokio::test]
async fn cli_get_reads_until_caught_up() {
    let endpoint = start_fake_node().await;

    let (code, stdout, stderr) = riffle(&endpoint, &["get", "s", "--shard-id", "0"], "").await;

    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(stdout, "1\tk1\tone\n2\tk2\ttwo\n3\tk3\tbase64://4=\n");

    let (code, stdout, _) =
        riffle(&endpoint, &["get", "s", "--shard-id", "0", "--follow", "--max-records", "2"], "").await;
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 2);
}

#[tokio::test]
async fn cli_failure_prints_the_error_type() {
    let endpoint = start_fake_node().await;

    let (code, stdout, stderr) = riffle(&endpoint, &["delete-stream", "gone"], "").await;

    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert_eq!(stderr, "error: ResourceNotFoundException: Stream gone under account 000000000000 not found.\n");
}
