//! Raft for every group on a node (openraft 0.9 with the v2 storage traits): the type
//! configuration, the wire codec, log storage on raft-engine, state machines, and the network
//! over the shared peer transport.

// openraft's `StorageError` is large, and its storage traits require it; boxing it at each call
// would only move the size elsewhere.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod log_store;
pub mod network;
pub mod runtime;
pub mod snapshot;
pub mod state_machine;
pub mod types;

/// A linearizable read index: confirms with a quorum that this node leads `raft`, then waits
/// (at most `wait`) until its state machine has applied every entry committed before the call,
/// and returns that index. Errors name the leader to go to when this node is not it.
///
/// openraft 0.9's `ensure_linearizable` alone reads at the larger of the leader's first entry of
/// its term and its commit index. A leader that restarts and resumes its term without an
/// election knows only the commit index of its snapshot, which can lie below entries committed
/// before the restart (the simulator found a restarted metadata leader answering a barrier at
/// index 31 when 47 was committed, so a node dropped a replica it had just been given). Every
/// committed entry is in the leader's log, so its last log index, taken before the quorum
/// confirms the leadership, is a safe read index.
pub async fn read_index(raft: &types::Raft, wait: std::time::Duration) -> Result<u64, crate::routing::RouteError> {
    use crate::routing::RouteError;
    let metrics = raft.metrics().borrow().clone();
    if crate::planted::active(crate::planted::Bug::StaleRead) {
        return match metrics.state.is_leader() {
            true => Ok(metrics.last_applied.map_or(0, |log_id| log_id.index)),
            false => Err(RouteError::NotLeader(metrics.current_leader)),
        };
    }
    let last_log = metrics.last_log_index;
    let read = match raft.ensure_linearizable().await {
        Ok(read) => read.map(|log_id| log_id.index),
        Err(error) => {
            return Err(match error.forward_to_leader() {
                Some(forward) => RouteError::NotLeader(forward.leader_id),
                None => RouteError::Failed(error.to_string()),
            })
        }
    };
    let index = read.max(last_log).unwrap_or(0);
    raft.wait(Some(wait))
        .applied_index_at_least(Some(index), "applied up to the read index")
        .await
        .map_err(|error| RouteError::Failed(format!("not applied up to the read index {index} in time: {error}")))?;
    Ok(index)
}
