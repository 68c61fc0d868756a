//! The control plane: the metadata group (streams, shards, placement, consumers) and what each
//! node does to follow it.
//!
//! - [`metadata`]: the metadata state machine — every change is a command in the metadata
//!   group's log, applied in the same order on every node;
//! - [`placement`]: where a shard's replicas go;
//! - [`membership`]: the cluster's nodes, joins, decommissions and replica moves (`members`:
//!   what a node does about them);
//! - [`scaling`]: UpdateShardCount's plan of reshard steps;
//! - [`on_demand`]: ON_DEMAND streams' splits and merges from measured write load;
//! - `load`: shard leaders' load reports and the metadata leader's table of them;
//! - [`retention`]: expiring records past their stream's retention period;
//! - `status`: the cluster status (nodes, leaders, replicas, lag) gathered from every node;
//! - `requests`: how a node proposes changes and reads the metadata linearizably;
//! - `reconcile`: starting and removing the shard groups placed on this node.

mod load;
mod members;
pub mod membership;
pub mod metadata;
pub mod on_demand;
pub mod placement;
mod readmission;
mod reconcile;
mod requests;
pub mod retention;
pub mod scaling;
mod status;

pub(crate) use load::ShardLoads;
