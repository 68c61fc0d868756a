//! The checker: what a history of puts and a final full read must satisfy.
//!
//! - sequence numbers strictly increase within each shard, in read order;
//! - no value is read twice (the workload never retries a value);
//! - every value read was written, and no write that failed definitely is read;
//! - every acknowledged write is read, in the shard and at the sequence number it was
//!   acknowledged with (no lost acknowledged writes);
//! - appends are linearizable per shard: if one acknowledged put completed before another
//!   began, its sequence number is smaller.

use std::collections::BTreeMap;

/// What a put returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: the record is durable at this shard and sequence number.
    Ok { shard: u32, sequence: String },
    /// Refused: the record was definitely not written.
    Fail(String),
    /// Unknown: the record may or may not have been written.
    Info(String),
}

/// One put, from invocation to completion.
#[derive(Debug, Clone)]
pub struct Operation {
    pub client: u32,
    pub value: String,
    pub invoked_us: u64,
    pub completed_us: u64,
    pub outcome: Outcome,
}

/// Everything read from one shard, in order: (sequence number, value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardRead {
    pub shard: u32,
    pub records: Vec<(String, String)>,
}

fn sequence_less(left: &str, right: &str) -> bool {
    (left.len(), left) < (right.len(), right)
}

/// Returns every violation found (empty when the history is valid).
pub fn check(history: &[Operation], reads: &[ShardRead]) -> Vec<String> {
    let mut violations = Vec::new();
    let invoked: BTreeMap<&str, &Operation> =
        history.iter().map(|operation| (operation.value.as_str(), operation)).collect();
    let mut read_at: BTreeMap<&str, (u32, &str)> = BTreeMap::new();
    for read in reads {
        for pair in read.records.windows(2) {
            if !sequence_less(&pair[0].0, &pair[1].0) {
                violations.push(format!(
                    "shard {}: sequence {} ({}) is not below the next one {} ({})",
                    read.shard, pair[0].0, pair[0].1, pair[1].0, pair[1].1
                ));
            }
        }
        for (sequence, value) in &read.records {
            if let Some((shard, first)) = read_at.insert(value.as_str(), (read.shard, sequence.as_str())) {
                violations.push(format!(
                    "value {value} read twice: shard {shard} at {first} and shard {} at {sequence}",
                    read.shard
                ));
            }
            match invoked.get(value.as_str()) {
                None => violations.push(format!("shard {}: value {value} at {sequence} was never written", read.shard)),
                Some(operation) => {
                    if let Outcome::Fail(reason) = &operation.outcome {
                        violations.push(format!("value {value} was refused ({reason}) but is read at {sequence}"));
                    }
                }
            }
        }
    }
    for operation in history {
        if let Outcome::Ok { shard, sequence } = &operation.outcome {
            match read_at.get(operation.value.as_str()) {
                None => violations.push(format!(
                    "lost acknowledged write: {} (client {}, shard {shard}, sequence {sequence})",
                    operation.value, operation.client
                )),
                Some((read_shard, read_sequence)) => {
                    if read_shard != shard || read_sequence != sequence {
                        violations.push(format!(
                            "{} acknowledged at shard {shard} sequence {sequence} but read at shard {read_shard} sequence {read_sequence}",
                            operation.value
                        ));
                    }
                }
            }
        }
    }
    // Linearizability of acknowledged appends per shard, in real (virtual) time.
    let mut acknowledged: BTreeMap<u32, Vec<(&Operation, &str)>> = BTreeMap::new();
    for operation in history {
        if let Outcome::Ok { shard, sequence } = &operation.outcome {
            acknowledged.entry(*shard).or_default().push((operation, sequence.as_str()));
        }
    }
    for (shard, mut operations) in acknowledged {
        operations.sort_by_key(|(operation, _)| operation.completed_us);
        // For each op, every op invoked after it completed must have a larger sequence.
        // Sweep by invocation time, keeping the largest sequence among ops completed before.
        let mut by_invocation = operations.clone();
        by_invocation.sort_by_key(|(operation, _)| operation.invoked_us);
        let mut completed_index = 0;
        let mut highest: Option<(&Operation, &str)> = None;
        for (operation, sequence) in by_invocation {
            while completed_index < operations.len()
                && operations[completed_index].0.completed_us < operation.invoked_us
            {
                let candidate = operations[completed_index];
                if highest.is_none_or(|(_, best)| sequence_less(best, candidate.1)) {
                    highest = Some(candidate);
                }
                completed_index += 1;
            }
            if let Some((earlier, earlier_sequence)) = highest {
                if !sequence_less(earlier_sequence, sequence) {
                    violations.push(format!(
                        "shard {shard}: {} completed before {} began, yet its sequence {earlier_sequence} is not below {sequence}",
                        earlier.value, operation.value
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

    fn put(value: &str, invoked_us: u64, completed_us: u64, outcome: Outcome) -> Operation {
        Operation { client: 0, value: value.into(), invoked_us, completed_us, outcome }
    }

    fn ok(shard: u32, sequence: &str) -> Outcome {
        Outcome::Ok { shard, sequence: sequence.into() }
    }

    fn read(shard: u32, records: &[(&str, &str)]) -> ShardRead {
        ShardRead { shard, records: records.iter().map(|(s, v)| (s.to_string(), v.to_string())).collect() }
    }

    #[test]
    fn a_valid_history_passes() {
        let history = vec![
            put("a", 0, 10, ok(0, "491")),
            put("b", 20, 30, ok(0, "492")),
            put("c", 0, 40, Outcome::Info("timeout".into())),
            put("d", 0, 5, Outcome::Fail("bad".into())),
        ];
        let reads = vec![read(0, &[("491", "a"), ("492", "b"), ("493", "c")])];
        assert_eq!(check(&history, &reads), Vec::<String>::new());
    }

    #[test]
    fn each_violation_is_found() {
        let history = vec![
            put("a", 0, 10, ok(0, "492")),
            put("b", 20, 30, ok(0, "491")),
            put("lost", 0, 1, ok(1, "495")),
            put("refused", 0, 1, Outcome::Fail("bad".into())),
        ];
        let reads = vec![read(0, &[("492", "a"), ("491", "b"), ("493", "refused"), ("494", "ghost"), ("496", "a")])];
        let violations = check(&history, &reads);
        let text = violations.join("\n");
        assert!(text.contains("is not below the next one"), "{text}");
        assert!(text.contains("read twice"), "{text}");
        assert!(text.contains("never written"), "{text}");
        assert!(text.contains("was refused"), "{text}");
        assert!(text.contains("lost acknowledged write: lost"), "{text}");
        assert!(text.contains("completed before"), "{text}");
    }
}
