//! The checker: what a history of puts and a final full read must satisfy.
//!
//! - sequence numbers strictly increase within each shard, in read order;
//! - no value is read twice (the workload never retries a value);
//! - every value read was written, and no write that failed definitely is read;
//! - every acknowledged write is read, in the shard and at the sequence number it was
//!   acknowledged with (no lost acknowledged writes), unless retention expired it: it lies below
//!   its shard's trim point (or its closed shard expired whole), and it was invoked at least a
//!   retention period before the end of the run — an earlier trim is a violation;
//! - appends are linearizable per shard: if one acknowledged put completed before another
//!   began, its sequence number is smaller;
//! - metadata reads see every change acknowledged before they began ([`check_metadata`]), and
//!   nothing that was never written or not yet invoked when they completed;
//! - across resharding ([`check_lineage`]): a closed shard holds nothing past its ending
//!   sequence number, and for every partition key, a put acknowledged before another began is
//!   in the same shard or in an ancestor of the other's shard (parents before children).

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
    pub key: String,
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

/// What retention may have removed by the end of the run.
#[derive(Debug, Clone, Default)]
pub struct Expiry {
    pub retention_us: u64,
    /// When the final reads ended (µs since the workload started).
    pub end_us: u64,
    /// Per shard, the lowest trim point among its replicas (rendered sequence; records below it
    /// expired), or `None` for a closed shard that expired whole.
    pub trimmed: BTreeMap<u32, Option<String>>,
}

impl Expiry {
    /// Whether an acknowledged record at `shard`/`sequence` may be missing because it expired.
    fn expired(&self, shard: u32, sequence: &str) -> bool {
        match self.trimmed.get(&shard) {
            Some(None) => true,
            Some(Some(trim)) => sequence_less(sequence, trim),
            None => false,
        }
    }
}

fn sequence_less(left: &str, right: &str) -> bool {
    (left.len(), left) < (right.len(), right)
}

/// Returns every violation found (empty when the history is valid).
pub fn check(history: &[Operation], reads: &[ShardRead], expiry: &Expiry) -> Vec<String> {
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
                None if expiry.expired(*shard, sequence) => {
                    if operation.invoked_us + expiry.retention_us > expiry.end_us {
                        violations.push(format!(
                            "{} (shard {shard}, sequence {sequence}) expired too early: invoked at {} µs, the run ended at {} µs, retention is {} µs",
                            operation.value, operation.invoked_us, expiry.end_us, expiry.retention_us
                        ));
                    }
                }
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

/// The shards' lineage after the run: each shard's parents, and each closed shard's ending
/// sequence number (rendered).
#[derive(Debug, Clone, Default)]
pub struct Lineage {
    pub parents: BTreeMap<u32, Vec<u32>>,
    pub ending: BTreeMap<u32, String>,
}

impl Lineage {
    fn is_ancestor(&self, ancestor: u32, shard: u32) -> bool {
        let mut frontier = vec![shard];
        let mut seen = std::collections::BTreeSet::new();
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

/// Checks what resharding must keep: closed shards end where their metadata says, and per
/// partition key, acknowledged puts follow the lineage in real time.
pub fn check_lineage(history: &[Operation], reads: &[ShardRead], lineage: &Lineage) -> Vec<String> {
    let mut violations = Vec::new();
    for read in reads {
        let Some(ending) = lineage.ending.get(&read.shard) else { continue };
        for (sequence, value) in &read.records {
            if sequence_less(ending, sequence) {
                violations.push(format!(
                    "shard {} closed at {ending} yet holds {value} at {sequence}: a parent took a write after its seal",
                    read.shard
                ));
            }
        }
    }
    let mut by_key: BTreeMap<&str, Vec<(&Operation, u32)>> = BTreeMap::new();
    for operation in history {
        if let Outcome::Ok { shard, .. } = &operation.outcome {
            by_key.entry(operation.key.as_str()).or_default().push((operation, *shard));
        }
    }
    for (key, operations) in by_key {
        for (earlier, earlier_shard) in &operations {
            for (later, later_shard) in &operations {
                let before = earlier.completed_us < later.invoked_us;
                if before && earlier_shard != later_shard && !lineage.is_ancestor(*earlier_shard, *later_shard) {
                    violations.push(format!(
                        "key {key}: {} was acknowledged in shard {earlier_shard} before {} began, which went to shard {later_shard}, not a descendant",
                        earlier.value, later.value
                    ));
                }
            }
        }
    }
    violations
}

/// One metadata operation: a versioned write of one tag, or a read of every tag.
///
/// Each tag key has a single writer that writes versions 1, 2, 3… in order, so "the newest
/// version acknowledged before a read began" is well defined and the read must show it or a
/// newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaAction {
    Write {
        key: String,
        version: u64,
    },
    /// The tags read (key → version) and whether the stream had been ACTIVE (ACTIVE or
    /// UPDATING, not CREATING), when the read succeeded.
    Read {
        observed: Option<(BTreeMap<String, u64>, bool)>,
    },
}

/// One metadata operation, from invocation to completion.
#[derive(Debug, Clone)]
pub struct MetaOperation {
    pub client: u32,
    pub node: u64,
    pub invoked_us: u64,
    pub completed_us: u64,
    pub action: MetaAction,
    /// Whether it succeeded, failed definitely, or has an unknown outcome (writes only).
    pub outcome: Outcome,
}

/// Checks that every successful metadata read reflects every write acknowledged before it began
/// (read-your-writes and monotonic reads, across nodes), shows only versions that were written
/// and already invoked, and never reports the stream CREATING again (the workload starts after
/// it is ACTIVE).
pub fn check_metadata(history: &[MetaOperation]) -> Vec<String> {
    let mut violations = Vec::new();
    let writes: Vec<(&MetaOperation, &str, u64)> = history
        .iter()
        .filter_map(|operation| match &operation.action {
            MetaAction::Write { key, version } => Some((operation, key.as_str(), *version)),
            MetaAction::Read { .. } => None,
        })
        .collect();
    for read in history {
        let MetaAction::Read { observed: Some((tags, active)) } = &read.action else { continue };
        if !active {
            violations.push(format!(
                "a read through node {} at {} us saw the stream CREATING after it was ACTIVE",
                read.node, read.invoked_us
            ));
        }
        let keys: std::collections::BTreeSet<&str> =
            writes.iter().map(|(_, key, _)| *key).chain(tags.keys().map(String::as_str)).collect();
        for key in keys {
            let acknowledged_before = writes
                .iter()
                .filter(|(write, written, _)| {
                    *written == key
                        && matches!(write.outcome, Outcome::Ok { .. })
                        && write.completed_us < read.invoked_us
                })
                .map(|(write, _, version)| (*version, *write))
                .max_by_key(|(version, _)| *version);
            let seen = tags.get(key).copied();
            if let Some((version, write)) = acknowledged_before {
                if seen.is_none_or(|seen| seen < version) {
                    violations.push(format!(
                        "stale metadata read: {key}={version} was acknowledged through node {} at {} us, yet a read through node {} begun at {} us saw {key}={}",
                        write.node,
                        write.completed_us,
                        read.node,
                        read.invoked_us,
                        seen.map_or("nothing".to_string(), |seen| seen.to_string())
                    ));
                }
            }
            if let Some(seen) = seen {
                let possible = writes.iter().any(|(write, written, version)| {
                    *written == key
                        && *version == seen
                        && !matches!(write.outcome, Outcome::Fail(_))
                        && write.invoked_us <= read.completed_us
                });
                if !possible {
                    violations.push(format!(
                        "a read through node {} at {} us saw {key}={seen}, which was refused, never written, or not yet invoked",
                        read.node, read.invoked_us
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
        Operation { client: 0, value: value.into(), key: "k".into(), invoked_us, completed_us, outcome }
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
        assert_eq!(check(&history, &reads, &Expiry::default()), Vec::<String>::new());
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
        let violations = check(&history, &reads, &Expiry::default());
        let text = violations.join("\n");
        assert!(text.contains("is not below the next one"), "{text}");
        assert!(text.contains("read twice"), "{text}");
        assert!(text.contains("never written"), "{text}");
        assert!(text.contains("was refused"), "{text}");
        assert!(text.contains("lost acknowledged write: lost"), "{text}");
        assert!(text.contains("completed before"), "{text}");
    }

    #[test]
    fn expired_records_may_be_missing_but_never_expire_early() {
        let history = vec![
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
        let violations = check(&history[..2], &reads, &expiry);
        assert_eq!(violations, Vec::<String>::new());
        let violations = check(&history, &reads, &expiry).join("\n");
        assert!(violations.contains("lost acknowledged write: young"), "{violations}");
        assert!(!violations.contains("gone-shard"), "{violations}");
        // A trim past a record invoked less than a retention period before the end is early.
        let early = Expiry { trimmed: BTreeMap::from([(0, Some("494".to_string()))]), ..expiry };
        let violations = check(&history[..3], &[read(0, &[])], &early).join("\n");
        assert!(violations.contains("young (shard 0, sequence 493) expired too early"), "{violations}");
        assert!(!violations.contains("old (shard"), "{violations}");
    }

    #[test]
    fn puts_follow_the_lineage_per_key_and_closed_shards_end_where_sealed() {
        // Shard 0 split into 1 and 2; shard 1 later merged with shard 3 into 4.
        let lineage = Lineage {
            parents: BTreeMap::from([(1, vec![0]), (2, vec![0]), (4, vec![1, 3])]),
            ending: BTreeMap::from([(0, "4905".to_string())]),
        };
        let history =
            vec![put("a", 0, 10, ok(0, "4901")), put("b", 20, 30, ok(1, "4911")), put("c", 40, 50, ok(4, "4941"))];
        let reads = vec![read(0, &[("4901", "a")]), read(1, &[("4911", "b")]), read(4, &[("4941", "c")])];
        assert_eq!(check_lineage(&history, &reads, &lineage), Vec::<String>::new());

        let backwards = vec![put("a", 0, 10, ok(1, "4911")), put("b", 20, 30, ok(0, "4904"))];
        let sideways = vec![put("a", 0, 10, ok(1, "4911")), put("b", 20, 30, ok(2, "4921"))];
        let late = vec![read(0, &[("4906", "x")])];
        let text = [
            check_lineage(&backwards, &[], &lineage),
            check_lineage(&sideways, &[], &lineage),
            check_lineage(&[], &late, &lineage),
        ]
        .concat()
        .join("\n");
        assert!(text.contains("went to shard 0, not a descendant"), "{text}");
        assert!(text.contains("went to shard 2, not a descendant"), "{text}");
        assert!(text.contains("closed at 4905 yet holds x"), "{text}");
    }

    fn meta(invoked_us: u64, completed_us: u64, action: MetaAction, outcome: Outcome) -> MetaOperation {
        MetaOperation { client: 0, node: 1, invoked_us, completed_us, action, outcome }
    }

    fn write(key: &str, version: u64) -> MetaAction {
        MetaAction::Write { key: key.into(), version }
    }

    fn read_tags(tags: &[(&str, u64)]) -> MetaAction {
        MetaAction::Read {
            observed: Some((tags.iter().map(|(key, version)| (key.to_string(), *version)).collect(), true)),
        }
    }

    #[test]
    fn metadata_reads_that_see_acknowledged_changes_pass() {
        let history = vec![
            meta(0, 10, write("a", 1), ok(0, "")),
            meta(20, 30, read_tags(&[("a", 1)]), ok(0, "")),
            // Concurrent with the write of version 2: either version may be seen.
            meta(40, 60, write("a", 2), Outcome::Info("timed out".into())),
            meta(50, 55, read_tags(&[("a", 1)]), ok(0, "")),
            meta(70, 80, read_tags(&[("a", 2)]), ok(0, "")),
            meta(90, 95, MetaAction::Read { observed: None }, Outcome::Fail("unavailable".into())),
        ];
        assert_eq!(check_metadata(&history), Vec::<String>::new());
    }

    #[test]
    fn stale_future_and_refused_metadata_reads_are_found() {
        let history = vec![
            meta(0, 10, write("a", 1), ok(0, "")),
            meta(20, 30, write("a", 2), ok(0, "")),
            meta(40, 50, read_tags(&[("a", 1)]), ok(0, "")),
            meta(40, 50, read_tags(&[]), ok(0, "")),
            meta(60, 70, read_tags(&[("a", 2), ("b", 1)]), ok(0, "")),
            meta(100, 110, write("a", 3), Outcome::Fail("refused".into())),
            meta(120, 130, read_tags(&[("a", 3)]), ok(0, "")),
            meta(140, 150, read_tags(&[("a", 4)]), ok(0, "")),
            meta(155, 160, write("a", 4), ok(0, "")),
            meta(
                170,
                180,
                MetaAction::Read { observed: Some((BTreeMap::from([("a".to_string(), 4)]), false)) },
                ok(0, ""),
            ),
        ];
        let violations = check_metadata(&history);
        let text = violations.join("\n");
        assert_eq!(text.matches("stale metadata read: a=2").count(), 2, "{text}");
        assert!(text.contains("saw b=1"), "{text}");
        assert!(text.contains("saw a=3"), "{text}");
        assert!(text.contains("saw a=4"), "{text}");
        assert!(text.contains("CREATING after it was ACTIVE"), "{text}");
        assert_eq!(violations.len(), 6, "{text}");
    }
}
