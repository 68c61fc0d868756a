//! The on-disk encoding of one segment batch (see `docs/storage.md`).
//!
//! ```text
//! offset  bytes  field (integers little-endian)
//!      0      4  magic "RFSB"
//!      4      2  format version (1)
//!      6      2  reserved, zero
//!      8      4  CRC32C of bytes 12..end of payload (rest of the header and the payload)
//!     12      8  Raft log term of the entry that carried the batch
//!     20      8  Raft log leader node id
//!     28      8  Raft log index (record i of the batch has sequence (index << 16) | i, see crate::sequence)
//!     36      8  arrival timestamp, ms since the Unix epoch (i64)
//!     44      4  record count
//!     48      4  payload length in bytes
//!     52      …  payload: per record, key length (u32), data length (u32), key, data
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use riffle_proto::peer::RecordInput;

use super::segment::BatchLogId;

pub const BATCH_MAGIC: [u8; 4] = *b"RFSB";
pub const BATCH_FORMAT_VERSION: u16 = 1;
pub const BATCH_HEADER_BYTES: usize = 52;
/// Per record: key length and data length.
pub const RECORD_HEADER_BYTES: usize = 8;
/// Records in one batch: the position bits of a sequence number count them.
pub use crate::sequence::BATCH_RECORDS_MAX;
/// The payload length field is a `u32`.
pub const BATCH_PAYLOAD_BYTES_MAX: usize = u32::MAX as usize;
const CRC_RANGE_START: usize = 12;

/// The fixed-size front of an encoded batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub log_id: BatchLogId,
    pub timestamp_ms: i64,
    pub record_count: u32,
    pub payload_bytes: u32,
}

impl BatchHeader {
    /// Header plus payload.
    pub fn encoded_bytes(&self) -> usize {
        BATCH_HEADER_BYTES + self.payload_bytes as usize
    }
}

/// Why bytes do not hold a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the batch does (a torn or short write, if at a file's end).
    Incomplete,
    /// The bytes are there but wrong: bad magic, version, checksum or record layout.
    Invalid(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Incomplete => formatter.write_str("batch extends past the end"),
            DecodeError::Invalid(reason) => formatter.write_str(reason),
        }
    }
}

/// Payload bytes the records of a batch need.
pub fn payload_bytes(records: &[RecordInput]) -> usize {
    records.iter().map(|record| RECORD_HEADER_BYTES + record.partition_key.len() + record.data.len()).sum()
}

/// Encodes one batch. The caller checks the limits ([`BATCH_RECORDS_MAX`],
/// [`BATCH_PAYLOAD_BYTES_MAX`]) first.
pub fn encode_batch(log_id: BatchLogId, timestamp_ms: i64, records: &[RecordInput]) -> Bytes {
    let payload = payload_bytes(records);
    assert!(records.len() < BATCH_RECORDS_MAX, "record count checked by the caller");
    assert!(payload <= BATCH_PAYLOAD_BYTES_MAX, "payload size checked by the caller");
    let mut buf = BytesMut::with_capacity(BATCH_HEADER_BYTES + payload);
    buf.put_slice(&BATCH_MAGIC);
    buf.put_u16_le(BATCH_FORMAT_VERSION);
    buf.put_u16_le(0);
    buf.put_u32_le(0); // CRC, filled in below
    buf.put_u64_le(log_id.term);
    buf.put_u64_le(log_id.node_id);
    buf.put_u64_le(log_id.index);
    buf.put_i64_le(timestamp_ms);
    buf.put_u32_le(records.len() as u32);
    buf.put_u32_le(payload as u32);
    for record in records {
        let key = record.partition_key.as_bytes();
        buf.put_u32_le(key.len() as u32);
        buf.put_u32_le(record.data.len() as u32);
        buf.put_slice(key);
        buf.put_slice(&record.data);
    }
    let crc = crc32c::crc32c(&buf[CRC_RANGE_START..]);
    buf[8..12].copy_from_slice(&crc.to_le_bytes());
    buf.freeze()
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("a 4-byte slice"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("an 8-byte slice"))
}

/// Decodes the header at the start of `bytes` without the checksum, which covers the whole
/// batch: enough to index a file by its headers. [`decode_header`] verifies the batch.
pub fn peek_header(bytes: &[u8]) -> Result<BatchHeader, DecodeError> {
    if bytes.len() < BATCH_HEADER_BYTES {
        // A short tail that does not even start with the magic is still "incomplete": torn
        // writes cut anywhere.
        return Err(DecodeError::Incomplete);
    }
    if bytes[0..4] != BATCH_MAGIC {
        return Err(DecodeError::Invalid("bad batch magic".to_string()));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != BATCH_FORMAT_VERSION {
        return Err(DecodeError::Invalid(format!("unknown batch format version {version}")));
    }
    let header = BatchHeader {
        log_id: BatchLogId { term: read_u64(bytes, 12), node_id: read_u64(bytes, 20), index: read_u64(bytes, 28) },
        timestamp_ms: read_u64(bytes, 36) as i64,
        record_count: read_u32(bytes, 44),
        payload_bytes: read_u32(bytes, 48),
    };
    if u16::from_le_bytes([bytes[6], bytes[7]]) != 0 {
        return Err(DecodeError::Invalid("reserved header bytes are not zero".to_string()));
    }
    if header.record_count as usize >= BATCH_RECORDS_MAX {
        return Err(DecodeError::Invalid(format!("record count {} is over the limit", header.record_count)));
    }
    Ok(header)
}

/// Decodes and verifies the batch at the start of `bytes` (which may continue past it).
pub fn decode_header(bytes: &[u8]) -> Result<BatchHeader, DecodeError> {
    let header = peek_header(bytes)?;
    let end = header.encoded_bytes();
    if bytes.len() < end {
        return Err(DecodeError::Incomplete);
    }
    let stored_crc = read_u32(bytes, 8);
    let actual_crc = crc32c::crc32c(&bytes[CRC_RANGE_START..end]);
    if stored_crc != actual_crc {
        return Err(DecodeError::Invalid(format!(
            "batch checksum mismatch (stored {stored_crc:#010x}, computed {actual_crc:#010x})"
        )));
    }
    Ok(header)
}

/// One record inside a decoded batch; both parts share the batch's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    pub partition_key: Bytes,
    pub data: Bytes,
}

/// Splits a verified batch (exactly [`BatchHeader::encoded_bytes`] long) into its records.
pub fn decode_records(batch: &Bytes, header: &BatchHeader) -> Result<Vec<DecodedRecord>, DecodeError> {
    let end = header.encoded_bytes();
    if batch.len() < end {
        return Err(DecodeError::Incomplete);
    }
    let mut records = Vec::with_capacity(header.record_count as usize);
    let mut at = BATCH_HEADER_BYTES;
    for position in 0..header.record_count {
        if end - at < RECORD_HEADER_BYTES {
            return Err(DecodeError::Invalid(format!("record {position} header runs past the payload")));
        }
        let key_bytes = read_u32(batch, at) as usize;
        let data_bytes = read_u32(batch, at + 4) as usize;
        let key_start = at + RECORD_HEADER_BYTES;
        let data_start = key_start + key_bytes;
        let record_end = data_start + data_bytes;
        if record_end > end {
            return Err(DecodeError::Invalid(format!("record {position} runs past the payload")));
        }
        records.push(DecodedRecord {
            partition_key: batch.slice(key_start..data_start),
            data: batch.slice(data_start..record_end),
        });
        at = record_end;
    }
    if at != end {
        return Err(DecodeError::Invalid("payload has bytes after the last record".to_string()));
    }
    Ok(records)
}

/// Whether a valid batch starts anywhere in `bytes` (at a magic). Used on recovery to tell a
/// torn tail (nothing valid after the damage) from damage in the middle of a file.
pub fn contains_valid_batch(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at + BATCH_HEADER_BYTES <= bytes.len() {
        if bytes[at..at + 4] == BATCH_MAGIC && decode_header(&bytes[at..]).is_ok() {
            return true;
        }
        at += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, data: &[u8]) -> RecordInput {
        RecordInput { partition_key: key.to_string(), data: Bytes::copy_from_slice(data) }
    }

    const LOG_ID: BatchLogId = BatchLogId { term: 3, node_id: 2, index: 42 };

    #[test]
    fn encode_then_decode_roundtrips() {
        let records = vec![record("a", b"one"), record("key-b", b""), record("", b"3")];
        let encoded = encode_batch(LOG_ID, -5, &records);
        let header = decode_header(&encoded).expect("valid");
        assert_eq!(header.log_id, LOG_ID);
        assert_eq!(header.timestamp_ms, -5);
        assert_eq!(header.record_count, 3);
        assert_eq!(header.encoded_bytes(), encoded.len());
        let decoded = decode_records(&encoded, &header).expect("records");
        assert_eq!(decoded.len(), 3);
        assert_eq!(&decoded[1].partition_key[..], b"key-b");
        assert_eq!(&decoded[0].data[..], b"one");
    }

    #[test]
    fn every_flipped_byte_or_cut_is_detected() {
        let encoded = encode_batch(LOG_ID, 7, &[record("k", b"data")]);
        for at in 0..encoded.len() {
            let mut damaged = encoded.to_vec();
            damaged[at] ^= 0x01;
            assert!(decode_header(&damaged).is_err(), "flip at {at} undetected");
        }
        for len in 0..encoded.len() {
            assert_eq!(decode_header(&encoded[..len]), Err(DecodeError::Incomplete), "cut at {len}");
        }
    }

    #[test]
    fn finds_a_valid_batch_after_garbage() {
        let encoded = encode_batch(LOG_ID, 7, &[record("k", b"data")]);
        let mut bytes = vec![0u8; 13];
        assert!(!contains_valid_batch(&bytes));
        bytes.extend_from_slice(&encoded);
        assert!(contains_valid_batch(&bytes));
        bytes.truncate(bytes.len() - 1);
        assert!(!contains_valid_batch(&bytes));
    }
}
