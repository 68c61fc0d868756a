//! Routing: every request for a group goes to the group's leader — served here when this node
//! leads, forwarded over the peer transport otherwise, following `NotLeader` hints.
//!
//! An append is retried only when it certainly did not run (not the leader, unreachable before
//! sending); when its outcome is unknown the caller is told so. Reads are idempotent and retried.

use std::sync::Arc;
use std::time::Duration;

use riffle_proto::peer::{
    self as wire, peer_request, peer_response, AppendResult, ForwardRead, PeerRequest, PeerResponse, ReadResult,
    RecordInput, RemoteError,
};

use crate::api::ApiError;
use crate::control::metadata::{MetaRejection, ShardMeta};
use crate::node::{Group, Node};
use crate::transport::{NodeId, PeerTransport};

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
    /// The shard is sealed (resharding closed it); the append did not run and belongs in a
    /// child shard.
    Closed,
}

impl RouteError {
    pub(crate) fn to_remote(&self) -> RemoteError {
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
            RouteError::Closed => {
                RemoteError { kind: "Closed".into(), message: "the shard is sealed".into(), leader_hint: None }
            }
        }
    }

    pub(crate) fn from_remote(error: RemoteError) -> RouteError {
        match error.kind.as_str() {
            "NotLeader" => RouteError::NotLeader(error.leader_hint),
            "NoGroup" => RouteError::NoGroup,
            "Failed" => RouteError::Failed(error.message),
            "Throttled" => RouteError::Throttled,
            "Closed" => RouteError::Closed,
            _ => RouteError::Unknown(error.message),
        }
    }
}

impl Node {
    /// The group, waiting (bounded) for it if the metadata places it here but this node has
    /// not started it yet — peers of a new stream reach out as soon as they start theirs.
    pub(crate) async fn group_soon(&self, group_id: u64) -> Option<Arc<Group>> {
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
    pub(crate) async fn leader_of(&self, group: &Group) -> Option<NodeId> {
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
    pub(crate) async fn route(
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
            let known = self.group(group_id).and_then(|group| group.raft.metrics().borrow().current_leader);
            let others: Vec<NodeId> = replicas.iter().copied().filter(|replica| *replica != self.id()).collect();
            let target = match (hint.take(), known) {
                (Some(target), _) | (None, Some(target)) => target,
                // No leader known here (this node is starting, catching up, or the group is
                // electing): ask the other replicas instead of waiting for news, so a request
                // never waits on the node it happened to reach.
                (None, None) if !others.is_empty() => {
                    let target = others[next_replica % others.len()];
                    next_replica += 1;
                    target
                }
                (None, None) => match self.group(group_id) {
                    Some(group) => match self.leader_of(&group).await {
                        Some(leader) => leader,
                        None => return Err(RouteError::Failed(format!("group {group_id} has no leader"))),
                    },
                    None => return Err(RouteError::NoGroup),
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
                Err(RouteError::Closed) => return Err(RouteError::Closed),
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
    pub(crate) async fn forward(
        &self,
        group_id: u64,
        target: NodeId,
        body: peer_request::Body,
    ) -> Result<peer_response::Body, RouteError> {
        let request = PeerRequest { group_id, body: Some(body), incarnation: 0 };
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
    /// `Err(RouteError::Closed)` means the shard was sealed first and nothing was stored: the
    /// records belong in its children; [`route_failure`] words the other errors for clients.
    pub async fn append(&self, shard: &ShardMeta, records: Vec<RecordInput>) -> Result<AppendResult, RouteError> {
        let body = peer_request::Body::ForwardAppend(wire::ForwardAppend { records });
        match self.route(shard.group_id, &shard.replicas, body, false).await {
            Ok(peer_response::Body::Append(result)) => Ok(result),
            Ok(_) => Err(RouteError::Unknown("a node answered an append with another message".into())),
            Err(error) => Err(error),
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

    /// Serves a forwarded request for a group hosted here: a shard's append or read, or a
    /// metadata command or read index.
    pub(crate) async fn serve(
        &self,
        group_id: u64,
        body: peer_request::Body,
    ) -> Result<peer_response::Body, RouteError> {
        let group = self.group(group_id).ok_or(RouteError::NoGroup)?;
        match body {
            peer_request::Body::ForwardAppend(append) => self.serve_append(&group, append).await,
            peer_request::Body::ForwardRead(read) => self.serve_read(&group, read).await,
            peer_request::Body::ForwardMeta(command) => self.serve_meta_command(&group, command).await,
            peer_request::Body::MetaBarrier(_) => self.serve_meta_read_index(&group).await,
            peer_request::Body::LoadReport(report) => self.serve_load_report(&group, report),
            _ => Err(RouteError::Failed("not a forwarded request".into())),
        }
    }
}

/// How a routing failure reads to a client.
pub fn route_failure(shard: &ShardMeta, error: RouteError) -> ApiError {
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
        // The service reroutes appends to a sealed shard; a read never sees this.
        RouteError::Closed => {
            ApiError::ResourceInUse(format!("shard {} is closed; retry in its child shard", shard.index))
        }
    }
}

pub(crate) const REJECTED: &str = "rejected: ";

pub(crate) fn encode_rejection(rejection: &MetaRejection) -> String {
    format!("{REJECTED}{}", serde_json::to_string(rejection).unwrap_or_else(|_| format!("{rejection:?}")))
}
