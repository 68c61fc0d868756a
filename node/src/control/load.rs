//! Load reports for ON_DEMAND streams: every node tells the metadata leader, once per report
//! interval, the write load of the on-demand shards it leads; the metadata leader keeps the
//! latest report per shard group and decides splits and merges from them
//! ([`super::on_demand::next_step`]). Reports are soft state, never logged: a new metadata
//! leader waits for fresh ones, and a stale report (its sender stopped reporting) is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use riffle_proto::peer::{self as wire, peer_request, peer_response};

use crate::control::metadata::{MetaState, ShardState, StreamMeta, StreamMode, StreamStatus, META_GROUP};
use crate::control::on_demand::{Observed, ShardView};
use crate::node::{Group, Node};
use crate::routing::RouteError;
use crate::transport::NodeId;

/// Reports older than this many report intervals are ignored.
const STALE_INTERVALS: u64 = 3;

/// The metadata leader's latest report per shard group, with when it arrived (its clock).
#[derive(Debug, Default)]
pub(crate) struct ShardLoads(BTreeMap<u64, (Observed, i64)>);

impl Node {
    /// Sends this node's load report every report interval while any on-demand shard is led
    /// here. Ends when the node stops.
    pub(crate) async fn report_load(self: Arc<Self>) {
        let interval = Duration::from_millis(self.options.limits.on_demand.report_interval_ms);
        while self.rest(interval).await {
            let shards = self.measure_led_shards();
            if shards.is_empty() {
                continue;
            }
            let replicas: Vec<NodeId> = self.member_ids();
            let body = peer_request::Body::LoadReport(wire::LoadReport { node: self.id(), shards });
            // A report that does not arrive is replaced by the next one.
            let _ = tokio::time::timeout(interval, self.route(META_GROUP, &replicas, body, true)).await;
        }
    }

    /// The load of every open shard of an on-demand stream that this node leads now.
    fn measure_led_shards(&self) -> Vec<wire::ShardLoad> {
        let settings = &self.options.limits.on_demand;
        let state = self.meta_state();
        let now = self.seams.clock.now_ms();
        let mut shards = Vec::new();
        let on_demand = state
            .streams
            .values()
            .filter(|stream| stream.mode == StreamMode::OnDemand && stream.status != StreamStatus::Deleting);
        for stream in on_demand {
            for shard in stream.shards.iter().filter(|shard| shard.state == ShardState::Open) {
                let Some(group) = self.group(shard.group_id) else { continue };
                let Some(shard_group) = &group.shard else { continue };
                let (leader, term) = {
                    let metrics = group.raft.metrics();
                    let metrics = metrics.borrow();
                    (metrics.current_leader, metrics.current_term)
                };
                if leader != Some(self.id()) {
                    continue;
                }
                let mut meter = shard_group.load.lock().expect("load lock is not poisoned");
                meter.lead(term, now);
                let split = meter.rate(now, settings.split_after_ms);
                let merge = meter.rate(now, settings.merge_after_ms);
                shards.push(wire::ShardLoad {
                    group_id: shard.group_id,
                    measured_ms: meter.measured_ms(now),
                    split_window_bytes_per_s: split.bytes_per_s,
                    split_window_records_per_s: split.records_per_s,
                    merge_window_bytes_per_s: merge.bytes_per_s,
                    merge_window_records_per_s: merge.records_per_s,
                });
            }
        }
        shards
    }

    /// A load report at this node as the metadata leader.
    pub(crate) fn serve_load_report(
        &self,
        group: &Group,
        report: wire::LoadReport,
    ) -> Result<peer_response::Body, RouteError> {
        if group.id != META_GROUP {
            return Err(RouteError::Failed("a load report goes to the metadata group".into()));
        }
        let leader = group.raft.metrics().borrow().current_leader;
        if leader != Some(self.id()) {
            return Err(RouteError::NotLeader(leader));
        }
        let now = self.seams.clock.now_ms();
        let mut loads = self.shard_loads.lock().expect("loads lock is not poisoned");
        for shard in report.shards {
            let observed = Observed {
                measured_ms: shard.measured_ms,
                split_bytes_per_s: shard.split_window_bytes_per_s,
                split_records_per_s: shard.split_window_records_per_s,
                merge_bytes_per_s: shard.merge_window_bytes_per_s,
                merge_records_per_s: shard.merge_window_records_per_s,
            };
            loads.0.insert(shard.group_id, (observed, now));
        }
        Ok(peer_response::Body::LoadNoted(wire::Blank {}))
    }

    /// Forgets reports that are stale or of groups that are no longer open shards of an
    /// on-demand stream (on the metadata leader, once per decision pass).
    pub(crate) fn prune_loads(&self, state: &MetaState) {
        let now = self.seams.clock.now_ms();
        let stale_ms = (self.options.limits.on_demand.report_interval_ms * STALE_INTERVALS) as i64;
        let open: BTreeSet<u64> = state
            .streams
            .values()
            .filter(|stream| stream.mode == StreamMode::OnDemand)
            .flat_map(|stream| stream.shards.iter())
            .filter(|shard| shard.state == ShardState::Open)
            .map(|shard| shard.group_id)
            .collect();
        let mut loads = self.shard_loads.lock().expect("loads lock is not poisoned");
        loads.0.retain(|group_id, (_, received_ms)| now - *received_ms <= stale_ms && open.contains(group_id));
    }

    /// The open shards of `stream` with their latest reports (on the metadata leader).
    pub(crate) fn shard_views(&self, stream: &StreamMeta) -> Vec<ShardView> {
        let loads = self.shard_loads.lock().expect("loads lock is not poisoned");
        stream
            .shards
            .iter()
            .filter(|shard| shard.state == ShardState::Open)
            .map(|shard| ShardView {
                index: shard.index,
                start: shard.starting_hash_key,
                end: shard.ending_hash_key,
                load: loads.0.get(&shard.group_id).map(|(observed, _)| *observed),
            })
            .collect()
    }
}
