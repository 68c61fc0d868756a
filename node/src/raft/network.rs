//! openraft's network for one group over the node's shared [`PeerTransport`].

use std::sync::Arc;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{AnyError, EmptyNode};
use riffle_proto::peer::{peer_request, peer_response, PeerRequest};

use super::codec;
use super::types::TypeConfig;
use crate::transport::{NodeId, PeerTransport, TransportError};

/// Creates a client per target for one group.
pub struct GroupNetworkFactory {
    pub group: u64,
    pub transport: Arc<dyn PeerTransport>,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, _node: &EmptyNode) -> Self::Network {
        GroupNetwork { group: self.group, target, transport: self.transport.clone() }
    }
}

pub struct GroupNetwork {
    group: u64,
    target: NodeId,
    transport: Arc<dyn PeerTransport>,
}

type RpcError<E = openraft::error::Infallible> = RPCError<u64, EmptyNode, RaftError<u64, E>>;

fn transport_error<E: std::error::Error>(error: TransportError) -> RpcError<E> {
    let any = AnyError::error(error.to_string());
    match error {
        TransportError::Unreachable { .. } | TransportError::UnknownPeer(_) => {
            RPCError::Unreachable(Unreachable::new(&any))
        }
        TransportError::Lost { .. } | TransportError::Timeout { .. } | TransportError::Malformed { .. } => {
            RPCError::Network(NetworkError::new(&any))
        }
    }
}

fn remote_problem<E: std::error::Error>(what: String) -> RpcError<E> {
    RPCError::Network(NetworkError::new(&AnyError::error(what)))
}

impl GroupNetwork {
    async fn call_mapped<E: std::error::Error>(
        &self,
        body: peer_request::Body,
        option: &RPCOption,
    ) -> Result<peer_response::Body, RpcError<E>> {
        let request = PeerRequest { group_id: self.group, body: Some(body), incarnation: 0 };
        let call = self.transport.call(self.target, request);
        let response = match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(result) => result.map_err(transport_error)?,
            Err(_) => {
                return Err(remote_problem(format!(
                    "no answer from node {} within {:?}",
                    self.target,
                    option.hard_ttl()
                )))
            }
        };
        match response.body {
            Some(peer_response::Body::Error(error)) => {
                Err(remote_problem(format!("node {}: {}: {}", self.target, error.kind, error.message)))
            }
            Some(body) => Ok(body),
            None => Err(remote_problem(format!("node {} sent an empty response", self.target))),
        }
    }
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcError> {
        let body = peer_request::Body::AppendEntries(codec::append_request_to_wire(&rpc));
        match self.call_mapped(body, &option).await? {
            peer_response::Body::AppendEntries(response) => {
                codec::append_response_from_wire(response).map_err(|error| remote_problem(error.to_string()))
            }
            _ => Err(remote_problem(format!("node {} answered append-entries with another message", self.target))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcError<InstallSnapshotError>> {
        let body = peer_request::Body::InstallSnapshot(codec::install_snapshot_request_to_wire(&rpc));
        match self.call_mapped(body, &option).await? {
            peer_response::Body::InstallSnapshot(response) => {
                codec::install_snapshot_response_from_wire(response).map_err(|error| remote_problem(error.to_string()))
            }
            _ => Err(remote_problem(format!("node {} answered install-snapshot with another message", self.target))),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> Result<VoteResponse<u64>, RpcError> {
        let body = peer_request::Body::Vote(codec::vote_request_to_wire(&rpc));
        match self.call_mapped(body, &option).await? {
            peer_response::Body::Vote(response) => {
                codec::vote_response_from_wire(response).map_err(|error| remote_problem(error.to_string()))
            }
            _ => Err(remote_problem(format!("node {} answered vote with another message", self.target))),
        }
    }
}
