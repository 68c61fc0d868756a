//! One simulated world: three nodes in three zones running the real node code, a workload of
//! puts, a nemesis injecting partitions and crash-restarts, then a heal, a full read and the
//! checks.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riffle_node::control::on_demand::OnDemandSettings;
use riffle_node::control::placement::NodePlace;
use riffle_node::control::retention::RetentionSettings;
use riffle_node::fs::memory::{IoFault, MemoryFileSystem};
use riffle_node::fs::FileSystem;
use riffle_node::node::{DataLimits, Node, NodeOptions, RaftTiming};
use riffle_node::seam::{BoxFuture, Clock, Executor, Seams};
use riffle_node::service::{ServiceSettings, StreamService};
use riffle_proto::v1;

use crate::network::{MessageFaults, SimNetwork};
use crate::trace::Trace;
use crate::SimOptions;
use riffle_check::{self as check, MetaAction, MetaOperation, Outcome, Put, Record, ShardRead};

const STREAM: &str = "sim";
/// Where the metadata places a shard group: replicas in order, the move under way, expired.
type Placement = (Vec<u64>, Option<riffle_node::control::metadata::ReplicaMove>, bool);
/// The sector size of the `corrupt` family's zeroed sectors.
const SECTOR_BYTES: u64 = 512;
/// Partition keys the put clients draw from.
const PARTITION_KEYS: u32 = 24;
/// Open shards a seed's reshards keep the stream within.
const OPEN_SHARDS_MAX: usize = 6;
/// Wall-clock time at the start of every run (virtual), 2026-01-01T00:00:00Z.
const EPOCH_MS: i64 = 1_767_225_600_000;
/// Bounds on waiting, in virtual time.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reader waits for one call before it moves on (a consumer polls again soon).
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// The failover bound the liveness phase asserts, in maximal election timeouts (1.6 s): a group
/// whose leader is killed in a healthy cluster has a new one within five. openraft 0.9 lets a
/// follower campaign only once its leader's lease (one maximal timeout) and a random election
/// timeout have passed since the last heartbeat — 1.5 to 2 timeouts, the usual case — and adds
/// two more for a follower that lost an earlier election to a longer log (until its next
/// campaign); a split vote takes one more round.
const FAILOVER_ELECTION_TIMEOUTS: u64 = 5;
/// Milliseconds a crashed node's raft log may stay open before the crash is an error. Its own
/// tasks die at once; a client call in flight through it (which runs the node's code on the
/// client's task) holds it until the call's timeout, [`OPERATION_TIMEOUT`].
const ENGINE_RELEASE_ATTEMPTS_MAX: u32 = 15_000;

/// Per shard: the lowest trim point among its replicas, or `None` when it expired whole.
type Trimmed = std::collections::BTreeMap<u32, Option<String>>;

/// Largest offset a node's clock is moved to by jumps, either way.
const CLOCK_OFFSET_MAX_MS: i64 = 5_000;

/// A node's wall clock: the run's epoch plus virtual time elapsed, off by an offset that jumps
/// and a drift.
#[derive(Debug)]
struct SimClock {
    start: tokio::time::Instant,
    offset_ms: std::sync::atomic::AtomicI64,
    drift_ppm: i64,
}

impl SimClock {
    /// Moves the clock by `by_ms` (forward or back), keeping its offset within bounds.
    fn jump(&self, by_ms: i64) -> i64 {
        let offset = self.offset_ms.load(std::sync::atomic::Ordering::SeqCst);
        let offset = (offset + by_ms).clamp(-CLOCK_OFFSET_MAX_MS, CLOCK_OFFSET_MAX_MS);
        self.offset_ms.store(offset, std::sync::atomic::Ordering::SeqCst);
        offset
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        let elapsed_ms = self.start.elapsed().as_millis() as i64;
        EPOCH_MS
            + elapsed_ms
            + elapsed_ms * self.drift_ppm / 1_000_000
            + self.offset_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The nemesis's fault families in one seed.
#[derive(Debug, Clone, Copy)]
pub struct FaultMix {
    /// A node cut off from every other, both ways.
    pub partition: bool,
    /// A whole zone cut off.
    pub zone: bool,
    /// One direction of a node's links cut.
    pub one_way: bool,
    /// A node cut off and reconnected several times in quick succession.
    pub flapping: bool,
    /// A node crashes (unsynced writes lost, last write possibly torn) and restarts later.
    pub crash: bool,
    /// A crashed node's stored shard records are damaged before it restarts (flipped bytes in
    /// a segment file), on one node at a time and never in a seed that loses a disk.
    pub corrupt: bool,
    /// A node is paused: its messages, both ways, wait and arrive late, in a burst.
    pub pause: bool,
    /// Clocks off by up to ±2 s and drifting by up to 500 ppm; jumps of up to ±3 s.
    pub clock: bool,
    /// A storage read, write or fsync of a node fails (EIO; a failed fsync loses its writes
    /// for good); the node stops itself and is started again.
    pub io_error: bool,
}

/// Every task, dedicated loops included, runs on the simulation's one thread. Each node
/// process has its own executor, which counts the node's live tasks by name (to name what keeps
/// a stopped node's storage open).
#[derive(Debug, Default)]
struct SimExecutor {
    live: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
    /// Every task it spawned, to kill them all when the node crashes, as kill -9 would.
    spawned: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

/// Counts a task as live until it finishes or is dropped.
struct LiveTask {
    name: &'static str,
    live: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
}

impl Drop for LiveTask {
    fn drop(&mut self) {
        let mut live = self.live.lock().expect("task table lock");
        if let Some(count) = live.get_mut(self.name) {
            *count -= 1;
            if *count == 0 {
                live.remove(self.name);
            }
        }
    }
}

impl SimExecutor {
    fn counted(&self, name: &'static str, task: BoxFuture<()>) -> BoxFuture<()> {
        *self.live.lock().expect("task table lock").entry(name).or_insert(0) += 1;
        let guard = LiveTask { name, live: self.live.clone() };
        Box::pin(async move {
            let _guard = guard;
            task.await
        })
    }
}

impl SimExecutor {
    fn start(&self, name: &'static str, task: BoxFuture<()>) {
        let handle = tokio::spawn(self.counted(name, task)).abort_handle();
        let mut spawned = self.spawned.lock().expect("task list lock");
        if spawned.len() >= 64 {
            spawned.retain(|task| !task.is_finished());
        }
        spawned.push(handle);
    }
}

/// Stops every task a node's executor spawned (at their next await).
fn kill_tasks(spawned: &std::sync::Mutex<Vec<tokio::task::AbortHandle>>) {
    for task in spawned.lock().expect("task list lock").drain(..) {
        task.abort();
    }
}

impl Executor for SimExecutor {
    fn spawn(&self, name: &'static str, task: BoxFuture<()>) {
        self.start(name, task);
    }
    fn spawn_dedicated(&self, name: &'static str, task: BoxFuture<()>) {
        self.start(name, task);
    }
}

struct SimNode {
    id: u64,
    fs: Arc<MemoryFileSystem>,
    data_dir: PathBuf,
    running: Option<(Arc<Node>, StreamService)>,
    /// The live tasks of the running (or last) process, by name.
    tasks: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
    /// The tasks the running process spawned, killed when it crashes.
    spawned: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

/// What one seed produced.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub seed: u64,
    pub trace_hash: String,
    pub events: u64,
    pub operations: usize,
    pub acknowledged: usize,
    pub records_read: usize,
    /// Iterator chains the readers followed during the workload, and their GetRecords pages.
    pub read_chains: usize,
    pub read_pages: usize,
    /// Shards at the end, closed ones included (more than created when reshards landed).
    pub shards: usize,
    /// Whether the stream was created ON_DEMAND, and the splits and merges that landed (by
    /// hand or, on demand, by the stream's own scaling).
    pub on_demand: bool,
    pub splits: usize,
    pub merges: usize,
    /// The test-length retention hour of the run, if any, and the closed shards that expired.
    pub retention_hour_ms: Option<u64>,
    pub expired_shards: usize,
    pub disk_losses: u32,
    /// Whether a fourth node joined, and whether node 1 was decommissioned and removed.
    pub joined: bool,
    pub decommissioned: bool,
    /// Metadata reads that succeeded, and metadata writes acknowledged, all checked.
    pub meta_reads: usize,
    pub meta_writes_acknowledged: usize,
    pub crashes: u32,
    /// Crashes of every running node at once.
    pub power_losses: u32,
    pub pauses: u32,
    pub clock_jumps: u32,
    /// Storage errors armed, and nodes that stopped on one and were started again.
    pub io_errors: u32,
    pub storage_failures: u32,
    pub corruptions: u32,
    /// Messages delivered a second time (duplicates and replays of old messages).
    pub redelivered: u64,
    /// The seed's fault families.
    pub mix: FaultMix,
    pub partitions: u32,
    /// Partitions that cut a whole zone (every running node in it) off.
    pub zone_losses: u32,
    /// The liveness phase's failover probe: how long after the kill the last group the killed
    /// node led had a new leader (see `World::check_failover`).
    pub failover_ms: u64,
    pub virtual_ms: u64,
}

pub struct World {
    options: SimOptions,
    seed: u64,
    rng: ChaCha8Rng,
    trace: Arc<Trace>,
    network: Arc<SimNetwork>,
    /// Each node's wall clock (skewed, drifting and jumping when the seed has clock faults).
    clocks: Vec<Arc<SimClock>>,
    /// The nemesis's fault families in this seed.
    mix: FaultMix,
    nodes: Vec<SimNode>,
    /// Every node's place; the first three are the founders, a fourth joins later.
    places: Vec<NodePlace>,
    founders: usize,
    /// A third of the seeds: node 4 (zone a) joins during the workload, then node 1 is
    /// decommissioned.
    membership: bool,
    /// Node 4 has been admitted; node 1's decommissioning was accepted.
    admitted: bool,
    decommissioned: bool,
    /// Nodes that left the cluster (decommissioned and removed); they never start again.
    removed: Vec<bool>,
    /// The service of every running node, which clients pick from (a stopped node's entry is
    /// cleared before it stops, so no client keeps it alive).
    services: Rc<RefCell<Vec<Option<StreamService>>>>,
    _scratch: tempfile::TempDir,
    crashes: u32,
    /// Every running node crashed at once.
    power_losses: u32,
    pauses: u32,
    clock_jumps: u32,
    io_errors: u32,
    storage_failures: u32,
    /// Stopped nodes whose stored records were damaged (at most one per seed).
    corruptions: u32,
    partitions: u32,
    zone_losses: u32,
    /// Crashes that also lost the node's disk (at most one per seed).
    disk_losses: u32,
    /// The stream is created ON_DEMAND (a third of the seeds): it scales with the workload's
    /// busy and quiet phases, and the resharder also switches its mode.
    on_demand: bool,
    /// A test-length retention hour (a third of the seeds): the stream's 24 hours then pass
    /// within the run, and old records expire while it goes on.
    retention_hour_ms: Option<u64>,
    /// The single-message faults of the chaos phase (lifted at the final heal).
    message_faults: MessageFaults,
}

fn node_options(
    id: u64,
    places: &[NodePlace],
    join: bool,
    data_dir: PathBuf,
    retention_hour_ms: Option<u64>,
) -> NodeOptions {
    NodeOptions {
        id,
        zone: places.iter().find(|place| place.id == id).map(|place| place.zone.clone()).unwrap_or_default(),
        nodes: places.to_vec(),
        join,
        data_dir,
        mirror_file_names: true,
        raft: RaftTiming {
            // Small intervals keep snapshots and log purging inside the runs.
            snapshot_interval_entries: 40,
            log_kept_behind_snapshot_entries: 10,
            ..RaftTiming::default()
        },
        limits: DataLimits {
            // Thresholds the workload crosses both ways: its busy phases split shards, its
            // quiet phases merge them back.
            on_demand: OnDemandSettings {
                shards_min: 2,
                shards_max: OPEN_SHARDS_MAX as u32,
                split_write_records_per_s: 15,
                split_after_ms: 1_500,
                merge_write_records_per_s: 6,
                merge_after_ms: 1_500,
                report_interval_ms: 250,
                ..OnDemandSettings::default()
            },
            retention: match retention_hour_ms {
                Some(hour_ms) => RetentionSettings { hour_ms, check_interval_ms: 250 },
                None => RetentionSettings::default(),
            },
            ..DataLimits::default()
        },
        segments: riffle_node::storage::segment::SegmentStoreConfig {
            // Small files, so that expiry removes whole ones within a run.
            segment_bytes_max: riffle_node::storage::segment::SegmentStoreConfig::SEGMENT_BYTES_MIN,
            ..Default::default()
        },
        log_engine: riffle_node::raft::log_store::LogEngineConfig { engine_thread: true, ..Default::default() },
    }
}

impl World {
    pub fn new(seed: u64, options: SimOptions) -> Result<World, String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let trace = Arc::new(Trace::new());
        let network = SimNetwork::new(ChaCha8Rng::seed_from_u64(rng.gen()), trace.clone());
        let scratch = tempfile::Builder::new()
            .prefix(&format!("riffle-sim-{seed}-"))
            .tempdir()
            .map_err(|error| format!("scratch directory: {error}"))?;
        trace.hide_scratch(scratch.path());
        let on_demand = rng.gen_bool(1.0 / 3.0);
        let retention_hour_ms = rng.gen_bool(1.0 / 3.0).then(|| rng.gen_range(100..=500));
        let membership = options.membership && rng.gen_bool(1.0 / 3.0);
        let zones: &[&str] = if membership { &["a", "b", "c", "a"] } else { &["a", "b", "c"] };
        let places: Vec<NodePlace> = zones
            .iter()
            .enumerate()
            .map(|(index, zone)| NodePlace {
                id: index as u64 + 1,
                zone: zone.to_string(),
                peer_address: format!("127.0.0.1:{}", 7001 + index),
                grpc_address: format!("127.0.0.1:{}", 8001 + index),
            })
            .collect();
        let nodes = places
            .iter()
            .map(|place| SimNode {
                id: place.id,
                fs: Arc::new(MemoryFileSystem::new()),
                data_dir: scratch.path().join(format!("node-{}", place.id)),
                running: None,
                tasks: Arc::default(),
                spawned: Arc::default(),
            })
            .collect::<Vec<SimNode>>();
        let removed = vec![false; nodes.len()];
        let services = Rc::new(RefCell::new(vec![None; nodes.len()]));
        // Swarm: each seed draws its own mix of single-message faults, some families off.
        let message_faults = if options.message_faults {
            let mut draw = |family: &str, rates: &[f64]| {
                let rate = rates[rng.gen_range(0..rates.len())];
                if options.allows(family) {
                    rate
                } else {
                    0.0
                }
            };
            MessageFaults {
                drop_request: draw("drop", &[0.0, 0.002, 0.01, 0.03]),
                drop_response: draw("drop", &[0.0, 0.002, 0.01, 0.03]),
                delay_spike: draw("delay", &[0.0, 0.01, 0.05]),
                duplicate: draw("duplicate", &[0.0, 0.005, 0.02]),
                replay: draw("replay", &[0.0, 0.002, 0.01]),
            }
        } else {
            MessageFaults::default()
        };
        // Swarm: the nemesis's families, each on in three seeds of four (where allowed).
        let mut family = |name: &str| rng.gen_bool(0.75) && options.allows(name);
        let mix = FaultMix {
            partition: family("partition"),
            zone: family("zone"),
            one_way: family("one-way"),
            flapping: family("flapping"),
            crash: family("crash"),
            corrupt: family("corrupt"),
            pause: family("pause"),
            // Clock faults stay out of seeds with a test-length retention hour: a clock ahead
            // by seconds would expire records early by design there.
            clock: family("clock") && retention_hour_ms.is_none(),
            io_error: family("io-error"),
        };
        // Each node's clock starts off by up to ±2 s and runs fast or slow by up to 500 ppm.
        let clocks: Vec<Arc<SimClock>> = (0..zones.len())
            .map(|_| {
                let (offset_ms, drift_ppm) =
                    if mix.clock { (rng.gen_range(-2_000..=2_000), rng.gen_range(-500..=500)) } else { (0, 0) };
                Arc::new(SimClock {
                    start: tokio::time::Instant::now(),
                    offset_ms: std::sync::atomic::AtomicI64::new(offset_ms),
                    drift_ppm,
                })
            })
            .collect();
        network.set_faults(message_faults);
        Ok(World {
            options,
            seed,
            rng,
            trace,
            network,
            clocks,
            mix,
            nodes,
            places,
            founders: 3,
            membership,
            admitted: false,
            decommissioned: false,
            removed,
            services,
            _scratch: scratch,
            crashes: 0,
            power_losses: 0,
            pauses: 0,
            clock_jumps: 0,
            io_errors: 0,
            storage_failures: 0,
            corruptions: 0,
            partitions: 0,
            zone_losses: 0,
            disk_losses: 0,
            on_demand,
            retention_hour_ms,
            message_faults,
        })
    }

    async fn start_node(&mut self, position: usize) -> Result<(), String> {
        let node = self.open_node(position).await?;
        let id = node.id();
        node.start(self.network.endpoint(id)).await.map_err(|error| format!("node {id} does not start: {error}"))?;
        self.serve_node(position, node);
        Ok(())
    }

    /// Starts the founders together, as a cluster's first processes come up: a node on an empty
    /// disk founds a cluster only once a majority of the founders have answered.
    async fn start_founders(&mut self) -> Result<(), String> {
        let mut opened = Vec::new();
        for position in 0..self.founders {
            opened.push(self.open_node(position).await?);
        }
        let starts =
            opened.iter().map(|node| {
                let endpoint = self.network.endpoint(node.id());
                async move {
                    node.start(endpoint).await.map_err(|error| format!("node {} does not start: {error}", node.id()))
                }
            });
        for outcome in futures::future::join_all(starts).await {
            outcome?;
        }
        for (position, node) in opened.into_iter().enumerate() {
            self.serve_node(position, node);
        }
        Ok(())
    }

    /// Opens the node at `position` on its disk and attaches it to the network (a joiner is
    /// admitted first); it is not started.
    async fn open_node(&mut self, position: usize) -> Result<Arc<Node>, String> {
        let (id, fs, data_dir) = {
            let slot = &self.nodes[position];
            (slot.id, slot.fs.clone(), slot.data_dir.clone())
        };
        let executor = SimExecutor::default();
        self.nodes[position].tasks = executor.live.clone();
        self.nodes[position].spawned = executor.spawned.clone();
        let seams =
            Seams { clock: self.clocks[position].clone(), executor: Arc::new(executor), fs: fs as Arc<dyn FileSystem> };
        // A founder knows the founders; a joiner knows only itself, asks to be admitted whenever
        // its disk is empty and learns the cluster's nodes from the answer (as `riffle-node` does
        // with `join` addresses).
        let joiner = position >= self.founders;
        let places = if joiner { vec![self.places[position].clone()] } else { self.places[..self.founders].to_vec() };
        let options = node_options(id, &places, joiner, data_dir, self.retention_hour_ms);
        let node = Node::open(options, seams).map_err(|error| format!("node {id} does not open: {error}"))?;
        self.network.attach(id, node.peer_handler());
        if joiner && !node.has_data() {
            let (members, rejoined) = self.admit(position).await?;
            node.learn_members(members);
            if rejoined {
                node.rejoins_after_disk_loss();
            }
        }
        Ok(node)
    }

    /// Gives a started node its service, which clients then pick from.
    fn serve_node(&mut self, position: usize, node: Arc<Node>) {
        let settings = ServiceSettings {
            region: "us-east-1".into(),
            account: "000000000000".into(),
            stream_shards_max: 16,
            account_shards_max: 500,
            iterator_secret: b"simulated cluster secret".to_vec(),
        };
        let id = node.id();
        let service = StreamService::new(node.clone(), settings);
        self.services.borrow_mut()[position] = Some(service.clone());
        self.nodes[position].running = Some((node, service));
        self.trace.record(&format!("start node {id}"));
    }

    /// Stops a node abruptly: it is cut off, its tasks stop, and its disk loses whatever was
    /// not synced (possibly tearing the last write).
    async fn crash_node(&mut self, position: usize) -> Result<(), String> {
        let id = self.nodes[position].id;
        self.services.borrow_mut()[position] = None;
        let Some((node, service)) = self.nodes[position].running.take() else { return Ok(()) };
        self.network.detach(id);
        self.trace.record(&format!("crash node {id}"));
        // openraft runs its own tasks, which only a shutdown stops; the node's own tasks die
        // at once, wherever they are, as in a killed process.
        node.shutdown().await;
        kill_tasks(&self.nodes[position].spawned);
        let engine =
            node.log_engine().upgrade().map(|logs| logs.raft_engine()).ok_or("the raft log is already gone")?;
        drop(service);
        let weak_node = Arc::downgrade(&node);
        drop(node);
        // Tasks of the stopped node finish on their own; raft-engine must be released before
        // the node can reopen its directory.
        let mut attempts = 0;
        while engine.upgrade().is_some() {
            attempts += 1;
            if attempts > ENGINE_RELEASE_ATTEMPTS_MAX {
                let tasks = self.nodes[position].tasks.lock().expect("task table lock").clone();
                let holders = weak_node.strong_count();
                let handling = self.network.handling(id);
                return Err(format!(
                    "node {id} did not release its raft log after stopping; live tasks: {tasks:?}; node still held {holders} times; requests it handles: {handling:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut disk_rng = ChaCha8Rng::seed_from_u64(self.rng.gen());
        // A storage error armed and not fired yet goes with the process (a restarting node
        // meets none while it recovers).
        self.nodes[position].fs.clear_faults();
        self.nodes[position].fs.crash(&mut disk_rng);
        self.crashes += 1;
        Ok(())
    }

    fn service(&self, position: usize) -> Option<StreamService> {
        self.nodes[position].running.as_ref().map(|(_, service)| service.clone())
    }

    /// A node that runs and has not left the cluster, to ask things of.
    fn any_member(&self) -> Option<(Arc<Node>, StreamService)> {
        (0..self.nodes.len())
            .filter(|position| !self.removed[*position])
            .filter_map(|position| self.nodes[position].running.clone())
            .find(|(node, _)| !*node.departed().borrow())
    }

    /// The liveness phase's failover probe, in the healed cluster: once every open shard's
    /// group and the metadata group have a leader and all their replicas as voters, the node
    /// leading the most of them is cut off (and stopped afterwards). Every group it led must
    /// have a new leader within [`FAILOVER_ELECTION_TIMEOUTS`] maximal election timeouts, and no
    /// other group may lose its leader meanwhile — unless the metadata places it anew meanwhile
    /// (the control plane goes on: a closed shard expiring unbalances a zone, a replica moves, a
    /// preferred leader changes and the leader hands over to it; seed 1791), and then it must
    /// have a leader again within the same bound. Returns how long the slowest took.
    async fn check_failover(&mut self) -> Result<u64, String> {
        let election_timeout_ms = RaftTiming::default().election_timeout_max_ms;
        let bound = Duration::from_millis(FAILOVER_ELECTION_TIMEOUTS * election_timeout_ms);
        // Settled: each group led by its preferred replica (a shard's first; the handoff to it
        // is over), with three voters that all run, and no leader changed for a while.
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        let mut stable: Option<(Vec<u64>, Vec<u64>, tokio::time::Instant)> = None;
        let (groups, leaders, placed) = loop {
            let stream =
                self.reader()?.stream_meta(STREAM).await.map_err(|error| format!("failover probe: {error}"))?;
            let open = stream
                .shards
                .iter()
                .filter(|shard| !shard.expired && shard.state == riffle_node::control::metadata::ShardState::Open);
            let mut groups: Vec<(u64, Option<u64>)> =
                open.map(|shard| (shard.group_id, shard.replicas.first().copied())).collect();
            groups.push((riffle_node::control::metadata::META_GROUP, None));
            let leaders: Vec<Option<u64>> =
                groups.iter().map(|(group, preferred)| self.settled_leader(*group, *preferred)).collect();
            let ids: Vec<u64> = groups.iter().map(|(group, _)| *group).collect();
            if leaders.iter().all(Option::is_some) {
                let leaders: Vec<u64> = leaders.into_iter().flatten().collect();
                match &stable {
                    Some((known, same, since)) if *known == ids && *same == leaders => {
                        if since.elapsed() >= Duration::from_millis(2 * election_timeout_ms) {
                            break (ids, leaders, self.placements());
                        }
                    }
                    _ => stable = Some((ids, leaders, tokio::time::Instant::now())),
                }
            } else {
                stable = None;
                if tokio::time::Instant::now() > deadline {
                    let unsettled: Vec<(u64, Vec<String>)> = ids
                        .iter()
                        .zip(&leaders)
                        .filter(|(_, leader)| leader.is_none())
                        .map(|(group, _)| (*group, self.group_report(*group)))
                        .collect();
                    return Err(format!(
                        "after healing, groups have no leader with three running voters: {unsettled:?}"
                    ));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut led: BTreeMap<u64, usize> = BTreeMap::new();
        for leader in &leaders {
            *led.entry(*leader).or_default() += 1;
        }
        let Some((&victim, _)) = led.iter().max_by_key(|(id, count)| (**count, std::cmp::Reverse(**id))) else {
            return Ok(0);
        };
        let position = self.nodes.iter().position(|slot| slot.id == victim).ok_or("the victim is not a node")?;
        self.trace.record(&format!("failover probe: cutting node {victim} off, which leads {} groups", led[&victim]));
        // Cut off first and timed from there (stopping a node's tasks can take a while of
        // virtual time, during which the others go on); stopped once the probe is done.
        self.network.isolate(victim);
        let killed = tokio::time::Instant::now();
        let mut slowest = Duration::ZERO;
        let mut waiting: Vec<u64> =
            groups.iter().zip(&leaders).filter(|(_, leader)| **leader == victim).map(|(group, _)| *group).collect();
        // Groups (not led by the victim) whose placement the metadata changed since they settled,
        // as applied on any other node: their leader may change on purpose.
        let mut replaced: BTreeSet<u64> = BTreeSet::new();
        loop {
            for (node, now) in self.placements().into_iter().filter(|(node, _)| *node != victim) {
                let Some(then) = placed.get(&node) else { continue };
                for (group, _) in groups.iter().zip(&leaders).filter(|(_, leader)| **leader != victim) {
                    if then.get(group) != now.get(group) && replaced.insert(*group) {
                        self.trace.record(&format!(
                            "failover probe: node {node}'s metadata places group {group} anew: {:?} -> {:?}",
                            then.get(group),
                            now.get(group)
                        ));
                    }
                }
            }
            for (group, before) in
                groups.iter().zip(&leaders).filter(|(group, leader)| **leader != victim && !replaced.contains(*group))
            {
                if self.current_leader(*group, Some(victim)) != Some(*before) {
                    return Err(format!(
                        "failover probe: cutting node {victim} off also cost group {group} its leader (node {before}) \
                         (node {victim} is cut off: its view is stale): {:?}",
                        self.group_report(*group)
                    ));
                }
            }
            if !waiting.is_empty() {
                waiting.retain(|group| self.current_leader(*group, Some(victim)).is_none());
                slowest = killed.elapsed();
            }
            // A replaced group must have a leader again (none if its shard expired meanwhile).
            let expired = self.expired_groups(victim);
            let unled: Vec<u64> = replaced
                .iter()
                .copied()
                .filter(|group| !expired.contains(group) && self.current_leader(*group, Some(victim)).is_none())
                .collect();
            if waiting.is_empty() && unled.is_empty() {
                break;
            }
            if killed.elapsed() > bound {
                let reports: Vec<(u64, Vec<String>)> =
                    waiting.iter().chain(&unled).map(|group| (*group, self.group_report(*group))).collect();
                return Err(format!(
                    "failover probe: {} ms after node {victim} was cut off, groups it led (or placed anew \
                     meanwhile: {unled:?}) have no leader yet (bound {} ms): {reports:?}",
                    killed.elapsed().as_millis(),
                    bound.as_millis()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.trace.record(&format!("failover probe: new leaders after {} ms", slowest.as_millis()));
        self.crash_node(position).await?;
        self.network.heal();
        Ok(slowest.as_millis() as u64)
    }

    /// Of the running `members`, the one leading the most groups (the metadata group and every
    /// shard's), if any leads one.
    fn busiest_leader(&self, members: &[usize]) -> Option<usize> {
        let (node, _) = self.any_member()?;
        let state = node.meta_state();
        let groups = state
            .streams
            .values()
            .flat_map(|stream| stream.shards.iter())
            .filter(|shard| !shard.expired)
            .map(|shard| shard.group_id)
            .chain([riffle_node::control::metadata::META_GROUP]);
        let mut led: BTreeMap<u64, usize> = BTreeMap::new();
        for group in groups {
            if let Some(leader) = self.current_leader(group, None) {
                *led.entry(leader).or_default() += 1;
            }
        }
        members
            .iter()
            .copied()
            .filter(|position| led.contains_key(&self.nodes[*position].id))
            .max_by_key(|position| (led[&self.nodes[*position].id], std::cmp::Reverse(*position)))
    }

    /// The replicas of group `group_id` on running nodes, with their nodes' ids.
    fn replicas_of(&self, group_id: u64) -> impl Iterator<Item = (u64, Arc<riffle_node::node::Group>)> + '_ {
        self.nodes
            .iter()
            .filter_map(|slot| slot.running.as_ref())
            .filter_map(move |(node, _)| Some((node.id(), node.group(group_id)?)))
    }

    /// The leader of `group`, if a running node (not `excluded`) leads it by its own account.
    fn current_leader(&self, group_id: u64, excluded: Option<u64>) -> Option<u64> {
        self.replicas_of(group_id)
            .filter(|(id, _)| Some(*id) != excluded)
            .find(|(id, group)| {
                let metrics = group.raft.metrics().borrow().clone();
                metrics.current_leader == Some(*id) && metrics.state.is_leader()
            })
            .map(|(id, _)| id)
    }

    /// How the metadata applied on each running node places each shard group of the stream:
    /// its replicas in order (the first is the preferred leader), the move under way, and
    /// whether it expired — what a leadership handoff or a membership change follows.
    fn placements(&self) -> BTreeMap<u64, BTreeMap<u64, Placement>> {
        self.nodes
            .iter()
            .filter_map(|slot| slot.running.as_ref())
            .map(|(node, _)| {
                let state = node.meta_state();
                let shards = state.streams.get(STREAM).into_iter().flat_map(|stream| stream.shards.iter());
                let groups = shards
                    .map(|shard| (shard.group_id, (shard.replicas.clone(), shard.moving, shard.expired)))
                    .collect();
                (node.id(), groups)
            })
            .collect()
    }

    /// The stream's groups whose shard expired, as the metadata of some running node other than
    /// `excluded` has it.
    fn expired_groups(&self, excluded: u64) -> BTreeSet<u64> {
        self.placements()
            .into_iter()
            .filter(|(node, _)| *node != excluded)
            .flat_map(|(_, groups)| groups.into_iter().filter(|(_, (_, _, expired))| *expired).map(|(group, _)| group))
            .collect()
    }

    /// The leader of `group` if it has three voters, all running, no membership change under
    /// way, and it is the `preferred` replica (if that one runs).
    fn settled_leader(&self, group_id: u64, preferred: Option<u64>) -> Option<u64> {
        let leader = self.current_leader(group_id, None)?;
        let (node, _) = self.nodes.iter().find(|slot| slot.id == leader)?.running.as_ref()?;
        let metrics = node.group(group_id)?.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let running: BTreeSet<u64> =
            self.nodes.iter().filter(|slot| slot.running.is_some()).map(|slot| slot.id).collect();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let preferred = preferred.filter(|preferred| running.contains(preferred)).unwrap_or(leader);
        let settled = membership.get_joint_config().len() == 1
            && voters.len() == 3
            && voters.is_subset(&running)
            && leader == preferred;
        settled.then_some(leader)
    }

    /// How each running node sees group `group_id`: term, leader, log, membership, and (on
    /// its leader) replication progress — for failure messages.
    fn group_report(&self, group_id: u64) -> Vec<String> {
        self.replicas_of(group_id)
            .map(|(node, group)| {
                let metrics = group.raft.metrics().borrow().clone();
                let core = match &metrics.running_state {
                    Ok(()) => String::new(),
                    Err(fatal) => format!(" (core stopped: {fatal})"),
                };
                format!(
                    "node {node}: term {} leader {:?} last log {:?} applied {:?} voters {:?} learners {:?} \
                     replication {:?}{}{core}",
                    metrics.current_term,
                    metrics.current_leader,
                    metrics.last_log_index,
                    metrics.last_applied.map(|log_id| log_id.index),
                    metrics.membership_config.membership().get_joint_config(),
                    metrics.membership_config.membership().learner_ids().collect::<Vec<_>>(),
                    metrics.replication.as_ref().map(|progress| progress
                        .iter()
                        .map(|(id, matched)| (*id, matched.map(|log_id| log_id.index)))
                        .collect::<Vec<_>>()),
                    if group.sits_out_elections() { " (sits out elections)" } else { "" },
                )
            })
            .collect()
    }

    /// Asks the cluster to admit the joiner at `position` (running, not started) until it does;
    /// returns whether the cluster knew the node already (it lost its disk).
    async fn admit(&mut self, position: usize) -> Result<(Vec<NodePlace>, bool), String> {
        let place = self.places[position].clone();
        let info = riffle_proto::peer::NodeInfo {
            id: place.id,
            zone: place.zone.clone(),
            peer_address: place.peer_address.clone(),
            grpc_address: place.grpc_address.clone(),
        };
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        // Each attempt through the next member, as `riffle-node` goes round its join addresses
        // (one member may be unable to answer for long: decommissioned, or catching up).
        let mut attempt = 0usize;
        loop {
            let members: Vec<Arc<Node>> = (0..self.nodes.len())
                .filter(|position| !self.removed[*position])
                .filter_map(|position| self.nodes[position].running.as_ref().map(|(node, _)| node.clone()))
                .filter(|node| !*node.departed().borrow())
                .collect();
            let Some(admitter) = members.get(attempt % members.len().max(1)).cloned() else {
                return Err("no node runs to admit a joiner".into());
            };
            attempt += 1;
            match tokio::time::timeout(OPERATION_TIMEOUT, admitter.admit_node(info.clone())).await {
                Ok(Ok((nodes, rejoined))) => {
                    self.admitted = true;
                    self.trace.record(&format!(
                        "node {} admitted by node {} (rejoined: {rejoined})",
                        place.id,
                        admitter.id()
                    ));
                    return Ok((nodes.iter().map(|node| node.place()).collect(), rejoined));
                }
                Ok(Err(error)) if error.error_type() == "InvalidArgumentException" => {
                    return Err(format!("the cluster refused to admit node {}: {}", place.id, error.message()));
                }
                Ok(Err(error)) => self.trace.record(&format!("admission of node {}: {}", place.id, error.message())),
                Err(_) => self.trace.record(&format!("admission of node {} timed out", place.id)),
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "node {} was not admitted in time; the metadata group: {:?}",
                    place.id,
                    self.group_report(riffle_node::control::metadata::META_GROUP)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asks the cluster to decommission the node at `position`, through any member, a few times.
    async fn decommission(&mut self, position: usize) {
        let id = self.nodes[position].id;
        for _ in 0..10 {
            let Some((node, _)) = self.any_member() else { return };
            match tokio::time::timeout(OPERATION_TIMEOUT, node.decommission(id)).await {
                Ok(Ok(())) => {
                    self.decommissioned = true;
                    self.trace.record(&format!("decommissioning node {id}"));
                    return;
                }
                Ok(Err(error)) => {
                    self.trace.record(&format!("decommission of node {id}: {}", error.message()));
                    if error.error_type() == "InvalidArgumentException" {
                        return;
                    }
                }
                Err(_) => self.trace.record(&format!("decommission of node {id} timed out")),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether the metadata, as a member sees it, records the node as removed.
    fn removed_in_metadata(&self, id: u64) -> bool {
        use riffle_node::control::membership::NodeState;
        self.any_member().is_some_and(|(node, _)| {
            node.meta_state().nodes.get(&id).is_some_and(|known| known.state == NodeState::Removed)
        })
    }

    /// Stops every running node that learned it was removed (its process would exit).
    async fn stop_departed(&mut self) -> Result<(), String> {
        for position in 0..self.nodes.len() {
            let gone = self.nodes[position].running.as_ref().is_some_and(|(node, _)| *node.departed().borrow());
            if gone && !self.removed[position] {
                self.crash_node(position).await?;
                self.removed[position] = true;
                self.trace.record(&format!("node {} left the cluster", self.nodes[position].id));
            }
        }
        Ok(())
    }

    /// Starts again every node that stopped itself after a storage error, as a process
    /// supervisor would: it recovers from what its disk had synced.
    async fn restart_failed(&mut self) -> Result<(), String> {
        for position in 0..self.nodes.len() {
            let failure =
                self.nodes[position].running.as_ref().and_then(|(node, _)| node.storage_failure().borrow().clone());
            let Some(reason) = failure else { continue };
            let id = self.nodes[position].id;
            if reason.starts_with("invariant broken") {
                return Err(format!("node {id}: {reason}"));
            }
            self.trace.record(&format!("node {id} stopped after a storage error: {reason}"));
            self.storage_failures += 1;
            self.crash_node(position).await?;
            tokio::time::sleep(Duration::from_millis(self.rng.gen_range(100..2_000))).await;
            if self.removed_in_metadata(id) {
                self.removed[position] = true;
            } else {
                self.start_node(position).await?;
            }
        }
        Ok(())
    }

    /// Damages a stopped node's stored shard records: flips 1–3 bytes of the durable part of one
    /// segment file (or a shard's generation pointer). The other replicas keep a good copy.
    fn corrupt_segments(&mut self, position: usize) {
        let slot = &self.nodes[position];
        let files: Vec<(PathBuf, u64)> = slot
            .fs
            .files_under(&slot.data_dir.join("segments"))
            .into_iter()
            .filter(|(_, durable)| *durable > 0)
            .collect();
        if files.is_empty() {
            return;
        }
        let (path, durable) = files[self.rng.gen_range(0..files.len())].clone();
        let name = path.strip_prefix(&self.nodes[position].data_dir).unwrap_or(&path).display().to_string();
        self.corruptions += 1;
        if self.rng.gen_bool(0.5) {
            // A sector (512 bytes, aligned) reads as zeros: lost, or stale in an append-only file.
            let sector = self.rng.gen_range(0..durable.div_ceil(SECTOR_BYTES)) * SECTOR_BYTES;
            if self.nodes[position].fs.zero_range(&path, sector, SECTOR_BYTES).is_ok() {
                self.trace.record(&format!(
                    "corrupt node {} file {name}: sector at {sector} zeroed",
                    self.nodes[position].id
                ));
            }
            return;
        }
        let flips = self.rng.gen_range(1..=3);
        let mut offsets = Vec::new();
        for _ in 0..flips {
            let offset = self.rng.gen_range(0..durable);
            if self.nodes[position].fs.corrupt_byte(&path, offset).is_ok() {
                offsets.push(offset);
            }
        }
        self.trace.record(&format!("corrupt node {} file {name} at {offsets:?}", self.nodes[position].id));
    }

    /// Replaces a stopped node's disk with an empty one: it restarts with no data at all.
    fn lose_disk(&mut self, position: usize) {
        self.disk_losses += 1;
        let slot = &mut self.nodes[position];
        slot.fs = Arc::new(MemoryFileSystem::new());
        slot.data_dir = self._scratch.path().join(format!("node-{}-after-disk-loss", slot.id));
        self.trace.record(&format!("node {} lost its disk", slot.id));
    }

    /// Runs the whole scenario and checks it.
    pub async fn run(mut self) -> Result<SeedReport, String> {
        self.trace.record(&format!(
            "world: stream {}, retention hour {:?}, message faults {:?}, nemesis {:?}",
            if self.on_demand { "ON_DEMAND" } else { "PROVISIONED" },
            self.retention_hour_ms,
            self.message_faults,
            self.mix
        ));
        self.start_founders().await?;
        for position in self.founders..self.nodes.len() {
            self.start_node(position).await?;
        }
        self.create_stream().await?;

        let history: Rc<RefCell<Vec<Put>>> = Rc::new(RefCell::new(Vec::new()));
        let clients: Vec<(u32, u64)> =
            (0..self.options.clients).map(|client| (client, self.rng.gen::<u64>())).collect();
        // Clients pick a node per operation; a shared table says which services are up.
        let services = self.services.clone();
        let local = tokio::task::LocalSet::new();
        let start = tokio::time::Instant::now();
        let producers_done = Rc::new(RefCell::new(0u32));
        for (client, seed) in clients {
            let producer = producer(
                client,
                self.options.operations_per_client,
                ChaCha8Rng::seed_from_u64(seed),
                services.clone(),
                history.clone(),
                self.trace.clone(),
                start,
                self.on_demand,
            );
            let producers_done = producers_done.clone();
            local.spawn_local(async move {
                producer.await;
                *producers_done.borrow_mut() += 1;
            });
        }
        let meta_history: Rc<RefCell<Vec<MetaOperation>>> = Rc::new(RefCell::new(Vec::new()));
        for client in 0..self.options.meta_clients {
            let client_run = meta_client(
                client,
                self.options.meta_operations_per_client,
                ChaCha8Rng::seed_from_u64(self.rng.gen()),
                services.clone(),
                meta_history.clone(),
                self.trace.clone(),
                start,
            );
            local.spawn_local(client_run);
        }
        let chains: Rc<RefCell<Vec<check::ReadChain>>> = Rc::new(RefCell::new(Vec::new()));
        for client in 0..self.options.readers {
            local.spawn_local(reader(
                client,
                ChaCha8Rng::seed_from_u64(self.rng.gen()),
                services.clone(),
                history.clone(),
                chains.clone(),
                self.trace.clone(),
                start,
            ));
        }
        let reshards_done = Rc::new(RefCell::new(0u32));
        local.spawn_local(resharder(
            self.options.reshards,
            ChaCha8Rng::seed_from_u64(self.rng.gen()),
            services.clone(),
            reshards_done.clone(),
            self.trace.clone(),
        ));
        // The nemesis runs while the clients do.
        let total_producers = self.options.clients;
        let total_meta_operations = (self.options.meta_clients * self.options.meta_operations_per_client) as usize;
        let total_reshards = self.options.reshards;
        let admin_done = Rc::new(std::cell::Cell::new(!self.options.admin));
        let extra_groups: Rc<RefCell<Vec<u64>>> = Rc::default();
        if self.options.admin {
            local.spawn_local(admin(
                ChaCha8Rng::seed_from_u64(self.rng.gen()),
                services.clone(),
                admin_done.clone(),
                extra_groups.clone(),
                self.trace.clone(),
            ));
        }
        let workload = local.run_until(async {
            let clients_done = async {
                while *producers_done.borrow() < total_producers
                    || meta_history.borrow().len() < total_meta_operations
                    || *reshards_done.borrow() < total_reshards
                    || !admin_done.get()
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::pin!(clients_done);
            loop {
                let pause = Duration::from_millis(self.rng.gen_range(200..1_500));
                tokio::select! {
                    biased;
                    _ = &mut clients_done => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                self.stop_departed().await?;
                self.restart_failed().await?;
                if self.membership && !self.admitted && self.rng.gen_bool(0.3) {
                    let joiner = self.founders;
                    self.start_node(joiner).await?;
                    continue;
                }
                if self.admitted && !self.decommissioned && self.rng.gen_bool(0.25) {
                    self.decommission(0).await;
                    continue;
                }
                if !self.options.faults {
                    continue;
                }
                let members: Vec<usize> = (0..self.nodes.len())
                    .filter(|position| !self.removed[*position] && self.nodes[*position].running.is_some())
                    .collect();
                let victim = members[self.rng.gen_range(0..members.len())];
                let mix = self.mix;
                let actions: Vec<&str> = [
                    (mix.partition, "partition"),
                    (mix.zone, "zone"),
                    (mix.one_way, "one-way"),
                    (mix.flapping, "flapping"),
                    (mix.crash, "crash"),
                    (mix.crash, "crash"),
                    (mix.corrupt, "corrupt"),
                    (mix.pause, "pause"),
                    (mix.clock, "clock"),
                    (mix.io_error, "io-error"),
                ]
                .into_iter()
                .filter_map(|(on, action)| on.then_some(action))
                .collect();
                let Some(&action) = actions.get(self.rng.gen_range(0..actions.len().max(1))) else { continue };
                self.fault(action, victim, &members).await?;
            }
            Ok::<(), String>(())
        });
        workload.await?;
        drop(local);
        self.network.heal();
        self.network.release();
        self.network.set_faults(MessageFaults::default());
        for slot in &self.nodes {
            slot.fs.clear_faults();
        }
        self.trace.record("final heal");
        self.restart_failed().await?;

        let (reads, lineage, trimmed) = self.settle_and_read().await?;
        let extra_groups = extra_groups.borrow().clone();
        self.check_deleted(&extra_groups).await?;
        let expiry = check::Expiry {
            retention_us: self.retention_hour_ms.map_or(u64::MAX / 2, |hour_ms| hour_ms * 24 * 1_000),
            end_us: start.elapsed().as_micros() as u64,
            trimmed,
        };
        let expired_shards = expiry.trimmed.values().filter(|trim| trim.is_none()).count();
        let merges = lineage.parents.values().filter(|parents| parents.len() == 2).count();
        let splits = lineage.parents.values().filter(|parents| parents.len() == 1).count() / 2;
        let history = check::History {
            puts: history.borrow().clone(),
            meta: meta_history.borrow().clone(),
            chains: chains.borrow().clone(),
        };
        for read in &reads {
            let line: Vec<String> = read
                .records
                .iter()
                .map(|record| format!("{}={}@{}", record.sequence, record.value, record.arrival_ms))
                .collect();
            self.trace.record(&format!("read shard {} {}", read.shard, line.join(",")));
        }
        let end = check::FinalState { reads, lineage, expiry };
        crate::keep_history(&history, &end);
        let violations = check::check_all(&history, &end);
        if !violations.is_empty() {
            let shown: Vec<String> = violations.iter().take(20).map(ToString::to_string).collect();
            return Err(format!("{} violation(s):\n  {}", violations.len(), shown.join("\n  ")));
        }
        let check::FinalState { reads, .. } = end;
        let failover_ms = self.check_failover().await?;
        let acknowledged = history.puts.iter().filter(|put| matches!(put.outcome, Outcome::Ok { .. })).count();
        let meta_history = &history.meta;
        let meta_reads = meta_history
            .iter()
            .filter(|operation| matches!(operation.action, MetaAction::Read { observed: Some(_) }))
            .count();
        let meta_writes_acknowledged = meta_history
            .iter()
            .filter(|operation| {
                matches!(operation.action, MetaAction::Write { .. }) && matches!(operation.outcome, Outcome::Ok { .. })
            })
            .count();
        Ok(SeedReport {
            seed: self.seed,
            trace_hash: self.trace.hash(),
            events: self.trace.events(),
            operations: history.puts.len(),
            read_chains: history.chains.len(),
            read_pages: history.chains.iter().map(|chain| chain.pages.len()).sum(),
            acknowledged,
            records_read: reads.iter().map(|read| read.records.len()).sum(),
            shards: reads.len(),
            on_demand: self.on_demand,
            splits,
            merges,
            retention_hour_ms: self.retention_hour_ms,
            expired_shards,
            disk_losses: self.disk_losses,
            joined: self.admitted,
            decommissioned: self.decommissioned,
            meta_reads,
            meta_writes_acknowledged,
            crashes: self.crashes,
            power_losses: self.power_losses,
            pauses: self.pauses,
            clock_jumps: self.clock_jumps,
            io_errors: self.io_errors,
            storage_failures: self.storage_failures,
            corruptions: self.corruptions,
            redelivered: self.network.redelivered(),
            mix: self.mix,
            partitions: self.partitions,
            zone_losses: self.zone_losses,
            failover_ms,
            virtual_ms: start.elapsed().as_millis() as u64,
        })
    }

    /// Injects one fault of family `action` on `victim` (among the running `members`) and, for
    /// the transient ones, waits for it to end.
    async fn fault(&mut self, action: &str, victim: usize, members: &[usize]) -> Result<(), String> {
        // Half the single-node partitions, one-way cuts and pauses go to the node leading the
        // most groups, as a nemesis aimed at leaders would: it keeps believing it leads while
        // the others elect new leaders.
        let victim = match action {
            "partition" | "one-way" | "pause" if self.rng.gen_bool(0.5) => {
                self.busiest_leader(members).unwrap_or(victim)
            }
            _ => victim,
        };
        let id = self.nodes[victim].id;
        match action {
            "partition" | "zone" => {
                self.partitions += 1;
                if action == "zone" {
                    // A whole zone (with a fourth node, zone a holds two): every shard keeps a
                    // quorum in the other two zones.
                    self.zone_losses += 1;
                    let zone = self.places[victim].zone.clone();
                    let cut: Vec<u64> = members
                        .iter()
                        .filter(|position| self.places[**position].zone == zone)
                        .map(|position| self.nodes[*position].id)
                        .collect();
                    for node in &cut {
                        self.network.isolate(*node);
                    }
                    self.trace.record(&format!("partition zone {zone} (nodes {cut:?})"));
                } else {
                    self.network.isolate(id);
                    self.trace.record(&format!("partition node {id}"));
                }
                // Mostly shorter than an election; one in three long enough for the majority to
                // elect new leaders while the cut-off node still believes it leads.
                let partition_ms = if self.rng.gen_bool(1.0 / 3.0) { 3_000..8_000 } else { 300..3_000 };
                tokio::time::sleep(Duration::from_millis(self.rng.gen_range(partition_ms))).await;
                self.network.heal();
                self.trace.record("heal");
            }
            "one-way" => {
                self.partitions += 1;
                // The victim's outgoing or incoming links, to every other node or to one.
                let others: Vec<u64> =
                    members.iter().map(|position| self.nodes[*position].id).filter(|other| *other != id).collect();
                let targets: Vec<u64> = if self.rng.gen_bool(0.5) || others.is_empty() {
                    others
                } else {
                    vec![others[self.rng.gen_range(0..others.len())]]
                };
                let outgoing = self.rng.gen_bool(0.5);
                for other in &targets {
                    if outgoing {
                        self.network.cut_one_way(id, *other);
                    } else {
                        self.network.cut_one_way(*other, id);
                    }
                }
                let direction = if outgoing { "from" } else { "to" };
                self.trace.record(&format!("one-way cut {direction} node {id} (peers {targets:?})"));
                tokio::time::sleep(Duration::from_millis(self.rng.gen_range(300..3_000))).await;
                self.network.heal();
                self.trace.record("heal");
            }
            "flapping" => {
                self.partitions += 1;
                let flaps = self.rng.gen_range(3..8);
                self.trace.record(&format!("flapping node {id} ({flaps} times)"));
                for _ in 0..flaps {
                    self.network.isolate(id);
                    tokio::time::sleep(Duration::from_millis(self.rng.gen_range(50..400))).await;
                    self.network.heal();
                    tokio::time::sleep(Duration::from_millis(self.rng.gen_range(50..400))).await;
                }
                self.trace.record("heal");
            }
            "pause" => {
                self.pauses += 1;
                self.network.hold(id);
                self.trace.record(&format!("pause node {id}"));
                tokio::time::sleep(Duration::from_millis(self.rng.gen_range(200..4_000))).await;
                self.network.release();
                self.trace.record(&format!("resume node {id}"));
            }
            "io-error" => {
                // Armed on the running node: one of its next storage operations of a kind fails.
                let (fault, kind) = match self.rng.gen_range(0..3) {
                    0 => (IoFault::Read, "read"),
                    1 => (IoFault::Write, "write"),
                    _ => (IoFault::Sync, "fsync"),
                };
                let after = self.rng.gen_range(1..=200);
                self.nodes[victim].fs.fail_after(fault, after);
                self.io_errors += 1;
                self.trace.record(&format!("node {id}: storage {kind} number {after} from now fails"));
            }
            "clock" => {
                self.clock_jumps += 1;
                let by_ms = self.rng.gen_range(-3_000..=3_000);
                let offset = self.clocks[victim].jump(by_ms);
                self.trace.record(&format!("clock of node {id} jumps {by_ms} ms (now off by {offset} ms)"));
            }
            "corrupt" if self.disk_losses == 0 && self.corruptions == 0 => {
                self.crash_node(victim).await?;
                self.corrupt_segments(victim);
                tokio::time::sleep(Duration::from_millis(self.rng.gen_range(100..2_000))).await;
                if self.removed_in_metadata(id) {
                    self.removed[victim] = true;
                } else {
                    self.start_node(victim).await?;
                }
            }
            _ if self.options.power_loss && self.rng.gen_bool(0.1) => {
                // A power loss: every running node stops at once and loses what it had not
                // synced (no node's page cache survives to hand the data back).
                self.power_losses += 1;
                self.trace.record("power loss");
                for position in members.iter().copied() {
                    self.crash_node(position).await?;
                }
                tokio::time::sleep(Duration::from_millis(self.rng.gen_range(100..2_000))).await;
                for position in members.iter().copied() {
                    if self.removed_in_metadata(self.nodes[position].id) {
                        self.removed[position] = true;
                    } else {
                        self.start_node(position).await?;
                    }
                }
            }
            _ => {
                self.crash_node(victim).await?;
                // Once per seed at most, the crash also loses the node's disk (two lost
                // disks could lose acknowledged data legitimately).
                if self.options.disk_loss && self.disk_losses == 0 && self.corruptions == 0 && self.rng.gen_bool(0.15) {
                    self.lose_disk(victim);
                }
                tokio::time::sleep(Duration::from_millis(self.rng.gen_range(100..2_000))).await;
                // A node removed while it was down stays down (it would exit at once).
                if self.removed_in_metadata(id) {
                    self.removed[victim] = true;
                    self.trace.record(&format!("node {id} left the cluster while down"));
                } else {
                    self.start_node(victim).await?;
                }
            }
        }
        Ok(())
    }

    async fn create_stream(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            let service = self.service(0).ok_or("node 1 is down")?;
            let request = if self.on_demand {
                v1::CreateStreamRequest {
                    stream_name: STREAM.into(),
                    stream_mode: v1::StreamMode::OnDemand as i32,
                    ..Default::default()
                }
            } else {
                v1::CreateStreamRequest {
                    stream_name: STREAM.into(),
                    shard_count: self.options.shards,
                    ..Default::default()
                }
            };
            match service.create_stream(request).await {
                Ok(_) => break,
                Err(error) if error.error_type() == "ResourceInUseException" => break,
                Err(error) => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(format!("the stream was not created: {error}"));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.trace.record("stream created");
        self.wait_until_active().await
    }

    async fn wait_until_active(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            self.stop_departed().await?;
            let mut active = true;
            let mut statuses = Vec::new();
            for position in 0..self.nodes.len() {
                let Some(service) = self.service(position) else { continue };
                let request = v1::DescribeStreamSummaryRequest { stream_name: STREAM.into() };
                let described = service.describe_stream_summary(request).await;
                let status = described
                    .as_ref()
                    .ok()
                    .and_then(|response| response.stream_description_summary.as_ref())
                    .map(|summary| summary.stream_status);
                active &= status == Some(v1::StreamStatus::Active as i32);
                let seen = match (&described, status.and_then(|status| v1::StreamStatus::try_from(status).ok())) {
                    (Err(error), _) => error.message(),
                    (Ok(_), status) => format!("{status:?}"),
                };
                statuses.push((position + 1, seen));
            }
            if active {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "the stream did not become ACTIVE on every node: (node, status) {statuses:?}; metadata group: {:?}",
                    self.group_report(riffle_node::control::metadata::META_GROUP)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.restart_failed().await?;
        }
    }

    /// Restarts every node, waits until all replicas hold the same records, then reads every
    /// shard from the start.
    /// Also returns, per shard, the lowest trim point of its replicas (retention), or `None` for a
    /// closed shard that expired whole.
    async fn settle_and_read(&mut self) -> Result<(Vec<ShardRead>, check::Lineage, Trimmed), String> {
        for position in 0..self.nodes.len() {
            let joiner_outside = position >= self.founders && !self.admitted;
            if self.removed_in_metadata(self.nodes[position].id) && self.nodes[position].running.is_none() {
                self.removed[position] = true;
            }
            if self.nodes[position].running.is_none() && !self.removed[position] && !joiner_outside {
                self.start_node(position).await?;
            }
        }
        self.wait_until_active().await?;
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        if self.decommissioned {
            self.wait_for_removal(0, deadline).await?;
        }
        // The metadata group may be electing a leader (the removed node may have led it).
        let stream = loop {
            match self.reader()?.stream_meta(STREAM).await {
                Ok(stream) => break stream,
                Err(error) if tokio::time::Instant::now() > deadline => {
                    return Err(format!("the stream cannot be described after healing: {error}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let mut lineage = check::Lineage::default();
        for shard in &stream.shards {
            lineage.parents.insert(shard.index, shard.parents.clone());
            if let riffle_node::control::metadata::ShardState::Closed { seal_index } = shard.state {
                let last = riffle_node::sequence::first_of_batch(seal_index).saturating_sub(1);
                lineage.ending.insert(shard.index, riffle_node::sequence::render(shard.index, last));
            }
        }
        let mut reads = Vec::new();
        // A put whose outcome was unknown may still commit after the heal (its entry waited in a
        // leader's log), so a read can legitimately miss it and a later one find it. Read until
        // one read equals every replica; a real divergence never settles.
        let mut trimmed = Trimmed::new();
        'shards: for shard in 0..stream.shards.len() as u32 {
            let group_id = stream.shards[shard as usize].group_id;
            let mut attempts = 0u32;
            // The records, and the replicas they were compared with and found equal to.
            let (records, compared) = loop {
                if self.shard_expired(shard).await {
                    trimmed.insert(shard, None);
                    continue 'shards;
                }
                let records = match self.read_shard(shard).await {
                    Ok(records) => Some(records),
                    Err(error) if tokio::time::Instant::now() > deadline => {
                        return Err(format!(
                            "shard {shard} could not be read after healing: {error}; group {group_id}: {:?}",
                            self.group_report(group_id)
                        ))
                    }
                    Err(_) => None,
                };
                if let Some(records) = records {
                    let mut differing = Vec::new();
                    let mut example = String::new();
                    // The replicas the metadata places now (a move may be under way).
                    let placed: Vec<usize> = match self.reader()?.stream_meta(STREAM).await {
                        Ok(stream) => stream
                            .shard(shard)
                            .map(|known| known.replicas.iter().map(|id| *id as usize - 1).collect())
                            .unwrap_or_default(),
                        Err(_) => (0..self.founders).collect(),
                    };
                    for &position in &placed {
                        // A replica being dropped (a move just completed) may fail a read: look
                        // again; an error that persists ends in the disagreement below.
                        let replica = match self.replica_records(position, group_id, shard) {
                            Ok(replica) => replica,
                            Err(error) => {
                                differing.push((position + 1, 0));
                                example = format!("; {error}");
                                continue;
                            }
                        };
                        if replica != records {
                            differing.push((position + 1, replica.len()));
                            if example.is_empty() {
                                let extra: Vec<&Record> =
                                    replica.iter().filter(|record| !records.contains(record)).take(3).collect();
                                let missing: Vec<&Record> =
                                    records.iter().filter(|record| !replica.contains(record)).take(3).collect();
                                example = format!("; node {} has {extra:?} not read, lacks {missing:?}", position + 1);
                            }
                        }
                    }
                    if differing.is_empty() {
                        break (records, placed);
                    }
                    attempts += 1;
                    if attempts > 600 {
                        return Err(format!(
                            "replicas of shard {shard} disagree after healing: read {} records; nodes (id, records) {differing:?}{example}; group {group_id}: {:?}",
                            records.len(),
                            self.group_report(group_id)
                        ));
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                // A node that fails stop meanwhile is started again, as a supervisor would.
                self.restart_failed().await?;
            };
            let trims: Vec<(u64, u64, u64)> = (0..self.nodes.len())
                .filter_map(|position| self.nodes[position].running.as_ref())
                .filter_map(|(node, _)| node.group(group_id).map(|group| (node.id(), group)))
                .filter_map(|(id, group)| {
                    group
                        .shard
                        .as_ref()
                        .map(|shard| (id, shard.segments.trim_sequence(), shard.segments.end_sequence()))
                })
                .collect();
            self.trace.record(&format!("shard {shard}: (replica, trim, end) {trims:?}"));
            // Only the replicas the read was found equal to: a node that hosts the group without
            // being placed (a learner a move is catching up, a copy being dropped) may lag, and
            // its trim point with it: it has not applied the latest `Trim` entries yet (seed 3445).
            let lowest_trim = trims
                .iter()
                .filter(|(id, _, _)| compared.is_empty() || compared.contains(&(*id as usize - 1)))
                .map(|(_, trim, _)| *trim)
                // A replica readmitted after a disk loss that has not caught up yet holds nothing
                // and has trimmed nothing; it says nothing about what retention removed.
                .filter(|trim| *trim > 0)
                .min()
                .unwrap_or(0);
            // The shard may have expired whole while it was read (its groups are then gone).
            if self.shard_expired(shard).await {
                trimmed.insert(shard, None);
                continue;
            }
            if lowest_trim > 0 {
                trimmed.insert(shard, Some(riffle_node::sequence::render(shard, lowest_trim)));
            }
            reads.push(ShardRead { shard, records });
        }
        self.check_placement().await?;
        Ok((reads, lineage, trimmed))
    }

    /// The service the final reads go through: the first member that runs.
    fn reader(&self) -> Result<StreamService, String> {
        self.any_member().map(|(_, service)| service).ok_or_else(|| "no node runs".to_string())
    }

    /// Waits until the decommissioned node at `position` is removed, and stops it.
    async fn wait_for_removal(&mut self, position: usize, deadline: tokio::time::Instant) -> Result<(), String> {
        let id = self.nodes[position].id;
        loop {
            self.stop_departed().await?;
            if self.removed_in_metadata(id) {
                if self.nodes[position].running.is_some() {
                    self.crash_node(position).await?;
                }
                self.removed[position] = true;
                self.trace.record(&format!("node {id} is removed"));
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                // What still holds the removal up: shards placed on the node, and their groups.
                let mut pending = Vec::new();
                if let Some((node, _)) = self.any_member() {
                    for shard in node.meta_state().streams.values().flat_map(|stream| stream.shards.iter()) {
                        if shard.replicas.contains(&id) && !shard.expired {
                            let voters = self.group_report(shard.group_id);
                            pending
                                .push(format!("group {} moving {:?} voters {voters:?}", shard.group_id, shard.moving));
                        }
                    }
                }
                return Err(format!("decommissioned node {id} was not removed after healing; placed: {pending:?}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every shard that still holds data has three replicas, in three zones, on nodes that are
    /// members.
    async fn check_placement(&self) -> Result<(), String> {
        let stream = self.reader()?.stream_meta(STREAM).await.map_err(|error| error.to_string())?;
        for shard in stream.shards.iter().filter(|shard| !shard.expired) {
            let zones: std::collections::BTreeSet<&str> = shard
                .replicas
                .iter()
                .filter_map(|id| self.places.iter().find(|place| place.id == *id))
                .map(|place| place.zone.as_str())
                .collect();
            let on_removed = shard.replicas.iter().any(|id| self.removed[*id as usize - 1]);
            if shard.replicas.len() != 3 || zones.len() != 3 || on_removed {
                return Err(format!(
                    "shard {} is placed on {:?} (zones {zones:?}) after healing; removed nodes: {:?}",
                    shard.index, shard.replicas, self.removed
                ));
            }
        }
        Ok(())
    }

    /// The admin workload's second stream was deleted: once healed it is gone from the
    /// metadata, and no running node hosts or stores any of its groups.
    async fn check_deleted(&mut self, groups: &[u64]) -> Result<(), String> {
        if !self.options.admin {
            return Ok(());
        }
        let mut groups = groups.to_vec();
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            let known = match self.reader()?.stream_meta(EXTRA_STREAM).await {
                Err(error) if error.error_type() == "ResourceNotFoundException" => None,
                Err(error) => Some(format!("describe: {error}")),
                Ok(stream) => {
                    // Still there (every delete attempt failed, or a create whose outcome was
                    // unknown took effect later): the user deletes it again, now healed.
                    groups.extend(stream.shards.iter().map(|shard| shard.group_id));
                    let request = v1::DeleteStreamRequest { stream_name: EXTRA_STREAM.into() };
                    let _ = self.reader()?.delete_stream(request).await;
                    Some(format!("still {:?}", stream.status))
                }
            };
            let hosting: Vec<(u64, Vec<u64>)> = self
                .nodes
                .iter()
                .filter_map(|slot| slot.running.as_ref())
                .map(|(node, _)| {
                    let held: Vec<u64> = node
                        .hosted_groups()
                        .into_iter()
                        .chain(node.stored_groups())
                        .filter(|group| groups.contains(group))
                        .collect();
                    (node.id(), held)
                })
                .filter(|(_, held)| !held.is_empty())
                .collect();
            if known.is_none() && hosting.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "the deleted stream {EXTRA_STREAM} is not gone after healing: metadata {known:?}; (node, groups still held) {hosting:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.restart_failed().await?;
        }
    }

    /// Whether the shard expired whole (retention removed a closed shard), as a member sees it.
    async fn shard_expired(&self, shard: u32) -> bool {
        let Ok(service) = self.reader() else { return false };
        match service.stream_meta(STREAM).await {
            Ok(stream) => stream.shard(shard).is_some_and(|shard| shard.expired),
            Err(_) => false,
        }
    }

    fn replica_records(&self, position: usize, group_id: u64, shard: u32) -> Result<Vec<Record>, String> {
        let Some((node, _)) = &self.nodes[position].running else { return Ok(Vec::new()) };
        let Some(group) = node.group(group_id) else { return Ok(Vec::new()) };
        let Some(shard_group) = &group.shard else { return Ok(Vec::new()) };
        let mut records = Vec::new();
        let mut next = 0u64;
        loop {
            let outcome = shard_group
                .segments
                .read(next, 10_000, 64 << 20)
                .map_err(|error| format!("node {} shard {shard}: {error}", position + 1))?;
            if outcome.records.is_empty() {
                return Ok(records);
            }
            for record in &outcome.records {
                records.push(Record {
                    sequence: riffle_node::sequence::render(shard, record.sequence),
                    value: String::from_utf8_lossy(&record.data).into_owned(),
                    arrival_ms: record.timestamp_ms,
                });
            }
            next = outcome.next_sequence;
        }
    }

    async fn read_shard(&self, shard: u32) -> Result<Vec<Record>, String> {
        let service = self.reader()?;
        let request = trim_horizon(shard);
        let mut iterator = service.get_shard_iterator(request).await.map_err(|error| error.to_string())?.shard_iterator;
        let mut records = Vec::new();
        for _ in 0..10_000 {
            let response = service
                .get_records(v1::GetRecordsRequest { shard_iterator: iterator.clone(), limit: Some(1_000) })
                .await
                .map_err(|error| error.to_string())?;
            let empty = response.records.is_empty();
            for record in response.records {
                records.push(Record {
                    sequence: record.sequence_number,
                    value: String::from_utf8_lossy(&record.data).into_owned(),
                    arrival_ms: record.approximate_arrival_timestamp_ms,
                });
            }
            match response.next_shard_iterator {
                // A closed shard's end.
                None => return Ok(records),
                Some(_) if empty && response.millis_behind_latest == 0 => return Ok(records),
                Some(next) => iterator = next,
            }
        }
        Err("the read did not reach the end of the shard".into())
    }

    pub fn trace(&self) -> Arc<Trace> {
        self.trace.clone()
    }
}

/// A GetShardIterator request for `shard` of the stream from TRIM_HORIZON.
fn trim_horizon(shard: u32) -> v1::GetShardIteratorRequest {
    v1::GetShardIteratorRequest {
        stream_name: STREAM.into(),
        shard_id: riffle_node::keys::shard_id(shard),
        shard_iterator_type: v1::ShardIteratorType::TrimHorizon as i32,
        starting_sequence_number: None,
        timestamp_ms: None,
    }
}

/// The administrative workload, through a random node per call: two retention changes of the
/// stream (24–72 hours; the checker's expiry bound stays the 24-hour minimum), then a second
/// stream created, left a moment and deleted, each call repeated until it is known to have taken
/// effect. The deleted stream's groups are recorded for [`World::check_deleted`].
async fn admin(
    mut rng: ChaCha8Rng,
    services: Rc<RefCell<Vec<Option<StreamService>>>>,
    done: Rc<std::cell::Cell<bool>>,
    groups: Rc<RefCell<Vec<u64>>>,
    trace: Arc<Trace>,
) {
    let pick = |rng: &mut ChaCha8Rng| {
        let position = rng.gen_range(0..services.borrow().len());
        services.borrow()[position].clone().map(|service| (position + 1, service))
    };
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..3_000))).await;
        let Some((node, service)) = pick(&mut rng) else { continue };
        let Ok(Ok(stream)) = tokio::time::timeout(OPERATION_TIMEOUT, service.stream_meta(STREAM)).await else {
            continue;
        };
        let hours = rng.gen_range(24..=72u32);
        let current = stream.retention_period_hours;
        if hours == current {
            continue;
        }
        let call = service.update_retention(STREAM, i64::from(hours), hours > current);
        let outcome = match tokio::time::timeout(OPERATION_TIMEOUT, call).await {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(error)) => format!("{}: {}", error.error_type(), error.message()),
            Err(_) => "timed out".to_string(),
        };
        trace.record(&format!("admin: retention {current} -> {hours} hours via node {node}: {outcome}"));
    }
    // A second stream: created (until it exists), then deleted (until it is gone or deleting).
    let mut attempts = 0;
    let created = loop {
        attempts += 1;
        if attempts > ADMIN_ATTEMPTS_MAX {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..1_000))).await;
        let Some((node, service)) = pick(&mut rng) else { continue };
        let request = v1::CreateStreamRequest {
            stream_name: EXTRA_STREAM.into(),
            shard_count: rng.gen_range(1..=2),
            ..Default::default()
        };
        let outcome = tokio::time::timeout(OPERATION_TIMEOUT, service.create_stream(request)).await;
        trace.record(&format!("admin: create {EXTRA_STREAM} via node {node}: {outcome:?}"));
        match outcome {
            Ok(Ok(_)) => break true,
            Ok(Err(error)) if error.error_type() == "ResourceInUseException" => break true,
            _ => {}
        }
    };
    trace.record(&format!("admin: {EXTRA_STREAM} created: {created}"));
    {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..3_000))).await;
        for _ in 0..ADMIN_ATTEMPTS_MAX {
            let Some((node, service)) = pick(&mut rng) else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            // Its groups, as this node knows them (recorded before each delete attempt).
            if let Ok(Ok(stream)) = tokio::time::timeout(OPERATION_TIMEOUT, service.stream_meta(EXTRA_STREAM)).await {
                let mut known = groups.borrow_mut();
                for shard in &stream.shards {
                    if !known.contains(&shard.group_id) {
                        known.push(shard.group_id);
                    }
                }
            }
            let request = v1::DeleteStreamRequest { stream_name: EXTRA_STREAM.into() };
            let outcome = tokio::time::timeout(OPERATION_TIMEOUT, service.delete_stream(request)).await;
            trace.record(&format!("admin: delete {EXTRA_STREAM} via node {node}: {outcome:?}"));
            match outcome {
                Ok(Ok(_)) => break,
                Ok(Err(error)) if error.error_type() == "ResourceNotFoundException" => break,
                _ => tokio::time::sleep(Duration::from_millis(rng.gen_range(100..1_000))).await,
            }
        }
    }
    done.set(true);
}

/// Calls the admin workload makes of one step before it gives up on it.
const ADMIN_ATTEMPTS_MAX: u32 = 30;
/// The admin workload's second stream.
const EXTRA_STREAM: &str = "sim-extra";

/// Attempts a producer makes of one record whose outcome stays unknown (the first and two
/// retries), as an SDK retries an InternalFailure.
const PUT_ATTEMPTS_MAX: u32 = 3;

/// A producer: `values` unique values (`c<client>-<n>`), each sent by PutRecord or, one call in
/// three, by PutRecords with up to four more values of its own; each call through a random node.
/// A record whose outcome is unknown is sent again (the same value, so it may be stored twice;
/// the checker allows as many copies as attempts), at most [`PUT_ATTEMPTS_MAX`] times.
#[allow(clippy::too_many_arguments)]
async fn producer(
    client: u32,
    values: u32,
    mut rng: ChaCha8Rng,
    services: Rc<RefCell<Vec<Option<StreamService>>>>,
    history: Rc<RefCell<Vec<Put>>>,
    trace: Arc<Trace>,
    start: tokio::time::Instant,
    phases: bool,
) {
    let mut number = 0;
    while number < values {
        // An on-demand stream's load alternates: 3 s busy, 3 s quiet.
        let quiet = phases && (start.elapsed().as_secs() / 3) % 2 == 1;
        let pause_us = if quiet { 600_000 } else { 60_000 };
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..pause_us))).await;
        let batch = if rng.gen_bool(1.0 / 3.0) { rng.gen_range(2..=5).min(values - number) } else { 1 };
        // Few keys, so that per-key order across resharding is checked often.
        let mut pending: Vec<(String, String)> = (0..batch)
            .map(|offset| (format!("c{client}-{}", number + offset), format!("k{}", rng.gen_range(0..PARTITION_KEYS))))
            .collect();
        number += batch;
        for attempt in 0..PUT_ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
            }
            let position = rng.gen_range(0..services.borrow().len());
            let service = services.borrow()[position].clone();
            let invoked_us = start.elapsed().as_micros() as u64;
            let values: Vec<&str> = pending.iter().map(|(value, _)| value.as_str()).collect();
            let call = if batch > 1 { "PutRecords" } else { "PutRecord" };
            trace.record(&format!(
                "invoke client {client} {call} {values:?} via node {} (attempt {attempt})",
                position + 1
            ));
            let outcomes = match service {
                None => vec![Outcome::Fail(format!("node {} is down", position + 1)); pending.len()],
                Some(service) if batch == 1 => {
                    let (value, key) = &pending[0];
                    let request = v1::PutRecordRequest {
                        stream_name: STREAM.into(),
                        data: Bytes::from(value.clone()),
                        partition_key: key.clone(),
                        explicit_hash_key: None,
                        sequence_number_for_ordering: None,
                    };
                    vec![match tokio::time::timeout(OPERATION_TIMEOUT, service.put_record(request)).await {
                        Ok(Ok(response)) => Outcome::Ok {
                            shard: riffle_node::keys::parse_shard_id(&response.shard_id).unwrap_or(u32::MAX),
                            sequence: response.sequence_number,
                        },
                        Ok(Err(error)) if error.error_type() == "InternalFailure" => Outcome::Info(error.message()),
                        Ok(Err(error)) => Outcome::Fail(format!("{}: {}", error.error_type(), error.message())),
                        Err(_) => Outcome::Info("timed out".into()),
                    }]
                }
                Some(service) => {
                    let request = v1::PutRecordsRequest {
                        stream_name: STREAM.into(),
                        records: pending
                            .iter()
                            .map(|(value, key)| v1::PutRecordsRequestEntry {
                                data: Bytes::from(value.clone()),
                                partition_key: key.clone(),
                                explicit_hash_key: None,
                            })
                            .collect(),
                    };
                    match tokio::time::timeout(OPERATION_TIMEOUT, service.put_records(request)).await {
                        Ok(Ok(response)) if response.records.len() == pending.len() => response
                            .records
                            .into_iter()
                            .map(|entry| {
                                Outcome::of_put_records_entry(
                                    entry
                                        .shard_id
                                        .as_deref()
                                        .map(|id| riffle_node::keys::parse_shard_id(id).unwrap_or(u32::MAX)),
                                    entry.sequence_number,
                                    entry.error_code,
                                    entry.error_message,
                                )
                            })
                            .collect(),
                        Ok(Ok(response)) => vec![
                            Outcome::Info(format!(
                                "PutRecords answered {} results for {} records",
                                response.records.len(),
                                pending.len()
                            ));
                            pending.len()
                        ],
                        Ok(Err(error)) if error.error_type() == "InternalFailure" => {
                            vec![Outcome::Info(error.message()); pending.len()]
                        }
                        Ok(Err(error)) => {
                            vec![Outcome::Fail(format!("{}: {}", error.error_type(), error.message())); pending.len()]
                        }
                        Err(_) => vec![Outcome::Info("timed out".into()); pending.len()],
                    }
                }
            };
            let completed_us = start.elapsed().as_micros() as u64;
            let mut unknown = Vec::new();
            for ((value, key), outcome) in pending.into_iter().zip(outcomes) {
                trace.record(&format!("complete {value} {outcome:?}"));
                if matches!(outcome, Outcome::Info(_)) {
                    unknown.push((value.clone(), key.clone()));
                }
                history.borrow_mut().push(Put { client, value, key, invoked_us, completed_us, outcome });
            }
            pending = unknown;
            if pending.is_empty() {
                break;
            }
        }
    }
}

/// A reader: again and again, picks an open or closed shard and an iterator type (all five
/// Kinesis types; sequence numbers from acknowledged puts, timestamps from the last few
/// seconds), asks a random node for the iterator and follows it for a few GetRecords pages,
/// each through a random node, recording every page in a [`check::ReadChain`].
async fn reader(
    client: u32,
    mut rng: ChaCha8Rng,
    services: Rc<RefCell<Vec<Option<StreamService>>>>,
    puts: Rc<RefCell<Vec<Put>>>,
    chains: Rc<RefCell<Vec<check::ReadChain>>>,
    trace: Arc<Trace>,
    start: tokio::time::Instant,
) {
    use check::StartPosition;
    let pick = |rng: &mut ChaCha8Rng| {
        let position = rng.gen_range(0..services.borrow().len());
        services.borrow()[position].clone().map(|service| (position + 1, service))
    };
    // The shards as last described (a reader that cannot describe the stream goes on with what
    // it knows, through whichever node it picks, as a real consumer would).
    let mut shards: Vec<u32> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..300_000))).await;
        let Some((node, service)) = pick(&mut rng) else { continue };
        if shards.is_empty() || rng.gen_bool(0.2) {
            if let Ok(Ok(stream)) = tokio::time::timeout(READ_TIMEOUT, service.stream_meta(STREAM)).await {
                shards = stream.shards.iter().filter(|shard| !shard.expired).map(|shard| shard.index).collect();
            }
        }
        if shards.is_empty() {
            continue;
        }
        let shard = shards[rng.gen_range(0..shards.len())];
        let acknowledged: Vec<String> = puts
            .borrow()
            .iter()
            .filter_map(|put| match &put.outcome {
                Outcome::Ok { shard: at, sequence } if *at == shard => Some(sequence.clone()),
                _ => None,
            })
            .collect();
        let now_ms = EPOCH_MS + start.elapsed().as_millis() as i64;
        let at = (!acknowledged.is_empty()).then(|| acknowledged[rng.gen_range(0..acknowledged.len())].clone());
        let position = match (rng.gen_range(0..5), at) {
            (0, _) => StartPosition::TrimHorizon,
            (1, _) => StartPosition::Latest,
            (2, Some(sequence)) => StartPosition::AtSequence(sequence),
            (3, Some(sequence)) => StartPosition::AfterSequence(sequence),
            (4, _) => StartPosition::AtTimestamp(now_ms - rng.gen_range(0..5_000)),
            _ => StartPosition::TrimHorizon,
        };
        let (kind, sequence, timestamp_ms) = match &position {
            StartPosition::TrimHorizon => (v1::ShardIteratorType::TrimHorizon, None, None),
            StartPosition::Latest => (v1::ShardIteratorType::Latest, None, None),
            StartPosition::AtSequence(sequence) => {
                (v1::ShardIteratorType::AtSequenceNumber, Some(sequence.clone()), None)
            }
            StartPosition::AfterSequence(sequence) => {
                (v1::ShardIteratorType::AfterSequenceNumber, Some(sequence.clone()), None)
            }
            StartPosition::AtTimestamp(timestamp) => (v1::ShardIteratorType::AtTimestamp, None, Some(*timestamp)),
        };
        let request = v1::GetShardIteratorRequest {
            stream_name: STREAM.into(),
            shard_id: riffle_node::keys::shard_id(shard),
            shard_iterator_type: kind as i32,
            starting_sequence_number: sequence,
            timestamp_ms,
        };
        let iterator_invoked_us = start.elapsed().as_micros() as u64;
        let Ok(Ok(response)) = tokio::time::timeout(READ_TIMEOUT, service.get_shard_iterator(request)).await else {
            continue;
        };
        trace.record(&format!("reader {client}: shard {shard} from {position:?} via node {node}"));
        let index = {
            let mut chains = chains.borrow_mut();
            chains.push(check::ReadChain {
                client,
                shard,
                start: position,
                iterator_invoked_us,
                iterator_completed_us: start.elapsed().as_micros() as u64,
                pages: Vec::new(),
                from_parent: None,
            });
            chains.len() - 1
        };
        let mut iterator = response.shard_iterator;
        let mut index = index;
        let mut shard = shard;
        for _ in 0..rng.gen_range(1..8) {
            let Some((node, service)) = pick(&mut rng) else { break };
            let limit = rng.gen_range(1..=40);
            let invoked_us = start.elapsed().as_micros() as u64;
            let request = v1::GetRecordsRequest { shard_iterator: iterator.clone(), limit: Some(limit) };
            let response = match tokio::time::timeout(READ_TIMEOUT, service.get_records(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => {
                    trace.record(&format!("reader {client}: shard {shard} via node {node}: {error}"));
                    break;
                }
                Err(_) => break,
            };
            let records: Vec<Record> = response
                .records
                .iter()
                .map(|record| Record {
                    sequence: record.sequence_number.clone(),
                    value: String::from_utf8_lossy(&record.data).into_owned(),
                    arrival_ms: record.approximate_arrival_timestamp_ms,
                })
                .collect();
            let at_tip = response.next_shard_iterator.is_none()
                || (records.len() < limit as usize && response.millis_behind_latest == 0);
            trace.record(&format!(
                "reader {client}: {} record(s) of shard {shard} via node {node}{}",
                records.len(),
                if at_tip { " (tip)" } else { "" }
            ));
            let shard_end = response.next_shard_iterator.is_none();
            let page = check::Page {
                invoked_us,
                completed_us: start.elapsed().as_micros() as u64,
                records,
                at_tip,
                shard_end,
            };
            chains.borrow_mut()[index].pages.push(page);
            match response.next_shard_iterator {
                Some(next) => iterator = next,
                None => {
                    // The shard is closed and read to its end: a consumer goes on with a child,
                    // from its start, as the lineage says (the end of an expired lineage has none).
                    let children: Vec<u32> = response
                        .child_shards
                        .iter()
                        .filter_map(|child| riffle_node::keys::parse_shard_id(&child.shard_id))
                        .collect();
                    let Some(&child) = children.get(rng.gen_range(0..children.len().max(1))) else { break };
                    let request = trim_horizon(child);
                    let iterator_invoked_us = start.elapsed().as_micros() as u64;
                    let Ok(Ok(response)) =
                        tokio::time::timeout(READ_TIMEOUT, service.get_shard_iterator(request)).await
                    else {
                        break;
                    };
                    trace.record(&format!("reader {client}: from the end of shard {shard} on to its child {child}"));
                    let mut chains = chains.borrow_mut();
                    chains.push(check::ReadChain {
                        client,
                        shard: child,
                        start: StartPosition::TrimHorizon,
                        iterator_invoked_us,
                        iterator_completed_us: start.elapsed().as_micros() as u64,
                        pages: Vec::new(),
                        from_parent: Some(shard),
                    });
                    index = chains.len() - 1;
                    shard = child;
                    iterator = response.shard_iterator;
                }
            }
            tokio::time::sleep(Duration::from_micros(rng.gen_range(0..200_000))).await;
        }
    }
}

/// A client of the metadata: versioned writes of its own tag (`m<client>` = 1, 2, 3…) and reads
/// of every tag with the stream's status, each through a node picked at random.
async fn meta_client(
    client: u32,
    operations: u32,
    mut rng: ChaCha8Rng,
    services: Rc<RefCell<Vec<Option<StreamService>>>>,
    history: Rc<RefCell<Vec<MetaOperation>>>,
    trace: Arc<Trace>,
    start: tokio::time::Instant,
) {
    let key = format!("m{client}");
    let mut version = 0u64;
    for _ in 0..operations {
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..120_000))).await;
        let position = rng.gen_range(0..services.borrow().len());
        let node = position as u64 + 1;
        let service = services.borrow()[position].clone();
        let write = rng.gen_bool(0.5);
        if write {
            version += 1;
        }
        let invoked_us = start.elapsed().as_micros() as u64;
        trace.record(&format!("invoke meta client {client} {} via node {node}", if write { "write" } else { "read" }));
        let unknown = |error: &riffle_node::api::ApiError| error.error_type() == "InternalFailure";
        let (action, outcome) = match (service, write) {
            (None, true) => (MetaAction::Write { key: key.clone(), version }, Outcome::Fail("node down".into())),
            (None, false) => (MetaAction::Read { observed: None }, Outcome::Fail("node down".into())),
            (Some(service), true) => {
                let tags = vec![(key.clone(), version.to_string())];
                let change = service.add_tags(STREAM, None, tags, 10);
                let outcome = match tokio::time::timeout(OPERATION_TIMEOUT, change).await {
                    Ok(Ok(())) => Outcome::Ok { shard: 0, sequence: String::new() },
                    Ok(Err(error)) if unknown(&error) => Outcome::Info(error.message()),
                    Ok(Err(error)) => Outcome::Fail(format!("{}: {}", error.error_type(), error.message())),
                    Err(_) => Outcome::Info("timed out".into()),
                };
                (MetaAction::Write { key: key.clone(), version }, outcome)
            }
            (Some(service), false) => {
                match tokio::time::timeout(OPERATION_TIMEOUT, service.stream_meta(STREAM)).await {
                    Ok(Ok(stream)) => {
                        let tags = stream
                            .tags
                            .iter()
                            .map(|(key, value)| (key.clone(), value.parse::<u64>().unwrap_or(u64::MAX)))
                            .collect();
                        // Once ACTIVE a stream never goes back to CREATING (a reshard makes it UPDATING).
                        let active = stream.status != riffle_node::control::metadata::StreamStatus::Creating;
                        (
                            MetaAction::Read { observed: Some((tags, active)) },
                            Outcome::Ok { shard: 0, sequence: String::new() },
                        )
                    }
                    Ok(Err(error)) => (MetaAction::Read { observed: None }, Outcome::Fail(error.message())),
                    Err(_) => (MetaAction::Read { observed: None }, Outcome::Info("timed out".into())),
                }
            }
        };
        trace.record(&format!("complete meta client {client} {action:?} {outcome:?}"));
        history.borrow_mut().push(MetaOperation {
            client,
            node,
            invoked_us,
            completed_us: start.elapsed().as_micros() as u64,
            action,
            outcome,
        });
    }
}

/// Reshards the stream `count` times during the workload, through a node picked at random:
/// UpdateShardCount to a count it allows (at most [`OPEN_SHARDS_MAX`]), or a split of an open
/// shard at its middle while fewer than [`OPEN_SHARDS_MAX`] are open, else a merge of two
/// adjacent open shards. A refused or failed attempt (the stream is UPDATING, a
/// node is down) counts too: the point is to reshard under faults, not to reach a shape.
async fn resharder(
    count: u32,
    mut rng: ChaCha8Rng,
    services: Rc<RefCell<Vec<Option<StreamService>>>>,
    done: Rc<RefCell<u32>>,
    trace: Arc<Trace>,
) {
    use riffle_node::control::metadata::ShardState;
    for _ in 0..count {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..2_500))).await;
        let position = rng.gen_range(0..services.borrow().len());
        let service = services.borrow()[position].clone();
        let outcome = match service {
            None => "node down".to_string(),
            Some(service) => match tokio::time::timeout(OPERATION_TIMEOUT, service.stream_meta(STREAM)).await {
                Ok(Ok(stream)) => {
                    let mut open: Vec<_> =
                        stream.shards.iter().filter(|shard| shard.state == ShardState::Open).collect();
                    open.sort_by_key(|shard| shard.starting_hash_key);
                    let adjacent: Vec<(u32, u32)> = open
                        .windows(2)
                        .filter(|pair| pair[0].ending_hash_key.checked_add(1) == Some(pair[1].starting_hash_key))
                        .map(|pair| (pair[0].index, pair[1].index))
                        .collect();
                    let split = open.len() < OPEN_SHARDS_MAX && (adjacent.is_empty() || rng.gen_bool(0.6));
                    let call = if rng.gen_bool(0.25) {
                        let on_demand = rng.gen_bool(0.5);
                        trace.record(&format!(
                            "reshard: update stream mode to {} via node {}",
                            if on_demand { "ON_DEMAND" } else { "PROVISIONED" },
                            position + 1
                        ));
                        tokio::time::timeout(OPERATION_TIMEOUT, service.update_stream_mode(STREAM, on_demand)).await
                    } else if rng.gen_bool(0.3) && !open.is_empty() {
                        let low = open.len().div_ceil(2).max(1);
                        let high = (open.len() * 2).min(OPEN_SHARDS_MAX).max(low);
                        let target = rng.gen_range(low..=high) as i64;
                        trace.record(&format!(
                            "reshard: update shard count {} -> {target} via node {}",
                            open.len(),
                            position + 1
                        ));
                        tokio::time::timeout(OPERATION_TIMEOUT, async {
                            service.update_shard_count(STREAM, target).await.map(|_| ())
                        })
                        .await
                    } else if split && !open.is_empty() {
                        let shard = open[rng.gen_range(0..open.len())];
                        let middle = shard.starting_hash_key + (shard.ending_hash_key - shard.starting_hash_key) / 2;
                        trace.record(&format!("reshard: split shard {} via node {}", shard.index, position + 1));
                        let shard_id = riffle_node::keys::shard_id(shard.index);
                        tokio::time::timeout(
                            OPERATION_TIMEOUT,
                            service.split_shard(STREAM, &shard_id, &middle.to_string()),
                        )
                        .await
                    } else if let Some((low, high)) = adjacent.get(rng.gen_range(0..adjacent.len().max(1))) {
                        trace.record(&format!("reshard: merge shards {low} and {high} via node {}", position + 1));
                        let (low, high) = (riffle_node::keys::shard_id(*low), riffle_node::keys::shard_id(*high));
                        tokio::time::timeout(OPERATION_TIMEOUT, service.merge_shards(STREAM, &low, &high)).await
                    } else {
                        Ok(Ok(()))
                    };
                    match call {
                        Ok(Ok(())) => "started".to_string(),
                        Ok(Err(error)) => format!("{}: {}", error.error_type(), error.message()),
                        Err(_) => "timed out".to_string(),
                    }
                }
                Ok(Err(error)) => format!("cannot describe: {error}"),
                Err(_) => "describe timed out".to_string(),
            },
        };
        trace.record(&format!("reshard outcome: {outcome}"));
        *done.borrow_mut() += 1;
    }
}
