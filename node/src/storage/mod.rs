//! Storage: raft-engine for Raft logs and votes, and the per-shard segment store.
//!
//! The on-disk formats and how raft-engine is used are described in `docs/storage.md`.

pub mod engine_fs;
pub mod error;
pub mod failstop;
pub mod segment;
pub mod segment_format;

pub use engine_fs::{open_engine, open_engine_with_fence, EngineFence, EngineFileSystem, EntryCodec, RaftEngine};
pub use error::StorageError;
pub use failstop::FailStop;
pub use segment::{BatchLogId, ReadOutcome, SegmentStore, SegmentStoreConfig, ShardSegments};
