//! SplitShard, MergeShards and UpdateShardCount: the request is checked here (with Kinesis' errors and
//! wording), then one `Reshard` command starts it in the metadata group, which checks it again
//! against the state it applies to. The call returns with the stream UPDATING; the parents'
//! leaders seal them and the children take over (see `control::reconcile`).

use riffle_proto::peer::{meta_command, ChildShardSpec, Reshard, UpdateShardCount, UpdateStreamMode};

use super::validation::*;
use super::*;

impl StreamService {
    /// SplitShard: `shard_id` closes; two children take `[start, new_start - 1]` and
    /// `[new_start, end]`.
    pub async fn split_shard(&self, name: &str, shard_id: &str, new_starting_hash_key: &str) -> Result<(), ApiError> {
        validate_stream_name(name, "streamName")?;
        validate_shard_id(shard_id, "shardToSplit")?;
        let hash_key = keys::parse_hash_key(new_starting_hash_key).ok_or_else(|| {
            ApiError::validation(
                new_starting_hash_key,
                "newStartingHashKey",
                "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
            )
        })?;
        let stream = self.stream(name).await?;
        self.check_provisioned(&stream, "SplitShard")?;
        let parent = self.reshard_shard(&stream, shard_id)?;
        self.check_shard_limit(1).await?;
        if hash_key <= parent.starting_hash_key.saturating_add(1) || hash_key >= parent.ending_hash_key {
            return Err(ApiError::InvalidArgument(format!(
                "NewStartingHashKey {new_starting_hash_key} used in SplitShard() on shard {} in stream {name} under account {} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
                keys::shard_id(parent.index),
                self.settings.account,
                parent.starting_hash_key,
                parent.ending_hash_key
            )));
        }
        self.check_reshardable(&stream, &[parent])?;
        let ranges = [(parent.starting_hash_key, hash_key - 1), (hash_key, parent.ending_hash_key)];
        self.propose_reshard(
            &stream,
            vec![parent.index],
            ranges.iter().map(|range| (*range, vec![parent.index])).collect(),
        )
        .await
    }

    /// MergeShards: two adjacent open shards close; one child takes both ranges, with
    /// `shard_id` as its ParentShardId and `adjacent_shard_id` as its AdjacentParentShardId.
    pub async fn merge_shards(&self, name: &str, shard_id: &str, adjacent_shard_id: &str) -> Result<(), ApiError> {
        validate_stream_name(name, "streamName")?;
        validate_shard_id(shard_id, "shardToMerge")?;
        validate_shard_id(adjacent_shard_id, "adjacentShardToMerge")?;
        let stream = self.stream(name).await?;
        self.check_provisioned(&stream, "MergeShards")?;
        let first = self.reshard_shard(&stream, shard_id)?;
        let second = self.reshard_shard(&stream, adjacent_shard_id)?;
        let (low, high) =
            if first.starting_hash_key <= second.starting_hash_key { (first, second) } else { (second, first) };
        if first.index == second.index || low.ending_hash_key.checked_add(1) != Some(high.starting_hash_key) {
            return Err(ApiError::InvalidArgument(format!(
                "Shards {} and {} in stream {name} under account {} are not an adjacent pair of shards eligible for merging",
                keys::shard_id(first.index),
                keys::shard_id(second.index),
                self.settings.account
            )));
        }
        self.check_reshardable(&stream, &[first, second])?;
        let range = (low.starting_hash_key, high.ending_hash_key);
        self.propose_reshard(&stream, vec![first.index, second.index], vec![(range, vec![first.index, second.index])])
            .await
    }

    /// UpdateShardCount with UNIFORM_SCALING: returns (open shards now, target). The stream is
    /// UPDATING until the metadata leader's reshard steps reach the even ranges of `target`.
    pub async fn update_shard_count(&self, name: &str, target: i64) -> Result<(u32, u32), ApiError> {
        validate_stream_name(name, "streamName")?;
        if target < 1 {
            return Err(ApiError::validation(
                &target.to_string(),
                "targetShardCount",
                "Member must have value greater than or equal to 1",
            ));
        }
        let stream = self.stream(name).await?;
        self.check_provisioned(&stream, "UpdateShardCount")?;
        if stream.status != meta::StreamStatus::Active {
            return Err(
                self.rejection(MetaRejection::StreamNotActive { name: stream.name.clone(), status: stream.status })
            );
        }
        let open = stream.open_ranges().len() as u32;
        let target = u32::try_from(target).unwrap_or(u32::MAX);
        if target > self.settings.stream_shards_max {
            return Err(ApiError::LimitExceeded(format!(
                "Target shard count or number of open shards cannot be greater than {}. Current open shard count: {open}, Target shard count: {target}",
                self.settings.stream_shards_max
            )));
        }
        if let Some(problem) = meta::scaling_step_problem(open, target) {
            return Err(ApiError::LimitExceeded(problem));
        }
        self.check_shard_limit(target.saturating_sub(open)).await?;
        let update =
            UpdateShardCount { stream: name.to_string(), target, requested_ms: self.node.seams.clock.now_ms() };
        self.node
            .propose_meta(MetaCommand { command: Some(meta_command::Command::UpdateShardCount(update)) })
            .await?
            .map_err(|rejection| self.rejection(rejection))?;
        Ok((open, target))
    }

    /// UpdateStreamMode: switches the capacity mode of an ACTIVE stream. The stream is UPDATING
    /// until the metadata leader completes the change; asking for the mode it has changes
    /// nothing. Switching to PROVISIONED keeps the shards the stream has; switching to
    /// ON_DEMAND keeps them too, and from then on the stream scales with its load.
    pub async fn update_stream_mode(&self, name: &str, on_demand: bool) -> Result<(), ApiError> {
        validate_stream_name(name, "streamName")?;
        let update = UpdateStreamMode {
            stream: name.to_string(),
            on_demand,
            requested_ms: self.node.seams.clock.now_ms(),
            on_demand_streams_max: self.node.options.limits.on_demand.streams_max,
        };
        self.node
            .propose_meta(MetaCommand { command: Some(meta_command::Command::UpdateStreamMode(update)) })
            .await?
            .map_err(|rejection| self.rejection(rejection))
    }

    /// Shards of an ON_DEMAND stream change only by its own scaling.
    fn check_provisioned(&self, stream: &StreamMeta, operation: &str) -> Result<(), ApiError> {
        if stream.mode == meta::StreamMode::OnDemand {
            return Err(ApiError::InvalidArgument(format!(
                "{operation} is not supported for stream {} under account {} because it is in ON_DEMAND mode; its shards scale with its load.",
                stream.name, self.settings.account
            )));
        }
        Ok(())
    }

    /// A shard named in a reshard request, or Kinesis' ResourceNotFoundException.
    fn reshard_shard<'a>(&self, stream: &'a StreamMeta, shard_id: &str) -> Result<&'a ShardMeta, ApiError> {
        keys::parse_shard_id(shard_id).and_then(|index| stream.shard(index)).ok_or_else(|| {
            ApiError::ResourceNotFound(format!(
                "Could not find shard {shard_id} in stream {} under account {}.",
                stream.name, self.settings.account
            ))
        })
    }

    /// The stream must be ACTIVE and the shards open (not closed or closing already).
    fn check_reshardable(&self, stream: &StreamMeta, shards: &[&ShardMeta]) -> Result<(), ApiError> {
        if stream.status != meta::StreamStatus::Active {
            return Err(
                self.rejection(MetaRejection::StreamNotActive { name: stream.name.clone(), status: stream.status })
            );
        }
        if let Some(shard) = shards.iter().find(|shard| shard.state != meta::ShardState::Open) {
            return Err(ApiError::ResourceInUse(format!(
                "Shard {} in stream {} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
                keys::shard_id(shard.index),
                stream.name,
                self.settings.account
            )));
        }
        Ok(())
    }

    /// The account-wide shard limit (DescribeLimits' ShardLimit, `account_shards_max`) with
    /// `additional` more open shards. Checked when asked, against the linearizable state;
    /// concurrent requests may together pass it by their sum.
    pub(super) async fn check_shard_limit(&self, additional: u32) -> Result<(), ApiError> {
        let limits = self.describe_limits().await?;
        if limits.open_shard_count + additional > limits.shard_limit {
            return Err(ApiError::LimitExceeded(format!(
                "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {}. Limit: {}. Number of additional shards that would have resulted from this request: {additional}.",
                self.settings.account, self.settings.region, limits.open_shard_count, limits.shard_limit
            )));
        }
        Ok(())
    }

    /// Places the children's replicas and proposes the reshard.
    async fn propose_reshard(
        &self,
        stream: &StreamMeta,
        closing: Vec<u32>,
        children: Vec<((u128, u128), Vec<u32>)>,
    ) -> Result<(), ApiError> {
        let state = self.node.meta_state();
        let placement =
            self.node.place_new_shards(children.len() as u32, state.next_group_id).map_err(ApiError::LimitExceeded)?;
        let children = children
            .into_iter()
            .zip(placement)
            .map(|(((start, end), parents), replicas)| ChildShardSpec {
                starting_hash_key: start.to_be_bytes().to_vec().into(),
                ending_hash_key: end.to_be_bytes().to_vec().into(),
                parents,
                replicas,
            })
            .collect();
        let command = meta_command::Command::Reshard(Reshard {
            stream: stream.name.clone(),
            closing,
            children,
            scaling_step: false,
            requested_ms: self.node.seams.clock.now_ms(),
        });
        self.node
            .propose_meta(MetaCommand { command: Some(command) })
            .await?
            .map_err(|rejection| self.rejection(rejection))
    }
}
