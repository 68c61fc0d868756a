//! The stream operations every client API calls: validation, routing to shards, iterators.
//!
//! Every request is validated completely before anything is proposed, so a refused request
//! changes nothing. Messages follow the Kinesis wording where clients may match on them.

use std::collections::BTreeMap;
use std::sync::Arc;

use riffle_proto::peer::{
    self as wire, meta_command, AddTags, CreateStream, DeleteStream, DeregisterConsumer, MetaCommand, RecordInput,
    RegisterConsumer, RemoveTags, SetResourcePolicy, SetRetention, SetShardLevelMetrics, ShardSpec, StreamTag,
};
use riffle_proto::v1;

use crate::api::ApiError;
use crate::iterator::{IteratorCodec, Position, ShardIterator, ITERATOR_TTL_MS};
use crate::keys;
use crate::meta::{self, ConsumerMeta, MetaRejection, ShardMeta, StreamMeta};
use crate::node::Node;

/// A record's data at most (data plus partition key), as Kinesis.
pub const RECORD_BYTES_MAX: usize = 1 << 20;
/// Records in one PutRecords call at most.
pub const PUT_RECORDS_MAX: usize = 500;
/// Bytes of one PutRecords call at most (data plus partition keys).
pub const PUT_RECORDS_BYTES_MAX: usize = 5 << 20;
/// Records one GetRecords call returns at most.
pub const GET_RECORDS_MAX: u32 = 10_000;
/// Bytes one GetRecords call returns at most.
pub const GET_RECORDS_BYTES_MAX: u64 = 10 << 20;
/// Partition key length in characters.
pub const PARTITION_KEY_CHARS_MAX: usize = 256;
/// Stream name length.
pub const STREAM_NAME_CHARS_MAX: usize = 128;
/// Tag key length in characters.
pub const TAG_KEY_CHARS_MAX: usize = 128;
/// Tag value length in characters.
pub const TAG_VALUE_CHARS_MAX: usize = 256;
/// Tags one AddTagsToStream call adds at most.
pub const ADD_TAGS_PER_CALL_MAX: usize = 10;
/// Tags one TagResource call (or CreateStream) adds at most: a stream's whole allowance.
pub const TAG_RESOURCE_PER_CALL_MAX: usize = meta::STREAM_TAGS_MAX;
/// A resource policy's size at most, in bytes.
pub const RESOURCE_POLICY_BYTES_MAX: usize = 20 << 10;
/// Shards the account may hold over all its streams, as a multiple of the per-stream maximum
/// (DescribeLimits' `ShardLimit`; Riffle enforces only the per-stream one).
pub const ACCOUNT_SHARD_LIMIT_FACTOR: u32 = 10;
/// On-demand streams the account may have (DescribeLimits); Riffle's are all provisioned.
pub const ON_DEMAND_STREAM_COUNT_LIMIT: u32 = 50;
/// The shard-level metrics "ALL" stands for, in the order AWS lists them.
pub const SHARD_LEVEL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

/// What DescribeLimits reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub shard_limit: u32,
    pub open_shard_count: u32,
    pub on_demand_stream_count: u32,
    pub on_demand_stream_count_limit: u32,
}

/// Shard-level metrics before and after an Enable/DisableEnhancedMonitoring call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsChange {
    pub current: Vec<String>,
    pub desired: Vec<String>,
}

/// One page of a stream's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    pub tags: Vec<(String, String)>,
    pub has_more_tags: bool,
}

/// Settings of the service, from the node configuration.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub region: String,
    pub account: String,
    /// Shards one stream may have at most.
    pub stream_shards_max: u32,
    /// Key that signs shard iterators; the same on every node of a cluster.
    pub iterator_secret: Vec<u8>,
}

/// Stream operations over a node.
#[derive(Clone)]
pub struct StreamService {
    node: Arc<Node>,
    settings: ServiceSettings,
    iterators: IteratorCodec,
}

fn validate_stream_name(name: &str, member: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::validation(name, member, "Member must have length greater than or equal to 1"));
    }
    if name.chars().count() > STREAM_NAME_CHARS_MAX {
        return Err(ApiError::validation(name, member, "Member must have length less than or equal to 128"));
    }
    if !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-')) {
        return Err(ApiError::validation(
            name,
            member,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(())
}

/// Checks tags being added: count per call, key and value lengths.
pub fn validate_tags(tags: &[(String, String)], per_call_max: usize) -> Result<(), ApiError> {
    if tags.is_empty() {
        return Err(ApiError::validation("{}", "tags", "Member must have length greater than or equal to 1"));
    }
    if tags.len() > per_call_max {
        return Err(ApiError::InvalidArgument(format!(
            "Number of tags in the request ({}) exceeds the limit of {per_call_max} tags per request.",
            tags.len()
        )));
    }
    for (key, value) in tags {
        validate_tag_key(key, "tags")?;
        if value.chars().count() > TAG_VALUE_CHARS_MAX {
            return Err(ApiError::InvalidArgument(format!(
                "Tag value for key {key} exceeds the maximum length of {TAG_VALUE_CHARS_MAX} characters."
            )));
        }
    }
    Ok(())
}

fn validate_tag_key(key: &str, member: &str) -> Result<(), ApiError> {
    let length = key.chars().count();
    if length == 0 {
        return Err(ApiError::InvalidArgument(format!("A tag key in {member} must be at least 1 character long.")));
    }
    if length > TAG_KEY_CHARS_MAX {
        return Err(ApiError::InvalidArgument(format!(
            "Tag key {key} exceeds the maximum length of {TAG_KEY_CHARS_MAX} characters."
        )));
    }
    Ok(())
}

fn stream_tags(tags: &[(String, String)]) -> Vec<StreamTag> {
    tags.iter().map(|(key, value)| StreamTag { key: key.clone(), value: value.clone() }).collect()
}

/// Page sizes (`Limit`, `MaxResults`) are 1–10,000 on every listing and read.
fn validate_page_size(value: u32, member: &str) -> Result<(), ApiError> {
    if (1..=10_000).contains(&value) {
        return Ok(());
    }
    Err(ApiError::validation(&value.to_string(), member, "Member must have value between 1 and 10000"))
}

fn validate_partition_key(key: &str, member: &str) -> Result<(), ApiError> {
    let length = key.chars().count();
    if length == 0 {
        return Err(ApiError::validation(key, member, "Member must have length greater than or equal to 1"));
    }
    if length > PARTITION_KEY_CHARS_MAX {
        return Err(ApiError::validation(key, member, "Member must have length less than or equal to 256"));
    }
    Ok(())
}

fn validate_record_size(data: &[u8], key: &str, member: &str) -> Result<(), ApiError> {
    if data.len() > RECORD_BYTES_MAX {
        return Err(ApiError::validation(
            "java.nio.HeapByteBuffer",
            member,
            "Member must have length less than or equal to 1048576",
        ));
    }
    if data.len() + key.len() > RECORD_BYTES_MAX {
        return Err(ApiError::InvalidArgument(format!(
            "Record size of {} bytes (data plus partition key) exceeds the limit of 1048576 bytes.",
            data.len() + key.len()
        )));
    }
    Ok(())
}

fn hash_key_for(partition_key: &str, explicit: Option<&str>) -> Result<u128, ApiError> {
    match explicit {
        Some(text) => keys::parse_hash_key(text).ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"
            ))
        }),
        None => Ok(keys::hash_key_of(partition_key)),
    }
}

impl StreamService {
    pub fn new(node: Arc<Node>, settings: ServiceSettings) -> StreamService {
        let iterators = IteratorCodec::new(&settings.iterator_secret);
        StreamService { node, settings, iterators }
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    fn stream_arn(&self, name: &str) -> String {
        format!("arn:aws:kinesis:{}:{}:stream/{name}", self.settings.region, self.settings.account)
    }

    fn stream_not_found(&self, name: &str) -> ApiError {
        ApiError::ResourceNotFound(format!("Stream {name} under account {} not found.", self.settings.account))
    }

    fn rejection(&self, rejection: MetaRejection) -> ApiError {
        match rejection {
            MetaRejection::StreamExists(name) => ApiError::ResourceInUse(format!(
                "Stream {name} under account {} already exists.",
                self.settings.account
            )),
            MetaRejection::StreamNotFound(name) => self.stream_not_found(&name),
            MetaRejection::Invalid(message) => ApiError::InvalidArgument(message),
            MetaRejection::LimitExceeded(message) => ApiError::LimitExceeded(message),
            MetaRejection::ConsumerExists { stream, consumer } => ApiError::ResourceInUse(format!(
                "Consumer {consumer} under stream {} already exists.",
                self.stream_arn(&stream)
            )),
            MetaRejection::ConsumerNotFound { stream, consumer } => self.consumer_not_found(&stream, &consumer),
            MetaRejection::StreamHasConsumers(name) => ApiError::ResourceInUse(format!(
                "Stream {name} under account {} has registered consumers. Set EnforceConsumerDeletion to delete them with the stream.",
                self.settings.account
            )),
        }
    }

    fn consumer_not_found(&self, stream: &str, consumer: &str) -> ApiError {
        ApiError::ResourceNotFound(format!("Consumer {consumer} under stream {} not found.", self.stream_arn(stream)))
    }

    /// `arn:aws:kinesis:<region>:<account>:stream/<stream>/consumer/<consumer>:<creation epoch seconds>`.
    fn consumer_description(&self, stream: &str, consumer: &ConsumerMeta) -> ConsumerDescription {
        let stream_arn = self.stream_arn(stream);
        ConsumerDescription {
            consumer_arn: format!("{stream_arn}/consumer/{}:{}", consumer.name, consumer.created_seconds()),
            name: consumer.name.clone(),
            created_ms: consumer.created_ms,
            stream_arn,
        }
    }

    /// Words a shard leader's throughput refusal as Kinesis does; other errors pass unchanged.
    fn rate_exceeded(&self, error: ApiError, stream: &str, shard_index: u32) -> ApiError {
        match error {
            ApiError::ProvisionedThroughputExceeded(_) => ApiError::ProvisionedThroughputExceeded(format!(
                "Rate exceeded for shard {} in stream {stream} under account {}.",
                keys::shard_id(shard_index),
                self.settings.account
            )),
            other => other,
        }
    }

    /// The stream as of now, linearizably (a read index on the metadata group): what every
    /// metadata read and every new iterator uses, so a client sees every change acknowledged
    /// before its request, whichever node answers.
    async fn stream(&self, name: &str) -> Result<StreamMeta, ApiError> {
        self.node.meta_read().await?.streams.get(name).cloned().ok_or_else(|| self.stream_not_found(name))
    }

    /// The stream for routing records: this node's applied metadata, or, when it does not know
    /// the stream yet (created a moment ago through another node), the linearizable view. A
    /// stale shard map costs nothing here: the shard's own group answers the request.
    async fn stream_for_records(&self, name: &str) -> Result<StreamMeta, ApiError> {
        match self.node.meta_state().streams.get(name) {
            Some(stream) => Ok(stream.clone()),
            None => self.stream(name).await,
        }
    }

    fn shard<'a>(&self, stream: &'a StreamMeta, shard_id: &str) -> Result<&'a ShardMeta, ApiError> {
        let not_found = || {
            ApiError::ResourceNotFound(format!(
                "Shard {shard_id} in stream {} under account {} does not exist",
                stream.name, self.settings.account
            ))
        };
        let index = keys::parse_shard_id(shard_id).ok_or_else(not_found)?;
        stream.shard(index).ok_or_else(not_found)
    }

    /// The replicated status: every node reports the same one.
    fn stream_status(&self, stream: &StreamMeta) -> v1::StreamStatus {
        match stream.status {
            meta::StreamStatus::Creating => v1::StreamStatus::Creating,
            meta::StreamStatus::Active => v1::StreamStatus::Active,
        }
    }

    fn shard_description(&self, shard: &ShardMeta) -> v1::Shard {
        let leader = self.node.group(shard.group_id).and_then(|group| group.raft.metrics().borrow().current_leader);
        v1::Shard {
            shard_id: keys::shard_id(shard.index),
            parent_shard_id: None,
            adjacent_parent_shard_id: None,
            hash_key_range: Some(v1::HashKeyRange {
                starting_hash_key: shard.starting_hash_key.to_string(),
                ending_hash_key: shard.ending_hash_key.to_string(),
            }),
            sequence_number_range: Some(v1::SequenceNumberRange {
                starting_sequence_number: keys::render_sequence(shard.index, 0),
                ending_sequence_number: None,
            }),
            replica_nodes: shard.replicas.clone(),
            leader_node: leader,
        }
    }

    pub async fn create_stream(&self, request: v1::CreateStreamRequest) -> Result<v1::CreateStreamResponse, ApiError> {
        self.create_stream_with_tags(request, Vec::new()).await
    }

    /// CreateStream with the tags the stream starts with (the Kinesis `Tags` member).
    pub async fn create_stream_with_tags(
        &self,
        request: v1::CreateStreamRequest,
        tags: Vec<(String, String)>,
    ) -> Result<v1::CreateStreamResponse, ApiError> {
        validate_stream_name(&request.stream_name, "streamName")?;
        if !tags.is_empty() {
            validate_tags(&tags, TAG_RESOURCE_PER_CALL_MAX)?;
        }
        if request.shard_count < 1 {
            return Err(ApiError::validation(
                &request.shard_count.to_string(),
                "shardCount",
                "Member must have value greater than or equal to 1",
            ));
        }
        if request.shard_count > self.settings.stream_shards_max {
            return Err(ApiError::LimitExceeded(format!(
                "This request would exceed the shard limit for the account {} in {}. Current limit per stream: {}. Number of additional shards that would have resulted from this request: {}.",
                self.settings.account, self.settings.region, self.settings.stream_shards_max, request.shard_count
            )));
        }
        let retention = request.retention_period_hours.unwrap_or(24);
        if !(24..=8760).contains(&retention) {
            return Err(ApiError::InvalidArgument(format!(
                "Minimum allowed retention period is 24 hours and maximum is 8760 hours. Requested retention period ({retention} hours) is out of range."
            )));
        }
        let state = self.node.meta_read().await?;
        if state.streams.contains_key(&request.stream_name) {
            return Err(self.rejection(MetaRejection::StreamExists(request.stream_name)));
        }
        let placement = meta::place_replicas(
            &self.node.options.nodes,
            request.shard_count,
            3.min(self.node.options.nodes.len()),
            state.next_group_id,
        )
        .map_err(ApiError::LimitExceeded)?;
        let shards = keys::even_ranges(request.shard_count)
            .into_iter()
            .zip(placement)
            .enumerate()
            .map(|(index, ((start, end), replicas))| ShardSpec {
                index: index as u32,
                group_id: 0,
                starting_hash_key: start.to_be_bytes().to_vec().into(),
                ending_hash_key: end.to_be_bytes().to_vec().into(),
                replicas,
            })
            .collect();
        let command = MetaCommand {
            command: Some(meta_command::Command::CreateStream(CreateStream {
                name: request.stream_name.clone(),
                shard_count: request.shard_count,
                retention_period_hours: retention,
                created_ms: self.node.seams.clock.now_ms(),
                shards,
                tags: stream_tags(&tags),
            })),
        };
        self.node.propose_meta(command).await?.map_err(|rejection| self.rejection(rejection))?;
        Ok(v1::CreateStreamResponse {})
    }

    /// DeleteStream of the gRPC API, which has no consumers of its own: it deletes them too.
    pub async fn delete_stream(&self, request: v1::DeleteStreamRequest) -> Result<v1::DeleteStreamResponse, ApiError> {
        self.delete_stream_enforcing(request, true).await
    }

    /// DeleteStream; without `enforce_consumer_deletion` a stream with consumers is refused
    /// (`ResourceInUseException`, as AWS), with it they are deleted along with the stream.
    pub async fn delete_stream_enforcing(
        &self,
        request: v1::DeleteStreamRequest,
        enforce_consumer_deletion: bool,
    ) -> Result<v1::DeleteStreamResponse, ApiError> {
        validate_stream_name(&request.stream_name, "streamName")?;
        let command = MetaCommand {
            command: Some(meta_command::Command::DeleteStream(DeleteStream {
                name: request.stream_name.clone(),
                enforce_consumer_deletion,
            })),
        };
        self.node.propose_meta(command).await?.map_err(|rejection| self.rejection(rejection))?;
        Ok(v1::DeleteStreamResponse {})
    }

    /// The stream's metadata as of now (tags, metrics, policy…).
    pub async fn stream_meta(&self, name: &str) -> Result<StreamMeta, ApiError> {
        validate_stream_name(name, "streamName")?;
        self.stream(name).await
    }

    /// Proposes a change to an existing stream. When it returns, the change is applied here and
    /// visible to every later read through any node. The state machine refuses a change to an
    /// unknown stream, so there is no separate existence check to race with.
    async fn change_stream(&self, command: meta_command::Command, name: &str) -> Result<(), ApiError> {
        validate_stream_name(name, "streamName")?;
        self.node
            .propose_meta(MetaCommand { command: Some(command) })
            .await?
            .map_err(|rejection| self.rejection(rejection))
    }

    /// Increase/DecreaseStreamRetentionPeriod; the direction is checked against the applied state.
    pub async fn update_retention(&self, name: &str, hours: i64, increase: bool) -> Result<(), ApiError> {
        let range = meta::RETENTION_HOURS_MIN..=meta::RETENTION_HOURS_MAX;
        let hours = u32::try_from(hours).ok().filter(|hours| range.contains(hours)).ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "Minimum allowed retention period is {} hours and maximum is {} hours. Requested retention period ({hours} hours) is out of range.",
                meta::RETENTION_HOURS_MIN,
                meta::RETENTION_HOURS_MAX
            ))
        })?;
        let command = meta_command::Command::SetRetention(SetRetention { name: name.to_string(), hours, increase });
        self.change_stream(command, name).await
    }

    /// AddTagsToStream (`per_call_max` 10) and TagResource (50), on the stream or, with
    /// `consumer` (a name and the creation second its ARN ends with), on one of its consumers.
    pub async fn add_tags(
        &self,
        name: &str,
        consumer: Option<(&str, i64)>,
        tags: Vec<(String, String)>,
        per_call_max: usize,
    ) -> Result<(), ApiError> {
        validate_stream_name(name, "streamName")?;
        validate_tags(&tags, per_call_max)?;
        if let Some((consumer, seconds)) = consumer {
            self.consumer(name, consumer, Some(seconds)).await?;
        }
        let command = meta_command::Command::AddTags(AddTags {
            name: name.to_string(),
            tags: stream_tags(&tags),
            consumer: consumer.map(|(consumer, _)| consumer.to_string()),
            consumer_created_seconds: consumer.map(|(_, seconds)| seconds),
        });
        self.change_stream(command, name).await
    }

    /// RemoveTagsFromStream and UntagResource (on a stream or consumer, as [`Self::add_tags`]);
    /// keys the resource lacks are ignored.
    pub async fn remove_tags(
        &self,
        name: &str,
        consumer: Option<(&str, i64)>,
        keys: Vec<String>,
    ) -> Result<(), ApiError> {
        validate_stream_name(name, "streamName")?;
        if keys.len() > TAG_RESOURCE_PER_CALL_MAX {
            return Err(ApiError::validation(
                &format!("{} keys", keys.len()),
                "tagKeys",
                "Member must have length less than or equal to 50",
            ));
        }
        for key in &keys {
            validate_tag_key(key, "tagKeys")?;
        }
        if let Some((consumer, seconds)) = consumer {
            self.consumer(name, consumer, Some(seconds)).await?;
        }
        let command = meta_command::Command::RemoveTags(RemoveTags {
            name: name.to_string(),
            keys: keys.clone(),
            consumer: consumer.map(|(consumer, _)| consumer.to_string()),
            consumer_created_seconds: consumer.map(|(_, seconds)| seconds),
        });
        self.change_stream(command, name).await
    }

    /// ListTagsForStream (and ListTagsForResource, also on a consumer): tags in key order after
    /// `exclusive_start`, at most `limit`.
    pub async fn list_tags(
        &self,
        name: &str,
        consumer: Option<(&str, i64)>,
        exclusive_start: Option<&str>,
        limit: Option<usize>,
    ) -> Result<TagPage, ApiError> {
        let held = match consumer {
            Some((consumer, seconds)) => self.consumer(name, consumer, Some(seconds)).await?.tags,
            None => self.stream_meta(name).await?.tags,
        };
        let mut after = held.iter().filter(|(key, _)| exclusive_start.is_none_or(|start| key.as_str() > start));
        let tags: Vec<(String, String)> = after
            .by_ref()
            .take(limit.unwrap_or(meta::STREAM_TAGS_MAX))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        Ok(TagPage { tags, has_more_tags: after.next().is_some() })
    }

    /// Enable/DisableEnhancedMonitoring. `metrics` holds names from [`SHARD_LEVEL_METRICS`] or
    /// "ALL"; the setting is recorded only (no metrics are emitted).
    pub async fn set_shard_level_metrics(
        &self,
        name: &str,
        metrics: Vec<String>,
        enable: bool,
    ) -> Result<MetricsChange, ApiError> {
        validate_stream_name(name, "streamName")?;
        if metrics.is_empty() {
            return Err(ApiError::validation(
                "[]",
                "shardLevelMetrics",
                "Member must have length greater than or equal to 1",
            ));
        }
        let mut expanded: Vec<String> = Vec::new();
        for metric in &metrics {
            if metric == "ALL" {
                expanded.extend(SHARD_LEVEL_METRICS.iter().map(|name| name.to_string()));
            } else if SHARD_LEVEL_METRICS.contains(&metric.as_str()) {
                expanded.push(metric.clone());
            } else {
                return Err(ApiError::validation(
                    &format!("[{}]", metrics.join(", ")),
                    "shardLevelMetrics",
                    "Member must satisfy constraint: [Member must satisfy enum value set: [IncomingBytes, OutgoingRecords, IteratorAgeMilliseconds, IncomingRecords, ReadProvisionedThroughputExceeded, WriteProvisionedThroughputExceeded, OutgoingBytes, ALL]]",
                ));
            }
        }
        expanded.sort();
        expanded.dedup();
        let before = self.stream_meta(name).await?.shard_level_metrics;
        let command = meta_command::Command::SetShardLevelMetrics(SetShardLevelMetrics {
            name: name.to_string(),
            metrics: expanded.clone(),
            enable,
        });
        self.change_stream(command, name).await?;
        let mut desired = before.clone();
        for metric in expanded {
            if enable {
                desired.insert(metric);
            } else {
                desired.remove(&metric);
            }
        }
        Ok(MetricsChange { current: before.into_iter().collect(), desired: desired.into_iter().collect() })
    }

    /// DescribeLimits, as of now.
    pub async fn describe_limits(&self) -> Result<Limits, ApiError> {
        let state = self.node.meta_read().await?;
        Ok(Limits {
            shard_limit: self.settings.stream_shards_max.saturating_mul(ACCOUNT_SHARD_LIMIT_FACTOR),
            open_shard_count: state.streams.values().map(|stream| stream.shards.len() as u32).sum(),
            on_demand_stream_count: 0,
            on_demand_stream_count_limit: ON_DEMAND_STREAM_COUNT_LIMIT,
        })
    }

    /// PutResourcePolicy: the policy must be a JSON document of at most 20 KiB. Stored, not
    /// enforced.
    pub async fn put_resource_policy(&self, name: &str, policy: String) -> Result<(), ApiError> {
        validate_stream_name(name, "streamName")?;
        if policy.len() > RESOURCE_POLICY_BYTES_MAX {
            return Err(ApiError::InvalidArgument(format!(
                "The resource policy is {} bytes; the limit is {RESOURCE_POLICY_BYTES_MAX} bytes.",
                policy.len()
            )));
        }
        if !matches!(serde_json::from_str::<serde_json::Value>(&policy), Ok(serde_json::Value::Object(_))) {
            return Err(ApiError::InvalidArgument("The resource policy is not a valid JSON policy document.".into()));
        }
        let command = meta_command::Command::SetResourcePolicy(SetResourcePolicy {
            name: name.to_string(),
            policy: Some(policy.clone()),
        });
        self.change_stream(command, name).await
    }

    /// GetResourcePolicy: "{}" when the stream has none.
    pub async fn get_resource_policy(&self, name: &str) -> Result<String, ApiError> {
        Ok(self.stream_meta(name).await?.resource_policy.unwrap_or_else(|| "{}".to_string()))
    }

    pub async fn delete_resource_policy(&self, name: &str) -> Result<(), ApiError> {
        let command =
            meta_command::Command::SetResourcePolicy(SetResourcePolicy { name: name.to_string(), policy: None });
        self.change_stream(command, name).await
    }

    /// RegisterStreamConsumer: ACTIVE as soon as the command is applied (AWS shows CREATING
    /// for a few seconds first). Uniqueness and the per-stream limit are checked on apply.
    pub async fn register_consumer(
        &self,
        stream: &str,
        consumer: &str,
        tags: Vec<(String, String)>,
    ) -> Result<ConsumerDescription, ApiError> {
        validate_stream_name(consumer, "consumerName")?;
        if !tags.is_empty() {
            validate_tags(&tags, TAG_RESOURCE_PER_CALL_MAX)?;
        }
        validate_stream_name(stream, "streamName")?;
        let known = self.stream(stream).await?;
        if known.consumers.contains_key(consumer) {
            return Err(self.rejection(MetaRejection::ConsumerExists {
                stream: stream.to_string(),
                consumer: consumer.to_string(),
            }));
        }
        let created_ms = self.node.seams.clock.now_ms();
        let command = meta_command::Command::RegisterConsumer(RegisterConsumer {
            stream: stream.to_string(),
            consumer: consumer.to_string(),
            created_ms,
            tags: stream_tags(&tags),
        });
        self.change_stream(command, stream).await?;
        let registered = ConsumerMeta { name: consumer.to_string(), created_ms, tags: tags.into_iter().collect() };
        Ok(self.consumer_description(stream, &registered))
    }

    /// DeregisterStreamConsumer; `created_seconds` (from a ConsumerARN) picks one registration.
    pub async fn deregister_consumer(
        &self,
        stream: &str,
        consumer: &str,
        created_seconds: Option<i64>,
    ) -> Result<(), ApiError> {
        self.consumer(stream, consumer, created_seconds).await?;
        let command = meta_command::Command::DeregisterConsumer(DeregisterConsumer {
            stream: stream.to_string(),
            consumer: consumer.to_string(),
            created_seconds,
        });
        self.change_stream(command, stream).await
    }

    /// DescribeStreamConsumer, by stream and name, and by creation second for a ConsumerARN.
    pub async fn describe_consumer(
        &self,
        stream: &str,
        consumer: &str,
        created_seconds: Option<i64>,
    ) -> Result<ConsumerDescription, ApiError> {
        let found = self.consumer(stream, consumer, created_seconds).await?;
        Ok(self.consumer_description(stream, &found))
    }

    /// ListStreamConsumers: consumers in name order after `exclusive_start`, at most `limit`,
    /// and whether more follow.
    pub async fn list_consumers(
        &self,
        stream: &str,
        exclusive_start: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ConsumerDescription>, bool), ApiError> {
        let known = self.stream_meta(stream).await?;
        let mut after = known
            .consumers
            .values()
            .filter(|consumer| exclusive_start.is_none_or(|start| consumer.name.as_str() > start));
        let page = after.by_ref().take(limit).map(|consumer| self.consumer_description(stream, consumer)).collect();
        Ok((page, after.next().is_some()))
    }

    /// A registered consumer, as of now.
    async fn consumer(
        &self,
        stream: &str,
        consumer: &str,
        created_seconds: Option<i64>,
    ) -> Result<ConsumerMeta, ApiError> {
        validate_stream_name(consumer, "consumerName")?;
        validate_stream_name(stream, "streamName")?;
        let matching = |meta: &StreamMeta| {
            meta.consumers
                .get(consumer)
                .filter(|found| created_seconds.is_none_or(|seconds| found.created_seconds() == seconds))
                .cloned()
        };
        let known = self.stream(stream).await?;
        matching(&known).ok_or_else(|| self.consumer_not_found(stream, consumer))
    }

    pub async fn describe_stream(
        &self,
        request: v1::DescribeStreamRequest,
    ) -> Result<v1::DescribeStreamResponse, ApiError> {
        validate_stream_name(&request.stream_name, "streamName")?;
        let limit = request.limit.unwrap_or(100);
        validate_page_size(limit, "limit")?;
        let stream = self.stream(&request.stream_name).await?;
        let start = match &request.exclusive_start_shard_id {
            Some(shard_id) => keys::parse_shard_id(shard_id).map_or(0, |index| index as usize + 1),
            None => 0,
        };
        let shards: Vec<v1::Shard> =
            stream.shards.iter().skip(start).take(limit as usize).map(|shard| self.shard_description(shard)).collect();
        let has_more_shards = start + shards.len() < stream.shards.len();
        Ok(v1::DescribeStreamResponse {
            stream_description: Some(v1::StreamDescription {
                stream_name: stream.name.clone(),
                stream_arn: self.stream_arn(&stream.name),
                stream_status: self.stream_status(&stream) as i32,
                shards,
                has_more_shards,
                retention_period_hours: stream.retention_period_hours,
                stream_creation_timestamp_ms: stream.created_ms,
            }),
        })
    }

    fn summary(&self, stream: &StreamMeta) -> v1::StreamSummary {
        v1::StreamSummary {
            stream_name: stream.name.clone(),
            stream_arn: self.stream_arn(&stream.name),
            stream_status: self.stream_status(stream) as i32,
            open_shard_count: stream.shards.len() as u32,
            retention_period_hours: stream.retention_period_hours,
            stream_creation_timestamp_ms: stream.created_ms,
        }
    }

    pub async fn describe_stream_summary(
        &self,
        request: v1::DescribeStreamSummaryRequest,
    ) -> Result<v1::DescribeStreamSummaryResponse, ApiError> {
        validate_stream_name(&request.stream_name, "streamName")?;
        let stream = self.stream(&request.stream_name).await?;
        Ok(v1::DescribeStreamSummaryResponse { stream_description_summary: Some(self.summary(&stream)) })
    }

    pub async fn list_streams(&self, request: v1::ListStreamsRequest) -> Result<v1::ListStreamsResponse, ApiError> {
        let limit = request.limit.unwrap_or(100);
        validate_page_size(limit, "limit")?;
        let state = self.node.meta_read().await?;
        let after = request.exclusive_start_stream_name.unwrap_or_default();
        let mut matching = state.streams.values().filter(|stream| stream.name > after);
        let page: Vec<&StreamMeta> = matching.by_ref().take(limit as usize).collect();
        let has_more_streams = matching.next().is_some();
        Ok(v1::ListStreamsResponse {
            stream_names: page.iter().map(|stream| stream.name.clone()).collect(),
            has_more_streams,
            stream_summaries: page.iter().map(|stream| self.summary(stream)).collect(),
        })
    }

    pub async fn list_shards(&self, request: v1::ListShardsRequest) -> Result<v1::ListShardsResponse, ApiError> {
        let max_results = request.max_results.unwrap_or(1000);
        validate_page_size(max_results, "maxResults")?;
        let (stream_name, start) = match (&request.next_token, request.stream_name.is_empty()) {
            (Some(_), false) => {
                return Err(ApiError::InvalidArgument("NextToken and StreamName cannot be provided together.".into()))
            }
            (Some(token), true) => {
                let (name, index) = token
                    .rsplit_once('/')
                    .and_then(|(name, index)| Some((name.to_string(), index.parse::<usize>().ok()?)))
                    .ok_or_else(|| ApiError::InvalidArgument(format!("Invalid NextToken: {token}")))?;
                (name, index)
            }
            (None, true) => {
                return Err(ApiError::InvalidArgument("Either NextToken or StreamName should be provided.".into()))
            }
            (None, false) => {
                let start = match &request.exclusive_start_shard_id {
                    Some(shard_id) => keys::parse_shard_id(shard_id).map_or(0, |index| index as usize + 1),
                    None => 0,
                };
                (request.stream_name.clone(), start)
            }
        };
        validate_stream_name(&stream_name, "streamName")?;
        let stream = self.stream(&stream_name).await?;
        let shards: Vec<v1::Shard> = stream
            .shards
            .iter()
            .skip(start)
            .take(max_results as usize)
            .map(|shard| self.shard_description(shard))
            .collect();
        let next = start + shards.len();
        let next_token = (next < stream.shards.len()).then(|| format!("{stream_name}/{next}"));
        Ok(v1::ListShardsResponse { shards, next_token })
    }

    pub async fn put_record(&self, request: v1::PutRecordRequest) -> Result<v1::PutRecordResponse, ApiError> {
        validate_stream_name(&request.stream_name, "streamName")?;
        validate_partition_key(&request.partition_key, "partitionKey")?;
        validate_record_size(&request.data, &request.partition_key, "data")?;
        if let Some(ordering) = &request.sequence_number_for_ordering {
            // Kinesis' pattern: 0|([1-9]\d{0,128}). Ordering itself needs nothing more: a put is
            // acknowledged only once committed, so a serial writer's records always increase.
            let well_formed = ordering == "0"
                || (!ordering.is_empty()
                    && ordering.len() <= 129
                    && !ordering.starts_with('0')
                    && ordering.bytes().all(|byte| byte.is_ascii_digit()));
            if !well_formed {
                return Err(ApiError::validation(
                    ordering,
                    "sequenceNumberForOrdering",
                    "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
                ));
            }
        }
        let hash = hash_key_for(&request.partition_key, request.explicit_hash_key.as_deref())?;
        let stream = self.stream_for_records(&request.stream_name).await?;
        let shard = stream.shard_for_hash(hash).clone();
        let record = RecordInput { partition_key: request.partition_key, data: request.data };
        let result = self
            .node
            .append(&shard, vec![record])
            .await
            .map_err(|error| self.rate_exceeded(error, &stream.name, shard.index))?;
        let sequence = keys::checked_internal_sequence(result.log_index, result.first_position as usize)
            .ok_or_else(|| ApiError::Internal(format!("a node answered with an invalid position {result:?}")))?;
        Ok(v1::PutRecordResponse {
            shard_id: keys::shard_id(shard.index),
            sequence_number: keys::render_sequence(shard.index, sequence),
        })
    }

    pub async fn put_records(&self, request: v1::PutRecordsRequest) -> Result<v1::PutRecordsResponse, ApiError> {
        validate_stream_name(&request.stream_name, "streamName")?;
        if request.records.is_empty() {
            return Err(ApiError::validation("[]", "records", "Member must have length greater than or equal to 1"));
        }
        if request.records.len() > PUT_RECORDS_MAX {
            return Err(ApiError::validation(
                &format!("{} records", request.records.len()),
                "records",
                "Member must have length less than or equal to 500",
            ));
        }
        let mut total = 0usize;
        let mut hashes = Vec::with_capacity(request.records.len());
        for (position, record) in request.records.iter().enumerate() {
            let member = format!("records.{}.member", position + 1);
            validate_partition_key(&record.partition_key, &format!("{member}.partitionKey"))?;
            validate_record_size(&record.data, &record.partition_key, &format!("{member}.data"))?;
            total += record.data.len() + record.partition_key.len();
            hashes.push(hash_key_for(&record.partition_key, record.explicit_hash_key.as_deref())?);
        }
        if total > PUT_RECORDS_BYTES_MAX {
            return Err(ApiError::InvalidArgument(format!(
                "Records size exceeds 5 MB limit: the request holds {total} bytes of data and partition keys."
            )));
        }
        let stream = self.stream_for_records(&request.stream_name).await?;
        // Split by shard, keeping each shard's records in request order.
        let mut by_shard: BTreeMap<u32, (Vec<usize>, Vec<RecordInput>)> = BTreeMap::new();
        for (position, (record, hash)) in request.records.into_iter().zip(hashes).enumerate() {
            let shard = stream.shard_for_hash(hash);
            let entry = by_shard.entry(shard.index).or_default();
            entry.0.push(position);
            entry.1.push(RecordInput { partition_key: record.partition_key, data: record.data });
        }
        let count: usize = by_shard.values().map(|(positions, _)| positions.len()).sum();
        let stream_name = stream.name.as_str();
        let appends = by_shard.into_iter().map(|(index, (positions, records))| {
            let shard = stream.shards[index as usize].clone();
            async move {
                let result = self
                    .node
                    .append(&shard, records)
                    .await
                    .map_err(|error| self.rate_exceeded(error, stream_name, shard.index));
                (shard, positions, result)
            }
        });
        let outcomes = futures::future::join_all(appends).await;
        let mut results = vec![v1::PutRecordsResultEntry::default(); count];
        let mut failed = 0u32;
        for (shard, positions, outcome) in outcomes {
            for (offset, position) in positions.into_iter().enumerate() {
                let sequence = outcome.as_ref().map_err(Clone::clone).and_then(|result| {
                    keys::checked_internal_sequence(result.log_index, result.first_position as usize + offset)
                        .ok_or_else(|| {
                            ApiError::Internal(format!("a node answered with an invalid position {result:?}"))
                        })
                });
                results[position] = match sequence {
                    Ok(sequence) => v1::PutRecordsResultEntry {
                        sequence_number: Some(keys::render_sequence(shard.index, sequence)),
                        shard_id: Some(keys::shard_id(shard.index)),
                        error_code: None,
                        error_message: None,
                    },
                    Err(error) => {
                        failed += 1;
                        v1::PutRecordsResultEntry {
                            sequence_number: None,
                            shard_id: None,
                            error_code: Some(error.error_type().to_string()),
                            error_message: Some(error.message()),
                        }
                    }
                };
            }
        }
        Ok(v1::PutRecordsResponse { failed_record_count: failed, records: results })
    }

    pub async fn get_shard_iterator(
        &self,
        request: v1::GetShardIteratorRequest,
    ) -> Result<v1::GetShardIteratorResponse, ApiError> {
        use v1::ShardIteratorType as Type;
        validate_stream_name(&request.stream_name, "streamName")?;
        let iterator_type = Type::try_from(request.shard_iterator_type).unwrap_or(Type::Unspecified);
        let stream = self.stream(&request.stream_name).await?;
        let shard = self.shard(&stream, &request.shard_id)?.clone();
        let sequence = |text: &Option<String>| -> Result<u64, ApiError> {
            let text = text.as_deref().ok_or_else(|| {
                ApiError::InvalidArgument(
                    "Must specify a StartingSequenceNumber for AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER iterators."
                        .into(),
                )
            })?;
            keys::parse_sequence(text, shard.index).map_err(|error| {
                ApiError::InvalidArgument(format!(
                    "StartingSequenceNumber {text} used in GetShardIterator on shard {} in stream {} under account {} {error}.",
                    keys::shard_id(shard.index),
                    stream.name,
                    self.settings.account
                ))
            })
        };
        let position = match iterator_type {
            Type::AtSequenceNumber => Position::AtSequence(sequence(&request.starting_sequence_number)?),
            Type::AfterSequenceNumber => Position::AtSequence(sequence(&request.starting_sequence_number)?.saturating_add(1)),
            Type::TrimHorizon => Position::TrimHorizon,
            Type::AtTimestamp => Position::AtTimestamp(request.timestamp_ms.ok_or_else(|| {
                ApiError::InvalidArgument("Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP.".into())
            })?),
            Type::Latest => {
                let read = wire::ForwardRead {
                    start: Some(wire::forward_read::Start::Latest(wire::Blank {})),
                    limit: 0,
                    bytes_max: 0,
                };
                Position::AtSequence(self.node.read(&shard, read).await?.next_sequence)
            }
            Type::Unspecified => {
                return Err(ApiError::validation(
                    &request.shard_iterator_type.to_string(),
                    "shardIteratorType",
                    "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
                ))
            }
        };
        let iterator = ShardIterator {
            stream: stream.name.clone(),
            stream_created_ms: stream.created_ms,
            shard_index: shard.index,
            position,
            issued_ms: self.node.seams.clock.now_ms(),
        };
        Ok(v1::GetShardIteratorResponse { shard_iterator: self.iterators.encode(&iterator) })
    }

    pub async fn get_records(&self, request: v1::GetRecordsRequest) -> Result<v1::GetRecordsResponse, ApiError> {
        let limit = request.limit.unwrap_or(GET_RECORDS_MAX);
        validate_page_size(limit, "limit")?;
        if request.shard_iterator.is_empty() || request.shard_iterator.len() > 512 {
            return Err(ApiError::validation(
                &request.shard_iterator,
                "shardIterator",
                "Member must have length between 1 and 512",
            ));
        }
        let iterator = self
            .iterators
            .decode(&request.shard_iterator)
            .map_err(|error| ApiError::InvalidArgument(error.to_string()))?;
        let now = self.node.seams.clock.now_ms();
        if now - iterator.issued_ms > ITERATOR_TTL_MS {
            return Err(ApiError::ExpiredIterator(format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_TTL_MS} milliseconds.",
                aws_time(iterator.issued_ms),
                aws_time(now)
            )));
        }
        let mut stream = self.stream_for_records(&iterator.stream).await?;
        if stream.created_ms != iterator.stream_created_ms {
            // This node may not have applied the stream's re-creation yet.
            stream = self.stream(&iterator.stream).await?;
        }
        if stream.created_ms != iterator.stream_created_ms {
            return Err(self.stream_not_found(&iterator.stream));
        }
        let shard = stream
            .shard(iterator.shard_index)
            .ok_or_else(|| ApiError::InvalidArgument("Invalid ShardIterator.".into()))?
            .clone();
        let start = match iterator.position {
            Position::AtSequence(sequence) => wire::forward_read::Start::AtSequence(sequence),
            Position::AtTimestamp(timestamp) => wire::forward_read::Start::AtTimestampMs(timestamp),
            Position::TrimHorizon => wire::forward_read::Start::TrimHorizon(wire::Blank {}),
        };
        let read = wire::ForwardRead { start: Some(start), limit, bytes_max: GET_RECORDS_BYTES_MAX };
        let result =
            self.node.read(&shard, read).await.map_err(|error| self.rate_exceeded(error, &stream.name, shard.index))?;
        let records = result
            .records
            .into_iter()
            .map(|record| v1::Record {
                sequence_number: keys::render_sequence(shard.index, record.sequence),
                approximate_arrival_timestamp_ms: record.timestamp_ms,
                data: record.data,
                partition_key: record.partition_key,
            })
            .collect();
        let next = ShardIterator { position: Position::AtSequence(result.next_sequence), issued_ms: now, ..iterator };
        Ok(v1::GetRecordsResponse {
            records,
            next_shard_iterator: Some(self.iterators.encode(&next)),
            millis_behind_latest: result.millis_behind_latest,
        })
    }
}

/// A registered consumer as the consumer operations report it (always ACTIVE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerDescription {
    pub name: String,
    pub consumer_arn: String,
    pub created_ms: i64,
    pub stream_arn: String,
}

/// `Thu Nov 23 03:39:24 UTC 2026`, the form Kinesis uses in iterator messages.
pub fn aws_time(epoch_ms: i64) -> String {
    let seconds = epoch_ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {year}",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
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
        use crate::throttle::ThrottleSettings;
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
            nodes: vec![meta::NodePlace { id: 1, zone: "a".into() }],
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
            iterator_secret: b"test secret".to_vec(),
        };
        let service = StreamService::new(node.clone(), settings);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let create =
            || v1::CreateStreamRequest { stream_name: "t".into(), shard_count: 1, retention_period_hours: None };
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
}
