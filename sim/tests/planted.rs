//! The checks can fail: each planted bug (`riffle_node::planted`) must make a seed fail within a
//! stated number of seeds. A check that has never failed proves nothing.

use riffle_node::planted::Bug;
use riffle_sim::{run_seed, SimOptions};

/// Seeds within which each planted bug must be caught.
const SEEDS_MAX: u64 = 40;

fn first_caught(bug: Bug) -> Option<(u64, String)> {
    let options = SimOptions { plant: Some(bug), ..SimOptions::default() };
    (0..SEEDS_MAX).find_map(|seed| run_seed(seed, &options).err().map(|failure| (seed, failure.message)))
}

#[test]
fn planted_bugs_are_caught() {
    for bug in Bug::ALL {
        let caught = first_caught(bug);
        assert!(caught.is_some(), "planted bug {} went unnoticed for {SEEDS_MAX} seeds", bug.name());
        if let Some((seed, message)) = caught {
            eprintln!("{} caught at seed {seed}: {}", bug.name(), message.lines().next().unwrap_or_default());
        }
    }
}

#[test]
fn without_a_planted_bug_the_same_seeds_pass() {
    let options = SimOptions::default();
    for seed in 0..3 {
        if let Err(failure) = run_seed(seed, &options) {
            panic!("{failure}");
        }
    }
}
