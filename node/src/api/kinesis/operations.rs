//! The Kinesis operations: each reads its request members, maps them onto a
//! [`StreamService`] call, and shapes the answer as AWS does.

use base64::Engine;
use riffle_proto::v1;
use serde::Serialize;
use serde_json::{Map, Value};

use super::arn::{
    parse_consumer_arn, parse_stream_arn, CONSUMER_ARN_PATTERN, STREAM_ARN_CHARS_MAX, STREAM_ARN_PATTERN,
};
use super::error::KinesisError;
use super::request::{required, Members};
use super::response::{
    Consumer, ConsumerDescription, DescribeLimitsOutput, DescribeStreamConsumerOutput, DescribeStreamOutput,
    DescribeStreamSummaryOutput, EnhancedMonitoringOutput, EpochSeconds, GetRecordsOutput, GetResourcePolicyOutput,
    GetShardIteratorOutput, ListShardsOutput, ListStreamConsumersOutput, ListStreamsOutput, ListTagsForResourceOutput,
    ListTagsForStreamOutput, PutRecordOutput, PutRecordsOutput, RegisterStreamConsumerOutput, Tag,
    UpdateShardCountOutput, CONSUMER_STATUS_ACTIVE, MAX_RECORD_SIZE_KIB,
};
use crate::api::ApiError;
use crate::service::{StreamService, ADD_TAGS_PER_CALL_MAX, TAG_RESOURCE_PER_CALL_MAX};

/// The largest `Limit` / `MaxResults` of the list and read operations.
const PAGE_LIMIT_MAX: i64 = 10_000;

/// Prefix inside a ListStreams `NextToken`, so that a token from anywhere else is refused.
const LIST_STREAMS_TOKEN_PREFIX: &str = "riffle-list-streams/";
/// Prefix inside a ListStreamConsumers `NextToken`.
const LIST_CONSUMERS_TOKEN_PREFIX: &str = "riffle-list-consumers/";
/// ListStreamConsumers' page size when `MaxResults` is not given.
const LIST_CONSUMERS_DEFAULT: u32 = 100;

/// The operations this node carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreateStream,
    DeleteStream,
    DescribeStream,
    DescribeStreamSummary,
    ListStreams,
    ListShards,
    PutRecord,
    PutRecords,
    GetShardIterator,
    GetRecords,
    IncreaseStreamRetentionPeriod,
    DecreaseStreamRetentionPeriod,
    AddTagsToStream,
    RemoveTagsFromStream,
    ListTagsForStream,
    TagResource,
    UntagResource,
    ListTagsForResource,
    EnableEnhancedMonitoring,
    DisableEnhancedMonitoring,
    DescribeLimits,
    PutResourcePolicy,
    GetResourcePolicy,
    DeleteResourcePolicy,
    /// The enhanced fan-out consumer registry (SubscribeToShard is not offered yet).
    RegisterStreamConsumer,
    DeregisterStreamConsumer,
    DescribeStreamConsumer,
    ListStreamConsumers,
    /// Answered with an honest refusal: records are not encrypted at rest.
    StartStreamEncryption,
    StopStreamEncryption,
    SplitShard,
    MergeShards,
    UpdateShardCount,
    UpdateStreamMode,
}

/// What a target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Supported(Operation),
    /// A Kinesis operation Riffle will offer but does not yet.
    NotYetSupported(&'static str),
    /// A Kinesis operation Riffle has no plan to offer (channels, queues, account settings…).
    NotSupported(&'static str),
}

/// The classic operations not offered in this version.
pub const NOT_YET_SUPPORTED: [&str; 1] = ["SubscribeToShard"];

/// Operations of the current AWS model outside Riffle's plan.
pub const NOT_SUPPORTED: [&str; 22] = [
    "DescribeAccountSettings",
    "UpdateAccountSettings",
    "UpdateMaxRecordSize",
    "UpdateStreamWarmThroughput",
    "UpdateStreamRecordDistributionStrategy",
    "CreateChannel",
    "DeleteChannel",
    "DescribeChannel",
    "ListChannels",
    "UpdateChannel",
    "CreateQueue",
    "DeleteQueue",
    "DescribeQueue",
    "ListQueues",
    "UpdateQueue",
    "ReceiveQueueRecords",
    "AcknowledgeQueueRecords",
    "UpdateQueueRecordsVisibility",
    "ReceiveDeadLetterQueueRecords",
    "AcknowledgeDeadLetterQueueRecords",
    "RestoreDeadLetterQueueRecords",
    "UpdateDeadLetterQueueRecordsVisibility",
];

impl Target {
    /// The operation named by `Kinesis_20131202.<Operation>`; `None` for anything else.
    pub fn parse(header: &str) -> Option<Target> {
        let (service, operation) = header.split_once('.')?;
        if service != "Kinesis_20131202" {
            return None;
        }
        let supported = match operation {
            "CreateStream" => Operation::CreateStream,
            "DeleteStream" => Operation::DeleteStream,
            "DescribeStream" => Operation::DescribeStream,
            "DescribeStreamSummary" => Operation::DescribeStreamSummary,
            "ListStreams" => Operation::ListStreams,
            "ListShards" => Operation::ListShards,
            "PutRecord" => Operation::PutRecord,
            "PutRecords" => Operation::PutRecords,
            "GetShardIterator" => Operation::GetShardIterator,
            "GetRecords" => Operation::GetRecords,
            "IncreaseStreamRetentionPeriod" => Operation::IncreaseStreamRetentionPeriod,
            "DecreaseStreamRetentionPeriod" => Operation::DecreaseStreamRetentionPeriod,
            "AddTagsToStream" => Operation::AddTagsToStream,
            "RemoveTagsFromStream" => Operation::RemoveTagsFromStream,
            "ListTagsForStream" => Operation::ListTagsForStream,
            "TagResource" => Operation::TagResource,
            "UntagResource" => Operation::UntagResource,
            "ListTagsForResource" => Operation::ListTagsForResource,
            "EnableEnhancedMonitoring" => Operation::EnableEnhancedMonitoring,
            "DisableEnhancedMonitoring" => Operation::DisableEnhancedMonitoring,
            "DescribeLimits" => Operation::DescribeLimits,
            "PutResourcePolicy" => Operation::PutResourcePolicy,
            "GetResourcePolicy" => Operation::GetResourcePolicy,
            "DeleteResourcePolicy" => Operation::DeleteResourcePolicy,
            "RegisterStreamConsumer" => Operation::RegisterStreamConsumer,
            "DeregisterStreamConsumer" => Operation::DeregisterStreamConsumer,
            "DescribeStreamConsumer" => Operation::DescribeStreamConsumer,
            "ListStreamConsumers" => Operation::ListStreamConsumers,
            "StartStreamEncryption" => Operation::StartStreamEncryption,
            "StopStreamEncryption" => Operation::StopStreamEncryption,
            "SplitShard" => Operation::SplitShard,
            "MergeShards" => Operation::MergeShards,
            "UpdateShardCount" => Operation::UpdateShardCount,
            "UpdateStreamMode" => Operation::UpdateStreamMode,
            other => {
                if let Some(name) = NOT_YET_SUPPORTED.iter().find(|name| **name == other) {
                    return Some(Target::NotYetSupported(name));
                }
                return NOT_SUPPORTED.iter().find(|name| **name == other).map(|name| Target::NotSupported(name));
            }
        };
        Some(Target::Supported(supported))
    }
}

/// A Coral validation error.
fn validation(value: &str, member: &str, constraint: &str) -> KinesisError {
    KinesisError::Api(ApiError::validation(value, member, constraint))
}

fn not_supported_yet(what: &str) -> KinesisError {
    KinesisError::Api(ApiError::InvalidArgument(format!("{what} is not supported by this server yet.")))
}

/// A page size (`Limit`, `MaxResults`) within 1..=10,000.
fn page_limit(value: Option<i64>, member: &str) -> Result<Option<u32>, KinesisError> {
    match value {
        None => Ok(None),
        Some(limit) if limit < 1 => {
            Err(validation(&limit.to_string(), member, "Member must have value greater than or equal to 1"))
        }
        Some(limit) if limit > PAGE_LIMIT_MAX => {
            Err(validation(&limit.to_string(), member, "Member must have value less than or equal to 10000"))
        }
        Some(limit) => Ok(Some(limit as u32)),
    }
}

/// `0|([1-9]\d{0,max_digits - 1})`, the model's pattern for hash keys and sequence numbers.
fn is_decimal(text: &str, max_digits: usize) -> bool {
    text == "0"
        || (!text.is_empty()
            && text.len() <= max_digits
            && !text.starts_with('0')
            && text.bytes().all(|byte| byte.is_ascii_digit()))
}

fn encode<T: Serialize>(output: &T) -> Vec<u8> {
    serde_json::to_vec(output).expect("response shapes hold only strings, numbers, booleans and lists")
}

/// How a request names its stream, as read (types checked, nothing validated yet).
struct StreamReference {
    name: Option<String>,
    arn: Option<String>,
    id: Option<String>,
}

impl StreamReference {
    fn read(members: &Members<'_>) -> Result<StreamReference, KinesisError> {
        Ok(StreamReference {
            name: members.string("StreamName")?,
            arn: members.string("StreamARN")?,
            id: members.string("StreamId")?,
        })
    }

    fn is_given(&self) -> bool {
        self.name.is_some() || self.arn.is_some() || self.id.is_some()
    }
}

/// The region and account of this cluster's ARNs: a `StreamARN` naming another one names a
/// stream this cluster does not hold.
#[derive(Debug, Clone)]
pub struct ArnScope {
    pub region: String,
    pub account: String,
}

/// The stream a request names by `StreamName` or `StreamARN`.
fn stream_name(reference: StreamReference, scope: &ArnScope) -> Result<String, KinesisError> {
    if reference.id.is_some() {
        return Err(not_supported_yet("Addressing a stream by StreamId"));
    }
    let from_arn = match &reference.arn {
        None => None,
        Some(text) => {
            if text.is_empty() {
                return Err(validation(text, "streamARN", "Member must have length greater than or equal to 1"));
            }
            if text.chars().count() > STREAM_ARN_CHARS_MAX {
                return Err(validation(text, "streamARN", "Member must have length less than or equal to 2048"));
            }
            let arn = parse_stream_arn(text).ok_or_else(|| {
                validation(
                    text,
                    "streamARN",
                    &format!("Member must satisfy regular expression pattern: {STREAM_ARN_PATTERN}"),
                )
            })?;
            if arn.region != scope.region || arn.account != scope.account {
                return Err(KinesisError::Api(ApiError::ResourceNotFound(format!(
                    "Stream {} under account {} not found.",
                    arn.stream_name, arn.account
                ))));
            }
            Some(arn.stream_name.to_string())
        }
    };
    match (reference.name, from_arn) {
        (Some(name), Some(arn_name)) if name != arn_name => Err(KinesisError::Api(ApiError::InvalidArgument(format!(
            "StreamARN {} and StreamName {name} name different streams.",
            reference.arn.unwrap_or_default()
        )))),
        (Some(name), _) | (None, Some(name)) => Ok(name),
        (None, None) => Err(KinesisError::Api(ApiError::InvalidArgument(
            "Either StreamName or StreamARN should be provided.".into(),
        ))),
    }
}

/// CreateStream's request and the tags the stream starts with.
type CreateStreamInput = (v1::CreateStreamRequest, Vec<(String, String)>);

fn create_stream_request(members: Members<'_>) -> Result<CreateStreamInput, KinesisError> {
    let stream_name = members.string("StreamName")?;
    let shard_count = members.integer("ShardCount")?;
    let mode_details = members.structure("StreamModeDetails", "streamModeDetails")?;
    let stream_mode = mode_details.map(|details| details.string("StreamMode")).transpose()?.flatten();
    let tags = members.string_map("Tags")?;
    let warm_throughput = members.integer("WarmThroughputMiBps")?;
    let max_record_size = members.integer("MaxRecordSizeInKiB")?;

    let stream_name = required(stream_name, "streamName")?;
    let on_demand = match mode_details {
        None => false,
        Some(_) => match required(stream_mode, "streamModeDetails.streamMode")?.as_str() {
            "PROVISIONED" => false,
            "ON_DEMAND" => true,
            other => {
                return Err(validation(
                    other,
                    "streamModeDetails.streamMode",
                    "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]",
                ))
            }
        },
    };
    let shard_count = if on_demand {
        if shard_count.is_some() {
            return Err(KinesisError::Api(ApiError::InvalidArgument(
                "ShardCount must not be given for a stream in ON_DEMAND mode.".into(),
            )));
        }
        // The service gives an on-demand stream its starting shards.
        0
    } else {
        let count = required(shard_count, "shardCount")?;
        if count < 1 {
            return Err(validation(
                &count.to_string(),
                "shardCount",
                "Member must have value greater than or equal to 1",
            ));
        }
        u32::try_from(count).unwrap_or(u32::MAX)
    };
    if warm_throughput.is_some() {
        return Err(not_supported_yet("WarmThroughputMiBps"));
    }
    if max_record_size.is_some_and(|size| size != i64::from(MAX_RECORD_SIZE_KIB)) {
        return Err(not_supported_yet("A MaxRecordSizeInKiB other than 1024"));
    }
    let stream_mode = if on_demand { v1::StreamMode::OnDemand } else { v1::StreamMode::Provisioned };
    let request = v1::CreateStreamRequest {
        stream_name,
        shard_count,
        retention_period_hours: None,
        stream_mode: stream_mode as i32,
    };
    Ok((request, tags.unwrap_or_default()))
}

/// DeleteStream's request and whether it deletes the stream's consumers too.
fn delete_stream_request(
    members: Members<'_>,
    scope: &ArnScope,
) -> Result<(v1::DeleteStreamRequest, bool), KinesisError> {
    let reference = StreamReference::read(&members)?;
    let enforce_consumer_deletion = members.boolean("EnforceConsumerDeletion")?.unwrap_or(false);
    Ok((v1::DeleteStreamRequest { stream_name: stream_name(reference, scope)? }, enforce_consumer_deletion))
}

/// The stream a consumer operation names by its required `StreamARN`.
fn stream_of_arn(arn: Option<String>, scope: &ArnScope) -> Result<String, KinesisError> {
    let arn = required(arn, "streamARN")?;
    stream_name(StreamReference { name: None, arn: Some(arn), id: None }, scope)
}

/// The consumer a request names: by `ConsumerARN`, or by `StreamARN` and `ConsumerName`.
#[derive(Debug, PartialEq, Eq)]
struct ConsumerReference {
    stream: String,
    consumer: String,
    /// From a `ConsumerARN`: only the registration made in this epoch second.
    created_seconds: Option<i64>,
}

fn consumer_reference(members: &Members<'_>, scope: &ArnScope) -> Result<ConsumerReference, KinesisError> {
    let stream_arn = members.string("StreamARN")?;
    let consumer_name = members.string("ConsumerName")?;
    let consumer_arn = members.string("ConsumerARN")?;
    if let Some(arn) = consumer_arn {
        if arn.is_empty() {
            return Err(validation(&arn, "consumerARN", "Member must have length greater than or equal to 1"));
        }
        if arn.chars().count() > STREAM_ARN_CHARS_MAX {
            return Err(validation(&arn, "consumerARN", "Member must have length less than or equal to 2048"));
        }
        let parsed = parse_consumer_arn(&arn).ok_or_else(|| {
            validation(
                &arn,
                "consumerARN",
                &format!("Member must satisfy regular expression pattern: {CONSUMER_ARN_PATTERN}"),
            )
        })?;
        if parsed.stream.region != scope.region || parsed.stream.account != scope.account {
            return Err(KinesisError::Api(ApiError::ResourceNotFound(format!("Consumer {arn} not found."))));
        }
        let stream = parsed.stream.stream_name.to_string();
        let consumer = parsed.consumer_name.to_string();
        let stream_differs = match stream_arn {
            Some(stream_arn) => stream_of_arn(Some(stream_arn), scope)? != stream,
            None => false,
        };
        if stream_differs || consumer_name.is_some_and(|name| name != consumer) {
            return Err(KinesisError::Api(ApiError::InvalidArgument(format!(
                "ConsumerARN {arn} names another consumer than StreamARN and ConsumerName."
            ))));
        }
        return Ok(ConsumerReference { stream, consumer, created_seconds: Some(parsed.created_seconds) });
    }
    match (stream_arn, consumer_name) {
        (Some(stream_arn), Some(consumer)) => {
            Ok(ConsumerReference { stream: stream_of_arn(Some(stream_arn), scope)?, consumer, created_seconds: None })
        }
        _ => Err(KinesisError::Api(ApiError::InvalidArgument(
            "Either ConsumerARN or both StreamARN and ConsumerName must be provided.".into(),
        ))),
    }
}

fn describe_stream_request(members: Members<'_>, scope: &ArnScope) -> Result<v1::DescribeStreamRequest, KinesisError> {
    let reference = StreamReference::read(&members)?;
    let limit = members.integer("Limit")?;
    let exclusive_start_shard_id = members.string("ExclusiveStartShardId")?;
    let stream_name = stream_name(reference, scope)?;
    let limit = page_limit(limit, "limit")?;
    Ok(v1::DescribeStreamRequest { stream_name, limit, exclusive_start_shard_id })
}

fn describe_stream_summary_request(
    members: Members<'_>,
    scope: &ArnScope,
) -> Result<v1::DescribeStreamSummaryRequest, KinesisError> {
    Ok(v1::DescribeStreamSummaryRequest { stream_name: stream_name(StreamReference::read(&members)?, scope)? })
}

fn list_streams_request(members: Members<'_>) -> Result<v1::ListStreamsRequest, KinesisError> {
    let limit = members.integer("Limit")?;
    let exclusive_start_stream_name = members.string("ExclusiveStartStreamName")?;
    let next_token = members.string("NextToken")?;
    let limit = page_limit(limit, "limit")?;
    let exclusive_start_stream_name = match (next_token, exclusive_start_stream_name) {
        (Some(_), Some(_)) => {
            return Err(KinesisError::Api(ApiError::InvalidArgument(
                "NextToken and ExclusiveStartStreamName cannot be provided together.".into(),
            )))
        }
        (Some(token), None) => Some(decode_list_streams_token(&token)?),
        (None, start) => start,
    };
    Ok(v1::ListStreamsRequest { limit, exclusive_start_stream_name })
}

fn list_shards_request(members: Members<'_>, scope: &ArnScope) -> Result<v1::ListShardsRequest, KinesisError> {
    let reference = StreamReference::read(&members)?;
    let next_token = members.string("NextToken")?;
    let exclusive_start_shard_id = members.string("ExclusiveStartShardId")?;
    let max_results = members.integer("MaxResults")?;
    // The creation time tells apart streams of one name; a name is never reused while its
    // stream exists, so the stream found by name is the one meant.
    let _stream_creation_timestamp = members.timestamp_ms("StreamCreationTimestamp")?;
    let filter = members.structure("ShardFilter", "shardFilter")?;
    let filter_type = filter.map(|filter| filter.string("Type")).transpose()?.flatten();
    let filter_shard_id = filter.map(|filter| filter.string("ShardId")).transpose()?.flatten();
    let filter_timestamp = filter.map(|filter| filter.timestamp_ms("Timestamp")).transpose()?.flatten();

    let max_results = page_limit(max_results, "maxResults")?;
    let stream_name = match &next_token {
        Some(_) if reference.arn.is_some() => {
            return Err(KinesisError::Api(ApiError::InvalidArgument(
                "NextToken and StreamARN cannot be provided together.".into(),
            )))
        }
        // The service refuses a token together with a StreamName, with AWS's message.
        Some(_) => reference.name.unwrap_or_default(),
        // And a request with neither.
        None if !reference.is_given() => String::new(),
        None => stream_name(reference, scope)?,
    };
    let mut start_after = exclusive_start_shard_id;
    let mut listed_filter = None;
    if filter.is_some() {
        // AFTER_SHARD_ID is the exclusive start; the service applies the others.
        match required(filter_type, "shardFilter.type")?.as_str() {
            "AFTER_SHARD_ID" => {
                let shard_id = filter_shard_id.ok_or_else(|| {
                    ApiError::InvalidArgument("ShardId must be provided for the AFTER_SHARD_ID filter.".into())
                })?;
                if start_after.is_some() {
                    return Err(KinesisError::Api(ApiError::InvalidArgument(
                        "ExclusiveStartShardId and a ShardFilter of type AFTER_SHARD_ID cannot be provided together."
                            .into(),
                    )));
                }
                start_after = Some(shard_id);
            }
            "AT_TIMESTAMP" | "FROM_TIMESTAMP" if filter_timestamp.is_none() => {
                return Err(KinesisError::Api(ApiError::InvalidArgument(
                    "Timestamp must be provided for the AT_TIMESTAMP and FROM_TIMESTAMP filters.".into(),
                )))
            }
            kind @ ("AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" | "AT_LATEST" | "AT_TIMESTAMP" | "FROM_TIMESTAMP") => {
                listed_filter = Some(kind.to_string());
            }
            other => {
                return Err(validation(
                    other,
                    "shardFilter.type",
                    "Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
                ))
            }
        }
    }
    Ok(v1::ListShardsRequest {
        stream_name,
        max_results,
        exclusive_start_shard_id: start_after,
        next_token,
        filter_type: listed_filter,
        filter_timestamp_ms: filter_timestamp,
    })
}

fn put_record_request(members: Members<'_>, scope: &ArnScope) -> Result<v1::PutRecordRequest, KinesisError> {
    let reference = StreamReference::read(&members)?;
    let data = members.blob("Data")?;
    let partition_key = members.string("PartitionKey")?;
    let explicit_hash_key = members.string("ExplicitHashKey")?;
    let sequence_number_for_ordering = members.string("SequenceNumberForOrdering")?;

    let data = required(data, "data")?;
    let partition_key = required(partition_key, "partitionKey")?;
    check_explicit_hash_key(explicit_hash_key.as_deref(), "explicitHashKey")?;
    Ok(v1::PutRecordRequest {
        stream_name: stream_name(reference, scope)?,
        data: data.into(),
        partition_key,
        explicit_hash_key,
        sequence_number_for_ordering,
    })
}

fn put_records_request(members: Members<'_>, scope: &ArnScope) -> Result<v1::PutRecordsRequest, KinesisError> {
    let reference = StreamReference::read(&members)?;
    let listed = members.structure_list("Records")?;
    let elements = listed.unwrap_or_default();
    let paths: Vec<String> = (1..=elements.len()).map(|position| format!("records.{position}.member")).collect();
    let mut read = Vec::with_capacity(elements.len());
    for (element, path) in elements.iter().zip(&paths) {
        let entry = Members::element(element, path);
        read.push((entry, entry.blob("Data")?, entry.string("PartitionKey")?, entry.string("ExplicitHashKey")?));
    }

    required(listed, "records")?;
    let mut records = Vec::with_capacity(read.len());
    for (entry, data, partition_key, explicit_hash_key) in read {
        let data = required(data, &entry.path_of("Data"))?;
        let partition_key = required(partition_key, &entry.path_of("PartitionKey"))?;
        check_explicit_hash_key(explicit_hash_key.as_deref(), &entry.path_of("ExplicitHashKey"))?;
        records.push(v1::PutRecordsRequestEntry { data: data.into(), partition_key, explicit_hash_key });
    }
    Ok(v1::PutRecordsRequest { stream_name: stream_name(reference, scope)?, records })
}

fn get_shard_iterator_request(
    members: Members<'_>,
    scope: &ArnScope,
) -> Result<v1::GetShardIteratorRequest, KinesisError> {
    use v1::ShardIteratorType as Type;
    let reference = StreamReference::read(&members)?;
    let shard_id = members.string("ShardId")?;
    let iterator_type = members.string("ShardIteratorType")?;
    let starting_sequence_number = members.string("StartingSequenceNumber")?;
    let timestamp_ms = members.timestamp_ms("Timestamp")?;

    let shard_id = required(shard_id, "shardId")?;
    let iterator_type = match required(iterator_type, "shardIteratorType")?.as_str() {
        "AT_SEQUENCE_NUMBER" => Type::AtSequenceNumber,
        "AFTER_SEQUENCE_NUMBER" => Type::AfterSequenceNumber,
        "TRIM_HORIZON" => Type::TrimHorizon,
        "LATEST" => Type::Latest,
        "AT_TIMESTAMP" => Type::AtTimestamp,
        other => {
            return Err(validation(
                other,
                "shardIteratorType",
                "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
            ))
        }
    };
    if let Some(sequence) = &starting_sequence_number {
        if !is_decimal(sequence, 129) {
            return Err(validation(
                sequence,
                "startingSequenceNumber",
                r"Member must satisfy regular expression pattern: 0|([1-9]\d{0,128})",
            ));
        }
    }
    Ok(v1::GetShardIteratorRequest {
        stream_name: stream_name(reference, scope)?,
        shard_id,
        shard_iterator_type: iterator_type as i32,
        starting_sequence_number,
        timestamp_ms,
    })
}

fn get_records_request(members: Members<'_>, scope: &ArnScope) -> Result<v1::GetRecordsRequest, KinesisError> {
    let shard_iterator = members.string("ShardIterator")?;
    let limit = members.integer("Limit")?;
    let reference = StreamReference::read(&members)?;

    let shard_iterator = required(shard_iterator, "shardIterator")?;
    let limit = page_limit(limit, "limit")?;
    // The iterator names its stream; a StreamARN beside it is checked for form and place only.
    if reference.arn.is_some() {
        stream_name(StreamReference { name: None, ..reference }, scope)?;
    }
    Ok(v1::GetRecordsRequest { shard_iterator, limit })
}

/// The operations over one [`StreamService`].
#[derive(Clone)]
pub struct Operations {
    service: StreamService,
    scope: ArnScope,
}

impl Operations {
    /// `scope` must be the region and account the service puts in its ARNs.
    pub fn new(service: StreamService, scope: ArnScope) -> Operations {
        Operations { service, scope }
    }

    /// Runs `operation` on a request body already parsed as a JSON object. The answer is the
    /// response body; void operations answer with an empty one, as AWS does.
    pub async fn invoke(&self, operation: Operation, body: &Map<String, Value>) -> Result<Vec<u8>, KinesisError> {
        let members = Members::top(body);
        let scope = &self.scope;
        let service = &self.service;
        match operation {
            Operation::CreateStream => {
                let (request, tags) = create_stream_request(members)?;
                service.create_stream_with_tags(request, tags).await?;
                Ok(Vec::new())
            }
            Operation::DeleteStream => {
                let (request, enforce_consumer_deletion) = delete_stream_request(members, scope)?;
                service.delete_stream_enforcing(request, enforce_consumer_deletion).await?;
                Ok(Vec::new())
            }
            Operation::DescribeStream => {
                let described = service.describe_stream(describe_stream_request(members, scope)?).await?;
                let description = described
                    .stream_description
                    .ok_or_else(|| ApiError::Internal("the service described no stream".into()))?;
                let metrics = shard_level_metrics(service, &description.stream_name).await?;
                Ok(encode(&DescribeStreamOutput::from_proto(description, metrics)))
            }
            Operation::DescribeStreamSummary => {
                let summary = service
                    .describe_stream_summary(describe_stream_summary_request(members, scope)?)
                    .await?
                    .stream_description_summary
                    .ok_or_else(|| ApiError::Internal("the service summarized no stream".into()))?;
                let meta = service.stream_meta(&summary.stream_name).await?;
                let metrics = meta.shard_level_metrics.into_iter().collect();
                let consumer_count = meta.consumers.len() as u32;
                Ok(encode(&DescribeStreamSummaryOutput::from_proto(summary, metrics, consumer_count)))
            }
            Operation::ListStreams => {
                let listed = service.list_streams(list_streams_request(members)?).await?;
                let next_token = match (listed.has_more_streams, listed.stream_names.last()) {
                    (true, Some(last)) => Some(encode_list_streams_token(last)),
                    _ => None,
                };
                Ok(encode(&ListStreamsOutput::from_proto(listed, next_token)))
            }
            Operation::ListShards => {
                let listed = service.list_shards(list_shards_request(members, scope)?).await?;
                Ok(encode(&ListShardsOutput::from_proto(listed)))
            }
            Operation::PutRecord => {
                let put = service.put_record(put_record_request(members, scope)?).await?;
                Ok(encode(&PutRecordOutput::from_proto(put)))
            }
            Operation::PutRecords => {
                let put = service.put_records(put_records_request(members, scope)?).await?;
                Ok(encode(&PutRecordsOutput::from_proto(put)))
            }
            Operation::GetShardIterator => {
                let iterator = service.get_shard_iterator(get_shard_iterator_request(members, scope)?).await?;
                Ok(encode(&GetShardIteratorOutput { shard_iterator: iterator.shard_iterator }))
            }
            Operation::GetRecords => {
                let got = service.get_records(get_records_request(members, scope)?).await?;
                Ok(encode(&GetRecordsOutput::from_proto(got)))
            }
            Operation::IncreaseStreamRetentionPeriod | Operation::DecreaseStreamRetentionPeriod => {
                let reference = StreamReference::read(&members)?;
                let hours = members.integer("RetentionPeriodHours")?;
                let hours = required(hours, "retentionPeriodHours")?;
                let name = stream_name(reference, scope)?;
                let increase = operation == Operation::IncreaseStreamRetentionPeriod;
                service.update_retention(&name, hours, increase).await?;
                Ok(Vec::new())
            }
            Operation::AddTagsToStream => {
                let reference = StreamReference::read(&members)?;
                let tags = members.string_map("Tags")?;
                let tags = required(tags, "tags")?;
                service.add_tags(&stream_name(reference, scope)?, None, tags, ADD_TAGS_PER_CALL_MAX).await?;
                Ok(Vec::new())
            }
            Operation::RemoveTagsFromStream => {
                let reference = StreamReference::read(&members)?;
                let keys = members.string_list("TagKeys")?;
                let keys = tag_keys(required(keys, "tagKeys")?)?;
                service.remove_tags(&stream_name(reference, scope)?, None, keys).await?;
                Ok(Vec::new())
            }
            Operation::ListTagsForStream => {
                let reference = StreamReference::read(&members)?;
                let start = members.string("ExclusiveStartTagKey")?;
                let limit = members.integer("Limit")?;
                let name = stream_name(reference, scope)?;
                let limit = match limit {
                    Some(limit) if !(1..=50).contains(&limit) => {
                        return Err(validation(&limit.to_string(), "limit", "Member must have value between 1 and 50"))
                    }
                    limit => limit.map(|limit| limit as usize),
                };
                let page = service.list_tags(&name, None, start.as_deref(), limit).await?;
                Ok(encode(&ListTagsForStreamOutput { tags: Tag::list(page.tags), has_more_tags: page.has_more_tags }))
            }
            Operation::TagResource => {
                let arn = members.string("ResourceARN")?;
                let stream_id = members.string("StreamId")?;
                let tags = members.string_map("Tags")?;
                let (name, consumer) = tagged_resource(arn, stream_id, scope)?;
                let tags = required(tags, "tags")?;
                let consumer = consumer.as_ref().map(|(consumer, seconds)| (consumer.as_str(), *seconds));
                service.add_tags(&name, consumer, tags, TAG_RESOURCE_PER_CALL_MAX).await?;
                Ok(Vec::new())
            }
            Operation::UntagResource => {
                let arn = members.string("ResourceARN")?;
                let stream_id = members.string("StreamId")?;
                let keys = members.string_list("TagKeys")?;
                let (name, consumer) = tagged_resource(arn, stream_id, scope)?;
                let keys = tag_keys(required(keys, "tagKeys")?)?;
                let consumer = consumer.as_ref().map(|(consumer, seconds)| (consumer.as_str(), *seconds));
                service.remove_tags(&name, consumer, keys).await?;
                Ok(Vec::new())
            }
            Operation::ListTagsForResource => {
                let arn = members.string("ResourceARN")?;
                let stream_id = members.string("StreamId")?;
                let (name, consumer) = tagged_resource(arn, stream_id, scope)?;
                let consumer = consumer.as_ref().map(|(consumer, seconds)| (consumer.as_str(), *seconds));
                let page = service.list_tags(&name, consumer, None, None).await?;
                Ok(encode(&ListTagsForResourceOutput { tags: Tag::list(page.tags) }))
            }
            Operation::EnableEnhancedMonitoring | Operation::DisableEnhancedMonitoring => {
                let reference = StreamReference::read(&members)?;
                let metrics = members.string_list("ShardLevelMetrics")?;
                let metrics = required(metrics, "shardLevelMetrics")?;
                if metrics.len() > 7 {
                    return Err(validation(
                        &format!("[{}]", metrics.join(", ")),
                        "shardLevelMetrics",
                        "Member must have length less than or equal to 7",
                    ));
                }
                let name = stream_name(reference, scope)?;
                let enable = operation == Operation::EnableEnhancedMonitoring;
                let change = service.set_shard_level_metrics(&name, metrics, enable).await?;
                Ok(encode(&EnhancedMonitoringOutput {
                    stream_arn: format!("arn:aws:kinesis:{}:{}:stream/{name}", scope.region, scope.account),
                    stream_name: name,
                    current_shard_level_metrics: change.current,
                    desired_shard_level_metrics: change.desired,
                }))
            }
            Operation::DescribeLimits => {
                let limits = service.describe_limits().await?;
                Ok(encode(&DescribeLimitsOutput {
                    shard_limit: limits.shard_limit,
                    open_shard_count: limits.open_shard_count,
                    on_demand_stream_count: limits.on_demand_stream_count,
                    on_demand_stream_count_limit: limits.on_demand_stream_count_limit,
                }))
            }
            Operation::PutResourcePolicy => {
                let arn = members.string("ResourceARN")?;
                let stream_id = members.string("StreamId")?;
                let policy = members.string("Policy")?;
                let name = resource_stream(arn, stream_id, scope)?;
                let policy = required(policy, "policy")?;
                service.put_resource_policy(&name, policy).await?;
                Ok(Vec::new())
            }
            Operation::GetResourcePolicy => {
                let arn = members.string("ResourceARN")?;
                let stream_id = members.string("StreamId")?;
                let name = resource_stream(arn, stream_id, scope)?;
                Ok(encode(&GetResourcePolicyOutput { policy: service.get_resource_policy(&name).await? }))
            }
            Operation::DeleteResourcePolicy => {
                let arn = members.string("ResourceARN")?;
                let stream_id = members.string("StreamId")?;
                let name = resource_stream(arn, stream_id, scope)?;
                service.delete_resource_policy(&name).await?;
                Ok(Vec::new())
            }
            Operation::RegisterStreamConsumer => {
                let stream_arn = members.string("StreamARN")?;
                let consumer_name = members.string("ConsumerName")?;
                let tags = members.string_map("Tags")?;
                let stream = stream_of_arn(stream_arn, scope)?;
                let consumer_name = required(consumer_name, "consumerName")?;
                let registered = service.register_consumer(&stream, &consumer_name, tags.unwrap_or_default()).await?;
                Ok(encode(&RegisterStreamConsumerOutput { consumer: consumer_output(registered) }))
            }
            Operation::DeregisterStreamConsumer => {
                let reference = consumer_reference(&members, scope)?;
                service.deregister_consumer(&reference.stream, &reference.consumer, reference.created_seconds).await?;
                Ok(Vec::new())
            }
            Operation::DescribeStreamConsumer => {
                let reference = consumer_reference(&members, scope)?;
                let found = service
                    .describe_consumer(&reference.stream, &reference.consumer, reference.created_seconds)
                    .await?;
                Ok(encode(&DescribeStreamConsumerOutput {
                    consumer_description: ConsumerDescription {
                        consumer_name: found.name,
                        consumer_arn: found.consumer_arn,
                        consumer_status: CONSUMER_STATUS_ACTIVE,
                        consumer_creation_timestamp: EpochSeconds(found.created_ms),
                        stream_arn: found.stream_arn,
                    },
                }))
            }
            Operation::ListStreamConsumers => {
                let stream_arn = members.string("StreamARN")?;
                let max_results = members.integer("MaxResults")?;
                let next_token = members.string("NextToken")?;
                // Accepted for compatibility; a stream name is never reused while it exists.
                let _stream_creation_timestamp = members.timestamp_ms("StreamCreationTimestamp")?;
                let stream = stream_of_arn(stream_arn, scope)?;
                let limit = page_limit(max_results, "maxResults")?.unwrap_or(LIST_CONSUMERS_DEFAULT);
                let start = next_token.map(|token| decode_list_consumers_token(&token, &stream)).transpose()?;
                let (consumers, more) = service.list_consumers(&stream, start.as_deref(), limit as usize).await?;
                let next_token = match (more, consumers.last()) {
                    (true, Some(last)) => Some(encode_list_consumers_token(&stream, &last.name)),
                    _ => None,
                };
                Ok(encode(&ListStreamConsumersOutput {
                    consumers: consumers.into_iter().map(consumer_output).collect(),
                    next_token,
                }))
            }
            Operation::StartStreamEncryption | Operation::StopStreamEncryption => {
                // Records are not encrypted at rest; recording the setting would be a fake success.
                Err(not_supported_yet("Server-side encryption"))
            }
            Operation::SplitShard => {
                let reference = StreamReference::read(&members)?;
                let shard = members.string("ShardToSplit")?;
                let new_start = members.string("NewStartingHashKey")?;
                let shard = required(shard, "shardToSplit")?;
                let new_start = required(new_start, "newStartingHashKey")?;
                service.split_shard(&stream_name(reference, scope)?, &shard, &new_start).await?;
                Ok(Vec::new())
            }
            Operation::MergeShards => {
                let reference = StreamReference::read(&members)?;
                let shard = members.string("ShardToMerge")?;
                let adjacent = members.string("AdjacentShardToMerge")?;
                let shard = required(shard, "shardToMerge")?;
                let adjacent = required(adjacent, "adjacentShardToMerge")?;
                service.merge_shards(&stream_name(reference, scope)?, &shard, &adjacent).await?;
                Ok(Vec::new())
            }
            Operation::UpdateShardCount => {
                let reference = StreamReference::read(&members)?;
                let target = members.integer("TargetShardCount")?;
                let scaling = members.string("ScalingType")?;
                let target = required(target, "targetShardCount")?;
                let scaling = required(scaling, "scalingType")?;
                if scaling != "UNIFORM_SCALING" {
                    return Err(validation(
                        &scaling,
                        "scalingType",
                        "Member must satisfy enum value set: [UNIFORM_SCALING]",
                    ));
                }
                let name = stream_name(reference, scope)?;
                let (current, target) = service.update_shard_count(&name, target).await?;
                Ok(encode(&UpdateShardCountOutput {
                    stream_arn: format!("arn:aws:kinesis:{}:{}:stream/{name}", scope.region, scope.account),
                    stream_name: name,
                    current_shard_count: current,
                    target_shard_count: target,
                }))
            }
            Operation::UpdateStreamMode => {
                let stream_arn = members.string("StreamARN")?;
                let warm_throughput = members.integer("WarmThroughputMiBps")?;
                let stream = stream_of_arn(stream_arn, scope)?;
                let on_demand = stream_mode_member(&members)?;
                if warm_throughput.is_some() {
                    return Err(not_supported_yet("WarmThroughputMiBps"));
                }
                service.update_stream_mode(&stream, on_demand).await?;
                Ok(Vec::new())
            }
        }
    }
}

/// A `StreamModeDetails` member: present, with a `StreamMode` of PROVISIONED or ON_DEMAND (true).
fn stream_mode_member(members: &Members<'_>) -> Result<bool, KinesisError> {
    let details = required(members.structure("StreamModeDetails", "streamModeDetails")?, "streamModeDetails")?;
    let mode = required(details.string("StreamMode")?, "streamModeDetails.streamMode")?;
    match mode.as_str() {
        "PROVISIONED" => Ok(false),
        "ON_DEMAND" => Ok(true),
        other => Err(validation(
            other,
            "streamModeDetails.streamMode",
            "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]",
        )),
    }
}

fn consumer_output(consumer: crate::service::ConsumerDescription) -> Consumer {
    Consumer {
        consumer_name: consumer.name,
        consumer_arn: consumer.consumer_arn,
        consumer_status: CONSUMER_STATUS_ACTIVE,
        consumer_creation_timestamp: EpochSeconds(consumer.created_ms),
    }
}

fn encode_list_consumers_token(stream: &str, last_consumer: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{LIST_CONSUMERS_TOKEN_PREFIX}{stream}/{last_consumer}"))
}

/// The consumer a ListStreamConsumers token continues after; a token of another stream is refused.
fn decode_list_consumers_token(token: &str, stream: &str) -> Result<String, KinesisError> {
    base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            text.strip_prefix(LIST_CONSUMERS_TOKEN_PREFIX)?.strip_prefix(stream)?.strip_prefix('/').map(str::to_string)
        })
        .ok_or_else(|| KinesisError::Api(ApiError::InvalidArgument(format!("Invalid NextToken: {token}"))))
}

/// The shard-level metrics recorded for a stream, for DescribeStream(Summary).
async fn shard_level_metrics(service: &StreamService, name: &str) -> Result<Vec<String>, KinesisError> {
    Ok(service.stream_meta(name).await?.shard_level_metrics.into_iter().collect())
}

/// `TagKeys`: 1–50 keys.
fn tag_keys(keys: Vec<String>) -> Result<Vec<String>, KinesisError> {
    if keys.is_empty() {
        return Err(validation("[]", "tagKeys", "Member must have length greater than or equal to 1"));
    }
    Ok(keys)
}

/// The stream a `ResourceARN` names. Consumer ARNs are not taggable resources yet.
/// The stream a tagging call's `ResourceARN` names and, for a consumer ARN, the consumer's name
/// and creation second.
type TaggedResource = (String, Option<(String, i64)>);

fn tagged_resource(
    arn: Option<String>,
    stream_id: Option<String>,
    scope: &ArnScope,
) -> Result<TaggedResource, KinesisError> {
    if stream_id.is_none() && arn.as_deref().is_some_and(|arn| arn.chars().count() <= STREAM_ARN_CHARS_MAX) {
        if let Some(parsed) = arn.as_deref().and_then(parse_consumer_arn) {
            if parsed.stream.region != scope.region || parsed.stream.account != scope.account {
                let arn = arn.as_deref().unwrap_or_default();
                return Err(KinesisError::Api(ApiError::ResourceNotFound(format!("Consumer {arn} not found."))));
            }
            let consumer = (parsed.consumer_name.to_string(), parsed.created_seconds);
            return Ok((parsed.stream.stream_name.to_string(), Some(consumer)));
        }
    }
    Ok((resource_stream(arn, stream_id, scope)?, None))
}

fn resource_stream(arn: Option<String>, stream_id: Option<String>, scope: &ArnScope) -> Result<String, KinesisError> {
    if stream_id.is_some() {
        return Err(not_supported_yet("Addressing a stream by StreamId"));
    }
    let arn = required(arn, "resourceARN")?;
    if let Some((stream_part, _)) = arn.split_once("/consumer/") {
        if parse_stream_arn(stream_part).is_some() {
            return Err(KinesisError::Api(ApiError::ResourceNotFound(format!("Consumer {arn} not found."))));
        }
    }
    if arn.is_empty() {
        return Err(validation(&arn, "resourceARN", "Member must have length greater than or equal to 1"));
    }
    if arn.chars().count() > STREAM_ARN_CHARS_MAX {
        return Err(validation(&arn, "resourceARN", "Member must have length less than or equal to 2048"));
    }
    if parse_stream_arn(&arn).is_none() {
        return Err(validation(
            &arn,
            "resourceARN",
            r"Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\d{12}:.*stream/\S+",
        ));
    }
    stream_name(StreamReference { name: None, arn: Some(arn), id: None }, scope)
}

fn check_explicit_hash_key(key: Option<&str>, member: &str) -> Result<(), KinesisError> {
    match key {
        Some(key) if !is_decimal(key, 39) => {
            Err(validation(key, member, r"Member must satisfy regular expression pattern: 0|([1-9]\d{0,38})"))
        }
        _ => Ok(()),
    }
}

fn encode_list_streams_token(last_stream_name: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{LIST_STREAMS_TOKEN_PREFIX}{last_stream_name}"))
}

fn decode_list_streams_token(token: &str) -> Result<String, KinesisError> {
    base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(LIST_STREAMS_TOKEN_PREFIX).map(str::to_string))
        .ok_or_else(|| KinesisError::Api(ApiError::InvalidArgument(format!("Invalid NextToken: {token}"))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn targets_name_supported_planned_and_foreign_operations() {
        assert_eq!(Target::parse("Kinesis_20131202.PutRecord"), Some(Target::Supported(Operation::PutRecord)));
        assert_eq!(Target::parse("Kinesis_20131202.SplitShard"), Some(Target::Supported(Operation::SplitShard)));
        assert_eq!(
            Target::parse("Kinesis_20131202.UpdateStreamMode"),
            Some(Target::Supported(Operation::UpdateStreamMode))
        );
        assert_eq!(
            Target::parse("Kinesis_20131202.SubscribeToShard"),
            Some(Target::NotYetSupported("SubscribeToShard"))
        );
        assert_eq!(Target::parse("Kinesis_20131202.TagResource"), Some(Target::Supported(Operation::TagResource)));
        assert_eq!(
            Target::parse("Kinesis_20131202.StartStreamEncryption"),
            Some(Target::Supported(Operation::StartStreamEncryption))
        );
        assert_eq!(Target::parse("Kinesis_20131202.CreateQueue"), Some(Target::NotSupported("CreateQueue")));
        assert_eq!(Target::parse("Kinesis_20131202.putRecord"), None);
        assert_eq!(Target::parse("Kinesis_20131202.Nope"), None);
        assert_eq!(Target::parse("DynamoDB_20120810.PutItem"), None);
        assert_eq!(Target::parse("Kinesis_20131202"), None);
        assert_eq!(Target::parse(""), None);
    }

    #[test]
    fn the_classic_operations_and_resource_tagging_are_all_known() {
        // 32 classic operations plus TagResource, UntagResource and ListTagsForResource.
        assert_eq!(34 + NOT_YET_SUPPORTED.len(), 35);
        for name in NOT_YET_SUPPORTED.iter().chain(NOT_SUPPORTED.iter()) {
            assert!(Target::parse(&format!("Kinesis_20131202.{name}")).is_some(), "{name}");
        }
    }

    #[test]
    fn page_limits_and_decimal_patterns_are_checked_as_coral() {
        assert_eq!(page_limit(Some(1), "limit").unwrap(), Some(1));
        assert_eq!(page_limit(None, "limit").unwrap(), None);
        let error = page_limit(Some(0), "limit").unwrap_err();
        assert_eq!(
            error.body()["message"],
            "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
        );
        assert!(page_limit(Some(10_001), "limit").is_err());
        assert!(is_decimal("0", 39));
        assert!(is_decimal("340282366920938463463374607431768211455", 39));
        assert!(!is_decimal("01", 39));
        assert!(!is_decimal("", 39));
        assert!(!is_decimal("-1", 39));
        assert!(!is_decimal(&"1".repeat(40), 39));
        assert!(check_explicit_hash_key(Some("12x"), "explicitHashKey").is_err());
    }

    fn scope() -> ArnScope {
        ArnScope { region: "us-east-1".into(), account: "000000000000".into() }
    }

    fn body(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            other => panic!("not an object: {other}"),
        }
    }

    /// The error's type and its message (or `Message`) text.
    fn failure(error: KinesisError) -> (String, String) {
        let body = error.body();
        let text = body.get("message").or_else(|| body.get("Message")).and_then(Value::as_str).unwrap_or_default();
        (error.error_type().to_string(), text.to_string())
    }

    #[test]
    fn streams_are_named_by_name_or_by_an_arn_of_this_region_and_account() {
        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/orders";
        let name = |value: Value| stream_name(StreamReference::read(&Members::top(&body(value)))?, &scope());
        assert_eq!(name(json!({"StreamName": "orders"})).unwrap(), "orders");
        assert_eq!(name(json!({"StreamARN": arn})).unwrap(), "orders");
        assert_eq!(name(json!({"StreamName": "orders", "StreamARN": arn})).unwrap(), "orders");
        assert_eq!(
            failure(name(json!({"StreamName": "other", "StreamARN": arn})).unwrap_err()).0,
            "InvalidArgumentException"
        );
        assert_eq!(
            failure(name(json!({"StreamARN": "arn:aws:kinesis:eu-west-1:000000000000:stream/orders"})).unwrap_err()),
            ("ResourceNotFoundException".into(), "Stream orders under account 000000000000 not found.".into())
        );
        assert_eq!(
            failure(name(json!({"StreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/orders"})).unwrap_err()),
            ("ResourceNotFoundException".into(), "Stream orders under account 123456789012 not found.".into())
        );
        let (kind, message) = failure(name(json!({"StreamARN": "orders"})).unwrap_err());
        assert_eq!(kind, "ValidationException");
        assert!(message.contains(r"at 'streamARN' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\d{12}:stream/\S+"), "{message}");
        assert_eq!(failure(name(json!({})).unwrap_err()).0, "InvalidArgumentException");
        assert_eq!(failure(name(json!({"StreamName": 7})).unwrap_err()).0, "SerializationException");
    }

    #[test]
    fn put_record_reads_base64_data_and_requires_data_and_partition_key() {
        let request = put_record_request(
            Members::top(&body(
                json!({"StreamName": "s", "Data": "aGk=", "PartitionKey": "k", "ExplicitHashKey": "5"}),
            )),
            &scope(),
        )
        .unwrap();
        assert_eq!(request.stream_name, "s");
        assert_eq!(&request.data[..], b"hi");
        assert_eq!(request.partition_key, "k");
        assert_eq!(request.explicit_hash_key.as_deref(), Some("5"));

        let missing = put_record_request(Members::top(&body(json!({"StreamName": "s", "Data": "aGk="}))), &scope());
        assert_eq!(
            failure(missing.unwrap_err()),
            (
                "ValidationException".into(),
                "1 validation error detected: Value null at 'partitionKey' failed to satisfy constraint: Member must not be null".into()
            )
        );
        // Types are checked before anything is required: a bad Data wins over a missing key.
        let both = put_record_request(Members::top(&body(json!({"StreamName": "s", "Data": true}))), &scope());
        assert_eq!(
            failure(both.unwrap_err()),
            ("SerializationException".into(), "class java.lang.Boolean can not be converted to a Blob".into())
        );
        let bad_key = put_record_request(
            Members::top(&body(json!({"StreamName": "s", "Data": "", "PartitionKey": "k", "ExplicitHashKey": "x"}))),
            &scope(),
        );
        assert_eq!(failure(bad_key.unwrap_err()).0, "ValidationException");
    }

    #[test]
    fn put_records_names_a_missing_member_by_its_position() {
        let request = put_records_request(
            Members::top(&body(json!({
                "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s",
                "Records": [{"Data": "AA==", "PartitionKey": "a"}, {"Data": "AQ=="}]
            }))),
            &scope(),
        );
        assert_eq!(
            failure(request.unwrap_err()).1,
            "1 validation error detected: Value null at 'records.2.member.partitionKey' failed to satisfy constraint: Member must not be null"
        );
        let request = put_records_request(
            Members::top(&body(json!({"StreamName": "s", "Records": [{"Data": "AA==", "PartitionKey": "a"}]}))),
            &scope(),
        )
        .unwrap();
        assert_eq!(request.records.len(), 1);
        assert_eq!(&request.records[0].data[..], &[0u8]);
        let missing = put_records_request(Members::top(&body(json!({"StreamName": "s"}))), &scope());
        assert_eq!(failure(missing.unwrap_err()).1, "1 validation error detected: Value null at 'records' failed to satisfy constraint: Member must not be null");
        let wrong = put_records_request(Members::top(&body(json!({"StreamName": "s", "Records": {}}))), &scope());
        assert_eq!(failure(wrong.unwrap_err()).0, "SerializationException");
    }

    #[test]
    fn get_shard_iterator_takes_timestamps_as_epoch_seconds_and_checks_the_type() {
        let request = get_shard_iterator_request(
            Members::top(&body(json!({
                "StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "AT_TIMESTAMP",
                "Timestamp": 1795360321.5
            }))),
            &scope(),
        )
        .unwrap();
        assert_eq!(request.timestamp_ms, Some(1_795_360_321_500));
        assert_eq!(request.shard_iterator_type, v1::ShardIteratorType::AtTimestamp as i32);

        let unknown = get_shard_iterator_request(
            Members::top(&body(
                json!({"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "OLDEST"}),
            )),
            &scope(),
        );
        let (kind, message) = failure(unknown.unwrap_err());
        assert_eq!(kind, "ValidationException");
        assert!(message.starts_with("1 validation error detected: Value 'OLDEST' at 'shardIteratorType'"), "{message}");
        let missing = get_shard_iterator_request(
            Members::top(&body(json!({"StreamName": "s", "ShardIteratorType": "LATEST"}))),
            &scope(),
        );
        assert!(failure(missing.unwrap_err()).1.contains("Value null at 'shardId'"));
    }

    #[test]
    fn create_stream_takes_a_shard_count_or_on_demand_mode() {
        let provisioned =
            create_stream_request(Members::top(&body(json!({"StreamName": "s", "ShardCount": 3})))).unwrap();
        assert_eq!(provisioned.0.shard_count, 3);
        let on_demand = create_stream_request(Members::top(&body(
            json!({"StreamName": "s", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}),
        )))
        .unwrap();
        assert_eq!((on_demand.0.shard_count, on_demand.0.stream_mode()), (0, v1::StreamMode::OnDemand));
        assert_eq!(provisioned.0.stream_mode(), v1::StreamMode::Provisioned);
        let missing = create_stream_request(Members::top(&body(json!({"StreamName": "s"}))));
        assert!(failure(missing.unwrap_err()).1.contains("Value null at 'shardCount'"));
        let negative = create_stream_request(Members::top(&body(json!({"StreamName": "s", "ShardCount": -2}))));
        assert!(failure(negative.unwrap_err()).1.contains("Value '-2' at 'shardCount'"));
        let (_, tags) =
            create_stream_request(Members::top(&body(json!({"StreamName": "s", "ShardCount": 1, "Tags": {"a": "b"}}))))
                .unwrap();
        assert_eq!(tags, vec![("a".to_string(), "b".to_string())]);
        let mode = create_stream_request(Members::top(&body(
            json!({"StreamName": "s", "StreamModeDetails": {"StreamMode": "X"}}),
        )));
        assert_eq!(failure(mode.unwrap_err()).0, "ValidationException");
    }

    #[test]
    fn list_shards_maps_filters_onto_pages() {
        let after = list_shards_request(
            Members::top(&body(json!({"StreamName": "s", "ShardFilter": {"Type": "AFTER_SHARD_ID", "ShardId": "shardId-000000000001"}}))),
            &scope(),
        )
        .unwrap();
        assert_eq!(after.exclusive_start_shard_id.as_deref(), Some("shardId-000000000001"));
        let token = list_shards_request(Members::top(&body(json!({"NextToken": "s/2"}))), &scope()).unwrap();
        assert_eq!((token.stream_name.as_str(), token.next_token.as_deref()), ("", Some("s/2")));
        let clash = list_shards_request(
            Members::top(&body(
                json!({"NextToken": "s/2", "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s"}),
            )),
            &scope(),
        );
        assert_eq!(failure(clash.unwrap_err()).0, "InvalidArgumentException");
    }

    #[test]
    fn get_records_requires_an_iterator() {
        let missing = get_records_request(Members::top(&body(json!({"Limit": 10}))), &scope());
        assert!(failure(missing.unwrap_err()).1.contains("Value null at 'shardIterator'"));
        let request =
            get_records_request(Members::top(&body(json!({"ShardIterator": "AAAA", "Limit": 10.7}))), &scope())
                .unwrap();
        assert_eq!((request.shard_iterator.as_str(), request.limit), ("AAAA", Some(10)));
    }

    #[test]
    fn resource_arns_name_streams_and_consumer_arns_are_not_found() {
        let name = |arn: &str| resource_stream(Some(arn.to_string()), None, &scope());
        assert_eq!(name("arn:aws:kinesis:us-east-1:000000000000:stream/orders").unwrap(), "orders");
        assert_eq!(
            failure(name("arn:aws:kinesis:us-east-1:000000000000:stream/orders/consumer/c:1").unwrap_err()).0,
            "ResourceNotFoundException"
        );
        assert_eq!(failure(name("orders").unwrap_err()).0, "ValidationException");
        assert_eq!(
            failure(name("arn:aws:kinesis:eu-west-1:000000000000:stream/orders").unwrap_err()).0,
            "ResourceNotFoundException"
        );
        assert!(failure(resource_stream(None, None, &scope()).unwrap_err()).1.contains("Value null at 'resourceARN'"));
        let tagged = |arn: &str| tagged_resource(Some(arn.to_string()), None, &scope());
        assert_eq!(
            tagged("arn:aws:kinesis:us-east-1:000000000000:stream/orders/consumer/c:17").unwrap(),
            ("orders".to_string(), Some(("c".to_string(), 17)))
        );
        assert_eq!(
            tagged("arn:aws:kinesis:us-east-1:000000000000:stream/orders").unwrap(),
            ("orders".to_string(), None)
        );
        assert_eq!(
            failure(tagged("arn:aws:kinesis:eu-west-1:000000000000:stream/orders/consumer/c:1").unwrap_err()).0,
            "ResourceNotFoundException"
        );
        assert_eq!(tag_keys(vec![]).unwrap_err().error_type(), "ValidationException");
    }

    #[test]
    fn consumers_are_named_by_arn_or_by_stream_arn_and_name() {
        let by_arn = body(json!({"ConsumerARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:17"}));
        assert_eq!(
            consumer_reference(&Members::top(&by_arn), &scope()).unwrap(),
            ConsumerReference { stream: "s".into(), consumer: "c".into(), created_seconds: Some(17) }
        );
        let by_name =
            body(json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s", "ConsumerName": "c"}));
        assert_eq!(
            consumer_reference(&Members::top(&by_name), &scope()).unwrap(),
            ConsumerReference { stream: "s".into(), consumer: "c".into(), created_seconds: None }
        );
        let name_only = body(json!({"ConsumerName": "c"}));
        assert_eq!(
            failure(consumer_reference(&Members::top(&name_only), &scope()).unwrap_err()).0,
            "InvalidArgumentException"
        );
        let elsewhere = body(json!({"ConsumerARN": "arn:aws:kinesis:eu-west-1:000000000000:stream/s/consumer/c:1"}));
        assert_eq!(
            failure(consumer_reference(&Members::top(&elsewhere), &scope()).unwrap_err()).0,
            "ResourceNotFoundException"
        );
        let malformed = body(json!({"ConsumerARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s"}));
        assert!(consumer_reference(&Members::top(&malformed), &scope()).is_err());
        let token = encode_list_consumers_token("s", "c");
        assert_eq!(decode_list_consumers_token(&token, "s").unwrap(), "c");
        assert!(decode_list_consumers_token(&token, "t").is_err());
        assert!(decode_list_consumers_token(&encode_list_streams_token("s"), "s").is_err());
    }

    #[test]
    fn list_streams_tokens_round_trip_and_foreign_tokens_are_refused() {
        let token = encode_list_streams_token("orders");
        assert_eq!(decode_list_streams_token(&token).unwrap(), "orders");
        assert_eq!(decode_list_streams_token("b3JkZXJz").unwrap_err().error_type(), "InvalidArgumentException");
        assert_eq!(decode_list_streams_token("%%%").unwrap_err().error_type(), "InvalidArgumentException");
    }
}
