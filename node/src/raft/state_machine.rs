//! State machines: the metadata group's [`MetaState`] and each shard's segment store.
//!
//! Shard state machine durability: applied batches go to the segment store, which writes them
//! behind the commit. What the state machine reports as applied after a restart is what the
//! segment store has made durable (or the `applied` marker written after a flush when a
//! snapshot was built), so entries after it are replayed from the Raft log — the log is purged
//! only up to a snapshot, and a snapshot is built only after the segments are flushed.

use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, StorageIOError};
use prost::Message;
use riffle_proto::peer::{self as wire, group_command};
use tokio::sync::watch;

use super::codec;
use super::log_store::{DurableFloor, LogEngine};
use super::snapshot::SnapshotData;
use super::types::{ApplyResult, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::control::metadata::{MetaRejection, MetaState};
use crate::shard::SealState;
use crate::storage::segment::{read_fully, BatchLogId, ShardSegments};

const MEMBERSHIP_KEY: &[u8] = b"membership";
const APPLIED_KEY: &[u8] = b"applied";
/// The first sequence a shard keeps (retention), little-endian u64; absent: nothing trimmed.
const TRIMMED_KEY: &[u8] = b"trimmed";
const SNAPSHOT_KEY: &[u8] = b"snapshot";
const SEALED_KEY: &[u8] = b"sealed";
/// A shard snapshot: this header (magic, format version, flags, seal index, and from version 2
/// the first kept sequence; integers little-endian), then the segments' batches that are kept.
/// Bit 0 of the flags: the shard is sealed.
const SHARD_SNAPSHOT_MAGIC: [u8; 4] = *b"RFSS";
const SHARD_SNAPSHOT_VERSION: u16 = 2;
const SHARD_SNAPSHOT_HEADER_BYTES: usize = 24;
const SHARD_SNAPSHOT_V1_HEADER_BYTES: usize = 16;

/// What a shard snapshot carries besides its batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ShardSnapshotHeader {
    sealed_at: Option<u64>,
    /// Records below this sequence expired (retention) on the snapshot's source.
    trim_sequence: u64,
}

fn to_batch_log_id(log_id: &LogId) -> BatchLogId {
    BatchLogId { term: log_id.leader_id.term, node_id: log_id.leader_id.node_id, index: log_id.index }
}

fn from_batch_log_id(log_id: &BatchLogId) -> LogId {
    LogId::new(openraft::CommittedLeaderId::new(log_id.term, log_id.node_id), log_id.index)
}

fn read_error(error: impl ToString) -> StorageError {
    StorageIOError::read_state_machine(AnyError::error(error.to_string())).into()
}

fn write_error(error: impl ToString) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(error.to_string())).into()
}

fn snapshot_id(last: &Option<LogId>) -> String {
    match last {
        Some(log_id) => format!("{}-{}-{}", log_id.leader_id.term, log_id.leader_id.node_id, log_id.index),
        None => "empty".to_string(),
    }
}

/// The state machine of any group on this node.
pub enum GroupStateMachine {
    Meta(MetaStateMachine),
    Shard(ShardStateMachine),
}

/// The metadata group's state machine; it publishes every applied state on a watch channel.
pub struct MetaStateMachine {
    logs: Arc<LogEngine>,
    floor: Arc<DurableFloor>,
    state: MetaState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    published: watch::Sender<Arc<MetaState>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct MetaSnapshot {
    state: MetaState,
    meta: Vec<u8>,
}

impl MetaStateMachine {
    /// Opens the state machine from its last persisted snapshot, if any.
    pub fn open(
        group: u64,
        logs: Arc<LogEngine>,
        floor: Arc<DurableFloor>,
    ) -> Result<(MetaStateMachine, watch::Receiver<Arc<MetaState>>), StorageError> {
        let mut machine = MetaStateMachine {
            logs,
            floor,
            state: MetaState::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            published: watch::channel(Arc::new(MetaState::default())).0,
        };
        if let Some(bytes) = machine.logs.get(group, SNAPSHOT_KEY) {
            let (meta, state) = decode_meta_snapshot(&bytes)?;
            machine.state = state;
            machine.last_applied = meta.last_log_id;
            machine.membership = meta.last_membership;
        }
        machine.floor.start_at(machine.last_applied);
        let (published, receiver) = watch::channel(Arc::new(machine.state.clone()));
        machine.published = published;
        Ok((machine, receiver))
    }

    fn snapshot_meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: snapshot_id(&self.last_applied),
        }
    }

    fn encode_snapshot(&self) -> Result<Vec<u8>, StorageError> {
        let meta = codec::snapshot_meta_to_wire(&self.snapshot_meta()).encode_to_vec();
        serde_json::to_vec(&MetaSnapshot { state: self.state.clone(), meta }).map_err(write_error)
    }
}

fn decode_meta_snapshot(bytes: &[u8]) -> Result<(SnapshotMeta, MetaState), StorageError> {
    let snapshot: MetaSnapshot = serde_json::from_slice(bytes).map_err(read_error)?;
    let meta = wire::SnapshotMeta::decode(snapshot.meta.as_slice()).map_err(read_error)?;
    let meta = codec::snapshot_meta_from_wire(meta).map_err(read_error)?;
    Ok((meta, snapshot.state))
}

/// The highest applied point a shard's state machine recorded besides its segments: its
/// applied marker or its stored membership's log id (0 without either).
pub(crate) fn recorded_applied_index(logs: &LogEngine, group: u64) -> u64 {
    let marker = logs
        .get(group, APPLIED_KEY)
        .and_then(|bytes| wire::LogId::decode(bytes.as_slice()).ok())
        .and_then(|log_id| codec::log_id_from_wire(log_id).ok())
        .map_or(0, |log_id| log_id.index);
    let membership = logs
        .get(group, MEMBERSHIP_KEY)
        .and_then(|bytes| wire::StoredMembership::decode(bytes.as_slice()).ok())
        .and_then(|stored| codec::stored_membership_from_wire(stored).ok())
        .and_then(|stored| stored.log_id().map(|log_id| log_id.index))
        .unwrap_or(0);
    marker.max(membership)
}

/// A shard's state machine over its segments.
pub struct ShardStateMachine {
    group: u64,
    logs: Arc<LogEngine>,
    floor: Arc<DurableFloor>,
    segments: ShardSegments,
    /// Set when the seal is applied (and persisted), read by the leader and by reads.
    seal: SealState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// Set once `Raft::new` has returned. While openraft starts it reads the current snapshot
    /// only for its metadata; answering that without data keeps a restart from exporting the
    /// whole shard.
    started: Arc<std::sync::atomic::AtomicBool>,
}

impl ShardStateMachine {
    pub fn open(
        group: u64,
        logs: Arc<LogEngine>,
        segments: ShardSegments,
        seal: SealState,
        started: Arc<std::sync::atomic::AtomicBool>,
        floor: Arc<DurableFloor>,
    ) -> Result<ShardStateMachine, StorageError> {
        if let Some(bytes) = logs.get(group, SEALED_KEY) {
            let index: [u8; 8] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| read_error(format!("a seal record of {} bytes", bytes.len())))?;
            seal.seal(u64::from_le_bytes(index));
        }
        let membership = match logs.get(group, MEMBERSHIP_KEY) {
            Some(bytes) => {
                let stored = wire::StoredMembership::decode(bytes.as_slice()).map_err(read_error)?;
                codec::stored_membership_from_wire(stored).map_err(read_error)?
            }
            None => StoredMembership::default(),
        };
        let marker = match logs.get(group, APPLIED_KEY) {
            Some(bytes) => {
                let log_id = wire::LogId::decode(bytes.as_slice()).map_err(read_error)?;
                Some(codec::log_id_from_wire(log_id).map_err(read_error)?)
            }
            None => None,
        };
        if let Some(bytes) = logs.get(group, TRIMMED_KEY) {
            let sequence: [u8; 8] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| read_error(format!("a trim record of {} bytes", bytes.len())))?;
            // Files a crash left behind after the trim point was persisted go now.
            segments.trim(u64::from_le_bytes(sequence)).map_err(read_error)?;
        }
        let durable = segments.last_durable().as_ref().map(from_batch_log_id);
        // A membership is persisted only once the segments hold everything applied before it
        // (see `apply`), so its log id is an applied point too. Without it a restart could
        // report a membership newer than the applied point, and a snapshot with
        // last_membership > last_log_id makes a follower's openraft panic.
        let last_applied = durable.max(marker).max(*membership.log_id());
        floor.start_at(last_applied);
        Ok(ShardStateMachine { group, logs, floor, segments, seal, last_applied, membership, started })
    }

    async fn persist_membership(&self) -> Result<(), StorageError> {
        let bytes = codec::stored_membership_to_wire(&self.membership).encode_to_vec();
        self.logs.put_durable(self.group, MEMBERSHIP_KEY, bytes).await.map_err(write_error)
    }

    /// Seals the shard at `index` (durably, before the seal is reported), or reports the
    /// earlier seal.
    async fn seal(&self, index: u64) -> Result<u64, StorageError> {
        if let Some(existing) = self.seal.sealed_at() {
            return Ok(existing);
        }
        self.logs.put_durable(self.group, SEALED_KEY, index.to_le_bytes().to_vec()).await.map_err(write_error)?;
        Ok(self.seal.seal(index))
    }

    /// Expires the records that arrived before `before_ms`: the first kept sequence is made
    /// durable, then the segments drop what they can.
    async fn trim(&self, before_ms: i64) -> Result<(), StorageError> {
        self.trim_to(self.segments.sequence_at_timestamp(before_ms).map_err(read_error)?).await
    }

    /// Expires every record below `keep_from` (durably first); a lower point changes nothing.
    async fn trim_to(&self, keep_from: u64) -> Result<(), StorageError> {
        if keep_from <= self.segments.trim_sequence() {
            return Ok(());
        }
        self.logs.put_durable(self.group, TRIMMED_KEY, keep_from.to_le_bytes().to_vec()).await.map_err(write_error)?;
        self.segments.trim(keep_from).map_err(write_error)?;
        Ok(())
    }

    async fn persist_applied_marker(floor: &DurableFloor, applied: &Option<LogId>) -> Result<(), StorageError> {
        let Some(applied) = applied else { return Ok(()) };
        let bytes = codec::log_id_to_wire(applied).encode_to_vec();
        floor.persist_marker(APPLIED_KEY, *applied, bytes).await.map(|_| ()).map_err(write_error)
    }
}

/// Builds snapshots. A shard snapshot only marks a durable point (its data stays in the
/// segments and is exported when a follower needs it); a metadata snapshot holds the state.
pub enum GroupSnapshotBuilder {
    Meta { floor: Arc<DurableFloor>, encoded: Result<Vec<u8>, String>, meta: SnapshotMeta },
    Shard { floor: Arc<DurableFloor>, segments: ShardSegments, meta: SnapshotMeta },
}

impl RaftSnapshotBuilder<TypeConfig> for GroupSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        match self {
            GroupSnapshotBuilder::Meta { floor, encoded, meta } => {
                let bytes = encoded.clone().map_err(write_error)?;
                if let Some(last) = meta.last_log_id {
                    floor.persist_marker(SNAPSHOT_KEY, last, bytes.clone()).await.map_err(write_error)?;
                }
                Ok(Snapshot { meta: meta.clone(), snapshot: SnapshotData::memory(bytes) })
            }
            GroupSnapshotBuilder::Shard { floor, segments, meta } => {
                // Everything applied before the builder was made is in the segments; make it
                // durable before the log may be purged up to it. If a snapshot install replaced
                // the segments meanwhile, the installer records its own (newer) point instead.
                match segments.flush().await {
                    Ok(_) => ShardStateMachine::persist_applied_marker(floor, &meta.last_log_id).await?,
                    Err(error) if error.is_replaced() => {}
                    Err(error) => return Err(write_error(error)),
                }
                Ok(Snapshot { meta: meta.clone(), snapshot: SnapshotData::memory(Vec::new()) })
            }
        }
    }
}

impl RaftStateMachine<TypeConfig> for GroupStateMachine {
    type SnapshotBuilder = GroupSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(match self {
            GroupStateMachine::Meta(machine) => (machine.last_applied, machine.membership.clone()),
            GroupStateMachine::Shard(machine) => (machine.last_applied, machine.membership.clone()),
        })
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        match self {
            GroupStateMachine::Meta(machine) => {
                for entry in entries {
                    machine.last_applied = Some(entry.log_id);
                    let result = match entry.payload {
                        EntryPayload::Blank => ApplyResult::Nothing,
                        EntryPayload::Membership(membership) => {
                            machine.membership = StoredMembership::new(Some(entry.log_id), membership);
                            ApplyResult::Nothing
                        }
                        EntryPayload::Normal(command) => match command.command {
                            Some(group_command::Command::Meta(meta)) => ApplyResult::Meta(machine.state.apply(&meta)),
                            _ => ApplyResult::Meta(Err(MetaRejection::Invalid(
                                "the metadata group takes only metadata commands".to_string(),
                            ))),
                        },
                    };
                    results.push(result);
                }
                machine.published.send_replace(Arc::new(machine.state.clone()));
            }
            GroupStateMachine::Shard(machine) => {
                for entry in entries {
                    machine.last_applied = Some(entry.log_id);
                    let result = match entry.payload {
                        EntryPayload::Blank => ApplyResult::Nothing,
                        EntryPayload::Membership(membership) => {
                            machine.membership = StoredMembership::new(Some(entry.log_id), membership);
                            machine.segments.flush().await.map_err(write_error)?;
                            machine.persist_membership().await?;
                            ApplyResult::Nothing
                        }
                        EntryPayload::Normal(command) => match command.command {
                            // Only appends after the seal are refused: one before it was
                            // committed first, and is applied again after a restart that lost it
                            // from the segments while the seal itself was kept.
                            Some(group_command::Command::Append(_))
                                if machine.seal.sealed_at().is_some_and(|seal| entry.log_id.index > seal)
                                    && !crate::planted::active(crate::planted::Bug::WriteAfterSeal) =>
                            {
                                ApplyResult::Sealed { seal_index: machine.seal.sealed_at().unwrap_or_default() }
                            }
                            Some(group_command::Command::Seal(_)) => {
                                ApplyResult::Sealed { seal_index: machine.seal(entry.log_id.index).await? }
                            }
                            Some(group_command::Command::Trim(trim)) => {
                                machine.trim(trim.before_ms).await?;
                                ApplyResult::Nothing
                            }
                            Some(group_command::Command::Append(batch)) => {
                                let mut previous = machine.segments.last_timestamp_ms().unwrap_or(i64::MIN);
                                if crate::planted::active(crate::planted::Bug::TimestampRegress) {
                                    previous = i64::MIN;
                                }
                                machine.segments.append(to_batch_log_id(&entry.log_id), &batch).map_err(|error| {
                                    StorageIOError::apply(entry.log_id, AnyError::error(error.to_string()))
                                })?;
                                ApplyResult::Appended {
                                    log_index: entry.log_id.index,
                                    timestamp_ms: batch.timestamp_ms.max(previous),
                                }
                            }
                            _ => ApplyResult::Nothing,
                        },
                    };
                    results.push(result);
                }
            }
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        match self {
            GroupStateMachine::Meta(machine) => GroupSnapshotBuilder::Meta {
                floor: machine.floor.clone(),
                encoded: machine.encode_snapshot().map_err(|error| error.to_string()),
                meta: machine.snapshot_meta(),
            },
            GroupStateMachine::Shard(machine) => GroupSnapshotBuilder::Shard {
                floor: machine.floor.clone(),
                segments: machine.segments.clone(),
                meta: SnapshotMeta {
                    last_log_id: machine.last_applied,
                    last_membership: machine.membership.clone(),
                    snapshot_id: snapshot_id(&machine.last_applied),
                },
            },
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        match self {
            GroupStateMachine::Meta(_) => Ok(SnapshotData::memory(Vec::new())),
            // A shard snapshot may be as large as the shard: it goes to a file.
            GroupStateMachine::Shard(machine) => {
                let file = machine.segments.incoming_snapshot().map_err(write_error)?;
                Ok(Box::new(SnapshotData::Spill { file, position: 0 }))
            }
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotData>) -> Result<(), StorageError> {
        match self {
            GroupStateMachine::Meta(machine) => {
                let bytes = (*snapshot).into_bytes().map_err(read_error)?;
                let (_, state) = decode_meta_snapshot(&bytes)?;
                machine.state = state;
                machine.last_applied = meta.last_log_id;
                machine.membership = meta.last_membership.clone();
                let encoded = machine.encode_snapshot()?;
                if let Some(last) = meta.last_log_id {
                    machine.floor.persist_marker(SNAPSHOT_KEY, last, encoded).await.map_err(write_error)?;
                }
                machine.published.send_replace(Arc::new(machine.state.clone()));
            }
            GroupStateMachine::Shard(machine) => {
                let header = match *snapshot {
                    SnapshotData::Spill { file, .. } => {
                        let mut prefix = [0u8; SHARD_SNAPSHOT_HEADER_BYTES];
                        let filled =
                            read_fully(|buf, offset| file.read_at(buf, offset), &mut prefix, 0).map_err(read_error)?;
                        let (header, header_bytes) = shard_snapshot_header(&prefix[..filled])?;
                        let mut batches = file.batches_from(header_bytes as u64).map_err(read_error)?;
                        machine.segments.import_from(&mut batches).map_err(write_error)?;
                        header
                    }
                    other => {
                        let bytes = other.into_bytes().map_err(read_error)?;
                        let (header, batches) = decode_shard_snapshot(&bytes)?;
                        machine.segments.import(batches).map_err(write_error)?;
                        header
                    }
                };
                if let Some(index) = header.sealed_at {
                    machine.seal(index).await?;
                }
                // The source's trim point, so this replica expires exactly what it did.
                machine.trim_to(header.trim_sequence).await?;
                machine.segments.flush().await.map_err(write_error)?;
                machine.last_applied = meta.last_log_id;
                machine.membership = meta.last_membership.clone();
                machine.persist_membership().await?;
                ShardStateMachine::persist_applied_marker(&machine.floor, &machine.last_applied).await?;
            }
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        match self {
            GroupStateMachine::Meta(machine) => {
                if machine.last_applied.is_none() {
                    return Ok(None);
                }
                let bytes = machine.encode_snapshot()?;
                Ok(Some(Snapshot { meta: machine.snapshot_meta(), snapshot: SnapshotData::memory(bytes) }))
            }
            GroupStateMachine::Shard(machine) => {
                let starting = !machine.started.load(std::sync::atomic::Ordering::SeqCst);
                if machine.last_applied.is_none() {
                    return Ok(None);
                }
                // Read from the segments as it is sent, never built whole.
                let snapshot = if starting {
                    SnapshotData::memory(Vec::new())
                } else {
                    let header = ShardSnapshotHeader {
                        sealed_at: machine.seal.sealed_at(),
                        trim_sequence: machine.segments.trim_sequence(),
                    };
                    let prefix = encode_shard_snapshot(header, Vec::new());
                    let reader = machine.segments.export_reader(prefix).map_err(read_error)?;
                    Box::new(SnapshotData::Export { reader, position: 0 })
                };
                let meta = SnapshotMeta {
                    last_log_id: machine.last_applied,
                    last_membership: machine.membership.clone(),
                    snapshot_id: snapshot_id(&machine.last_applied),
                };
                Ok(Some(Snapshot { meta, snapshot }))
            }
        }
    }
}

fn encode_shard_snapshot(header: ShardSnapshotHeader, batches: Vec<u8>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SHARD_SNAPSHOT_HEADER_BYTES + batches.len());
    bytes.extend_from_slice(&SHARD_SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&SHARD_SNAPSHOT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&u16::from(header.sealed_at.is_some()).to_le_bytes());
    bytes.extend_from_slice(&header.sealed_at.unwrap_or(0).to_le_bytes());
    bytes.extend_from_slice(&header.trim_sequence.to_le_bytes());
    bytes.extend_from_slice(&batches);
    bytes
}

/// The header and the batches of a shard snapshot.
fn decode_shard_snapshot(bytes: &[u8]) -> Result<(ShardSnapshotHeader, &[u8]), StorageError> {
    let (header, header_bytes) = shard_snapshot_header(bytes)?;
    Ok((header, &bytes[header_bytes..]))
}

/// The header of a shard snapshot that starts with `bytes` (at least its first
/// [`SHARD_SNAPSHOT_HEADER_BYTES`], or all of it if shorter), and the header's length.
/// Snapshots made before seals existed are the batches alone (they start with the batch magic,
/// not [`SHARD_SNAPSHOT_MAGIC`]); version 1 has no trim point.
fn shard_snapshot_header(bytes: &[u8]) -> Result<(ShardSnapshotHeader, usize), StorageError> {
    if !bytes.starts_with(&SHARD_SNAPSHOT_MAGIC) {
        return Ok((ShardSnapshotHeader::default(), 0));
    }
    if bytes.len() < SHARD_SNAPSHOT_V1_HEADER_BYTES {
        return Err(read_error(format!("a shard snapshot of {} bytes has no complete header", bytes.len())));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    let header_bytes = match version {
        1 => SHARD_SNAPSHOT_V1_HEADER_BYTES,
        SHARD_SNAPSHOT_VERSION => SHARD_SNAPSHOT_HEADER_BYTES,
        _ => {
            return Err(read_error(format!(
                "shard snapshot format version {version} is not 1 or {SHARD_SNAPSHOT_VERSION}"
            )))
        }
    };
    if bytes.len() < header_bytes {
        return Err(read_error(format!("a shard snapshot of {} bytes has no complete header", bytes.len())));
    }
    let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
    let word = |at: usize| {
        let mut value = [0u8; 8];
        value.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(value)
    };
    let sealed_at = (flags & 1 == 1).then_some(word(8));
    if sealed_at == Some(0) {
        return Err(read_error("a shard snapshot sealed at log index 0"));
    }
    let trim_sequence = if version >= 2 { word(16) } else { 0 };
    Ok((ShardSnapshotHeader { sealed_at, trim_sequence }, header_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_snapshots_carry_the_seal_and_read_older_ones() {
        let batches = b"RFSB and the rest".to_vec();
        let header = |sealed_at, trim_sequence| ShardSnapshotHeader { sealed_at, trim_sequence };
        let sealed = encode_shard_snapshot(header(Some(42), 7), batches.clone());
        assert_eq!(decode_shard_snapshot(&sealed).expect("decodes"), (header(Some(42), 7), batches.as_slice()));
        let open = encode_shard_snapshot(header(None, 0), batches.clone());
        assert_eq!(decode_shard_snapshot(&open).expect("decodes"), (header(None, 0), batches.as_slice()));
        assert_eq!(decode_shard_snapshot(&batches).expect("an older snapshot"), (header(None, 0), batches.as_slice()));
        assert_eq!(decode_shard_snapshot(&[]).expect("an empty one"), (header(None, 0), &[][..]));
        // Version 1: the seal, no trim point.
        let mut version_1 = b"RFSS".to_vec();
        version_1.extend_from_slice(&1u16.to_le_bytes());
        version_1.extend_from_slice(&1u16.to_le_bytes());
        version_1.extend_from_slice(&9u64.to_le_bytes());
        version_1.extend_from_slice(&batches);
        assert_eq!(decode_shard_snapshot(&version_1).expect("decodes"), (header(Some(9), 0), batches.as_slice()));
        assert!(decode_shard_snapshot(&sealed[..10]).is_err());
        let mut bad_version = sealed.clone();
        bad_version[4] = 9;
        assert!(decode_shard_snapshot(&bad_version).is_err());
    }
}
