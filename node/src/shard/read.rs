//! Reads from a shard's segments on its leader: the start position resolved from the request,
//! bounded by records and bytes, with how far the read is behind the newest record.
//!
//! A read that reaches the end of a sealed shard answers the seal's first sequence as where
//! to continue: nothing is ever stored there, so the caller knows the shard is done.

use riffle_proto::peer::{self as wire, ForwardRead, ReadResult};

use crate::routing::RouteError;
use crate::shard::SealState;
use crate::storage::segment::ShardSegments;

/// Reads from a shard's segments on its leader.
pub(crate) fn read_shard(
    segments: &ShardSegments,
    seal: &SealState,
    read: ForwardRead,
) -> Result<ReadResult, RouteError> {
    use wire::forward_read::Start;
    let failed = |error: crate::storage::error::StorageError| RouteError::Failed(format!("reading shard: {error}"));
    let end = segments.end_sequence();
    let start = match read.start {
        Some(Start::AtSequence(sequence)) => sequence,
        Some(Start::AtTimestampMs(timestamp)) => segments.sequence_at_timestamp(timestamp).map_err(failed)?,
        Some(Start::Latest(_)) => end,
        Some(Start::TrimHorizon(_)) | None => segments.first_sequence().map_err(failed)?,
    };
    // Every batch before the seal is applied, so a sealed shard's end is final.
    let past_end = |next: u64| match seal.sealed_at() {
        Some(index) if next >= end => next.max(crate::sequence::first_of_batch(index)),
        _ => next,
    };
    if read.limit == 0 {
        return Ok(ReadResult {
            records: Vec::new(),
            next_sequence: past_end(start),
            millis_behind_latest: 0,
            sealed_at_index: seal.sealed_at(),
        });
    }
    let mut outcome = segments.read(start, read.limit as usize, read.bytes_max as usize).map_err(failed)?;
    if crate::planted::active(crate::planted::Bug::SkipRecordOnRead)
        && matches!(read.start, Some(Start::AtSequence(_)))
        && outcome.records.len() >= 2
    {
        outcome.records.remove(1);
    }
    let millis_behind_latest = match (outcome.records.last(), segments.last_timestamp_ms()) {
        (Some(last), Some(latest)) if outcome.next_sequence < end => (latest - last.timestamp_ms).max(0),
        _ => 0,
    };
    Ok(ReadResult {
        records: outcome.records,
        next_sequence: past_end(outcome.next_sequence.max(start)),
        millis_behind_latest,
        sealed_at_index: seal.sealed_at(),
    })
}
