//! Readmission of a replica that lost its disk.
//!
//! A replica whose disk was lost has forgotten its vote and the entries it acknowledged. While
//! it still counts among its group's voters, nothing it says can be trusted: a vote from it may
//! be a second vote in a term it already voted in, and an acknowledgement from it may help a
//! leader of an old term — one it no longer knows is deposed — commit an entry that conflicts
//! with one it helped commit before the loss. So such a replica takes no part in its group at
//! all (no vote, no entry, no snapshot) until the group's leader has taken it out of the voters
//! with a membership change committed by the other replicas alone. That commit leaves every
//! entry committed before the loss on a majority that does not include the lost replica, and
//! every leader from then on knows the replica is not a voter. The leader then tells the replica
//! its term; from then on the replica listens only to leaders and candidates of that term or
//! later, catches up as a learner, and is made a voter again by the leader (see
//! [`Node::restore_voters`]) — to Raft it is a new, empty member, which is safe.
//!
//! What the replica keeps on disk (a key of the group's log), so that a crash in the middle
//! resumes where it was: `L` + when the loss was found while it waits, `F` + the term floor
//! once readmitted.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use riffle_proto::peer::{self as wire, peer_request, peer_response, PeerRequest, PeerResponse};

use crate::control::metadata::{MetaState, META_GROUP};
use crate::node::{Group, Node};
use crate::routing::RouteError;
use crate::transport::{NodeId, PeerTransport};

/// A key of a group's log: where this replica stands in its readmission after a disk loss.
const READMISSION_KEY: &[u8] = b"readmission";
/// A key of the metadata group's log: when this node found its disk empty in a running
/// cluster (8 bytes), or zero once it has caught up with everything that existed before.
const AMNESIA_KEY: &[u8] = b"amnesia";
/// Times a leader asks a readmitted replica again whose answer was lost.
const READMITTED_RETRIES_MAX: u32 = 10;

/// Where a replica stands after its disk was lost, as kept on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readmission {
    /// Out of the group until its leader readmits it; `lost_at` names the loss.
    Awaiting { lost_at: u64 },
    /// Readmitted: it listens only to leaders and candidates of `term` or later.
    Readmitted { term: u64 },
}

impl Readmission {
    fn encode(self) -> Vec<u8> {
        let (tag, value) = match self {
            Readmission::Awaiting { lost_at } => (b'L', lost_at),
            Readmission::Readmitted { term } => (b'F', term),
        };
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&value.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Readmission> {
        let value = u64::from_le_bytes(bytes.get(1..9)?.try_into().ok()?);
        match bytes.first()? {
            b'L' => Some(Readmission::Awaiting { lost_at: value.max(1) }),
            b'F' => Some(Readmission::Readmitted { term: value }),
            _ => None,
        }
    }
}

impl Group {
    /// Whether this replica lost its disk and waits to be readmitted (it takes no part in the
    /// group meanwhile).
    pub(crate) fn awaiting_readmission(&self) -> bool {
        self.lost_at.load(Ordering::SeqCst) != 0
    }

    /// Why a Raft message of `term` must not reach this replica, if it must not.
    pub(crate) fn refuses(&self, term: u64) -> Option<RouteError> {
        if self.awaiting_readmission() {
            return Some(RouteError::Failed(
                "this replica lost its disk and takes no part in the group until it is readmitted".into(),
            ));
        }
        let floor = self.term_floor.load(Ordering::SeqCst);
        (term < floor).then(|| {
            RouteError::Failed(format!(
                "this replica was readmitted after a disk loss in term {floor}; a message of term {term} is older"
            ))
        })
    }
}

impl Node {
    /// Whether this node's disk records a disk loss it has not caught up from, and when it was
    /// found.
    pub(crate) fn stored_amnesia(&self) -> Option<u64> {
        let bytes = self.logs.get(META_GROUP, AMNESIA_KEY)?;
        let lost_at = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        (lost_at != 0).then_some(lost_at)
    }

    /// Records on disk that this node lost its data at `lost_at`, before anything else is
    /// written, so a crash before it has caught up comes back amnesiac still.
    pub(crate) async fn record_amnesia(&self, lost_at: u64) -> Result<(), String> {
        self.amnesia_lost_at.store(lost_at, Ordering::SeqCst);
        self.amnesiac.store(true, Ordering::SeqCst);
        self.logs.put_durable(META_GROUP, AMNESIA_KEY, lost_at.to_le_bytes().to_vec()).await
    }

    /// The amnesia has ended: recorded in the background (a crash before that only prolongs it).
    pub(crate) fn record_amnesia_ended(self: &Arc<Self>) {
        let node = self.clone();
        self.seams.executor.spawn(
            "amnesia-ended",
            Box::pin(async move {
                if let Err(error) = node.logs.put_durable(META_GROUP, AMNESIA_KEY, 0u64.to_le_bytes().to_vec()).await {
                    tracing::warn!(%error, "cannot record that this node has caught up after its disk loss");
                }
            }),
        );
    }

    /// Where a group's replica here stands after a disk loss, as recorded on disk.
    pub(crate) fn stored_readmission(&self, group: u64) -> Option<Readmission> {
        self.logs.get(group, READMISSION_KEY).and_then(|bytes| Readmission::decode(&bytes))
    }

    /// Puts a newly started group's replica where its disk says it stands — or, for a `fresh`
    /// replica (an empty one in a group that existed before it: on a node that lost its disk,
    /// or added by a replica move or a join), out of the group until its leader admits it.
    /// Returns whether the replica goes (or went) through an admission: such a replica is never
    /// initialized from placement.
    pub(crate) async fn resume_readmission(self: &Arc<Self>, group: &Arc<Group>, fresh: bool) -> Result<bool, String> {
        let stored = match self.stored_readmission(group.id) {
            Some(stored) => Some(stored),
            None if fresh => {
                let lost_at = match self.amnesia_lost_at.load(Ordering::SeqCst) {
                    0 => self.seams.clock.now_ms().max(1) as u64,
                    lost_at => lost_at,
                };
                let awaiting = Readmission::Awaiting { lost_at };
                self.logs.put_durable(group.id, READMISSION_KEY, awaiting.encode()).await?;
                Some(awaiting)
            }
            None => None,
        };
        match stored {
            Some(Readmission::Awaiting { lost_at }) => {
                group.lost_at.store(lost_at, Ordering::SeqCst);
                group.rejoining.store(true, Ordering::SeqCst);
                group.raft.runtime_config().elect(false);
                let node = self.clone();
                let group = group.clone();
                self.seams
                    .executor
                    .spawn("ask-readmission", Box::pin(async move { node.ask_readmission(group).await }));
                Ok(true)
            }
            Some(Readmission::Readmitted { term }) => {
                group.term_floor.store(term, Ordering::SeqCst);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Asks every peer, now and then, until one that leads the group has readmitted this replica.
    async fn ask_readmission(self: Arc<Self>, group: Arc<Group>) {
        let pause = Duration::from_millis(self.options.raft.election_timeout_max_ms);
        // The group is registered just after this task is spawned; once it has been, its
        // absence means it was dropped (or replaced) and the task ends.
        let mut registered = false;
        loop {
            let lost_at = group.lost_at.load(Ordering::SeqCst);
            let current = self.group(group.id);
            if current.as_ref().is_some_and(|current| !Arc::ptr_eq(current, &group))
                || (current.is_none() && registered)
                || lost_at == 0
                || self.is_stopped()
            {
                return;
            }
            registered |= current.is_some();
            let request = PeerRequest {
                group_id: group.id,
                body: Some(peer_request::Body::Readmit(wire::Readmit {
                    lost_at,
                    replica: self.id(),
                    forwarded: false,
                })),
                incarnation: 0,
            };
            let node = &self;
            let asks = self.peer_ids().into_iter().map(|peer| {
                let request = request.clone();
                async move {
                    let _ = tokio::time::timeout(pause, node.transport.call(peer, request)).await;
                }
            });
            futures::future::join_all(asks).await;
            self.rest(pause).await;
        }
    }

    /// On the replica: its group's leader has taken it out of the voters.
    pub(crate) async fn readmitted(&self, group: &Group, lost_at: u64, term: u64) -> Result<(), RouteError> {
        let waiting_for = group.lost_at.load(Ordering::SeqCst);
        if waiting_for == 0 {
            return Ok(());
        }
        if waiting_for != lost_at {
            return Err(RouteError::Failed(format!(
                "a readmission for the disk loss at {lost_at}, but this replica waits for one at {waiting_for}"
            )));
        }
        let record = Readmission::Readmitted { term };
        self.logs.put_durable(group.id, READMISSION_KEY, record.encode()).await.map_err(RouteError::Failed)?;
        group.term_floor.fetch_max(term, Ordering::SeqCst);
        group.lost_at.store(0, Ordering::SeqCst);
        tracing::info!(
            node = self.id(),
            group = group.id,
            term,
            "readmitted after a disk loss; catching up as a learner"
        );
        group.heard_from_leader();
        Ok(())
    }

    /// On any node, asked by a replica: if this node leads the group, takes the replica out of
    /// the voters in the background (one such task per replica and group at a time); if it
    /// knows another leader, passes the request on (the replica may not know every node: one
    /// that lost its disk knows only the cluster's founders).
    pub(crate) async fn readmit(self: &Arc<Self>, group: Arc<Group>, request: wire::Readmit) -> Result<(), RouteError> {
        let (replica, lost_at) = (request.replica, request.lost_at);
        let leader = group.raft.metrics().borrow().current_leader;
        match leader {
            Some(leader) if leader == self.id() => {}
            Some(leader) if !request.forwarded && leader != replica => {
                let forwarded = PeerRequest {
                    group_id: group.id,
                    body: Some(peer_request::Body::Readmit(wire::Readmit { forwarded: true, ..request })),
                    incarnation: 0,
                };
                let wait = Duration::from_millis(self.options.raft.election_timeout_max_ms);
                return match tokio::time::timeout(wait, self.transport.call(leader, forwarded)).await {
                    Ok(Ok(PeerResponse { body: Some(peer_response::Body::Done(_)) })) => Ok(()),
                    _ => Err(RouteError::NotLeader(Some(leader))),
                };
            }
            other => return Err(RouteError::NotLeader(other)),
        }
        // A request for a loss this node already readmitted the replica for, arriving after the
        // replica became a voter again (delayed or duplicated), is stale: taking the voter out
        // again would start a membership change only its own readmission could finish.
        let served = self.readmissions_served.lock().expect("lock is not poisoned").get(&(group.id, replica)).copied();
        let is_voter = group.raft.metrics().borrow().membership_config.membership().voter_ids().any(|id| id == replica);
        if served == Some(lost_at) && is_voter {
            tracing::info!(group = group.id, replica, lost_at, "ignoring a stale readmission request");
            return Ok(());
        }
        let now = self.seams.clock.now_ms();
        self.readmissions_asked.lock().expect("lock is not poisoned").insert((group.id, replica), now);
        let key = format!("readmit:{}:{replica}", group.id);
        let node = self.clone();
        self.spawn_keyed("readmit", key, async move {
            if let Err(error) = node.remove_for_readmission(&group, replica, lost_at).await {
                tracing::debug!(group = group.id, replica, %error, "readmission not done yet; the replica asks again");
            }
        });
        Ok(())
    }

    async fn remove_for_readmission(&self, group: &Group, replica: NodeId, lost_at: u64) -> Result<(), String> {
        let raft = &group.raft;
        let timeout = Duration::from_millis(self.options.limits.append_timeout_ms);
        ensure_leads_as_voter(raft, self.id())?;
        let voters: BTreeSet<u64> = raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        if voters.contains(&replica) {
            // Never propose a removal whose new configuration has no live majority (another voter
            // awaits its own readmission, or has not answered this leader): it could never
            // commit, and an uncommitted membership change blocks every later one.
            let waiting = self.readmissions_waiting(group.id);
            let metrics = raft.metrics().borrow().clone();
            let acked = |id: &u64| {
                *id == self.id()
                    || metrics.replication.as_ref().and_then(|progress| progress.get(id).cloned()).flatten().is_some()
            };
            let remaining: BTreeSet<u64> = voters.iter().copied().filter(|id| *id != replica).collect();
            let live = remaining.iter().filter(|id| acked(id) && !waiting.contains(id)).count();
            if live * 2 <= remaining.len() {
                return Err(format!(
                    "removing {replica} would leave voters {remaining:?} without a live majority (awaiting readmission: {waiting:?})"
                ));
            }
            tracing::info!(group = group.id, replica, "taking a replica that lost its disk out of the voters");
            let removal = openraft::ChangeMembers::RemoveVoters(BTreeSet::from([replica]));
            match tokio::time::timeout(timeout, raft.change_membership(removal, false)).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(format!("removing the replica: {error}")),
                Err(_) => return Err("removing the replica timed out".into()),
            }
        }
        // The removal must be committed, and this node still the leader, before the replica may
        // listen to anyone: a linearizable read proves both (it commits this term's entry).
        match tokio::time::timeout(timeout, raft.ensure_linearizable()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(format!("confirming leadership: {error}")),
            Err(_) => return Err("confirming leadership timed out".into()),
        }
        let metrics = raft.metrics().borrow().clone();
        let membership = metrics.membership_config.clone();
        let committed = membership.log_id() <= &metrics.last_applied;
        if !committed || membership.membership().voter_ids().any(|id| id == replica) {
            return Err("the replica's removal is not committed yet".into());
        }
        let term = metrics.current_term;
        let request = PeerRequest {
            group_id: group.id,
            body: Some(peer_request::Body::Readmitted(wire::Readmitted { lost_at, term })),
            incarnation: 0,
        };
        let mut outcome = tokio::time::timeout(timeout, self.transport.call(replica, request.clone())).await;
        // `readmitted` is idempotent on the replica: a lost answer is asked again, so that this
        // leader learns the replica is readmitted and restores it as a voter at once (the group
        // has two voters meanwhile).
        let mut tries = 0;
        while matches!(outcome, Ok(Err(_))) && tries < READMITTED_RETRIES_MAX {
            tries += 1;
            self.rest(Duration::from_millis(self.options.raft.heartbeat_interval_ms)).await;
            outcome = tokio::time::timeout(timeout, self.transport.call(replica, request.clone())).await;
        }
        match outcome {
            Ok(Ok(PeerResponse { body: Some(peer_response::Body::Done(_)) })) => {
                tracing::info!(group = group.id, replica, term, "readmitted a replica that lost its disk");
                self.readmissions_served.lock().expect("lock is not poisoned").insert((group.id, replica), lost_at);
                self.readmissions_asked.lock().expect("lock is not poisoned").remove(&(group.id, replica));
                Ok(())
            }
            Ok(Ok(PeerResponse { body: Some(peer_response::Body::Error(error)) })) => Err(error.message),
            Ok(Ok(_)) => Err("an unexpected answer to a readmission".into()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("telling the replica timed out".into()),
        }
    }
}

impl Node {
    /// On every shard group this node leads: a replica the metadata places there but that is not
    /// among the voters (taken out for its readmission, and no move under way) is added back — it
    /// catches up as a learner first, then becomes a voter. A replica still asking to be
    /// readmitted is left out until it has been. (The metadata group's voters are
    /// kept by `control::membership` instead.)
    pub(crate) fn restore_voters(self: &Arc<Self>, state: &MetaState) {
        for shard in state.streams.values().flat_map(|stream| stream.shards.iter()) {
            if shard.expired || shard.moving.is_some() {
                continue;
            }
            let Some(group) = self.group(shard.group_id) else { continue };
            let metrics = group.raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            if metrics.current_leader != Some(self.id()) {
                continue;
            }
            if membership.get_joint_config().len() != 1 {
                // A change a deposed leader began (no move is under way): finish it.
                self.finish_membership_change(&group);
                continue;
            }
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            let waiting = self.readmissions_waiting(group.id);
            let missing: BTreeSet<u64> =
                shard.replicas.iter().copied().filter(|id| !voters.contains(id) && !waiting.contains(id)).collect();
            if missing.is_empty() {
                continue;
            }
            let key = format!("restore:{}", group.id);
            let node = self.clone();
            self.spawn_keyed("restore-voters", key, async move {
                // The metadata applied here may be older than the group's membership: after a
                // restart it is the last snapshot's until the log is applied again (openraft
                // restores a leader at once), and a lagging metadata replica may lead a shard
                // group. A replica moved away then looks like one taken out for its readmission
                // (seed 275). The voters were seen before this linearizable read, so a move that
                // took a replica out of them shows in it (still moving, or replaced).
                let Ok(current) = node.meta_read().await else { return };
                let placed = current
                    .streams
                    .values()
                    .flat_map(|stream| stream.shards.iter())
                    .find(|shard| shard.group_id == group.id && !shard.expired && shard.moving.is_none())
                    .map(|shard| shard.replicas.clone())
                    .unwrap_or_default();
                let missing: BTreeSet<u64> = missing.into_iter().filter(|id| placed.contains(id)).collect();
                if missing.is_empty() {
                    return;
                }
                if let Err(error) = node.add_voters(&group, missing).await {
                    tracing::debug!(group = group.id, %error, "a replica is not a voter again yet");
                }
            });
        }
    }

    /// On a group's leader: completes a membership change left joint (its proposer lost the
    /// leadership between the two steps; openraft leaves finishing it to the application) by
    /// moving to its new configuration.
    pub(crate) fn finish_membership_change(self: &Arc<Self>, group: &Arc<Group>) {
        let key = format!("finish-change:{}", group.id);
        let node = self.clone();
        let group = group.clone();
        self.spawn_keyed("finish-membership-change", key, async move {
            let timeout = Duration::from_millis(node.options.limits.append_timeout_ms);
            if !leads_as_voter(&group.raft, node.id()) {
                return;
            }
            let finish = openraft::ChangeMembers::AddVoterIds(BTreeSet::new());
            match tokio::time::timeout(timeout, group.raft.change_membership(finish, false)).await {
                Ok(Ok(_)) => tracing::info!(group = group.id, "finished a membership change left joint"),
                Ok(Err(error)) => tracing::debug!(group = group.id, %error, "a joint membership is not finished yet"),
                Err(_) => tracing::debug!(group = group.id, "finishing a joint membership timed out"),
            }
        });
    }

    /// The replicas of `group` that asked this node to readmit them lately (they ask once per
    /// maximal election timeout while they wait).
    pub(crate) fn readmissions_waiting(&self, group: u64) -> BTreeSet<NodeId> {
        let recent_ms = 2 * self.options.raft.election_timeout_max_ms as i64;
        let now = self.seams.clock.now_ms();
        let mut asked = self.readmissions_asked.lock().expect("lock is not poisoned");
        asked.retain(|_, at| now - *at < recent_ms);
        asked.keys().filter(|(asked_group, _)| *asked_group == group).map(|(_, replica)| *replica).collect()
    }

    async fn add_voters(&self, group: &Group, missing: BTreeSet<u64>) -> Result<(), String> {
        let raft = &group.raft;
        let timeout = Duration::from_millis(self.options.limits.append_timeout_ms);
        for id in &missing {
            ensure_leads_as_voter(raft, self.id())?;
            match tokio::time::timeout(timeout, raft.add_learner(*id, openraft::EmptyNode {}, false)).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(format!("adding learner {id}: {error}")),
                Err(_) => return Err(format!("adding learner {id} timed out")),
            }
            wait_caught_up(raft, *id, timeout).await?;
        }
        ensure_leads_as_voter(raft, self.id())?;
        let change = openraft::ChangeMembers::AddVoterIds(missing.clone());
        match tokio::time::timeout(timeout, raft.change_membership(change, false)).await {
            Ok(Ok(_)) => {
                tracing::info!(group = group.id, ?missing, "replicas are voters again");
                Ok(())
            }
            Ok(Err(error)) => Err(format!("making {missing:?} voters: {error}")),
            Err(_) => Err("making the replicas voters timed out".into()),
        }
    }
}

/// Whether this node may change the group's membership now: it leads the group and is one of
/// its voters. A leader whose own removal is appended keeps replicating until the removal
/// commits, but proposes no further change (openraft asserts it does not).
pub(crate) fn leads_as_voter(raft: &crate::raft::types::Raft, id: NodeId) -> bool {
    let metrics = raft.metrics().borrow().clone();
    metrics.state.is_leader()
        && metrics.current_leader == Some(id)
        && metrics.membership_config.membership().voter_ids().any(|voter| voter == id)
}

/// Fails unless [`leads_as_voter`].
pub(crate) fn ensure_leads_as_voter(raft: &crate::raft::types::Raft, id: NodeId) -> Result<(), String> {
    if leads_as_voter(raft, id) {
        Ok(())
    } else {
        Err("this node no longer leads the group as one of its voters".into())
    }
}

/// On a group's leader: waits until replica `id` has acknowledged every entry the leader had
/// when called. (openraft's blocking `add_learner` counts a learner within
/// `replication_lag_threshold` entries as caught up, and counts nothing a replica does not
/// acknowledge — one still waiting for its admission acknowledges nothing — so a learner is
/// made a voter only once this returns.)
pub(crate) async fn wait_caught_up(
    raft: &crate::raft::types::Raft,
    id: NodeId,
    timeout: Duration,
) -> Result<(), String> {
    let target = raft.metrics().borrow().last_log_index;
    raft.wait(Some(timeout))
        .metrics(
            |metrics| {
                let matched = metrics.replication.as_ref().and_then(|progress| progress.get(&id).cloned()).flatten();
                matched.map(|log_id| log_id.index) >= target
            },
            "the learner has every entry",
        )
        .await
        .map(|_| ())
        .map_err(|_| format!("learner {id} is still catching up"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readmission_records_round_trip() {
        for record in [Readmission::Awaiting { lost_at: 7 }, Readmission::Readmitted { term: u64::MAX }] {
            assert_eq!(Readmission::decode(&record.encode()), Some(record));
        }
        assert_eq!(Readmission::decode(b""), None);
        assert_eq!(Readmission::decode(b"F123"), None);
        assert_eq!(Readmission::decode(b"X\0\0\0\0\0\0\0\0"), None);
    }
}
