//! Seams for time, randomness and dedicated threads.
//!
//! Monotonic time and timers come from tokio's clock, which the simulator pauses and advances
//! virtually; wall-clock time (arrival timestamps, iterator expiry) comes from [`Clock`];
//! randomness comes from [`Entropy`]; work that production gives its own OS thread (the
//! io_uring writer, the raft-engine writer) is started through [`Executor::spawn_dedicated`],
//! which the simulator turns into a task on its single thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The system clock plus an offset that can change while the node runs: the test-only clock
/// control the process-level fault harness uses to skew and jump a node's wall clock.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl OffsetClock {
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms().saturating_add(self.offset_ms.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Starts tasks and dedicated loops.
pub trait Executor: Send + Sync + std::fmt::Debug + 'static {
    /// Runs `task` concurrently on the node's runtime.
    fn spawn(&self, name: &'static str, task: BoxFuture<()>);
    /// Runs `task` where it may block (io_uring, fsync): production gives it an OS thread with
    /// its own single-threaded runtime; the simulator runs it as an ordinary task.
    fn spawn_dedicated(&self, name: &'static str, task: BoxFuture<()>);
}

/// Tokio for tasks, OS threads for dedicated loops.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioExecutor;

impl Executor for TokioExecutor {
    fn spawn(&self, _name: &'static str, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn spawn_dedicated(&self, name: &'static str, task: BoxFuture<()>) {
        let spawned = std::thread::Builder::new().name(name.to_string()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime can be built for a dedicated thread");
            runtime.block_on(task);
        });
        if let Err(error) = spawned {
            panic!("cannot start dedicated thread {name}: {error}");
        }
    }
}

/// The shared handles to every seam, passed to the parts of a node.
#[derive(Debug, Clone)]
pub struct Seams {
    pub clock: Arc<dyn Clock>,
    pub executor: Arc<dyn Executor>,
    pub fs: Arc<dyn crate::fs::FileSystem>,
}
