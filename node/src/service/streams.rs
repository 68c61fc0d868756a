//! Stream lifecycle, descriptions and listings, tags, retention, monitoring settings, resource
//! policies and limits: everything that reads or changes a stream's metadata.

use riffle_proto::peer::{
    meta_command, AddTags, CreateStream, DeleteStream, MetaCommand, RemoveTags, SetResourcePolicy, SetRetention,
    SetShardLevelMetrics, ShardSpec,
};
use riffle_proto::v1;

use super::validation::*;
use super::*;

impl StreamService {
    pub async fn create_stream(&self, request: v1::CreateStreamRequest) -> Result<v1::CreateStreamResponse, ApiError> {
        self.create_stream_with_tags(request, Vec::new()).await
    }

    /// CreateStream with the tags the stream starts with (the Kinesis `Tags` member).
    pub async fn create_stream_with_tags(
        &self,
        mut request: v1::CreateStreamRequest,
        tags: Vec<(String, String)>,
    ) -> Result<v1::CreateStreamResponse, ApiError> {
        validate_stream_name(&request.stream_name, "streamName")?;
        if !tags.is_empty() {
            validate_tags(&tags, TAG_RESOURCE_PER_CALL_MAX)?;
        }
        let on_demand = request.stream_mode() == v1::StreamMode::OnDemand;
        if on_demand {
            if request.shard_count != 0 {
                return Err(ApiError::InvalidArgument(
                    "ShardCount must not be given for a stream in ON_DEMAND mode.".into(),
                ));
            }
            request.shard_count = self.node.options.limits.on_demand.shards_min;
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
        self.check_shard_limit(request.shard_count).await?;
        let state = self.node.meta_read().await?;
        if state.streams.contains_key(&request.stream_name) {
            return Err(self.rejection(MetaRejection::StreamExists(request.stream_name)));
        }
        let on_demand_streams_max = self.node.options.limits.on_demand.streams_max;
        if on_demand && state.on_demand_stream_count() >= on_demand_streams_max {
            return Err(ApiError::LimitExceeded(format!(
                "This request would exceed the limit of {on_demand_streams_max} data streams in ON_DEMAND mode for the account."
            )));
        }
        let placement =
            self.node.place_new_shards(request.shard_count, state.next_group_id).map_err(ApiError::LimitExceeded)?;
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
                on_demand,
                on_demand_streams_max,
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
    pub(super) async fn change_stream(&self, command: meta_command::Command, name: &str) -> Result<(), ApiError> {
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
            shard_limit: self.settings.account_shards_max,
            open_shard_count: state.streams.values().map(|stream| stream.open_shard_count() as u32).sum(),
            on_demand_stream_count: state.on_demand_stream_count(),
            on_demand_stream_count_limit: self.node.options.limits.on_demand.streams_max,
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
        // Expired shards are listed nowhere.
        let mut listed = stream.shards.iter().skip(start).filter(|shard| !shard.expired);
        let shards: Vec<v1::Shard> =
            listed.by_ref().take(limit as usize).map(|shard| self.shard_description(shard)).collect();
        let has_more_shards = listed.next().is_some();
        Ok(v1::DescribeStreamResponse {
            stream_description: Some(v1::StreamDescription {
                stream_name: stream.name.clone(),
                stream_arn: self.stream_arn(&stream.name),
                stream_status: self.stream_status(&stream) as i32,
                shards,
                has_more_shards,
                retention_period_hours: stream.retention_period_hours,
                stream_creation_timestamp_ms: stream.created_ms,
                stream_mode: wire_mode(stream.mode) as i32,
            }),
        })
    }

    pub(super) fn summary(&self, stream: &StreamMeta) -> v1::StreamSummary {
        v1::StreamSummary {
            stream_name: stream.name.clone(),
            stream_arn: self.stream_arn(&stream.name),
            stream_status: self.stream_status(stream) as i32,
            open_shard_count: stream.open_shard_count() as u32,
            retention_period_hours: stream.retention_period_hours,
            stream_creation_timestamp_ms: stream.created_ms,
            stream_mode: wire_mode(stream.mode) as i32,
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

    /// ListShards: shards in id order after the start, those the filter selects, paged. The
    /// NextToken carries the stream, where to continue and the filter.
    pub async fn list_shards(&self, request: v1::ListShardsRequest) -> Result<v1::ListShardsResponse, ApiError> {
        let max_results = request.max_results.unwrap_or(1000);
        validate_page_size(max_results, "maxResults")?;
        let (stream_name, start, filter) = match (&request.next_token, request.stream_name.is_empty()) {
            (Some(_), false) => {
                return Err(ApiError::InvalidArgument("NextToken and StreamName cannot be provided together.".into()))
            }
            (Some(token), true) => {
                let invalid = || ApiError::InvalidArgument(format!("Invalid NextToken: {token}"));
                let mut parts = token.split('/');
                let name = parts.next().ok_or_else(invalid)?.to_string();
                let start = parts.next().and_then(|index| index.parse::<usize>().ok()).ok_or_else(invalid)?;
                let filter = match (parts.next(), parts.next()) {
                    (None, _) | (Some(""), _) => None,
                    (Some(kind), timestamp) => {
                        let timestamp = timestamp.and_then(|value| value.parse::<i64>().ok());
                        Some(ShardFilter::parse(kind, timestamp).map_err(|_| invalid())?)
                    }
                };
                (name, start, filter)
            }
            (None, true) => {
                return Err(ApiError::InvalidArgument("Either NextToken or StreamName should be provided.".into()))
            }
            (None, false) => {
                let start = match &request.exclusive_start_shard_id {
                    Some(shard_id) => keys::parse_shard_id(shard_id).map_or(0, |index| index as usize + 1),
                    None => 0,
                };
                let filter = match &request.filter_type {
                    Some(kind) => Some(ShardFilter::parse(kind, request.filter_timestamp_ms)?),
                    None => None,
                };
                (request.stream_name.clone(), start, filter)
            }
        };
        validate_stream_name(&stream_name, "streamName")?;
        let stream = self.stream(&stream_name).await?;
        let mut selected = stream
            .shards
            .iter()
            .skip(start)
            .filter(|shard| !shard.expired)
            .filter(|shard| filter.as_ref().is_none_or(|filter| filter.selects(&stream, shard)));
        let page: Vec<&ShardMeta> = selected.by_ref().take(max_results as usize).collect();
        let more = selected.next().is_some();
        let next_token = match (more, page.last()) {
            (true, Some(last)) => Some(match &filter {
                Some(filter) => format!("{stream_name}/{}/{}", last.index + 1, filter.token()),
                None => format!("{stream_name}/{}", last.index + 1),
            }),
            _ => None,
        };
        let shards = page.into_iter().map(|shard| self.shard_description(shard)).collect();
        Ok(v1::ListShardsResponse { shards, next_token })
    }
}

/// ListShards' ShardFilter (AFTER_SHARD_ID is the exclusive start shard instead). Nothing
/// expires yet (retention is not enforced), so the trim horizon is the stream's creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShardFilter {
    /// The shards open at the trim horizon: the stream's first shards.
    AtTrimHorizon,
    /// Every shard from the trim horizon on.
    FromTrimHorizon,
    /// The shards open now.
    AtLatest,
    /// The shards open at this time.
    AtTimestamp(i64),
    /// The shards open at this time and every later one.
    FromTimestamp(i64),
}

impl ShardFilter {
    fn parse(kind: &str, timestamp_ms: Option<i64>) -> Result<ShardFilter, ApiError> {
        let timestamp = || {
            timestamp_ms.ok_or_else(|| {
                ApiError::InvalidArgument(
                    "Timestamp must be provided for the AT_TIMESTAMP and FROM_TIMESTAMP filters.".into(),
                )
            })
        };
        Ok(match kind {
            "AT_TRIM_HORIZON" => ShardFilter::AtTrimHorizon,
            "FROM_TRIM_HORIZON" => ShardFilter::FromTrimHorizon,
            "AT_LATEST" => ShardFilter::AtLatest,
            "AT_TIMESTAMP" => ShardFilter::AtTimestamp(timestamp()?),
            "FROM_TIMESTAMP" => ShardFilter::FromTimestamp(timestamp()?),
            other => {
                return Err(ApiError::validation(
                    other,
                    "shardFilter.type",
                    "Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
                ))
            }
        })
    }

    fn token(&self) -> String {
        match self {
            ShardFilter::AtTrimHorizon => "AT_TRIM_HORIZON".into(),
            ShardFilter::FromTrimHorizon => "FROM_TRIM_HORIZON".into(),
            ShardFilter::AtLatest => "AT_LATEST".into(),
            ShardFilter::AtTimestamp(at) => format!("AT_TIMESTAMP/{at}"),
            ShardFilter::FromTimestamp(at) => format!("FROM_TIMESTAMP/{at}"),
        }
    }

    fn selects(&self, stream: &StreamMeta, shard: &ShardMeta) -> bool {
        let created = if shard.parents.is_empty() { stream.created_ms } else { shard.created_ms };
        let closed = shard.closed_ms;
        // Before the stream existed, its first shards are where a reader starts.
        let open_at = |at: i64| created <= at && closed.is_none_or(|closed| closed > at);
        match *self {
            // The oldest shards still holding records: no parent, or only expired ones.
            ShardFilter::AtTrimHorizon => {
                shard.parents.iter().all(|parent| stream.shard(*parent).is_none_or(|parent| parent.expired))
            }
            ShardFilter::FromTrimHorizon => true,
            ShardFilter::AtLatest => !matches!(shard.state, meta::ShardState::Closed { .. }),
            ShardFilter::AtTimestamp(at) => open_at(at.max(stream.created_ms)),
            ShardFilter::FromTimestamp(at) => closed.is_none_or(|closed| closed > at.max(stream.created_ms)),
        }
    }
}
