//! Grouping records into PutRecords requests within the service's limits.

use riffle_proto::v1::PutRecordsRequestEntry;

/// Most records one PutRecords request may carry (the Kinesis limit).
pub const PUT_RECORDS_RECORDS_MAX: usize = 500;

/// Most bytes (data plus partition keys) one PutRecords request may carry (the Kinesis limit).
pub const PUT_RECORDS_BYTES_MAX: usize = 5 * 1024 * 1024;

/// The bytes a record counts for against [`PUT_RECORDS_BYTES_MAX`]: data plus partition key.
pub fn entry_bytes(entry: &PutRecordsRequestEntry) -> usize {
    entry.data.len() + entry.partition_key.len()
}

/// Collects records, in order, into batches of at most `records_max` records and `bytes_max`
/// bytes. Does no I/O.
///
/// A record larger than `bytes_max` on its own still gets a batch to itself, so the service
/// (not the batcher) rejects it with its own error.
#[derive(Debug)]
pub struct PutRecordsBatcher {
    records_max: usize,
    bytes_max: usize,
    pending: Vec<PutRecordsRequestEntry>,
    pending_bytes: usize,
}

impl Default for PutRecordsBatcher {
    fn default() -> Self {
        PutRecordsBatcher::new(PUT_RECORDS_RECORDS_MAX, PUT_RECORDS_BYTES_MAX)
    }
}

impl PutRecordsBatcher {
    /// A batcher with the given bounds; both must be at least 1.
    pub fn new(records_max: usize, bytes_max: usize) -> PutRecordsBatcher {
        assert!(records_max >= 1, "records_max must be at least 1");
        assert!(bytes_max >= 1, "bytes_max must be at least 1");
        PutRecordsBatcher { records_max, bytes_max, pending: Vec::new(), pending_bytes: 0 }
    }

    /// Adds `entry`; returns the batch collected so far when `entry` does not fit in it
    /// (`entry` then starts the next batch).
    pub fn push(&mut self, entry: PutRecordsRequestEntry) -> Option<Vec<PutRecordsRequestEntry>> {
        let bytes = entry_bytes(&entry);
        let fits = self.pending.len() < self.records_max && self.pending_bytes.saturating_add(bytes) <= self.bytes_max;
        let full = if fits || self.pending.is_empty() { None } else { self.take() };
        self.pending_bytes += bytes;
        self.pending.push(entry);
        debug_assert!(self.pending.len() <= self.records_max);
        full
    }

    /// Takes the records collected so far, if any.
    pub fn take(&mut self) -> Option<Vec<PutRecordsRequestEntry>> {
        if self.pending.is_empty() {
            return None;
        }
        self.pending_bytes = 0;
        Some(std::mem::take(&mut self.pending))
    }

    /// True when no record is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Splits `entries`, in order, into batches within `records_max` records and `bytes_max` bytes.
pub fn split_into_batches(
    entries: impl IntoIterator<Item = PutRecordsRequestEntry>,
    records_max: usize,
    bytes_max: usize,
) -> Vec<Vec<PutRecordsRequestEntry>> {
    let mut batcher = PutRecordsBatcher::new(records_max, bytes_max);
    let mut batches: Vec<_> = entries.into_iter().filter_map(|entry| batcher.push(entry)).collect();
    batches.extend(batcher.take());
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(data_bytes: usize, key: &str) -> PutRecordsRequestEntry {
        PutRecordsRequestEntry {
            data: vec![b'x'; data_bytes].into(),
            partition_key: key.to_owned(),
            explicit_hash_key: None,
        }
    }

    fn keys(batch: &[PutRecordsRequestEntry]) -> Vec<&str> {
        batch.iter().map(|e| e.partition_key.as_str()).collect()
    }

    #[test]
    fn splits_by_record_count_keeping_order() {
        let entries = (0..1201).map(|i| entry(1, &i.to_string()));

        let batches = split_into_batches(entries, PUT_RECORDS_RECORDS_MAX, PUT_RECORDS_BYTES_MAX);

        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![500, 500, 201]);
        let all: Vec<String> = batches.iter().flat_map(|batch| keys(batch).into_iter().map(str::to_owned)).collect();
        let expected: Vec<String> = (0..1201).map(|i| i.to_string()).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn splits_by_bytes_counting_partition_keys() {
        // Each record is 1 MiB of data plus a 1-byte key, so five do not fit in 5 MiB.
        let entries = (0..6).map(|i| entry(1024 * 1024, &i.to_string()));

        let batches = split_into_batches(entries, PUT_RECORDS_RECORDS_MAX, PUT_RECORDS_BYTES_MAX);

        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 2]);
        for batch in &batches {
            let bytes: usize = batch.iter().map(entry_bytes).sum();
            assert!(bytes <= PUT_RECORDS_BYTES_MAX, "batch of {bytes} bytes");
        }
    }

    #[test]
    fn exact_fit_stays_in_one_batch() {
        let entries = vec![entry(6, "k"), entry(2, "k")];

        let batches = split_into_batches(entries, 10, 10);

        assert_eq!(batches.len(), 1);
    }

    #[test]
    fn oversized_record_gets_a_batch_of_its_own() {
        let entries = vec![entry(1, "a"), entry(50, "b"), entry(1, "c")];

        let batches = split_into_batches(entries, 10, 10);

        let batch_keys: Vec<Vec<&str>> = batches.iter().map(|b| keys(b)).collect();
        assert_eq!(batch_keys, vec![vec!["a"], vec!["b"], vec!["c"]]);
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert!(split_into_batches(Vec::new(), 500, 100).is_empty());
        let mut batcher = PutRecordsBatcher::default();
        assert!(batcher.is_empty());
        assert_eq!(batcher.take(), None);
    }
}
