//! What a run sends: record data of fixed or uniformly random size, and partition keys.
//!
//! All data is prebuilt before the run: one content buffer and a pool of [`Bytes`] slices of
//! it, with sizes drawn from a seeded generator, so the hot loop takes a slice by index (a
//! reference-count increment) and allocates nothing. End-to-end runs write an 8-byte send
//! timestamp in front of each record ([`RecordPool::stamp_into`]): one buffer per batch.
//!
//! Invariants: every pooled record is `min..=max` bytes; the same seed gives the same sizes.

use bytes::{BufMut, Bytes, BytesMut};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Records in the pool; workers cycle through them, each from its own offset.
pub const POOL_RECORDS: usize = 4_096;

/// Bytes of the send timestamp at the start of an end-to-end record (big-endian µs).
pub const TIMESTAMP_BYTES: usize = 8;

/// Distinct starting offsets of pooled records in the content buffer, so neighbouring
/// records differ.
const CONTENT_OFFSETS: usize = 61;

/// Prebuilt record data.
pub struct RecordPool {
    records: Vec<Bytes>,
    /// Sum of the pool's sizes, for the mean.
    total_bytes: u64,
    max_bytes: usize,
}

impl RecordPool {
    /// A pool of records of `min..=max` bytes (uniform), drawn with `seed`.
    pub fn new(min: usize, max: usize, seed: u64) -> RecordPool {
        assert!(min >= 1 && min <= max, "record sizes are 1 ≤ min ≤ max");
        let content = Bytes::from(content(max + CONTENT_OFFSETS));
        let mut random = SmallRng::seed_from_u64(seed);
        let records: Vec<Bytes> = (0..POOL_RECORDS)
            .map(|index| {
                let size = if min == max { min } else { random.gen_range(min..=max) };
                let offset = index % CONTENT_OFFSETS;
                content.slice(offset..offset + size)
            })
            .collect();
        let total_bytes = records.iter().map(|record| record.len() as u64).sum();
        RecordPool { records, total_bytes, max_bytes: max }
    }

    /// Record `index` (modulo the pool).
    pub fn get(&self, index: usize) -> &Bytes {
        &self.records[index % self.records.len()]
    }

    /// The largest record size of the pool's range.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The mean record size of the pool.
    pub fn mean_bytes(&self) -> f64 {
        self.total_bytes as f64 / self.records.len() as f64
    }

    /// Appends record `index` to `buffer` with its first [`TIMESTAMP_BYTES`] replaced by
    /// `timestamp_us` (big-endian), and returns it as its own `Bytes` (the buffer keeps the
    /// rest of its capacity for the next record). Records shorter than the timestamp are not
    /// allowed in end-to-end runs (checked by the command line).
    pub fn stamp_into(&self, index: usize, timestamp_us: u64, buffer: &mut BytesMut) -> Bytes {
        let record = self.get(index);
        assert!(record.len() >= TIMESTAMP_BYTES, "end-to-end records hold a timestamp");
        buffer.put_u64(timestamp_us);
        buffer.extend_from_slice(&record[TIMESTAMP_BYTES..]);
        buffer.split().freeze()
    }
}

/// The send timestamp of an end-to-end record, if it is long enough to hold one.
pub fn timestamp_of(data: &[u8]) -> Option<u64> {
    let bytes: [u8; TIMESTAMP_BYTES] = data.get(..TIMESTAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Printable, not all one byte, so nothing along the way compresses it to nothing.
fn content(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|index| b'a' + ((index * 7 + index / 26) % 26) as u8).collect()
}

/// Partition key `index`: distinct keys whose MD5 hashes spread evenly over Kinesis shards.
pub fn partition_key(index: usize) -> String {
    format!("bench-key-{index:05}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sizes_are_exact() {
        let pool = RecordPool::new(1024, 1024, 1);
        assert!((0..POOL_RECORDS).all(|index| pool.get(index).len() == 1024));
        assert_eq!(pool.mean_bytes(), 1024.0);
    }

    #[test]
    fn ranges_are_uniform_within_bounds_and_seeded() {
        let pool = RecordPool::new(100, 200, 7);
        let sizes: Vec<usize> = (0..POOL_RECORDS).map(|index| pool.get(index).len()).collect();
        assert!(sizes.iter().all(|size| (100..=200).contains(size)));
        assert!(sizes.contains(&100) || sizes.contains(&101), "the low end is drawn");
        assert!(sizes.contains(&200) || sizes.contains(&199), "the high end is drawn");
        assert!((pool.mean_bytes() - 150.0).abs() < 5.0, "mean {}", pool.mean_bytes());
        let again = RecordPool::new(100, 200, 7);
        assert!((0..POOL_RECORDS).all(|index| again.get(index).len() == sizes[index]), "same seed, same sizes");
        let other = RecordPool::new(100, 200, 8);
        assert!((0..POOL_RECORDS).any(|index| other.get(index).len() != sizes[index]));
    }

    #[test]
    fn neighbouring_records_differ() {
        let pool = RecordPool::new(64, 64, 1);
        assert_ne!(pool.get(0), pool.get(1));
    }

    #[test]
    fn stamped_records_carry_their_timestamp_and_keep_their_size() {
        let pool = RecordPool::new(32, 64, 3);
        let mut buffer = BytesMut::with_capacity(256);
        let first = pool.stamp_into(5, 1_234_567, &mut buffer);
        let second = pool.stamp_into(6, 7, &mut buffer);
        assert_eq!(first.len(), pool.get(5).len());
        assert_eq!(second.len(), pool.get(6).len());
        assert_eq!(timestamp_of(&first), Some(1_234_567));
        assert_eq!(timestamp_of(&second), Some(7));
        assert_eq!(&first[TIMESTAMP_BYTES..], &pool.get(5)[TIMESTAMP_BYTES..]);
        assert_eq!(timestamp_of(b"short"), None);
    }
}
