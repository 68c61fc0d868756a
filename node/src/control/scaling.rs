//! UpdateShardCount's plan: from the open shards to the even ranges of a target count, in
//! reshard steps each child of which has one or two parents (as Kinesis' lineage allows).
//!
//! Every step first splits each open shard that strictly contains a target boundary (at the
//! first such boundary); once every target boundary is a shard boundary, each target range
//! that still spans several shards has them merged in pairs. Splitting at one boundary per
//! shard per step and merging in pairs can leave short-lived intermediate shards, as AWS's
//! own uniform scaling does. Pure: every node computes the same plan from the same metadata.

use crate::keys::even_ranges;

/// An open shard, as the plan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenShard {
    pub index: u32,
    pub start: u128,
    pub end: u128,
}

/// One reshard step: the shards to close and the children (hash range, parents in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingStep {
    pub closing: Vec<u32>,
    pub children: Vec<((u128, u128), Vec<u32>)>,
}

/// The next step from `open` (any order) toward `target` even shards; `None` once there.
pub fn next_step(open: &[OpenShard], target: u32) -> Option<ScalingStep> {
    if target == 0 || open.is_empty() {
        return None;
    }
    let mut open = open.to_vec();
    open.sort_by_key(|shard| shard.start);
    let targets = even_ranges(target);
    let boundaries: Vec<u128> = targets.iter().skip(1).map(|(start, _)| *start).collect();

    let mut step = ScalingStep { closing: Vec::new(), children: Vec::new() };
    for shard in &open {
        if let Some(boundary) = boundaries.iter().find(|boundary| shard.start < **boundary && **boundary <= shard.end) {
            step.closing.push(shard.index);
            step.children.push(((shard.start, boundary - 1), vec![shard.index]));
            step.children.push(((*boundary, shard.end), vec![shard.index]));
        }
    }
    if !step.closing.is_empty() {
        return Some(step);
    }
    for (start, end) in targets {
        let within: Vec<&OpenShard> = open.iter().filter(|shard| start <= shard.start && shard.end <= end).collect();
        for pair in within.chunks(2) {
            if let [low, high] = pair {
                step.closing.extend([low.index, high.index]);
                step.children.push(((low.start, high.end), vec![low.index, high.index]));
            }
        }
    }
    (!step.closing.is_empty()).then_some(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies steps until the plan ends, numbering children after the existing shards; returns
    /// the final open ranges and the number of steps.
    fn run(count: u32, target: u32) -> (Vec<(u128, u128)>, usize) {
        let mut open: Vec<OpenShard> = even_ranges(count)
            .into_iter()
            .enumerate()
            .map(|(index, (start, end))| OpenShard { index: index as u32, start, end })
            .collect();
        let mut next_index = count;
        for steps in 0..64 {
            let Some(step) = next_step(&open, target) else {
                let mut ranges: Vec<(u128, u128)> = open.iter().map(|shard| (shard.start, shard.end)).collect();
                ranges.sort_unstable();
                return (ranges, steps);
            };
            for child in &step.children {
                assert!((1..=2).contains(&child.1.len()), "a child with parents {:?}", child.1);
            }
            open.retain(|shard| !step.closing.contains(&shard.index));
            for ((start, end), _) in step.children {
                open.push(OpenShard { index: next_index, start, end });
                next_index += 1;
            }
        }
        panic!("scaling {count} -> {target} did not finish in 64 steps");
    }

    #[test]
    fn scaling_reaches_the_even_ranges_of_the_target() {
        for (count, target, steps_max) in [
            (2, 4, 1),
            (4, 8, 1),
            (8, 4, 1),
            (4, 2, 1),
            (2, 1, 1),
            (1, 2, 1),
            (3, 5, 4),
            (5, 3, 4),
            (6, 12, 2),
            (7, 4, 4),
        ] {
            let (ranges, steps) = run(count, target);
            assert_eq!(ranges, even_ranges(target), "{count} -> {target}");
            assert!(steps <= steps_max, "{count} -> {target} took {steps} steps");
        }
        assert_eq!(run(4, 4), (even_ranges(4), 0));
    }
}
