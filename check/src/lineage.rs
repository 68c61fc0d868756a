//! Resharding: closed shards end where sealed, and each partition key follows the lineage.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{sequence_less, Outcome, Put, ShardRead, Violation};

/// The shards' lineage after the run: each shard's parents, and each closed shard's ending
/// sequence number (rendered).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lineage {
    pub parents: BTreeMap<u32, Vec<u32>>,
    pub ending: BTreeMap<u32, String>,
}

impl Lineage {
    pub fn is_ancestor(&self, ancestor: u32, shard: u32) -> bool {
        let mut frontier = vec![shard];
        let mut seen = BTreeSet::new();
        while let Some(current) = frontier.pop() {
            for parent in self.parents.get(&current).into_iter().flatten() {
                if *parent == ancestor {
                    return true;
                }
                if seen.insert(*parent) {
                    frontier.push(*parent);
                }
            }
        }
        false
    }
}

/// Checks what resharding must keep: closed shards end where their metadata says (`seal`), and
/// per partition key, acknowledged puts follow the lineage in real time (`key-lineage`).
pub fn check_lineage(puts: &[Put], reads: &[ShardRead], lineage: &Lineage) -> Vec<Violation> {
    let mut violations = Vec::new();
    for read in reads {
        let Some(ending) = lineage.ending.get(&read.shard) else { continue };
        for record in &read.records {
            if sequence_less(ending, &record.sequence) {
                violations.push(Violation::new(
                    "seal",
                    format!(
                        "shard {} closed at {ending} yet holds {} at {}: a parent took a write after its seal",
                        read.shard, record.value, record.sequence
                    ),
                ));
            }
        }
    }
    let mut by_key: BTreeMap<&str, Vec<(&Put, u32)>> = BTreeMap::new();
    for put in puts {
        if let Outcome::Ok { shard, .. } = &put.outcome {
            by_key.entry(put.key.as_str()).or_default().push((put, *shard));
        }
    }
    // A violation exists between two shards of a key exactly when the put of the first that
    // completed earliest completed before the put of the second that began last began: one
    // witness per key and pair of shards, found in time linear in the puts.
    for (key, acknowledged) in by_key {
        let mut first_completed: BTreeMap<u32, &Put> = BTreeMap::new();
        let mut last_invoked: BTreeMap<u32, &Put> = BTreeMap::new();
        for (put, shard) in acknowledged {
            let first = first_completed.entry(shard).or_insert(put);
            if put.completed_us < first.completed_us {
                *first = put;
            }
            let last = last_invoked.entry(shard).or_insert(put);
            if put.invoked_us > last.invoked_us {
                *last = put;
            }
        }
        for (earlier_shard, earlier) in &first_completed {
            for (later_shard, later) in &last_invoked {
                let before = earlier.completed_us < later.invoked_us;
                if before && earlier_shard != later_shard && !lineage.is_ancestor(*earlier_shard, *later_shard) {
                    violations.push(Violation::new(
                        "key-lineage",
                        format!(
                            "key {key}: {} was acknowledged in shard {earlier_shard} before {} began, which went to shard {later_shard}, not a descendant",
                            earlier.value, later.value
                        ),
                    ));
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ok, put, read};

    #[test]
    fn puts_follow_the_lineage_per_key_and_closed_shards_end_where_sealed() {
        // Shard 0 split into 1 and 2; shard 1 later merged with shard 3 into 4.
        let lineage = Lineage {
            parents: BTreeMap::from([(1, vec![0]), (2, vec![0]), (4, vec![1, 3])]),
            ending: BTreeMap::from([(0, "4905".to_string())]),
        };
        let puts =
            vec![put("a", 0, 10, ok(0, "4901")), put("b", 20, 30, ok(1, "4911")), put("c", 40, 50, ok(4, "4941"))];
        let reads = vec![read(0, &[("4901", "a")]), read(1, &[("4911", "b")]), read(4, &[("4941", "c")])];
        assert_eq!(check_lineage(&puts, &reads, &lineage), Vec::new());

        let backwards = vec![put("a", 0, 10, ok(1, "4911")), put("b", 20, 30, ok(0, "4904"))];
        let sideways = vec![put("a", 0, 10, ok(1, "4911")), put("b", 20, 30, ok(2, "4921"))];
        let late = vec![read(0, &[("4906", "x")])];
        let text = [
            check_lineage(&backwards, &[], &lineage),
            check_lineage(&sideways, &[], &lineage),
            check_lineage(&[], &late, &lineage),
        ]
        .concat()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
        assert!(text.contains("[key-lineage] key k: a was acknowledged in shard 1"), "{text}");
        assert!(text.contains("went to shard 0, not a descendant"), "{text}");
        assert!(text.contains("went to shard 2, not a descendant"), "{text}");
        assert!(text.contains("[seal] shard 0 closed at 4905 yet holds x"), "{text}");
    }
}
