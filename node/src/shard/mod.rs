//! The shard plane: a shard group's leader admits appends (throughput budgets), group-commits
//! them into log entries, and serves reads from the shard's segments; iterators are the tokens
//! clients carry between reads.

pub mod admission;
pub mod batcher;
pub mod iterator;
pub mod load;
pub mod read;

use std::sync::Mutex;

use riffle_proto::peer::{peer_response, ForwardAppend, ForwardRead};
use tokio::sync::{mpsc, oneshot};

use crate::node::{Group, Node};
use crate::routing::RouteError;
use crate::shard::admission::ShardThrottle;
use crate::shard::batcher::AppendRequest;
use crate::shard::load::LoadMeter;
use crate::storage::segment::ShardSegments;

/// Whether and where a shard is sealed (closed for writes by resharding), shared by the shard's
/// state machine, which sets it when it applies the seal, and by the leader's request handling
/// and reads. Once set it never changes.
#[derive(Debug, Clone, Default)]
pub struct SealState(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl SealState {
    /// The log index of the seal, once sealed. (Index 0 holds the group's first membership,
    /// never a seal, so 0 means open.)
    pub fn sealed_at(&self) -> Option<u64> {
        match self.0.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            index => Some(index),
        }
    }

    /// Records the seal at `index`; a shard is sealed once, so a second call keeps the first.
    pub fn seal(&self, index: u64) -> u64 {
        assert!(index > 0, "a seal is never the group's first entry");
        match self.0.compare_exchange(
            0,
            index,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        ) {
            Ok(_) => index,
            Err(existing) => existing,
        }
    }
}

/// What a node holds for a shard group besides its Raft: the records, and the leader's queue.
pub struct ShardGroup {
    pub seal: SealState,
    /// A task carries out the shard's duties toward the metadata group (see
    /// `control::reconcile`); set while one runs.
    pub(crate) duties_running: std::sync::atomic::AtomicBool,
    /// The batcher's permits for entries in flight (a handoff takes them all).
    pub(crate) in_flight: std::sync::Arc<tokio::sync::Semaphore>,
    /// The term this node leads the group in and when it first saw itself lead in it (ms),
    /// so that a leader hands over only after its lease has run.
    pub(crate) leading_since: Mutex<Option<(u64, i64)>>,
    pub segments: ShardSegments,
    pub(crate) appends: mpsc::Sender<AppendRequest>,
    /// The shard's throughput budgets, used while this node leads it and throttling is on.
    pub(crate) throttle: Mutex<ShardThrottle>,
    /// Offered write load while this node leads it (on-demand scaling).
    pub(crate) load: Mutex<LoadMeter>,
}

impl Node {
    /// Whether the shard's throughput budget admits a request (always, with throttling off).
    pub(crate) fn admit(&self, shard: &ShardGroup, take: impl FnOnce(&mut ShardThrottle, i64) -> bool) -> bool {
        if !self.options.limits.throttling.enabled {
            return true;
        }
        let now = self.seams.clock.now_ms();
        take(&mut shard.throttle.lock().expect("throttle lock is not poisoned"), now)
    }

    /// An append forwarded to this node as the shard's leader: admitted, queued for the next
    /// group commit, answered once committed.
    pub(crate) async fn serve_append(
        &self,
        group: &Group,
        append: ForwardAppend,
    ) -> Result<peer_response::Body, RouteError> {
        let shard = group.shard.as_ref().ok_or(RouteError::NoGroup)?;
        let metrics = group.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.id()) {
            return Err(RouteError::NotLeader(metrics.current_leader));
        }
        if shard.seal.sealed_at().is_some() {
            return Err(RouteError::Closed);
        }
        let bytes = append.records.iter().map(|record| record.data.len() + record.partition_key.len()).sum();
        shard.load.lock().expect("load lock is not poisoned").record(
            self.seams.clock.now_ms(),
            append.records.len() as u64,
            bytes as u64,
        );
        if !self.admit(shard, |throttle, now| throttle.admit_write(now, append.records.len() as u64, bytes as u64)) {
            return Err(RouteError::Throttled);
        }
        let (respond, response) = oneshot::channel();
        let request = AppendRequest { records: append.records, bytes, respond };
        shard.appends.send(request).await.map_err(|_| RouteError::Failed("the shard is closing".into()))?;
        let result = response.await.map_err(|_| RouteError::Unknown("the shard closed during the append".into()))??;
        Ok(peer_response::Body::Append(result))
    }

    /// A read at this node as the shard's leader, after confirming the leadership with a quorum
    /// so it sees every acknowledged append.
    pub(crate) async fn serve_read(&self, group: &Group, read: ForwardRead) -> Result<peer_response::Body, RouteError> {
        let shard = group.shard.as_ref().ok_or(RouteError::NoGroup)?;
        let wait = std::time::Duration::from_millis(self.options.limits.leader_wait_ms);
        crate::raft::read_index(&group.raft, wait).await?;
        // A read of no records (GetShardIterator LATEST) is not a GetRecords call.
        if read.limit > 0 && !self.admit(shard, |throttle, now| throttle.admit_get_records(now)) {
            return Err(RouteError::Throttled);
        }
        read::read_shard(&shard.segments, &shard.seal, read).map(peer_response::Body::Read)
    }
}
