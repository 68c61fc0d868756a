//! The puts against the final state: order, duplicates, phantoms, lost and misplaced
//! acknowledged writes, retention, and linearizable appends per shard.

use std::collections::BTreeMap;

use crate::{sequence_less, Expiry, Outcome, Put, ShardRead, Violation};

/// Checks the puts against the final reads of every shard.
pub fn check_puts(puts: &[Put], reads: &[ShardRead], expiry: &Expiry) -> Vec<Violation> {
    let mut violations = Vec::new();
    // Per value: its attempts that may have been applied, and whether one was refused.
    let mut attempts: BTreeMap<&str, (usize, Option<&str>)> = BTreeMap::new();
    for put in puts {
        let entry = attempts.entry(put.value.as_str()).or_default();
        match &put.outcome {
            Outcome::Fail(reason) => entry.1 = Some(reason.as_str()),
            _ => entry.0 += 1,
        }
    }
    let mut read_at: BTreeMap<&str, Vec<(u32, &str)>> = BTreeMap::new();
    for read in reads {
        for pair in read.records.windows(2) {
            if !sequence_less(&pair[0].sequence, &pair[1].sequence) {
                violations.push(Violation::new(
                    "order",
                    format!(
                        "shard {}: sequence {} ({}) is not below the next one {} ({})",
                        read.shard, pair[0].sequence, pair[0].value, pair[1].sequence, pair[1].value
                    ),
                ));
            }
        }
        for record in &read.records {
            let (value, sequence) = (record.value.as_str(), record.sequence.as_str());
            let places = read_at.entry(value).or_default();
            places.push((read.shard, sequence));
            match attempts.get(value) {
                None => violations.push(Violation::new(
                    "phantom",
                    format!("shard {}: value {value} at {sequence} was never written", read.shard),
                )),
                Some((possible, refused)) => {
                    if *possible == 0 {
                        violations.push(Violation::new(
                            "refused",
                            format!(
                                "value {value} was refused ({}) but is read at {sequence}",
                                refused.unwrap_or_default()
                            ),
                        ));
                    } else if places.len() > *possible {
                        violations.push(Violation::new(
                            "duplicate",
                            format!(
                                "value {value} is stored {} times ({places:?}, as (shard, sequence)) but was attempted {possible} time(s)",
                                places.len()
                            ),
                        ));
                    }
                }
            }
        }
    }
    for put in puts {
        let Outcome::Ok { shard, sequence } = &put.outcome else { continue };
        let places = read_at.get(put.value.as_str());
        let found =
            places.is_some_and(|places| places.iter().any(|(at_shard, at)| at_shard == shard && at == sequence));
        if found {
            continue;
        }
        match places {
            // Expired where it was acknowledged (another attempt of the same value, stored
            // elsewhere, may still be read).
            _ if expiry.expired(*shard, sequence) => {
                if put.invoked_us + expiry.retention_us > expiry.end_us {
                    violations.push(Violation::new(
                        "early-expiry",
                        format!(
                            "{} (shard {shard}, sequence {sequence}) expired too early: invoked at {} µs, the run ended at {} µs, retention is {} µs",
                            put.value, put.invoked_us, expiry.end_us, expiry.retention_us
                        ),
                    ));
                }
            }
            Some(places) if !places.is_empty() => violations.push(Violation::new(
                "lost",
                format!(
                    "{} acknowledged at shard {shard} sequence {sequence} but read at {places:?} (shard, sequence)",
                    put.value
                ),
            )),
            _ => violations.push(Violation::new(
                "lost",
                format!(
                    "lost acknowledged write: {} (client {}, shard {shard}, sequence {sequence}, acknowledged at {} µs)",
                    put.value, put.client, put.completed_us
                ),
            )),
        }
    }
    violations.extend(check_linearizable(puts));
    violations
}

/// Acknowledged appends are linearizable per shard, in real time: every put invoked after
/// another completed has a larger sequence number.
fn check_linearizable(puts: &[Put]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut acknowledged: BTreeMap<u32, Vec<(&Put, &str)>> = BTreeMap::new();
    for put in puts {
        if let Outcome::Ok { shard, sequence } = &put.outcome {
            acknowledged.entry(*shard).or_default().push((put, sequence.as_str()));
        }
    }
    for (shard, mut by_completion) in acknowledged {
        by_completion.sort_by_key(|(put, _)| put.completed_us);
        // Sweep by invocation time, keeping the largest sequence among puts completed before.
        let mut by_invocation = by_completion.clone();
        by_invocation.sort_by_key(|(put, _)| put.invoked_us);
        let mut completed_index = 0;
        let mut highest: Option<(&Put, &str)> = None;
        for (put, sequence) in by_invocation {
            while completed_index < by_completion.len()
                && by_completion[completed_index].0.completed_us < put.invoked_us
            {
                let candidate = by_completion[completed_index];
                if highest.is_none_or(|(_, best)| sequence_less(best, candidate.1)) {
                    highest = Some(candidate);
                }
                completed_index += 1;
            }
            if let Some((earlier, earlier_sequence)) = highest {
                if !sequence_less(earlier_sequence, sequence) {
                    violations.push(Violation::new(
                        "linearizable",
                        format!(
                            "shard {shard}: {} completed before {} began, yet its sequence {earlier_sequence} is not below {sequence}",
                            earlier.value, put.value
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

    fn names(violations: &[Violation]) -> String {
        violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn a_valid_history_passes() {
        let puts = vec![
            put("a", 0, 10, ok(0, "491")),
            put("b", 20, 30, ok(0, "492")),
            put("c", 0, 40, Outcome::Info("timeout".into())),
            put("d", 0, 5, Outcome::Fail("bad".into())),
        ];
        let reads = vec![read(0, &[("491", "a"), ("492", "b"), ("493", "c")])];
        assert_eq!(check_puts(&puts, &reads, &Expiry::default()), Vec::new());
    }

    #[test]
    fn each_violation_is_found() {
        let puts = vec![
            put("a", 0, 10, ok(0, "492")),
            put("b", 20, 30, ok(0, "491")),
            put("lost", 0, 1, ok(1, "495")),
            put("refused", 0, 1, Outcome::Fail("bad".into())),
        ];
        let reads = vec![read(0, &[("492", "a"), ("491", "b"), ("493", "refused"), ("494", "ghost"), ("496", "a")])];
        let violations = check_puts(&puts, &reads, &Expiry::default());
        let text = names(&violations);
        assert!(text.contains("[order] shard 0: sequence 492 (a) is not below the next one"), "{text}");
        assert!(text.contains("[duplicate] value a is stored 2 times"), "{text}");
        assert!(text.contains("[phantom] shard 0: value ghost"), "{text}");
        assert!(text.contains("[refused] value refused"), "{text}");
        assert!(text.contains("[lost] lost acknowledged write: lost"), "{text}");
        assert!(text.contains("[linearizable]"), "{text}");
    }

    #[test]
    fn a_retried_put_may_be_stored_twice_but_not_three_times() {
        let puts = vec![
            put("a", 0, 10, Outcome::Info("timed out".into())),
            put("a", 11, 20, ok(0, "493")),
            put("b", 21, 30, ok(0, "494")),
        ];
        let twice = vec![read(0, &[("491", "a"), ("493", "a"), ("494", "b")])];
        assert_eq!(check_puts(&puts, &twice, &Expiry::default()), Vec::new());
        let thrice = vec![read(0, &[("491", "a"), ("492", "a"), ("493", "a"), ("494", "b")])];
        let text = names(&check_puts(&puts, &thrice, &Expiry::default()));
        assert!(text.contains("[duplicate] value a is stored 3 times"), "{text}");
        // The acknowledged attempt must be where it was acknowledged, even with a copy elsewhere.
        let moved = vec![read(0, &[("491", "a"), ("494", "b")])];
        let text = names(&check_puts(&puts, &moved, &Expiry::default()));
        assert!(text.contains("[lost] a acknowledged at shard 0 sequence 493 but read at [(0, \"491\")]"), "{text}");
    }

    #[test]
    fn expired_records_may_be_missing_but_never_expire_early() {
        let puts = vec![
            put("old", 0, 10, ok(0, "491")),
            put("kept", 20, 30, ok(0, "492")),
            put("young", 900, 910, ok(0, "493")),
            put("gone-shard", 0, 10, ok(1, "501")),
        ];
        let reads = vec![read(0, &[("492", "kept")])];
        let expiry = Expiry {
            retention_us: 500,
            end_us: 1_000,
            trimmed: BTreeMap::from([(0, Some("492".to_string())), (1, None)]),
        };
        // "old" is below the trim point and old enough; shard 1 expired whole.
        assert_eq!(check_puts(&puts[..2], &reads, &expiry), Vec::new());
        let text = names(&check_puts(&puts, &reads, &expiry));
        assert!(text.contains("lost acknowledged write: young"), "{text}");
        assert!(!text.contains("gone-shard"), "{text}");
        // A trim past a record invoked less than a retention period before the end is early.
        let early = Expiry { trimmed: BTreeMap::from([(0, Some("494".to_string()))]), ..expiry };
        let text = names(&check_puts(&puts[..3], &[read(0, &[])], &early));
        assert!(text.contains("[early-expiry] young (shard 0, sequence 493) expired too early"), "{text}");
        assert!(!text.contains("old (shard"), "{text}");
    }
    #[test]
    fn a_retry_that_expired_where_it_was_acknowledged_is_not_lost() {
        // The first attempt's outcome was unknown and it landed in shard 0; the retry was
        // acknowledged in shard 1 (after a reshard) and expired there.
        let puts = vec![put("v", 0, 10, crate::Outcome::Info("unknown".into())), put("v", 20, 30, ok(1, "601"))];
        let reads = vec![read(0, &[("491", "v")]), read(1, &[])];
        let expiry =
            Expiry { retention_us: 500, end_us: 1_000, trimmed: BTreeMap::from([(1, Some("602".to_string()))]) };
        assert_eq!(check_puts(&puts, &reads, &expiry), Vec::new());
        let kept = Expiry { trimmed: BTreeMap::new(), ..expiry };
        let text = names(&check_puts(&puts, &reads, &kept));
        assert!(text.contains("[lost] v acknowledged at shard 1 sequence 601 but read at [(0, \"491\")]"), "{text}");
    }
}
