//! The local development cluster: three nodes on loopback in zones a, b and c.
//!
//! [`write_dev_configs`] creates (once) the cluster CA, node certificates and the shared
//! iterator secret under the data directory, and writes one configuration file per node. With
//! a Kinesis port, the nodes also serve the Kinesis HTTP API with anonymous access (loopback only).
//! `riffle-node dev` and the process-level tests both start clusters from these files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::{NodeConfig, PeerConfig, RaftConfig, TlsConfig};
use crate::transport::tls::{self, NodeTlsPaths};

pub const DEV_ZONES: [&str; 3] = ["a", "b", "c"];

fn dev_secret(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("cluster-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(secret.trim().to_string());
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let secret: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// Ports of a local cluster's node 1; nodes 2 and 3 use the next two of each.
#[derive(Debug, Clone, Copy)]
pub struct DevPorts {
    pub grpc: u16,
    pub peer: u16,
    /// The Kinesis HTTP API, served with anonymous access; `None` leaves it off.
    pub kinesis: Option<u16>,
}

/// Writes the three configuration files of a local cluster without the Kinesis API and
/// returns their paths.
pub fn write_dev_configs(data_dir: &Path, grpc_port: u16, peer_port: u16) -> Result<Vec<PathBuf>> {
    write_dev_cluster_configs(data_dir, DevPorts { grpc: grpc_port, peer: peer_port, kinesis: None })
}

/// Writes the three configuration files of a local cluster and returns their paths.
pub fn write_dev_cluster_configs(data_dir: &Path, ports: DevPorts) -> Result<Vec<PathBuf>> {
    let DevPorts { grpc: grpc_port, peer: peer_port, kinesis: kinesis_port } = ports;
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().with_context(|| format!("resolving {}", data_dir.display()))?;
    let tls_root = data_dir.join("tls");
    tls::ensure_dev_certificates(&tls_root, &[1, 2, 3])?;
    let secret = dev_secret(&data_dir)?;
    let peers: Vec<PeerConfig> = (1..=3u16)
        .map(|id| PeerConfig {
            id: u64::from(id),
            zone: DEV_ZONES[usize::from(id - 1)].to_string(),
            peer_address: SocketAddr::from(([127, 0, 0, 1], peer_port + id - 1)),
            grpc_address: SocketAddr::from(([127, 0, 0, 1], grpc_port + id - 1)),
        })
        .collect();
    let mut paths = Vec::new();
    for (offset, peer) in (0u16..).zip(&peers) {
        let node_dir = data_dir.join(format!("node-{}", peer.id));
        std::fs::create_dir_all(&node_dir).with_context(|| format!("creating {}", node_dir.display()))?;
        let tls_paths = NodeTlsPaths::dev(&tls_root, peer.id);
        let config = NodeConfig {
            node_id: peer.id,
            data_dir: node_dir.clone(),
            grpc_listen: peer.grpc_address,
            peer_listen: peer.peer_address,
            region: "us-east-1".to_string(),
            account: "000000000000".to_string(),
            cluster_secret: secret.clone(),
            stream_shards_max: 256,
            tls: TlsConfig {
                ca_cert: tls_paths.ca_certificate,
                node_cert: tls_paths.node_certificate,
                node_key: tls_paths.node_key,
            },
            peers: peers.clone(),
            raft: RaftConfig::default(),
            kinesis_listen: kinesis_port.map(|port| SocketAddr::from(([127, 0, 0, 1], port + offset))),
            // A local cluster on loopback, for trying things out: no credentials to set up.
            kinesis_allow_anonymous: kinesis_port.is_some(),
        };
        config.validate().map_err(anyhow::Error::msg)?;
        let path = node_dir.join("riffle.toml");
        std::fs::write(&path, config.to_toml()).with_context(|| format!("writing {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}
