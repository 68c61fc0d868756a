//! Metadata: reads see every change acknowledged before they began, and nothing else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Outcome, Violation};

/// One metadata operation: a versioned write of one tag, or a read of every tag.
///
/// Each tag key has a single writer that writes versions 1, 2, 3… in order, so "the newest
/// version acknowledged before a read began" is well defined and the read must show it or a
/// newer one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
pub fn check_metadata(history: &[MetaOperation]) -> Vec<Violation> {
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
            violations.push(Violation::new(
                "metadata-status",
                format!(
                    "a read through node {} at {} us saw the stream CREATING after it was ACTIVE",
                    read.node, read.invoked_us
                ),
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
                    violations.push(Violation::new("stale-metadata", format!(
                        "stale metadata read: {key}={version} was acknowledged through node {} at {} us, yet a read through node {} begun at {} us saw {key}={}",
                        write.node,
                        write.completed_us,
                        read.node,
                        read.invoked_us,
                        seen.map_or("nothing".to_string(), |seen| seen.to_string())
                    )));
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
                    violations.push(Violation::new("metadata-phantom", format!(
                        "a read through node {} at {} us saw {key}={seen}, which was refused, never written, or not yet invoked",
                        read.node, read.invoked_us
                    )));
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ok;

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
        assert_eq!(check_metadata(&history), Vec::new());
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
        let text = violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert_eq!(text.matches("stale metadata read: a=2").count(), 2, "{text}");
        assert!(text.contains("saw b=1"), "{text}");
        assert!(text.contains("saw a=3"), "{text}");
        assert!(text.contains("saw a=4"), "{text}");
        assert!(text.contains("CREATING after it was ACTIVE"), "{text}");
        assert_eq!(violations.len(), 6, "{text}");
    }
}
