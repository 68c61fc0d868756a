//! `riffle-jepsen`: the process-level fault harness (to come).
//!
//! It will run real `riffle-node` processes in Linux network namespaces made by the harness,
//! inject faults (partitions, process kills and pauses, clock jumps, disk faults), record a
//! history of client operations and check it with the same checker as the simulator
//! (`riffle_check`, the crate `check/`). Today the process-level failover test lives in
//! `node/tests/cluster_failover.rs`.

pub mod net;
