//! The cluster's metadata: streams, their shards, and where each shard's replicas live.
//!
//! It is the state machine of the metadata Raft group (group 0, one voter per zone). Every
//! node applies the same commands in the same order, so group ids and placement agree
//! everywhere. Deleted streams leave tombstones naming their groups, so a node removes a
//! group's data only because a delete was applied, never because its view is behind.

use std::collections::{BTreeMap, BTreeSet};

use riffle_proto::peer::{
    meta_command, CreateStream, MarkShardReady, MetaCommand, RegisterConsumer, Reshard, ShardSealed, StreamTag,
    UpdateShardCount, UpdateStreamMode,
};
use serde::{Deserialize, Serialize};

/// The metadata group's id; shard groups count up from 1.
pub const META_GROUP: u64 = 0;

/// A metadata command the state machine refused; the client sees it as a Kinesis error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetaRejection {
    #[error("Stream {0} already exists")]
    StreamExists(String),
    #[error("Stream {0} not found")]
    StreamNotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// A per-stream limit (tags) would be exceeded: a `LimitExceededException`.
    #[error("{0}")]
    LimitExceeded(String),
    /// RegisterStreamConsumer with a name the stream already has.
    #[error("Consumer {consumer} of stream {stream} already exists")]
    ConsumerExists { stream: String, consumer: String },
    #[error("Consumer {consumer} of stream {stream} not found")]
    ConsumerNotFound { stream: String, consumer: String },
    /// DeleteStream without EnforceConsumerDeletion on a stream that has consumers.
    #[error("Stream {0} has registered consumers")]
    StreamHasConsumers(String),
    /// A change that needs an ACTIVE stream (a reshard while one runs).
    #[error("Stream {name} is {status:?}, not ACTIVE")]
    StreamNotActive { name: String, status: StreamStatus },
}

/// Tags one stream holds at most.
pub const STREAM_TAGS_MAX: usize = 50;
/// Enhanced fan-out consumers one stream holds at most.
pub const STREAM_CONSUMERS_MAX: usize = 20;
/// UpdateShardCount calls per stream within [`SCALING_WINDOW_MS`] at most.
pub const SCALINGS_PER_DAY_MAX: usize = 10;
pub const SCALING_WINDOW_MS: i64 = 24 * 3_600_000;
/// UpdateStreamMode switches per stream within [`SCALING_WINDOW_MS`] at most (AWS: twice a day).
pub const MODE_CHANGES_PER_DAY_MAX: usize = 2;
/// Retention bounds, in hours.
pub const RETENTION_HOURS_MIN: u32 = 24;
pub const RETENTION_HOURS_MAX: u32 = 8760;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub index: u32,
    pub group_id: u64,
    pub starting_hash_key: u128,
    pub ending_hash_key: u128,
    /// Nodes holding replicas, one per zone.
    pub replicas: Vec<u64>,
    /// The shard's group has elected a leader (reported through [`MarkShardReady`]). Shards in
    /// snapshots older than this field were serving.
    #[serde(default = "serving")]
    pub ready: bool,
    /// The shards this one was split or merged from (none, one, or two in hash order), as
    /// Kinesis' `ParentShardId` and `AdjacentParentShardId`.
    #[serde(default)]
    pub parents: Vec<u32>,
    #[serde(default)]
    pub state: ShardState,
    /// When the shard was created (its stream's creation for the first shards; 0 in snapshots
    /// older than this field, read as the stream's) and closed.
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub closed_ms: Option<i64>,
    /// A closed shard whose records have all expired: listed nowhere, its group removed. It
    /// keeps its place (shard ids are positions) and children still name it as a parent.
    #[serde(default)]
    pub expired: bool,
    /// A replica being moved (see `control::membership`): `replicas` still lists `from`; the
    /// shard's leader adds `to` as a learner, changes the group's membership, and reports it.
    #[serde(default)]
    pub moving: Option<ReplicaMove>,
    /// Replica moves completed. A group whose membership never changed is initialized by its
    /// first replicas; after a move, a replica that has no log waits for the leader instead.
    #[serde(default)]
    pub moves: u32,
    /// The replicas placed when the shard was created that no move has taken away: a replica
    /// on one of these nodes never held data it could have lost (a node that lost its disk
    /// knows it), so one that starts without a log — its node was cut off when the shard was
    /// created — takes part at once instead of asking to be readmitted. Absent in metadata
    /// written before it existed.
    #[serde(default)]
    pub founders: Vec<u64>,
}

/// One replica of a shard moving from one node to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMove {
    pub from: u64,
    pub to: u64,
}

impl ShardMeta {
    /// Whether `node` holds (or is receiving) a replica of this shard.
    pub fn placed_on(&self, node: u64) -> bool {
        self.replicas.contains(&node) || self.moving.is_some_and(|moving| moving.to == node)
    }
}

fn serving() -> bool {
    true
}

/// Where a shard is in its life. Only `Open` and `Sealing` shards take writes, and together
/// they partition the hash-key space exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardState {
    #[default]
    Open,
    /// A reshard closes it: it takes writes until its group applies the seal.
    Sealing,
    /// Sealed at this log index of its group: every record it holds has a sequence below
    /// `sequence::first_of_batch(seal_index)`. Readable until retention expires.
    Closed { seal_index: u64 },
    /// A reshard's child whose parents are not all closed yet: it takes no writes, so that for
    /// every partition key the parents' records come before the child's.
    Waiting,
}

impl ShardState {
    pub fn takes_writes(&self) -> bool {
        matches!(self, ShardState::Open | ShardState::Sealing)
    }
}

/// A stream's lifecycle state, replicated so every node reports the same one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamStatus {
    /// Created; some shard group has not elected its first leader yet.
    Creating,
    /// Every shard serves. Streams in snapshots older than this field were active.
    #[default]
    Active,
    /// A reshard or a capacity mode change runs: some shards are sealing, some children are not
    /// serving yet, or the mode change is not complete.
    Updating,
    /// DeleteStream was applied; the metadata leader purges the stream next. Records are still
    /// served meanwhile, as Kinesis allows.
    Deleting,
}

/// A stream's capacity mode, as Kinesis' `StreamModeDetails`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMode {
    /// Shards change only when asked (SplitShard, MergeShards, UpdateShardCount).
    #[default]
    Provisioned,
    /// The metadata leader splits hot shards and merges cold neighbours from measured write
    /// load (see `control::on_demand`); shards cannot be changed by hand.
    OnDemand,
}

impl StreamMode {
    /// Kinesis' name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    pub created_ms: i64,
    #[serde(default)]
    pub status: StreamStatus,
    pub retention_period_hours: u32,
    pub shards: Vec<ShardMeta>,
    /// Tags, by key. Absent in snapshots older than tagging.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Shard-level metrics enabled with EnableEnhancedMonitoring (recorded, not emitted).
    #[serde(default)]
    pub shard_level_metrics: BTreeSet<String>,
    /// The resource policy (JSON text), stored but not enforced.
    #[serde(default)]
    pub resource_policy: Option<String>,
    /// Enhanced fan-out consumers, by name (registry only: no push delivery yet).
    #[serde(default)]
    pub consumers: BTreeMap<String, ConsumerMeta>,
    /// The shard count an UpdateShardCount in progress scales to.
    #[serde(default)]
    pub scaling_target: Option<u32>,
    /// When the UpdateShardCount calls of the last day were made (the per-day limit).
    #[serde(default)]
    pub scalings_ms: Vec<i64>,
    #[serde(default)]
    pub mode: StreamMode,
    /// When the mode changes of the last day were made (the per-day limit).
    #[serde(default)]
    pub mode_changes_ms: Vec<i64>,
    /// An UpdateStreamMode applied and not yet completed by the metadata leader.
    #[serde(default)]
    pub mode_change_pending: bool,
}

/// A registered enhanced fan-out consumer. It is ACTIVE once applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMeta {
    pub name: String,
    pub created_ms: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl ConsumerMeta {
    /// The epoch second that ends the consumer's ARN.
    pub fn created_seconds(&self) -> i64 {
        self.created_ms.div_euclid(1000)
    }
}

impl StreamMeta {
    /// The shard taking writes whose hash range holds `hash_key`. `None` only for a moment of
    /// a merge: one parent is closed, the other still sealing, so their child waits.
    pub fn shard_for_hash(&self, hash_key: u128) -> Option<&ShardMeta> {
        self.shards.iter().find(|shard| {
            shard.state.takes_writes() && shard.starting_hash_key <= hash_key && hash_key <= shard.ending_hash_key
        })
    }

    /// Shards that are not closed (children waiting for their parents included): what
    /// Kinesis counts as open.
    pub fn open_shard_count(&self) -> usize {
        self.shards.iter().filter(|shard| !matches!(shard.state, ShardState::Closed { .. })).count()
    }

    /// The shards split or merged from `parent`.
    pub fn children_of(&self, parent: u32) -> impl Iterator<Item = &ShardMeta> {
        self.shards.iter().filter(move |shard| shard.parents.contains(&parent))
    }

    /// No reshard step is running: nothing is sealing or waiting, and every shard taking writes
    /// has a leader.
    pub fn settled(&self) -> bool {
        self.shards.iter().all(|shard| match shard.state {
            ShardState::Open => shard.ready,
            ShardState::Closed { .. } => true,
            ShardState::Sealing | ShardState::Waiting => false,
        })
    }

    /// The open shards' hash ranges, in hash order.
    pub fn open_ranges(&self) -> Vec<(u128, u128)> {
        let mut ranges: Vec<(u128, u128)> = self
            .shards
            .iter()
            .filter(|shard| shard.state == ShardState::Open)
            .map(|shard| (shard.starting_hash_key, shard.ending_hash_key))
            .collect();
        ranges.sort_unstable();
        ranges
    }

    /// ACTIVE once settled with no scaling or mode change left to do; a stream that has never
    /// been ACTIVE is CREATING until then, otherwise UPDATING. DELETING stays.
    fn refresh_status(&mut self) {
        if self.status == StreamStatus::Deleting {
            return;
        }
        let mut settled = self.settled() && !self.mode_change_pending;
        if settled {
            if let Some(target) = self.scaling_target {
                if self.open_ranges() == crate::keys::even_ranges(target) {
                    self.scaling_target = None;
                } else {
                    settled = false;
                }
            }
        }
        self.status = match (settled, self.status) {
            (true, _) => StreamStatus::Active,
            (false, StreamStatus::Creating) => StreamStatus::Creating,
            (false, _) => StreamStatus::Updating,
        };
    }

    pub fn shard(&self, index: u32) -> Option<&ShardMeta> {
        self.shards.get(index as usize).filter(|shard| shard.index == index)
    }
}

/// The applied metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub streams: BTreeMap<String, StreamMeta>,
    pub next_group_id: u64,
    /// Groups of deleted streams, whose replicas must be removed.
    pub deleted_groups: Vec<u64>,
    /// The cluster's nodes, by id (empty until the first metadata leader records the founders;
    /// see `control::membership`).
    #[serde(default)]
    pub nodes: BTreeMap<u64, crate::control::membership::NodeMeta>,
}

impl MetaState {
    /// Applies one command; the same input gives the same state on every node.
    pub fn apply(&mut self, command: &MetaCommand) -> Result<(), MetaRejection> {
        match &command.command {
            Some(meta_command::Command::CreateStream(create)) => self.create_stream(create),
            Some(meta_command::Command::DeleteStream(delete)) => {
                let stream = self.stream_mut(&delete.name)?;
                if stream.status == StreamStatus::Deleting {
                    return Ok(());
                }
                if !stream.consumers.is_empty() && !delete.enforce_consumer_deletion {
                    return Err(MetaRejection::StreamHasConsumers(delete.name.clone()));
                }
                stream.consumers.clear();
                stream.status = StreamStatus::Deleting;
                Ok(())
            }
            Some(meta_command::Command::PurgeStream(purge)) => {
                match self.streams.get(&purge.name).map(|stream| stream.status) {
                    None => return Ok(()),
                    Some(StreamStatus::Deleting) => {}
                    Some(status) => {
                        return Err(MetaRejection::StreamNotActive { name: purge.name.clone(), status });
                    }
                }
                if let Some(stream) = self.streams.remove(&purge.name) {
                    self.deleted_groups.extend(stream.shards.iter().map(|shard| shard.group_id));
                }
                Ok(())
            }
            Some(meta_command::Command::UpdateStreamMode(update)) => self.update_stream_mode(update),
            Some(meta_command::Command::ShardExpired(expired)) => {
                let stream = self
                    .streams
                    .get_mut(&expired.stream)
                    .ok_or_else(|| MetaRejection::StreamNotFound(expired.stream.clone()))?;
                let shard =
                    stream.shards.iter_mut().find(|shard| shard.group_id == expired.group_id).ok_or_else(|| {
                        MetaRejection::Invalid(format!(
                            "stream {} has no shard in group {}",
                            expired.stream, expired.group_id
                        ))
                    })?;
                if !matches!(shard.state, ShardState::Closed { .. }) {
                    return Err(MetaRejection::Invalid(format!(
                        "shard {} of {} is not closed; only a closed shard expires",
                        shard.index, expired.stream
                    )));
                }
                if !shard.expired {
                    shard.expired = true;
                    self.deleted_groups.push(expired.group_id);
                }
                Ok(())
            }
            Some(meta_command::Command::CompleteModeChange(complete)) => {
                let stream = self.stream_mut(&complete.stream)?;
                if stream.mode_change_pending {
                    stream.mode_change_pending = false;
                    stream.refresh_status();
                }
                Ok(())
            }
            Some(meta_command::Command::SetRetention(set)) => {
                let stream = self.stream_mut(&set.name)?;
                let (hours, current) = (set.hours, stream.retention_period_hours);
                if !(RETENTION_HOURS_MIN..=RETENTION_HOURS_MAX).contains(&hours) {
                    return Err(MetaRejection::Invalid(format!(
                        "Minimum allowed retention period is {RETENTION_HOURS_MIN} hours and maximum is {RETENTION_HOURS_MAX} hours. Requested retention period ({hours} hours) is out of range."
                    )));
                }
                if set.increase && hours < current {
                    return Err(MetaRejection::Invalid(format!(
                        "Requested retention period ({hours} hours) for stream {} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.",
                        set.name
                    )));
                }
                if !set.increase && hours > current {
                    return Err(MetaRejection::Invalid(format!(
                        "Requested retention period ({hours} hours) for stream {} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.",
                        set.name
                    )));
                }
                stream.retention_period_hours = hours;
                Ok(())
            }
            Some(meta_command::Command::AddTags(add)) => {
                let tags = self.tags_mut(&add.name, add.consumer.as_deref(), add.consumer_created_seconds)?;
                add_tags(&add.name, tags, &add.tags)
            }
            Some(meta_command::Command::RemoveTags(remove)) => {
                let tags = self.tags_mut(&remove.name, remove.consumer.as_deref(), remove.consumer_created_seconds)?;
                for key in &remove.keys {
                    tags.remove(key);
                }
                Ok(())
            }
            Some(meta_command::Command::SetShardLevelMetrics(set)) => {
                let stream = self.stream_mut(&set.name)?;
                for metric in &set.metrics {
                    if set.enable {
                        stream.shard_level_metrics.insert(metric.clone());
                    } else {
                        stream.shard_level_metrics.remove(metric);
                    }
                }
                Ok(())
            }
            Some(meta_command::Command::SetResourcePolicy(set)) => {
                let stream = self.stream_mut(&set.name)?;
                stream.resource_policy = set.policy.clone();
                Ok(())
            }
            Some(meta_command::Command::RegisterConsumer(register)) => self.register_consumer(register),
            Some(meta_command::Command::DeregisterConsumer(deregister)) => {
                let stream = self.stream_mut(&deregister.stream)?;
                let found = stream.consumers.get(&deregister.consumer).is_some_and(|consumer| {
                    deregister.created_seconds.is_none_or(|seconds| consumer.created_seconds() == seconds)
                });
                if !found {
                    return Err(MetaRejection::ConsumerNotFound {
                        stream: deregister.stream.clone(),
                        consumer: deregister.consumer.clone(),
                    });
                }
                stream.consumers.remove(&deregister.consumer);
                Ok(())
            }
            Some(meta_command::Command::MarkShardReady(ready)) => self.mark_shard_ready(ready),
            Some(meta_command::Command::Reshard(reshard)) => self.reshard(reshard),
            Some(meta_command::Command::ShardSealed(sealed)) => self.shard_sealed(sealed),
            Some(meta_command::Command::UpdateShardCount(update)) => self.update_shard_count(update),
            Some(meta_command::Command::RegisterNodes(register)) => self.register_nodes(register),
            Some(meta_command::Command::AddNode(add)) => self.add_node(add),
            Some(meta_command::Command::DecommissionNode(decommission)) => self.decommission_node(decommission.id),
            Some(meta_command::Command::RemoveNode(remove)) => self.remove_node(remove.id),
            Some(meta_command::Command::MoveReplica(start)) => self.move_replica(start),
            Some(meta_command::Command::ReplicaMoved(moved)) => self.replica_moved(moved),
            Some(meta_command::Command::PreferLeader(prefer)) => self.prefer_leader(prefer),
            Some(meta_command::Command::NodeStarted(started)) => self.node_started(started.node),
            None => Err(MetaRejection::Invalid("empty metadata command".to_string())),
        }
    }

    /// Streams in ON_DEMAND mode (DescribeLimits' OnDemandStreamCount).
    pub fn on_demand_stream_count(&self) -> u32 {
        self.streams.values().filter(|stream| stream.mode == StreamMode::OnDemand).count() as u32
    }

    fn stream_mut(&mut self, name: &str) -> Result<&mut StreamMeta, MetaRejection> {
        self.streams.get_mut(name).ok_or_else(|| MetaRejection::StreamNotFound(name.to_string()))
    }

    /// The tags of a stream or, with `consumer`, of one of its consumers (of the registration
    /// made in `created_seconds` when given).
    fn tags_mut(
        &mut self,
        stream: &str,
        consumer: Option<&str>,
        created_seconds: Option<i64>,
    ) -> Result<&mut BTreeMap<String, String>, MetaRejection> {
        let meta = self.stream_mut(stream)?;
        let Some(consumer) = consumer else {
            return Ok(&mut meta.tags);
        };
        meta.consumers
            .get_mut(consumer)
            .filter(|found| created_seconds.is_none_or(|seconds| found.created_seconds() == seconds))
            .map(|found| &mut found.tags)
            .ok_or_else(|| MetaRejection::ConsumerNotFound {
                stream: stream.to_string(),
                consumer: consumer.to_string(),
            })
    }

    /// Idempotent: a shard reported twice (two successive first leaders) stays ready.
    fn mark_shard_ready(&mut self, ready: &MarkShardReady) -> Result<(), MetaRejection> {
        let stream = self.stream_mut(&ready.stream)?;
        let shard = stream.shards.iter_mut().find(|shard| shard.group_id == ready.group_id).ok_or_else(|| {
            MetaRejection::Invalid(format!("stream {} has no shard in group {}", ready.stream, ready.group_id))
        })?;
        shard.ready = true;
        stream.refresh_status();
        Ok(())
    }

    /// Starts a reshard; everything is checked here, so concurrent proposals cannot both pass.
    fn reshard(&mut self, reshard: &Reshard) -> Result<(), MetaRejection> {
        let first_group = self.next_group_id.max(META_GROUP + 1);
        let stream = self.stream_mut(&reshard.stream)?;
        let allowed = match reshard.scaling_step {
            false => stream.status == StreamStatus::Active,
            true => stream.scaling_target.is_some() && stream.settled(),
        };
        if !allowed {
            return Err(MetaRejection::StreamNotActive { name: reshard.stream.clone(), status: stream.status });
        }
        let invalid = |reason: String| MetaRejection::Invalid(format!("reshard of {}: {reason}", reshard.stream));
        if reshard.closing.is_empty() || reshard.children.is_empty() {
            return Err(invalid("nothing to close or no children".into()));
        }
        let mut closing: Vec<&ShardMeta> = Vec::with_capacity(reshard.closing.len());
        for index in &reshard.closing {
            let shard = stream.shard(*index).ok_or_else(|| invalid(format!("no shard {index}")))?;
            if shard.state != ShardState::Open {
                return Err(invalid(format!("shard {index} is not open")));
            }
            if closing.iter().any(|seen| seen.index == *index) {
                return Err(invalid(format!("shard {index} is named twice")));
            }
            closing.push(shard);
        }
        closing.sort_by_key(|shard| shard.starting_hash_key);
        // Runs of adjacent closing shards; the children must tile each run exactly.
        let mut runs: Vec<(u128, u128)> = Vec::new();
        for shard in &closing {
            match runs.last_mut() {
                Some(run) if run.1.checked_add(1) == Some(shard.starting_hash_key) => run.1 = shard.ending_hash_key,
                _ => runs.push((shard.starting_hash_key, shard.ending_hash_key)),
            }
        }
        if runs.len() > 1 && !reshard.scaling_step {
            return Err(invalid("the closing shards are not adjacent".into()));
        }
        let mut children = Vec::with_capacity(reshard.children.len());
        for (position, spec) in reshard.children.iter().enumerate() {
            let starting_hash_key = hash_from_bytes(&spec.starting_hash_key)?;
            let ending_hash_key = hash_from_bytes(&spec.ending_hash_key)?;
            if ending_hash_key < starting_hash_key {
                return Err(invalid(format!("child {position} ends before it starts")));
            }
            let overlapping: Vec<u32> = closing
                .iter()
                .filter(|parent| {
                    parent.starting_hash_key <= ending_hash_key && starting_hash_key <= parent.ending_hash_key
                })
                .map(|parent| parent.index)
                .collect();
            let mut named = spec.parents.clone();
            named.sort_unstable();
            let mut expected = overlapping.clone();
            expected.sort_unstable();
            if overlapping.len() > 2 || named != expected {
                return Err(invalid(format!(
                    "child {position} overlaps shards {overlapping:?} but names {:?} (at most two)",
                    spec.parents
                )));
            }
            if spec.replicas.is_empty() {
                return Err(invalid(format!("child {position} has no replicas")));
            }
            children.push((starting_hash_key, ending_hash_key, spec));
        }
        let mut tiling: Vec<(u128, u128)> = children.iter().map(|(start, end, _)| (*start, *end)).collect();
        tiling.sort_unstable();
        let mut run = 0usize;
        let mut expected_start = runs[0].0;
        for (start, end) in tiling {
            let Some(&(_, run_end)) = runs.get(run) else {
                return Err(invalid("a child lies outside the parents' hash ranges".into()));
            };
            if start != expected_start || end > run_end {
                return Err(invalid("the children do not continue the parents' hash range".into()));
            }
            if end == run_end {
                run += 1;
                expected_start = runs.get(run).map_or(0, |next| next.0);
            } else {
                expected_start = end + 1;
            }
        }
        if run != runs.len() {
            return Err(invalid("the children do not cover the parents' hash range".into()));
        }
        let closing: Vec<u32> = closing.iter().map(|shard| shard.index).collect();
        for index in &closing {
            stream.shards[*index as usize].state = ShardState::Sealing;
        }
        let first_index = stream.shards.len() as u32;
        for (offset, (starting_hash_key, ending_hash_key, spec)) in children.into_iter().enumerate() {
            stream.shards.push(ShardMeta {
                index: first_index + offset as u32,
                group_id: first_group + offset as u64,
                starting_hash_key,
                ending_hash_key,
                replicas: spec.replicas.clone(),
                ready: false,
                parents: spec.parents.clone(),
                state: ShardState::Waiting,
                created_ms: reshard.requested_ms,
                closed_ms: None,
                expired: false,
                moving: None,
                moves: 0,
                founders: spec.replicas.clone(),
            });
        }
        stream.status = StreamStatus::Updating;
        self.next_group_id = first_group + reshard.children.len() as u64;
        Ok(())
    }

    /// Starts scaling a stream to `target` uniform shards (checked here against the state it
    /// applies to: ACTIVE, at most double and at least half the open shards, the per-day limit).
    fn update_shard_count(&mut self, update: &UpdateShardCount) -> Result<(), MetaRejection> {
        let stream = self.stream_mut(&update.stream)?;
        if stream.status != StreamStatus::Active {
            return Err(MetaRejection::StreamNotActive { name: update.stream.clone(), status: stream.status });
        }
        let open = stream.open_ranges().len() as u32;
        let target = update.target;
        if let Some(problem) = scaling_step_problem(open, target) {
            return Err(MetaRejection::LimitExceeded(problem));
        }
        let day_start = update.requested_ms - SCALING_WINDOW_MS;
        stream.scalings_ms.retain(|at| *at > day_start);
        if stream.scalings_ms.len() >= SCALINGS_PER_DAY_MAX {
            return Err(MetaRejection::LimitExceeded(format!(
                "Stream {} has been scaled {SCALINGS_PER_DAY_MAX} times in the last 24 hours, the most allowed.",
                update.stream
            )));
        }
        stream.scalings_ms.push(update.requested_ms);
        if stream.open_ranges() != crate::keys::even_ranges(target) {
            stream.scaling_target = Some(target);
            stream.status = StreamStatus::Updating;
        }
        Ok(())
    }

    /// Switches an ACTIVE stream's capacity mode; the same mode again changes nothing (tools
    /// such as Terraform send it on every refresh). The stream is UPDATING until the metadata
    /// leader completes the change.
    fn update_stream_mode(&mut self, update: &UpdateStreamMode) -> Result<(), MetaRejection> {
        let on_demand_streams = self.on_demand_stream_count();
        let stream = self.stream_mut(&update.stream)?;
        let mode = if update.on_demand { StreamMode::OnDemand } else { StreamMode::Provisioned };
        if stream.status != StreamStatus::Active {
            return Err(MetaRejection::StreamNotActive { name: update.stream.clone(), status: stream.status });
        }
        if stream.mode == mode {
            return Ok(());
        }
        if mode == StreamMode::OnDemand && on_demand_streams >= update.on_demand_streams_max {
            return Err(on_demand_limit(update.on_demand_streams_max));
        }
        let day_start = update.requested_ms - SCALING_WINDOW_MS;
        stream.mode_changes_ms.retain(|at| *at > day_start);
        if stream.mode_changes_ms.len() >= MODE_CHANGES_PER_DAY_MAX {
            return Err(MetaRejection::LimitExceeded(format!(
                "Stream {} has changed capacity mode {MODE_CHANGES_PER_DAY_MAX} times in the last 24 hours, the most allowed.",
                update.stream
            )));
        }
        stream.mode_changes_ms.push(update.requested_ms);
        stream.mode = mode;
        stream.mode_change_pending = true;
        stream.status = StreamStatus::Updating;
        Ok(())
    }

    /// A closing shard's group applied its seal: the shard is closed, and children whose
    /// parents are all closed take writes. Idempotent.
    fn shard_sealed(&mut self, sealed: &ShardSealed) -> Result<(), MetaRejection> {
        let stream = self.stream_mut(&sealed.stream)?;
        let shard = stream.shards.iter_mut().find(|shard| shard.group_id == sealed.group_id).ok_or_else(|| {
            MetaRejection::Invalid(format!("stream {} has no shard in group {}", sealed.stream, sealed.group_id))
        })?;
        match shard.state {
            ShardState::Sealing => {
                shard.state = ShardState::Closed { seal_index: sealed.seal_index };
                shard.closed_ms = Some(sealed.sealed_ms);
            }
            ShardState::Closed { seal_index } if seal_index == sealed.seal_index => return Ok(()),
            other => {
                return Err(MetaRejection::Invalid(format!(
                    "shard {} of {} is {other:?}, not sealing at {}",
                    shard.index, sealed.stream, sealed.seal_index
                )))
            }
        }
        let closed: BTreeSet<u32> = stream
            .shards
            .iter()
            .filter(|shard| matches!(shard.state, ShardState::Closed { .. }))
            .map(|shard| shard.index)
            .collect();
        for child in stream.shards.iter_mut().filter(|shard| shard.state == ShardState::Waiting) {
            if child.parents.iter().all(|parent| closed.contains(parent)) {
                child.state = ShardState::Open;
            }
        }
        stream.refresh_status();
        Ok(())
    }

    /// Checked here, not only by the proposer, so concurrent registrations cannot pass the limit.
    fn register_consumer(&mut self, register: &RegisterConsumer) -> Result<(), MetaRejection> {
        let stream = self.stream_mut(&register.stream)?;
        if stream.consumers.contains_key(&register.consumer) {
            return Err(MetaRejection::ConsumerExists {
                stream: register.stream.clone(),
                consumer: register.consumer.clone(),
            });
        }
        if stream.consumers.len() >= STREAM_CONSUMERS_MAX {
            return Err(MetaRejection::LimitExceeded(format!(
                "Stream {} already has the maximum of {STREAM_CONSUMERS_MAX} registered consumers.",
                register.stream
            )));
        }
        let mut tags = BTreeMap::new();
        add_tags(&register.stream, &mut tags, &register.tags)?;
        stream.consumers.insert(
            register.consumer.clone(),
            ConsumerMeta { name: register.consumer.clone(), created_ms: register.created_ms, tags },
        );
        Ok(())
    }

    fn create_stream(&mut self, create: &CreateStream) -> Result<(), MetaRejection> {
        if self.streams.contains_key(&create.name) {
            return Err(MetaRejection::StreamExists(create.name.clone()));
        }
        if create.on_demand && self.on_demand_stream_count() >= create.on_demand_streams_max {
            return Err(on_demand_limit(create.on_demand_streams_max));
        }
        if create.shards.len() != create.shard_count as usize || create.shards.is_empty() {
            return Err(MetaRejection::Invalid(format!(
                "stream {} lists {} shards for a shard count of {}",
                create.name,
                create.shards.len(),
                create.shard_count
            )));
        }
        let first_group = self.next_group_id.max(META_GROUP + 1);
        let mut shards = Vec::with_capacity(create.shards.len());
        for (position, spec) in create.shards.iter().enumerate() {
            let starting_hash_key = hash_from_bytes(&spec.starting_hash_key)?;
            let ending_hash_key = hash_from_bytes(&spec.ending_hash_key)?;
            if spec.index as usize != position || spec.replicas.is_empty() {
                return Err(MetaRejection::Invalid(format!("shard {position} of {} is malformed", create.name)));
            }
            shards.push(ShardMeta {
                index: spec.index,
                group_id: first_group + position as u64,
                starting_hash_key,
                ending_hash_key,
                replicas: spec.replicas.clone(),
                ready: false,
                parents: Vec::new(),
                state: ShardState::Open,
                created_ms: create.created_ms,
                closed_ms: None,
                expired: false,
                moving: None,
                moves: 0,
                founders: spec.replicas.clone(),
            });
        }
        let covers_key_space = shards.first().is_some_and(|shard| shard.starting_hash_key == 0)
            && shards.last().is_some_and(|shard| shard.ending_hash_key == u128::MAX)
            && shards.windows(2).all(|pair| pair[0].ending_hash_key.checked_add(1) == Some(pair[1].starting_hash_key));
        if !covers_key_space {
            return Err(MetaRejection::Invalid(format!(
                "the shards of {} do not cover the hash key space",
                create.name
            )));
        }
        let mut tags = BTreeMap::new();
        add_tags(&create.name, &mut tags, &create.tags)?;
        self.next_group_id = first_group + shards.len() as u64;
        self.streams.insert(
            create.name.clone(),
            StreamMeta {
                name: create.name.clone(),
                created_ms: create.created_ms,
                status: StreamStatus::Creating,
                retention_period_hours: create.retention_period_hours,
                shards,
                tags,
                shard_level_metrics: BTreeSet::new(),
                resource_policy: None,
                consumers: BTreeMap::new(),
                scaling_target: None,
                scalings_ms: Vec::new(),
                mode: if create.on_demand { StreamMode::OnDemand } else { StreamMode::Provisioned },
                mode_changes_ms: Vec::new(),
                mode_change_pending: false,
            },
        );
        Ok(())
    }
}

fn on_demand_limit(max: u32) -> MetaRejection {
    MetaRejection::LimitExceeded(format!(
        "This request would exceed the limit of {max} data streams in ON_DEMAND mode for the account."
    ))
}

/// Why UpdateShardCount may not go from `open` shards to `target` in one call (at most double,
/// at least half), in Kinesis' words; `None` when it may.
pub fn scaling_step_problem(open: u32, target: u32) -> Option<String> {
    if target > open.saturating_mul(2) {
        return Some(format!(
            "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: {open}, Target shard count: {target}"
        ));
    }
    if target == 0 || target.saturating_mul(2) < open {
        return Some(format!(
            "UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: {open}, Target shard count: {target}"
        ));
    }
    None
}

/// Adds (or overwrites) `added`, refusing the whole change if the stream (or consumer) would hold
/// more than [`STREAM_TAGS_MAX`] tags.
fn add_tags(stream: &str, tags: &mut BTreeMap<String, String>, added: &[StreamTag]) -> Result<(), MetaRejection> {
    let new_keys: BTreeSet<&str> =
        added.iter().map(|tag| tag.key.as_str()).filter(|key| !tags.contains_key(*key)).collect();
    if tags.len() + new_keys.len() > STREAM_TAGS_MAX {
        return Err(MetaRejection::LimitExceeded(format!(
            "Failed to add tags to stream {stream}. A stream cannot have more than {STREAM_TAGS_MAX} tags; it has {} and the request adds {}.",
            tags.len(),
            new_keys.len()
        )));
    }
    for tag in added {
        tags.insert(tag.key.clone(), tag.value.clone());
    }
    Ok(())
}

fn hash_from_bytes(bytes: &[u8]) -> Result<u128, MetaRejection> {
    let array: [u8; 16] =
        bytes.try_into().map_err(|_| MetaRejection::Invalid(format!("a hash key of {} bytes", bytes.len())))?;
    Ok(u128::from_be_bytes(array))
}

#[cfg(test)]
mod tests {
    use riffle_proto::peer::{
        AddTags, ChildShardSpec, DeleteStream, DeregisterConsumer, PurgeStream, RemoveTags, SetResourcePolicy,
        SetRetention, SetShardLevelMetrics, ShardSpec,
    };

    use super::*;
    use crate::keys::even_ranges;

    fn create(name: &str, count: u32) -> MetaCommand {
        let shards = even_ranges(count)
            .into_iter()
            .enumerate()
            .map(|(index, (start, end))| ShardSpec {
                index: index as u32,
                group_id: 0,
                starting_hash_key: start.to_be_bytes().to_vec().into(),
                ending_hash_key: end.to_be_bytes().to_vec().into(),
                replicas: vec![1, 2, 3],
            })
            .collect();
        MetaCommand {
            command: Some(meta_command::Command::CreateStream(CreateStream {
                name: name.to_string(),
                shard_count: count,
                retention_period_hours: 24,
                created_ms: 5,
                shards,
                tags: vec![],
                on_demand: false,
                on_demand_streams_max: 50,
            })),
        }
    }

    #[test]
    fn streams_get_distinct_groups_and_tombstones() {
        let mut state = MetaState::default();
        state.apply(&create("a", 2)).expect("created");
        state.apply(&create("b", 3)).expect("created");
        assert_eq!(state.apply(&create("a", 1)), Err(MetaRejection::StreamExists("a".into())));
        let groups: Vec<u64> = state.streams.values().flat_map(|s| s.shards.iter().map(|x| x.group_id)).collect();
        assert_eq!(groups, vec![1, 2, 3, 4, 5]);
        let delete = MetaCommand {
            command: Some(meta_command::Command::DeleteStream(DeleteStream {
                name: "a".into(),
                enforce_consumer_deletion: false,
            })),
        };
        state.apply(&delete).expect("deleted");
        // DELETING until purged: the name stays taken, a second delete changes nothing.
        assert_eq!(state.streams["a"].status, StreamStatus::Deleting);
        assert_eq!(state.apply(&create("a", 1)), Err(MetaRejection::StreamExists("a".into())));
        state.apply(&delete).expect("deleting already");
        assert!(state.deleted_groups.is_empty());
        let purge = |name: &str| command(meta_command::Command::PurgeStream(PurgeStream { name: name.into() }));
        assert!(matches!(state.apply(&purge("b")), Err(MetaRejection::StreamNotActive { .. })));
        state.apply(&purge("a")).expect("purged");
        assert_eq!(state.deleted_groups, vec![1, 2]);
        state.apply(&purge("a")).expect("purging twice changes nothing");
        assert_eq!(state.apply(&delete), Err(MetaRejection::StreamNotFound("a".into())));
    }

    fn command(command: meta_command::Command) -> MetaCommand {
        MetaCommand { command: Some(command) }
    }

    fn tag(key: &str, value: &str) -> StreamTag {
        StreamTag { key: key.into(), value: value.into() }
    }

    #[test]
    fn retention_moves_only_in_the_direction_asked() {
        let mut state = MetaState::default();
        state.apply(&create("s", 1)).expect("created");
        let set = |hours, increase| {
            command(meta_command::Command::SetRetention(SetRetention { name: "s".into(), hours, increase }))
        };
        state.apply(&set(48, true)).expect("increased");
        assert_eq!(state.streams["s"].retention_period_hours, 48);
        let Err(MetaRejection::Invalid(message)) = state.apply(&set(30, true)) else { panic!("not refused") };
        assert_eq!(message, "Requested retention period (30 hours) for stream s can not be shorter than existing retention period (48 hours). Use DecreaseRetentionPeriod API.");
        assert!(matches!(state.apply(&set(72, false)), Err(MetaRejection::Invalid(_))));
        assert!(matches!(state.apply(&set(8761, true)), Err(MetaRejection::Invalid(_))));
        state.apply(&set(48, false)).expect("same is allowed");
        state.apply(&set(24, false)).expect("decreased");
        assert_eq!(state.streams["s"].retention_period_hours, 24);
        let missing = command(meta_command::Command::SetRetention(SetRetention {
            name: "nope".into(),
            hours: 48,
            increase: true,
        }));
        assert_eq!(state.apply(&missing), Err(MetaRejection::StreamNotFound("nope".into())));
    }

    #[test]
    fn tags_are_added_overwritten_removed_and_limited() {
        let mut state = MetaState::default();
        let mut created = create("s", 1);
        if let Some(meta_command::Command::CreateStream(create)) = &mut created.command {
            create.tags = vec![tag("a", "1")];
        }
        state.apply(&created).expect("created");
        let add = |tags: Vec<StreamTag>| {
            command(meta_command::Command::AddTags(AddTags { name: "s".into(), tags, ..Default::default() }))
        };
        state.apply(&add(vec![tag("a", "2"), tag("b", "")])).expect("added");
        assert_eq!(
            state.streams["s"].tags,
            BTreeMap::from([("a".to_string(), "2".to_string()), ("b".to_string(), String::new())])
        );
        for batch in 0..4 {
            state.apply(&add((0..12).map(|i| tag(&format!("k{batch}-{i}"), "v")).collect())).expect("added");
        }
        assert_eq!(state.streams["s"].tags.len(), 50);
        assert!(matches!(state.apply(&add(vec![tag("new", "v")])), Err(MetaRejection::LimitExceeded(_))));
        state.apply(&add(vec![tag("a", "3")])).expect("overwriting adds no tag");
        let remove = command(meta_command::Command::RemoveTags(RemoveTags {
            name: "s".into(),
            keys: vec!["a".into(), "absent".into()],
            ..Default::default()
        }));
        state.apply(&remove).expect("removed");
        assert_eq!(state.streams["s"].tags.len(), 49);
        assert!(!state.streams["s"].tags.contains_key("a"));
    }

    #[test]
    fn shard_level_metrics_and_policies_are_recorded() {
        let mut state = MetaState::default();
        state.apply(&create("s", 1)).expect("created");
        let metrics = |names: &[&str], enable| {
            command(meta_command::Command::SetShardLevelMetrics(SetShardLevelMetrics {
                name: "s".into(),
                metrics: names.iter().map(|name| name.to_string()).collect(),
                enable,
            }))
        };
        state.apply(&metrics(&["IncomingBytes", "OutgoingBytes"], true)).expect("enabled");
        state.apply(&metrics(&["IncomingBytes", "IteratorAgeMilliseconds"], false)).expect("disabled");
        assert_eq!(state.streams["s"].shard_level_metrics, BTreeSet::from(["OutgoingBytes".to_string()]));
        let policy = |policy: Option<&str>| {
            command(meta_command::Command::SetResourcePolicy(SetResourcePolicy {
                name: "s".into(),
                policy: policy.map(str::to_string),
            }))
        };
        state.apply(&policy(Some("{}"))).expect("stored");
        assert_eq!(state.streams["s"].resource_policy.as_deref(), Some("{}"));
        state.apply(&policy(None)).expect("deleted");
        assert_eq!(state.streams["s"].resource_policy, None);
    }

    fn register(stream: &str, consumer: &str, created_ms: i64) -> MetaCommand {
        command(meta_command::Command::RegisterConsumer(RegisterConsumer {
            stream: stream.into(),
            consumer: consumer.into(),
            created_ms,
            tags: vec![tag("team", "a")],
        }))
    }

    fn deregister(stream: &str, consumer: &str, created_seconds: Option<i64>) -> MetaCommand {
        command(meta_command::Command::DeregisterConsumer(DeregisterConsumer {
            stream: stream.into(),
            consumer: consumer.into(),
            created_seconds,
        }))
    }

    #[test]
    fn consumers_are_unique_limited_and_deregistered_by_name_or_creation_second() {
        let mut state = MetaState::default();
        state.apply(&create("s", 1)).expect("created");
        state.apply(&register("s", "c", 7_500)).expect("registered");
        let consumer = &state.streams["s"].consumers["c"];
        assert_eq!((consumer.created_ms, consumer.created_seconds()), (7_500, 7));
        assert_eq!(consumer.tags.get("team").map(String::as_str), Some("a"));
        assert_eq!(
            state.apply(&register("s", "c", 9_000)),
            Err(MetaRejection::ConsumerExists { stream: "s".into(), consumer: "c".into() })
        );
        assert_eq!(state.apply(&register("nope", "c", 1)), Err(MetaRejection::StreamNotFound("nope".into())));
        for index in 1..STREAM_CONSUMERS_MAX {
            state.apply(&register("s", &format!("c{index}"), 1)).expect("registered");
        }
        assert!(matches!(state.apply(&register("s", "one-more", 1)), Err(MetaRejection::LimitExceeded(_))));
        let not_found = Err(MetaRejection::ConsumerNotFound { stream: "s".into(), consumer: "c".into() });
        assert_eq!(state.apply(&deregister("s", "c", Some(8))), not_found, "another registration's ARN");
        state.apply(&deregister("s", "c", Some(7))).expect("deregistered by ARN");
        assert_eq!(state.apply(&deregister("s", "c", None)), not_found);
        state.apply(&deregister("s", "c1", None)).expect("deregistered by name");
        state.apply(&register("s", "c", 10_000)).expect("room again");
        assert_eq!(state.streams["s"].consumers.len(), STREAM_CONSUMERS_MAX - 1);
    }

    #[test]
    fn consumer_tags_are_added_removed_limited_and_need_the_consumer() {
        let mut state = MetaState::default();
        state.apply(&create("s", 1)).expect("created");
        state.apply(&register("s", "c", 7_500)).expect("registered");
        let add = |consumer: &str, seconds: Option<i64>, tags: Vec<StreamTag>| {
            command(meta_command::Command::AddTags(AddTags {
                name: "s".into(),
                tags,
                consumer: Some(consumer.into()),
                consumer_created_seconds: seconds,
            }))
        };
        state.apply(&add("c", Some(7), vec![tag("env", "dev")])).expect("added by ARN");
        state.apply(&add("c", None, vec![tag("team", "b")])).expect("added by name");
        assert_eq!(
            state.streams["s"].consumers["c"].tags,
            BTreeMap::from([("env".to_string(), "dev".to_string()), ("team".to_string(), "b".to_string())])
        );
        assert!(state.streams["s"].tags.is_empty(), "the stream's own tags are untouched");
        let not_found = Err(MetaRejection::ConsumerNotFound { stream: "s".into(), consumer: "c".into() });
        assert_eq!(state.apply(&add("c", Some(8), vec![tag("x", "1")])), not_found, "another registration");
        assert!(matches!(
            state.apply(&add("nope", None, vec![tag("x", "1")])),
            Err(MetaRejection::ConsumerNotFound { .. })
        ));
        let many = (0..48).map(|i| tag(&format!("k{i}"), "v")).collect();
        state.apply(&add("c", None, many)).expect("up to 50");
        assert!(matches!(state.apply(&add("c", None, vec![tag("new", "v")])), Err(MetaRejection::LimitExceeded(_))));
        let remove = |consumer: &str, seconds: Option<i64>| {
            command(meta_command::Command::RemoveTags(RemoveTags {
                name: "s".into(),
                keys: vec!["env".into(), "absent".into()],
                consumer: Some(consumer.into()),
                consumer_created_seconds: seconds,
            }))
        };
        assert_eq!(state.apply(&remove("c", Some(1))), not_found);
        state.apply(&remove("c", Some(7))).expect("removed");
        assert_eq!(state.streams["s"].consumers["c"].tags.len(), 49);
        assert!(!state.streams["s"].consumers["c"].tags.contains_key("env"));
    }

    #[test]
    fn deleting_a_stream_with_consumers_needs_enforcement_and_removes_them() {
        let mut state = MetaState::default();
        state.apply(&create("s", 1)).expect("created");
        state.apply(&register("s", "c", 1_000)).expect("registered");
        let delete = |enforce_consumer_deletion| {
            command(meta_command::Command::DeleteStream(DeleteStream { name: "s".into(), enforce_consumer_deletion }))
        };
        assert_eq!(state.apply(&delete(false)), Err(MetaRejection::StreamHasConsumers("s".into())));
        state.apply(&delete(true)).expect("deleted");
        assert!(state.streams["s"].consumers.is_empty());
        state.apply(&command(meta_command::Command::PurgeStream(PurgeStream { name: "s".into() }))).expect("purged");
        state.apply(&create("s", 1)).expect("created again");
        assert!(state.streams["s"].consumers.is_empty());
        state.apply(&delete(false)).expect("no consumers, no enforcement needed");
    }

    #[test]
    fn snapshots_without_the_newer_fields_still_load() {
        let old = r#"{"streams":{"s":{"name":"s","created_ms":1,"retention_period_hours":24,"shards":[]}},"next_group_id":2,"deleted_groups":[]}"#;
        let state: MetaState = serde_json::from_str(old).expect("loads");
        assert!(state.streams["s"].tags.is_empty());
        assert!(state.streams["s"].shard_level_metrics.is_empty());
        assert_eq!(state.streams["s"].resource_policy, None);
        assert!(state.streams["s"].consumers.is_empty());
        assert_eq!(state.streams["s"].status, StreamStatus::Active);
    }

    #[test]
    fn a_stream_becomes_active_once_every_shard_has_reported_a_leader() {
        let mut state = MetaState::default();
        state.apply(&create("s", 2)).expect("created");
        assert_eq!(state.streams["s"].status, StreamStatus::Creating);
        let ready =
            |group_id| command(meta_command::Command::MarkShardReady(MarkShardReady { stream: "s".into(), group_id }));
        state.apply(&ready(1)).expect("shard 0 ready");
        assert_eq!(state.streams["s"].status, StreamStatus::Creating);
        state.apply(&ready(1)).expect("a second report changes nothing");
        assert_eq!(state.streams["s"].status, StreamStatus::Creating);
        state.apply(&ready(2)).expect("shard 1 ready");
        assert_eq!(state.streams["s"].status, StreamStatus::Active);
        assert!(matches!(state.apply(&ready(9)), Err(MetaRejection::Invalid(_))));
        let other = command(meta_command::Command::MarkShardReady(MarkShardReady { stream: "t".into(), group_id: 1 }));
        assert_eq!(state.apply(&other), Err(MetaRejection::StreamNotFound("t".into())));
    }

    /// A stream of `count` shards, every shard ready (ACTIVE).
    fn active(name: &str, count: u32) -> MetaState {
        let mut state = MetaState::default();
        state.apply(&create(name, count)).expect("created");
        for group_id in 1..=u64::from(count) {
            let ready = MarkShardReady { stream: name.into(), group_id };
            state.apply(&command(meta_command::Command::MarkShardReady(ready))).expect("ready");
        }
        assert_eq!(state.streams[name].status, StreamStatus::Active);
        state
    }

    fn child(start: u128, end: u128, parents: &[u32]) -> ChildShardSpec {
        ChildShardSpec {
            starting_hash_key: start.to_be_bytes().to_vec().into(),
            ending_hash_key: end.to_be_bytes().to_vec().into(),
            parents: parents.to_vec(),
            replicas: vec![1, 2, 3],
        }
    }

    fn reshard(closing: &[u32], children: Vec<ChildShardSpec>) -> MetaCommand {
        command(meta_command::Command::Reshard(Reshard {
            stream: "s".into(),
            closing: closing.to_vec(),
            children,
            scaling_step: false,
            requested_ms: 100,
        }))
    }

    fn sealed(group_id: u64, seal_index: u64) -> MetaCommand {
        command(meta_command::Command::ShardSealed(ShardSealed {
            stream: "s".into(),
            group_id,
            seal_index,
            sealed_ms: 200,
        }))
    }

    fn ready(group_id: u64) -> MetaCommand {
        command(meta_command::Command::MarkShardReady(MarkShardReady { stream: "s".into(), group_id }))
    }

    #[test]
    fn a_split_closes_the_parent_once_sealed_and_opens_both_children() {
        let mut state = active("s", 2);
        let parent = state.streams["s"].shards[0].clone();
        let middle = parent.ending_hash_key / 2;
        let split = reshard(&[0], vec![child(0, middle, &[0]), child(middle + 1, parent.ending_hash_key, &[0])]);
        state.apply(&split).expect("split");
        let stream = &state.streams["s"];
        assert_eq!(stream.status, StreamStatus::Updating);
        assert_eq!(stream.shards[0].state, ShardState::Sealing);
        assert_eq!(stream.shards[2].state, ShardState::Waiting);
        assert_eq!((stream.shards[2].group_id, stream.shards[3].group_id), (3, 4));
        assert_eq!(stream.shards[3].parents, vec![0]);
        // Until the parent is sealed it takes every write for its range.
        assert_eq!(stream.shard_for_hash(middle + 1).map(|shard| shard.index), Some(0));
        assert_eq!(stream.open_shard_count(), 4);
        assert!(matches!(state.apply(&split), Err(MetaRejection::StreamNotActive { .. })));

        state.apply(&sealed(1, 77)).expect("sealed");
        state.apply(&sealed(1, 77)).expect("a repeated report changes nothing");
        assert!(matches!(state.apply(&sealed(1, 78)), Err(MetaRejection::Invalid(_))));
        let stream = &state.streams["s"];
        assert_eq!(stream.shards[0].state, ShardState::Closed { seal_index: 77 });
        assert_eq!(stream.shard_for_hash(middle + 1).map(|shard| shard.index), Some(3));
        assert_eq!(stream.shard_for_hash(0).map(|shard| shard.index), Some(2));
        assert_eq!(stream.children_of(0).map(|shard| shard.index).collect::<Vec<_>>(), vec![2, 3]);
        // The children take writes now, but the stream is ACTIVE only once they have leaders.
        assert_eq!(stream.status, StreamStatus::Updating);
        state.apply(&ready(3)).expect("ready");
        state.apply(&ready(4)).expect("ready");
        assert_eq!(state.streams["s"].status, StreamStatus::Active);
        assert_eq!(state.streams["s"].open_shard_count(), 3);
    }

    #[test]
    fn a_merge_waits_for_both_parents() {
        let mut state = active("s", 3);
        let shards = state.streams["s"].shards.clone();
        let merge = reshard(&[2, 1], vec![child(shards[1].starting_hash_key, u128::MAX, &[1, 2])]);
        state.apply(&merge).expect("merge");
        state.apply(&sealed(2, 10)).expect("one parent sealed");
        assert_eq!(state.streams["s"].shards[3].state, ShardState::Waiting);
        // The sealed parent's keys wait for the child; the other parent still takes its own.
        assert_eq!(state.streams["s"].shard_for_hash(shards[1].starting_hash_key), None);
        assert_eq!(state.streams["s"].shard_for_hash(u128::MAX).map(|shard| shard.index), Some(2));
        state.apply(&sealed(3, 12)).expect("both sealed");
        assert_eq!(state.streams["s"].shards[3].state, ShardState::Open);
        assert_eq!(state.streams["s"].shard_for_hash(u128::MAX).map(|shard| shard.index), Some(3));
    }

    #[test]
    fn malformed_reshards_change_nothing() {
        let state = active("s", 3);
        let shards = state.streams["s"].shards.clone();
        let (s0, s2) = (&shards[0], &shards[2]);
        let cases = vec![
            ("not adjacent", reshard(&[0, 2], vec![child(0, u128::MAX, &[0, 2])])),
            ("a gap", reshard(&[0], vec![child(0, 5, &[0]), child(7, s0.ending_hash_key, &[0])])),
            ("past the parent", reshard(&[0], vec![child(0, s0.ending_hash_key + 1, &[0])])),
            ("short of the parent", reshard(&[0], vec![child(0, s0.ending_hash_key - 1, &[0])])),
            ("wrong parents", reshard(&[0], vec![child(0, s0.ending_hash_key, &[1])])),
            ("no shard", reshard(&[9], vec![child(0, 1, &[9])])),
            ("twice", reshard(&[2, 2], vec![child(s2.starting_hash_key, u128::MAX, &[2])])),
            ("nothing", reshard(&[], vec![])),
            ("three parents", reshard(&[0, 1, 2], vec![child(0, u128::MAX, &[0, 1, 2])])),
        ];
        for (what, command) in cases {
            let mut changed = state.clone();
            assert!(matches!(changed.apply(&command), Err(MetaRejection::Invalid(_))), "{what}");
            assert_eq!(changed, state, "{what} changed the state");
        }
        let mut other = state.clone();
        let unknown = command(meta_command::Command::Reshard(Reshard {
            stream: "t".into(),
            closing: vec![0],
            children: vec![],
            scaling_step: false,
            requested_ms: 0,
        }));
        assert_eq!(other.apply(&unknown), Err(MetaRejection::StreamNotFound("t".into())));
    }

    #[test]
    fn hash_routing_covers_every_key() {
        let mut state = MetaState::default();
        state.apply(&create("s", 4)).expect("created");
        let stream = &state.streams["s"];
        assert_eq!(stream.shard_for_hash(0).map(|shard| shard.index), Some(0));
        assert_eq!(stream.shard_for_hash(u128::MAX).map(|shard| shard.index), Some(3));
        assert_eq!(stream.shard_for_hash(1u128 << 126).map(|shard| shard.index), Some(1));
        assert_eq!(stream.shard_for_hash((1u128 << 126) - 1).map(|shard| shard.index), Some(0));
    }

    #[test]
    fn a_mode_change_runs_through_updating_and_obeys_its_limits() {
        let mut state = MetaState::default();
        state.apply(&create("s", 2)).expect("created");
        let ready =
            |group_id| command(meta_command::Command::MarkShardReady(MarkShardReady { stream: "s".into(), group_id }));
        state.apply(&ready(1)).expect("ready");
        state.apply(&ready(2)).expect("ready");
        let switch = |on_demand, requested_ms, on_demand_streams_max| {
            command(meta_command::Command::UpdateStreamMode(UpdateStreamMode {
                stream: "s".into(),
                on_demand,
                requested_ms,
                on_demand_streams_max,
            }))
        };
        let complete = command(meta_command::Command::CompleteModeChange(riffle_proto::peer::CompleteModeChange {
            stream: "s".into(),
        }));
        // The mode it has: nothing changes, nothing counts.
        state.apply(&switch(false, 1, 50)).expect("same mode");
        assert_eq!((state.streams["s"].status, state.streams["s"].mode_changes_ms.len()), (StreamStatus::Active, 0));
        // Within the account's on-demand limit only.
        assert!(matches!(state.apply(&switch(true, 1, 0)), Err(MetaRejection::LimitExceeded(_))));
        state.apply(&switch(true, 10, 50)).expect("switched");
        assert_eq!(
            (state.streams["s"].mode, state.streams["s"].status),
            (StreamMode::OnDemand, StreamStatus::Updating)
        );
        assert_eq!(state.on_demand_stream_count(), 1);
        assert!(matches!(state.apply(&switch(false, 11, 50)), Err(MetaRejection::StreamNotActive { .. })));
        state.apply(&complete).expect("completed");
        state.apply(&complete).expect("completing twice changes nothing");
        assert_eq!(state.streams["s"].status, StreamStatus::Active);
        state.apply(&switch(false, 20, 50)).expect("switched back");
        state.apply(&complete).expect("completed");
        // Twice a day.
        assert!(matches!(state.apply(&switch(true, 30, 50)), Err(MetaRejection::LimitExceeded(_))));
        state.apply(&switch(true, 10 + SCALING_WINDOW_MS, 50)).expect("a day after the first switch");
        assert_eq!(state.streams["s"].mode, StreamMode::OnDemand);
    }

    #[test]
    fn an_on_demand_stream_counts_against_the_account_limit_when_created() {
        let mut state = MetaState::default();
        let on_demand = |name: &str, max| {
            let mut created = create(name, 4);
            if let Some(meta_command::Command::CreateStream(create)) = &mut created.command {
                create.on_demand = true;
                create.on_demand_streams_max = max;
            }
            created
        };
        state.apply(&on_demand("a", 1)).expect("created");
        assert_eq!(state.streams["a"].mode, StreamMode::OnDemand);
        assert!(matches!(state.apply(&on_demand("b", 1)), Err(MetaRejection::LimitExceeded(_))));
        state.apply(&create("b", 1)).expect("a provisioned stream does not count");
    }
}
