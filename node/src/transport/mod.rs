//! The peer-transport seam.
//!
//! Nodes exchange [`riffle_proto::peer::PeerRequest`]s and get one
//! [`riffle_proto::peer::PeerResponse`] back per request. Many Raft groups share one
//! transport (and, for QUIC, one connection per node pair). Production uses
//! [`quic::QuicTransport`]; the simulator uses an in-memory network with faults.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use riffle_proto::peer::{PeerRequest, PeerResponse};

pub mod quic;
pub mod tls;

/// Identifies a node in the cluster.
pub type NodeId = u64;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a request did not get a response. `Unreachable` and `UnknownPeer` mean the request was
/// not delivered; after `Lost`, `Timeout` or `Malformed` it may have run.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("peer {0} is unknown to this node")]
    UnknownPeer(NodeId),
    #[error("peer {peer} is unreachable: {reason}")]
    Unreachable { peer: NodeId, reason: String },
    /// The request may have reached the peer and run there; its response was lost.
    #[error("the exchange with peer {peer} broke after the request was sent: {reason}")]
    Lost { peer: NodeId, reason: String },
    /// No response in time; the request may have run.
    #[error("request to peer {peer} timed out after {timeout_ms} ms")]
    Timeout { peer: NodeId, timeout_ms: u64 },
    #[error("peer {peer} sent a malformed message: {reason}")]
    Malformed { peer: NodeId, reason: String },
}

impl TransportError {
    /// Whether the request certainly did not run on the peer (so retrying cannot duplicate it).
    pub fn certainly_not_delivered(&self) -> bool {
        matches!(self, TransportError::Unreachable { .. } | TransportError::UnknownPeer(_))
    }
}

/// Sends requests to other nodes.
pub trait PeerTransport: Send + Sync + 'static {
    /// Sends `request` to `target` and waits for its response.
    fn call(&self, target: NodeId, request: PeerRequest) -> BoxFuture<'_, Result<PeerResponse, TransportError>>;

    /// Where `peer` is reached, learned from the cluster's metadata (a node that joined, or
    /// moved). Known peers at the same address are left as they are. Transports that reach
    /// nodes by id alone ignore it.
    fn learn_peer(&self, _peer: NodeId, _address: std::net::SocketAddr) {}
}

/// Serves requests arriving from other nodes. The node installs one handler per transport.
pub trait PeerHandler: Send + Sync + 'static {
    fn handle(&self, from: NodeId, request: PeerRequest) -> BoxFuture<'_, PeerResponse>;
}

pub type SharedHandler = Arc<dyn PeerHandler>;
