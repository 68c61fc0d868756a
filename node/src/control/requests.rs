//! How a node reads and changes the metadata: changes are proposed to the metadata group's
//! leader and applied here before they are acknowledged; reads take a read index from the leader
//! and apply up to it, so every read sees every change acknowledged before it began.

use std::sync::Arc;
use std::time::Duration;

use riffle_proto::peer::{self as wire, group_command, peer_request, peer_response, GroupCommand, MetaCommand};

use crate::api::ApiError;
use crate::control::metadata::{MetaRejection, MetaState, META_GROUP};
use crate::node::{Group, Node};
use crate::raft::types::ApplyResult;
use crate::routing::{encode_rejection, RouteError, REJECTED};
use crate::transport::NodeId;

impl Node {
    /// Runs a metadata command through the metadata group. The outer error is a failure to
    /// reach the group; the inner one is the state machine's refusal.
    ///
    /// On success the command is committed and applied on this node too, so anything this node
    /// answers afterwards reflects it (a client reads its own writes through the node it wrote
    /// through; through other nodes, [`Node::meta_read`] gives the same).
    pub async fn propose_meta(&self, command: MetaCommand) -> Result<Result<(), MetaRejection>, ApiError> {
        let replicas: Vec<NodeId> = self.member_ids();
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
        let replicas: Vec<NodeId> = self.member_ids();
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

    /// A metadata command forwarded to this node as the metadata leader: committed, applied,
    /// answered with its log index (or the state machine's refusal).
    pub(crate) async fn serve_meta_command(
        &self,
        group: &Group,
        command: MetaCommand,
    ) -> Result<peer_response::Body, RouteError> {
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

    /// A read index: this node confirms it leads the metadata group with a quorum and names the
    /// index every committed change is at or below.
    pub(crate) async fn serve_meta_read_index(&self, group: &Group) -> Result<peer_response::Body, RouteError> {
        let wait = Duration::from_millis(self.options.limits.leader_wait_ms);
        crate::raft::read_index(&group.raft, wait).await.map(peer_response::Body::MetaBarrierIndex)
    }
}
