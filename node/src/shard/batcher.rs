//! Group commit on a shard leader: every append queued for the shard becomes one log entry, up
//! to the batch bounds, with a bounded number of entries proposed and not yet committed.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::ClientWriteError;
use riffle_proto::peer::{group_command, AppendBatch, AppendResult, GroupCommand, RecordInput};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::node::DataLimits;
use crate::raft::types::{ApplyResult, Raft};
use crate::routing::RouteError;
use crate::seam::Seams;

/// An append handed to a shard leader's batcher.
pub(crate) struct AppendRequest {
    pub(crate) records: Vec<RecordInput>,
    pub(crate) bytes: usize,
    pub(crate) respond: oneshot::Sender<Result<AppendResult, RouteError>>,
}

/// Group-commits appends on a shard leader: everything queued becomes one log entry.
pub(crate) struct Batcher {
    pub(crate) raft: Raft,
    pub(crate) seams: Seams,
    pub(crate) limits: DataLimits,
    /// Permits for entries proposed and not yet committed; a leadership handoff takes them all
    /// to pause proposals (see `control::members`).
    pub(crate) in_flight: Arc<Semaphore>,
}

impl Batcher {
    pub(crate) async fn run(self, mut receiver: mpsc::Receiver<AppendRequest>) {
        let in_flight = self.in_flight.clone();
        let records_max = self.limits.batch_records_max.min(crate::sequence::BATCH_RECORDS_MAX - 1);
        let mut carried: Option<AppendRequest> = None;
        loop {
            let first = match carried.take() {
                Some(request) => request,
                None => match receiver.recv().await {
                    Some(request) => request,
                    None => return,
                },
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
            let mut records_count = first.records.len();
            let mut bytes = first.bytes;
            let mut requests = vec![first];
            while records_count < records_max && bytes < self.limits.batch_bytes_max {
                match receiver.try_recv() {
                    Ok(request) => {
                        if records_count + request.records.len() > records_max
                            || bytes + request.bytes > self.limits.batch_bytes_max
                        {
                            carried = Some(request);
                            break;
                        }
                        records_count += request.records.len();
                        bytes += request.bytes;
                        requests.push(request);
                    }
                    Err(_) => break,
                }
            }
            let mut records = Vec::with_capacity(records_count);
            let mut waiters = Vec::with_capacity(requests.len());
            for request in requests {
                waiters.push((records.len() as u32, request.respond));
                records.extend(request.records);
            }
            let batch = AppendBatch { timestamp_ms: self.seams.clock.now_ms(), records };
            let command = GroupCommand { command: Some(group_command::Command::Append(batch)) };
            // Proposed here, in order, so batches take log indexes in the order they were
            // formed; only the wait for the commit runs concurrently.
            let submitted = self.raft.client_write_ff(command).await;
            let timeout = Duration::from_millis(self.limits.append_timeout_ms);
            self.seams.executor.spawn(
                "shard-append",
                Box::pin(async move {
                    let result = match submitted {
                        Err(fatal) => Err(RouteError::Failed(format!("the shard's Raft stopped: {fatal}"))),
                        Ok(receiver) => match tokio::time::timeout(timeout, receiver).await {
                            Ok(Ok(Ok(response))) => match response.data {
                                ApplyResult::Appended { log_index, timestamp_ms } => Ok((log_index, timestamp_ms)),
                                // Ordered after the shard's seal: refused, nothing stored.
                                ApplyResult::Sealed { .. } => Err(RouteError::Closed),
                                other => Err(RouteError::Unknown(format!("unexpected apply result {other:?}"))),
                            },
                            // ForwardToLeader means the entry was not appended here, or was
                            // truncated as conflicting (so never committed): it did not happen.
                            Ok(Ok(Err(ClientWriteError::ForwardToLeader(forward)))) => {
                                Err(RouteError::NotLeader(forward.leader_id))
                            }
                            Ok(Ok(Err(error))) => Err(RouteError::Unknown(error.to_string())),
                            Ok(Err(_)) => Err(RouteError::Unknown("the shard's Raft stopped before answering".into())),
                            Err(_) => Err(RouteError::Unknown(format!(
                                "no commit within {} ms (append_timeout_ms)",
                                timeout.as_millis()
                            ))),
                        },
                    };
                    drop(permit);
                    for (first_position, respond) in waiters {
                        let answer = result.clone().map(|(log_index, timestamp_ms)| AppendResult {
                            log_index,
                            first_position,
                            timestamp_ms,
                        });
                        let _ = respond.send(answer);
                    }
                }),
            );
        }
    }
}
