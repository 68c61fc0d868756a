//! Unit tests of the stream service.

use riffle_proto::peer as wire;

use super::validation::*;
use super::*;

#[test]
fn aws_time_formats_like_kinesis() {
    assert_eq!(aws_time(0), "Thu Jan 01 00:00:00 UTC 1970");
    assert_eq!(aws_time(1_795_405_164_000), "Mon Nov 23 03:39:24 UTC 2026");
}

#[test]
fn names_and_keys_are_validated() {
    assert!(validate_stream_name("orders.v1-a_b", "streamName").is_ok());
    assert_eq!(validate_stream_name("", "streamName").map_err(|e| e.error_type()), Err("ValidationException"));
    assert!(validate_stream_name("bad name", "streamName").is_err());
    assert!(validate_stream_name(&"x".repeat(129), "streamName").is_err());
    assert!(validate_partition_key(&"é".repeat(256), "partitionKey").is_ok());
    assert!(validate_partition_key(&"k".repeat(257), "partitionKey").is_err());
    assert!(validate_partition_key("", "partitionKey").is_err());
    assert!(validate_record_size(&vec![0; RECORD_BYTES_MAX], "", "data").is_ok());
    assert_eq!(
        validate_record_size(&vec![0; RECORD_BYTES_MAX + 1], "k", "data").map_err(|e| e.error_type()),
        Err("ValidationException")
    );
    assert_eq!(
        validate_record_size(&vec![0; RECORD_BYTES_MAX], "k", "data").map_err(|e| e.error_type()),
        Err("InvalidArgumentException")
    );
    assert_eq!(hash_key_for("k", Some("x")).map_err(|e| e.error_type()), Err("InvalidArgumentException"));
}

/// Wall time the test moves by hand.
#[derive(Debug)]
struct ManualClock(std::sync::atomic::AtomicI64);

impl crate::seam::Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A single-node cluster never calls its peers.
struct NoPeers;

impl crate::transport::PeerTransport for NoPeers {
    fn call(
        &self,
        target: crate::transport::NodeId,
        _request: wire::PeerRequest,
    ) -> crate::transport::BoxFuture<'_, Result<wire::PeerResponse, crate::transport::TransportError>> {
        Box::pin(async move {
            Err(crate::transport::TransportError::Unreachable { peer: target, reason: "no peers".into() })
        })
    }
}

#[tokio::test]
async fn throttled_requests_get_kinesis_errors_and_change_nothing() {
    use crate::shard::admission::ThrottleSettings;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let clock = Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(1_800_000_000_000)));
    let seams = crate::seam::Seams {
        clock: clock.clone(),
        executor: Arc::new(crate::seam::TokioExecutor),
        fs: Arc::new(crate::fs::real::RealFileSystem::new()),
    };
    let throttling = ThrottleSettings {
        enabled: true,
        shard_write_bytes_per_s: 1_000,
        shard_write_records_per_s: 3,
        shard_get_records_per_s: 2,
    };
    let options = crate::node::NodeOptions {
        id: 1,
        zone: "a".into(),
        nodes: vec![crate::control::placement::NodePlace {
            id: 1,
            zone: "a".into(),
            peer_address: "127.0.0.1:1".into(),
            grpc_address: "127.0.0.1:2".into(),
        }],
        join: false,
        data_dir: directory.path().to_path_buf(),
        mirror_file_names: false,
        raft: crate::node::RaftTiming {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            ..Default::default()
        },
        limits: crate::node::DataLimits { throttling, ..Default::default() },
        segments: Default::default(),
        log_engine: Default::default(),
    };
    let node = Node::open(options, seams).expect("the node opens");
    node.start(Arc::new(NoPeers)).await.expect("the node starts");
    let settings = ServiceSettings {
        region: "us-east-1".into(),
        account: "123456789012".into(),
        stream_shards_max: 4,
        account_shards_max: 500,
        iterator_secret: b"test secret".to_vec(),
    };
    let service = StreamService::new(node.clone(), settings);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let create = || v1::CreateStreamRequest { stream_name: "t".into(), shard_count: 1, ..Default::default() };
    while let Err(error) = service.create_stream(create()).await {
        assert!(tokio::time::Instant::now() < deadline, "the stream was not created: {error}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let put = |data: &str| v1::PutRecordRequest {
        stream_name: "t".into(),
        data: data.as_bytes().to_vec().into(),
        partition_key: "k".into(),
        explicit_hash_key: None,
        sequence_number_for_ordering: None,
    };
    // The shard's group may still be electing its leader.
    while let Err(error) = service.put_record(put("first")).await {
        assert!(tokio::time::Instant::now() < deadline, "the first put failed: {error}");
        assert_ne!(error.error_type(), "ProvisionedThroughputExceededException");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    service.put_record(put("second")).await.expect("within the record budget");
    // A PutRecords of two records: over the budget (one left), so neither is written.
    let entry = |data: &str| v1::PutRecordsRequestEntry {
        data: data.as_bytes().to_vec().into(),
        partition_key: "k".into(),
        explicit_hash_key: None,
    };
    let batch = v1::PutRecordsRequest { stream_name: "t".into(), records: vec![entry("x"), entry("y")] };
    let outcome = service.put_records(batch.clone()).await.expect("a partial failure, not an error");
    assert_eq!(outcome.failed_record_count, 2);
    let expected = "Rate exceeded for shard shardId-000000000000 in stream t under account 123456789012.";
    for record in &outcome.records {
        assert_eq!(record.error_code.as_deref(), Some("ProvisionedThroughputExceededException"));
        assert_eq!(record.error_message.as_deref(), Some(expected));
    }
    service.put_record(put("third")).await.expect("the refused batch took nothing");
    let refused = service.put_record(put("fourth")).await.expect_err("over the record budget");
    assert_eq!(refused.error_type(), "ProvisionedThroughputExceededException");
    assert_eq!(refused.message(), expected);
    // One second later the budget is back.
    clock.0.fetch_add(1_000, std::sync::atomic::Ordering::SeqCst);
    let outcome = service.put_records(batch).await.expect("accepted");
    assert_eq!(outcome.failed_record_count, 0);

    let iterator = service
        .get_shard_iterator(v1::GetShardIteratorRequest {
            stream_name: "t".into(),
            shard_id: "shardId-000000000000".into(),
            shard_iterator_type: v1::ShardIteratorType::TrimHorizon as i32,
            starting_sequence_number: None,
            timestamp_ms: None,
        })
        .await
        .expect("an iterator")
        .shard_iterator;
    let get = || v1::GetRecordsRequest { shard_iterator: iterator.clone(), limit: None };
    let records = service.get_records(get()).await.expect("first read").records;
    let data: Vec<&[u8]> = records.iter().map(|record| record.data.as_ref()).collect();
    assert_eq!(data, [&b"first"[..], b"second", b"third", b"x", b"y"]);
    service.get_records(get()).await.expect("second read");
    let refused = service.get_records(get()).await.expect_err("over the GetRecords budget");
    assert_eq!(refused.error_type(), "ProvisionedThroughputExceededException");
    assert_eq!(refused.message(), expected);
    clock.0.fetch_add(500, std::sync::atomic::Ordering::SeqCst);
    service.get_records(get()).await.expect("one call accrued in half a second");
    node.shutdown().await;
}
