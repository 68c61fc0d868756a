//! The trace of a run: every event folded into one hash, so two runs of a seed can be
//! compared bit for bit, plus the last events kept for failure reports.

use std::collections::VecDeque;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Events kept for a failure report.
const RECENT_EVENTS_MAX: usize = 64;

thread_local! {
    /// Set while a seed is replayed to write its whole trace out.
    static RECORD_ALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes the traces created on this thread from now on keep every event (or not).
pub fn record_all(on: bool) {
    RECORD_ALL.with(|flag| flag.set(on));
}

pub struct Trace {
    start: tokio::time::Instant,
    state: Mutex<TraceState>,
}

struct TraceState {
    hasher: Sha256,
    events: u64,
    recent: VecDeque<String>,
    /// Every event, when `RIFFLE_SIM_TRACE` names a file to write them to.
    all: Option<Vec<String>>,
    /// The run's scratch directory, whose name is random: written as `<scratch>` so that
    /// events naming a file hash the same in every run.
    scratch: Option<String>,
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

impl Trace {
    /// A new trace whose times count from now (virtual time inside the simulation).
    pub fn new() -> Trace {
        Trace {
            start: tokio::time::Instant::now(),
            state: Mutex::new(TraceState {
                hasher: Sha256::new(),
                events: 0,
                recent: VecDeque::new(),
                all: (std::env::var_os("RIFFLE_SIM_TRACE").is_some() || RECORD_ALL.with(|flag| flag.get()))
                    .then(Vec::new),
                scratch: None,
            }),
        }
    }

    /// Names the run's scratch directory, to be written as `<scratch>` in every later event.
    pub fn hide_scratch(&self, path: &std::path::Path) {
        self.state.lock().expect("trace lock is not poisoned").scratch = Some(path.display().to_string());
    }

    /// Records an event at the current virtual time.
    pub fn record(&self, event: &str) {
        let micros = self.start.elapsed().as_micros() as u64;
        let mut state = self.state.lock().expect("trace lock is not poisoned");
        let hidden;
        let event = match state.scratch.as_deref() {
            Some(scratch) if event.contains(scratch) => {
                hidden = event.replace(scratch, "<scratch>");
                hidden.as_str()
            }
            _ => event,
        };
        state.hasher.update(micros.to_le_bytes());
        state.hasher.update(event.as_bytes());
        state.hasher.update([0u8]);
        state.events += 1;
        if state.recent.len() == RECENT_EVENTS_MAX {
            state.recent.pop_front();
        }
        let line = format!("{:>10.6}s {event}", micros as f64 / 1e6);
        if let Some(all) = state.all.as_mut() {
            all.push(line.clone());
        }
        state.recent.push_back(line);
    }

    pub fn events(&self) -> u64 {
        self.state.lock().expect("trace lock is not poisoned").events
    }

    pub fn recent(&self) -> Vec<String> {
        self.state.lock().expect("trace lock is not poisoned").recent.iter().cloned().collect()
    }

    /// Every event, if this trace keeps them all.
    pub fn all(&self) -> Vec<String> {
        self.state.lock().expect("trace lock is not poisoned").all.clone().unwrap_or_default()
    }

    /// Writes every event to the file `RIFFLE_SIM_TRACE` names, if it is set.
    pub fn write_all(&self) {
        let state = self.state.lock().expect("trace lock is not poisoned");
        if let (Some(all), Some(path)) = (&state.all, std::env::var_os("RIFFLE_SIM_TRACE")) {
            let mut path = std::path::PathBuf::from(path);
            if path.is_dir() {
                static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                path = path.join(format!("run-{run}.txt"));
            }
            let _ = std::fs::write(path, all.join("\n"));
        }
    }

    /// The hash of every event so far, as hex.
    pub fn hash(&self) -> String {
        let state = self.state.lock().expect("trace lock is not poisoned");
        state.hasher.clone().finalize().iter().map(|byte| format!("{byte:02x}")).collect()
    }
}
