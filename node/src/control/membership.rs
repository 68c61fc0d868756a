//! Membership: the cluster's nodes, joining and decommissioning, and where replicas move.
//!
//! The metadata records every node (id, zone, addresses, state). The founders are recorded by
//! the first metadata leader from its configuration; a node that joins later is admitted with
//! [`AddNode`] and becomes a learner of the metadata group (the group keeps one voter per zone
//! while it can). Replicas move one at a time per shard, through the shard's own Raft group:
//! the metadata leader proposes [`MoveReplica`] (from [`plan_moves`], a pure function of the
//! metadata), the shard's leader adds the new node as a learner, waits until it has caught up,
//! replaces the old replica in the group's membership, and reports [`ReplicaMoved`]. Only then
//! does the old node drop its copy — after a linearizable read of the metadata confirms it holds
//! no replica, so a node whose metadata is behind never removes a replica it still serves.
//!
//! A shard's replicas always sit in distinct zones: a move keeps the zone when the zone has
//! another node, and otherwise goes to a zone the shard's other replicas are not in.

use std::collections::{BTreeMap, BTreeSet};

use riffle_proto::peer::{AddNode, MoveReplica, NodeInfo, PreferLeader, RegisterNodes, ReplicaMoved};
use serde::{Deserialize, Serialize};

use crate::control::metadata::{MetaRejection, MetaState, ReplicaMove, StreamStatus};
use crate::control::placement::NodePlace;

/// Replicas a shard has (one per zone) when the cluster spans enough zones.
pub const REPLICATION_FACTOR: usize = 3;

/// A node as the metadata records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    pub id: u64,
    pub zone: String,
    /// Where peers reach it (QUIC) and where clients reach it (gRPC).
    pub peer_address: String,
    pub grpc_address: String,
    pub state: NodeState,
    /// It has taken part in the cluster (acknowledged the metadata leader's appends): starting
    /// on an empty disk, it lost its data. Records from before this field had all run.
    #[serde(default = "has_started")]
    pub started: bool,
}

fn has_started() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Takes new replicas.
    Active,
    /// Its replicas are moving away; it takes none.
    Decommissioning,
    /// Holds nothing and has left the metadata group. Its id is not reused.
    Removed,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Decommissioning => "decommissioning",
            NodeState::Removed => "removed",
        }
    }
}

impl NodeMeta {
    pub fn from_info(info: &NodeInfo) -> NodeMeta {
        NodeMeta {
            id: info.id,
            zone: info.zone.clone(),
            peer_address: info.peer_address.clone(),
            grpc_address: info.grpc_address.clone(),
            state: NodeState::Active,
            started: false,
        }
    }

    pub fn place(&self) -> NodePlace {
        NodePlace {
            id: self.id,
            zone: self.zone.clone(),
            peer_address: self.peer_address.clone(),
            grpc_address: self.grpc_address.clone(),
        }
    }
}

fn check_info(info: &NodeInfo) -> Result<(), MetaRejection> {
    if info.id == 0 {
        return Err(MetaRejection::Invalid("node id 0 is reserved".into()));
    }
    if info.zone.is_empty() {
        return Err(MetaRejection::Invalid(format!("node {} has no zone", info.id)));
    }
    for (what, address) in [("peer", &info.peer_address), ("gRPC", &info.grpc_address)] {
        if address.parse::<std::net::SocketAddr>().is_err() {
            return Err(MetaRejection::Invalid(format!(
                "node {}: {what} address {address:?} is not HOST:PORT",
                info.id
            )));
        }
    }
    Ok(())
}

impl MetaState {
    /// Nodes that take replicas, in id order.
    pub fn active_nodes(&self) -> impl Iterator<Item = &NodeMeta> {
        self.nodes.values().filter(|node| node.state == NodeState::Active)
    }

    pub(crate) fn register_nodes(&mut self, register: &RegisterNodes) -> Result<(), MetaRejection> {
        if !self.nodes.is_empty() {
            return Ok(());
        }
        let mut nodes = BTreeMap::new();
        for info in &register.nodes {
            check_info(info)?;
            if nodes.insert(info.id, NodeMeta::from_info(info)).is_some() {
                return Err(MetaRejection::Invalid(format!("node {} is listed twice", info.id)));
            }
        }
        self.nodes = nodes;
        Ok(())
    }

    /// Records that a node took part in the cluster (see [`NodeMeta::started`]).
    pub(crate) fn node_started(&mut self, id: u64) -> Result<(), MetaRejection> {
        match self.nodes.get_mut(&id) {
            Some(known) => {
                known.started = true;
                Ok(())
            }
            None => Err(MetaRejection::Invalid(format!("node {id} is not a member"))),
        }
    }

    /// Admits a node; the same node again updates its addresses (it may have moved).
    pub(crate) fn add_node(&mut self, add: &AddNode) -> Result<(), MetaRejection> {
        let info = add.node.as_ref().ok_or_else(|| MetaRejection::Invalid("AddNode without a node".into()))?;
        check_info(info)?;
        if self.nodes.is_empty() {
            return Err(MetaRejection::Invalid(
                "the cluster has not recorded its founding nodes yet; retry in a moment".into(),
            ));
        }
        match self.nodes.get_mut(&info.id) {
            Some(known) if known.state == NodeState::Removed => Err(MetaRejection::Invalid(format!(
                "node {} was decommissioned and removed; a node joins with a new id",
                info.id
            ))),
            Some(known) if known.zone != info.zone => Err(MetaRejection::Invalid(format!(
                "node {} is in zone {}, not {}; a node cannot change zones",
                info.id, known.zone, info.zone
            ))),
            Some(known) => {
                known.peer_address = info.peer_address.clone();
                known.grpc_address = info.grpc_address.clone();
                Ok(())
            }
            None => {
                self.nodes.insert(info.id, NodeMeta::from_info(info));
                Ok(())
            }
        }
    }

    /// Refused when the nodes left active would span fewer zones than a shard has replicas (or
    /// than the cluster spans now, if that is fewer): its replicas would have nowhere to go.
    pub(crate) fn decommission_node(&mut self, id: u64) -> Result<(), MetaRejection> {
        let node =
            self.nodes.get(&id).ok_or_else(|| MetaRejection::Invalid(format!("node {id} is not in the cluster")))?;
        match node.state {
            NodeState::Decommissioning => return Ok(()),
            NodeState::Removed => return Err(MetaRejection::Invalid(format!("node {id} was removed already"))),
            NodeState::Active => {}
        }
        let zones_now: BTreeSet<&str> = self.active_nodes().map(|node| node.zone.as_str()).collect();
        let zones_after: BTreeSet<&str> =
            self.active_nodes().filter(|node| node.id != id).map(|node| node.zone.as_str()).collect();
        let needed = REPLICATION_FACTOR.min(zones_now.len());
        if zones_after.len() < needed {
            return Err(MetaRejection::Invalid(format!(
                "node {id} is the last active node of zone {}: its replicas would have no zone to go to (add a node first)",
                node.zone
            )));
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            node.state = NodeState::Decommissioning;
        }
        Ok(())
    }

    /// Refused while the node still holds a replica.
    pub(crate) fn remove_node(&mut self, id: u64) -> Result<(), MetaRejection> {
        let node =
            self.nodes.get(&id).ok_or_else(|| MetaRejection::Invalid(format!("node {id} is not in the cluster")))?;
        match node.state {
            NodeState::Removed => return Ok(()),
            NodeState::Active => return Err(MetaRejection::Invalid(format!("node {id} is not decommissioned"))),
            NodeState::Decommissioning => {}
        }
        if let Some(group) = self.groups_placed_on(id).next() {
            return Err(MetaRejection::Invalid(format!("node {id} still holds a replica of group {group}")));
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            node.state = NodeState::Removed;
        }
        Ok(())
    }

    /// The groups of live shards with a replica on `node` (moving in or out included).
    pub fn groups_placed_on(&self, node: u64) -> impl Iterator<Item = u64> + '_ {
        self.streams
            .values()
            .flat_map(|stream| stream.shards.iter())
            .filter(move |shard| !shard.expired && shard.placed_on(node))
            .map(|shard| shard.group_id)
    }

    pub(crate) fn move_replica(&mut self, start: &MoveReplica) -> Result<(), MetaRejection> {
        let target = self
            .nodes
            .get(&start.to)
            .filter(|node| node.state == NodeState::Active)
            .map(|node| node.zone.clone())
            .ok_or_else(|| MetaRejection::Invalid(format!("node {} is not an active node", start.to)))?;
        let zones: BTreeMap<u64, String> = self.nodes.values().map(|node| (node.id, node.zone.clone())).collect();
        let stream =
            self.streams.get_mut(&start.stream).ok_or_else(|| MetaRejection::StreamNotFound(start.stream.clone()))?;
        let shard =
            stream.shards.iter_mut().find(|shard| shard.group_id == start.group_id && !shard.expired).ok_or_else(
                || MetaRejection::Invalid(format!("stream {} has no shard in group {}", start.stream, start.group_id)),
            )?;
        if shard.moving.is_some() {
            return Err(MetaRejection::Invalid(format!("a replica of group {} is moving already", start.group_id)));
        }
        if !shard.replicas.contains(&start.from) || shard.replicas.contains(&start.to) {
            return Err(MetaRejection::Invalid(format!(
                "group {} has replicas {:?}: cannot move {} to {}",
                start.group_id, shard.replicas, start.from, start.to
            )));
        }
        let other_zone_taken = shard
            .replicas
            .iter()
            .filter(|replica| **replica != start.from)
            .any(|replica| zones.get(replica) == Some(&target));
        if other_zone_taken {
            return Err(MetaRejection::Invalid(format!(
                "group {} has another replica in zone {target} already",
                start.group_id
            )));
        }
        shard.moving = Some(ReplicaMove { from: start.from, to: start.to });
        Ok(())
    }

    /// Idempotent: the same move reported twice stays done.
    pub(crate) fn replica_moved(&mut self, moved: &ReplicaMoved) -> Result<(), MetaRejection> {
        let stream =
            self.streams.get_mut(&moved.stream).ok_or_else(|| MetaRejection::StreamNotFound(moved.stream.clone()))?;
        let shard = stream.shards.iter_mut().find(|shard| shard.group_id == moved.group_id).ok_or_else(|| {
            MetaRejection::Invalid(format!("stream {} has no shard in group {}", moved.stream, moved.group_id))
        })?;
        let expected = ReplicaMove { from: moved.from, to: moved.to };
        if shard.moving != Some(expected) {
            if shard.moving.is_none() && shard.replicas.contains(&moved.to) && !shard.replicas.contains(&moved.from) {
                return Ok(());
            }
            return Err(MetaRejection::Invalid(format!(
                "group {} is not moving a replica from {} to {}",
                moved.group_id, moved.from, moved.to
            )));
        }
        for replica in shard.replicas.iter_mut().filter(|replica| **replica == moved.from) {
            *replica = moved.to;
        }
        shard.moving = None;
        shard.moves += 1;
        shard.founders.retain(|founder| *founder != moved.from);
        Ok(())
    }
}

impl MetaState {
    /// Makes `node` the shard's first (preferred-leader) replica. Idempotent.
    pub(crate) fn prefer_leader(&mut self, prefer: &PreferLeader) -> Result<(), MetaRejection> {
        let stream =
            self.streams.get_mut(&prefer.stream).ok_or_else(|| MetaRejection::StreamNotFound(prefer.stream.clone()))?;
        let shard = stream.shards.iter_mut().find(|shard| shard.group_id == prefer.group_id).ok_or_else(|| {
            MetaRejection::Invalid(format!("stream {} has no shard in group {}", prefer.stream, prefer.group_id))
        })?;
        let Some(position) = shard.replicas.iter().position(|replica| *replica == prefer.node) else {
            return Err(MetaRejection::Invalid(format!(
                "node {} holds no replica of group {}",
                prefer.node, prefer.group_id
            )));
        };
        shard.replicas.swap(0, position);
        Ok(())
    }
}

/// Preferred leaders (first replicas) of shards that take writes, spread over the active nodes:
/// while one node is preferred for more than one shard above another that holds a replica of
/// it, that replica becomes preferred. At most `budget` changes.
pub fn plan_preferred_leaders(state: &MetaState, budget: usize) -> Vec<PreferLeader> {
    let mut preferred: BTreeMap<u64, usize> = state.active_nodes().map(|node| (node.id, 0)).collect();
    let mut shards = Vec::new();
    for stream in state.streams.values().filter(|stream| stream.status != StreamStatus::Deleting) {
        for shard in stream.shards.iter().filter(|shard| !shard.expired && shard.moving.is_none()) {
            if !matches!(shard.state, crate::control::metadata::ShardState::Closed { .. }) {
                if let Some(count) = shard.replicas.first().and_then(|first| preferred.get_mut(first)) {
                    *count += 1;
                }
                shards.push((stream.name.as_str(), shard));
            }
        }
    }
    let mut changes: Vec<PreferLeader> = Vec::new();
    while changes.len() < budget {
        let mut best: Option<(usize, u64, u64, &str)> = None;
        for (stream, shard) in &shards {
            let Some(first) = shard.replicas.first() else { continue };
            if changes.iter().any(|change| change.group_id == shard.group_id) {
                continue;
            }
            let Some(&from_count) = preferred.get(first) else { continue };
            for other in &shard.replicas[1..] {
                if let Some(&to_count) = preferred.get(other) {
                    let gain = from_count.saturating_sub(to_count);
                    if gain > 1 && best.is_none_or(|(best_gain, ..)| gain > best_gain) {
                        best = Some((gain, shard.group_id, *other, stream));
                    }
                }
            }
        }
        let Some((_, group_id, node, stream)) = best else { break };
        let first =
            shards.iter().find(|(_, shard)| shard.group_id == group_id).and_then(|(_, shard)| shard.replicas.first());
        if let Some(count) = first.and_then(|first| preferred.get_mut(first)) {
            *count -= 1;
        }
        if let Some(count) = preferred.get_mut(&node) {
            *count += 1;
        }
        changes.push(PreferLeader { stream: stream.to_string(), group_id, node });
    }
    changes
}

/// The replica moves to start now, at most `budget` minus those already running: first every
/// replica on a node that is not active (decommissioning, removed, unknown) moves to an active
/// node — of the same zone if it has one, else of a zone the shard's other replicas are not in;
/// then, within each zone, replicas move from the node holding the most to the node holding the
/// fewest while they differ by more than one. Replicas a shard prefers as leader (its first)
/// move last. Deterministic: the same metadata gives the same moves.
pub fn plan_moves(state: &MetaState, budget: usize) -> Vec<MoveReplica> {
    let active: BTreeMap<u64, &str> = state.active_nodes().map(|node| (node.id, node.zone.as_str())).collect();
    if active.is_empty() {
        return Vec::new();
    }
    let zone_of = |id: u64| state.nodes.get(&id).map(|node| node.zone.as_str());
    // Replicas per active node, counting both ends of a running move.
    let mut load: BTreeMap<u64, usize> = active.keys().map(|id| (*id, 0)).collect();
    let mut running = 0;
    let mut movable = Vec::new();
    for stream in state.streams.values().filter(|stream| stream.status != StreamStatus::Deleting) {
        for shard in stream.shards.iter().filter(|shard| !shard.expired) {
            for replica in shard.replicas.iter().chain(shard.moving.as_ref().map(|moving| &moving.to)) {
                if let Some(count) = load.get_mut(replica) {
                    *count += 1;
                }
            }
            match shard.moving {
                Some(_) => running += 1,
                None => movable.push((stream.name.as_str(), shard)),
            }
        }
    }
    let mut budget = budget.saturating_sub(running);
    let mut moves = Vec::new();
    let mut moved: BTreeSet<u64> = BTreeSet::new();
    // Drain nodes that are not active.
    for (stream, shard) in &movable {
        for (position, from) in shard.replicas.iter().enumerate() {
            if budget == 0 {
                return moves;
            }
            if active.contains_key(from) || moved.contains(&shard.group_id) {
                continue;
            }
            let taken: BTreeSet<&str> = shard
                .replicas
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != position)
                .filter_map(|(_, replica)| zone_of(*replica))
                .collect();
            let own_zone = zone_of(*from);
            let target = active
                .iter()
                .filter(|(id, zone)| !shard.replicas.contains(id) && !taken.contains(*zone))
                .min_by_key(|(id, zone)| (Some(**zone) != own_zone, load[*id], **id))
                .map(|(id, _)| *id);
            if let Some(to) = target {
                *load.get_mut(&to).expect("targets are active") += 1;
                moved.insert(shard.group_id);
                budget -= 1;
                moves.push(MoveReplica { stream: stream.to_string(), group_id: shard.group_id, from: *from, to });
            }
        }
    }
    // Balance each zone.
    let zones: BTreeSet<&str> = active.values().copied().collect();
    for zone in zones {
        loop {
            if budget == 0 {
                return moves;
            }
            let in_zone = || load.iter().filter(|(id, _)| active[*id] == zone);
            let (Some((&fullest, &most)), Some((&emptiest, &fewest))) = (
                in_zone().max_by_key(|(id, count)| (**count, std::cmp::Reverse(**id))),
                in_zone().min_by_key(|(id, count)| (**count, **id)),
            ) else {
                break;
            };
            if most <= fewest + 1 {
                break;
            }
            let candidate = movable
                .iter()
                .filter(|(_, shard)| !moved.contains(&shard.group_id))
                .filter(|(_, shard)| shard.replicas.contains(&fullest) && !shard.replicas.contains(&emptiest))
                .min_by_key(|(_, shard)| (shard.replicas.first() == Some(&fullest), shard.group_id));
            let Some((stream, shard)) = candidate else { break };
            *load.get_mut(&fullest).expect("active") -= 1;
            *load.get_mut(&emptiest).expect("active") += 1;
            moved.insert(shard.group_id);
            budget -= 1;
            moves.push(MoveReplica {
                stream: stream.to_string(),
                group_id: shard.group_id,
                from: fullest,
                to: emptiest,
            });
        }
    }
    moves
}

/// The metadata group's next membership step, from its current voters and learners: add every
/// recorded node that is not removed as a learner; keep [`REPLICATION_FACTOR`] voters, one per
/// zone while zones allow, replacing voters that are no longer active; drop removed nodes.
/// Nodes in `waiting` (replicas that lost their disk and wait to be readmitted) are not made
/// voters yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaMembershipStep {
    AddLearner(u64),
    SetVoters(BTreeSet<u64>),
    Remove(BTreeSet<u64>),
}

pub fn next_meta_membership_step(
    state: &MetaState,
    voters: &BTreeSet<u64>,
    learners: &BTreeSet<u64>,
    waiting: &BTreeSet<u64>,
) -> Option<MetaMembershipStep> {
    if state.nodes.is_empty() {
        return None;
    }
    let members: BTreeSet<u64> = voters.union(learners).copied().collect();
    if let Some(node) =
        state.nodes.values().find(|node| node.state != NodeState::Removed && !members.contains(&node.id))
    {
        return Some(MetaMembershipStep::AddLearner(node.id));
    }
    let active = |id: &u64| state.nodes.get(id).is_some_and(|node| node.state == NodeState::Active);
    let mut wanted: BTreeSet<u64> = voters.iter().copied().filter(active).collect();
    let zone_of = |id: &u64| state.nodes.get(id).map(|node| node.zone.clone()).unwrap_or_default();
    while wanted.len() < REPLICATION_FACTOR {
        let zones: BTreeSet<String> = wanted.iter().map(zone_of).collect();
        let next = state
            .active_nodes()
            .filter(|node| learners.contains(&node.id) && !wanted.contains(&node.id) && !waiting.contains(&node.id))
            .min_by_key(|node| (zones.contains(&node.zone), node.id));
        match next {
            Some(node) => wanted.insert(node.id),
            None => break,
        };
    }
    if &wanted != voters && !wanted.is_empty() && wanted.len() >= voters.len().min(REPLICATION_FACTOR) {
        return Some(MetaMembershipStep::SetVoters(wanted));
    }
    let removed: BTreeSet<u64> = members
        .iter()
        .copied()
        .filter(|id| state.nodes.get(id).is_some_and(|node| node.state == NodeState::Removed) && !voters.contains(id))
        .collect();
    if !removed.is_empty() {
        return Some(MetaMembershipStep::Remove(removed));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::metadata::{ShardMeta, ShardState, StreamMeta};

    fn node(id: u64, zone: &str) -> NodeMeta {
        NodeMeta {
            id,
            zone: zone.into(),
            peer_address: format!("127.0.0.1:{}", 7000 + id),
            grpc_address: format!("127.0.0.1:{}", 8000 + id),
            state: NodeState::Active,
            started: true,
        }
    }

    fn state_with(nodes: &[(u64, &str)], shards: &[[u64; 3]]) -> MetaState {
        let mut state = MetaState::default();
        for (id, zone) in nodes {
            state.nodes.insert(*id, node(*id, zone));
        }
        let shards = shards
            .iter()
            .enumerate()
            .map(|(index, replicas)| ShardMeta {
                index: index as u32,
                group_id: index as u64 + 1,
                starting_hash_key: 0,
                ending_hash_key: 0,
                replicas: replicas.to_vec(),
                ready: true,
                parents: Vec::new(),
                state: ShardState::Open,
                created_ms: 0,
                closed_ms: None,
                expired: false,
                moving: None,
                moves: 0,
                founders: replicas.to_vec(),
            })
            .collect();
        state.streams.insert(
            "s".into(),
            StreamMeta {
                name: "s".into(),
                created_ms: 0,
                status: StreamStatus::Active,
                retention_period_hours: 24,
                shards,
                tags: Default::default(),
                shard_level_metrics: Default::default(),
                resource_policy: None,
                consumers: Default::default(),
                scaling_target: None,
                scalings_ms: Vec::new(),
                mode: Default::default(),
                mode_changes_ms: Vec::new(),
                mode_change_pending: false,
            },
        );
        state
    }

    fn apply_all(state: &mut MetaState, moves: &[MoveReplica]) {
        for step in moves {
            state.move_replica(step).expect("a planned move is valid");
            let done =
                ReplicaMoved { stream: step.stream.clone(), group_id: step.group_id, from: step.from, to: step.to };
            state.replica_moved(&done).expect("a started move completes");
        }
    }

    fn zones_distinct(state: &MetaState) -> bool {
        state.streams.values().flat_map(|stream| &stream.shards).all(|shard| {
            let zones: BTreeSet<&str> = shard.replicas.iter().map(|id| state.nodes[id].zone.as_str()).collect();
            zones.len() == shard.replicas.len()
        })
    }

    #[test]
    fn a_joining_node_receives_a_fair_share_within_its_zone() {
        let mut state = state_with(&[(1, "a"), (2, "b"), (3, "c"), (4, "a")], &[[1, 2, 3]; 6]);
        let mut rounds = 0;
        loop {
            let moves = plan_moves(&state, 2);
            if moves.is_empty() {
                break;
            }
            assert!(moves.iter().all(|step| step.from == 1 && step.to == 4), "{moves:?}");
            apply_all(&mut state, &moves);
            rounds += 1;
            assert!(rounds < 10, "balancing does not end");
        }
        let on = |id| state.groups_placed_on(id).count();
        assert_eq!((on(1), on(4), on(2), on(3)), (3, 3, 6, 6));
        assert!(zones_distinct(&state));
    }

    #[test]
    fn decommissioning_drains_to_the_same_zone_or_a_free_one() {
        let mut state = state_with(&[(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "d")], &[[1, 2, 3], [4, 2, 3]]);
        state.decommission_node(1).expect("zone a keeps node 4");
        let moves = plan_moves(&state, 8);
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].from, moves[0].to), (1, 4));
        apply_all(&mut state, &moves);
        state.remove_node(1).expect("node 1 holds nothing");
        // Zone d is the only way out of zone a now.
        state.decommission_node(4).expect("zone d takes over");
        let moves = plan_moves(&state, 8);
        assert!(moves.iter().all(|step| step.from == 4 && step.to == 5), "{moves:?}");
        apply_all(&mut state, &moves);
        assert!(zones_distinct(&state));
        assert_eq!(state.groups_placed_on(4).count(), 0);
    }

    #[test]
    fn preferred_leaders_spread_over_the_nodes() {
        let mut state =
            state_with(&[(1, "a"), (2, "b"), (3, "c"), (4, "a")], &[[1, 2, 3], [2, 3, 4], [2, 4, 3], [2, 3, 1]]);
        for _ in 0..10 {
            let changes = plan_preferred_leaders(&state, 4);
            if changes.is_empty() {
                break;
            }
            for change in &changes {
                state.prefer_leader(change).expect("a replica of the shard");
            }
        }
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for shard in &state.streams["s"].shards {
            *counts.entry(shard.replicas[0]).or_default() += 1;
        }
        assert!(counts.values().all(|count| *count <= 2), "{counts:?}");
        assert!(counts.len() >= 3, "{counts:?}");
    }

    #[test]
    fn the_last_node_of_a_needed_zone_cannot_leave() {
        let mut state = state_with(&[(1, "a"), (2, "b"), (3, "c")], &[[1, 2, 3]]);
        assert!(state.decommission_node(1).is_err());
        assert_eq!(state.nodes[&1].state, NodeState::Active);
        assert!(state.remove_node(2).is_err(), "an active node is not removed");
    }

    #[test]
    fn moves_are_checked_on_apply() {
        let mut state = state_with(&[(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b")], &[[1, 2, 3]]);
        let step = |from, to| MoveReplica { stream: "s".into(), group_id: 1, from, to };
        assert!(state.move_replica(&step(1, 5)).is_err(), "zone b holds a replica already");
        assert!(state.move_replica(&step(4, 1)).is_err(), "node 4 holds no replica");
        state.move_replica(&step(1, 4)).expect("same zone");
        assert!(state.move_replica(&step(2, 5)).is_err(), "one move per shard at a time");
        let wrong = ReplicaMoved { stream: "s".into(), group_id: 1, from: 2, to: 5 };
        assert!(state.replica_moved(&wrong).is_err());
        let done = ReplicaMoved { stream: "s".into(), group_id: 1, from: 1, to: 4 };
        state.replica_moved(&done).expect("completes");
        state.replica_moved(&done).expect("idempotent");
        assert_eq!(state.streams["s"].shards[0].replicas, vec![4, 2, 3]);
        assert_eq!(state.streams["s"].shards[0].moves, 1);
        // Node 1 held the group and left it; nodes 2 and 3 are still the replicas it began with.
        assert_eq!(state.streams["s"].shards[0].founders, vec![2, 3]);
    }

    #[test]
    fn the_metadata_group_keeps_a_voter_per_zone() {
        let mut state = state_with(&[(1, "a"), (2, "b"), (3, "c"), (4, "a")], &[]);
        let voters: BTreeSet<u64> = [1, 2, 3].into();
        assert_eq!(
            next_meta_membership_step(&state, &voters, &BTreeSet::new(), &BTreeSet::new()),
            Some(MetaMembershipStep::AddLearner(4))
        );
        let learners: BTreeSet<u64> = [4].into();
        assert_eq!(next_meta_membership_step(&state, &voters, &learners, &BTreeSet::new()), None);
        state.decommission_node(1).expect("zone a keeps node 4");
        assert_eq!(
            next_meta_membership_step(&state, &voters, &learners, &BTreeSet::new()),
            Some(MetaMembershipStep::SetVoters([2, 3, 4].into()))
        );
        state.remove_node(1).expect("holds nothing");
        let (voters, learners): (BTreeSet<u64>, BTreeSet<u64>) = ([2, 3, 4].into(), [1].into());
        assert_eq!(
            next_meta_membership_step(&state, &voters, &learners, &BTreeSet::new()),
            Some(MetaMembershipStep::Remove([1].into()))
        );
    }

    #[test]
    fn a_node_waiting_for_its_readmission_is_not_made_a_voter() {
        let state = state_with(&[(1, "a"), (2, "b"), (3, "c")], &[]);
        let (voters, learners): (BTreeSet<u64>, BTreeSet<u64>) = ([1, 3].into(), [2].into());
        assert_eq!(next_meta_membership_step(&state, &voters, &learners, &[2].into()), None);
        assert_eq!(
            next_meta_membership_step(&state, &voters, &learners, &BTreeSet::new()),
            Some(MetaMembershipStep::SetVoters([1, 2, 3].into()))
        );
    }
}
