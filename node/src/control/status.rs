//! Cluster status: what every node hosts and leads, and how far each replica lags its leader.
//!
//! The node asked gathers a report from every node (itself included), each within a second; a
//! node that does not answer is shown unreachable. Leaders report their followers' progress
//! (openraft's replication metrics), so lag is known for every group whose leader answered.

use std::collections::BTreeMap;
use std::time::Duration;

use riffle_proto::peer::{self as wire, peer_request, peer_response, PeerRequest, PeerResponse};
use riffle_proto::v1;

use crate::control::metadata::META_GROUP;
use crate::node::Node;
use crate::transport::PeerTransport;

/// How long a node may take to report.
const REPORT_WAIT: Duration = Duration::from_secs(1);

impl Node {
    /// This node's report: every group it hosts, with follower progress where it leads.
    pub(crate) fn status_report(&self) -> wire::NodeReport {
        let groups = self.groups.lock().expect("groups lock is not poisoned").values().cloned().collect::<Vec<_>>();
        let groups = groups
            .iter()
            .map(|group| {
                let metrics = group.raft.metrics().borrow().clone();
                let followers = match (&metrics.replication, metrics.current_leader == Some(self.id())) {
                    (Some(replication), true) => replication
                        .iter()
                        .filter(|(node, _)| **node != self.id())
                        .map(|(node, matched)| wire::FollowerMatch {
                            node: *node,
                            matched_index: matched.map_or(0, |log_id| log_id.index),
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                wire::HostedGroup {
                    group_id: group.id,
                    leader: metrics.current_leader,
                    last_log_index: metrics.last_log_index.unwrap_or(0),
                    followers,
                }
            })
            .collect();
        wire::NodeReport { node: self.id(), groups }
    }

    /// The whole cluster's status, as far as the nodes answer.
    pub async fn cluster_status(&self) -> v1::ClusterStatusResponse {
        let state = self.meta_state();
        let mut known: Vec<(crate::control::placement::NodePlace, &'static str)> = match state.nodes.is_empty() {
            true => self.options.nodes.iter().map(|place| (place.clone(), "active")).collect(),
            false => state.nodes.values().map(|node| (node.place(), node.state.as_str())).collect(),
        };
        known.sort_by_key(|(place, _)| place.id);
        let asks = known.iter().filter(|(_, state)| *state != "removed").map(|(place, _)| async move {
            if place.id == self.id() {
                return (place.id, Some(self.status_report()));
            }
            let request = PeerRequest {
                group_id: META_GROUP,
                body: Some(peer_request::Body::Status(wire::Blank {})),
                incarnation: 0,
            };
            match tokio::time::timeout(REPORT_WAIT, self.transport.call(place.id, request)).await {
                Ok(Ok(PeerResponse { body: Some(peer_response::Body::Status(report)) })) => (place.id, Some(report)),
                _ => (place.id, None),
            }
        });
        let reports: BTreeMap<u64, Option<wire::NodeReport>> =
            futures::future::join_all(asks).await.into_iter().collect();
        // Every group the metadata places, with its name and replicas.
        let mut placed: BTreeMap<u64, (String, Vec<u64>)> = BTreeMap::new();
        let meta_members = self
            .meta_raft()
            .map(|raft| raft.metrics().borrow().membership_config.membership().voter_ids().collect())
            .unwrap_or_default();
        placed.insert(META_GROUP, ("metadata".to_string(), meta_members));
        for stream in state.streams.values() {
            for shard in stream.shards.iter().filter(|shard| !shard.expired) {
                placed.insert(
                    shard.group_id,
                    (
                        format!("{}/{}", stream.name, crate::keys::shard_id(shard.index)),
                        shard.replicas.iter().copied().chain(shard.moving.map(|moving| moving.to)).collect(),
                    ),
                );
            }
        }
        let hosted = |group_id: u64| {
            reports.values().flatten().flat_map(move |report| {
                report
                    .groups
                    .iter()
                    .filter(move |group| group.group_id == group_id)
                    .map(move |group| (report.node, group))
            })
        };
        let groups = placed
            .iter()
            .map(|(group_id, (name, replicas))| {
                // The leader's own report, if it answered and still leads.
                let led = hosted(*group_id).find(|(node, group)| group.leader == Some(*node));
                let leader =
                    led.map(|(node, _)| node).or_else(|| hosted(*group_id).find_map(|(_, group)| group.leader));
                let (last_log_index, lagging) = match led {
                    Some((_, group)) => (
                        group.last_log_index,
                        group
                            .followers
                            .iter()
                            .filter(|follower| follower.matched_index < group.last_log_index)
                            .map(|follower| v1::ReplicaLag {
                                node_id: follower.node,
                                behind_entries: group.last_log_index - follower.matched_index,
                            })
                            .collect(),
                    ),
                    None => (hosted(*group_id).map(|(_, group)| group.last_log_index).max().unwrap_or(0), Vec::new()),
                };
                v1::GroupStatus {
                    group_id: *group_id,
                    name: name.clone(),
                    replicas: replicas.clone(),
                    leader,
                    last_log_index,
                    lagging,
                }
            })
            .collect::<Vec<_>>();
        let nodes = known
            .iter()
            .map(|(place, node_state)| {
                let report = reports.get(&place.id).and_then(Option::as_ref);
                v1::NodeStatus {
                    node_id: place.id,
                    zone: place.zone.clone(),
                    reachable: report.is_some(),
                    replicas: placed.values().filter(|(_, replicas)| replicas.contains(&place.id)).count() as u32,
                    leaders: groups.iter().filter(|group| group.leader == Some(place.id)).count() as u32,
                    state: node_state.to_string(),
                }
            })
            .collect();
        v1::ClusterStatusResponse { answered_by: self.id(), nodes, groups }
    }
}
