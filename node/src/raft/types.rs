//! The Raft type configuration shared by every group on a node.

use riffle_proto::peer::GroupCommand;

use super::runtime::RiffleRuntime;

/// What applying one entry produced, returned to the proposer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyResult {
    /// A shard batch was stored: record `i` got sequence `sequence::of_record(log_index, i)`.
    Appended { log_index: u64, timestamp_ms: i64 },
    /// A metadata command was applied; `Err` carries a client-facing rejection.
    Meta(Result<(), crate::control::metadata::MetaRejection>),
    /// The shard is sealed at this log index (by this entry or an earlier seal); an append
    /// ordered after the seal was refused and stored nothing.
    Sealed { seal_index: u64 },
    /// Nothing to report (blank and membership entries).
    Nothing,
}

openraft::declare_raft_types!(
    /// Every group (the metadata group and each shard) uses this configuration.
    pub TypeConfig:
        D = GroupCommand,
        R = ApplyResult,
        NodeId = u64,
        Node = openraft::EmptyNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = super::snapshot::SnapshotData,
        AsyncRuntime = RiffleRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Membership = openraft::Membership<u64, openraft::EmptyNode>;
pub type StoredMembership = openraft::StoredMembership<u64, openraft::EmptyNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, openraft::EmptyNode>;
pub type StorageError = openraft::StorageError<u64>;
