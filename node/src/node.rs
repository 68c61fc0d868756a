//! A running node: what it holds and how it starts and stops.
//!
//! A record's way through the node, top to bottom: `api/` (gRPC and the Kinesis HTTP API, the
//! stream service) → [`crate::routing`] (find the group's leader, forward to it) → [`crate::shard`]
//! (the shard leader: admission, group commit, reads) → [`crate::raft`] (openraft glue and the
//! shared log) → [`crate::storage`] (segments) → [`crate::fs`]. Beside them, [`crate::control`]
//! runs the metadata group (streams, shards, placement) and keeps the groups hosted here in line
//! with it, and [`crate::transport`] carries everything between nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use openraft::SnapshotPolicy;
use riffle_proto::peer::{peer_request, peer_response, PeerRequest, PeerResponse};
use tokio::sync::watch;

use crate::control::metadata::{MetaState, META_GROUP};
use crate::control::on_demand::OnDemandSettings;
use crate::control::placement::NodePlace;
use crate::raft::codec;
use crate::raft::log_store::{DurableFloor, LogEngine, LogEngineConfig};
use crate::raft::network::GroupNetworkFactory;
use crate::raft::state_machine::{GroupStateMachine, MetaStateMachine};
use crate::raft::types::Raft;
use crate::routing::RouteError;
use crate::seam::Seams;
use crate::shard::admission::ThrottleSettings;
use crate::shard::ShardGroup;
use crate::storage::failstop::FailStop;
use crate::storage::segment::{SegmentStore, SegmentStoreConfig};
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
    /// How ON_DEMAND streams scale, and the account's on-demand stream limit.
    pub on_demand: OnDemandSettings,
    /// Open shards the account's streams may have together (on-demand splits stay within it).
    pub account_shards_max: u32,
    /// How often records are checked for expiry, and how long a retention hour is.
    pub retention: crate::control::retention::RetentionSettings,
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
            on_demand: OnDemandSettings::default(),
            account_shards_max: 500,
            retention: Default::default(),
        }
    }
}

/// Everything a node needs to start, already validated.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub id: NodeId,
    pub zone: String,
    /// The nodes this one knows from its configuration, itself included: a founder lists every
    /// founding node; once the metadata records the cluster's nodes, those count instead.
    pub nodes: Vec<NodePlace>,
    /// This node joins a running cluster (it was admitted through `JoinCluster`): it never
    /// initializes the metadata group and receives it as a learner.
    pub join: bool,
    pub data_dir: PathBuf,
    /// Set when the file-system seam is not the real disk (the simulator): raft-engine lists
    /// directories itself, so file names are mirrored onto the real directory.
    pub mirror_file_names: bool,
    pub raft: RaftTiming,
    pub limits: DataLimits,
    pub segments: SegmentStoreConfig,
    pub log_engine: LogEngineConfig,
}

/// A group hosted on this node.
pub struct Group {
    pub id: u64,
    pub raft: Raft,
    pub shard: Option<ShardGroup>,
    /// Restarted from its own log and not yet heard from a leader: it stays out of elections
    /// meanwhile (see [`Node::rejoin_quietly`]).
    pub(crate) rejoining: std::sync::atomic::AtomicBool,
    /// On a replica that lost its disk: when the loss was found (non-zero) until the group's
    /// leader readmits it; it takes no part in the group meanwhile (see `control::readmission`).
    pub(crate) lost_at: std::sync::atomic::AtomicU64,
    /// After a readmission: the lowest term whose leaders and candidates it listens to.
    pub(crate) term_floor: std::sync::atomic::AtomicU64,
}

impl Group {
    pub(crate) fn new(id: u64, raft: Raft, shard: Option<ShardGroup>) -> Group {
        Group {
            id,
            raft,
            shard,
            rejoining: std::sync::atomic::AtomicBool::new(false),
            lost_at: std::sync::atomic::AtomicU64::new(0),
            term_floor: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A leader's AppendEntries was accepted (or, after a disk loss, the replica was
    /// readmitted): a rejoining replica takes part in elections again.
    /// Whether this replica stays out of elections for now (rejoining after a restart, or
    /// waiting to be readmitted after a disk loss).
    pub fn sits_out_elections(&self) -> bool {
        self.rejoining.load(std::sync::atomic::Ordering::SeqCst) || self.awaiting_readmission()
    }

    pub(crate) fn heard_from_leader(&self) {
        if self.awaiting_readmission() {
            return;
        }
        if self.rejoining.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.raft.runtime_config().elect(true);
        }
    }
}

/// A transport installed after the node is built (the transport needs the node's handler).
#[derive(Default)]
pub(crate) struct LateTransport(OnceLock<Arc<dyn PeerTransport>>);

impl PeerTransport for LateTransport {
    fn call(&self, target: NodeId, request: PeerRequest) -> BoxFuture<'_, Result<PeerResponse, TransportError>> {
        match self.0.get() {
            Some(transport) => transport.call(target, request),
            None => Box::pin(async move {
                Err(TransportError::Unreachable { peer: target, reason: "transport not started".into() })
            }),
        }
    }

    fn learn_peer(&self, peer: NodeId, address: std::net::SocketAddr) {
        if let Some(transport) = self.0.get() {
            transport.learn_peer(peer, address);
        }
    }
}

/// One Riffle node.
pub struct Node {
    pub options: NodeOptions,
    pub seams: Seams,
    pub(crate) logs: Arc<LogEngine>,
    pub(crate) segments: SegmentStore,
    pub(crate) transport: Arc<LateTransport>,
    pub(crate) groups: Mutex<BTreeMap<u64, Arc<Group>>>,
    pub(crate) meta: OnceLock<(Raft, watch::Receiver<Arc<MetaState>>)>,
    pub(crate) raft_config: Arc<openraft::Config>,
    pub(crate) meta_raft_config: Arc<openraft::Config>,
    pub(crate) stopped: std::sync::atomic::AtomicBool,
    /// Turns true with `stopped`: wakes background loops resting between passes.
    pub(crate) stopping: watch::Sender<bool>,
    /// Notified whenever this node starts hosting a group.
    pub(crate) hosted: tokio::sync::Notify,
    /// Held while a shard group is started here or removed with its data, so the two never
    /// interleave (a replica moved back here while its old copy is being removed).
    pub(crate) group_changes: tokio::sync::Mutex<()>,
    /// Streams whose next scaling step this node (as metadata leader) is proposing.
    pub(crate) scaling_in_flight: Mutex<BTreeSet<String>>,
    /// Started on an empty disk in a running cluster, and not caught up yet (see `is_amnesiac`).
    pub(crate) amnesiac: std::sync::atomic::AtomicBool,
    /// On a group leader: when a replica that lost its disk last asked to be readmitted (it is
    /// not made a voter again meanwhile).
    pub(crate) readmissions_asked: Mutex<BTreeMap<(u64, NodeId), i64>>,
    /// On a group leader: the disk loss (`lost_at`) it last readmitted each replica for, to
    /// tell a late copy of an old request from a new loss.
    pub(crate) readmissions_served: Mutex<BTreeMap<(u64, NodeId), u64>>,
    /// The cluster's nodes as the node that admitted this one listed them (see
    /// `Node::learn_members`).
    pub(crate) told_members: Mutex<Vec<NodePlace>>,
    /// When this node found its disk empty in a running cluster (names the loss).
    pub(crate) amnesia_lost_at: std::sync::atomic::AtomicU64,
    /// The metadata log index that, once applied (and its groups started), ends the amnesia:
    /// every group that existed before the disk loss is known then. 0 until learned.
    pub(crate) amnesia_ends_at: std::sync::atomic::AtomicU64,
    /// The latest write load reported for each shard group of an on-demand stream, kept while
    /// this node leads the metadata group.
    pub(crate) shard_loads: Mutex<crate::control::ShardLoads>,
    /// Set once the metadata records this node as removed (decommissioned): the process stops.
    pub(crate) departed: watch::Sender<bool>,
    /// Tripped by the first storage error; the node then stops (see `storage::failstop`).
    pub(crate) failstop: FailStop,
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
        let failstop = FailStop::default();
        let (engine, _fence) = crate::storage::engine_fs::open_engine_with_fence(
            seams.fs.clone(),
            &raft_dir,
            options.mirror_file_names,
            failstop.clone(),
        )
        .map_err(|error| format!("opening the raft log in {}: {error}", raft_dir.display()))?;
        let logs = LogEngine::start(engine, options.log_engine.clone(), seams.executor.as_ref(), failstop.clone());
        let segments_dir = options.data_dir.join("segments");
        let segments = SegmentStore::open_with_failstop(
            seams.fs.clone(),
            segments_dir.clone(),
            options.segments.clone(),
            seams.executor.as_ref(),
            failstop.clone(),
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
            stopping: watch::channel(false).0,
            hosted: tokio::sync::Notify::new(),
            scaling_in_flight: Mutex::new(BTreeSet::new()),
            shard_loads: Mutex::new(Default::default()),
            amnesiac: std::sync::atomic::AtomicBool::new(false),
            amnesia_lost_at: std::sync::atomic::AtomicU64::new(0),
            readmissions_asked: Mutex::new(BTreeMap::new()),
            readmissions_served: Mutex::new(BTreeMap::new()),
            group_changes: tokio::sync::Mutex::new(()),
            told_members: Mutex::new(Vec::new()),
            amnesia_ends_at: std::sync::atomic::AtomicU64::new(0),
            departed: watch::channel(false).0,
            failstop,
        }))
    }

    /// Follows this node's storage-failure latch (`storage::failstop`): it turns `Some` with
    /// the first storage error, after which the node has stopped its groups and its process
    /// should exit; starting it again recovers from what was synced.
    pub fn storage_failure(&self) -> watch::Receiver<Option<String>> {
        self.failstop.subscribe()
    }

    pub fn id(&self) -> NodeId {
        self.options.id
    }

    /// Turns true once this node has been decommissioned and removed from the cluster: it holds
    /// nothing and receives no metadata any more, so its process should stop.
    pub fn departed(&self) -> watch::Receiver<bool> {
        self.departed.subscribe()
    }

    /// Whether this node's disk holds any group (it has been part of a cluster).
    pub fn has_data(&self) -> bool {
        !self.logs.groups().is_empty()
    }

    /// A group restarted from its own log stays out of elections until a leader's AppendEntries
    /// reaches it, or for a grace of two maximal election timeouts if none does (the whole
    /// cluster restarted). Its persisted vote may still name a leader from before, so "a leader
    /// is known" proves nothing; only hearing from one does. Without this, a returning replica
    /// whose peers have not reconnected yet times out, campaigns with ever higher terms, and
    /// deposes the healthy leader as soon as that leader's replication reaches it.
    /// Runs `task` in the background unless a task with the same `key` runs; the key is free
    /// again once the task ends. Background steps that are retried from a periodic pass (scaling,
    /// membership, readmission) use it so that a pass never starts a second one.
    pub(crate) fn spawn_keyed(
        self: &Arc<Self>,
        name: &'static str,
        key: String,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        if !self.scaling_in_flight.lock().expect("scaling lock is not poisoned").insert(key.clone()) {
            return;
        }
        let node = self.clone();
        self.seams.executor.spawn(
            name,
            Box::pin(async move {
                task.await;
                node.scaling_in_flight.lock().expect("scaling lock is not poisoned").remove(&key);
            }),
        );
    }

    pub(crate) fn rejoin_quietly(&self, group: &Arc<Group>) {
        group.rejoining.store(true, std::sync::atomic::Ordering::SeqCst);
        group.raft.runtime_config().elect(false);
        let group = group.clone();
        let grace = std::time::Duration::from_millis(self.options.raft.election_timeout_max_ms * 2);
        self.seams.executor.spawn(
            "rejoin-quietly",
            Box::pin(async move {
                tokio::time::sleep(grace).await;
                group.heard_from_leader();
            }),
        );
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
        // A storage error stops the node at once (see `storage::failstop`); its process exits.
        let mut failure = self.failstop.subscribe();
        let weak = Arc::downgrade(self);
        self.seams.executor.spawn(
            "storage-failstop",
            Box::pin(async move {
                // An error means the latch is gone with the node: nothing to stop.
                if failure.wait_for(Option::is_some).await.is_ok() {
                    if let Some(node) = weak.upgrade() {
                        node.shutdown().await;
                    }
                }
            }),
        );
        // An empty disk is either a new cluster or a node that lost its data: the peers know.
        if let Some(lost_at) = self.stored_amnesia() {
            self.amnesia_lost_at.store(lost_at, std::sync::atomic::Ordering::SeqCst);
            self.amnesiac.store(true, std::sync::atomic::Ordering::SeqCst);
        } else if self.is_amnesiac()
            || (self.logs.groups().is_empty() && !self.options.join && self.peers_know_a_cluster().await)
        {
            tracing::warn!(node = self.id(), "this node's disk is empty but its peers run a cluster: it lost its data, and rejoins every group as a new replica");
            self.record_amnesia(self.seams.clock.now_ms().max(1) as u64).await?;
        }
        // After the amnesia is on disk: this is the first write of a node that lost its disk.
        self.keep_told_members().await?;
        let floor = DurableFloor::new(META_GROUP, self.logs.clone()).map_err(|error| error.to_string())?;
        let (machine, state) =
            MetaStateMachine::open(META_GROUP, self.logs.clone(), floor.clone()).map_err(|error| error.to_string())?;
        let log = self.logs.group_log(META_GROUP, floor).map_err(|error| error.to_string())?;
        let network = GroupNetworkFactory { group: META_GROUP, transport: self.transport.clone() };
        let raft = Raft::new(self.id(), self.meta_raft_config.clone(), network, log, GroupStateMachine::Meta(machine))
            .await
            .map_err(|error| format!("starting the metadata group: {error}"))?;
        let members: BTreeSet<u64> = self.options.nodes.iter().map(|node| node.id).collect();
        // Registered before it is initialized, so that a leader's messages reach it meanwhile.
        let group = Arc::new(Group::new(META_GROUP, raft.clone(), None));
        self.watch_core(&raft, META_GROUP);
        let restarted = raft.is_initialized().await.unwrap_or(false);
        // A joining node's metadata replica is a new, empty member of a running group.
        let fresh = self.is_amnesiac() || (self.options.join && !restarted);
        let lost_before = self.resume_readmission(&group, fresh).await?;
        if restarted && !group.awaiting_readmission() {
            self.rejoin_quietly(&group);
        }
        self.groups.lock().expect("groups lock is not poisoned").insert(META_GROUP, group.clone());
        if !restarted && !self.options.join && !lost_before {
            initialize_group(&raft, members).await;
        }
        if self.meta.set((raft, state.clone())).is_err() {
            return Err("metadata group started twice".to_string());
        }
        self.learn_addresses(&state.borrow());
        // Tell every peer this process started, so that they drop connections to the previous one
        // (a node with an empty disk has greeted them already).
        if !self.logs.groups().is_empty() {
            for peer in self.peer_ids() {
                let node = self.clone();
                self.seams.executor.spawn(
                    "hello",
                    Box::pin(async move {
                        let reply = node.transport.call(peer, hello()).await;
                        if let Ok(PeerResponse { body: Some(peer_response::Body::Hello(reply)) }) = reply {
                            if reply.removed {
                                node.depart();
                            }
                        }
                    }),
                );
            }
        }
        if self.is_amnesiac() {
            let node = self.clone();
            self.seams.executor.spawn("catch-up", Box::pin(async move { node.learn_where_amnesia_ends().await }));
        }
        let node = self.clone();
        self.seams.executor.spawn("reconcile-groups", Box::pin(async move { node.reconcile(state).await }));
        let node = self.clone();
        self.seams.executor.spawn("load-reports", Box::pin(async move { node.report_load().await }));
        let node = self.clone();
        self.seams.executor.spawn("retention", Box::pin(async move { node.enforce_retention().await }));
        Ok(())
    }

    pub(crate) fn peer_ids(&self) -> Vec<NodeId> {
        self.member_ids().into_iter().filter(|id| *id != self.id()).collect()
    }

    /// A joining node whose id the cluster had recorded before: it lost its disk, and rejoins
    /// every group as a new replica (see `control::readmission`). Call before [`Node::start`].
    pub fn rejoins_after_disk_loss(&self) {
        self.amnesiac.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Greets every peer (at most 300 ms each, all at once) and tells whether any of them runs a
    /// cluster this node took part in (see `HelloReply`). Silence is no answer: the greetings are
    /// repeated until a peer says so or, with this node, a majority of the configured nodes has
    /// said it does not — a node that lost its disk while its peers' answers were lost would
    /// otherwise found a second cluster and vote with an empty log (the simulator's seed 711).
    /// Residual hazard: the record of a node's taking part (`NodeStarted`) is proposed once it
    /// has acknowledged the metadata leader's appends, so a node that loses its disk before that
    /// record commits, or whose answering peers have not applied it yet, is taken for a new one.
    async fn peers_know_a_cluster(&self) -> bool {
        let pause = std::time::Duration::from_millis(self.options.raft.heartbeat_interval_ms);
        let configured = self.options.nodes.len();
        loop {
            let greetings = self.peer_ids().into_iter().map(|peer| async move {
                let call = self.transport.call(peer, hello());
                match tokio::time::timeout(std::time::Duration::from_millis(300), call).await {
                    Ok(Ok(PeerResponse { body: Some(peer_response::Body::Hello(reply)) })) => Some(reply.knows_cluster),
                    _ => None,
                }
            });
            let answers = futures::future::join_all(greetings).await;
            if answers.contains(&Some(true)) {
                return true;
            }
            let denials = answers.iter().filter(|answer| **answer == Some(false)).count();
            if (denials + 1) * 2 > configured {
                return false;
            }
            if !self.rest(pause).await {
                return false;
            }
        }
    }

    /// Whether this process started on an empty disk in a running cluster and has not caught up
    /// with the metadata group yet: the groups it starts meanwhile are rejoined as after a disk
    /// loss ([`Node::rejoin_after_disk_loss`]).
    pub(crate) fn is_amnesiac(&self) -> bool {
        self.amnesiac.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// On a node that lost its disk: once a metadata leader has reached it, takes a read index,
    /// so that reconciliation knows when every group that existed before is started. Until
    /// then it asks its peers whether it was removed from the cluster.
    async fn learn_where_amnesia_ends(self: Arc<Self>) {
        let pause = std::time::Duration::from_millis(self.options.raft.heartbeat_interval_ms);
        while !self.is_stopped() {
            let heard = self.group(META_GROUP).is_some_and(|group| !group.awaiting_readmission());
            if heard && self.meta_read().await.is_ok() {
                let applied =
                    self.meta_raft().and_then(|raft| raft.metrics().borrow().last_applied).map_or(0, |id| id.index);
                self.amnesia_ends_at.store(applied.max(1), std::sync::atomic::Ordering::SeqCst);
                return;
            }
            // It may have been decommissioned and removed meanwhile: then no metadata leader
            // ever reaches it, and only its peers can tell it to stop.
            self.ask_whether_removed();
            self.rest(pause).await;
        }
    }

    /// Called by reconciliation after a pass over the metadata applied up to `applied`: the
    /// amnesia ends once that covers the index learned by [`Node::learn_where_amnesia_ends`].
    pub(crate) fn note_reconciled(self: &Arc<Self>, applied: u64) {
        let ends_at = self.amnesia_ends_at.load(std::sync::atomic::Ordering::SeqCst);
        if self.is_amnesiac() && ends_at != 0 && applied >= ends_at {
            tracing::info!(node = self.id(), "caught up after losing its disk; new groups start as usual");
            self.amnesiac.store(false, std::sync::atomic::Ordering::SeqCst);
            self.record_amnesia_ended();
        }
    }

    /// Stops every group. Durability never depends on this running.
    pub async fn shutdown(&self) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stopping.send_replace(true);
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

    /// A group's Raft core that quits on a storage error (a log or state-machine read or write
    /// openraft could not do) serves nothing more: the node fails stop, as for any storage
    /// error, and a restart brings the group back from what was synced.
    ///
    /// It also checks, on every change of the group's Raft metrics, invariants that hold on any
    /// correct replica (in release builds too): its term never goes back, nor does what it
    /// applied, and it never applies beyond what its log or snapshot holds. A broken one fails
    /// the node stop with `invariant broken: ...` (the simulator fails the seed on it).
    pub(crate) fn watch_core(&self, raft: &Raft, group_id: u64) {
        let raft = raft.clone();
        let failstop = self.failstop.clone();
        self.seams.executor.spawn(
            "raft-core-watch",
            Box::pin(async move {
                let mut metrics = raft.metrics();
                let mut seen = ReplicaProgress::default();
                while metrics.changed().await.is_ok() {
                    let now = metrics.borrow_and_update().clone();
                    if let Err(broken) = seen.advance(&now) {
                        failstop.trip(format!("invariant broken in group {group_id}: {broken}"));
                        return;
                    }
                }
                match raft.with_raft_state(|_| ()).await {
                    Err(openraft::error::Fatal::StorageError(error)) => {
                        failstop.trip(format!("the raft core of group {group_id} stopped: {error}"))
                    }
                    Err(openraft::error::Fatal::Panicked) => {
                        failstop.trip(format!("the raft core of group {group_id} panicked"))
                    }
                    // Shut down on purpose (the group moved away, or the node stops).
                    _ => {}
                }
            }),
        );
    }

    /// Waits `duration`, or less if the node stops meanwhile; returns whether it still runs.
    /// Background loops rest with it between passes, so that a stopped node's tasks end (and
    /// release its storage) at once instead of at their next pass.
    pub(crate) async fn rest(&self, duration: std::time::Duration) -> bool {
        let mut stopping = self.stopping.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
        !self.is_stopped()
    }

    /// Whether this node is a voter of the metadata group in its own replica's latest
    /// membership (a joining or departing node is a learner).
    pub(crate) fn is_meta_voter(&self) -> bool {
        self.meta_raft().is_some_and(|raft| {
            raft.metrics().borrow().membership_config.membership().voter_ids().any(|id| id == self.id())
        })
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

    /// The groups this node's raft log holds anything of (hosted or not).
    pub fn stored_groups(&self) -> Vec<u64> {
        self.logs.groups()
    }
}

fn raft_config_for_meta(timing: &RaftTiming) -> Result<Arc<openraft::Config>, String> {
    raft_config(timing, 1_000, "meta")
}

/// Initializes a group whose log is empty; returns whether this call did it.
pub(crate) async fn initialize_group(raft: &Raft, members: BTreeSet<u64>) -> bool {
    match raft.is_initialized().await {
        Ok(true) => false,
        Ok(false) => raft.initialize(members).await.is_ok(),
        Err(_) => false,
    }
}

/// Serves peers: Raft RPCs into the group's Raft, forwarded requests into [`Node::serve`].
struct NodeHandler(std::sync::Weak<Node>);

impl PeerHandler for NodeHandler {
    fn handle(&self, from: NodeId, request: PeerRequest) -> BoxFuture<'_, PeerResponse> {
        Box::pin(async move {
            let body = match self.0.upgrade() {
                Some(node) => handle_peer(&node, from, request).await,
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

async fn handle_peer(node: &Arc<Node>, from: NodeId, request: PeerRequest) -> Result<peer_response::Body, RouteError> {
    let group_id = request.group_id;
    let body = request.body.ok_or_else(|| RouteError::Failed("empty request".into()))?;
    let malformed = |error: codec::CodecError| RouteError::Failed(error.to_string());
    let term = |vote: &Option<riffle_proto::peer::Vote>| {
        vote.as_ref().and_then(|vote| vote.leader_id.as_ref()).map_or(0, |leader| leader.term)
    };
    match body {
        peer_request::Body::AppendEntries(append) => {
            let group = node.group_soon(group_id).await.ok_or(RouteError::NoGroup)?;
            if let Some(refused) = group.refuses(term(&append.vote)) {
                return Err(refused);
            }
            let request = codec::append_request_from_wire(append).map_err(malformed)?;
            let response =
                group.raft.append_entries(request).await.map_err(|error| RouteError::Failed(error.to_string()))?;
            if response.is_success() {
                group.heard_from_leader();
            }
            Ok(peer_response::Body::AppendEntries(codec::append_response_to_wire(&response)))
        }
        peer_request::Body::Vote(vote) => {
            let group = node.group_soon(group_id).await.ok_or(RouteError::NoGroup)?;
            if let Some(refused) = group.refuses(term(&vote.vote)) {
                return Err(refused);
            }
            let request = codec::vote_request_from_wire(vote).map_err(malformed)?;
            let candidate_log = request.last_log_id;
            let response = group.raft.vote(request).await.map_err(|error| RouteError::Failed(error.to_string()))?;
            // This replica's own candidacy refused a candidate with a longer log: it backs off
            // for a while, as openraft does when a vote *response* shows a longer log — which it
            // never sees when that candidate is outside its (stale) configuration, so the two
            // would otherwise outbid each other's terms for ever (seed 433).
            if !response.vote_granted
                && candidate_log > response.last_log_id
                && !response.vote.is_committed()
                && response.vote.leader_id().voted_for() == Some(node.id())
                && !group.sits_out_elections()
            {
                tracing::info!(
                    group = group_id,
                    candidate = from,
                    "refused a candidate with a longer log: sitting out elections for a while"
                );
                node.rejoin_quietly(&group);
            }
            Ok(peer_response::Body::Vote(codec::vote_response_to_wire(&response)))
        }
        peer_request::Body::InstallSnapshot(install) => {
            let group = node.group(group_id).ok_or(RouteError::NoGroup)?;
            if let Some(refused) = group.refuses(term(&install.vote)) {
                return Err(refused);
            }
            let request = codec::install_snapshot_request_from_wire(install).map_err(malformed)?;
            let response =
                group.raft.install_snapshot(request).await.map_err(|error| RouteError::Failed(error.to_string()))?;
            Ok(peer_response::Body::InstallSnapshot(codec::install_snapshot_response_to_wire(&response)))
        }
        peer_request::Body::Readmit(readmit) => {
            let group = node.group(group_id).ok_or(RouteError::NoGroup)?;
            if readmit.replica != from && !readmit.forwarded {
                return Err(RouteError::Failed(format!("node {from} asked to readmit node {}", readmit.replica)));
            }
            node.readmit(group, readmit).await?;
            Ok(peer_response::Body::Done(riffle_proto::peer::Blank {}))
        }
        peer_request::Body::Readmitted(readmitted) => {
            let group = node.group(group_id).ok_or(RouteError::NoGroup)?;
            node.readmitted(&group, readmitted.lost_at, readmitted.term).await?;
            Ok(peer_response::Body::Done(riffle_proto::peer::Blank {}))
        }
        peer_request::Body::Status(_) => Ok(peer_response::Body::Status(node.status_report())),
        peer_request::Body::TakeLeadership(_) => {
            let group = node.group(group_id).ok_or(RouteError::NoGroup)?;
            if group.awaiting_readmission() {
                return Err(RouteError::Failed("this replica is catching up after a disk loss".into()));
            }
            tracing::info!(group = group_id, "taking over leadership");
            group.raft.trigger().elect().await.map_err(|error| RouteError::Failed(error.to_string()))?;
            Ok(peer_response::Body::Status(riffle_proto::peer::NodeReport { node: node.id(), groups: Vec::new() }))
        }
        peer_request::Body::Hello(_) => {
            // A metadata group that has committed an entry: a cluster whose members voted. (At a
            // new cluster's first start peers have initialized but not yet elected anyone.)
            let committed =
                node.meta_raft().and_then(|raft| raft.metrics().borrow().last_applied).is_some_and(|id| id.index >= 1);
            // ... and whose metadata records that the greeting node took part in it: a member
            // that never ran (a founder starting late) is not mistaken for one that lost its disk.
            let started = node.meta_state().nodes.get(&from).is_some_and(|known| known.started);
            let knows_cluster = committed && started && !node.is_amnesiac();
            let removed = node
                .meta_state()
                .nodes
                .get(&from)
                .is_some_and(|known| known.state == crate::control::membership::NodeState::Removed);
            Ok(peer_response::Body::Hello(riffle_proto::peer::HelloReply { knows_cluster, removed }))
        }
        forwarded => node.serve(group_id, forwarded).await,
    }
}

/// What one replica's Raft metrics showed so far, to check that they only move forward.
#[derive(Debug, Default)]
struct ReplicaProgress {
    term: u64,
    applied: u64,
}

impl ReplicaProgress {
    fn advance(&mut self, now: &openraft::RaftMetrics<NodeId, openraft::EmptyNode>) -> Result<(), String> {
        let applied = now.last_applied.map_or(0, |id| id.index);
        if now.current_term < self.term {
            return Err(format!("the term went back from {} to {}", self.term, now.current_term));
        }
        if applied < self.applied {
            return Err(format!("the applied index went back from {} to {applied}", self.applied));
        }
        let held = now.last_log_index.unwrap_or(0).max(now.snapshot.map_or(0, |id| id.index));
        if applied > held {
            return Err(format!("applied {applied} beyond the log's last index and the snapshot ({held})"));
        }
        self.term = now.current_term;
        self.applied = applied;
        Ok(())
    }
}

/// The greeting a node sends every peer when it starts.
pub(crate) fn hello() -> PeerRequest {
    PeerRequest {
        group_id: META_GROUP,
        body: Some(peer_request::Body::Hello(riffle_proto::peer::Blank {})),
        incarnation: 0,
    }
}
