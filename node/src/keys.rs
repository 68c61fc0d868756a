//! Hash keys and shard ids, as a Kinesis client sees them (sequence numbers are in
//! [`crate::sequence`]).
//!
//! A record's hash key is the MD5 of its partition key read as a 128-bit big-endian integer, or
//! its `ExplicitHashKey`; it picks the shard whose range contains it.

use md5::{Digest, Md5};

/// Hash key of a partition key.
pub fn hash_key_of(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// Parses an `ExplicitHashKey`: a decimal in [0, 2^128 - 1] without leading zeros.
pub fn parse_hash_key(text: &str) -> Option<u128> {
    if text.is_empty() || text.len() > 39 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse::<u128>().ok()
}

/// The hash-key ranges of a new stream with `shard_count` shards: even splits, the last one
/// ending at 2^128 - 1.
pub fn even_ranges(shard_count: u32) -> Vec<(u128, u128)> {
    assert!(shard_count > 0, "a stream has at least one shard");
    if shard_count == 1 {
        return vec![(0, u128::MAX)];
    }
    let count = u128::from(shard_count);
    // floor(2^128 / count) without overflowing: (2^128 - 1) / count, plus one when count
    // divides 2^128 (then (2^128 - 1) % count == count - 1). count >= 2, so it fits.
    let width = u128::MAX / count + u128::from(u128::MAX % count == count - 1);
    (0..count)
        .map(|index| {
            let start = index * width;
            let end = if index + 1 == count { u128::MAX } else { (index + 1) * width - 1 };
            (start, end)
        })
        .collect()
}

/// `shardId-000000000007`.
pub fn shard_id(shard_index: u32) -> String {
    format!("shardId-{shard_index:012}")
}

/// Parses a shard id; also accepts a bare number as the AWS CLI's shorthand does.
pub fn parse_shard_id(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("shardId-").unwrap_or(text);
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ranges_match_kinesis() {
        let ranges = even_ranges(3);
        assert_eq!(ranges[0], (0, 113427455640312821154458202477256070484));
        assert_eq!(ranges[1].0, 113427455640312821154458202477256070485);
        assert_eq!(ranges[1].1, 226854911280625642308916404954512140969);
        assert_eq!(ranges[2], (226854911280625642308916404954512140970, u128::MAX));
        assert_eq!(even_ranges(1), vec![(0, u128::MAX)]);
        assert_eq!(even_ranges(2), vec![(0, (1u128 << 127) - 1), (1u128 << 127, u128::MAX)]);
        for count in [5, 7, 64, 1000, 10_000] {
            let ranges = even_ranges(count);
            assert_eq!(ranges.len(), count as usize);
            assert_eq!(ranges[0].0, 0);
            assert_eq!(ranges.last().map(|range| range.1), Some(u128::MAX));
            assert!(ranges.windows(2).all(|pair| pair[0].1 + 1 == pair[1].0));
        }
        let four = even_ranges(4);
        assert_eq!(four[1].0, 1u128 << 126);
        for pair in four.windows(2) {
            assert_eq!(pair[0].1 + 1, pair[1].0);
        }
    }

    #[test]
    fn hash_keys_are_md5() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key_of(""), 0xd41d8cd98f00b204e9800998ecf8427e);
        assert_eq!(parse_hash_key("0"), Some(0));
        assert_eq!(parse_hash_key("340282366920938463463374607431768211455"), Some(u128::MAX));
        assert_eq!(parse_hash_key("340282366920938463463374607431768211456"), None);
        assert_eq!(parse_hash_key("01"), None);
        assert_eq!(parse_hash_key("-1"), None);
        assert_eq!(parse_hash_key(""), None);
    }

    #[test]
    fn shard_ids() {
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(parse_shard_id("shardId-000000000007"), Some(7));
        assert_eq!(parse_shard_id("7"), Some(7));
        assert_eq!(parse_shard_id("shardId-x"), None);
    }
}
