//! Node configuration: a TOML file per node, validated once at start.
//!
//! Unknown keys are errors (a misspelt key must not be silently ignored), and every error
//! names the key that is wrong.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::kinesis::{validate_credentials, KinesisCredential, KinesisSettings};
use crate::control::placement::NodePlace;
use crate::node::{DataLimits, NodeOptions, RaftTiming};
use crate::service::ServiceSettings;

/// One node's configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id; must appear in `peers`.
    pub node_id: u64,
    /// Directory for this node's data (raft log and segments). Created if missing.
    pub data_dir: PathBuf,
    /// Address of the gRPC API.
    pub grpc_listen: SocketAddr,
    /// UDP address of the QUIC peer transport.
    pub peer_listen: SocketAddr,
    /// Region used in stream ARNs. Default `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// Account id used in ARNs and messages. Default `000000000000`.
    #[serde(default = "default_account")]
    pub account: String,
    /// Hex secret, the same on every node, that signs shard iterators. At least 32 hex digits.
    pub cluster_secret: String,
    /// Shards one stream may have at most. Default 256, at most 10,000.
    #[serde(default = "default_stream_shards_max")]
    pub stream_shards_max: u32,
    /// Open shards all streams of the account may have together (DescribeLimits' ShardLimit).
    /// Default 500 (AWS's default in us-east-1), at most 1,000,000.
    #[serde(default = "default_account_shards_max")]
    pub account_shards_max: u32,
    pub tls: TlsConfig,
    /// The cluster's founding nodes, this one included; a node that joins a running cluster
    /// lists at least itself (the cluster's nodes are then learned from its metadata).
    pub peers: Vec<PeerConfig>,
    /// gRPC addresses of nodes of a running cluster this node joins (`JoinCluster`) when it
    /// starts with an empty data directory. Empty (the default) for the founding nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub join: Vec<SocketAddr>,
    #[serde(default)]
    pub raft: RaftConfig,
    /// Address of the Kinesis HTTP API (JSON 1.1, what boto3 and the AWS CLI speak). Default:
    /// absent, and the Kinesis API is off. Must differ from `grpc_listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis_listen: Option<SocketAddr>,
    /// Serve unsigned Kinesis requests, and requests signed by an access key not in
    /// `kinesis_credentials`, as anonymous (full access). A request signed by a configured key
    /// must still verify. Default false: unsigned requests get
    /// `MissingAuthenticationTokenException`, unknown keys `UnrecognizedClientException`.
    #[serde(default)]
    pub kinesis_allow_anonymous: bool,
    /// Access keys of the Kinesis API (`[[kinesis_credentials]]`), verified with SigV4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinesis_credentials: Vec<KinesisCredential>,
    /// PEM certificate chain and private key of the Kinesis API: with both set it serves HTTPS
    /// (ALPN http/1.1) instead of HTTP. Both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis_tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis_tls_key: Option<PathBuf>,
    /// Per-shard throughput limits as Kinesis documents them (`[throttling]`): `enabled`
    /// (default false), `shard_write_bytes_per_s` (1048576), `shard_write_records_per_s`
    /// (1000), `shard_get_records_per_s` (5). Each rate at least 1.
    #[serde(default)]
    pub throttling: crate::shard::admission::ThrottleSettings,
    /// How ON_DEMAND streams scale (`[on_demand]`): `streams_max` (50), `shards_min` (4),
    /// `shards_max` (200), split when a shard's offered writes average
    /// `split_write_bytes_per_s` (1048576) or `split_write_records_per_s` (1000) over
    /// `split_after_ms` (30000); merge two neighbours averaging together under
    /// `merge_write_bytes_per_s` (262144) and `merge_write_records_per_s` (250) over
    /// `merge_after_ms` (600000); `report_interval_ms` (1000).
    #[serde(default)]
    pub on_demand: crate::control::on_demand::OnDemandSettings,
    /// Retention enforcement (`[retention]`): `check_interval_ms` (60000) between passes over
    /// the shards a node leads; `hour_ms` (3600000), the length of a retention hour — shorter
    /// only to see expiry in tests.
    #[serde(default)]
    pub retention: crate::control::retention::RetentionSettings,
    /// Modes for fault testing only (`[test_only]`), which the process-level fault harness
    /// (`riffle-jepsen`) turns on; never for data anyone needs. Default: all off.
    #[serde(default, skip_serializing_if = "TestOnly::is_off")]
    pub test_only: TestOnly,
}

/// Test-only modes of a node (see [`NodeConfig::test_only`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestOnly {
    /// `"lose-unsynced"`: keep every unsynced write in the process's memory until it is synced,
    /// so that `kill -9` loses what a power failure would (`crate::fs::unsynced`).
    /// `"ack-before-fsync"`: the same, but a sync does nothing — a deliberate defect that
    /// acknowledges writes nothing made durable, to show the harness's checks fail.
    /// Absent: the real file system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<TestStorage>,
    /// Let the harness set this node's wall clock: the clock reads the system time plus the
    /// milliseconds written in this file (read every 100 ms; absent or empty: no offset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_file: Option<PathBuf>,
    /// Dial these peers at these addresses whatever the cluster's metadata says
    /// (`[[test_only.dial]] id = 2, address = "10.0.0.201:20102"`): the harness's link relay,
    /// which delays, drops and duplicates node-to-node packets, sits there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dial: Vec<PeerDial>,
}

/// A test-only dialling address for one peer (see [`TestOnly::dial`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerDial {
    pub id: u64,
    pub address: SocketAddr,
}

impl TestOnly {
    pub fn is_off(&self) -> bool {
        *self == TestOnly::default()
    }
}

/// A test-only storage mode (see [`TestOnly::storage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestStorage {
    LoseUnsynced,
    AckBeforeFsync,
}

/// Certificates of the peer transport (mutual TLS under the cluster CA).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_cert: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub id: u64,
    /// Availability zone; replicas of a shard go to distinct zones.
    pub zone: String,
    pub peer_address: SocketAddr,
    pub grpc_address: SocketAddr,
}

/// Raft timing. Bounds: heartbeat 10–10,000 ms; election timeouts above the heartbeat,
/// min < max.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftConfig {
    /// Default 200.
    pub heartbeat_interval_ms: u64,
    /// Default 800.
    pub election_timeout_min_ms: u64,
    /// Default 1600.
    pub election_timeout_max_ms: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        let timing = RaftTiming::default();
        RaftConfig {
            heartbeat_interval_ms: timing.heartbeat_interval_ms,
            election_timeout_min_ms: timing.election_timeout_min_ms,
            election_timeout_max_ms: timing.election_timeout_max_ms,
        }
    }
}

fn default_region() -> String {
    "us-east-1".to_string()
}
fn default_account() -> String {
    "000000000000".to_string()
}
fn default_stream_shards_max() -> u32 {
    256
}
fn default_account_shards_max() -> u32 {
    500
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration {file}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub problem: String,
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError { file: file.clone(), problem: format!("cannot read: {error}") })?;
        let config: NodeConfig =
            toml::from_str(&text).map_err(|error| ConfigError { file: file.clone(), problem: error.to_string() })?;
        config.validate().map_err(|problem| ConfigError { file, problem })?;
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a node configuration always serializes")
    }

    /// Checks every bound; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let mut ids = BTreeSet::new();
        for (position, peer) in self.peers.iter().enumerate() {
            if !ids.insert(peer.id) {
                return Err(format!("peers[{position}].id: node id {} appears twice", peer.id));
            }
            if peer.zone.is_empty() {
                return Err(format!("peers[{position}].zone: must not be empty"));
            }
        }
        if !ids.contains(&self.node_id) {
            return Err(format!("node_id: {} is not listed in peers", self.node_id));
        }
        if self.cluster_secret.len() < 32 || !self.cluster_secret.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err("cluster_secret: must be at least 32 hexadecimal digits".to_string());
        }
        if !(1..=10_000).contains(&self.stream_shards_max) {
            return Err(format!("stream_shards_max: {} is outside 1..=10000", self.stream_shards_max));
        }
        if !(1..=1_000_000).contains(&self.account_shards_max) {
            return Err(format!("account_shards_max: {} is outside 1..=1000000", self.account_shards_max));
        }
        if self.region.is_empty() {
            return Err("region: must not be empty".to_string());
        }
        if self.account.len() != 12 || !self.account.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(format!("account: {:?} is not a 12-digit account id", self.account));
        }
        if self.kinesis_listen.is_some_and(|address| address == self.grpc_listen || address == self.peer_listen) {
            return Err("kinesis_listen: must differ from grpc_listen and peer_listen".to_string());
        }
        validate_credentials(&self.kinesis_credentials)?;
        self.kinesis_tls()?;
        self.throttling.validate()?;
        self.on_demand.validate()?;
        self.retention.validate()?;
        let raft = &self.raft;
        if !(10..=10_000).contains(&raft.heartbeat_interval_ms) {
            return Err(format!("raft.heartbeat_interval_ms: {} is outside 10..=10000", raft.heartbeat_interval_ms));
        }
        if raft.election_timeout_min_ms <= raft.heartbeat_interval_ms {
            return Err("raft.election_timeout_min_ms: must exceed raft.heartbeat_interval_ms".to_string());
        }
        if raft.election_timeout_max_ms <= raft.election_timeout_min_ms {
            return Err("raft.election_timeout_max_ms: must exceed raft.election_timeout_min_ms".to_string());
        }
        Ok(())
    }

    pub fn secret_bytes(&self) -> Vec<u8> {
        self.cluster_secret
            .as_bytes()
            .chunks(2)
            .filter_map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect()
    }

    pub fn node_options(&self) -> NodeOptions {
        let zone =
            self.peers.iter().find(|peer| peer.id == self.node_id).map(|peer| peer.zone.clone()).unwrap_or_default();
        NodeOptions {
            id: self.node_id,
            zone,
            nodes: self
                .peers
                .iter()
                .map(|peer| NodePlace {
                    id: peer.id,
                    zone: peer.zone.clone(),
                    peer_address: peer.peer_address.to_string(),
                    grpc_address: peer.grpc_address.to_string(),
                })
                .collect(),
            join: !self.join.is_empty(),
            data_dir: self.data_dir.clone(),
            mirror_file_names: false,
            raft: RaftTiming {
                heartbeat_interval_ms: self.raft.heartbeat_interval_ms,
                election_timeout_min_ms: self.raft.election_timeout_min_ms,
                election_timeout_max_ms: self.raft.election_timeout_max_ms,
                ..RaftTiming::default()
            },
            limits: DataLimits {
                throttling: self.throttling.clone(),
                on_demand: crate::control::on_demand::OnDemandSettings {
                    shards_max: self.on_demand.shards_max.min(self.stream_shards_max),
                    ..self.on_demand.clone()
                },
                account_shards_max: self.account_shards_max,
                retention: self.retention.clone(),
                ..DataLimits::default()
            },
            segments: Default::default(),
            log_engine: Default::default(),
        }
    }

    /// The Kinesis API's TLS configuration, loaded from `kinesis_tls_cert` and `kinesis_tls_key`.
    pub fn kinesis_tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
        match (&self.kinesis_tls_cert, &self.kinesis_tls_key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err("kinesis_tls_key: must be set with kinesis_tls_cert".to_string()),
            (None, Some(_)) => Err("kinesis_tls_cert: must be set with kinesis_tls_key".to_string()),
            (Some(certificate), Some(key)) => crate::api::kinesis::tls_server_config(certificate, key).map(Some),
        }
    }

    pub fn kinesis_settings(&self) -> KinesisSettings {
        KinesisSettings {
            region: self.region.clone(),
            account: self.account.clone(),
            allow_anonymous: self.kinesis_allow_anonymous,
            credentials: self.kinesis_credentials.clone(),
            iterator_secret: self.secret_bytes(),
            clock: std::sync::Arc::new(crate::seam::SystemClock),
            // Loaded once already by `validate`; failing now means the files changed since.
            tls: self.kinesis_tls().unwrap_or_else(|problem| panic!("{problem}")),
        }
    }

    pub fn service_settings(&self) -> ServiceSettings {
        ServiceSettings {
            region: self.region.clone(),
            account: self.account.clone(),
            stream_shards_max: self.stream_shards_max,
            account_shards_max: self.account_shards_max,
            iterator_secret: self.secret_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
node_id = 1
data_dir = "/tmp/riffle/node-1"
grpc_listen = "127.0.0.1:50051"
peer_listen = "127.0.0.1:50061"
cluster_secret = "00112233445566778899aabbccddeeff"

[tls]
ca_cert = "ca.pem"
node_cert = "node.pem"
node_key = "node.key"

[[peers]]
id = 1
zone = "a"
peer_address = "127.0.0.1:50061"
grpc_address = "127.0.0.1:50051"
"#;

    #[test]
    fn a_valid_file_loads() {
        let config: NodeConfig = toml::from_str(SAMPLE).expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.region, "us-east-1");
        assert_eq!(config.secret_bytes().len(), 16);
        assert_eq!(config.kinesis_listen, None);
        assert!(!config.kinesis_allow_anonymous);
    }

    #[test]
    fn the_kinesis_keys_load_and_round_trip() {
        let text = SAMPLE
            .replace("node_id = 1", "node_id = 1\nkinesis_listen = \"127.0.0.1:4567\"\nkinesis_allow_anonymous = true");
        let config: NodeConfig = toml::from_str(&text).expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.kinesis_listen, Some("127.0.0.1:4567".parse().expect("an address")));
        assert!(config.kinesis_settings().allow_anonymous);
        let again: NodeConfig = toml::from_str(&config.to_toml()).expect("round trips");
        assert_eq!(again.kinesis_listen, config.kinesis_listen);

        let mut clash = config;
        clash.kinesis_listen = Some(clash.grpc_listen);
        assert!(clash.validate().expect_err("refused").starts_with("kinesis_listen"));
    }

    #[test]
    fn kinesis_tls_keys_come_in_pairs_and_name_the_bad_file() {
        let mut config: NodeConfig = toml::from_str(SAMPLE).expect("parses");
        config.kinesis_tls_cert = Some(PathBuf::from("/nonexistent/kinesis.pem"));
        assert!(config.validate().expect_err("refused").starts_with("kinesis_tls_key: must be set"));
        config.kinesis_tls_key = Some(PathBuf::from("/nonexistent/kinesis.key"));
        assert!(config.validate().expect_err("refused").starts_with("kinesis_tls_cert: cannot read"));
        config.kinesis_tls_cert = None;
        assert!(config.validate().expect_err("refused").starts_with("kinesis_tls_cert: must be set"));
    }

    #[test]
    fn kinesis_credentials_load_and_are_validated() {
        let text = format!(
            "{SAMPLE}\n[[kinesis_credentials]]\naccess_key_id = \"AKIDRIFFLE\"\nsecret_access_key = \"s3cret\"\nallowed_streams = [\"logs\"]\nallowed_actions = [\"PutRecord\", \"GetRecords\"]\n\n[[kinesis_credentials]]\naccess_key_id = \"AKIDADMIN\"\nsecret_access_key = \"other\"\n"
        );
        let config: NodeConfig = toml::from_str(&text).expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.kinesis_credentials.len(), 2);
        assert_eq!(config.kinesis_settings().credentials[1].allowed_actions, None);
        let again: NodeConfig = toml::from_str(&config.to_toml()).expect("round trips");
        assert_eq!(again.kinesis_credentials[0].allowed_streams, Some(vec!["logs".to_string()]));

        let bad_action = text.replace("\"GetRecords\"", "\"GetRecordz\"");
        let config: NodeConfig = toml::from_str(&bad_action).expect("parses");
        let error = config.validate().expect_err("refused");
        assert!(error.starts_with("kinesis_credentials[0].allowed_actions"), "{error}");
        let misspelt = text.replace("allowed_streams", "allowed_stream");
        let error = toml::from_str::<NodeConfig>(&misspelt).expect_err("unknown key refused").to_string();
        assert!(error.contains("allowed_stream"), "{error}");
    }

    #[test]
    fn the_ops_example_uses_only_known_keys() {
        let text = include_str!("../../ops/three-zone-node-1.toml");
        let mut config: NodeConfig = toml::from_str(text).expect("the example parses with every key known");
        // The example's secret is a placeholder that must be replaced before use.
        assert!(config.validate().expect_err("placeholder refused").starts_with("cluster_secret"));
        config.cluster_secret = "ab".repeat(32);
        config.validate().expect("valid once the secret is set");
        assert_eq!(config.peers.len(), 3);
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = SAMPLE.replace("node_id = 1", "node_id = 1\nnode_idd = 2");
        let error = toml::from_str::<NodeConfig>(&unknown).expect_err("unknown key refused").to_string();
        assert!(error.contains("node_idd"), "{error}");
        let mut config: NodeConfig = toml::from_str(SAMPLE).expect("parses");
        config.node_id = 9;
        assert!(config.validate().expect_err("refused").starts_with("node_id"));
        config.node_id = 1;
        config.cluster_secret = "short".into();
        assert!(config.validate().expect_err("refused").starts_with("cluster_secret"));
        config.cluster_secret = "00112233445566778899aabbccddeeff".into();
        config.raft.election_timeout_min_ms = 10;
        assert!(config.validate().expect_err("refused").starts_with("raft.election_timeout_min_ms"));
    }
}
