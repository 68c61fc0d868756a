//! Storage: raft-engine for Raft logs and votes, and the per-shard segment store.
