//! The simulator's sweep: many seeds under faults must pass every check, and a seed run twice
//! must produce the same trace. A failure prints the seed and the command that replays it.

use riffle_sim::{run_seed, SimOptions};

/// Seeds run by the sweep.
const SWEEP_SEEDS: u64 = 1_000;
/// Seeds run twice for the determinism check.
const DETERMINISM_SEEDS: u64 = 20;

fn run_range(seeds: std::ops::Range<u64>, threads: u64) -> Vec<String> {
    let workers: Vec<_> = (0..threads)
        .map(|worker| {
            let seeds: Vec<u64> = seeds.clone().filter(|seed| seed % threads == worker).collect();
            std::thread::spawn(move || {
                let options = SimOptions::default();
                seeds
                    .into_iter()
                    .filter_map(|seed| run_seed(seed, &options).err().map(|failure| failure.to_string()))
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    workers.into_iter().flat_map(|worker| worker.join().expect("a sweep worker does not panic")).collect()
}

#[test]
fn seeds_under_partitions_and_crashes_pass_every_check() {
    let failures = run_range(0..SWEEP_SEEDS, 2);
    assert!(failures.is_empty(), "{} of {SWEEP_SEEDS} seeds failed:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let options = SimOptions::default();
    let mut storage_failures = 0;
    for seed in 1_000..1_000 + DETERMINISM_SEEDS {
        let first = run_seed(seed, &options).unwrap_or_else(|failure| panic!("{failure}"));
        let second = run_seed(seed, &options).unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(
            first.trace_hash, second.trace_hash,
            "seed {seed} is not deterministic; replay with `cargo run --release -p riffle-sim -- --seed {seed}`"
        );
        assert!(first.acknowledged > 0, "seed {seed} acknowledged nothing");
        storage_failures += first.storage_failures;
    }
    // A node that stops on a storage error and is started again must replay exactly too (its
    // error names a file in the run's randomly named scratch directory).
    assert!(storage_failures > 0, "no seed of the determinism range stopped a node on a storage error");
}
