//! The stream operations every client API calls: validation, routing to shards, iterators.
//!
//! Every request is validated completely before anything is proposed, so a refused request
//! changes nothing. Messages follow the Kinesis wording where clients may match on them.
//!
//! - `validation`: the checks every request passes before anything is proposed;
//! - `streams`: stream lifecycle, descriptions and listings, tags, retention, monitoring,
//!   policies, limits;
//! - `consumers`: the enhanced fan-out consumer registry;
//! - `records`: PutRecord(s), GetShardIterator, GetRecords;
//! - `resharding`: SplitShard, MergeShards.

mod consumers;
mod records;
mod resharding;
mod streams;
mod validation;

use std::sync::Arc;

use riffle_proto::v1;

pub use self::validation::validate_tags;
use crate::api::ApiError;
use riffle_proto::peer::MetaCommand;

use crate::control::metadata::{self as meta, ConsumerMeta, MetaRejection, ShardMeta, StreamMeta};
use crate::keys;
use crate::node::Node;
use crate::sequence;
use crate::shard::iterator::IteratorCodec;

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
    /// Open shards the account's streams may have together.
    pub account_shards_max: u32,
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

impl StreamService {
    pub fn new(node: Arc<Node>, settings: ServiceSettings) -> StreamService {
        let iterators = IteratorCodec::new(&settings.iterator_secret);
        StreamService { node, settings, iterators }
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    pub(super) fn stream_arn(&self, name: &str) -> String {
        format!("arn:aws:kinesis:{}:{}:stream/{name}", self.settings.region, self.settings.account)
    }

    pub(super) fn stream_not_found(&self, name: &str) -> ApiError {
        ApiError::ResourceNotFound(format!("Stream {name} under account {} not found.", self.settings.account))
    }

    pub(super) fn rejection(&self, rejection: MetaRejection) -> ApiError {
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
            MetaRejection::StreamNotActive { name, status } => ApiError::ResourceInUse(format!(
                "Stream {name} under account {} not ACTIVE, instead in state {}",
                self.settings.account,
                crate::api::kinesis::response::stream_status(wire_status(status) as i32)
            )),
        }
    }

    pub(super) fn consumer_not_found(&self, stream: &str, consumer: &str) -> ApiError {
        ApiError::ResourceNotFound(format!("Consumer {consumer} under stream {} not found.", self.stream_arn(stream)))
    }

    /// `arn:aws:kinesis:<region>:<account>:stream/<stream>/consumer/<consumer>:<creation epoch seconds>`.
    pub(super) fn consumer_description(&self, stream: &str, consumer: &ConsumerMeta) -> ConsumerDescription {
        let stream_arn = self.stream_arn(stream);
        ConsumerDescription {
            consumer_arn: format!("{stream_arn}/consumer/{}:{}", consumer.name, consumer.created_seconds()),
            name: consumer.name.clone(),
            created_ms: consumer.created_ms,
            stream_arn,
        }
    }

    /// Words a shard leader's throughput refusal as Kinesis does; other errors pass unchanged.
    pub(super) fn rate_exceeded(&self, error: ApiError, stream: &str, shard_index: u32) -> ApiError {
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
    pub(super) async fn stream(&self, name: &str) -> Result<StreamMeta, ApiError> {
        self.node.meta_read().await?.streams.get(name).cloned().ok_or_else(|| self.stream_not_found(name))
    }

    /// The stream for routing records: this node's applied metadata, or, when it does not know
    /// the stream yet (created a moment ago through another node), the linearizable view. A
    /// stale shard map costs nothing here: the shard's own group answers the request.
    pub(super) async fn stream_for_records(&self, name: &str) -> Result<StreamMeta, ApiError> {
        match self.node.meta_state().streams.get(name) {
            Some(stream) => Ok(stream.clone()),
            None => self.stream(name).await,
        }
    }

    pub(super) fn shard<'a>(&self, stream: &'a StreamMeta, shard_id: &str) -> Result<&'a ShardMeta, ApiError> {
        let not_found = || {
            ApiError::ResourceNotFound(format!(
                "Shard {shard_id} in stream {} under account {} does not exist",
                stream.name, self.settings.account
            ))
        };
        let index = keys::parse_shard_id(shard_id).ok_or_else(not_found)?;
        stream.shard(index).filter(|shard| !shard.expired).ok_or_else(not_found)
    }

    /// The replicated status: every node reports the same one.
    pub(super) fn stream_status(&self, stream: &StreamMeta) -> v1::StreamStatus {
        wire_status(stream.status)
    }

    pub(super) fn shard_description(&self, shard: &ShardMeta) -> v1::Shard {
        let leader = self.node.group(shard.group_id).and_then(|group| group.raft.metrics().borrow().current_leader);
        // Every record of a closed shard has a sequence below its seal's first one.
        let ending_sequence_number = match shard.state {
            meta::ShardState::Closed { seal_index } => {
                Some(sequence::render(shard.index, sequence::first_of_batch(seal_index).saturating_sub(1)))
            }
            _ => None,
        };
        v1::Shard {
            shard_id: keys::shard_id(shard.index),
            parent_shard_id: shard.parents.first().map(|parent| keys::shard_id(*parent)),
            adjacent_parent_shard_id: shard.parents.get(1).map(|parent| keys::shard_id(*parent)),
            hash_key_range: Some(v1::HashKeyRange {
                starting_hash_key: shard.starting_hash_key.to_string(),
                ending_hash_key: shard.ending_hash_key.to_string(),
            }),
            sequence_number_range: Some(v1::SequenceNumberRange {
                starting_sequence_number: sequence::render(shard.index, 0),
                ending_sequence_number,
            }),
            replica_nodes: shard.replicas.clone(),
            leader_node: leader,
        }
    }

    /// A child as GetRecords names it at its parent's end.
    pub(super) fn child_shard(&self, child: &ShardMeta) -> v1::ChildShard {
        v1::ChildShard {
            shard_id: keys::shard_id(child.index),
            parent_shards: child.parents.iter().map(|parent| keys::shard_id(*parent)).collect(),
            hash_key_range: Some(v1::HashKeyRange {
                starting_hash_key: child.starting_hash_key.to_string(),
                ending_hash_key: child.ending_hash_key.to_string(),
            }),
        }
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

fn wire_status(status: meta::StreamStatus) -> v1::StreamStatus {
    match status {
        meta::StreamStatus::Creating => v1::StreamStatus::Creating,
        meta::StreamStatus::Active => v1::StreamStatus::Active,
        meta::StreamStatus::Updating => v1::StreamStatus::Updating,
        meta::StreamStatus::Deleting => v1::StreamStatus::Deleting,
    }
}

pub(crate) fn wire_mode(mode: meta::StreamMode) -> v1::StreamMode {
    match mode {
        meta::StreamMode::Provisioned => v1::StreamMode::Provisioned,
        meta::StreamMode::OnDemand => v1::StreamMode::OnDemand,
    }
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
mod tests;
