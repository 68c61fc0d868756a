//! Placement: which nodes hold a shard's replicas, one per zone, and which of them is the
//! preferred leader. Pure functions of the cluster map, so every node computes the same.

use std::collections::BTreeMap;

/// A node and its zone, as placement sees them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodePlace {
    pub id: u64,
    pub zone: String,
    /// Where peers (QUIC) and clients (gRPC) reach it, as HOST:PORT.
    pub peer_address: String,
    pub grpc_address: String,
}

/// Chooses `replication_factor` nodes in distinct zones for each of `shard_count` shards,
/// rotating the first choice (the preferred leader) so leaders spread over the nodes.
pub fn place_replicas(
    nodes: &[NodePlace],
    shard_count: u32,
    replication_factor: usize,
    offset: u64,
) -> Result<Vec<Vec<u64>>, String> {
    let mut by_zone: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for node in nodes {
        by_zone.entry(node.zone.as_str()).or_default().push(node.id);
    }
    if by_zone.len() < replication_factor {
        return Err(format!(
            "{replication_factor} replicas need {replication_factor} zones; the cluster has {}",
            by_zone.len()
        ));
    }
    let zones: Vec<&Vec<u64>> = by_zone.values().collect();
    Ok((0..u64::from(shard_count))
        .map(|shard| {
            let turn = shard + offset;
            (0..replication_factor)
                .map(|step| {
                    let zone = zones[((turn + step as u64) % zones.len() as u64) as usize];
                    zone[((turn / zones.len() as u64) % zone.len() as u64) as usize]
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_zones_and_leaders() {
        let nodes: Vec<NodePlace> = [(1, "a"), (2, "b"), (3, "c")]
            .iter()
            .map(|(id, zone)| NodePlace {
                id: *id,
                zone: zone.to_string(),
                peer_address: String::new(),
                grpc_address: String::new(),
            })
            .collect();
        let placement = place_replicas(&nodes, 6, 3, 0).expect("placed");
        for replicas in &placement {
            let mut sorted = replicas.clone();
            sorted.sort();
            assert_eq!(sorted, vec![1, 2, 3]);
        }
        let leaders: Vec<u64> = placement.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        assert!(place_replicas(&nodes[..2], 1, 3, 0).is_err());
    }
}
