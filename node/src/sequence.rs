//! Sequence numbers: the one place that knows their layout.
//!
//! A sequence number is unique and strictly increasing within a shard. Internally it is a
//! `u64`: `(log index << POSITION_BITS) | position in the batch`, so the records of one log
//! entry take consecutive numbers and every later entry's are larger, across leader changes too
//! (log indexes only grow). For clients it is a 56-digit decimal string: `49` followed by
//! `(shard index << 64 | internal)` zero-padded to 54 digits, so that the numbers of one shard
//! compare the same as strings and as integers.

/// Low bits of an internal sequence that hold the record's position in its batch.
pub const POSITION_BITS: u32 = 16;
/// Bits left for the log index.
pub const LOG_INDEX_BITS: u32 = 64 - POSITION_BITS;
/// Records in one log entry at most (positions `0 .. BATCH_RECORDS_MAX`).
pub const BATCH_RECORDS_MAX: usize = 1 << POSITION_BITS;

/// The internal sequence of the first record of the batch at `log_index`.
pub fn first_of_batch(log_index: u64) -> u64 {
    log_index << POSITION_BITS
}

/// The internal sequence of record `position` of the batch stored at `log_index`.
pub fn of_record(log_index: u64, position: usize) -> u64 {
    assert!(position < BATCH_RECORDS_MAX, "a batch holds fewer than {BATCH_RECORDS_MAX} records");
    assert!(log_index < 1 << LOG_INDEX_BITS, "log index {log_index} fits in 48 bits");
    (log_index << POSITION_BITS) | position as u64
}

/// [`of_record`] for values that come from another node: `None` when out of range.
pub fn checked_of_record(log_index: u64, position: usize) -> Option<u64> {
    (position < BATCH_RECORDS_MAX && log_index < 1 << LOG_INDEX_BITS)
        .then_some((log_index << POSITION_BITS) | position as u64)
}

/// Renders a sequence number of shard `shard_index` for clients.
pub fn render(shard_index: u32, internal: u64) -> String {
    let value = (u128::from(shard_index) << 64) | u128::from(internal);
    format!("49{value:054}")
}

/// Why a sequence number from a client was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("is not a sequence number of this service")]
    Malformed,
    #[error("belongs to shard {0}, not to this shard")]
    OtherShard(u32),
}

/// Parses a sequence number rendered by [`render`] for `shard_index`.
pub fn parse(text: &str, shard_index: u32) -> Result<u64, SequenceError> {
    let digits = text.strip_prefix("49").ok_or(SequenceError::Malformed)?;
    if digits.len() != 54 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(SequenceError::Malformed);
    }
    let value: u128 = digits.parse().map_err(|_| SequenceError::Malformed)?;
    let shard = u32::try_from(value >> 64).map_err(|_| SequenceError::Malformed)?;
    if shard != shard_index {
        return Err(SequenceError::OtherShard(shard));
    }
    Ok(value as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_round_trip_and_sort() {
        let first = render(3, of_record(1, 0));
        let second = render(3, of_record(1, 1));
        let third = render(3, of_record(900_000, 0));
        assert_eq!(first.len(), 56);
        assert!(first < second && second < third);
        assert_eq!(parse(&third, 3), Ok(of_record(900_000, 0)));
        assert_eq!(parse(&third, 2), Err(SequenceError::OtherShard(3)));
        assert_eq!(parse("12", 3), Err(SequenceError::Malformed));
        assert_eq!(parse(&format!("49{}", "9".repeat(54)), 0), Err(SequenceError::Malformed));
    }
}
