//! What a node does about membership (see [`crate::control::membership`] for the rules): the
//! metadata leader records the founders, admits joining nodes into the metadata group, keeps
//! its voters one per zone, starts replica moves and removes drained nodes; a shard's leader
//! carries out a move of one of its replicas; a node drops a replica it no longer holds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use riffle_proto::peer::{self as wire, meta_command, MetaCommand, NodeInfo};

use crate::api::ApiError;
use crate::control::membership::{
    next_meta_membership_step, plan_moves, plan_preferred_leaders, MetaMembershipStep, NodeMeta, NodeState,
    REPLICATION_FACTOR,
};
use crate::control::metadata::{MetaRejection, MetaState, ReplicaMove, META_GROUP};
use crate::control::placement::NodePlace;
use crate::control::readmission::{ensure_leads_as_voter, leads_as_voter};
use crate::node::{Group, Node};
use crate::raft::types::Raft;
use crate::transport::{NodeId, PeerTransport, TransportError};

/// The metadata group's key under which a joined node keeps the nodes it was told of.
const TOLD_MEMBERS_KEY: &[u8] = b"told-members";

/// Replica moves running at once across the cluster, at most: each copies a shard's data to a
/// new node, so a few at a time keep the foreground traffic unharmed.
const MOVES_IN_FLIGHT_MAX: usize = 2;
/// Preferred-leader changes proposed per pass, at most (each leads to one handoff).
const PREFERENCE_CHANGES_MAX: usize = 4;
/// Entries a metadata learner may lag behind and still be made a voter.
const META_LEARNER_LAG_MAX: u64 = 16;
/// How long a handoff waits for in-flight appends to commit and the new leader to catch up.
const HANDOFF_PAUSE_MAX: Duration = Duration::from_secs(1);
/// How long an admission waits for the new node to answer over the peer transport.
const ADMISSION_HELLO_WAIT: Duration = Duration::from_secs(3);

impl Node {
    /// Every node of the cluster that is not removed: the metadata's nodes once recorded, the
    /// configured ones before.
    pub fn cluster_nodes(&self) -> Vec<NodePlace> {
        self.nodes_where(|state| state != NodeState::Removed)
    }

    /// Nodes that take new replicas.
    pub fn placement_nodes(&self) -> Vec<NodePlace> {
        self.nodes_where(|state| state == NodeState::Active)
    }

    fn nodes_where(&self, keep: impl Fn(NodeState) -> bool) -> Vec<NodePlace> {
        let state = self.meta_state();
        if state.nodes.is_empty() {
            let told = self.told_members.lock().expect("lock is not poisoned").clone();
            return if told.is_empty() { self.options.nodes.clone() } else { told };
        }
        state.nodes.values().filter(|node| keep(node.state)).map(NodeMeta::place).collect()
    }

    /// Replicas for `count` new shards over the active nodes, one per zone (see
    /// [`crate::control::placement::place_replicas`]).
    pub fn place_new_shards(&self, count: u32, offset: u64) -> Result<Vec<Vec<u64>>, String> {
        let nodes = self.placement_nodes();
        crate::control::placement::place_replicas(&nodes, count, REPLICATION_FACTOR.min(nodes.len()), offset)
    }

    /// The ids of [`Node::cluster_nodes`].
    pub(crate) fn member_ids(&self) -> Vec<NodeId> {
        self.cluster_nodes().iter().map(|place| place.id).collect()
    }

    /// A joining node: the cluster's nodes as the node that admitted it listed them, known
    /// before its own metadata replica has caught up (so that it can ask to be admitted into the
    /// metadata group). Call before [`Node::start`].
    pub fn learn_members(&self, nodes: Vec<NodePlace>) {
        *self.told_members.lock().expect("lock is not poisoned") = nodes;
    }

    /// Keeps on disk the nodes a joining node was told of, or — on a restart, when it was told
    /// nothing this time — takes them from there: a joined node whose metadata replica has not
    /// caught up yet knows the cluster only from them (it must reach the metadata group's
    /// leader to catch up, or to be readmitted after a disk loss).
    pub(crate) async fn keep_told_members(&self) -> Result<(), String> {
        let told = self.told_members.lock().expect("lock is not poisoned").clone();
        if told.is_empty() {
            let stored = self.logs.get(META_GROUP, TOLD_MEMBERS_KEY);
            if let Some(nodes) = stored.and_then(|bytes| serde_json::from_slice::<Vec<NodePlace>>(&bytes).ok()) {
                self.learn_addresses_of(&nodes);
                *self.told_members.lock().expect("lock is not poisoned") = nodes;
            }
            return Ok(());
        }
        let bytes = serde_json::to_vec(&told).map_err(|error| error.to_string())?;
        self.logs.put_durable(META_GROUP, TOLD_MEMBERS_KEY, bytes).await
    }

    fn learn_addresses_of(&self, nodes: &[NodePlace]) {
        for node in nodes.iter().filter(|node| node.id != self.id()) {
            if let Ok(address) = node.peer_address.parse() {
                self.transport.learn_peer(node.id, address);
            }
        }
    }

    /// Tells the transport where every recorded node is.
    pub(crate) fn learn_addresses(&self, state: &MetaState) {
        for node in state.nodes.values().filter(|node| node.state != NodeState::Removed) {
            if let Ok(address) = node.peer_address.parse() {
                self.transport.learn_peer(node.id, address);
            }
        }
    }

    /// Admits a node (`JoinCluster`): reaches it over the peer transport first (its certificate
    /// must be the cluster's, for this id), then records it. Returns the cluster's nodes.
    pub async fn admit_node(&self, info: NodeInfo) -> Result<(Vec<NodeMeta>, bool), ApiError> {
        let address: std::net::SocketAddr = info
            .peer_address
            .parse()
            .map_err(|_| ApiError::InvalidArgument(format!("peer address {:?} is not HOST:PORT", info.peer_address)))?;
        if info.id == self.id() {
            return Err(ApiError::InvalidArgument(format!("node {} is this node", info.id)));
        }
        self.transport.learn_peer(info.id, address);
        let hello = self.transport.call(info.id, crate::node::hello());
        match tokio::time::timeout(ADMISSION_HELLO_WAIT, hello).await {
            Ok(Ok(_)) => {}
            // Reached, but the exchange broke on the way: nothing wrong with the node itself.
            Ok(Err(error @ (TransportError::Lost { .. } | TransportError::Timeout { .. }))) => {
                return Err(ApiError::Internal(format!(
                    "the greeting to node {} was lost ({error}); retry in a moment",
                    info.id
                )))
            }
            Ok(Err(error)) => {
                return Err(ApiError::InvalidArgument(format!(
                    "node {} at {address} cannot be reached over the peer transport with the cluster's certificates: {error}",
                    info.id
                )))
            }
            Err(_) => {
                return Err(ApiError::InvalidArgument(format!(
                    "node {} at {address} did not answer over the peer transport",
                    info.id
                )))
            }
        }
        let id = info.id;
        let known = self.meta_read().await?;
        if known.nodes.is_empty() {
            // The first metadata leader records the founders soon after the cluster starts.
            return Err(ApiError::Internal(
                "the cluster has not recorded its founding nodes yet; retry in a moment".into(),
            ));
        }
        let rejoined = known.nodes.contains_key(&id);
        let add = MetaCommand { command: Some(meta_command::Command::AddNode(wire::AddNode { node: Some(info) })) };
        self.propose_meta(add).await?.map_err(rejection)?;
        tracing::info!(node = id, rejoined, "admitted a node");
        Ok((self.meta_state().nodes.values().cloned().collect(), rejoined))
    }

    /// The recorded nodes, read linearizably (the configured ones if none are recorded yet).
    pub async fn list_nodes(&self) -> Result<Vec<NodeMeta>, ApiError> {
        let state = self.meta_read().await?;
        if state.nodes.is_empty() {
            return Ok(self
                .options
                .nodes
                .iter()
                .map(|place| NodeMeta {
                    id: place.id,
                    zone: place.zone.clone(),
                    peer_address: place.peer_address.clone(),
                    grpc_address: place.grpc_address.clone(),
                    state: NodeState::Active,
                    started: false,
                })
                .collect());
        }
        Ok(state.nodes.values().cloned().collect())
    }

    /// Starts decommissioning a node: its replicas move away, then it is removed.
    pub async fn decommission(&self, id: NodeId) -> Result<(), ApiError> {
        let command =
            MetaCommand { command: Some(meta_command::Command::DecommissionNode(wire::DecommissionNode { id })) };
        self.propose_meta(command).await?.map_err(rejection)
    }

    /// On the metadata leader: records the founders, steps the metadata group's membership,
    /// starts replica moves and removes drained nodes. Each kind of work runs one at a time.
    pub(crate) fn drive_membership(self: &Arc<Self>, state: &MetaState) {
        if state.nodes.is_empty() {
            if self.options.join {
                return;
            }
            let nodes = self
                .options
                .nodes
                .iter()
                .map(|place| NodeInfo {
                    id: place.id,
                    zone: place.zone.clone(),
                    peer_address: place.peer_address.clone(),
                    grpc_address: place.grpc_address.clone(),
                })
                .collect();
            let command = meta_command::Command::RegisterNodes(wire::RegisterNodes { nodes });
            self.propose_in_background("membership:register".into(), command);
            return;
        }
        if let Some(raft) = self.meta_raft() {
            let membership = raft.metrics().borrow().membership_config.clone();
            if membership.membership().get_joint_config().len() != 1 {
                // A change its proposer did not finish (it lost the leadership in between).
                if let Some(group) = self.group(META_GROUP) {
                    self.finish_membership_change(&group);
                }
                return;
            }
            let voters: BTreeSet<u64> = membership.membership().voter_ids().collect();
            let learners: BTreeSet<u64> = membership.membership().learner_ids().collect();
            // A leader no longer among the voters (it made itself a learner while being
            // decommissioned; openraft 0.9 lets it go on leading) cannot readmit a voter that
            // lost its disk, nor change the membership again: it hands the leadership to a voter
            // that has every entry (seed 330, admin workload).
            if metrics_leader(raft) == Some(self.id()) && !voters.contains(&self.id()) {
                self.hand_over_meta(raft, &voters);
                return;
            }
            // A learner is made a voter only once it has caught up (and so has been admitted).
            let metrics = raft.metrics().borrow().clone();
            let lagging = learners.iter().copied().filter(|id| {
                let matched = metrics.replication.as_ref().and_then(|progress| progress.get(id).cloned()).flatten();
                let behind =
                    metrics.last_log_index.unwrap_or(0).saturating_sub(matched.map_or(0, |log_id| log_id.index));
                matched.is_none() || behind > META_LEARNER_LAG_MAX
            });
            // Members that acknowledged this leader's appends have taken part in the cluster:
            // recorded, so that one starting again on an empty disk is known to have lost data.
            if metrics.current_leader == Some(self.id()) {
                for node in state.nodes.values().filter(|node| !node.started) {
                    let acknowledged = node.id == self.id()
                        || metrics
                            .replication
                            .as_ref()
                            .and_then(|progress| progress.get(&node.id).cloned())
                            .flatten()
                            .is_some();
                    if acknowledged {
                        let command = meta_command::Command::NodeStarted(wire::NodeStarted { node: node.id });
                        self.propose_in_background(format!("membership:started:{}", node.id), command);
                    }
                }
            }
            let waiting: BTreeSet<u64> = self.readmissions_waiting(META_GROUP).into_iter().chain(lagging).collect();
            if let Some(step) = next_meta_membership_step(state, &voters, &learners, &waiting) {
                self.step_meta_membership(step);
            }
            for node in state.nodes.values().filter(|node| node.state == NodeState::Decommissioning) {
                if state.groups_placed_on(node.id).next().is_none() && !voters.contains(&node.id) {
                    let command = meta_command::Command::RemoveNode(wire::RemoveNode { id: node.id });
                    self.propose_in_background(format!("membership:remove:{}", node.id), command);
                }
            }
        }
        for change in plan_preferred_leaders(state, PREFERENCE_CHANGES_MAX) {
            let key = format!("membership:prefer:{}", change.group_id);
            self.propose_in_background(key, meta_command::Command::PreferLeader(change));
        }
        for step in plan_moves(state, MOVES_IN_FLIGHT_MAX) {
            tracing::info!(group = step.group_id, from = step.from, to = step.to, "moving a replica");
            let key = format!("membership:move:{}", step.group_id);
            self.propose_in_background(key, meta_command::Command::MoveReplica(step));
        }
    }

    fn step_meta_membership(self: &Arc<Self>, step: MetaMembershipStep) {
        let key = "membership:meta-group".to_string();
        let node = self.clone();
        self.spawn_keyed("meta-membership", key, async move {
            if let Some(raft) = node.meta_raft().filter(|raft| leads_as_voter(raft, node.id())) {
                tracing::info!(?step, "changing the metadata group's membership");
                let outcome = match &step {
                    MetaMembershipStep::AddLearner(id) => {
                        raft.add_learner(*id, openraft::EmptyNode {}, false).await.map(|_| ())
                    }
                    MetaMembershipStep::SetVoters(voters) => {
                        raft.change_membership(voters.clone(), true).await.map(|_| ())
                    }
                    MetaMembershipStep::Remove(gone) => raft
                        .change_membership(openraft::ChangeMembers::RemoveNodes(gone.clone()), false)
                        .await
                        .map(|_| ()),
                };
                if let Err(error) = outcome {
                    tracing::debug!(?step, %error, "a metadata membership step failed; retrying later");
                }
            }
        });
    }

    /// Proposes `command` in a task of its own unless one with the same key runs.
    pub(crate) fn propose_in_background(self: &Arc<Self>, key: String, command: meta_command::Command) {
        let node = self.clone();
        let step = key.clone();
        self.spawn_keyed("control-step", key, async move {
            match node.propose_meta(MetaCommand { command: Some(command) }).await {
                Ok(Err(rejection)) => tracing::debug!(%step, %rejection, "a control step was refused"),
                Err(error) => tracing::debug!(%step, %error, "a control step failed; retrying later"),
                Ok(Ok(())) => {}
            }
        });
    }

    /// On a shard's leader: moves one replica — the new node becomes a learner and catches up
    /// (from the log, or a snapshot of the segments), then replaces the old one among the
    /// voters — and reports the move. Each step is idempotent, so a new leader picks up where
    /// a failed one stopped.
    pub(crate) async fn move_replica(&self, stream: &str, group: &Group, moving: ReplicaMove) -> Result<(), ApiError> {
        let raft = &group.raft;
        let membership = raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<u64> = membership.membership().voter_ids().collect();
        let timeout = Duration::from_millis(self.options.limits.append_timeout_ms);
        if !voters.contains(&moving.to) || voters.contains(&moving.from) {
            ensure_leads_as_voter(raft, self.id()).map_err(ApiError::Internal)?;
            let added = tokio::time::timeout(timeout, raft.add_learner(moving.to, openraft::EmptyNode {}, false)).await;
            match added {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(ApiError::Internal(format!("adding learner {}: {error}", moving.to))),
                Err(_) => return Err(ApiError::Internal(format!("adding learner {} timed out", moving.to))),
            }
            crate::control::readmission::wait_caught_up(raft, moving.to, timeout).await.map_err(ApiError::Internal)?;
            // The move drops `from`'s copy: not while another replica takes no part (awaits its
            // readmission after a disk loss, or has not answered this leader), or the group is
            // left with fewer good copies than a quorum needs. It is retried later.
            let metrics = raft.metrics().borrow().clone();
            let waiting = self.readmissions_waiting(group.id);
            let absent: Vec<u64> = voters
                .iter()
                .copied()
                .filter(|id| *id != moving.from && *id != self.id())
                .filter(|id| {
                    waiting.contains(id)
                        || metrics
                            .replication
                            .as_ref()
                            .and_then(|progress| progress.get(id).cloned())
                            .flatten()
                            .is_none()
                })
                .collect();
            if !absent.is_empty() {
                return Err(ApiError::Internal(format!(
                    "group {}: voters {absent:?} take no part (awaiting readmission?): the move waits",
                    group.id
                )));
            }
            // Every voter that stays must also hold every entry: one cut off now may have
            // acknowledged this leader once, yet would miss the new configuration, leaving it
            // on fewer replicas than a quorum once `from` drops its copy (seed 433).
            for id in voters.iter().copied().filter(|id| *id != moving.from && *id != self.id()) {
                if let Err(error) = crate::control::readmission::wait_caught_up(raft, id, timeout).await {
                    return Err(ApiError::Internal(format!("group {}: {error}: the move waits", group.id)));
                }
            }
            let mut wanted = voters.clone();
            wanted.remove(&moving.from);
            wanted.insert(moving.to);
            ensure_leads_as_voter(raft, self.id()).map_err(ApiError::Internal)?;
            let changed = tokio::time::timeout(timeout, raft.change_membership(wanted, false)).await;
            match changed {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    return Err(ApiError::Internal(format!("changing group {}'s voters: {error}", group.id)))
                }
                Err(_) => return Err(ApiError::Internal(format!("changing group {}'s voters timed out", group.id))),
            }
            tracing::info!(group = group.id, from = moving.from, to = moving.to, "replica moved");
        }
        // The old replica drops its data once the move is recorded, so the new voters must be
        // committed first (the membership seen here may still be uncommitted, for instance
        // appended by a leader that failed): a linearizable read commits this term's entry.
        match tokio::time::timeout(timeout, raft.ensure_linearizable()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                return Err(ApiError::Internal(format!("confirming group {}'s leader: {error}", group.id)))
            }
            Err(_) => return Err(ApiError::Internal(format!("confirming group {}'s leader timed out", group.id))),
        }
        let metrics = raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let committed = metrics.membership_config.log_id() <= &metrics.last_applied;
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        if !committed
            || membership.get_joint_config().len() != 1
            || !voters.contains(&moving.to)
            || voters.contains(&moving.from)
        {
            return Err(ApiError::Internal(format!("group {}'s move is not committed yet", group.id)));
        }
        let moved =
            wire::ReplicaMoved { stream: stream.to_string(), group_id: group.id, from: moving.from, to: moving.to };
        self.propose_meta(MetaCommand { command: Some(meta_command::Command::ReplicaMoved(moved)) }).await.map(|_| ())
    }

    /// On every shard this node leads but is not the preferred replica of: once this node has
    /// led for two election timeouts (its lease has run, so it can vote for the successor),
    /// hands leadership to the preferred replica — appends pause (all in-flight permits taken)
    /// until the successor has every entry, then it campaigns and wins with this node's vote.
    /// Queued appends then fail over to it as NotLeader (never applied, so retried). A handoff
    /// that does not complete in time simply leaves this node leading.
    pub(crate) fn hand_over_leaderships(self: &Arc<Self>, state: &MetaState) {
        let now = self.seams.clock.now_ms();
        let settle_ms = (self.options.raft.election_timeout_max_ms * 2) as i64;
        for stream in state.streams.values() {
            for shard in stream.shards.iter().filter(|shard| !shard.expired && shard.moving.is_none()) {
                if matches!(shard.state, crate::control::metadata::ShardState::Closed { .. }) {
                    continue;
                }
                let Some(&preferred) = shard.replicas.first() else { continue };
                let Some(group) = self.group(shard.group_id) else { continue };
                let Some(shard_group) = &group.shard else { continue };
                let metrics = group.raft.metrics().borrow().clone();
                if metrics.current_leader != Some(self.id()) {
                    *shard_group.leading_since.lock().expect("lock is not poisoned") = None;
                    continue;
                }
                let term = metrics.current_term;
                let since = {
                    let mut leading = shard_group.leading_since.lock().expect("lock is not poisoned");
                    match *leading {
                        Some((seen_term, since)) if seen_term == term => since,
                        _ => {
                            *leading = Some((term, now));
                            now
                        }
                    }
                };
                let membership = metrics.membership_config.membership();
                let voters: BTreeSet<u64> = membership.voter_ids().collect();
                // Not in the middle of a membership change: a replica being added may not win.
                let joint = membership.get_joint_config().len() != 1;
                if preferred == self.id() || !voters.contains(&preferred) || joint || now - since < settle_ms {
                    continue;
                }
                let key = format!("handoff:{}", group.id);
                let node = self.clone();
                self.spawn_keyed("leader-handoff", key, async move {
                    if let Err(reason) = node.hand_over(&group, preferred).await {
                        tracing::debug!(group = group.id, to = preferred, %reason, "a leadership handoff did not complete");
                        if let Some(shard_group) = &group.shard {
                            let mut leading = shard_group.leading_since.lock().expect("lock is not poisoned");
                            *leading = leading.map(|(term, _)| (term, node.seams.clock.now_ms()));
                        }
                    }
                });
            }
        }
    }

    /// Asks a voter of the metadata group that has every entry, and is not awaiting its
    /// readmission, to take the leadership from this (non-voter) leader.
    fn hand_over_meta(self: &Arc<Self>, raft: &Raft, voters: &BTreeSet<u64>) {
        let metrics = raft.metrics().borrow().clone();
        let waiting = self.readmissions_waiting(META_GROUP);
        let last = metrics.last_log_index;
        let Some(to) = voters.iter().copied().find(|id| {
            !waiting.contains(id)
                && metrics
                    .replication
                    .as_ref()
                    .and_then(|progress| progress.get(id))
                    .is_some_and(|matched| matched.map(|log_id| log_id.index) == last)
        }) else {
            return;
        };
        let node = self.clone();
        self.spawn_keyed("meta-handoff", "handoff:meta".to_string(), async move {
            let request = riffle_proto::peer::PeerRequest {
                group_id: META_GROUP,
                body: Some(riffle_proto::peer::peer_request::Body::TakeLeadership(wire::Blank {})),
                incarnation: 0,
            };
            tracing::info!(to, "handing the metadata group's leadership to a voter: this leader is not one");
            let wait = Duration::from_millis(node.options.raft.election_timeout_max_ms);
            let _ = tokio::time::timeout(wait, node.transport.call(to, request)).await;
            node.rest(wait).await;
        });
    }

    async fn hand_over(&self, group: &Group, to: NodeId) -> Result<(), String> {
        let shard_group = group.shard.as_ref().ok_or("not a shard group")?;
        let permits = self.options.limits.appends_in_flight_max.max(1) as u32;
        let paused = tokio::time::timeout(HANDOFF_PAUSE_MAX, shard_group.in_flight.acquire_many(permits))
            .await
            .map_err(|_| "in-flight appends did not commit in time".to_string())?
            .map_err(|error| error.to_string())?;
        let caught_up = group
            .raft
            .wait(Some(HANDOFF_PAUSE_MAX))
            .metrics(
                |metrics| {
                    let last = metrics.last_log_index;
                    metrics.current_leader == Some(self.id())
                        && metrics
                            .replication
                            .as_ref()
                            .and_then(|progress| progress.get(&to))
                            .is_some_and(|matched| matched.map(|log_id| log_id.index) == last)
                },
                "the successor has every entry",
            )
            .await;
        if caught_up.is_err() {
            return Err(format!("node {to} did not catch up in time"));
        }
        let request = riffle_proto::peer::PeerRequest {
            group_id: group.id,
            body: Some(riffle_proto::peer::peer_request::Body::TakeLeadership(wire::Blank {})),
            incarnation: 0,
        };
        tracing::info!(group = group.id, to, "handing leadership over to the preferred replica");
        self.transport.call(to, request).await.map_err(|error| error.to_string())?;
        let wait = Duration::from_millis(self.options.raft.election_timeout_max_ms);
        let outcome = group
            .raft
            .wait(Some(wait))
            .metrics(|metrics| metrics.current_leader != Some(self.id()), "leadership handed over")
            .await
            .map(|_| ())
            .map_err(|_| format!("node {to} did not take over in time"));
        drop(paused);
        outcome
    }

    /// Groups stored or hosted here whose shard the metadata no longer places here (a replica
    /// moved away). They are removed only after a linearizable read of the metadata confirms
    /// it: this node's own view may be behind a move back here.
    pub(crate) fn drop_unplaced_replicas(self: &Arc<Self>, state: &MetaState) {
        let candidates = unplaced_groups(state, self.id(), self.hosted_or_stored());
        if candidates.is_empty() {
            return;
        }
        let key = "membership:drop".to_string();
        let node = self.clone();
        self.spawn_keyed("drop-replicas", key, async move {
            if let Ok(current) = node.meta_read().await {
                for group_id in unplaced_groups(&current, node.id(), candidates) {
                    let _changing = node.group_changes.lock().await;
                    // The metadata applied here is at least as new as the read: if it still
                    // leaves the group out, no move back here has started.
                    let now = node.meta_state();
                    if unplaced_groups(&now, node.id(), BTreeSet::from([group_id])).is_empty() {
                        continue;
                    }
                    tracing::info!(
                        node = node.id(),
                        group = group_id,
                        "this node no longer holds a replica of the group: removing it"
                    );
                    node.remove_group_data(group_id).await;
                }
            }
        });
    }

    fn hosted_or_stored(&self) -> BTreeSet<u64> {
        let mut groups: BTreeSet<u64> = self.logs.groups().into_iter().collect();
        groups.extend(self.hosted_groups());
        groups.remove(&META_GROUP);
        groups
    }

    /// This node was decommissioned and removed from the cluster: its process stops.
    pub(crate) fn depart(&self) {
        if !*self.departed.borrow() {
            tracing::warn!(node = self.id(), "this node was decommissioned and removed from the cluster; it stops");
            self.departed.send_replace(true);
        }
    }

    /// On a node being decommissioned, or one that lost its disk and has not caught up: asks
    /// its peers whether the metadata records it as removed (one round at a time). A removed
    /// node leaves the metadata group and may never apply its own removal, so a peer's answer
    /// is how it learns to stop.
    pub(crate) fn ask_whether_removed(self: &Arc<Self>) {
        let key = "membership:removed?".to_string();
        let node = self.clone();
        self.spawn_keyed("ask-whether-removed", key, async move {
            let wait = Duration::from_millis(node.options.raft.election_timeout_max_ms);
            for peer in node.peer_ids() {
                let reply = tokio::time::timeout(wait, node.transport.call(peer, crate::node::hello())).await;
                if let Ok(Ok(riffle_proto::peer::PeerResponse {
                    body: Some(riffle_proto::peer::peer_response::Body::Hello(reply)),
                })) = reply
                {
                    if reply.removed {
                        node.depart();
                        break;
                    }
                }
            }
        });
    }

    /// Stops a group hosted here and removes its raft log and segments; the caller holds
    /// `group_changes`.
    pub(crate) async fn remove_group_data(&self, group_id: u64) {
        let hosted = self.groups.lock().expect("groups lock is not poisoned").remove(&group_id);
        if let Some(group) = &hosted {
            let _ = group.raft.shutdown().await;
        }
        if let Err(error) = self.logs.remove_group(group_id).await {
            tracing::error!(group = group_id, %error, "cannot remove the raft log of a group");
        }
        if let Err(error) = self.segments.remove_shard(group_id) {
            tracing::error!(group = group_id, %error, "cannot remove the segments of a group");
        }
    }
}

/// Of `groups`, those of live shards `state` does not place on `node`.
fn unplaced_groups(state: &MetaState, node: NodeId, groups: BTreeSet<u64>) -> BTreeSet<u64> {
    let mut unplaced = BTreeSet::new();
    for shard in state.streams.values().flat_map(|stream| &stream.shards) {
        if groups.contains(&shard.group_id) && !shard.expired && !shard.placed_on(node) {
            unplaced.insert(shard.group_id);
        }
    }
    unplaced
}

fn rejection(rejection: MetaRejection) -> ApiError {
    ApiError::InvalidArgument(rejection.to_string())
}

/// The leader of a group as its own replica sees it.
fn metrics_leader(raft: &Raft) -> Option<NodeId> {
    raft.metrics().borrow().current_leader
}
