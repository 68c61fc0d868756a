//! Reads during the run: what each iterator chain returned, against the final state of its
//! shard. A chain is one reader following one shard: a GetShardIterator, then GetRecords pages
//! each continuing where the previous one ended.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{sequence_less, FinalState, Outcome, Put, Record, ShardRead, Violation};

/// Where an iterator starts (Kinesis's five iterator types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    AtSequence(String),
    AfterSequence(String),
    /// Milliseconds since the Unix epoch.
    AtTimestamp(i64),
}

/// One GetRecords call of a chain that succeeded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page {
    pub invoked_us: u64,
    pub completed_us: u64,
    pub records: Vec<Record>,
    /// The page says it reached the shard's newest record: fewer records than asked for and
    /// nothing behind (`MillisBehindLatest` 0), or the end of a closed shard.
    pub at_tip: bool,
    /// The page ended the shard: it is closed and nothing follows (no next iterator).
    #[serde(default)]
    pub shard_end: bool,
}

/// One reader's walk along one shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadChain {
    pub client: u32,
    pub shard: u32,
    pub start: StartPosition,
    /// When the GetShardIterator call was invoked and completed.
    pub iterator_invoked_us: u64,
    pub iterator_completed_us: u64,
    pub pages: Vec<Page>,
    /// The shard whose end the reader reached just before, if it came here from there (a
    /// consumer following the lineage reads a child from `TRIM_HORIZON` once its parent ended).
    #[serde(default)]
    pub from_parent: Option<u32>,
}

/// The final records of one shard, indexed by sequence number.
struct Shard<'a> {
    records: &'a [Record],
    at: BTreeMap<&'a str, usize>,
}

/// Checks every chain against the final state: it read only records the shard keeps, each one
/// the next after the previous, started where its iterator type says, whenever it reported the
/// tip held every put acknowledged before the page began, ended a closed shard only after its
/// last record (`read-end`), and went on from a parent only into one of its children
/// (`read-lineage`).
pub fn check_reads(chains: &[ReadChain], puts: &[Put], end: &FinalState) -> Vec<Violation> {
    let mut violations = Vec::new();
    let shards: BTreeMap<u32, Shard> = end
        .reads
        .iter()
        .map(|read: &ShardRead| {
            let at = read.records.iter().enumerate().map(|(index, record)| (record.sequence.as_str(), index)).collect();
            (read.shard, Shard { records: &read.records, at })
        })
        .collect();
    let mut acknowledged: BTreeMap<u32, Vec<(&Put, &str)>> = BTreeMap::new();
    let mut first_invoked: BTreeMap<&str, u64> = BTreeMap::new();
    for put in puts {
        let earliest = first_invoked.entry(put.value.as_str()).or_insert(put.invoked_us);
        *earliest = (*earliest).min(put.invoked_us);
        if let Outcome::Ok { shard, sequence } = &put.outcome {
            acknowledged.entry(*shard).or_default().push((put, sequence.as_str()));
        }
    }
    let no_puts = Vec::new();
    for chain in chains {
        let shard_number = chain.shard;
        if let Some(parent) = chain.from_parent {
            if !end.lineage.parents.get(&shard_number).is_some_and(|parents| parents.contains(&parent)) {
                violations.push(Violation::new(
                    "read-lineage",
                    format!(
                        "client {} went on from the end of shard {parent} to shard {shard_number}, which is not its child",
                        chain.client
                    ),
                ));
            }
        }
        if end.expiry.trimmed.get(&shard_number) == Some(&None) {
            continue;
        }
        let Some(shard) = shards.get(&shard_number) else { continue };
        let trimmed = end.expiry.trimmed.contains_key(&shard_number);
        let expired = |sequence: &str| end.expiry.expired(shard_number, sequence);
        let arrival = |sequence: &str| shard.at.get(sequence).map(|index| shard.records[*index].arrival_ms);
        let label = format!("client {} on shard {shard_number} from {:?}", chain.client, chain.start);
        // Whether a record at `sequence` (acknowledged for `put`) lies at or after the start.
        let admits = |sequence: &str, put: &Put| match &chain.start {
            StartPosition::TrimHorizon => true,
            StartPosition::AtSequence(start) => !sequence_less(sequence, start),
            StartPosition::AfterSequence(start) => sequence_less(start, sequence),
            StartPosition::AtTimestamp(start) => arrival(sequence).is_some_and(|arrival| arrival >= *start),
            StartPosition::Latest => put.invoked_us > chain.iterator_completed_us,
        };
        let mut previous: Option<&Record> = None;
        for page in &chain.pages {
            if page.at_tip {
                for (put, sequence) in acknowledged.get(&shard_number).unwrap_or(&no_puts) {
                    if put.completed_us >= page.invoked_us || expired(sequence) {
                        continue;
                    }
                    let after = match previous {
                        Some(previous) => sequence_less(&previous.sequence, sequence),
                        None => admits(sequence, put),
                    };
                    if after && !page.records.iter().any(|record| record.sequence == *sequence) {
                        violations.push(Violation::new(
                            "stale-read",
                            format!(
                                "{label}: a read begun at {} µs reported the tip without {} (sequence {sequence}, acknowledged at {} µs); it returned {:?}",
                                page.invoked_us,
                                put.value,
                                put.completed_us,
                                page.records.iter().map(|record| &record.sequence).collect::<Vec<_>>()
                            ),
                        ));
                    }
                }
            }
            for record in &page.records {
                let sequence = record.sequence.as_str();
                let Some(&index) = shard.at.get(sequence) else {
                    if !expired(sequence) {
                        violations.push(Violation::new(
                            "dirty-read",
                            format!(
                                "{label}: read {} at {sequence} at {} µs, which the shard does not hold at the end",
                                record.value, page.invoked_us
                            ),
                        ));
                    }
                    previous = Some(record);
                    continue;
                };
                let kept = &shard.records[index];
                if kept.value != record.value {
                    violations.push(Violation::new(
                        "dirty-read",
                        format!(
                            "{label}: read {} at {sequence} at {} µs, but the shard holds {} there at the end",
                            record.value, page.invoked_us, kept.value
                        ),
                    ));
                }
                match previous.map(|previous| (previous, shard.at.get(previous.sequence.as_str()))) {
                    Some((_, None)) => {}
                    Some((previous, Some(&before))) => {
                        if index <= before {
                            violations.push(Violation::new(
                                "read-regress",
                                format!(
                                    "{label}: read {} at {sequence} after {} at {}",
                                    record.value, previous.value, previous.sequence
                                ),
                            ));
                        } else if index > before + 1 {
                            let skipped: Vec<&str> =
                                shard.records[before + 1..index].iter().take(3).map(|r| r.value.as_str()).collect();
                            violations.push(Violation::new(
                                "read-skip",
                                format!(
                                    "{label}: read {} at {sequence} right after {} at {}, skipping {} record(s) the shard holds ({skipped:?}…)",
                                    record.value,
                                    previous.value,
                                    previous.sequence,
                                    index - before - 1
                                ),
                            ));
                        }
                    }
                    None => {
                        let first_page = std::ptr::eq(page, &chain.pages[0]);
                        if let Some(message) =
                            wrong_start(chain, shard, index, first_page, trimmed, &first_invoked, puts)
                        {
                            violations.push(Violation::new("read-start", format!("{label}: {message}")));
                        }
                    }
                }
                previous = Some(record);
            }
            if page.shard_end && !trimmed {
                // The shard ended here: nothing it holds may lie after the last record read.
                let last_read = previous.and_then(|record| shard.at.get(record.sequence.as_str()).copied());
                let unread = match (last_read, previous) {
                    (Some(index), _) => shard.records.get(index + 1..).unwrap_or_default(),
                    (None, Some(_)) => &[],
                    // Nothing read at all: only a chain from the start proves the shard empty.
                    (None, None) if chain.start == StartPosition::TrimHorizon => shard.records,
                    (None, None) => &[],
                };
                if let Some(first) = unread.first() {
                    violations.push(Violation::new(
                        "read-end",
                        format!(
                            "{label}: the page begun at {} µs ended the shard, which holds {} more record(s) from {} ({})",
                            page.invoked_us,
                            unread.len(),
                            first.sequence,
                            first.value
                        ),
                    ));
                }
            }
        }
    }
    violations
}

/// Why the chain's first record (at `index` of the final shard, read in the chain's first page
/// or a later one) is not where its iterator type starts, if it is not.
fn wrong_start(
    chain: &ReadChain,
    shard: &Shard,
    index: usize,
    first_page: bool,
    trimmed: bool,
    first_invoked: &BTreeMap<&str, u64>,
    puts: &[Put],
) -> Option<String> {
    let records = shard.records;
    let first = &records[index];
    let expected = match &chain.start {
        // With retention, where the horizon stood when the iterator was used is not known.
        _ if trimmed => return None,
        StartPosition::TrimHorizon => Some(0),
        StartPosition::AtSequence(start) => records.iter().position(|record| !sequence_less(&record.sequence, start)),
        StartPosition::AfterSequence(start) => records.iter().position(|record| sequence_less(start, &record.sequence)),
        StartPosition::AtTimestamp(start) => {
            // Where no record had arrived at or after the timestamp yet, the iterator stands at
            // the tip, and what comes later is read whatever its arrival time (a writer's clock
            // may be behind the reader's): then only no skipped record can be asked for.
            if let Some(skipped) = records[..index].iter().find(|record| record.arrival_ms >= *start) {
                return Some(format!(
                    "started at {} ({}), after {} at {}, which arrived at {} ms, not before {start}",
                    first.sequence, first.value, skipped.value, skipped.sequence, skipped.arrival_ms
                ));
            }
            if first_page && first.arrival_ms < *start {
                return Some(format!(
                    "started at {} ({}), which arrived at {} ms, before {start}, in the first page",
                    first.sequence, first.value, first.arrival_ms
                ));
            }
            return None;
        }
        StartPosition::Latest => {
            // Nothing written after the iterator was made may come before the first record
            // read, and that record may not be one acknowledged before the iterator was asked for.
            if let Some(missed) = records[..index].iter().find(|record| {
                first_invoked.get(record.value.as_str()).is_some_and(|invoked| *invoked > chain.iterator_completed_us)
            }) {
                return Some(format!(
                    "started at {} ({}), after {} at {}, which was put after the LATEST iterator was made",
                    first.sequence, first.value, missed.value, missed.sequence
                ));
            }
            let old = puts.iter().find(|put| {
                put.value == first.value
                    && put.completed_us < chain.iterator_invoked_us
                    && matches!(&put.outcome, Outcome::Ok { sequence, .. } if *sequence == first.sequence)
            });
            return old.map(|put| {
                format!(
                    "started at {} ({}), acknowledged at {} µs, before the LATEST iterator was asked for at {} µs",
                    first.sequence, first.value, put.completed_us, chain.iterator_invoked_us
                )
            });
        }
    };
    match expected {
        Some(expected) if expected != index => Some(format!(
            "started at {} ({}) instead of {} ({})",
            first.sequence, first.value, records[expected].sequence, records[expected].value
        )),
        _ => None,
    }
}

/// Arrival timestamps never decrease along a shard.
pub fn check_timestamps(reads: &[ShardRead]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for read in reads {
        for pair in read.records.windows(2) {
            if pair[1].arrival_ms < pair[0].arrival_ms {
                violations.push(Violation::new(
                    "timestamp-order",
                    format!(
                        "shard {}: {} at {} arrived at {} ms, before {} at {} ({} ms)",
                        read.shard,
                        pair[1].value,
                        pair[1].sequence,
                        pair[1].arrival_ms,
                        pair[0].value,
                        pair[0].sequence,
                        pair[0].arrival_ms
                    ),
                ));
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ok, put, read, record};
    use crate::Expiry;

    fn end(records: &[(&str, &str)]) -> FinalState {
        FinalState { reads: vec![read(0, records)], ..FinalState::default() }
    }

    fn chain(start: StartPosition, pages: Vec<Page>) -> ReadChain {
        ReadChain {
            client: 0,
            shard: 0,
            start,
            iterator_invoked_us: 100,
            iterator_completed_us: 110,
            pages,
            from_parent: None,
        }
    }

    fn page(invoked_us: u64, records: &[(&str, &str)], at_tip: bool) -> Page {
        Page {
            invoked_us,
            completed_us: invoked_us + 5,
            records: records.iter().map(|(sequence, value)| record(sequence, value)).collect(),
            at_tip,
            shard_end: false,
        }
    }

    fn text(violations: &[Violation]) -> String {
        violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    }

    const SHARD: &[(&str, &str)] = &[("11", "a"), ("12", "b"), ("13", "c"), ("14", "d")];

    fn puts() -> Vec<Put> {
        vec![
            put("a", 0, 10, ok(0, "11")),
            put("b", 20, 30, ok(0, "12")),
            put("c", 200, 210, ok(0, "13")),
            put("d", 300, 310, ok(0, "14")),
        ]
    }

    #[test]
    fn chains_that_follow_the_shard_pass() {
        let chains = vec![
            chain(
                StartPosition::TrimHorizon,
                vec![page(120, &[("11", "a"), ("12", "b")], false), page(220, &[("13", "c")], true)],
            ),
            chain(
                StartPosition::AtSequence("12".into()),
                vec![page(400, &[("12", "b"), ("13", "c"), ("14", "d")], true)],
            ),
            chain(StartPosition::AfterSequence("12".into()), vec![page(400, &[("13", "c")], false)]),
            chain(StartPosition::AtTimestamp(13), vec![page(400, &[("13", "c"), ("14", "d")], true)]),
            // A timestamp no record had reached: the tip, then whatever comes (d, arrived at 14).
            chain(StartPosition::AtTimestamp(99), vec![page(250, &[], true), page(400, &[("14", "d")], true)]),
            // LATEST at 110 µs: a and b came before; c was put after.
            chain(StartPosition::Latest, vec![page(150, &[], true), page(250, &[("13", "c")], true)]),
        ];
        assert_eq!(check_reads(&chains, &puts(), &end(SHARD)), Vec::new());
    }

    #[test]
    fn skips_regressions_dirty_and_stale_reads_and_wrong_starts_are_found() {
        let chains = vec![
            chain(StartPosition::TrimHorizon, vec![page(120, &[("11", "a"), ("13", "c")], false)]),
            chain(
                StartPosition::TrimHorizon,
                vec![page(120, &[("11", "a"), ("12", "b")], false), page(130, &[("12", "b")], false)],
            ),
            chain(StartPosition::TrimHorizon, vec![page(120, &[("11", "a"), ("15", "ghost")], false)]),
            // Began at 250 µs, after c was acknowledged at 210, yet reports the tip without it.
            chain(StartPosition::AfterSequence("12".into()), vec![page(250, &[], true)]),
            chain(StartPosition::AtSequence("12".into()), vec![page(400, &[("13", "c")], false)]),
            chain(StartPosition::AtTimestamp(12), vec![page(400, &[("11", "a")], false)]),
            chain(StartPosition::AtTimestamp(12), vec![page(400, &[("13", "c")], false)]),
            chain(StartPosition::Latest, vec![page(400, &[("14", "d")], false)]),
            chain(StartPosition::Latest, vec![page(400, &[("12", "b")], false)]),
        ];
        let violations = check_reads(&chains, &puts(), &end(SHARD));
        let text = text(&violations);
        assert!(
            text.contains("[read-skip] client 0 on shard 0 from TrimHorizon: read c at 13 right after a"),
            "{text}"
        );
        assert!(text.contains("[read-regress]"), "{text}");
        assert!(text.contains("[dirty-read] client 0 on shard 0 from TrimHorizon: read ghost at 15"), "{text}");
        assert!(text.contains("[stale-read]") && text.contains("without c (sequence 13"), "{text}");
        assert!(
            text.contains(
                "[read-start] client 0 on shard 0 from AtSequence(\"12\"): started at 13 (c) instead of 12 (b)"
            ),
            "{text}"
        );
        assert!(text.contains("from AtTimestamp(12): started at 11 (a), which arrived at 11 ms, before 12"), "{text}");
        assert!(text.contains("from AtTimestamp(12): started at 13 (c), after b at 12"), "{text}");
        assert!(text.contains("from Latest: started at 14 (d), after c at 13"), "{text}");
        assert!(text.contains("from Latest: started at 12 (b), acknowledged at 30"), "{text}");
        assert_eq!(violations.len(), 9, "{text}");
    }

    #[test]
    fn expired_records_are_not_held_against_a_reader() {
        let mut state = end(&[("13", "c"), ("14", "d")]);
        state.expiry = Expiry { retention_us: 1, end_us: 1_000, trimmed: BTreeMap::from([(0, Some("13".into()))]) };
        let chains = vec![chain(
            StartPosition::TrimHorizon,
            vec![page(120, &[("11", "a"), ("12", "b")], false), page(400, &[("13", "c"), ("14", "d")], true)],
        )];
        assert_eq!(check_reads(&chains, &puts(), &state), Vec::new());
    }

    #[test]
    fn arrival_timestamps_must_not_go_back() {
        let mut shard = read(0, SHARD);
        assert_eq!(check_timestamps(std::slice::from_ref(&shard)), Vec::new());
        shard.records[2].arrival_ms = 5;
        let text = text(&check_timestamps(&[shard]));
        assert!(text.contains("[timestamp-order] shard 0: c at 13 arrived at 5 ms, before b at 12 (12 ms)"), "{text}");
    }
    #[test]
    fn a_shard_ends_only_after_its_last_record_and_leads_to_its_children() {
        let mut state = end(SHARD);
        state.reads.push(read(1, &[]));
        state.lineage.parents.insert(1, vec![0]);
        let mut ended = page(400, &[("13", "c"), ("14", "d")], true);
        ended.shard_end = true;
        let mut early = page(400, &[("12", "b")], true);
        early.shard_end = true;
        let mut child = chain(StartPosition::TrimHorizon, vec![page(500, &[], true)]);
        child.shard = 1;
        child.from_parent = Some(0);
        let mut stranger = child.clone();
        stranger.shard = 0;
        stranger.from_parent = Some(1);
        let good = vec![chain(StartPosition::AfterSequence("12".into()), vec![ended]), child];
        assert_eq!(check_reads(&good, &puts(), &state), Vec::new());
        let bad = vec![chain(StartPosition::AtSequence("12".into()), vec![early]), stranger];
        let text = text(&check_reads(&bad, &puts(), &state));
        assert!(text.contains("[read-end]") && text.contains("holds 2 more record(s) from 13 (c)"), "{text}");
        assert!(text.contains("[read-lineage] client 0 went on from the end of shard 1 to shard 0"), "{text}");
    }
}
