//! The harness in the gate: short runs of real `riffle-node` processes (the debug build the
//! workspace's tests build) in network namespaces — a no-fault control, a kill + partition
//! run, and the planted defect `ack-before-fsync` under power loss, which the checks must
//! catch. Needs root (network namespaces), as the CI machine runs the tests.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use riffle_jepsen::report::Verdict;
use riffle_jepsen::run::{rerun_command, run, RunOptions, RunResult};
use riffle_node::config::TestStorage;

/// One run at a time: they share two cores, and their figures mean more alone.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: the harness needs root for network namespaces (the CI machine runs as root)");
    }
    root
}

/// `riffle-node` of the same build as this test (target/<profile>/riffle-node).
fn node_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("riffle-node");
    assert!(
        binary.is_file(),
        "{} is missing: build it first (`cargo build -p riffle-node`; `cargo test --workspace` does)",
        binary.display()
    );
    binary
}

fn options(schedule: &str, seconds: u64, seed: u64, storage: TestStorage) -> RunOptions {
    RunOptions {
        schedule: schedule.into(),
        time_limit: Duration::from_secs(seconds),
        rate: 100.0,
        producers: 4,
        readers: 2,
        shards: 2,
        seed,
        binary: node_binary(),
        out: std::env::temp_dir().join("riffle-jepsen-test-runs"),
        storage,
    }
}

fn run_schedule(options: &RunOptions) -> RunResult {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let result = run(options, Arc::new(AtomicBool::new(false)))
        .unwrap_or_else(|error| panic!("the run failed to complete: {error:#}\nrerun: {}", rerun_command(options)));
    eprintln!("{}", riffle_jepsen::report::summary(options, &result));
    result
}

#[test]
fn no_fault_control_is_valid_and_available() {
    if !can_run() {
        return;
    }
    let options = options("control", 45, 11, TestStorage::LoseUnsynced);
    let result = run_schedule(&options);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}\nreport: {}", result.violations, result.dir.display());
    assert!(result.acknowledged > 1_000, "a healthy cluster acknowledged only {} puts", result.acknowledged);
    assert!(result.read_chains > 10, "readers followed only {} chains", result.read_chains);
    let whole = &result.availability[0];
    assert!(whole.success_ratio > 0.95, "without faults only {:.3} of puts succeeded", whole.success_ratio);
    let _ = std::fs::remove_dir_all(&result.dir);
}

#[test]
fn kill_and_partition_keep_every_acknowledged_write() {
    if !can_run() {
        return;
    }
    let options = options("partition-kill", 45, 12, TestStorage::LoseUnsynced);
    let result = run_schedule(&options);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}\nreport: {}", result.violations, result.dir.display());
    assert!(result.faults >= 3, "only {} fault windows ran", result.faults);
    assert!(result.acknowledged > 500, "only {} puts acknowledged", result.acknowledged);
    let _ = std::fs::remove_dir_all(&result.dir);
}

#[test]
fn the_checks_catch_a_node_that_acknowledges_before_fsync() {
    if !can_run() {
        return;
    }
    let options = options("power-loss", 25, 13, TestStorage::AckBeforeFsync);
    let result = run_schedule(&options);
    assert_eq!(result.verdict, Verdict::Invalid, "the planted defect went unnoticed; report: {}", result.dir.display());
    assert!(
        result.violations.iter().any(|violation| violation.starts_with("[lost]")),
        "the defect should lose acknowledged writes: {:?}",
        result.violations
    );
    let _ = std::fs::remove_dir_all(&result.dir);
}
