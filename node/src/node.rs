//! A running node: its Raft groups, the peer handler, and routing of appends, reads and
//! metadata commands to the leader of the group that owns them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openraft::error::ClientWriteError;
use openraft::SnapshotPolicy;
use riffle_proto::peer::{
    self as wire, group_command, peer_request, peer_response, AppendBatch, AppendResult, ForwardRead, GroupCommand,
    MetaCommand, PeerRequest, PeerResponse, ReadResult, RecordInput, RemoteError,
};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::api::ApiError;
use crate::meta::{MetaRejection, MetaState, NodePlace, ShardMeta, META_GROUP};
use crate::raft::codec;
use crate::raft::log_store::{DurableFloor, LogEngine, LogEngineConfig};
use crate::raft::network::GroupNetworkFactory;
use crate::raft::state_machine::{GroupStateMachine, MetaStateMachine, ShardStateMachine};
use crate::raft::types::{ApplyResult, Raft};
use crate::seam::Seams;
use crate::storage::segment::{SegmentStore, SegmentStoreConfig, ShardSegments};
use crate::throttle::{ShardThrottle, ThrottleSettings};
use crate::transport::{BoxFuture, NodeId, PeerHandler, PeerTransport, TransportError};

/// Raft timing of every group.
#[derive(Debug, Clone)]
pub struct RaftTiming {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Entries since the last snapshot that trigger a new one (shard groups).
    pub snapshot_interval_entries: u64,
    /// Entries kept in the log behind a snapshot, so a briefly absent follower catches up
    /// from the log instead of a snapshot.
    pub log_kept_behind_snapshot_entries: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval_ms: 200,
            election_timeout_min_ms: 800,
            election_timeout_max_ms: 1_600,
            snapshot_interval_entries: 20_000,
            log_kept_behind_snapshot_entries: 5_000,
        }
    }
}

/// Bounds of the data path.
#[derive(Debug, Clone)]
pub struct DataLimits {
    /// Records group-committed into one log entry at most.
    pub batch_records_max: usize,
    /// Bytes of record data group-committed into one log entry at most (a single larger
    /// request still goes alone).
    pub batch_bytes_max: usize,
    /// Log entries a shard leader has proposed and not yet seen committed, at most.
    pub appends_in_flight_max: usize,
    /// Requests waiting for a shard leader's batcher, at most (back-pressure beyond).
    pub append_queue_depth_max: usize,
    /// How long a request waits for a group to have a leader.
    pub leader_wait_ms: u64,
    /// Attempts to reach a group's leader (following redirects) before giving up.
    pub route_attempts_max: u32,
    /// How long a proposed entry may take to commit before its outcome is reported unknown.
    pub append_timeout_ms: u64,
    /// Per-shard throughput limits, enforced on the shard's leader (off by default).
    pub throttling: ThrottleSettings,
}

impl Default for DataLimits {
    fn default() -> Self {
        DataLimits {
            batch_records_max: 16_384,
            batch_bytes_max: 1 << 20,
            appends_in_flight_max: 8,
            append_queue_depth_max: 4_096,
            leader_wait_ms: 10_000,
            route_attempts_max: 6,
            append_timeout_ms: 30_000,
            throttling: ThrottleSettings::default(),
        }
    }
}

/// Everything a node needs to start, already validated.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub id: NodeId,
    pub zone: String,
    /// Every node of the cluster, this one included.
    pub nodes: Vec<NodePlace>,
    pub data_dir: PathBuf,
    /// Set when the file-system seam is not the real disk (the simulator): raft-engine lists
    /// directories itself, so file names are mirrored onto the real directory.
    pub mirror_file_names: bool,
    pub raft: RaftTiming,
    pub limits: DataLimits,
    pub segments: SegmentStoreConfig,
    pub log_engine: LogEngineConfig,
}

/// An append handed to a shard leader's batcher.
struct AppendRequest {
    records: Vec<RecordInput>,
    bytes: usize,
    respond: oneshot::Sender<Result<AppendResult, RouteError>>,
}

/// A group hosted on this node.
pub struct Group {
    pub id: u64,
    pub raft: Raft,
    pub shard: Option<ShardGroup>,
}

pub struct ShardGroup {
    pub segments: ShardSegments,
    appends: mpsc::Sender<AppendRequest>,
    /// The shard's throughput budgets, used while this node leads it and throttling is on.
    throttle: Mutex<ShardThrottle>,
}

/// Why a routed request failed.
#[derive(Debug, Clone)]
pub enum RouteError {
    /// The node is not the group's leader; the request did not run.
    NotLeader(Option<NodeId>),
    /// The node does not host the group; the request did not run.
    NoGroup,
    /// The request did not run.
    Failed(String),
    /// The request may have run (its outcome was lost).
    Unknown(String),
    /// The shard's leader refused the request over its throughput limit; it did not run and
    /// must not be retried here (the client backs off).
    Throttled,
}

impl RouteError {
    fn to_remote(&self) -> RemoteError {
        match self {
            RouteError::NotLeader(hint) => {
                RemoteError { kind: "NotLeader".into(), message: "not the leader".into(), leader_hint: *hint }
            }
            RouteError::NoGroup => {
                RemoteError { kind: "NoGroup".into(), message: "group not hosted".into(), leader_hint: None }
            }
            RouteError::Failed(message) => {
                RemoteError { kind: "Failed".into(), message: message.clone(), leader_hint: None }
            }
            RouteError::Unknown(message) => {
                RemoteError { kind: "Unknown".into(), message: message.clone(), leader_hint: None }
            }
            RouteError::Throttled => {
                RemoteError { kind: "Throttled".into(), message: "rate exceeded".into(), leader_hint: None }
            }
        }
    }

    fn from_remote(error: RemoteError) -> RouteError {
        match error.kind.as_str() {
            "NotLeader" => RouteError::NotLeader(error.leader_hint),
            "NoGroup" => RouteError::NoGroup,
            "Failed" => RouteError::Failed(error.message),
            "Throttled" => RouteError::Throttled,
            _ => RouteError::Unknown(error.message),
        }
    }
}

/// A transport installed after the node is built (the transport needs the node's handler).
#[derive(Default)]
struct LateTransport(OnceLock<Arc<dyn PeerTransport>>);

impl PeerTransport for LateTransport {
    fn call(&self, target: NodeId, request: PeerRequest) -> BoxFuture<'_, Result<PeerResponse, TransportError>> {
        match self.0.get() {
            Some(transport) => transport.call(target, request),
            None => Box::pin(async move {
                Err(TransportError::Unreachable { peer: target, reason: "transport not started".into() })
            }),
        }
    }
}

/// One Riffle node.
pub struct Node {
    pub options: NodeOptions,
    pub seams: Seams,
    logs: Arc<LogEngine>,
    segments: SegmentStore,
    transport: Arc<LateTransport>,
    groups: Mutex<BTreeMap<u64, Arc<Group>>>,
    meta: OnceLock<(Raft, watch::Receiver<Arc<MetaState>>)>,
    raft_config: Arc<openraft::Config>,
    meta_raft_config: Arc<openraft::Config>,
    stopped: std::sync::atomic::AtomicBool,
    /// Notified whenever this node starts hosting a group.
    hosted: tokio::sync::Notify,
}

fn raft_config(timing: &RaftTiming, snapshot_interval: u64, cluster: &str) -> Result<Arc<openraft::Config>, String> {
    let config = openraft::Config {
        cluster_name: cluster.to_string(),
        heartbeat_interval: timing.heartbeat_interval_ms,
        election_timeout_min: timing.election_timeout_min_ms,
        election_timeout_max: timing.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_interval),
        max_in_snapshot_log_to_keep: timing.log_kept_behind_snapshot_entries,
        // With entries of up to batch_bytes_max (1 MiB; a single PutRecords of up to 5 MiB
        // goes alone), one AppendEntries stays far below the transport's message bound.
        max_payload_entries: 8,
        // A snapshot's last chunk waits for the follower to import it.
        install_snapshot_timeout: 30_000,
        ..Default::default()
    };
    config.validate().map(Arc::new).map_err(|error| format!("raft timing: {error}"))
}

impl Node {
    /// Opens storage. Serves peers (answering "no such group") until [`Node::start`].
    pub fn open(options: NodeOptions, seams: Seams) -> Result<Arc<Node>, String> {
        let raft_dir = options.data_dir.join("raft");
        let engine = crate::storage::engine_fs::open_engine(seams.fs.clone(), &raft_dir, options.mirror_file_names)
            .map_err(|error| format!("opening the raft log in {}: {error}", raft_dir.display()))?;
        let logs = LogEngine::start(engine, options.log_engine.clone(), seams.executor.as_ref());
        let segments_dir = options.data_dir.join("segments");
        let segments = SegmentStore::open(
            seams.fs.clone(),
            segments_dir.clone(),
            options.segments.clone(),
            seams.executor.as_ref(),
        )
        .map_err(|error| format!("opening the segment store in {}: {error}", segments_dir.display()))?;
        let raft_config = raft_config(&options.raft, options.raft.snapshot_interval_entries, "shard")?;
        let meta_raft_config = raft_config_for_meta(&options.raft)?;
        Ok(Arc::new(Node {
            options,
            seams,
            logs,
            segments,
            transport: Arc::new(LateTransport::default()),
            groups: Mutex::new(BTreeMap::new()),
            meta: OnceLock::new(),
            raft_config,
            meta_raft_config,
            stopped: std::sync::atomic::AtomicBool::new(false),
            hosted: tokio::sync::Notify::new(),
        }))
    }

    pub fn id(&self) -> NodeId {
        self.options.id
    }

    /// The handler to install in the peer transport.
    pub fn peer_handler(self: &Arc<Self>) -> Arc<dyn PeerHandler> {
        Arc::new(NodeHandler(Arc::downgrade(self)))
    }

    /// Starts the metadata group and the groups of every shard placed here.
    pub async fn start(self: &Arc<Self>, transport: Arc<dyn PeerTransport>) -> Result<(), String> {
        if self.transport.0.set(transport).is_err() {
            return Err("node started twice".to_string());
        }
        let floor = DurableFloor::new(META_GROUP, self.logs.clone()).map_err(|error| error.to_string())?;
        let (machine, state) =
            MetaStateMachine::open(META_GROUP, self.logs.clone(), floor.clone()).map_err(|error| error.to_string())?;
        let log = self.logs.group_log(META_GROUP, floor).map_err(|error| error.to_string())?;
        let network = GroupNetworkFactory { group: META_GROUP, transport: self.transport.clone() };
        let raft = Raft::new(self.id(), self.meta_raft_config.clone(), network, log, GroupStateMachine::Meta(machine))
            .await
            .map_err(|error| format!("starting the metadata group: {error}"))?;
        let members: BTreeSet<u64> = self.options.nodes.iter().map(|node| node.id).collect();
        initialize_group(&raft, members).await;
        self.groups
            .lock()
            .expect("groups lock is not poisoned")
            .insert(META_GROUP, Arc::new(Group { id: META_GROUP, raft: raft.clone(), shard: None }));
        if self.meta.set((raft, state.clone())).is_err() {
            return Err("metadata group started twice".to_string());
        }
        let node = self.clone();
        self.seams.executor.spawn("reconcile-groups", Box::pin(async move { node.reconcile(state).await }));
        Ok(())
    }

    /// Stops every group. Durability never depends on this running.
    pub async fn shutdown(&self) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        let groups: Vec<Arc<Group>> =
            self.groups.lock().expect("groups lock is not poisoned").values().cloned().collect();
        for group in groups {
            let _ = group.raft.shutdown().await;
        }
    }

    /// The raft-engine instance, to learn when a stopped node has released it.
    pub fn log_engine(&self) -> std::sync::Weak<LogEngine> {
        Arc::downgrade(&self.logs)
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn meta_raft(&self) -> Option<&Raft> {
        self.meta.get().map(|(raft, _)| raft)
    }

    /// The latest metadata this node has applied.
    pub fn meta_state(&self) -> Arc<MetaState> {
        match self.meta.get() {
            Some((_, state)) => state.borrow().clone(),
            None => Arc::new(MetaState::default()),
        }
    }

    /// A receiver of every metadata state this node applies.
    pub fn meta_watch(&self) -> Option<watch::Receiver<Arc<MetaState>>> {
        self.meta.get().map(|(_, state)| state.clone())
    }

    pub fn group(&self, id: u64) -> Option<Arc<Group>> {
        self.groups.lock().expect("groups lock is not poisoned").get(&id).cloned()
    }

    pub fn hosted_groups(&self) -> Vec<u64> {
        self.groups.lock().expect("groups lock is not poisoned").keys().copied().collect()
    }

    async fn reconcile(self: Arc<Self>, mut state: watch::Receiver<Arc<MetaState>>) {
        loop {
            let current = state.borrow_and_update().clone();
            let deleted: BTreeSet<u64> = current.deleted_groups.iter().copied().collect();
            for stream in current.streams.values() {
                for shard in &stream.shards {
                    if shard.replicas.contains(&self.id()) && self.group(shard.group_id).is_none() {
                        if let Err(error) = self.host_shard(&stream.name, shard).await {
                            tracing::error!(group = shard.group_id, %error, "cannot host shard group");
                        }
                    }
                }
            }
            let stored: BTreeSet<u64> = self.logs.groups().into_iter().collect();
            for group_id in deleted {
                let hosted = self.groups.lock().expect("groups lock is not poisoned").remove(&group_id);
                if let Some(group) = &hosted {
                    let _ = group.raft.shutdown().await;
                }
                if hosted.is_some() || stored.contains(&group_id) {
                    if let Err(error) = self.logs.remove_group(group_id).await {
                        tracing::error!(group = group_id, %error, "cannot remove the raft log of a deleted group");
                    }
                    if let Err(error) = self.segments.remove_shard(group_id) {
                        tracing::error!(group = group_id, %error, "cannot remove the segments of a deleted group");
                    }
                }
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    }

    async fn host_shard(self: &Arc<Self>, stream: &str, shard: &ShardMeta) -> Result<(), String> {
        let group_id = shard.group_id;
        let segments = self.segments.shard(group_id).map_err(|error| error.to_string())?;
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let floor = DurableFloor::new(group_id, self.logs.clone()).map_err(|error| error.to_string())?;
        let machine =
            ShardStateMachine::open(group_id, self.logs.clone(), segments.clone(), started.clone(), floor.clone())
                .map_err(|error| error.to_string())?;
        let log = self.logs.group_log(group_id, floor).map_err(|error| error.to_string())?;
        let network = GroupNetworkFactory { group: group_id, transport: self.transport.clone() };
        let raft = Raft::new(self.id(), self.raft_config.clone(), network, log, GroupStateMachine::Shard(machine))
            .await
            .map_err(|error| format!("starting group {group_id}: {error}"))?;
        started.store(true, std::sync::atomic::Ordering::SeqCst);
        let members: BTreeSet<u64> = shard.replicas.iter().copied().collect();
        let fresh = initialize_group(&raft, members).await;
        if fresh && shard.replicas.first() == Some(&self.id()) {
            // The preferred replica campaigns at once, so leaders spread as placement chose.
            let _ = raft.trigger().elect().await;
        }
        let (appends, receiver) = mpsc::channel(self.options.limits.append_queue_depth_max.max(1));
        let batcher = Batcher { raft: raft.clone(), seams: self.seams.clone(), limits: self.options.limits.clone() };
        self.seams.executor.spawn("shard-batcher", Box::pin(batcher.run(receiver)));
        let throttle = Mutex::new(ShardThrottle::new(&self.options.limits.throttling, self.seams.clock.now_ms()));
        if !shard.ready {
            let reporter = self.clone().report_ready(stream.to_string(), group_id, raft.clone());
            self.seams.executor.spawn("shard-ready", Box::pin(reporter));
        }
        let group = Group { id: group_id, raft, shard: Some(ShardGroup { segments, appends, throttle }) };
        self.groups.lock().expect("groups lock is not poisoned").insert(group_id, Arc::new(group));
        self.hosted.notify_waiters();
        Ok(())
    }

    /// Reports a new shard's group as serving once this node leads it, so the metadata group
    /// can turn the stream ACTIVE: the status every node reports is then the replicated one.
    /// Ends when the metadata records the shard as ready (whoever reported it), when the
    /// stream is gone, or when the group or the node stops.
    async fn report_ready(self: Arc<Self>, stream: String, group_id: u64, raft: Raft) {
        const RETRY_PAUSE_MAX_MS: u64 = 2_000;
        let Some(mut meta) = self.meta_watch() else { return };
        let mut metrics = raft.metrics();
        let mut failures: u64 = 0;
        loop {
            let needed = meta
                .borrow_and_update()
                .streams
                .get(&stream)
                .and_then(|known| known.shards.iter().find(|shard| shard.group_id == group_id))
                .is_some_and(|shard| !shard.ready);
            if !needed || self.is_stopped() {
                return;
            }
            let leading = metrics.borrow_and_update().current_leader == Some(self.id());
            if !leading {
                tokio::select! {
                    changed = metrics.changed() => if changed.is_err() { return },
                    changed = meta.changed() => if changed.is_err() { return },
                }
                continue;
            }
            let command = MetaCommand {
                command: Some(wire::meta_command::Command::MarkShardReady(wire::MarkShardReady {
                    stream: stream.clone(),
                    group_id,
                })),
            };
            match self.propose_meta(command).await {
                // Recorded, or refused because the stream is gone: nothing left to report.
                Ok(_) => return,
                Err(error) => {
                    failures += 1;
                    let pause = (self.options.raft.heartbeat_interval_ms * failures).min(RETRY_PAUSE_MAX_MS);
                    tracing::debug!(group = group_id, %error, "cannot report the shard ready yet; retrying");
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }
    }

    /// The group, waiting (bounded) for it if the metadata places it here but this node has
    /// not started it yet — peers of a new stream reach out as soon as they start theirs.
    async fn group_soon(&self, group_id: u64) -> Option<Arc<Group>> {
        const GROUP_START_WAIT_MS: u64 = 2_000;
        let wait = async {
            loop {
                let started = self.hosted.notified();
                if let Some(group) = self.group(group_id) {
                    return Some(group);
                }
                let placed_here = self.meta_state().streams.values().any(|stream| {
                    stream.shards.iter().any(|shard| shard.group_id == group_id && shard.replicas.contains(&self.id()))
                });
                if !placed_here {
                    return None;
                }
                started.await;
            }
        };
        tokio::time::timeout(Duration::from_millis(GROUP_START_WAIT_MS), wait).await.ok().flatten()
    }

    /// The leader of `group` as this node knows it, waiting (bounded) for one to be elected.
    async fn leader_of(&self, group: &Group) -> Option<NodeId> {
        let wait = Duration::from_millis(self.options.limits.leader_wait_ms);
        let metrics = group
            .raft
            .wait(Some(wait))
            .metrics(|metrics| metrics.current_leader.is_some(), "a leader is known")
            .await
            .ok()?;
        metrics.current_leader
    }

    /// Sends `body` for `group` to its leader, following redirects. A request that may have
    /// run is retried only when `idempotent`; otherwise its unknown outcome is returned.
    async fn route(
        &self,
        group_id: u64,
        replicas: &[NodeId],
        body: peer_request::Body,
        idempotent: bool,
    ) -> Result<peer_response::Body, RouteError> {
        let mut last_error = RouteError::NoGroup;
        let mut hint: Option<NodeId> = None;
        let mut next_replica = 0usize;
        for attempt in 0..self.options.limits.route_attempts_max {
            if self.is_stopped() {
                return Err(RouteError::Failed("the node is stopping".into()));
            }
            let target = match hint.take() {
                Some(target) => target,
                None => match self.group(group_id) {
                    Some(group) => match self.leader_of(&group).await {
                        Some(leader) => leader,
                        None => return Err(RouteError::Failed(format!("group {group_id} has no leader"))),
                    },
                    None => {
                        let Some(target) = replicas.get(next_replica % replicas.len().max(1)).copied() else {
                            return Err(RouteError::NoGroup);
                        };
                        next_replica += 1;
                        target
                    }
                },
            };
            let outcome = if target == self.id() {
                self.serve(group_id, body.clone()).await
            } else {
                self.forward(group_id, target, body.clone()).await
            };
            match outcome {
                Ok(body) => return Ok(body),
                Err(RouteError::NotLeader(leader)) => {
                    hint = leader.filter(|leader| *leader != target);
                    last_error = RouteError::NotLeader(leader);
                    if hint.is_none() {
                        // Let an election finish before asking again.
                        let pause = self.options.raft.heartbeat_interval_ms * u64::from(attempt + 1);
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                }
                Err(RouteError::Failed(message)) if message.starts_with(REJECTED) => {
                    return Err(RouteError::Failed(message));
                }
                Err(RouteError::Throttled) => return Err(RouteError::Throttled),
                Err(RouteError::Unknown(message)) if !idempotent => return Err(RouteError::Unknown(message)),
                Err(error) => {
                    last_error = error;
                    let pause = self.options.raft.heartbeat_interval_ms * u64::from(attempt + 1);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }
        Err(last_error)
    }

    /// Sends a forwarded request to `target`. If this node hosts the group and sees `target`
    /// lose leadership meanwhile (it crashed or was partitioned), it stops waiting at once: the
    /// outcome is then unknown, but the caller learns it in an election's time instead of a
    /// transport timeout.
    async fn forward(
        &self,
        group_id: u64,
        target: NodeId,
        body: peer_request::Body,
    ) -> Result<peer_response::Body, RouteError> {
        let request = PeerRequest { group_id, body: Some(body) };
        let call = self.transport.call(target, request);
        // Checked once per heartbeat interval: metrics change on every apply, and waking every
        // forwarded request on each would cost more than the requests themselves.
        let leader_lost = async {
            let Some(group) = self.group(group_id) else { return std::future::pending::<Option<NodeId>>().await };
            let metrics = group.raft.metrics();
            let period = Duration::from_millis(self.options.raft.heartbeat_interval_ms);
            loop {
                tokio::time::sleep(period).await;
                let leader = metrics.borrow().current_leader;
                if leader != Some(target) {
                    return leader;
                }
            }
        };
        let outcome = tokio::select! {
            biased;
            outcome = call => outcome,
            leader = leader_lost => {
                return Err(RouteError::Unknown(format!(
                    "node {target} stopped leading group {group_id} (leader now {leader:?}) while the request was in flight"
                )));
            }
        };
        match outcome {
            Ok(PeerResponse { body: Some(peer_response::Body::Error(error)) }) => Err(RouteError::from_remote(error)),
            Ok(PeerResponse { body: Some(body) }) => Ok(body),
            Ok(PeerResponse { body: None }) => Err(RouteError::Unknown(format!("node {target} sent an empty answer"))),
            Err(error) if error.certainly_not_delivered() => Err(RouteError::Failed(error.to_string())),
            Err(error) => Err(RouteError::Unknown(error.to_string())),
        }
    }

    /// Appends `records` to a shard, acknowledged once committed.
    pub async fn append(&self, shard: &ShardMeta, records: Vec<RecordInput>) -> Result<AppendResult, ApiError> {
        let body = peer_request::Body::ForwardAppend(wire::ForwardAppend { records });
        match self.route(shard.group_id, &shard.replicas, body, false).await {
            Ok(peer_response::Body::Append(result)) => Ok(result),
            Ok(_) => Err(ApiError::Internal("a node answered an append with another message".into())),
            Err(error) => Err(route_failure(shard, error)),
        }
    }

    /// Reads a shard at its leader.
    pub async fn read(&self, shard: &ShardMeta, read: ForwardRead) -> Result<ReadResult, ApiError> {
        match self.route(shard.group_id, &shard.replicas, peer_request::Body::ForwardRead(read), true).await {
            Ok(peer_response::Body::Read(result)) => Ok(result),
            Ok(_) => Err(ApiError::Internal("a node answered a read with another message".into())),
            Err(error) => Err(route_failure(shard, error)),
        }
    }

    /// Runs a metadata command through the metadata group. The outer error is a failure to
    /// reach the group; the inner one is the state machine's refusal.
    ///
    /// On success the command is committed and applied on this node too, so anything this node
    /// answers afterwards reflects it (a client reads its own writes through the node it wrote
    /// through; through other nodes, [`Node::meta_read`] gives the same).
    pub async fn propose_meta(&self, command: MetaCommand) -> Result<Result<(), MetaRejection>, ApiError> {
        let replicas: Vec<NodeId> = self.options.nodes.iter().map(|node| node.id).collect();
        let applied_index = match self
            .route(META_GROUP, &replicas, peer_request::Body::ForwardMeta(command), false)
            .await
        {
            Ok(peer_response::Body::Meta(result)) => result.log_index,
            Ok(_) => return Err(ApiError::Internal("a node answered a metadata command with another message".into())),
            Err(RouteError::Failed(message)) if message.starts_with(REJECTED) => {
                return serde_json::from_str::<MetaRejection>(&message[REJECTED.len()..])
                    .map(Err)
                    .map_err(|_| ApiError::Internal(message.clone()));
            }
            Err(error) => return Err(ApiError::Internal(format!("the metadata group is unavailable: {error:?}"))),
        };
        self.wait_meta_applied(applied_index).await.map_err(|error| {
            ApiError::Internal(format!("the change is committed but this node has not applied it yet: {error}"))
        })?;
        Ok(Ok(()))
    }

    /// The metadata as of now: every change committed before this call (by any node) is in it.
    ///
    /// A read index: the metadata leader confirms its leadership with a quorum and names its
    /// commit index; this node waits until it has applied that far, then reads locally. Reads
    /// are therefore linearizable, and in particular see every change acknowledged to any client
    /// before they began.
    pub async fn meta_read(&self) -> Result<Arc<MetaState>, ApiError> {
        let replicas: Vec<NodeId> = self.options.nodes.iter().map(|node| node.id).collect();
        let body = peer_request::Body::MetaBarrier(wire::Blank {});
        let index = match self.route(META_GROUP, &replicas, body, true).await {
            Ok(peer_response::Body::MetaBarrierIndex(index)) => index,
            Ok(_) => return Err(ApiError::Internal("a node answered a metadata barrier with another message".into())),
            Err(error) => return Err(ApiError::Internal(format!("the metadata group is unavailable: {error:?}"))),
        };
        self.wait_meta_applied(index)
            .await
            .map_err(|error| ApiError::Internal(format!("the metadata did not catch up: {error}")))?;
        Ok(self.meta_state())
    }

    /// Waits (at most `leader_wait_ms`) until this node has applied the metadata log up to `index`.
    async fn wait_meta_applied(&self, index: u64) -> Result<(), String> {
        let raft = self.meta_raft().ok_or_else(|| "the node is starting".to_string())?;
        let wait = Duration::from_millis(self.options.limits.leader_wait_ms);
        raft.wait(Some(wait))
            .applied_index_at_least(Some(index), "metadata applied up to an index")
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    /// Whether the shard's throughput budget admits a request (always, with throttling off).
    fn admit(&self, shard: &ShardGroup, take: impl FnOnce(&mut ShardThrottle, i64) -> bool) -> bool {
        if !self.options.limits.throttling.enabled {
            return true;
        }
        let now = self.seams.clock.now_ms();
        take(&mut shard.throttle.lock().expect("throttle lock is not poisoned"), now)
    }

    /// Serves a forwarded request for a group hosted here.
    async fn serve(&self, group_id: u64, body: peer_request::Body) -> Result<peer_response::Body, RouteError> {
        let group = self.group(group_id).ok_or(RouteError::NoGroup)?;
        match body {
            peer_request::Body::ForwardAppend(append) => {
                let shard = group.shard.as_ref().ok_or(RouteError::NoGroup)?;
                let metrics = group.raft.metrics().borrow().clone();
                if metrics.current_leader != Some(self.id()) {
                    return Err(RouteError::NotLeader(metrics.current_leader));
                }
                let bytes = append.records.iter().map(|record| record.data.len() + record.partition_key.len()).sum();
                if !self
                    .admit(shard, |throttle, now| throttle.admit_write(now, append.records.len() as u64, bytes as u64))
                {
                    return Err(RouteError::Throttled);
                }
                let (respond, response) = oneshot::channel();
                let request = AppendRequest { records: append.records, bytes, respond };
                shard.appends.send(request).await.map_err(|_| RouteError::Failed("the shard is closing".into()))?;
                let result =
                    response.await.map_err(|_| RouteError::Unknown("the shard closed during the append".into()))??;
                Ok(peer_response::Body::Append(result))
            }
            peer_request::Body::ForwardRead(read) => {
                let shard = group.shard.as_ref().ok_or(RouteError::NoGroup)?;
                if let Err(error) = group.raft.ensure_linearizable().await {
                    return Err(match error.forward_to_leader() {
                        Some(forward) => RouteError::NotLeader(forward.leader_id),
                        None => RouteError::Failed(error.to_string()),
                    });
                }
                // A read of no records (GetShardIterator LATEST) is not a GetRecords call.
                if read.limit > 0 && !self.admit(shard, |throttle, now| throttle.admit_get_records(now)) {
                    return Err(RouteError::Throttled);
                }
                read_shard(&shard.segments, read).map(peer_response::Body::Read)
            }
            peer_request::Body::ForwardMeta(command) => {
                let write = GroupCommand { command: Some(group_command::Command::Meta(command)) };
                let timeout = Duration::from_millis(self.options.limits.append_timeout_ms);
                let Ok(outcome) = tokio::time::timeout(timeout, group.raft.client_write(write)).await else {
                    return Err(RouteError::Unknown("the metadata command did not commit in time".into()));
                };
                match outcome {
                    Ok(response) => match response.data {
                        ApplyResult::Meta(Ok(())) => {
                            Ok(peer_response::Body::Meta(wire::MetaResult { log_index: response.log_id.index }))
                        }
                        ApplyResult::Meta(Err(rejection)) => Err(RouteError::Failed(encode_rejection(&rejection))),
                        other => Err(RouteError::Unknown(format!("unexpected result {other:?}"))),
                    },
                    Err(error) => Err(match error.forward_to_leader() {
                        Some(forward) => RouteError::NotLeader(forward.leader_id),
                        None => RouteError::Unknown(error.to_string()),
                    }),
                }
            }
            peer_request::Body::MetaBarrier(_) => match group.raft.ensure_linearizable().await {
                Ok(read) => Ok(peer_response::Body::MetaBarrierIndex(read.map_or(0, |log_id| log_id.index))),
                Err(error) => Err(match error.forward_to_leader() {
                    Some(forward) => RouteError::NotLeader(forward.leader_id),
                    None => RouteError::Failed(error.to_string()),
                }),
            },
            _ => Err(RouteError::Failed("not a forwarded request".into())),
        }
    }
}

fn raft_config_for_meta(timing: &RaftTiming) -> Result<Arc<openraft::Config>, String> {
    raft_config(timing, 1_000, "meta")
}

/// Initializes a group whose log is empty; returns whether this call did it.
async fn initialize_group(raft: &Raft, members: BTreeSet<u64>) -> bool {
    match raft.is_initialized().await {
        Ok(true) => false,
        Ok(false) => raft.initialize(members).await.is_ok(),
        Err(_) => false,
    }
}

fn route_failure(shard: &ShardMeta, error: RouteError) -> ApiError {
    match error {
        RouteError::NotLeader(_) => ApiError::Internal(format!("shard {} has no reachable leader; retry", shard.index)),
        RouteError::NoGroup => ApiError::Internal(format!("shard {} is not hosted yet; retry", shard.index)),
        RouteError::Failed(message) => ApiError::Internal(format!("shard {}: {message}", shard.index)),
        RouteError::Unknown(message) => ApiError::Internal(format!(
            "shard {}: the outcome is unknown ({message}); the record may have been stored",
            shard.index
        )),
        // The service, which knows the stream and account, words the message as Kinesis does.
        RouteError::Throttled => ApiError::ProvisionedThroughputExceeded(format!(
            "Rate exceeded for shard {}.",
            crate::keys::shard_id(shard.index)
        )),
    }
}

const REJECTED: &str = "rejected: ";

fn encode_rejection(rejection: &MetaRejection) -> String {
    format!("{REJECTED}{}", serde_json::to_string(rejection).unwrap_or_else(|_| format!("{rejection:?}")))
}

/// Reads from a shard's segments on its leader.
fn read_shard(segments: &ShardSegments, read: ForwardRead) -> Result<ReadResult, RouteError> {
    use wire::forward_read::Start;
    let end = segments.end_sequence();
    let start = match read.start {
        Some(Start::AtSequence(sequence)) => sequence,
        Some(Start::AtTimestampMs(timestamp)) => segments.sequence_at_timestamp(timestamp),
        Some(Start::Latest(_)) => end,
        Some(Start::TrimHorizon(_)) | None => segments.first_sequence(),
    };
    if read.limit == 0 {
        return Ok(ReadResult { records: Vec::new(), next_sequence: start, millis_behind_latest: 0 });
    }
    let outcome = segments
        .read(start, read.limit as usize, read.bytes_max as usize)
        .map_err(|error| RouteError::Failed(format!("reading shard: {error}")))?;
    let millis_behind_latest = match (outcome.records.last(), segments.last_timestamp_ms()) {
        (Some(last), Some(latest)) if outcome.next_sequence < end => (latest - last.timestamp_ms).max(0),
        _ => 0,
    };
    Ok(ReadResult { records: outcome.records, next_sequence: outcome.next_sequence.max(start), millis_behind_latest })
}

/// Group-commits appends on a shard leader: everything queued becomes one log entry.
struct Batcher {
    raft: Raft,
    seams: Seams,
    limits: DataLimits,
}

impl Batcher {
    async fn run(self, mut receiver: mpsc::Receiver<AppendRequest>) {
        let in_flight = Arc::new(Semaphore::new(self.limits.appends_in_flight_max.max(1)));
        let records_max = self.limits.batch_records_max.min(crate::keys::BATCH_RECORDS_MAX - 1);
        let mut carried: Option<AppendRequest> = None;
        loop {
            let first = match carried.take() {
                Some(request) => request,
                None => match receiver.recv().await {
                    Some(request) => request,
                    None => return,
                },
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
            let mut records_count = first.records.len();
            let mut bytes = first.bytes;
            let mut requests = vec![first];
            while records_count < records_max && bytes < self.limits.batch_bytes_max {
                match receiver.try_recv() {
                    Ok(request) => {
                        if records_count + request.records.len() > records_max
                            || bytes + request.bytes > self.limits.batch_bytes_max
                        {
                            carried = Some(request);
                            break;
                        }
                        records_count += request.records.len();
                        bytes += request.bytes;
                        requests.push(request);
                    }
                    Err(_) => break,
                }
            }
            let mut records = Vec::with_capacity(records_count);
            let mut waiters = Vec::with_capacity(requests.len());
            for request in requests {
                waiters.push((records.len() as u32, request.respond));
                records.extend(request.records);
            }
            let batch = AppendBatch { timestamp_ms: self.seams.clock.now_ms(), records };
            let command = GroupCommand { command: Some(group_command::Command::Append(batch)) };
            // Proposed here, in order, so batches take log indexes in the order they were
            // formed; only the wait for the commit runs concurrently.
            let submitted = self.raft.client_write_ff(command).await;
            let timeout = Duration::from_millis(self.limits.append_timeout_ms);
            self.seams.executor.spawn(
                "shard-append",
                Box::pin(async move {
                    let result = match submitted {
                        Err(fatal) => Err(RouteError::Failed(format!("the shard's Raft stopped: {fatal}"))),
                        Ok(receiver) => match tokio::time::timeout(timeout, receiver).await {
                            Ok(Ok(Ok(response))) => match response.data {
                                ApplyResult::Appended { log_index, timestamp_ms } => Ok((log_index, timestamp_ms)),
                                other => Err(RouteError::Unknown(format!("unexpected apply result {other:?}"))),
                            },
                            // ForwardToLeader means the entry was not appended here, or was
                            // truncated as conflicting (so never committed): it did not happen.
                            Ok(Ok(Err(ClientWriteError::ForwardToLeader(forward)))) => {
                                Err(RouteError::NotLeader(forward.leader_id))
                            }
                            Ok(Ok(Err(error))) => Err(RouteError::Unknown(error.to_string())),
                            Ok(Err(_)) => Err(RouteError::Unknown("the shard's Raft stopped before answering".into())),
                            Err(_) => Err(RouteError::Unknown(format!(
                                "no commit within {} ms (append_timeout_ms)",
                                timeout.as_millis()
                            ))),
                        },
                    };
                    drop(permit);
                    for (first_position, respond) in waiters {
                        let answer = result.clone().map(|(log_index, timestamp_ms)| AppendResult {
                            log_index,
                            first_position,
                            timestamp_ms,
                        });
                        let _ = respond.send(answer);
                    }
                }),
            );
        }
    }
}

/// Serves peers: Raft RPCs into the group's Raft, forwarded requests into [`Node::serve`].
struct NodeHandler(std::sync::Weak<Node>);

impl PeerHandler for NodeHandler {
    fn handle(&self, _from: NodeId, request: PeerRequest) -> BoxFuture<'_, PeerResponse> {
        Box::pin(async move {
            let body = match self.0.upgrade() {
                Some(node) => handle_peer(&node, request).await,
                None => Err(RouteError::Failed("node is stopping".into())),
            };
            PeerResponse {
                body: Some(match body {
                    Ok(body) => body,
                    Err(error) => peer_response::Body::Error(error.to_remote()),
                }),
            }
        })
    }
}

async fn handle_peer(node: &Arc<Node>, request: PeerRequest) -> Result<peer_response::Body, RouteError> {
    let group_id = request.group_id;
    let body = request.body.ok_or_else(|| RouteError::Failed("empty request".into()))?;
    let malformed = |error: codec::CodecError| RouteError::Failed(error.to_string());
    match body {
        peer_request::Body::AppendEntries(append) => {
            let group = node.group_soon(group_id).await.ok_or(RouteError::NoGroup)?;
            let request = codec::append_request_from_wire(append).map_err(malformed)?;
            let response =
                group.raft.append_entries(request).await.map_err(|error| RouteError::Failed(error.to_string()))?;
            Ok(peer_response::Body::AppendEntries(codec::append_response_to_wire(&response)))
        }
        peer_request::Body::Vote(vote) => {
            let group = node.group_soon(group_id).await.ok_or(RouteError::NoGroup)?;
            let request = codec::vote_request_from_wire(vote).map_err(malformed)?;
            let response = group.raft.vote(request).await.map_err(|error| RouteError::Failed(error.to_string()))?;
            Ok(peer_response::Body::Vote(codec::vote_response_to_wire(&response)))
        }
        peer_request::Body::InstallSnapshot(install) => {
            let group = node.group(group_id).ok_or(RouteError::NoGroup)?;
            let request = codec::install_snapshot_request_from_wire(install).map_err(malformed)?;
            let response =
                group.raft.install_snapshot(request).await.map_err(|error| RouteError::Failed(error.to_string()))?;
            Ok(peer_response::Body::InstallSnapshot(codec::install_snapshot_response_to_wire(&response)))
        }
        forwarded => node.serve(group_id, forwarded).await,
    }
}
