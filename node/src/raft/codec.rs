//! Conversions between openraft's types and the prost messages in `riffle.peer`.
//!
//! The same `Entry` encoding is used on the wire and inside raft-engine, so a log entry is
//! encoded once. Decoding validates structure: a message missing a required member is
//! [`CodecError`], never a panic.

use std::collections::BTreeSet;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{CommittedLeaderId, EntryPayload};
use riffle_proto::peer as wire;

use super::types::{Entry, LogId, Membership, SnapshotMeta, StoredMembership, TypeConfig, Vote};

/// A message from a peer or from disk did not have the expected shape.
#[derive(Debug, thiserror::Error)]
#[error("malformed {what}: {reason}")]
pub struct CodecError {
    pub what: &'static str,
    pub reason: String,
}

fn missing(what: &'static str, member: &str) -> CodecError {
    CodecError { what, reason: format!("missing {member}") }
}

pub fn vote_to_wire(vote: &Vote) -> wire::Vote {
    wire::Vote {
        leader_id: Some(wire::LeaderId { term: vote.leader_id.term, node_id: vote.leader_id.node_id }),
        committed: vote.committed,
    }
}

pub fn vote_from_wire(vote: Option<wire::Vote>) -> Result<Vote, CodecError> {
    let vote = vote.ok_or_else(|| missing("vote", "vote"))?;
    let leader = vote.leader_id.ok_or_else(|| missing("vote", "leader_id"))?;
    Ok(if vote.committed {
        Vote::new_committed(leader.term, leader.node_id)
    } else {
        Vote::new(leader.term, leader.node_id)
    })
}

pub fn log_id_to_wire(log_id: &LogId) -> wire::LogId {
    wire::LogId {
        leader_id: Some(wire::LeaderId { term: log_id.leader_id.term, node_id: log_id.leader_id.node_id }),
        index: log_id.index,
    }
}

pub fn log_id_from_wire(log_id: wire::LogId) -> Result<LogId, CodecError> {
    let leader = log_id.leader_id.ok_or_else(|| missing("log id", "leader_id"))?;
    Ok(LogId::new(CommittedLeaderId::new(leader.term, leader.node_id), log_id.index))
}

fn optional_log_id_from_wire(log_id: Option<wire::LogId>) -> Result<Option<LogId>, CodecError> {
    log_id.map(log_id_from_wire).transpose()
}

pub fn membership_to_wire(membership: &Membership) -> wire::Membership {
    wire::Membership {
        configs: membership
            .get_joint_config()
            .iter()
            .map(|set| wire::NodeSet { nodes: set.iter().copied().collect() })
            .collect(),
        learners: membership.learner_ids().collect(),
    }
}

pub fn membership_from_wire(membership: wire::Membership) -> Result<Membership, CodecError> {
    let configs: Vec<BTreeSet<u64>> =
        membership.configs.into_iter().map(|set| set.nodes.into_iter().collect()).collect();
    if configs.is_empty() || configs.iter().any(BTreeSet::is_empty) {
        return Err(CodecError { what: "membership", reason: "empty voter set".to_string() });
    }
    let mut nodes: BTreeSet<u64> = configs.iter().flatten().copied().collect();
    nodes.extend(membership.learners);
    Ok(Membership::new(configs, nodes))
}

pub fn stored_membership_to_wire(stored: &StoredMembership) -> wire::StoredMembership {
    wire::StoredMembership {
        log_id: stored.log_id().as_ref().map(log_id_to_wire),
        membership: Some(membership_to_wire(stored.membership())),
    }
}

pub fn stored_membership_from_wire(stored: wire::StoredMembership) -> Result<StoredMembership, CodecError> {
    let log_id = optional_log_id_from_wire(stored.log_id)?;
    let membership = match stored.membership {
        Some(membership) if !membership.configs.is_empty() => membership_from_wire(membership)?,
        _ => Membership::default(),
    };
    Ok(StoredMembership::new(log_id, membership))
}

pub fn entry_to_wire(entry: &Entry) -> wire::Entry {
    let payload = match &entry.payload {
        EntryPayload::Blank => wire::entry::Payload::Blank(wire::Blank {}),
        EntryPayload::Normal(command) => wire::entry::Payload::Normal(command.clone()),
        EntryPayload::Membership(membership) => wire::entry::Payload::Membership(membership_to_wire(membership)),
    };
    wire::Entry { log_id: Some(log_id_to_wire(&entry.log_id)), payload: Some(payload) }
}

pub fn entry_from_wire(entry: wire::Entry) -> Result<Entry, CodecError> {
    let log_id = log_id_from_wire(entry.log_id.ok_or_else(|| missing("entry", "log_id"))?)?;
    let payload = match entry.payload.ok_or_else(|| missing("entry", "payload"))? {
        wire::entry::Payload::Blank(_) => EntryPayload::Blank,
        wire::entry::Payload::Normal(command) => EntryPayload::Normal(command),
        wire::entry::Payload::Membership(membership) => EntryPayload::Membership(membership_from_wire(membership)?),
    };
    Ok(Entry { log_id, payload })
}

pub fn append_request_to_wire(request: &AppendEntriesRequest<TypeConfig>) -> wire::AppendEntriesRequest {
    wire::AppendEntriesRequest {
        vote: Some(vote_to_wire(&request.vote)),
        prev_log_id: request.prev_log_id.as_ref().map(log_id_to_wire),
        entries: request.entries.iter().map(entry_to_wire).collect(),
        leader_commit: request.leader_commit.as_ref().map(log_id_to_wire),
    }
}

pub fn append_request_from_wire(
    request: wire::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>, CodecError> {
    Ok(AppendEntriesRequest {
        vote: vote_from_wire(request.vote)?,
        prev_log_id: optional_log_id_from_wire(request.prev_log_id)?,
        entries: request.entries.into_iter().map(entry_from_wire).collect::<Result<_, _>>()?,
        leader_commit: optional_log_id_from_wire(request.leader_commit)?,
    })
}

pub fn append_response_to_wire(response: &AppendEntriesResponse<u64>) -> wire::AppendEntriesResponse {
    use wire::append_entries_response::Result as Outcome;
    let result = match response {
        AppendEntriesResponse::Success => Outcome::Success(wire::Blank {}),
        AppendEntriesResponse::PartialSuccess(matching) => {
            Outcome::PartialSuccess(wire::PartialSuccess { matching: matching.as_ref().map(log_id_to_wire) })
        }
        AppendEntriesResponse::Conflict => Outcome::Conflict(wire::Blank {}),
        AppendEntriesResponse::HigherVote(vote) => Outcome::HigherVote(vote_to_wire(vote)),
    };
    wire::AppendEntriesResponse { result: Some(result) }
}

pub fn append_response_from_wire(
    response: wire::AppendEntriesResponse,
) -> Result<AppendEntriesResponse<u64>, CodecError> {
    use wire::append_entries_response::Result as Outcome;
    Ok(match response.result.ok_or_else(|| missing("append response", "result"))? {
        Outcome::Success(_) => AppendEntriesResponse::Success,
        Outcome::PartialSuccess(partial) => {
            AppendEntriesResponse::PartialSuccess(optional_log_id_from_wire(partial.matching)?)
        }
        Outcome::Conflict(_) => AppendEntriesResponse::Conflict,
        Outcome::HigherVote(vote) => AppendEntriesResponse::HigherVote(vote_from_wire(Some(vote))?),
    })
}

pub fn vote_request_to_wire(request: &VoteRequest<u64>) -> wire::VoteRequest {
    wire::VoteRequest {
        vote: Some(vote_to_wire(&request.vote)),
        last_log_id: request.last_log_id.as_ref().map(log_id_to_wire),
    }
}

pub fn vote_request_from_wire(request: wire::VoteRequest) -> Result<VoteRequest<u64>, CodecError> {
    Ok(VoteRequest {
        vote: vote_from_wire(request.vote)?,
        last_log_id: optional_log_id_from_wire(request.last_log_id)?,
    })
}

pub fn vote_response_to_wire(response: &VoteResponse<u64>) -> wire::VoteResponse {
    wire::VoteResponse {
        vote: Some(vote_to_wire(&response.vote)),
        vote_granted: response.vote_granted,
        last_log_id: response.last_log_id.as_ref().map(log_id_to_wire),
    }
}

pub fn vote_response_from_wire(response: wire::VoteResponse) -> Result<VoteResponse<u64>, CodecError> {
    Ok(VoteResponse {
        vote: vote_from_wire(response.vote)?,
        vote_granted: response.vote_granted,
        last_log_id: optional_log_id_from_wire(response.last_log_id)?,
    })
}

pub fn snapshot_meta_to_wire(meta: &SnapshotMeta) -> wire::SnapshotMeta {
    wire::SnapshotMeta {
        last_log_id: meta.last_log_id.as_ref().map(log_id_to_wire),
        last_membership: Some(stored_membership_to_wire(&meta.last_membership)),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

pub fn snapshot_meta_from_wire(meta: wire::SnapshotMeta) -> Result<SnapshotMeta, CodecError> {
    Ok(SnapshotMeta {
        last_log_id: optional_log_id_from_wire(meta.last_log_id)?,
        last_membership: stored_membership_from_wire(
            meta.last_membership.ok_or_else(|| missing("snapshot meta", "last_membership"))?,
        )?,
        snapshot_id: meta.snapshot_id,
    })
}

pub fn install_snapshot_request_to_wire(request: &InstallSnapshotRequest<TypeConfig>) -> wire::InstallSnapshotRequest {
    wire::InstallSnapshotRequest {
        vote: Some(vote_to_wire(&request.vote)),
        meta: Some(snapshot_meta_to_wire(&request.meta)),
        offset: request.offset,
        data: request.data.clone().into(),
        done: request.done,
    }
}

pub fn install_snapshot_request_from_wire(
    request: wire::InstallSnapshotRequest,
) -> Result<InstallSnapshotRequest<TypeConfig>, CodecError> {
    Ok(InstallSnapshotRequest {
        vote: vote_from_wire(request.vote)?,
        meta: snapshot_meta_from_wire(request.meta.ok_or_else(|| missing("install snapshot", "meta"))?)?,
        offset: request.offset,
        data: request.data.to_vec(),
        done: request.done,
    })
}

pub fn install_snapshot_response_to_wire(response: &InstallSnapshotResponse<u64>) -> wire::InstallSnapshotResponse {
    wire::InstallSnapshotResponse { vote: Some(vote_to_wire(&response.vote)) }
}

pub fn install_snapshot_response_from_wire(
    response: wire::InstallSnapshotResponse,
) -> Result<InstallSnapshotResponse<u64>, CodecError> {
    Ok(InstallSnapshotResponse { vote: vote_from_wire(response.vote)? })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use riffle_proto::peer::{group_command, AppendBatch, GroupCommand, RecordInput};

    use super::*;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    #[test]
    fn entries_round_trip() {
        let command = GroupCommand {
            command: Some(group_command::Command::Append(AppendBatch {
                timestamp_ms: 42,
                records: vec![RecordInput { partition_key: "k".into(), data: Bytes::from_static(b"v") }],
            })),
        };
        let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], BTreeSet::from([1, 2, 3, 4]));
        let entries = vec![
            Entry { log_id: log_id(1, 1, 1), payload: EntryPayload::Blank },
            Entry { log_id: log_id(1, 1, 2), payload: EntryPayload::Normal(command) },
            Entry { log_id: log_id(2, 3, 3), payload: EntryPayload::Membership(membership) },
        ];
        for entry in entries {
            let decoded = entry_from_wire(entry_to_wire(&entry)).expect("decodes");
            assert_eq!(format!("{decoded:?}"), format!("{entry:?}"));
        }
    }

    #[test]
    fn responses_round_trip() {
        for response in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(log_id(3, 2, 9))),
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(Vote::new_committed(7, 2)),
        ] {
            assert_eq!(append_response_from_wire(append_response_to_wire(&response)).expect("decodes"), response);
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(entry_from_wire(wire::Entry::default()).is_err());
        assert!(vote_from_wire(None).is_err());
        assert!(membership_from_wire(wire::Membership::default()).is_err());
        assert!(append_response_from_wire(wire::AppendEntriesResponse::default()).is_err());
    }
}
