//! Raft logs and votes of every group on a node, in one raft-engine instance.
//!
//! Write path: each group's [`GroupLog::append`] encodes its entries once, keeps them readable
//! in memory, and queues them to the node's single log writer. The writer drains everything
//! queued — from every group — into one raft-engine `LogBatch` and writes it with one fsync
//! (group commit across shards), then reports durability to openraft through `LogFlushed`.
//! The writer runs where it may block ([`Executor::spawn_dedicated`]).
//!
//! Keys per group (raft-engine region = group id): `vote`, `purged` (the last purged log id),
//! plus whatever the state machines store with [`LogEngine::put_durable`].

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, StorageIOError};
use prost::Message;
use protobuf::well_known_types::BytesValue;
use raft_engine::{Command, Engine, LogBatch};
use riffle_proto::peer as wire;
use tokio::sync::{mpsc, oneshot};

use super::codec;
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::seam::Executor;
use crate::storage::engine_fs::{EngineFileSystem, EntryCodec};
use crate::storage::failstop::FailStop;

const VOTE_KEY: &[u8] = b"vote";
const PURGED_KEY: &[u8] = b"purged";

/// Bounds of the log writer.
#[derive(Debug, Clone)]
pub struct LogEngineConfig {
    /// Jobs waiting for the writer; appends wait (back-pressure) when it is full. Default 4096.
    pub write_queue_depth_max: usize,
    /// Jobs written with one fsync at most. Default 1024.
    pub write_batch_jobs_max: usize,
    /// Bytes of entries written with one fsync at most (a single larger job still goes
    /// alone). Default 16 MiB.
    pub write_batch_bytes_max: usize,
    /// Writes between two purges of raft-engine files that hold only compacted entries.
    /// Default 256.
    pub purge_interval_writes: u64,
    /// Run raft-engine calls on a thread of the engine's own (see [`EngineHost`]). The
    /// simulator sets it; a node process has one engine and calls it directly. Default false.
    pub engine_thread: bool,
}

impl Default for LogEngineConfig {
    fn default() -> Self {
        LogEngineConfig {
            write_queue_depth_max: 4096,
            write_batch_jobs_max: 1024,
            write_batch_bytes_max: 16 << 20,
            purge_interval_writes: 256,
            engine_thread: false,
        }
    }
}

enum Completion {
    Flushed(LogFlushed<TypeConfig>),
    Notify(oneshot::Sender<Result<(), String>>),
    Nothing,
}

enum WriteOp {
    Entries(Vec<BytesValue>),
    Put(Vec<u8>, Vec<u8>),
    Compact(u64),
    Clean,
}

struct WriteJob {
    group: u64,
    ops: Vec<WriteOp>,
    completion: Completion,
    /// Entries this job makes durable, to drop from the group's pending cache afterwards.
    written: Option<(Arc<Mutex<GroupLogState>>, Vec<LogId>)>,
}

impl WriteJob {
    fn bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                WriteOp::Entries(entries) => entries.iter().map(|entry| entry.value.len()).sum(),
                WriteOp::Put(key, value) => key.len() + value.len(),
                WriteOp::Compact(_) | WriteOp::Clean => 16,
            })
            .sum()
    }
}

type RaftEngine = Engine<EngineFileSystem>;
type EngineJob = Box<dyn FnOnce() + Send>;

/// Where raft-engine calls run. raft-engine keeps a per-thread cache of the last block it read,
/// keyed by file and offset only; several engines used from one thread (the simulator's nodes)
/// would read each other's blocks through it. `Threaded` gives an engine a thread of its own
/// and runs each call there while the caller waits, which keeps a single-threaded simulation
/// deterministic.
enum EngineHost {
    Direct(Arc<RaftEngine>),
    Threaded { engine: Arc<RaftEngine>, jobs: std::sync::Mutex<std::sync::mpsc::Sender<EngineJob>> },
}

impl EngineHost {
    fn new(engine: RaftEngine, own_thread: bool) -> EngineHost {
        let engine = Arc::new(engine);
        if !own_thread {
            return EngineHost::Direct(engine);
        }
        let (jobs, receiver) = std::sync::mpsc::channel::<EngineJob>();
        let spawned = std::thread::Builder::new().name("raft-engine".into()).spawn(move || {
            while let Ok(job) = receiver.recv() {
                job();
            }
        });
        if let Err(error) = spawned {
            panic!("cannot start the raft-engine thread: {error}");
        }
        EngineHost::Threaded { engine, jobs: std::sync::Mutex::new(jobs) }
    }

    fn engine(&self) -> &Arc<RaftEngine> {
        match self {
            EngineHost::Direct(engine) | EngineHost::Threaded { engine, .. } => engine,
        }
    }

    /// Runs `call` with the engine, on the engine's own thread when it has one.
    fn call<R: Send + 'static>(&self, call: impl FnOnce(&RaftEngine) -> R + Send + 'static) -> R {
        match self {
            EngineHost::Direct(engine) => call(engine),
            EngineHost::Threaded { engine, jobs } => {
                let engine = engine.clone();
                let (sender, receiver) = std::sync::mpsc::sync_channel(1);
                let job: EngineJob = Box::new(move || {
                    let result = call(&engine);
                    // Release the engine before answering, so the caller never observes it
                    // still held by this thread (the simulator waits for its release).
                    drop(engine);
                    let _ = sender.send(result);
                });
                jobs.lock()
                    .expect("engine job sender lock is not poisoned")
                    .send(job)
                    .expect("the raft-engine thread lives as long as its host");
                receiver.recv().expect("the raft-engine thread answers every call")
            }
        }
    }
}

/// The node's raft-engine instance and its writer.
pub struct LogEngine {
    engine: Arc<EngineHost>,
    jobs: mpsc::Sender<WriteJob>,
}

impl Debug for LogEngine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("LogEngine").finish_non_exhaustive()
    }
}

impl LogEngine {
    /// Starts the writer for an open engine. Once `failstop` is tripped (a storage error, see
    /// `storage::failstop`), no write is acknowledged any more.
    pub fn start(
        engine: Engine<EngineFileSystem>,
        config: LogEngineConfig,
        executor: &dyn Executor,
        failstop: FailStop,
    ) -> Arc<LogEngine> {
        let engine = Arc::new(EngineHost::new(engine, config.engine_thread));
        let (jobs, receiver) = mpsc::channel(config.write_queue_depth_max.max(1));
        executor.spawn_dedicated("raft-log-writer", Box::pin(run_writer(engine.clone(), receiver, config, failstop)));
        Arc::new(LogEngine { engine, jobs })
    }

    /// The raft-engine instance itself; it is released once the writer has stopped too.
    pub fn raft_engine(&self) -> std::sync::Weak<Engine<EngineFileSystem>> {
        Arc::downgrade(self.engine.engine())
    }

    /// Groups that have anything stored on this node.
    pub fn groups(&self) -> Vec<u64> {
        self.engine.engine().raft_groups()
    }

    pub fn get(&self, group: u64, key: &[u8]) -> Option<Vec<u8>> {
        let key = key.to_vec();
        self.engine.call(move |engine| engine.get(group, &key))
    }

    /// The index up to which `group`'s log is purged on disk (0 if nothing is).
    pub fn purged_index(&self, group: u64) -> u64 {
        self.get(group, PURGED_KEY).and_then(|bytes| decode_log_id(&bytes).ok()).map_or(0, |log_id| log_id.index)
    }

    /// Whether `group`'s log on this disk has lost a stretch: its first kept entry lies past
    /// the point its purge marker records. A purge writes the marker and compacts the log in one
    /// batch, so normally the first kept entry is exactly one past the marker. raft-engine,
    /// meeting a broken batch in a log file at open, drops the rest of that file as if it were a
    /// torn tail; when the dropped part held a later purge marker (or the marker lived in a
    /// rewrite file it dropped), the log starts after the marker the node still has. Such a
    /// replica cannot take its leader's appends (they start below what it keeps) and may lack
    /// entries it acknowledged: it must be treated as damaged and readmitted.
    pub fn log_is_cut(&self, group: u64) -> bool {
        let purged = self.purged_index(group);
        self.first_index(group).is_some_and(|first| first > purged + 1)
    }

    /// The index of the first entry `group` keeps, if it keeps any.
    pub fn first_index(&self, group: u64) -> Option<u64> {
        self.engine.engine().first_index(group)
    }

    /// Stores `key = value` for `group` and returns once it is fsynced.
    pub async fn put_durable(&self, group: u64, key: &[u8], value: Vec<u8>) -> Result<(), String> {
        self.submit_and_wait(group, vec![WriteOp::Put(key.to_vec(), value)]).await
    }

    /// Removes everything stored for `group` and returns once it is fsynced.
    pub async fn remove_group(&self, group: u64) -> Result<(), String> {
        self.submit_and_wait(group, vec![WriteOp::Clean]).await
    }

    async fn submit_and_wait(&self, group: u64, ops: Vec<WriteOp>) -> Result<(), String> {
        let (sender, receiver) = oneshot::channel();
        let job = WriteJob { group, ops, completion: Completion::Notify(sender), written: None };
        self.jobs.send(job).await.map_err(|_| "the log writer has stopped".to_string())?;
        receiver.await.map_err(|_| "the log writer has stopped".to_string())?
    }

    /// Opens the log of one group; `floor` is shared with the group's state machine.
    pub fn group_log(self: &Arc<Self>, group: u64, floor: Arc<DurableFloor>) -> Result<GroupLog, StorageError> {
        let last_purged = match self.get(group, PURGED_KEY) {
            Some(bytes) => {
                Some(decode_log_id(&bytes).map_err(|error| StorageIOError::read_logs(AnyError::error(error)))?)
            }
            None => None,
        };
        let mut last_log_id = last_purged;
        if let Some(last_index) = self.engine.engine().last_index(group) {
            let entries = self.read_engine(group, last_index, last_index + 1)?;
            if let Some(entry) = entries.last() {
                last_log_id = Some(entry.log_id);
            }
        }
        tracing::debug!(engine = ?Arc::as_ptr(self), group, ?last_purged, ?last_log_id, "open group log");
        Ok(GroupLog {
            group,
            engine: self.clone(),
            state: Arc::new(Mutex::new(GroupLogState { pending: BTreeMap::new(), last_log_id, last_purged })),
            floor,
        })
    }

    fn read_engine(&self, group: u64, begin: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        if begin >= end {
            return Ok(Vec::new());
        }
        tracing::debug!(engine = ?(self as *const LogEngine), group, begin, end, "read engine");
        let raw = self
            .engine
            .call(move |engine| {
                let mut raw = Vec::with_capacity((end - begin).min(1024) as usize);
                engine.fetch_entries_to::<EntryCodec>(group, begin, end, None, &mut raw).map(|_| raw)
            })
            .map_err(|error| {
                StorageIOError::read_logs(AnyError::error(format!("group {group} [{begin}, {end}): {error}")))
            })?;
        raw.iter()
            .map(|value| {
                decode_entry(&value.value).map_err(|error| StorageIOError::read_logs(AnyError::error(error)).into())
            })
            .collect()
    }
}

async fn run_writer(
    engine: Arc<EngineHost>,
    mut receiver: mpsc::Receiver<WriteJob>,
    config: LogEngineConfig,
    failstop: FailStop,
) {
    let mut writes: u64 = 0;
    while let Some(first) = receiver.recv().await {
        let mut bytes = first.bytes();
        let mut jobs = vec![first];
        while jobs.len() < config.write_batch_jobs_max && bytes < config.write_batch_bytes_max {
            match receiver.try_recv() {
                Ok(job) => {
                    bytes += job.bytes();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let result = match build_batch(engine.engine(), &mut jobs) {
            Ok(Some((mut batch, sync))) => {
                let sync = sync && !crate::planted::active(crate::planted::Bug::AckBeforeFsync);
                engine.call(move |engine| {
                    engine.write(&mut batch, sync).map(|_| ()).map_err(|error| format!("raft-engine write: {error}"))
                })
            }
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        // A failed sync reports success to raft-engine (which would panic) and trips the
        // latch instead: nothing written since the latch tripped is acknowledged.
        let result = match failstop.reason() {
            Some(reason) => Err(format!("storage failed, the node is stopping: {reason}")),
            None => result,
        };
        for job in jobs {
            if result.is_ok() {
                if let Some((state, written)) = &job.written {
                    let mut state = state.lock().expect("group log state lock is not poisoned");
                    for log_id in written {
                        if state.pending.get(&log_id.index).is_some_and(|entry| entry.log_id == *log_id) {
                            state.pending.remove(&log_id.index);
                        }
                    }
                }
            }
            match job.completion {
                Completion::Flushed(callback) => {
                    callback.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                Completion::Notify(sender) => {
                    let _ = sender.send(result.clone());
                }
                Completion::Nothing => {}
            }
        }
        writes += 1;
        if writes.is_multiple_of(config.purge_interval_writes.max(1)) {
            if let Err(error) = engine.call(|engine| engine.purge_expired_files()) {
                tracing::warn!(%error, "purging raft-engine files failed");
            }
        }
    }
}

/// Builds one batch of every job, to be written with one fsync when `sync` says so.
fn build_batch(engine: &RaftEngine, jobs: &mut [WriteJob]) -> Result<Option<(LogBatch, bool)>, String> {
    let mut batch = LogBatch::default();
    // The span (first, last) each group will have once the batch so far is applied.
    let mut spans: BTreeMap<u64, Option<(u64, u64)>> = BTreeMap::new();
    let mut sync = false;
    for job in jobs.iter_mut() {
        let group = job.group;
        let span = spans.entry(group).or_insert_with(|| engine.first_index(group).zip(engine.last_index(group)));
        for op in job.ops.drain(..) {
            match op {
                WriteOp::Entries(entries) => {
                    let (Some(first_entry), Some(last_entry)) = (entries.first(), entries.last()) else { continue };
                    let first_new = <EntryCodec as raft_engine::MessageExt>::index(first_entry);
                    let last_new = <EntryCodec as raft_engine::MessageExt>::index(last_entry);
                    if let Some((first, last)) = *span {
                        if first_new < first {
                            return Err(format!(
                                "group {group}: append at {first_new} below the first kept entry {first}"
                            ));
                        }
                        if first_new > last + 1 {
                            // `GroupLog::append` closes gaps itself (with a durable purge
                            // marker); one reaching here would leave a hole raft-engine refuses.
                            return Err(format!("group {group}: append at {first_new} leaves a gap after {last}"));
                        }
                    }
                    batch
                        .add_entries::<EntryCodec>(group, &entries)
                        .map_err(|error| format!("group {group}: encoding entries: {error}"))?;
                    let first = span.map_or(first_new, |(first, _)| first);
                    *span = Some((first, last_new));
                    sync = true;
                }
                WriteOp::Put(key, value) => {
                    batch.put(group, key, value).map_err(|error| format!("group {group}: put: {error}"))?;
                    sync = true;
                }
                WriteOp::Compact(index) => {
                    batch.add_command(group, Command::Compact { index });
                    *span = match *span {
                        Some((_, last)) if index <= last => Some((index, last)),
                        Some(_) => None,
                        None => None,
                    };
                }
                WriteOp::Clean => {
                    batch.add_command(group, Command::Clean);
                    *span = None;
                    sync = true;
                }
            }
        }
    }
    if batch.is_empty() {
        return Ok(None);
    }
    Ok(Some((batch, sync)))
}

fn encode_entry(entry: &Entry) -> BytesValue {
    let wire_entry = codec::entry_to_wire(entry);
    let mut bytes = Vec::with_capacity(8 + wire_entry.encoded_len());
    bytes.extend_from_slice(&entry.log_id.index.to_be_bytes());
    wire_entry.encode(&mut bytes).expect("a Vec grows to fit any message");
    let mut value = BytesValue::new();
    value.value = bytes;
    value
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, String> {
    if bytes.len() < 8 {
        return Err(format!("log entry of {} bytes is shorter than its index", bytes.len()));
    }
    let wire_entry = wire::Entry::decode(&bytes[8..]).map_err(|error| format!("log entry: {error}"))?;
    let entry = codec::entry_from_wire(wire_entry).map_err(|error| error.to_string())?;
    let index = u64::from_be_bytes(bytes[..8].try_into().expect("checked length"));
    if index != entry.log_id.index {
        return Err(format!("log entry index {index} does not match its log id {}", entry.log_id));
    }
    Ok(entry)
}

fn encode_log_id(log_id: &LogId) -> Vec<u8> {
    codec::log_id_to_wire(log_id).encode_to_vec()
}

fn decode_log_id(bytes: &[u8]) -> Result<LogId, String> {
    let wire_log_id = wire::LogId::decode(bytes).map_err(|error| format!("log id: {error}"))?;
    codec::log_id_from_wire(wire_log_id).map_err(|error| error.to_string())
}

/// How far a group's log may be purged on disk.
///
/// openraft purges a log up to a snapshot as soon as it has one. On disk, the purge waits:
/// - until the group's state machine has made that point durable (its *floor*), so a restart
///   never finds the log purged beyond what the state machine holds;
/// - and by one purge, so entries openraft has just declared purged stay readable for the
///   replication reads already under way.
///
/// The state machine raises the floor with [`DurableFloor::persist_marker`], which also writes
/// its durable marker (monotonically: a stale writer never moves it back).
pub struct DurableFloor {
    group: u64,
    logs: Arc<LogEngine>,
    state: Mutex<FloorState>,
    marker_writes: tokio::sync::Mutex<()>,
    raised: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct FloorState {
    floor: Option<LogId>,
    latest_purge: Option<LogId>,
    previous_purge: Option<LogId>,
    durable_purged: Option<LogId>,
}

/// How long an append past a snapshot waits for the snapshot to be durable.
const SNAPSHOT_DURABLE_WAIT_MS: u64 = 120_000;

impl DurableFloor {
    pub fn new(group: u64, logs: Arc<LogEngine>) -> Result<Arc<DurableFloor>, StorageError> {
        let durable_purged = match logs.get(group, PURGED_KEY) {
            Some(bytes) => {
                Some(decode_log_id(&bytes).map_err(|error| StorageIOError::read_logs(AnyError::error(error)))?)
            }
            None => None,
        };
        Ok(Arc::new(DurableFloor {
            group,
            logs,
            state: Mutex::new(FloorState {
                floor: None,
                latest_purge: durable_purged,
                previous_purge: durable_purged,
                durable_purged,
            }),
            marker_writes: tokio::sync::Mutex::new(()),
            raised: tokio::sync::Notify::new(),
        }))
    }

    /// Sets the floor found at start (what the state machine holds durably).
    pub fn start_at(&self, log_id: Option<LogId>) {
        let mut state = self.state.lock().expect("floor lock is not poisoned");
        state.floor = state.floor.max(log_id);
    }

    pub fn floor(&self) -> Option<LogId> {
        self.state.lock().expect("floor lock is not poisoned").floor
    }

    fn durable_purged(&self) -> Option<LogId> {
        self.state.lock().expect("floor lock is not poisoned").durable_purged
    }

    /// Writes `value` under `key` durably if `log_id` is above the floor, then raises the floor
    /// to `log_id`. Returns whether it wrote.
    pub async fn persist_marker(&self, key: &[u8], log_id: LogId, value: Vec<u8>) -> Result<bool, String> {
        let _serialized = self.marker_writes.lock().await;
        if self.floor().is_some_and(|floor| floor >= log_id) {
            return Ok(false);
        }
        self.logs.put_durable(self.group, key, value).await?;
        {
            let mut state = self.state.lock().expect("floor lock is not poisoned");
            state.floor = Some(log_id);
        }
        self.raised.notify_waiters();
        self.purge_on_disk().await;
        Ok(true)
    }

    /// Records a purge openraft made; purges on disk what is now allowed.
    async fn purged(&self, log_id: LogId) {
        {
            let mut state = self.state.lock().expect("floor lock is not poisoned");
            if state.latest_purge.is_some_and(|latest| latest >= log_id) {
                return;
            }
            state.previous_purge = state.latest_purge;
            state.latest_purge = Some(log_id);
        }
        self.purge_on_disk().await;
    }

    async fn purge_on_disk(&self) {
        let target = {
            let mut state = self.state.lock().expect("floor lock is not poisoned");
            let target = match (state.previous_purge, state.floor) {
                (Some(purge), Some(floor)) => Some(purge.min(floor)),
                _ => None,
            };
            match target {
                Some(target) if state.durable_purged.is_none_or(|durable| durable < target) => {
                    state.durable_purged = Some(target);
                    target
                }
                _ => return,
            }
        };
        let ops = vec![WriteOp::Put(PURGED_KEY.to_vec(), encode_log_id(&target)), WriteOp::Compact(target.index + 1)];
        let job = WriteJob { group: self.group, ops, completion: Completion::Nothing, written: None };
        if self.logs.jobs.send(job).await.is_err() {
            tracing::warn!(group = self.group, "the log writer stopped before a purge");
        }
    }

    /// Waits until the floor reaches `log_id` (a snapshot being installed became durable).
    async fn wait_for(&self, log_id: LogId) -> Result<(), String> {
        let wait = async {
            loop {
                let raised = self.raised.notified();
                if self.floor().is_some_and(|floor| floor >= log_id) {
                    return;
                }
                raised.await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_millis(SNAPSHOT_DURABLE_WAIT_MS), wait)
            .await
            .map_err(|_| format!("group {}: the snapshot at {log_id} did not become durable", self.group))
    }
}

struct GroupLogState {
    /// Entries queued to the writer and not yet in raft-engine: always a contiguous tail.
    pending: BTreeMap<u64, Entry>,
    last_log_id: Option<LogId>,
    last_purged: Option<LogId>,
}

/// The log of one group: openraft's log storage.
#[derive(Clone)]
pub struct GroupLog {
    group: u64,
    engine: Arc<LogEngine>,
    state: Arc<Mutex<GroupLogState>>,
    floor: Arc<DurableFloor>,
}

impl GroupLog {
    fn entries(&self, begin: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        let (end, pending_first, mut tail) = {
            let state = self.state.lock().expect("group log state lock is not poisoned");
            let end = end.min(state.last_log_id.map_or(0, |log_id| log_id.index + 1));
            let pending_first = state.pending.keys().next().copied().unwrap_or(end).min(end);
            let tail: Vec<Entry> =
                state.pending.range(pending_first.max(begin)..end).map(|(_, entry)| entry.clone()).collect();
            (end, pending_first, tail)
        };
        if begin >= end {
            return Ok(Vec::new());
        }
        let mut entries = self.engine.read_engine(self.group, begin, pending_first.max(begin))?;
        entries.append(&mut tail);
        Ok(entries)
    }

    fn log_id_at(&self, index: u64) -> Result<Option<LogId>, StorageError> {
        Ok(self.entries(index, index + 1)?.first().map(|entry| entry.log_id))
    }

    /// If appending at `first_index` would leave a hole after what the log holds on disk (the
    /// entries follow an installed snapshot), the snapshot's log id.
    fn gap_before(&self, first_index: u64) -> Option<LogId> {
        let on_disk_last = self.engine.engine.engine().last_index(self.group).unwrap_or(0);
        let durable_purged = self.floor.durable_purged().map_or(0, |log_id| log_id.index);
        let state = self.state.lock().expect("group log state lock is not poisoned");
        let pending_last = state.pending.range(..first_index).next_back().map_or(0, |(index, _)| *index);
        let covered = on_disk_last.max(durable_purged).max(pending_last);
        if first_index <= covered + 1 {
            return None;
        }
        match state.last_purged {
            Some(purged) if purged.index + 1 == first_index => Some(purged),
            _ => None,
        }
    }
}

impl RaftLogReader<TypeConfig> for GroupLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let begin = match range.start_bound() {
            Bound::Included(index) => *index,
            Bound::Excluded(index) => index + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(index) => index + 1,
            Bound::Excluded(index) => *index,
            Bound::Unbounded => u64::MAX,
        };
        self.entries(begin, end)
    }
}

impl RaftLogStorage<TypeConfig> for GroupLog {
    type LogReader = GroupLog;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let state = self.state.lock().expect("group log state lock is not poisoned");
        Ok(LogState { last_purged_log_id: state.last_purged, last_log_id: state.last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = codec::vote_to_wire(vote).encode_to_vec();
        self.engine
            .put_durable(self.group, VOTE_KEY, bytes)
            .await
            .map_err(|error| StorageIOError::write_vote(AnyError::error(error)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let Some(bytes) = self.engine.get(self.group, VOTE_KEY) else { return Ok(None) };
        let vote = wire::Vote::decode(bytes.as_slice())
            .map_err(|error| error.to_string())
            .and_then(|vote| codec::vote_from_wire(Some(vote)).map_err(|error| error.to_string()))
            .map_err(|error| StorageIOError::read_vote(AnyError::error(error)))?;
        Ok(Some(vote))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        let mut written = Vec::new();
        {
            let mut state = self.state.lock().expect("group log state lock is not poisoned");
            for entry in entries {
                let index = entry.log_id.index;
                if written.is_empty() {
                    // A new suffix replaces whatever was queued at or after its first index.
                    let stale: Vec<u64> = state.pending.range(index..).map(|(index, _)| *index).collect();
                    for index in stale {
                        state.pending.remove(&index);
                    }
                }
                if let Some(last) = written.last() {
                    let last: &LogId = last;
                    assert_eq!(last.index + 1, index, "openraft appends contiguous entries");
                }
                encoded.push(encode_entry(&entry));
                written.push(entry.log_id);
                state.last_log_id = Some(entry.log_id);
                state.pending.insert(index, entry);
            }
        }
        if encoded.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let mut ops = Vec::with_capacity(3);
        let first_index = written.first().map_or(0, |log_id| log_id.index);
        if let Some(snapshot) = self.gap_before(first_index) {
            // The entries follow a snapshot this replica installed: the log before them is gone.
            // Record that durably with them, once the snapshot itself is durable, so a restart
            // never sees a log purged beyond its state machine.
            self.floor.wait_for(snapshot).await.map_err(|error| StorageIOError::write_logs(AnyError::error(error)))?;
            {
                let mut floor = self.floor.state.lock().expect("floor lock is not poisoned");
                floor.durable_purged = Some(snapshot);
                floor.previous_purge = floor.previous_purge.max(Some(snapshot));
            }
            ops.push(WriteOp::Put(PURGED_KEY.to_vec(), encode_log_id(&snapshot)));
            ops.push(WriteOp::Compact(first_index));
        }
        ops.push(WriteOp::Entries(encoded));
        let job = WriteJob {
            group: self.group,
            ops,
            completion: Completion::Flushed(callback),
            written: Some((self.state.clone(), written)),
        };
        self.engine
            .jobs
            .send(job)
            .await
            .map_err(|_| StorageIOError::write_logs(AnyError::error("the log writer has stopped")).into())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let index = log_id.index;
        tracing::debug!(engine = ?Arc::as_ptr(&self.engine), group = self.group, %log_id, "truncate");
        {
            let mut state = self.state.lock().expect("group log state lock is not poisoned");
            let stale: Vec<u64> = state.pending.range(index..).map(|(index, _)| *index).collect();
            for index in stale {
                state.pending.remove(&index);
            }
        }
        // Entries at and after `index` are hidden until a later append overwrites them in
        // raft-engine (its memtable drops a conflicting suffix on append).
        let previous = if index == 0 {
            None
        } else {
            let purged = self.state.lock().expect("group log state lock is not poisoned").last_purged;
            match purged {
                Some(purged) if purged.index == index - 1 => Some(purged),
                _ => self.log_id_at(index - 1)?,
            }
        };
        let mut state = self.state.lock().expect("group log state lock is not poisoned");
        state.last_log_id = previous.or(state.last_purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(engine = ?Arc::as_ptr(&self.engine), group = self.group, %log_id, "purge");
        {
            let mut state = self.state.lock().expect("group log state lock is not poisoned");
            state.last_purged = Some(log_id);
            if state.last_log_id.is_none_or(|last| last.index < log_id.index) {
                state.last_log_id = Some(log_id);
            }
            let purged: Vec<u64> = state.pending.range(..=log_id.index).map(|(index, _)| *index).collect();
            for index in purged {
                state.pending.remove(&index);
            }
        }
        self.floor.purged(log_id).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::memory::MemoryFileSystem;
    use crate::seam::TokioExecutor;

    fn log_id(index: u64) -> LogId {
        LogId::new(openraft::CommittedLeaderId::new(1, 1), index)
    }

    fn blank(index: u64) -> BytesValue {
        encode_entry(&Entry { log_id: log_id(index), payload: openraft::EntryPayload::Blank })
    }

    #[tokio::test]
    async fn a_log_that_starts_past_its_purge_marker_is_cut() {
        let directory = tempfile::tempdir().expect("a scratch directory");
        let failstop = FailStop::default();
        let (engine, _fence) = crate::storage::engine_fs::open_engine_with_fence(
            Arc::new(MemoryFileSystem::new()),
            &directory.path().join("raft"),
            true,
            failstop.clone(),
        )
        .expect("the engine opens");
        let logs = LogEngine::start(engine, LogEngineConfig::default(), &TokioExecutor, failstop);
        logs.submit_and_wait(7, vec![WriteOp::Entries((1..=10).map(blank).collect())]).await.expect("appended");
        assert!(!logs.log_is_cut(7), "a log never purged starts at its first entry");
        let purge = vec![WriteOp::Put(PURGED_KEY.to_vec(), encode_log_id(&log_id(5))), WriteOp::Compact(6)];
        logs.submit_and_wait(7, purge).await.expect("purged");
        assert_eq!(logs.first_index(7), Some(6));
        assert!(!logs.log_is_cut(7), "a purge keeps the first entry one past its marker");
        // The later marker lost, an older one left (raft-engine dropped a damaged file's tail).
        logs.put_durable(7, PURGED_KEY, encode_log_id(&log_id(2))).await.expect("an older marker");
        assert!(logs.log_is_cut(7), "entries 3 to 5 are missing");
        logs.remove_group(7).await.expect("removed");
        assert!(!logs.log_is_cut(7), "a removed group keeps nothing");
    }
}
