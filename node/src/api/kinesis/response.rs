//! Response shapes of the botocore model `kinesis/2013-12-02`: PascalCase members, blobs in
//! base64, timestamps as epoch seconds (a JSON number with a millisecond fraction), and absent
//! optional members left out rather than written as `null`.

use base64::Engine;
use riffle_proto::v1;
use serde::{Serialize, Serializer};

/// Riffle does not encrypt records with KMS; every response that carries the member says so.
pub const ENCRYPTION_NONE: &str = "NONE";
/// The record size limit every stream has (1 MiB), in KiB.
pub const MAX_RECORD_SIZE_KIB: u32 = 1024;

/// Epoch milliseconds written as epoch seconds with a fraction, e.g. `1795360321.597`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochSeconds(pub i64);

impl Serialize for EpochSeconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0 as f64 / 1000.0)
    }
}

/// Bytes written as standard base64.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

pub fn stream_status(status: i32) -> &'static str {
    match v1::StreamStatus::try_from(status) {
        Ok(v1::StreamStatus::Creating) => "CREATING",
        Ok(v1::StreamStatus::Updating) => "UPDATING",
        Ok(v1::StreamStatus::Deleting) => "DELETING",
        Ok(v1::StreamStatus::Active) | Ok(v1::StreamStatus::Unspecified) | Err(_) => "ACTIVE",
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamModeDetails {
    pub stream_mode: &'static str,
}

impl StreamModeDetails {
    /// The mode of a stream as the gRPC description carries it.
    pub fn of(mode: i32) -> StreamModeDetails {
        let stream_mode = match v1::StreamMode::try_from(mode) {
            Ok(v1::StreamMode::OnDemand) => "ON_DEMAND",
            Ok(v1::StreamMode::Provisioned) | Ok(v1::StreamMode::Unspecified) | Err(_) => "PROVISIONED",
        };
        StreamModeDetails { stream_mode }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnhancedMetrics {
    pub shard_level_metrics: Vec<String>,
}

impl EnhancedMetrics {
    /// One entry with the shard-level metrics enabled (recorded only; none are emitted), as
    /// AWS reports them; a new stream has none.
    pub fn of(shard_level_metrics: Vec<String>) -> Vec<EnhancedMetrics> {
        vec![EnhancedMetrics { shard_level_metrics }]
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HashKeyRange {
    pub starting_hash_key: String,
    pub ending_hash_key: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SequenceNumberRange {
    pub starting_sequence_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ending_sequence_number: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Shard {
    pub shard_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_shard_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjacent_parent_shard_id: Option<String>,
    pub hash_key_range: HashKeyRange,
    pub sequence_number_range: SequenceNumberRange,
}

impl Shard {
    /// The AWS view of a shard; Riffle's replica and leader fields stay on the gRPC API.
    pub fn from_proto(shard: v1::Shard) -> Shard {
        let hash_key_range = shard.hash_key_range.unwrap_or_default();
        let sequence_number_range = shard.sequence_number_range.unwrap_or_default();
        Shard {
            shard_id: shard.shard_id,
            parent_shard_id: shard.parent_shard_id,
            adjacent_parent_shard_id: shard.adjacent_parent_shard_id,
            hash_key_range: HashKeyRange {
                starting_hash_key: hash_key_range.starting_hash_key,
                ending_hash_key: hash_key_range.ending_hash_key,
            },
            sequence_number_range: SequenceNumberRange {
                starting_sequence_number: sequence_number_range.starting_sequence_number,
                ending_sequence_number: sequence_number_range.ending_sequence_number,
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamDescription {
    pub stream_name: String,
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    pub stream_status: &'static str,
    pub stream_mode_details: StreamModeDetails,
    pub shards: Vec<Shard>,
    pub has_more_shards: bool,
    pub retention_period_hours: u32,
    pub stream_creation_timestamp: EpochSeconds,
    pub enhanced_monitoring: Vec<EnhancedMetrics>,
    pub encryption_type: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamOutput {
    pub stream_description: StreamDescription,
}

impl DescribeStreamOutput {
    pub fn from_proto(description: v1::StreamDescription, shard_level_metrics: Vec<String>) -> DescribeStreamOutput {
        DescribeStreamOutput {
            stream_description: StreamDescription {
                stream_status: stream_status(description.stream_status),
                stream_name: description.stream_name,
                stream_arn: description.stream_arn,
                stream_mode_details: StreamModeDetails::of(description.stream_mode),
                shards: description.shards.into_iter().map(Shard::from_proto).collect(),
                has_more_shards: description.has_more_shards,
                retention_period_hours: description.retention_period_hours,
                stream_creation_timestamp: EpochSeconds(description.stream_creation_timestamp_ms),
                enhanced_monitoring: EnhancedMetrics::of(shard_level_metrics),
                encryption_type: ENCRYPTION_NONE,
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamDescriptionSummary {
    pub stream_name: String,
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    pub stream_status: &'static str,
    pub stream_mode_details: StreamModeDetails,
    pub retention_period_hours: u32,
    pub stream_creation_timestamp: EpochSeconds,
    pub enhanced_monitoring: Vec<EnhancedMetrics>,
    pub encryption_type: &'static str,
    pub open_shard_count: u32,
    pub consumer_count: u32,
    #[serde(rename = "MaxRecordSizeInKiB")]
    pub max_record_size_in_kib: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamSummaryOutput {
    pub stream_description_summary: StreamDescriptionSummary,
}

impl DescribeStreamSummaryOutput {
    pub fn from_proto(
        summary: v1::StreamSummary,
        shard_level_metrics: Vec<String>,
        consumer_count: u32,
    ) -> DescribeStreamSummaryOutput {
        DescribeStreamSummaryOutput {
            stream_description_summary: StreamDescriptionSummary {
                stream_status: stream_status(summary.stream_status),
                stream_name: summary.stream_name,
                stream_arn: summary.stream_arn,
                stream_mode_details: StreamModeDetails::of(summary.stream_mode),
                retention_period_hours: summary.retention_period_hours,
                stream_creation_timestamp: EpochSeconds(summary.stream_creation_timestamp_ms),
                enhanced_monitoring: EnhancedMetrics::of(shard_level_metrics),
                encryption_type: ENCRYPTION_NONE,
                open_shard_count: summary.open_shard_count,
                consumer_count,
                max_record_size_in_kib: MAX_RECORD_SIZE_KIB,
            },
        }
    }
}

/// Every registered consumer is ACTIVE: it is usable once its registration is applied.
pub const CONSUMER_STATUS_ACTIVE: &str = "ACTIVE";

/// A consumer in RegisterStreamConsumer's and ListStreamConsumers' answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Consumer {
    pub consumer_name: String,
    #[serde(rename = "ConsumerARN")]
    pub consumer_arn: String,
    pub consumer_status: &'static str,
    pub consumer_creation_timestamp: EpochSeconds,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterStreamConsumerOutput {
    pub consumer: Consumer,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsumerDescription {
    pub consumer_name: String,
    #[serde(rename = "ConsumerARN")]
    pub consumer_arn: String,
    pub consumer_status: &'static str,
    pub consumer_creation_timestamp: EpochSeconds,
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamConsumerOutput {
    pub consumer_description: ConsumerDescription,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamConsumersOutput {
    pub consumers: Vec<Consumer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamSummary {
    pub stream_name: String,
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    pub stream_status: &'static str,
    pub stream_mode_details: StreamModeDetails,
    pub stream_creation_timestamp: EpochSeconds,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsOutput {
    pub stream_names: Vec<String>,
    pub has_more_streams: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    pub stream_summaries: Vec<StreamSummary>,
}

impl ListStreamsOutput {
    /// `next_token` is given by the caller: it knows how it encodes where the next page starts.
    pub fn from_proto(list: v1::ListStreamsResponse, next_token: Option<String>) -> ListStreamsOutput {
        ListStreamsOutput {
            stream_names: list.stream_names,
            has_more_streams: list.has_more_streams,
            next_token,
            stream_summaries: list
                .stream_summaries
                .into_iter()
                .map(|summary| StreamSummary {
                    stream_status: stream_status(summary.stream_status),
                    stream_name: summary.stream_name,
                    stream_arn: summary.stream_arn,
                    stream_mode_details: StreamModeDetails::of(summary.stream_mode),
                    stream_creation_timestamp: EpochSeconds(summary.stream_creation_timestamp_ms),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListShardsOutput {
    pub shards: Vec<Shard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

impl ListShardsOutput {
    pub fn from_proto(list: v1::ListShardsResponse) -> ListShardsOutput {
        ListShardsOutput {
            shards: list.shards.into_iter().map(Shard::from_proto).collect(),
            next_token: list.next_token,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordOutput {
    pub shard_id: String,
    pub sequence_number: String,
    pub encryption_type: &'static str,
}

impl PutRecordOutput {
    pub fn from_proto(put: v1::PutRecordResponse) -> PutRecordOutput {
        PutRecordOutput {
            shard_id: put.shard_id,
            sequence_number: put.sequence_number,
            encryption_type: ENCRYPTION_NONE,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsResultEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsOutput {
    pub failed_record_count: u32,
    pub records: Vec<PutRecordsResultEntry>,
    pub encryption_type: &'static str,
}

impl PutRecordsOutput {
    pub fn from_proto(put: v1::PutRecordsResponse) -> PutRecordsOutput {
        PutRecordsOutput {
            failed_record_count: put.failed_record_count,
            records: put
                .records
                .into_iter()
                .map(|entry| PutRecordsResultEntry {
                    sequence_number: entry.sequence_number,
                    shard_id: entry.shard_id,
                    error_code: entry.error_code,
                    error_message: entry.error_message,
                })
                .collect(),
            encryption_type: ENCRYPTION_NONE,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl Tag {
    pub fn list(tags: Vec<(String, String)>) -> Vec<Tag> {
        tags.into_iter().map(|(key, value)| Tag { key, value }).collect()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForStreamOutput {
    pub tags: Vec<Tag>,
    pub has_more_tags: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceOutput {
    pub tags: Vec<Tag>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnhancedMonitoringOutput {
    pub stream_name: String,
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    pub current_shard_level_metrics: Vec<String>,
    pub desired_shard_level_metrics: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeLimitsOutput {
    pub shard_limit: u32,
    pub open_shard_count: u32,
    pub on_demand_stream_count: u32,
    pub on_demand_stream_count_limit: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetResourcePolicyOutput {
    pub policy: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetShardIteratorOutput {
    pub shard_iterator: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    pub sequence_number: String,
    pub approximate_arrival_timestamp: EpochSeconds,
    pub data: Blob,
    pub partition_key: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateShardCountOutput {
    pub stream_name: String,
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    pub current_shard_count: u32,
    pub target_shard_count: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChildShard {
    pub shard_id: String,
    pub parent_shards: Vec<String>,
    pub hash_key_range: HashKeyRange,
}

impl ChildShard {
    pub fn from_proto(child: v1::ChildShard) -> ChildShard {
        let range = child.hash_key_range.unwrap_or_default();
        ChildShard {
            shard_id: child.shard_id,
            parent_shards: child.parent_shards,
            hash_key_range: HashKeyRange {
                starting_hash_key: range.starting_hash_key,
                ending_hash_key: range.ending_hash_key,
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecordsOutput {
    pub records: Vec<Record>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_shard_iterator: Option<String>,
    pub millis_behind_latest: i64,
    /// Only at the end of a closed shard, as AWS sends it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub child_shards: Vec<ChildShard>,
}

impl GetRecordsOutput {
    pub fn from_proto(get: v1::GetRecordsResponse) -> GetRecordsOutput {
        GetRecordsOutput {
            records: get
                .records
                .into_iter()
                .map(|record| Record {
                    sequence_number: record.sequence_number,
                    approximate_arrival_timestamp: EpochSeconds(record.approximate_arrival_timestamp_ms),
                    data: Blob(record.data.to_vec()),
                    partition_key: record.partition_key,
                })
                .collect(),
            next_shard_iterator: get.next_shard_iterator,
            millis_behind_latest: get.millis_behind_latest.max(0),
            child_shards: get.child_shards.into_iter().map(ChildShard::from_proto).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Every key of every object in `value`, and no `null` anywhere.
    fn assert_no_nulls(value: &Value, path: &str) {
        match value {
            Value::Null => panic!("null at {path}"),
            Value::Array(elements) => {
                for (index, element) in elements.iter().enumerate() {
                    assert_no_nulls(element, &format!("{path}[{index}]"));
                }
            }
            Value::Object(members) => {
                for (name, member) in members {
                    assert_no_nulls(member, &format!("{path}.{name}"));
                }
            }
            _ => {}
        }
    }

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value.as_object().expect("an object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    fn proto_shard() -> v1::Shard {
        v1::Shard {
            shard_id: "shardId-000000000000".into(),
            parent_shard_id: None,
            adjacent_parent_shard_id: None,
            hash_key_range: Some(v1::HashKeyRange {
                starting_hash_key: "0".into(),
                ending_hash_key: "340282366920938463463374607431768211455".into(),
            }),
            sequence_number_range: Some(v1::SequenceNumberRange {
                starting_sequence_number: "49000000000000000000000000000000000000000000000000000000".into(),
                ending_sequence_number: None,
            }),
            replica_nodes: vec![1, 2, 3],
            leader_node: Some(2),
        }
    }

    #[test]
    fn describe_stream_has_exactly_the_aws_members_and_no_nulls() {
        let output = DescribeStreamOutput::from_proto(
            v1::StreamDescription {
                stream_name: "orders".into(),
                stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/orders".into(),
                stream_status: v1::StreamStatus::Active as i32,
                shards: vec![proto_shard()],
                has_more_shards: false,
                retention_period_hours: 24,
                stream_creation_timestamp_ms: 1_795_360_321_000,
                stream_mode: v1::StreamMode::OnDemand as i32,
            },
            Vec::new(),
        );
        let json = serde_json::to_value(&output).expect("serializes");
        assert_no_nulls(&json, "");
        let description = &json["StreamDescription"];
        assert_eq!(
            keys(description),
            [
                "EncryptionType",
                "EnhancedMonitoring",
                "HasMoreShards",
                "RetentionPeriodHours",
                "Shards",
                "StreamARN",
                "StreamCreationTimestamp",
                "StreamModeDetails",
                "StreamName",
                "StreamStatus"
            ]
        );
        assert_eq!(description["StreamStatus"], "ACTIVE");
        assert_eq!(description["StreamModeDetails"], serde_json::json!({"StreamMode": "ON_DEMAND"}));
        assert_eq!(description["EnhancedMonitoring"], serde_json::json!([{"ShardLevelMetrics": []}]));
        assert_eq!(description["StreamCreationTimestamp"].as_f64(), Some(1_795_360_321.0));
        let shard = &description["Shards"][0];
        assert_eq!(keys(shard), ["HashKeyRange", "SequenceNumberRange", "ShardId"]);
        assert_eq!(keys(&shard["SequenceNumberRange"]), ["StartingSequenceNumber"]);
        assert_eq!(keys(&shard["HashKeyRange"]), ["EndingHashKey", "StartingHashKey"]);
    }

    #[test]
    fn summaries_and_lists_have_the_aws_members() {
        let summary = v1::StreamSummary {
            stream_name: "orders".into(),
            stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/orders".into(),
            stream_status: v1::StreamStatus::Creating as i32,
            open_shard_count: 4,
            retention_period_hours: 24,
            stream_creation_timestamp_ms: 1_795_360_321_500,
            stream_mode: v1::StreamMode::Provisioned as i32,
        };
        let json = serde_json::to_value(DescribeStreamSummaryOutput::from_proto(
            summary.clone(),
            vec!["IncomingBytes".into()],
            2,
        ))
        .expect("serializes");
        assert_no_nulls(&json, "");
        let description = &json["StreamDescriptionSummary"];
        assert_eq!(
            keys(description),
            [
                "ConsumerCount",
                "EncryptionType",
                "EnhancedMonitoring",
                "MaxRecordSizeInKiB",
                "OpenShardCount",
                "RetentionPeriodHours",
                "StreamARN",
                "StreamCreationTimestamp",
                "StreamModeDetails",
                "StreamName",
                "StreamStatus"
            ]
        );
        assert_eq!(description["StreamStatus"], "CREATING");
        assert_eq!(description["EnhancedMonitoring"], serde_json::json!([{"ShardLevelMetrics": ["IncomingBytes"]}]));
        assert_eq!(description["StreamCreationTimestamp"].as_f64(), Some(1_795_360_321.5));

        let list = v1::ListStreamsResponse {
            stream_names: vec!["orders".into()],
            has_more_streams: false,
            stream_summaries: vec![summary],
        };
        let json = serde_json::to_value(ListStreamsOutput::from_proto(list, None)).expect("serializes");
        assert_no_nulls(&json, "");
        assert_eq!(keys(&json), ["HasMoreStreams", "StreamNames", "StreamSummaries"]);
        assert_eq!(
            keys(&json["StreamSummaries"][0]),
            ["StreamARN", "StreamCreationTimestamp", "StreamModeDetails", "StreamName", "StreamStatus"]
        );

        let shards = v1::ListShardsResponse { shards: vec![proto_shard()], next_token: None };
        let json = serde_json::to_value(ListShardsOutput::from_proto(shards)).expect("serializes");
        assert_eq!(keys(&json), ["Shards"]);
    }

    #[test]
    fn data_plane_outputs_have_the_aws_members_and_no_nulls() {
        let put = PutRecordOutput::from_proto(v1::PutRecordResponse {
            shard_id: "shardId-000000000001".into(),
            sequence_number: "49".into(),
        });
        let json = serde_json::to_value(put).expect("serializes");
        assert_eq!(keys(&json), ["EncryptionType", "SequenceNumber", "ShardId"]);

        let puts = PutRecordsOutput::from_proto(v1::PutRecordsResponse {
            failed_record_count: 1,
            records: vec![
                v1::PutRecordsResultEntry {
                    sequence_number: Some("49".into()),
                    shard_id: Some("shardId-000000000000".into()),
                    error_code: None,
                    error_message: None,
                },
                v1::PutRecordsResultEntry {
                    sequence_number: None,
                    shard_id: None,
                    error_code: Some("InternalFailure".into()),
                    error_message: Some("Internal Service Failure".into()),
                },
            ],
        });
        let json = serde_json::to_value(puts).expect("serializes");
        assert_no_nulls(&json, "");
        assert_eq!(keys(&json), ["EncryptionType", "FailedRecordCount", "Records"]);
        assert_eq!(keys(&json["Records"][0]), ["SequenceNumber", "ShardId"]);
        assert_eq!(keys(&json["Records"][1]), ["ErrorCode", "ErrorMessage"]);

        let get = GetRecordsOutput::from_proto(v1::GetRecordsResponse {
            records: vec![v1::Record {
                sequence_number: "49".into(),
                approximate_arrival_timestamp_ms: 1_795_360_321_597,
                data: b"hello".to_vec().into(),
                partition_key: "k".into(),
            }],
            next_shard_iterator: Some("AAAA".into()),
            millis_behind_latest: 0,
            child_shards: Vec::new(),
        });
        let text = serde_json::to_string(&get).expect("serializes");
        assert!(text.contains(r#""ApproximateArrivalTimestamp":1795360321.597"#), "{text}");
        let json: Value = serde_json::from_str(&text).expect("parses");
        assert_no_nulls(&json, "");
        assert_eq!(keys(&json), ["MillisBehindLatest", "NextShardIterator", "Records"]);
        assert_eq!(
            keys(&json["Records"][0]),
            ["ApproximateArrivalTimestamp", "Data", "PartitionKey", "SequenceNumber"]
        );
        assert_eq!(json["Records"][0]["Data"], "aGVsbG8=");

        let at_end = GetRecordsOutput::from_proto(v1::GetRecordsResponse {
            records: Vec::new(),
            next_shard_iterator: None,
            millis_behind_latest: 0,
            child_shards: vec![v1::ChildShard {
                shard_id: "shardId-000000000002".into(),
                parent_shards: vec!["shardId-000000000000".into()],
                hash_key_range: Some(v1::HashKeyRange { starting_hash_key: "0".into(), ending_hash_key: "9".into() }),
            }],
        });
        let json = serde_json::to_value(at_end).expect("serializes");
        assert_eq!(keys(&json), ["ChildShards", "MillisBehindLatest", "Records"]);
        assert_eq!(keys(&json["ChildShards"][0]), ["HashKeyRange", "ParentShards", "ShardId"]);
    }
}
