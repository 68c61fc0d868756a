//! The cluster under test: real `riffle-node` processes, one per network namespace.
//!
//! [`Cluster`] writes each node's configuration (addresses inside its namespace, certificates
//! of a CA made for the run, the test-only storage mode and clock control), starts the binary
//! with `ip netns exec`, and carries out the process faults: `kill -9`, SIGSTOP/SIGCONT, clock
//! offsets (the node's test-only clock control: a file in its data directory it polls) and
//! damage to its files while it is stopped. A node that exits by itself (fail-stop on a storage
//! error) is started again by [`Cluster::supervise`], as a process supervisor would.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::{bail, Context, Result};
use riffle_node::config::{NodeConfig, PeerConfig, PeerDial, RaftConfig, TestOnly, TestStorage, TlsConfig};
use riffle_node::transport::tls::{ensure_dev_certificates, NodeTlsPaths};

use crate::net::{Host, Topology};

/// Ports every node listens on, inside its own namespace.
pub const GRPC_PORT: u16 = 50051;
pub const PEER_PORT: u16 = 50061;
pub const KINESIS_PORT: u16 = 4567;

/// The secret that signs shard iterators, the same on every node of a run.
const CLUSTER_SECRET: &str = "6a657073656e2d636c75737465722d7365637265742d726966666c65";

/// One node process and what the harness knows of it.
#[derive(Debug)]
struct NodeProcess {
    zone: String,
    config: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// Exits of the process the harness did not cause (fail-stop), with their status.
    unexpected_exits: Vec<String>,
    /// Decommissioned: it left the cluster and must not be started again.
    departed: bool,
}

/// The nodes of one run.
pub struct Cluster {
    binary: PathBuf,
    topology: Topology,
    nodes: BTreeMap<u64, NodeProcess>,
}

/// How the nodes are started.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The `riffle-node` binary.
    pub binary: PathBuf,
    /// The run's directory: `node-N/` per node (configuration, data, log) and `tls/`.
    pub dir: PathBuf,
    /// The test-only storage mode every node runs with.
    pub storage: Option<TestStorage>,
    /// The founding nodes (id, zone); the topology may hold more (spares that join later).
    pub founders: Vec<u64>,
    /// The link relay node-to-node packets go through, if the schedule needs one.
    pub relay: Option<crate::relay::RelayPlan>,
}

impl Cluster {
    /// Writes every node's configuration; starts nothing.
    pub fn new(topology: Topology, options: &ClusterOptions) -> Result<Cluster> {
        if !options.binary.is_file() {
            bail!("no riffle-node binary at {} (build it with cargo build --release)", options.binary.display());
        }
        let ids: Vec<u64> = topology.nodes().iter().map(|node| node.id).collect();
        let tls_root = options.dir.join("tls");
        ensure_dev_certificates(&tls_root, &ids).context("making the run's certificates")?;
        let peer_of = |id: u64| -> Result<PeerConfig> {
            let node = topology.node(id).with_context(|| format!("node {id} is not in the topology"))?;
            Ok(PeerConfig {
                id,
                zone: node.zone.clone(),
                peer_address: SocketAddr::from((node.address, PEER_PORT)),
                grpc_address: SocketAddr::from((node.address, GRPC_PORT)),
            })
        };
        let founders: Vec<PeerConfig> = options.founders.iter().map(|id| peer_of(*id)).collect::<Result<_>>()?;
        let mut nodes = BTreeMap::new();
        for host in topology.nodes() {
            let node_dir = options.dir.join(format!("node-{}", host.id));
            let data_dir = node_dir.join("data");
            std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            let tls = NodeTlsPaths::dev(&tls_root, host.id);
            let founder = options.founders.contains(&host.id);
            let myself = peer_of(host.id)?;
            let config = NodeConfig {
                node_id: host.id,
                data_dir: data_dir.clone(),
                grpc_listen: myself.grpc_address,
                peer_listen: myself.peer_address,
                region: "us-east-1".into(),
                account: "000000000000".into(),
                cluster_secret: CLUSTER_SECRET.into(),
                stream_shards_max: 256,
                account_shards_max: 500,
                tls: TlsConfig { ca_cert: tls.ca_certificate, node_cert: tls.node_certificate, node_key: tls.node_key },
                // A spare joins through the founders; it knows only itself at first.
                peers: if founder { founders.clone() } else { vec![myself] },
                join: if founder { Vec::new() } else { founders.iter().map(|peer| peer.grpc_address).collect() },
                raft: RaftConfig::default(),
                kinesis_listen: Some(SocketAddr::from((host.address, KINESIS_PORT))),
                kinesis_allow_anonymous: true,
                kinesis_credentials: Vec::new(),
                kinesis_tls_cert: None,
                kinesis_tls_key: None,
                throttling: Default::default(),
                on_demand: Default::default(),
                retention: Default::default(),
                test_only: TestOnly {
                    storage: options.storage,
                    clock_offset_file: Some(node_dir.join("clock-offset-ms")),
                    dial: options
                        .relay
                        .iter()
                        .flat_map(|relay| relay.dial_plan(host.id, &ids))
                        .map(|(id, address)| PeerDial { id, address })
                        .collect(),
                },
            };
            config.validate().map_err(|problem| anyhow::anyhow!("node {} configuration: {problem}", host.id))?;
            let config_path = node_dir.join("riffle.toml");
            std::fs::write(&config_path, config.to_toml())
                .with_context(|| format!("writing {}", config_path.display()))?;
            nodes.insert(
                host.id,
                NodeProcess {
                    zone: host.zone.clone(),
                    config: config_path,
                    data_dir,
                    log: node_dir.join("node.log"),
                    child: None,
                    paused: false,
                    unexpected_exits: Vec::new(),
                    departed: false,
                },
            );
        }
        Ok(Cluster { binary: options.binary.clone(), topology, nodes })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Every node id of the topology, founders and spares.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn zone(&self, id: u64) -> Option<&str> {
        self.nodes.get(&id).map(|node| node.zone.as_str())
    }

    pub fn grpc_endpoint(&self, id: u64) -> Option<String> {
        self.topology.address(Host::Node(id)).map(|address| format!("http://{address}:{GRPC_PORT}"))
    }

    pub fn kinesis_endpoint(&self, id: u64) -> Option<String> {
        self.topology.address(Host::Node(id)).map(|address| format!("http://{address}:{KINESIS_PORT}"))
    }

    pub fn data_dir(&self, id: u64) -> Option<&Path> {
        self.nodes.get(&id).map(|node| node.data_dir.as_path())
    }

    fn node_mut(&mut self, id: u64) -> Result<&mut NodeProcess> {
        self.nodes.get_mut(&id).with_context(|| format!("no node {id}"))
    }

    /// Starts node `id` if it is not running; its output is appended to its `node.log`.
    pub fn start(&mut self, id: u64) -> Result<()> {
        let command = self.topology.command_in(Host::Node(id), &self.binary)?;
        let node = self.node_mut(id)?;
        if node.child.is_some() || node.departed {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening {}", node.log.display()))?;
        let mut command = command;
        command
            .arg("--config")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log handle")?)
            .stderr(log);
        let child = command.spawn().with_context(|| format!("starting node {id}"))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|node| node.child.is_some())
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|node| node.paused)
    }

    /// `kill -9`: the process dies at once; with the `lose-unsynced` storage mode it also
    /// loses every write it had not synced, as in a power failure.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        let node = self.node_mut(id)?;
        if let Some(mut child) = node.child.take() {
            // SIGKILL also ends a stopped process.
            let _ = child.kill();
            child.wait().with_context(|| format!("waiting for node {id} to die"))?;
        }
        node.paused = false;
        Ok(())
    }

    fn signal(&mut self, id: u64, signal: libc::c_int) -> Result<bool> {
        let node = self.node_mut(id)?;
        let Some(child) = node.child.as_ref() else { return Ok(false) };
        let pid = i32::try_from(child.id()).context("a pid fits i32")?;
        // SAFETY: signals a child process this harness started and has not reaped.
        let result = unsafe { libc::kill(pid, signal) };
        if result != 0 {
            bail!("signal {signal} to node {id}: {}", std::io::Error::last_os_error());
        }
        Ok(true)
    }

    /// SIGSTOP: the process is frozen, its sockets and files open.
    pub fn pause(&mut self, id: u64) -> Result<()> {
        if self.signal(id, libc::SIGSTOP)? {
            self.node_mut(id)?.paused = true;
        }
        Ok(())
    }

    pub fn resume(&mut self, id: u64) -> Result<()> {
        if self.is_paused(id) {
            self.signal(id, libc::SIGCONT)?;
            self.node_mut(id)?.paused = false;
        }
        Ok(())
    }

    /// Sets node `id`'s wall clock to the system time plus `offset_ms` (test-only clock control).
    pub fn set_clock_offset(&mut self, id: u64, offset_ms: i64) -> Result<()> {
        let file = self.node_mut(id)?.config.with_file_name("clock-offset-ms");
        // Written whole under another name, then renamed: the node never reads half a number.
        let fresh = file.with_extension("new");
        std::fs::write(&fresh, offset_ms.to_string()).with_context(|| format!("writing {}", fresh.display()))?;
        std::fs::rename(&fresh, &file).with_context(|| format!("renaming to {}", file.display()))?;
        Ok(())
    }

    /// Records that node `id` left the cluster (decommissioned): it is not started again.
    pub fn mark_departed(&mut self, id: u64) -> Result<()> {
        self.node_mut(id)?.departed = true;
        Ok(())
    }

    pub fn is_departed(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|node| node.departed)
    }

    /// Reaps nodes that exited by themselves and starts them again — unless they departed: a
    /// clean exit (status 0) means the node left the cluster. Returns a description of each exit.
    pub fn supervise(&mut self) -> Result<Vec<String>> {
        let mut exits = Vec::new();
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let node = self.node_mut(id)?;
            let Some(child) = node.child.as_mut() else { continue };
            let Some(status) = child.try_wait().with_context(|| format!("checking node {id}"))? else { continue };
            node.child = None;
            node.paused = false;
            if status.success() {
                // A node exits cleanly by itself only once it has left the cluster.
                node.departed = true;
                exits.push(format!("node {id} left the cluster and exited"));
                continue;
            }
            let exit = format!("node {id} exited by itself ({status})");
            node.unexpected_exits.push(exit.clone());
            exits.push(exit);
            if !node.departed {
                self.start(id)?;
            }
        }
        Ok(exits)
    }

    /// Every exit the harness did not cause, over the run.
    pub fn unexpected_exits(&self) -> Vec<String> {
        self.nodes.values().flat_map(|node| node.unexpected_exits.iter().cloned()).collect()
    }

    /// The files of node `id`'s data directory (raft log and segments), for corruption.
    pub fn data_files(&self, id: u64) -> Result<Vec<PathBuf>> {
        let node = self.nodes.get(&id).with_context(|| format!("no node {id}"))?;
        let mut files = Vec::new();
        let mut pending = vec![node.data_dir.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    pending.push(entry.path());
                } else if kind.is_file() && entry.metadata()?.len() > 0 {
                    files.push(entry.path());
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// Kills every node and removes the network.
    pub fn shut_down(&mut self) -> Result<()> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id)?;
        }
        self.topology.destroy()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The topology removes its namespaces when it drops, after this.
    }
}
