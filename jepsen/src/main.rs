//! `riffle-jepsen`: run a fault schedule against real `riffle-node` processes and check it.
//!
//! - `riffle-jepsen run --schedule NAME --time-limit 300 --rate 500` runs one schedule and
//!   prints progress, the verdict and the report directory;
//! - `riffle-jepsen schedules` lists the schedules;
//! - `riffle-jepsen clean` removes networks and processes left by runs that were killed.
//!
//! It needs root (network namespaces). See docs/jepsen.md.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use riffle_jepsen::nemesis::SCHEDULES;
use riffle_jepsen::report::Verdict;
use riffle_jepsen::run::{rerun_command, run, RunOptions};
use riffle_node::config::TestStorage;

#[derive(Parser)]
#[command(
    name = "riffle-jepsen",
    version,
    about = "Fault schedules against real riffle-node processes, with checked histories"
)]
struct Arguments {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run one schedule.
    Run {
        /// The schedule (`riffle-jepsen schedules` lists them).
        #[arg(long, default_value = "chaos")]
        schedule: String,
        /// Seconds of workload and faults (the heal, recovery and drain come after).
        #[arg(long, default_value_t = 300)]
        time_limit: u64,
        /// Put calls per second over every producer.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// Producers; even ones use gRPC, odd ones the Kinesis HTTP API.
        #[arg(long, default_value_t = 6)]
        producers: u32,
        /// Iterator readers.
        #[arg(long, default_value_t = 2)]
        readers: u32,
        /// Shards of the stream.
        #[arg(long, default_value_t = 2)]
        shards: u32,
        /// Seed of the fault schedule and the workload (random if absent).
        #[arg(long)]
        seed: Option<u64>,
        /// The riffle-node binary (default: beside this one).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Where run directories go.
        #[arg(long, default_value = "jepsen-runs")]
        out: PathBuf,
        /// The nodes' test-only storage mode: `lose-unsynced` (kill -9 loses unsynced writes, as
        /// a power failure does) or `ack-before-fsync` (a planted defect the checks must catch).
        #[arg(long, default_value = "lose-unsynced")]
        storage: String,
    },
    /// List the schedules.
    Schedules,
    /// Remove networks (and their processes) left by runs that were killed.
    Clean,
}

fn main() -> Result<()> {
    let arguments = Arguments::parse();
    match arguments.command {
        Commands::Schedules => {
            for (name, description) in SCHEDULES {
                println!("{name:<16} {description}");
            }
            Ok(())
        }
        Commands::Clean => {
            let removed = riffle_jepsen::net::clean_stale()?;
            println!("removed {} namespace(s): {removed:?}", removed.len());
            Ok(())
        }
        Commands::Run { schedule, time_limit, rate, producers, readers, shards, seed, binary, out, storage } => {
            let storage = match storage.as_str() {
                "lose-unsynced" => TestStorage::LoseUnsynced,
                "ack-before-fsync" => TestStorage::AckBeforeFsync,
                other => bail!("--storage {other}: expected lose-unsynced or ack-before-fsync"),
            };
            let binary = match binary {
                Some(binary) => binary,
                None => std::env::current_exe().context("finding this program")?.with_file_name("riffle-node"),
            };
            let options = RunOptions {
                schedule,
                time_limit: Duration::from_secs(time_limit),
                rate,
                producers,
                readers,
                shards,
                seed: seed.unwrap_or_else(rand::random),
                binary,
                out,
                storage,
            };
            let interrupted = Arc::new(AtomicBool::new(false));
            {
                let interrupted = interrupted.clone();
                // Ctrl-C ends the fault phase; the run still heals, checks and cleans up.
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                    if let Ok(runtime) = runtime {
                        runtime.block_on(async {
                            if tokio::signal::ctrl_c().await.is_ok() {
                                eprintln!(
                                    "interrupted: healing, checking and cleaning up (Ctrl-C again does not stop it)"
                                );
                                interrupted.store(true, Ordering::SeqCst);
                            }
                        });
                    }
                });
            }
            let result = run(&options, interrupted)?;
            println!("{}", riffle_jepsen::report::summary(&options, &result));
            println!("report: {}", result.dir.join("index.html").display());
            if result.verdict == Verdict::Invalid {
                eprintln!("rerun the same schedule and seed: {}", rerun_command(&options));
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
