//! Process-level test: retention expires records, and a closed shard disappears once all its
//! records have expired.
//!
//! The story: `riffle-node dev` runs three nodes with a test-only retention hour of 100 ms (a
//! stream's minimum of 24 hours is then 2.4 s) and a retention check every 200 ms. Records are
//! written to a one-shard stream; while new records keep arriving, the old ones must stop being
//! returned from TRIM_HORIZON, and the new ones must still be there in order. Then the shard is
//! split: once its retention has run out, the closed parent leaves ListShards and DescribeStream
//! (its children stay, still naming it as their parent, and AT_TRIM_HORIZON now lists them), and
//! its group's files are gone from every node.
//!
//! Rerun with `cargo test -p riffle-node --test retention -- --nocapture`.

use std::time::Duration;

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::{ShardFilter, ShardFilterType};
use riffle_client::proto::{GetShardIteratorRequest, PutRecordRequest, ShardIteratorType};
use riffle_client::{Client, ClientConfig};

mod common;

use common::Dev;

const RERUN: &str = "cargo test -p riffle-node --test retention -- --nocapture";
const STREAM: &str = "expiring";
const OLD_RECORDS: u32 = 20;
/// Polls of a condition the cluster reaches by itself, each `POLL_PAUSE` apart.
const POLLS_MAX: u32 = 300;
const POLL_PAUSE: Duration = Duration::from_millis(200);
const READ_PAGES_MAX: u32 = 1_000;

fn kinesis(kinesis_port: u16) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("anonymous", "anonymous", None, None, "test"))
        .endpoint_url(format!("http://127.0.0.1:{kinesis_port}"))
        .http_client(common::sdk_http_client())
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

async fn put(client: &Client, value: &str) {
    let request = PutRecordRequest {
        stream_name: STREAM.into(),
        data: value.as_bytes().to_vec().into(),
        partition_key: "key".into(),
        explicit_hash_key: None,
        sequence_number_for_ordering: None,
    };
    client.put_record(request).await.unwrap_or_else(|error| panic!("put {value}: {error}; rerun: {RERUN}"));
}

/// Every record of a shard from TRIM_HORIZON.
async fn read_shard(client: &Client, shard_id: &str) -> Vec<String> {
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
        records.extend(page.records.into_iter().map(|record| String::from_utf8_lossy(&record.data).into_owned()));
        match page.next_shard_iterator {
            None => return records,
            Some(_) if empty && page.millis_behind_latest == 0 => return records,
            Some(next) => iterator = next,
        }
    }
    panic!("{shard_id} did not end within {READ_PAGES_MAX} pages; rerun: {RERUN}");
}

async fn listed_shards(
    kinesis: &aws_sdk_kinesis::Client,
    filter: Option<ShardFilterType>,
) -> Vec<(String, Option<String>)> {
    let mut request = kinesis.list_shards().stream_name(STREAM);
    if let Some(kind) = filter {
        request = request.shard_filter(ShardFilter::builder().r#type(kind).build().expect("a filter"));
    }
    let listed = request.send().await.expect("ListShards");
    listed
        .shards()
        .iter()
        .map(|shard| (shard.shard_id().to_string(), shard.parent_shard_id().map(str::to_string)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_records_expire_and_a_closed_shard_disappears_once_empty() {
    let grpc_port = common::free_port_base(9);
    let mut dev = Dev::start_with(grpc_port, 500, &["retention.hour_ms=100", "retention.check_interval_ms=200"], RERUN);
    dev.wait_for_line("Ctrl-C stops all three nodes.");
    let endpoints = (0..3).map(|node| format!("http://127.0.0.1:{}", grpc_port + node)).collect();
    let config = ClientConfig { retries_max: 6, request_timeout_ms: 10_000, ..ClientConfig::default() };
    let client = Client::connect_with_config(endpoints, config).await.expect("valid endpoints");
    let mut created = false;
    for _ in 0..POLLS_MAX {
        if client.create_stream(STREAM, 1, None).await.is_ok() {
            created = true;
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    assert!(created, "the stream was never created; rerun: {RERUN}");
    client.wait_for_stream_active(STREAM, POLLS_MAX).await.expect("ACTIVE");

    for value in 0..OLD_RECORDS {
        put(&client, &format!("old-{value}")).await;
    }
    assert_eq!(read_shard(&client, "shardId-000000000000").await.len(), OLD_RECORDS as usize);

    // New records keep arriving; the old ones expire (24 test hours = 2.4 s after they arrived).
    let mut new = Vec::new();
    let mut expired = false;
    for poll in 0..POLLS_MAX {
        let value = format!("new-{poll}");
        put(&client, &value).await;
        new.push(value);
        let records = read_shard(&client, "shardId-000000000000").await;
        if records.iter().all(|record| record.starts_with("new-")) {
            // Whatever expired of the new ones expired from the front: the rest is a suffix.
            assert!(new.ends_with(&records), "the kept records are not the newest, in order: {records:?}");
            assert!(!records.is_empty(), "the records just written expired too");
            expired = true;
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    assert!(expired, "old records never expired; rerun: {RERUN}");

    // A split closes shard 0; once its records have all expired it leaves every listing.
    let kinesis = kinesis(grpc_port + 6);
    let middle = (u128::MAX / 2).to_string();
    kinesis
        .split_shard()
        .stream_name(STREAM)
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(middle)
        .send()
        .await
        .expect("SplitShard");
    let group_dirs = |dev: &Dev| -> usize {
        (1..=3)
            .filter_map(|node| std::fs::read_dir(dev.data_dir().join(format!("node-{node}/segments"))).ok())
            .map(|entries| entries.count())
            .sum()
    };
    let mut gone = false;
    for _ in 0..POLLS_MAX {
        let listed = listed_shards(&kinesis, None).await;
        if !listed.iter().any(|(id, _)| id == "shardId-000000000000") {
            assert_eq!(listed.len(), 2, "the children stay listed: {listed:?}");
            assert!(listed.iter().all(|(_, parent)| parent.as_deref() == Some("shardId-000000000000")));
            gone = true;
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    assert!(gone, "the closed shard never expired; rerun: {RERUN}");
    let described = kinesis.describe_stream().stream_name(STREAM).send().await.expect("DescribeStream");
    let ids: Vec<&str> = described
        .stream_description()
        .map(|d| d.shards().iter().map(|shard| shard.shard_id()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["shardId-000000000001", "shardId-000000000002"]);
    let at_horizon = listed_shards(&kinesis, Some(ShardFilterType::AtTrimHorizon)).await;
    assert_eq!(at_horizon.len(), 2, "the children are the oldest shards now: {at_horizon:?}");
    // The expired group's files go from every node (two child groups remain on each).
    let mut removed = false;
    for _ in 0..POLLS_MAX {
        if group_dirs(&dev) == 6 {
            removed = true;
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    assert!(
        removed,
        "the expired group's segments were not removed ({} group directories); rerun: {RERUN}",
        group_dirs(&dev)
    );
}
