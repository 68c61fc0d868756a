//! `riffle-sim`: deterministic simulation of a Riffle cluster.
//!
//! The real node code — shard groups (openraft), raft-engine, the segment store, the metadata
//! group and the stream service — runs on one thread, on a tokio runtime whose clock is
//! virtual and whose scheduler randomness is seeded, over a simulated network
//! ([`network::SimNetwork`]) and simulated disks (`riffle_node::fs::memory`). Everything
//! random derives from the seed, so a seed replays a run bit for bit; [`run_seed`] returns the
//! hash of its trace to prove it.
//!
//! What it is not: QUIC and io_uring stay outside (they are replaced behind the transport and
//! file-system seams), and raft-engine's directory listing uses a real scratch directory of
//! empty placeholder files (raft-engine lists directories with `std::fs`).

pub mod network;
pub mod trace;
pub mod world;

use std::panic::AssertUnwindSafe;

pub use world::SeedReport;

/// The scenario run for each seed.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub clients: u32,
    pub operations_per_client: u32,
    pub shards: u32,
    /// Clients writing and reading metadata (tags of the stream), through random nodes.
    pub meta_clients: u32,
    pub meta_operations_per_client: u32,
    /// Readers following iterators of every type through random nodes while the puts run.
    pub readers: u32,
    /// Split or merge attempts during the workload.
    pub reshards: u32,
    /// Administrative operations during the workload: retention changes of the stream, and a
    /// second stream created and deleted (its groups must then be gone from every node).
    pub admin: bool,
    /// Inject partitions and crash-restarts.
    pub faults: bool,
    /// Let one crash per seed also lose the node's disk.
    pub disk_loss: bool,
    /// In a third of the seeds, a fourth node joins during the workload and node 1 is then
    /// decommissioned (its replicas move, mostly to the new node in its zone).
    pub membership: bool,
    /// Single-message faults in the chaos phase, a mix drawn per seed (some families off):
    /// requests and responses lost, messages held back so that later ones overtake them.
    pub message_faults: bool,
    /// One crash in ten becomes a power loss: every running node crashes at once, each losing
    /// what it had not synced.
    pub power_loss: bool,
    /// Fault families turned off by name (see [`FAULT_FAMILIES`]; by default [`default_off`]);
    /// `--faults LIST` turns off every family not listed.
    pub off: std::collections::BTreeSet<String>,
    /// A deliberate defect planted in the node code for this run (`riffle_node::planted`), to
    /// prove the checks catch it.
    pub plant: Option<riffle_node::planted::Bug>,
}

impl SimOptions {
    /// The `riffle-sim` flags that select this scenario where it differs from the default.
    pub fn flags(&self) -> String {
        let mut flags = String::new();
        let default = SimOptions::default();
        if self.operations_per_client != default.operations_per_client {
            flags.push_str(&format!(" --operations {}", self.operations_per_client));
        }
        if self.readers != default.readers {
            flags.push_str(&format!(" --readers {}", self.readers));
        }
        if self.meta_clients != default.meta_clients {
            flags.push_str(&format!(" --meta-clients {}", self.meta_clients));
        }
        if self.reshards != default.reshards {
            flags.push_str(&format!(" --reshards {}", self.reshards));
        }
        if !self.admin {
            flags.push_str(" --workload readers,meta,reshards,membership");
        }
        if !self.faults {
            flags.push_str(" --no-faults");
        }
        if !self.disk_loss {
            flags.push_str(" --no-disk-loss");
        }
        if !self.membership {
            flags.push_str(" --no-membership");
        }
        if !self.message_faults {
            flags.push_str(" --no-message-faults");
        }
        if !self.power_loss {
            flags.push_str(" --no-power-loss");
        }
        if self.off != default_off() {
            let on: Vec<&str> = FAULT_FAMILIES.iter().copied().filter(|family| !self.off.contains(*family)).collect();
            flags.push_str(&format!(" --faults {}", if on.is_empty() { "none".to_string() } else { on.join(",") }));
        }
        if let Some(bug) = self.plant {
            flags.push_str(&format!(" --plant {}", bug.name()));
        }
        flags
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            clients: 3,
            operations_per_client: 80,
            shards: 2,
            meta_clients: 2,
            meta_operations_per_client: 24,
            readers: 2,
            reshards: 3,
            admin: true,
            faults: true,
            disk_loss: true,
            membership: true,
            message_faults: true,
            power_loss: true,
            off: default_off(),
            plant: None,
        }
    }
}

/// The fault families a seed may draw (each seed turns some of them off: swarm testing).
pub const FAULT_FAMILIES: [&str; 13] = [
    "partition",
    "zone",
    "one-way",
    "flapping",
    "crash",
    "corrupt",
    "pause",
    "clock",
    "io-error",
    "drop",
    "delay",
    "duplicate",
    "replay",
];

/// Families a default run leaves out (none: every family is in the default mix; `--faults`
/// narrows a sweep).
pub fn default_off() -> std::collections::BTreeSet<String> {
    std::collections::BTreeSet::new()
}

impl SimOptions {
    /// Whether fault family `family` may be drawn.
    pub fn allows(&self, family: &str) -> bool {
        self.faults && !self.off.contains(family)
    }
}

/// A seed whose run broke an invariant (or panicked, or did not settle).
#[derive(Debug, Clone)]
pub struct SimFailure {
    pub seed: u64,
    pub message: String,
    /// The last events of the trace before the failure.
    pub recent_events: Vec<String>,
    /// The command-line flags of the scenario that failed (for the replay command).
    pub flags: String,
}

impl SimFailure {
    /// The command that replays this failure.
    pub fn replay_command(&self) -> String {
        format!("cargo run --release -p riffle-sim -- --seed {}{}", self.seed, self.flags)
    }
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(formatter, "seed {} failed: {}", self.seed, self.message)?;
        writeln!(formatter, "last events:")?;
        for event in &self.recent_events {
            writeln!(formatter, "  {event}")?;
        }
        write!(formatter, "replay: {}", self.replay_command())
    }
}

/// A seed run again to keep its evidence: its whole trace and, if it got that far, its history
/// and final state as JSON (the checker's input).
pub struct Recording {
    pub outcome: Result<SeedReport, SimFailure>,
    pub trace: Vec<String>,
    pub history_json: Option<String>,
}

/// Runs one seed keeping every trace event and the checked history.
pub fn run_seed_recorded(seed: u64, options: &SimOptions) -> Recording {
    trace::record_all(true);
    RECORDING.with(|flag| flag.set(true));
    HISTORY.with(|slot| slot.borrow_mut().take());
    let outcome = run_seed(seed, options);
    trace::record_all(false);
    RECORDING.with(|flag| flag.set(false));
    let trace = LAST_TRACE.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
    let history_json = HISTORY.with(|slot| slot.borrow_mut().take());
    Recording { outcome, trace, history_json }
}

/// Keeps the history and final state of the seed being recorded (as JSON), if one is.
pub(crate) fn keep_history(history: &riffle_check::History, end: &riffle_check::FinalState) {
    if RECORDING.with(|flag| flag.get()) {
        let json = serde_json::json!({ "history": history, "final": end });
        HISTORY.with(|slot| *slot.borrow_mut() = serde_json::to_string_pretty(&json).ok());
    }
}

thread_local! {
    static RECORDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static HISTORY: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    static LAST_TRACE: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Set while this thread runs a seed; panics are then collected instead of printed.
    static SIMULATING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static PANICS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn install_panic_collector() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if SIMULATING.with(|flag| flag.get()) {
                let location = info.location().map(|location| location.to_string()).unwrap_or_default();
                let message = info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| info.payload().downcast_ref::<&str>().map(|text| text.to_string()))
                    .unwrap_or_else(|| "a panic".to_string());
                PANICS.with(|panics| panics.borrow_mut().push(format!("{message} at {location}")));
            } else {
                default_hook(info);
            }
        }));
    });
}

/// Runs one seed on the calling thread.
pub fn run_seed(seed: u64, options: &SimOptions) -> Result<SeedReport, SimFailure> {
    install_panic_collector();
    PANICS.with(|panics| panics.borrow_mut().clear());
    SIMULATING.with(|flag| flag.set(true));
    riffle_node::planted::plant(options.plant);
    let outcome = run_seed_inner(seed, options);
    riffle_node::planted::plant(None);
    SIMULATING.with(|flag| flag.set(false));
    let panics = PANICS.with(|panics| std::mem::take(&mut *panics.borrow_mut()));
    let outcome = match (outcome, panics.first()) {
        (Ok(_), Some(first)) => Err(SimFailure {
            seed,
            message: format!("a task panicked: {first}"),
            recent_events: Vec::new(),
            flags: String::new(),
        }),
        // A failed check names the first panic too: it is often the cause.
        (Err(failure), Some(first)) => {
            Err(SimFailure { message: format!("{} (a task panicked first: {first})", failure.message), ..failure })
        }
        (outcome, None) => outcome,
    };
    outcome.map_err(|failure| SimFailure { flags: options.flags(), ..failure })
}

fn run_seed_inner(seed: u64, options: &SimOptions) -> Result<SeedReport, SimFailure> {
    riffle_node::raft::runtime::seed_thread_rng(seed.rotate_left(17) ^ 0x5eed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()))
        .build()
        .map_err(|error| SimFailure {
            seed,
            message: format!("runtime: {error}"),
            recent_events: Vec::new(),
            flags: String::new(),
        })?;
    let recent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recent_for_run = recent.clone();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async move {
            let world = world::World::new(seed, options.clone())?;
            let trace = world.trace();
            let result = world.run().await;
            trace.write_all();
            if let Ok(mut slot) = recent_for_run.lock() {
                *slot = trace.recent();
            }
            let all = trace.all();
            if !all.is_empty() {
                LAST_TRACE.with(|slot| *slot.borrow_mut() = all);
            }
            result
        })
    }));
    drop(runtime);
    let recent_events = recent.lock().map(|events| events.clone()).unwrap_or_default();
    match outcome {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(message)) => Err(SimFailure { seed, message, recent_events, flags: String::new() }),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "a task panicked".to_string());
            Err(SimFailure { seed, message: format!("panic: {message}"), recent_events, flags: String::new() })
        }
    }
}
