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
