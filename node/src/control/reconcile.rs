//! Reconciliation: the groups a node hosts follow the metadata. A stream's shards placed here
//! are started as soon as their creation is applied; deleted streams' groups (tombstones) are
//! stopped and their data removed; a new shard's first leader reports it ready.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use riffle_proto::peer::{self as wire, group_command, GroupCommand, MetaCommand};
use tokio::sync::{mpsc, watch};

use crate::api::ApiError;
use crate::control::membership::NodeState;
use crate::control::metadata::{MetaState, ShardMeta, ShardState, StreamMeta, StreamMode, StreamStatus};
use crate::control::on_demand;
use crate::control::scaling::{next_step, OpenShard, ScalingStep};
use crate::node::{initialize_group, Group, Node};
use crate::raft::log_store::DurableFloor;
use crate::raft::network::GroupNetworkFactory;
use crate::raft::state_machine::{GroupStateMachine, ShardStateMachine};
use crate::raft::types::{ApplyResult, Raft};
use crate::shard::admission::ShardThrottle;
use crate::shard::batcher::Batcher;
use crate::shard::load::LoadMeter;
use crate::shard::{SealState, ShardGroup};

/// How often reconciliation looks again without a metadata change (scaling steps that failed).
const SCALING_RECHECK_MS: u64 = 1_000;

impl Node {
    pub(crate) async fn reconcile(self: Arc<Self>, mut state: watch::Receiver<Arc<MetaState>>) {
        loop {
            // Read before the state: the state published is at least this far.
            let applied =
                self.meta_raft().and_then(|raft| raft.metrics().borrow().last_applied).map_or(0, |id| id.index);
            let current = state.borrow_and_update().clone();
            self.learn_addresses(&current);
            match current.nodes.get(&self.id()).map(|node| node.state) {
                Some(NodeState::Removed) => {
                    self.depart();
                    return;
                }
                Some(NodeState::Decommissioning) => self.ask_whether_removed(),
                // Not a voter of the metadata group as its own log has it (a learner being
                // decommissioned, restarted before it applied anything): it may have been
                // removed meanwhile, and then no leader will ever send it its removal.
                _ if !self.is_meta_voter() => self.ask_whether_removed(),
                _ => {}
            }
            let deleted: BTreeSet<u64> = current.deleted_groups.iter().copied().collect();
            let mut all_hosted = true;
            for stream in current.streams.values() {
                for shard in stream.shards.iter().filter(|shard| !shard.expired) {
                    if shard.placed_on(self.id()) && self.group(shard.group_id).is_none() {
                        if let Err(error) = self.host_shard(shard).await {
                            all_hosted = false;
                            tracing::error!(group = shard.group_id, %error, "cannot host shard group");
                        }
                    }
                    self.ensure_duties(&stream.name, shard);
                }
            }
            let stored: BTreeSet<u64> = self.logs.groups().into_iter().collect();
            for group_id in deleted {
                if self.group(group_id).is_some() || stored.contains(&group_id) {
                    let _changing = self.group_changes.lock().await;
                    self.remove_group_data(group_id).await;
                }
            }
            // A node that lost its disk stays amnesiac until every group placed on it is hosted
            // (a group started later would not know to stay out of votes).
            if all_hosted {
                self.note_reconciled(applied);
            }
            self.drop_unplaced_replicas(&current);
            self.hand_over_leaderships(&current);
            self.restore_voters(&current);
            self.drive_scaling(&current);
            // Woken by every applied change, and now and then regardless, so a scaling step
            // that failed is proposed again even when nothing else changes.
            tokio::select! {
                changed = state.changed() => if changed.is_err() { return },
                _ = self.rest(Duration::from_millis(SCALING_RECHECK_MS)) => {}
            }
            if self.is_stopped() {
                return;
            }
        }
    }

    /// On the metadata leader: moves every stream's control work along — the next step of an
    /// UpdateShardCount in progress whose previous step has settled, an on-demand stream's
    /// split or merge, the completion of a mode change, the purge of a deleted stream.
    fn drive_scaling(self: &Arc<Self>, state: &MetaState) {
        let leading = self.meta_raft().is_some_and(|raft| raft.metrics().borrow().current_leader == Some(self.id()));
        if !leading {
            return;
        }
        self.drive_membership(state);
        self.prune_loads(state);
        let settings = &self.options.limits.on_demand;
        let account_open: u32 = state.streams.values().map(|stream| stream.open_shard_count() as u32).sum();
        for stream in state.streams.values() {
            let command = if stream.status == StreamStatus::Deleting {
                wire::meta_command::Command::PurgeStream(wire::PurgeStream { name: stream.name.clone() })
            } else if !stream.settled() {
                continue;
            } else if let Some(target) = stream.scaling_target {
                let open: Vec<OpenShard> = stream
                    .shards
                    .iter()
                    .filter(|shard| shard.state == ShardState::Open)
                    .map(|shard| OpenShard {
                        index: shard.index,
                        start: shard.starting_hash_key,
                        end: shard.ending_hash_key,
                    })
                    .collect();
                let Some(step) = next_step(&open, target) else { continue };
                wire::meta_command::Command::Reshard(self.reshard_command(stream, step, state.next_group_id, true))
            } else if stream.mode_change_pending {
                wire::meta_command::Command::CompleteModeChange(wire::CompleteModeChange {
                    stream: stream.name.clone(),
                })
            } else if stream.mode == StreamMode::OnDemand && stream.status == StreamStatus::Active {
                let room = self.options.limits.account_shards_max.saturating_sub(account_open);
                let Some(step) = on_demand::next_step(&self.shard_views(stream), settings, room) else { continue };
                tracing::info!(stream = %stream.name, closing = ?step.closing, "on-demand scaling");
                wire::meta_command::Command::Reshard(self.reshard_command(stream, step, state.next_group_id, false))
            } else {
                continue;
            };
            // Another proposer may take this step first, or the stream change: the next pass
            // decides again.
            self.propose_in_background(stream.name.clone(), command);
        }
    }

    /// A reshard of `stream` taking `step`, its children placed from `next_group_id` on (a
    /// placement that cannot be made proposes nothing: the state machine refuses childless
    /// reshards).
    fn reshard_command(
        &self,
        stream: &StreamMeta,
        step: ScalingStep,
        next_group_id: u64,
        scaling_step: bool,
    ) -> wire::Reshard {
        let placement = self.place_new_shards(step.children.len() as u32, next_group_id).unwrap_or_default();
        let children = step
            .children
            .into_iter()
            .zip(placement)
            .map(|(((start, end), parents), replicas)| wire::ChildShardSpec {
                starting_hash_key: start.to_be_bytes().to_vec().into(),
                ending_hash_key: end.to_be_bytes().to_vec().into(),
                parents,
                replicas,
            })
            .collect();
        wire::Reshard {
            stream: stream.name.clone(),
            closing: step.closing,
            children,
            scaling_step,
            requested_ms: self.seams.clock.now_ms(),
        }
    }

    /// Whether the tail recovery cut off `segments` held records this replica had made durable
    /// and cannot get back from its own log (see `host_shard`).
    fn cut_is_damage(&self, group_id: u64, segments: &crate::storage::ShardSegments) -> bool {
        let durable = segments.last_durable().map_or(0, |log_id| log_id.index);
        let purged = self.logs.purged_index(group_id);
        let recorded = crate::raft::state_machine::recorded_applied_index(&self.logs, group_id);
        purged > durable || recorded > durable
    }

    pub(crate) async fn host_shard(self: &Arc<Self>, shard: &ShardMeta) -> Result<(), String> {
        let group_id = shard.group_id;
        // A removal of an old copy of this replica under way finishes first.
        let _changing = self.group_changes.lock().await;
        if self.group(group_id).is_some() {
            return Ok(());
        }
        // Only a group whose membership never changed starts from its first replicas; a replica
        // added later (or after a disk loss) has no log, and is admitted by the leader first. A
        // first replica that never held the group (its node was cut off when the shard was
        // created) and was never moved away joins as it is, even after other replicas moved.
        let founder = shard.moves == 0 && shard.replicas.contains(&self.id());
        let never_held_data = founder || shard.founders.contains(&self.id());
        let log_cut = self.logs.log_is_cut(group_id);
        let (segments, damaged) = match self.segments.shard(group_id) {
            // A raft log that lost a stretch (raft-engine cut a damaged file) is damage too.
            Ok(_) if log_cut => {
                tracing::warn!(
                    node = self.id(),
                    group = group_id,
                    first_kept = ?self.logs.first_index(group_id),
                    purged = self.logs.purged_index(group_id),
                    "this replica's raft log lost entries (a damaged log file was cut): dropping the group to be readmitted and repaired from the other replicas"
                );
                self.logs.remove_group(group_id).await?;
                self.segments.remove_shard(group_id).map_err(|error| error.to_string())?;
                (self.segments.shard(group_id).map_err(|error| error.to_string())?, true)
            }
            // A cut tail is a torn write the log replays, unless the log no longer holds what
            // followed the last good batch (purged), or the state machine had recorded having
            // applied past it (its applied marker or its membership): then the cut lost records this replica had made durable, and it
            // is damage like any other (it would otherwise serve the shard without them).
            Ok(segments) if segments.recovered_cut() && self.cut_is_damage(group_id, &segments) => {
                tracing::warn!(
                    node = self.id(),
                    group = group_id,
                    "this replica's newest stored records are unreadable and the log cannot replay them: dropping them to be readmitted and repaired from the other replicas"
                );
                self.logs.remove_group(group_id).await?;
                self.segments.remove_shard(group_id).map_err(|error| error.to_string())?;
                (self.segments.shard(group_id).map_err(|error| error.to_string())?, true)
            }
            Ok(segments) => (segments, false),
            // Stored records that fail their checksums are damage, not the end of the log: this
            // replica drops everything it holds of the group (log and vote included) and is
            // readmitted by the group's leader as a new, empty replica, like one whose disk was
            // lost; it catches up from the other replicas, which hold the good copy.
            Err(error) if error.is_corruption() => {
                tracing::warn!(
                    node = self.id(),
                    group = group_id,
                    %error,
                    "this replica's stored records are damaged: dropping them to be readmitted and repaired from the other replicas"
                );
                self.logs.remove_group(group_id).await?;
                self.segments.remove_shard(group_id).map_err(|error| error.to_string())?;
                (self.segments.shard(group_id).map_err(|error| error.to_string())?, true)
            }
            Err(error) => return Err(error.to_string()),
        };
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let floor = DurableFloor::new(group_id, self.logs.clone()).map_err(|error| error.to_string())?;
        let seal = SealState::default();
        let machine = ShardStateMachine::open(
            group_id,
            self.logs.clone(),
            segments.clone(),
            seal.clone(),
            started.clone(),
            floor.clone(),
        )
        .map_err(|error| error.to_string())?;
        let log = self.logs.group_log(group_id, floor).map_err(|error| error.to_string())?;
        let network = GroupNetworkFactory { group: group_id, transport: self.transport.clone() };
        let raft = Raft::new(self.id(), self.raft_config.clone(), network, log, GroupStateMachine::Shard(machine))
            .await
            .map_err(|error| format!("starting group {group_id}: {error}"))?;
        started.store(true, std::sync::atomic::Ordering::SeqCst);
        let members: BTreeSet<u64> = shard.replicas.iter().copied().collect();
        let amnesiac = self.is_amnesiac();
        let restarted = raft.is_initialized().await.unwrap_or(false);
        let (appends, receiver) = mpsc::channel(self.options.limits.append_queue_depth_max.max(1));
        let in_flight = Arc::new(tokio::sync::Semaphore::new(self.options.limits.appends_in_flight_max.max(1)));
        let batcher = Batcher {
            raft: raft.clone(),
            seams: self.seams.clone(),
            limits: self.options.limits.clone(),
            in_flight: in_flight.clone(),
        };
        self.seams.executor.spawn("shard-batcher", Box::pin(batcher.run(receiver)));
        let now = self.seams.clock.now_ms();
        let throttle = Mutex::new(ShardThrottle::new(&self.options.limits.throttling, now));
        let load = Mutex::new(LoadMeter::new(self.options.limits.on_demand.horizon_ms(), now));
        let group = Arc::new(Group::new(
            group_id,
            raft.clone(),
            Some(ShardGroup {
                seal,
                segments,
                appends,
                throttle,
                load,
                duties_running: AtomicBool::new(false),
                in_flight,
                leading_since: Mutex::new(None),
            }),
        ));
        self.watch_core(&raft, group_id);
        let fresh = amnesiac || damaged || (!restarted && !never_held_data);
        let lost_before = self.resume_readmission(&group, fresh).await?;
        if restarted && !group.awaiting_readmission() {
            self.rejoin_quietly(&group);
        }
        // Registered before it is initialized, so that a leader's messages reach it meanwhile.
        self.groups.lock().expect("groups lock is not poisoned").insert(group_id, group);
        self.hosted.notify_waiters();
        if !restarted && founder && !lost_before {
            let fresh = initialize_group(&raft, members).await;
            if fresh && shard.replicas.first() == Some(&self.id()) {
                // The preferred replica campaigns at once, so leaders spread as placement chose.
                let _ = raft.trigger().elect().await;
            }
        }
        Ok(())
    }

    /// Starts the duties task of a hosted shard group if the metadata gives it something to do
    /// and none runs yet.
    fn ensure_duties(self: &Arc<Self>, stream: &str, shard: &ShardMeta) {
        let Some(group) = self.group(shard.group_id) else { return };
        let Some(shard_group) = &group.shard else { return };
        if !duties_due(shard) || shard_group.duties_running.swap(true, Ordering::SeqCst) {
            return;
        }
        let duties = self.clone().shard_duties(stream.to_string(), group.clone());
        self.seams.executor.spawn("shard-duties", Box::pin(duties));
    }

    /// What a shard's leader owes the metadata group: reporting the group's first leader (so a
    /// new stream or child turns ACTIVE, and every node reports the replicated status), and
    /// sealing a shard a reshard closes, then reporting where it was sealed. Runs while this
    /// node leads the group and something is due; ends when nothing is (whoever did it), when
    /// the stream is gone, or when the group or the node stops.
    async fn shard_duties(self: Arc<Self>, stream: String, group: Arc<Group>) {
        const RETRY_PAUSE_MAX_MS: u64 = 2_000;
        let Some(shard_group) = &group.shard else { return };
        let Some(mut meta) = self.meta_watch() else { return };
        let mut metrics = group.raft.metrics();
        let mut failures: u64 = 0;
        let current = |meta: &watch::Receiver<Arc<MetaState>>| {
            meta.borrow()
                .streams
                .get(&stream)
                .and_then(|known| known.shards.iter().find(|shard| shard.group_id == group.id))
                .cloned()
        };
        loop {
            meta.borrow_and_update();
            let shard = current(&meta).filter(|shard| duties_due(shard) && !self.is_stopped());
            let Some(shard) = shard else {
                shard_group.duties_running.store(false, Ordering::SeqCst);
                // A duty that arrived after the check is this task's again, unless reconcile
                // has started another task for it meanwhile.
                let again = current(&meta).is_some_and(|shard| duties_due(&shard)) && !self.is_stopped();
                if !again || shard_group.duties_running.swap(true, Ordering::SeqCst) {
                    return;
                }
                continue;
            };
            let leading = metrics.borrow_and_update().current_leader == Some(self.id());
            if !leading {
                tokio::select! {
                    changed = metrics.changed() => if changed.is_err() { shard_group.duties_running.store(false, Ordering::SeqCst); return },
                    changed = meta.changed() => if changed.is_err() { shard_group.duties_running.store(false, Ordering::SeqCst); return },
                }
                continue;
            }
            let outcome = if let Some(moving) = shard.moving {
                self.move_replica(&stream, &group, moving).await
            } else if !shard.ready && !matches!(shard.state, ShardState::Closed { .. }) {
                let ready = wire::MarkShardReady { stream: stream.clone(), group_id: group.id };
                self.propose_meta(MetaCommand { command: Some(wire::meta_command::Command::MarkShardReady(ready)) })
                    .await
                    .map(|_| ())
            } else {
                self.seal_and_report(&stream, &group, shard_group).await
            };
            match outcome {
                Ok(()) => failures = 0,
                Err(error) => {
                    failures += 1;
                    let pause = (self.options.raft.heartbeat_interval_ms * failures).min(RETRY_PAUSE_MAX_MS);
                    tracing::debug!(group = group.id, %error, "a shard duty failed; retrying");
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }
    }

    /// Seals the shard in its own log (once: a seal applied earlier is reused), then records in
    /// the metadata where it was sealed.
    async fn seal_and_report(&self, stream: &str, group: &Group, shard_group: &ShardGroup) -> Result<(), ApiError> {
        let seal_index = match shard_group.seal.sealed_at() {
            Some(index) => index,
            None => {
                let seal = GroupCommand { command: Some(group_command::Command::Seal(wire::Seal {})) };
                let timeout = Duration::from_millis(self.options.limits.append_timeout_ms);
                match tokio::time::timeout(timeout, group.raft.client_write(seal)).await {
                    Ok(Ok(response)) => match response.data {
                        ApplyResult::Sealed { seal_index } => seal_index,
                        other => return Err(ApiError::Internal(format!("a seal applied as {other:?}"))),
                    },
                    Ok(Err(error)) => return Err(ApiError::Internal(format!("sealing group {}: {error}", group.id))),
                    Err(_) => return Err(ApiError::Internal(format!("sealing group {} timed out", group.id))),
                }
            }
        };
        let sealed = wire::ShardSealed {
            stream: stream.to_string(),
            group_id: group.id,
            seal_index,
            sealed_ms: self.seams.clock.now_ms(),
        };
        // A refusal means the stream is gone or the shard already closed: nothing left to do.
        self.propose_meta(MetaCommand { command: Some(wire::meta_command::Command::ShardSealed(sealed)) })
            .await
            .map(|_| ())
    }
}

/// Whether a shard's leader owes the metadata group something.
fn duties_due(shard: &ShardMeta) -> bool {
    let closed = matches!(shard.state, ShardState::Closed { .. });
    (!shard.ready && !closed) || shard.state == ShardState::Sealing || shard.moving.is_some()
}
