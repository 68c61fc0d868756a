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

use aws_sdk_kinesis::types::{ShardFilter, ShardFilterType};
use riffle_client::proto::PutRecordRequest;
use riffle_client::Client;

mod common;

use common::{connect, kinesis, Dev, POLLS_MAX, POLL_PAUSE};

const RERUN: &str = "cargo test -p riffle-node --test retention -- --nocapture";
const STREAM: &str = "expiring";
const OLD_RECORDS: u32 = 20;

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

/// The data of every record of a shard from TRIM_HORIZON.
async fn read_shard(client: &Client, shard_id: &str) -> Vec<String> {
    common::read_shard(client, STREAM, shard_id, RERUN).await.into_iter().map(|(_, data)| data).collect()
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
    let client = connect(grpc_port).await;
    common::create_active_stream(&client, STREAM, 1, RERUN).await;

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
