//! `riffle-node`: run one node from a configuration file, or a local three-zone cluster.
//!
//! - `riffle-node --config FILE` runs one node (a real deployment runs one per machine).
//! - `riffle-node dev` starts three node processes on loopback, in zones a, b and c, with data
//!   under `./riffle-data` and the Kinesis HTTP API (key `riffle-dev`, anonymous access unless
//!   `--kinesis-anonymous false`), prints their endpoints, and stops them all on Ctrl-C.
//! - `riffle-node gen-certs` creates a cluster CA and node certificates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use riffle_node::api::grpc::GrpcApi;
use riffle_node::api::kinesis::{self, KinesisApi};
use riffle_node::config::NodeConfig;
use riffle_node::config::TestStorage;
use riffle_node::control::placement::NodePlace;
use riffle_node::dev::{self, DevPorts};
use riffle_node::fs::real::RealFileSystem;
use riffle_node::fs::unsynced::{SyncMode, UnsyncedApartFileSystem, WRITE_BACK_INTERVAL};
use riffle_node::fs::FileSystem;
use riffle_node::node::Node;
use riffle_node::seam::{Clock, OffsetClock, Seams, SystemClock, TokioExecutor};
use riffle_node::service::StreamService;
use riffle_node::transport::quic::{QuicConfig, QuicTransport};
use riffle_node::transport::tls::{self, NodeTlsPaths};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "riffle-node", version, about = "A Raft-replicated, Kinesis-compatible streaming node")]
struct Arguments {
    /// Run one node from this configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Commands>,
}

#[derive(Subcommand)]
enum Commands {
    /// Start a local three-zone cluster: three node processes on loopback.
    Dev {
        /// Where the cluster keeps its data, certificates and configuration.
        #[arg(long, default_value = "./riffle-data")]
        data_dir: PathBuf,
        /// gRPC port of node 1; nodes 2 and 3 use the next ports.
        #[arg(long, default_value_t = 50051)]
        grpc_port: u16,
        /// QUIC peer port of node 1; nodes 2 and 3 use the next ports.
        #[arg(long, default_value_t = 50061)]
        peer_port: u16,
        /// Kinesis HTTP API port of node 1; nodes 2 and 3 use the next ports.
        #[arg(long, default_value_t = 4567)]
        kinesis_port: u16,
        /// Serve unsigned Kinesis requests and unknown access keys (`--kinesis-anonymous false`
        /// requires the `riffle-dev` key's signature on every request).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        kinesis_anonymous: bool,
        /// Enforce Kinesis' per-shard limits (1 MiB/s and 1,000 records/s of writes, 5
        /// GetRecords calls/s), answering ProvisionedThroughputExceededException beyond them.
        #[arg(long)]
        throttling: bool,
        /// Restart a node that exits (killed, crashed) after `--restart-delay-ms`; the others
        /// keep serving either way. `--restart false` leaves it down.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        restart: bool,
        /// How long a node that exited stays down before it is restarted.
        #[arg(long, default_value_t = 2_000)]
        restart_delay_ms: u64,
        /// Set a configuration key of every node, as a dotted path into the configuration file
        /// (repeatable), e.g. `--set on_demand.split_after_ms=5000`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Add a node to the local cluster `dev` runs: writes its configuration (joining through
    /// the founding nodes, with a certificate of the cluster's CA) and runs it in the
    /// foreground until Ctrl-C. Its replicas and leaders arrive by themselves.
    DevJoin {
        /// The local cluster's directory (as given to `dev`).
        #[arg(long, default_value = "./riffle-data")]
        data_dir: PathBuf,
        /// The new node's id (not 1, 2 or 3).
        #[arg(long)]
        node_id: u64,
        /// Its zone; replicas of a shard sit in distinct zones (`dev` uses a, b and c).
        #[arg(long)]
        zone: String,
        /// Its ports; each defaults to node 1's plus the id minus one.
        #[arg(long)]
        grpc_port: Option<u16>,
        #[arg(long)]
        peer_port: Option<u16>,
        #[arg(long)]
        kinesis_port: Option<u16>,
    },
    /// Create a cluster CA (if missing) and certificates for the given node ids.
    GenCerts {
        /// Directory for the CA (`ca/`) and the nodes (`node-<id>/`).
        #[arg(long)]
        out: PathBuf,
        /// Node ids, comma separated.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<u64>,
    },
}

fn main() -> Result<()> {
    let arguments = Arguments::parse();
    match (arguments.config, arguments.command) {
        (Some(config), None) => run_node(&config),
        (
            None,
            Some(Commands::Dev {
                data_dir,
                grpc_port,
                peer_port,
                kinesis_port,
                kinesis_anonymous,
                throttling,
                restart,
                restart_delay_ms,
                overrides,
            }),
        ) => run_dev(
            &data_dir,
            DevPorts { grpc: grpc_port, peer: peer_port, kinesis: Some(kinesis_port), kinesis_anonymous },
            (throttling, &overrides),
            restart.then_some(Duration::from_millis(restart_delay_ms)),
        ),
        (None, Some(Commands::DevJoin { data_dir, node_id, zone, grpc_port, peer_port, kinesis_port })) => {
            let ports = dev::JoinPorts { grpc: grpc_port, peer: peer_port, kinesis: kinesis_port };
            let config = dev::write_dev_join_config(&data_dir, node_id, &zone, ports)?;
            println!(
                "node {node_id} (zone {zone}) joins the cluster in {}: configuration {}",
                data_dir.display(),
                config.display()
            );
            run_node(&config)
        }
        (None, Some(Commands::GenCerts { out, nodes })) => {
            if nodes.is_empty() {
                bail!("--nodes needs at least one node id");
            }
            tls::ensure_dev_certificates(&out, &nodes)?;
            println!("certificates for nodes {nodes:?} are in {}", out.display());
            Ok(())
        }
        (Some(_), Some(_)) => bail!("give either --config FILE or a subcommand, not both"),
        (None, None) => {
            bail!("nothing to do: run `riffle-node dev` for a local cluster or `riffle-node --config FILE`")
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,raft_engine=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

/// The node's file system: the real one, or a test-only mode (`[test_only] storage`).
fn node_file_system(config: &NodeConfig) -> Arc<dyn FileSystem> {
    match config.test_only.storage {
        None => Arc::new(RealFileSystem::new()),
        Some(TestStorage::LoseUnsynced) => {
            tracing::warn!("test-only storage mode: unsynced writes live in memory and die with the process");
            Arc::new(UnsyncedApartFileSystem::new(SyncMode::Persist))
        }
        Some(TestStorage::AckBeforeFsync) => {
            tracing::warn!("test-only storage mode ack-before-fsync: this node acknowledges writes it never syncs");
            Arc::new(UnsyncedApartFileSystem::new(SyncMode::Skip { write_back: WRITE_BACK_INTERVAL }))
        }
    }
}

/// How often the test-only clock control looks at its offset file.
const CLOCK_CONTROL_POLL: Duration = Duration::from_millis(100);

/// The node's wall clock: the system's, or one the fault harness sets (`[test_only]
/// clock_offset_file`): the system time plus the milliseconds in that file, read at start and
/// then every [`CLOCK_CONTROL_POLL`] (a file, not a signal, so that the harness cannot kill a
/// node that has not set up a handler yet).
fn node_clock(config: &NodeConfig) -> Arc<dyn Clock> {
    let Some(file) = config.test_only.clock_offset_file.clone() else {
        return Arc::new(SystemClock);
    };
    tracing::warn!(file = %file.display(), "test-only clock control: the wall clock follows an offset file");
    let clock = Arc::new(OffsetClock::default());
    let read_offset = {
        let clock = clock.clone();
        let mut current = 0i64;
        move || {
            let offset = match std::fs::read_to_string(&file) {
                Ok(text) => text.trim().parse::<i64>().unwrap_or(current),
                Err(_) => 0,
            };
            if offset != current {
                tracing::warn!(offset_ms = offset, "test-only clock control: the wall clock is offset");
                clock.set_offset_ms(offset);
                current = offset;
            }
        }
    };
    let mut read_offset = read_offset;
    read_offset();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CLOCK_CONTROL_POLL).await;
            read_offset();
        }
    });
    clock
}

fn run_node(config_path: &Path) -> Result<()> {
    init_logging();
    let config = NodeConfig::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: NodeConfig) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let seams = Seams { clock: node_clock(&config), executor: Arc::new(TokioExecutor), fs: node_file_system(&config) };
    let clock = seams.clock.clone();
    let node = Node::open(config.node_options(), seams).map_err(anyhow::Error::msg)?;
    let tls = NodeTlsPaths {
        ca_certificate: config.tls.ca_cert.clone(),
        node_certificate: config.tls.node_cert.clone(),
        node_key: config.tls.node_key.clone(),
    }
    .load()?;
    let peers: BTreeMap<u64, SocketAddr> =
        config.peers.iter().filter(|peer| peer.id != config.node_id).map(|peer| (peer.id, peer.peer_address)).collect();
    let transport = QuicTransport::bind(
        config.node_id,
        config.peer_listen,
        peers,
        tls,
        QuicConfig {
            dial_overrides: config.test_only.dial.iter().map(|dial| (dial.id, dial.address)).collect(),
            ..QuicConfig::default()
        },
        node.peer_handler(),
    )?;
    if !config.join.is_empty() && node.has_data() {
        // A node that joined restarts knowing only itself from its configuration: it learns
        // where the cluster's nodes are first, since its metadata replica may need them to
        // catch up before it knows them itself.
        if let Some(members) = list_cluster(&config, &transport).await {
            node.learn_members(members);
        }
    }
    if !config.join.is_empty() && !node.has_data() {
        let (rejoined, members) = join_cluster(&config, &transport).await?;
        node.learn_members(members);
        if rejoined {
            tracing::warn!(
                node = config.node_id,
                "the cluster knew this node before: it lost its data, and catches up before it votes again"
            );
            node.rejoins_after_disk_loss();
        }
    }
    node.start(transport.clone()).await.map_err(anyhow::Error::msg)?;
    let service = StreamService::new(node.clone(), config.service_settings());
    // One stop signal for both APIs: SIGINT or SIGTERM.
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let mut departed = node.departed();
    let mut storage_failure = node.storage_failure();
    tokio::spawn(async move {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = departed.wait_for(|departed| *departed) => {}
            // Fail-stop: the process exits with an error; started again, it recovers.
            _ = storage_failure.wait_for(Option::is_some) => {}
            _ = async { match terminate.as_mut() { Some(signal) => { signal.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        tracing::info!("stopping");
        let _ = stop_sender.send(true);
    });
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the sender is gone, which only happens after it sent.
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let kinesis_server = match config.kinesis_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding the Kinesis API to {address} (kinesis_listen)"))?;
            let keys = config.kinesis_credentials.len();
            if config.kinesis_allow_anonymous {
                tracing::warn!(
                    kinesis = %address,
                    keys,
                    "the Kinesis API accepts unsigned requests and unknown access keys (kinesis_allow_anonymous)"
                );
            } else if keys == 0 {
                tracing::warn!(
                    kinesis = %address,
                    "the Kinesis API refuses every request: no kinesis_credentials and kinesis_allow_anonymous is false"
                );
            } else {
                tracing::info!(kinesis = %address, keys, "the Kinesis API verifies SigV4 signatures");
            }
            let mut settings = config.kinesis_settings();
            settings.clock = clock;
            let api = KinesisApi::new(service.clone(), settings, rand::random());
            Some(tokio::spawn(kinesis::serve(listener, api, stopped(stop.clone()))))
        }
        None => None,
    };
    tracing::info!(
        node = config.node_id,
        grpc = %config.grpc_listen,
        peer = %config.peer_listen,
        kinesis = ?config.kinesis_listen,
        "node serving"
    );
    tonic::transport::Server::builder()
        .add_service(GrpcApi::server(service))
        .serve_with_shutdown(config.grpc_listen, stopped(stop))
        .await
        .with_context(|| format!("serving gRPC on {}", config.grpc_listen))?;
    if let Some(server) = kinesis_server {
        // It stops on the same signal, after at most its drain timeout.
        if let Err(error) = server.await {
            tracing::warn!(%error, "the Kinesis API server ended abnormally");
        }
    }
    node.shutdown().await;
    transport.shutdown().await;
    if let Some(reason) = node.storage_failure().borrow().clone() {
        bail!("storage failed, the node stopped (starting it again recovers from what was synced): {reason}");
    }
    Ok(())
}

/// Attempts to reach a node of `join` before giving up, one pause apart.
const JOIN_ATTEMPTS_MAX: u32 = 60;
const JOIN_PAUSE: Duration = Duration::from_secs(1);

/// Asks the nodes of `join`, in turn, to admit this node, after learning the cluster's nodes
/// (so that the transport accepts them when they reach this node). Returns whether the cluster
/// knew this node before (it lost its data).
async fn join_cluster(config: &NodeConfig, transport: &QuicTransport) -> Result<(bool, Vec<NodePlace>)> {
    use riffle_proto::v1::{riffle_client::RiffleClient, ClusterNode, JoinClusterRequest, ListNodesRequest};
    let zone =
        config.peers.iter().find(|peer| peer.id == config.node_id).map(|peer| peer.zone.clone()).unwrap_or_default();
    let grpc_address =
        config.peers.iter().find(|peer| peer.id == config.node_id).map_or(config.grpc_listen, |peer| peer.grpc_address);
    let request = JoinClusterRequest {
        node: Some(ClusterNode {
            node_id: config.node_id,
            zone,
            peer_address: config.peer_listen.to_string(),
            grpc_address: grpc_address.to_string(),
            state: String::new(),
        }),
    };
    let mut last_error = String::new();
    for attempt in 0..JOIN_ATTEMPTS_MAX {
        let seed = config.join[attempt as usize % config.join.len()];
        let outcome = async {
            let mut client =
                RiffleClient::connect(format!("http://{seed}")).await.map_err(|error| error.to_string())?;
            let nodes = client.list_nodes(ListNodesRequest {}).await.map_err(|status| status.message().to_string())?;
            for known in nodes.into_inner().nodes.iter().filter(|known| known.node_id != config.node_id) {
                if let Ok(address) = known.peer_address.parse() {
                    transport.set_peer_addr(known.node_id, address);
                }
            }
            client.join_cluster(request.clone()).await.map_err(|status| status.message().to_string())
        }
        .await;
        match outcome {
            Ok(reply) => {
                let reply = reply.into_inner();
                tracing::info!(node = config.node_id, %seed, nodes = reply.nodes.len(), "joined the cluster");
                let members = reply.nodes.iter().map(place_of).collect();
                return Ok((reply.rejoined, members));
            }
            // A refusal by the cluster is final; an unreachable seed or a missing leader is not.
            Err(message) if message.starts_with("InvalidArgumentException") => {
                bail!("the cluster refused to admit node {}: {message}", config.node_id)
            }
            Err(message) => {
                tracing::info!(%seed, %message, "joining: no answer yet; retrying");
                last_error = message;
            }
        }
        tokio::time::sleep(JOIN_PAUSE).await;
    }
    bail!("could not join through {:?} after {JOIN_ATTEMPTS_MAX} attempts: {last_error}", config.join)
}

fn place_of(node: &riffle_proto::v1::ClusterNode) -> NodePlace {
    NodePlace {
        id: node.node_id,
        zone: node.zone.clone(),
        peer_address: node.peer_address.clone(),
        grpc_address: node.grpc_address.clone(),
    }
}

/// Asks the nodes of `join`, once each, for the cluster's nodes, and tells the transport where
/// they are; `None` if none answers.
async fn list_cluster(config: &NodeConfig, transport: &QuicTransport) -> Option<Vec<NodePlace>> {
    use riffle_proto::v1::{riffle_client::RiffleClient, ListNodesRequest};
    for seed in &config.join {
        let listed = tokio::time::timeout(JOIN_PAUSE * 2, async {
            let mut client = RiffleClient::connect(format!("http://{seed}")).await.ok()?;
            client.list_nodes(ListNodesRequest {}).await.ok()
        })
        .await;
        let Ok(Some(reply)) = listed else { continue };
        let nodes = reply.into_inner().nodes;
        for known in nodes.iter().filter(|known| known.node_id != config.node_id) {
            if let Ok(address) = known.peer_address.parse() {
                transport.set_peer_addr(known.node_id, address);
            }
        }
        return Some(nodes.iter().map(place_of).collect());
    }
    None
}

/// Exits of one node within [`CRASH_LOOP_WINDOW`] after which `dev` stops restarting it.
const CRASH_LOOP_EXITS_MAX: usize = 5;
const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(60);
/// How often `dev` looks at its nodes.
const SUPERVISE_PERIOD: Duration = Duration::from_millis(200);
/// How long a node gets to stop after SIGTERM before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// One node process of the local cluster.
struct DevNode {
    id: u64,
    config: PathBuf,
    child: Option<Child>,
    /// When a node that exited is due to start again.
    restart_at: Option<std::time::Instant>,
    /// When it exited lately, to notice a crash loop.
    exits: std::collections::VecDeque<std::time::Instant>,
}

impl DevNode {
    fn spawn(&mut self, executable: &Path) -> Result<u32> {
        use std::os::unix::process::CommandExt;
        let log_path = self.config.with_file_name("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = Command::new(executable);
        command.arg("--config").arg(&self.config).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // The nodes stop with `dev`, even when it is killed without a chance to stop them.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().with_context(|| format!("starting node {}", self.id))?;
        let pid = child.id();
        self.child = Some(child);
        Ok(pid)
    }
}

/// Nodes other than `id`, as "nodes 1 and 3".
fn other_nodes(nodes: &[DevNode], id: u64) -> String {
    let others: Vec<String> =
        nodes.iter().filter(|node| node.id != id && node.child.is_some()).map(|node| node.id.to_string()).collect();
    match others.as_slice() {
        [] => "no other node is running".to_string(),
        [one] => format!("node {one} keeps serving"),
        [first @ .., last] => format!("nodes {} and {last} keep serving", first.join(", ")),
    }
}

/// Looks after the nodes once: reports exits, plans and carries out restarts.
fn supervise(nodes: &mut [DevNode], executable: &Path, restart_delay: Option<Duration>) -> Result<()> {
    let now = std::time::Instant::now();
    for position in 0..nodes.len() {
        let exited = match nodes[position].child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status),
            _ => None,
        };
        if let Some(status) = exited {
            let node = &mut nodes[position];
            node.child = None;
            node.exits.push_back(now);
            while node.exits.front().is_some_and(|exit| now.duration_since(*exit) > CRASH_LOOP_WINDOW) {
                node.exits.pop_front();
            }
            let (id, exits) = (node.id, node.exits.len());
            let others = other_nodes(nodes, id);
            let plan = match restart_delay {
                // Only a stop request or a decommission ends a node cleanly.
                _ if status.success() => {
                    "it stopped cleanly (decommissioned, or asked to stop), so it stays down".to_string()
                }
                None => "it stays down (--restart false)".to_string(),
                Some(_) if exits >= CRASH_LOOP_EXITS_MAX => format!(
                    "it exited {exits} times within {} s, so it stays down; see its node.log",
                    CRASH_LOOP_WINDOW.as_secs()
                ),
                Some(delay) => {
                    nodes[position].restart_at = Some(now + delay);
                    format!("restarting it in {} ms", delay.as_millis())
                }
            };
            println!("node {id} exited ({status}); {others}; {plan}");
        }
        if nodes[position].restart_at.is_some_and(|due| due <= now) {
            nodes[position].restart_at = None;
            let pid = nodes[position].spawn(executable)?;
            println!("node {} restarted: pid {pid}", nodes[position].id);
        }
    }
    Ok(())
}

/// Stops every node: SIGTERM, then SIGKILL for those still running after [`STOP_WAIT`].
fn stop_nodes(nodes: &mut [DevNode]) {
    for child in nodes.iter_mut().filter_map(|node| node.child.as_mut()) {
        if let Ok(None) = child.try_wait() {
            // SIGTERM lets the node stop cleanly; a terminal's Ctrl-C already sent SIGINT.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
    let deadline = std::time::Instant::now() + STOP_WAIT;
    for node in nodes.iter_mut() {
        let Some(child) = node.child.as_mut() else { continue };
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                _ => {
                    eprintln!("node {} did not stop in {} s; killing it", node.id, STOP_WAIT.as_secs());
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        node.child = None;
    }
}

fn run_dev(
    data_dir: &Path,
    ports: DevPorts,
    (throttling, overrides): (bool, &[String]),
    restart_delay: Option<Duration>,
) -> Result<()> {
    let DevPorts { grpc: grpc_port, peer: peer_port, kinesis: kinesis_port, kinesis_anonymous } = ports;
    let configs = dev::write_dev_cluster_configs_with(data_dir, ports, throttling, overrides)?;
    let executable = std::env::current_exe().context("locating riffle-node")?;
    let mut nodes: Vec<DevNode> = configs
        .iter()
        .enumerate()
        .map(|(position, config)| DevNode {
            id: position as u64 + 1,
            config: config.clone(),
            child: None,
            restart_at: None,
            exits: Default::default(),
        })
        .collect();
    let mut pids = Vec::new();
    for node in nodes.iter_mut() {
        match node.spawn(&executable) {
            Ok(pid) => pids.push(pid),
            Err(error) => {
                stop_nodes(&mut nodes);
                return Err(error);
            }
        }
    }
    println!("Riffle local cluster: 3 nodes in zones a, b, c (data in {})", data_dir.display());
    for (position, zone) in dev::DEV_ZONES.iter().enumerate() {
        println!(
            "  node {} (zone {zone}): pid {}  gRPC http://127.0.0.1:{}  peers udp 127.0.0.1:{}  log {}",
            position + 1,
            pids[position],
            grpc_port + position as u16,
            peer_port + position as u16,
            configs[position].with_file_name("node.log").display()
        );
    }
    if let Some(kinesis_port) = kinesis_port {
        let access = if kinesis_anonymous {
            "ANONYMOUS ACCESS ON: unsigned requests and unknown access keys are served"
        } else {
            "signed requests only"
        };
        println!(
            "Kinesis API (JSON 1.1, {access}): http://127.0.0.1:{} http://127.0.0.1:{} http://127.0.0.1:{}",
            kinesis_port,
            kinesis_port + 1,
            kinesis_port + 2
        );
        let credential = dev::dev_kinesis_credential(data_dir)?;
        let credentials_path = dev::dev_credentials_path(&data_dir.canonicalize()?);
        println!(
            "  access key id {}  secret access key {}  (profile {} in {})",
            credential.access_key_id,
            credential.secret_access_key,
            dev::DEV_ACCESS_KEY_ID,
            credentials_path.display()
        );
        println!(
            "Try: AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE={} aws --region us-east-1 --endpoint-url http://127.0.0.1:{kinesis_port} kinesis list-streams",
            credentials_path.display(),
            dev::DEV_ACCESS_KEY_ID
        );
    }
    println!("Try: riffle --endpoint http://127.0.0.1:{grpc_port} create-stream demo --shard-count 4");
    match restart_delay {
        Some(delay) => println!(
            "A node that dies is restarted after {} ms while the others keep serving (--restart false turns this off).",
            delay.as_millis()
        ),
        None => println!("A node that dies stays down while the others keep serving (--restart false)."),
    }
    println!("Ctrl-C stops all three nodes.");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        let mut interval = tokio::time::interval(SUPERVISE_PERIOD);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
                _ = interval.tick() => {
                    supervise(&mut nodes, &executable, restart_delay)?;
                    if nodes.iter().all(|node| node.child.is_none() && node.restart_at.is_none()) {
                        bail!("every node is down and none will restart; see their node.log");
                    }
                }
            }
        }
    });
    stop_nodes(&mut nodes);
    outcome?;
    println!("stopped");
    Ok(())
}
