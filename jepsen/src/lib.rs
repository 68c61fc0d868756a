//! `riffle-jepsen`: the process-level fault harness.
//!
//! It builds its own test network on one machine — a network namespace per node, named by
//! zone, joined by veth pairs to a bridge in a switch namespace, and the clients in a namespace
//! of their own ([`net`]) — runs the real `riffle-node` binaries there ([`cluster`]) with the
//! test-only storage mode that loses unsynced writes on `kill -9`, drives producers (Kinesis
//! HTTP API through the AWS SDK, and gRPC) and iterator readers against them ([`workload`]),
//! injects the faults of a named schedule ([`nemesis`]), heals, checks that every shard takes
//! writes again, drains every shard and every replica, and checks the history with the same
//! checker as the simulator (`riffle_check`). Each run leaves a report directory ([`report`]).

pub mod cluster;
pub mod nemesis;
pub mod net;
pub mod plot;
pub mod relay;
pub mod report;
pub mod run;
pub mod workload;
