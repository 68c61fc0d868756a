//! `riffle-node`: one Riffle server.
//!
//! A node holds replicas of Raft groups: the metadata group (streams, shards, placement) and
//! one group per shard. It persists Raft logs in one raft-engine instance shared by every group
//! on the node, keeps each shard's committed records in a segment store, talks to its peers over
//! QUIC, and serves clients over gRPC and the Kinesis HTTP API.
//!
//! Layout, by plane, in the order a record passes through: [`api`] → [`service`] → [`routing`]
//! → [`shard`] → [`raft`] → [`storage`] → [`fs`]; beside them [`control`] (the metadata group
//! and what each node does to follow it) and [`transport`]. [`node`] ties them together.
//!
//! Boundaries: everything nondeterministic — files ([`fs`]), the peer network ([`transport`]),
//! wall-clock time and randomness and dedicated threads ([`seam`]) — sits behind a seam so the
//! simulator (`riffle-sim`) can run this same code in one seeded thread.
//!
//! Invariants held here:
//! - a put is acknowledged only after its log entry is committed (fsynced on a quorum);
//! - sequence numbers are strictly increasing per shard, arrival timestamps never decrease;
//! - a checksum failure is corruption, never the end of a log.

pub mod api;
pub mod config;
pub mod control;
pub mod dev;
pub mod fs;
pub mod keys;
pub mod node;
pub mod planted;
pub mod raft;
pub mod routing;
pub mod seam;
pub mod sequence;
pub mod service;
pub mod shard;
pub mod storage;
pub mod transport;
