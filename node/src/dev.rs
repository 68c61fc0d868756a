//! The local development cluster: three nodes on loopback in zones a, b and c.
//!
//! [`write_dev_configs`] creates (once) the cluster CA, node certificates and the shared
//! iterator secret under the data directory, and writes one configuration file per node. With
//! a Kinesis port, the nodes also serve the Kinesis HTTP API on loopback, with one access key
//! (`riffle-dev`, its secret generated once and kept in `kinesis-credentials`, an AWS shared
//! credentials file) and, unless turned off, anonymous access.
//! `riffle-node dev` and the process-level tests both start clusters from these files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::api::kinesis::KinesisCredential;
use crate::config::{NodeConfig, PeerConfig, RaftConfig, TlsConfig};
use crate::transport::tls::{self, NodeTlsPaths};

pub const DEV_ZONES: [&str; 3] = ["a", "b", "c"];
/// The access key id of a local cluster's Kinesis API.
pub const DEV_ACCESS_KEY_ID: &str = "riffle-dev";

/// The AWS shared credentials file (profile `riffle-dev`) holding the local cluster's key.
pub fn dev_credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join("kinesis-credentials")
}

/// The local cluster's Kinesis access key: its secret is generated on first use and kept in
/// [`dev_credentials_path`].
pub fn dev_kinesis_credential(data_dir: &Path) -> Result<KinesisCredential> {
    let path = dev_credentials_path(data_dir);
    let existing = std::fs::read_to_string(&path).ok().and_then(|text| {
        text.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            (name.trim() == "aws_secret_access_key").then(|| value.trim().to_string())
        })
    });
    let secret = match existing {
        Some(secret) if !secret.is_empty() => secret,
        _ => {
            let mut bytes = [0u8; 20];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            let secret: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            let text = format!(
                "[{DEV_ACCESS_KEY_ID}]\naws_access_key_id = {DEV_ACCESS_KEY_ID}\naws_secret_access_key = {secret}\n"
            );
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            secret
        }
    };
    Ok(KinesisCredential {
        access_key_id: DEV_ACCESS_KEY_ID.to_string(),
        secret_access_key: secret,
        allowed_streams: None,
        allowed_actions: None,
    })
}

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
    /// The Kinesis HTTP API; `None` leaves it off.
    pub kinesis: Option<u16>,
    /// Whether the Kinesis API also serves unsigned requests and unknown keys.
    pub kinesis_anonymous: bool,
}

/// Writes the three configuration files of a local cluster without the Kinesis API and
/// returns their paths.
pub fn write_dev_configs(data_dir: &Path, grpc_port: u16, peer_port: u16) -> Result<Vec<PathBuf>> {
    write_dev_cluster_configs(
        data_dir,
        DevPorts { grpc: grpc_port, peer: peer_port, kinesis: None, kinesis_anonymous: false },
    )
}

/// Writes the three configuration files of a local cluster and returns their paths.
pub fn write_dev_cluster_configs(data_dir: &Path, ports: DevPorts) -> Result<Vec<PathBuf>> {
    write_dev_cluster_configs_with(data_dir, ports, false, &[])
}

/// [`write_dev_cluster_configs`], with Kinesis' per-shard throughput limits enforced when
/// `throttling` is set (`riffle-node dev --throttling`), and `overrides` (`KEY=VALUE`, the key a
/// dotted path of the configuration file, the value TOML or a bare string) applied to every
/// node's configuration (`riffle-node dev --set on_demand.split_after_ms=5000`).
pub fn write_dev_cluster_configs_with(
    data_dir: &Path,
    ports: DevPorts,
    throttling: bool,
    overrides: &[String],
) -> Result<Vec<PathBuf>> {
    let DevPorts { grpc: grpc_port, peer: peer_port, kinesis: kinesis_port, kinesis_anonymous } = ports;
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().with_context(|| format!("resolving {}", data_dir.display()))?;
    let tls_root = data_dir.join("tls");
    tls::ensure_dev_certificates(&tls_root, &[1, 2, 3])?;
    let secret = dev_secret(&data_dir)?;
    let kinesis_credentials = match kinesis_port {
        Some(_) => vec![dev_kinesis_credential(&data_dir)?],
        None => Vec::new(),
    };
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
            account_shards_max: 500,
            tls: TlsConfig {
                ca_cert: tls_paths.ca_certificate,
                node_cert: tls_paths.node_certificate,
                node_key: tls_paths.node_key,
            },
            peers: peers.clone(),
            join: Vec::new(),
            raft: RaftConfig::default(),
            kinesis_listen: kinesis_port.map(|port| SocketAddr::from(([127, 0, 0, 1], port + offset))),
            // A local cluster on loopback, for trying things out: by default no credentials to
            // set up, and any AWS profile works.
            kinesis_allow_anonymous: kinesis_port.is_some() && kinesis_anonymous,
            kinesis_credentials: kinesis_credentials.clone(),
            kinesis_tls_cert: None,
            kinesis_tls_key: None,
            throttling: crate::shard::admission::ThrottleSettings { enabled: throttling, ..Default::default() },
            on_demand: Default::default(),
            retention: Default::default(),
            test_only: Default::default(),
        };
        let config = apply_overrides(config, overrides)?;
        config.validate().map_err(anyhow::Error::msg)?;
        let path = node_dir.join("riffle.toml");
        std::fs::write(&path, config.to_toml()).with_context(|| format!("writing {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}

/// Sets each `KEY=VALUE` of `overrides` in `config`: the key is a dotted path into the
/// configuration file (`on_demand.split_after_ms`), the value a TOML value (`5000`, `true`,
/// `"text"`) or else a bare string. The result is checked as a whole configuration is, so an
/// unknown key or a wrong type is an error naming it.
/// Ports of a node joining a local cluster; each defaults to node 1's port plus the new node's
/// id minus one (node 4 of the default cluster: gRPC 50054, peer 50064, Kinesis 4570).
#[derive(Debug, Clone, Copy, Default)]
pub struct JoinPorts {
    pub grpc: Option<u16>,
    pub peer: Option<u16>,
    pub kinesis: Option<u16>,
}

/// Writes `node-<id>/riffle.toml` for a node that joins the local cluster in `data_dir` (made
/// by `dev`): node 1's configuration with this node's id, zone, ports and a certificate of the
/// cluster's CA, listing only itself as a peer and the founders' gRPC addresses under `join`.
pub fn write_dev_join_config(data_dir: &Path, node_id: u64, zone: &str, ports: JoinPorts) -> Result<PathBuf> {
    let data_dir = data_dir.canonicalize().with_context(|| format!("resolving {}", data_dir.display()))?;
    let template_path = data_dir.join("node-1").join("riffle.toml");
    let template = NodeConfig::load(&template_path).with_context(|| {
        format!("reading {} (start the cluster with `riffle-node dev` first)", template_path.display())
    })?;
    if node_id == 0 || template.peers.iter().any(|peer| peer.id == node_id) {
        anyhow::bail!("node id {node_id} is taken by a founding node or reserved; choose another");
    }
    if zone.is_empty() {
        anyhow::bail!("--zone must not be empty");
    }
    let shift = |port: u16| -> Result<u16> {
        u16::try_from(u64::from(port) + node_id - 1)
            .map_err(|_| anyhow::anyhow!("node {node_id}'s port is out of range"))
    };
    let grpc = ports.grpc.map_or_else(|| shift(template.grpc_listen.port()), Ok)?;
    let peer = ports.peer.map_or_else(|| shift(template.peer_listen.port()), Ok)?;
    let kinesis = match (ports.kinesis, template.kinesis_listen) {
        (Some(port), _) => Some(port),
        (None, Some(address)) => Some(shift(address.port())?),
        (None, None) => None,
    };
    let tls_root = data_dir.join("tls");
    tls::ensure_dev_certificates(&tls_root, &[node_id])?;
    let tls_paths = NodeTlsPaths::dev(&tls_root, node_id);
    let node_dir = data_dir.join(format!("node-{node_id}"));
    std::fs::create_dir_all(&node_dir).with_context(|| format!("creating {}", node_dir.display()))?;
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let myself =
        PeerConfig { id: node_id, zone: zone.to_string(), peer_address: loopback(peer), grpc_address: loopback(grpc) };
    let config = NodeConfig {
        node_id,
        data_dir: node_dir.clone(),
        grpc_listen: loopback(grpc),
        peer_listen: loopback(peer),
        tls: TlsConfig {
            ca_cert: tls_paths.ca_certificate,
            node_cert: tls_paths.node_certificate,
            node_key: tls_paths.node_key,
        },
        join: template.peers.iter().map(|peer| peer.grpc_address).collect(),
        peers: vec![myself],
        kinesis_listen: kinesis.map(loopback),
        ..template
    };
    config.validate().map_err(anyhow::Error::msg)?;
    let path = node_dir.join("riffle.toml");
    std::fs::write(&path, config.to_toml()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

pub fn apply_overrides(config: NodeConfig, overrides: &[String]) -> Result<NodeConfig> {
    if overrides.is_empty() {
        return Ok(config);
    }
    let mut document = toml::Table::try_from(&config).context("the configuration as TOML")?;
    for setting in overrides {
        let Some((key, text)) = setting.split_once('=') else {
            anyhow::bail!("--set {setting}: expected KEY=VALUE");
        };
        let value = match format!("value = {text}").parse::<toml::Table>() {
            Ok(mut parsed) => parsed.remove("value").unwrap_or_else(|| toml::Value::String(text.to_string())),
            Err(_) => toml::Value::String(text.to_string()),
        };
        let path: Vec<&str> = key.trim().split('.').collect();
        let (last, parents) = path.split_last().expect("split yields at least one part");
        let mut table = &mut document;
        for part in parents {
            let entry = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| anyhow::anyhow!("--set {setting}: {part} is not a table"))?;
        }
        table.insert(last.to_string(), value);
        // Checked one setting at a time, so that the error names the setting that is wrong.
        document
            .clone()
            .try_into::<NodeConfig>()
            .map_err(|error| anyhow::anyhow!("--set {setting}: {}", error.message()))?;
    }
    document.try_into::<NodeConfig>().map_err(|error| anyhow::anyhow!("--set: {}", error.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        let directory = tempfile::tempdir().expect("a scratch directory");
        let ports = DevPorts { grpc: 41051, peer: 41061, kinesis: Some(41071), kinesis_anonymous: true };
        let paths = write_dev_cluster_configs(directory.path(), ports).expect("configs");
        NodeConfig::load(&paths[0]).expect("loads")
    }

    #[test]
    fn overrides_set_dotted_keys_with_toml_or_bare_values() {
        let overridden = apply_overrides(
            config(),
            &["on_demand.split_after_ms=5000".into(), "region=eu-west-1".into(), "throttling.enabled=true".into()],
        )
        .expect("applied");
        assert_eq!(overridden.on_demand.split_after_ms, 5000);
        assert_eq!(overridden.region, "eu-west-1");
        assert!(overridden.throttling.enabled);
        assert_eq!(overridden.on_demand.shards_min, 4, "other keys keep their values");
    }

    #[test]
    fn overrides_of_unknown_keys_or_wrong_types_are_errors_naming_them() {
        let unknown = apply_overrides(config(), &["on_demand.split_soon=1".into()]).unwrap_err();
        assert!(unknown.to_string().contains("split_soon"), "{unknown}");
        let wrong = apply_overrides(config(), &["on_demand.split_after_ms=soon".into()]).unwrap_err();
        assert!(wrong.to_string().contains("split_after_ms"), "{wrong}");
        assert!(apply_overrides(config(), &["no-equals-sign".into()]).is_err());
    }
}
