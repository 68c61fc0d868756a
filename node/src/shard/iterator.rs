//! Shard iterators: opaque, tamper-evident tokens naming a stream, a shard and a position.
//!
//! Layout before base64: version (1) | issued_ms (i64) | stream created_ms (i64) |
//! shard index (u32) | position kind (1) | position value (8) | name length (u16) | name |
//! tag (16 bytes of HMAC-SHA256 over everything before it, keyed by the cluster secret).
//! Every node of a cluster shares the secret, so any node accepts any node's iterators.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const VERSION: u8 = 1;
const TAG_BYTES: usize = 16;
/// Iterators expire this long after they were issued, as in Kinesis.
pub const ITERATOR_TTL_MS: i64 = 300_000;

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// At this internal sequence (or the first record after it).
    AtSequence(u64),
    /// At the first record with an arrival timestamp at or after this.
    AtTimestamp(i64),
    /// At the oldest record kept.
    TrimHorizon,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardIterator {
    pub stream: String,
    pub stream_created_ms: i64,
    pub shard_index: u32,
    pub position: Position,
    pub issued_ms: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IteratorError {
    #[error("Invalid ShardIterator.")]
    Invalid,
}

/// Signs and checks iterators with the cluster secret.
#[derive(Clone)]
pub struct IteratorCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for IteratorCodec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("IteratorCodec")
    }
}

impl IteratorCodec {
    pub fn new(key: &[u8]) -> IteratorCodec {
        IteratorCodec { key: key.to_vec() }
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_BYTES] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    pub fn encode(&self, iterator: &ShardIterator) -> String {
        let name = iterator.stream.as_bytes();
        let mut payload = Vec::with_capacity(32 + name.len() + TAG_BYTES);
        payload.push(VERSION);
        payload.extend_from_slice(&iterator.issued_ms.to_be_bytes());
        payload.extend_from_slice(&iterator.stream_created_ms.to_be_bytes());
        payload.extend_from_slice(&iterator.shard_index.to_be_bytes());
        let (kind, value) = match iterator.position {
            Position::AtSequence(sequence) => (1u8, sequence),
            Position::AtTimestamp(timestamp) => (2u8, timestamp as u64),
            Position::TrimHorizon => (3u8, 0),
        };
        payload.push(kind);
        payload.extend_from_slice(&value.to_be_bytes());
        let name_length = u16::try_from(name.len()).expect("stream names are at most 128 bytes");
        payload.extend_from_slice(&name_length.to_be_bytes());
        payload.extend_from_slice(name);
        let tag = self.tag(&payload);
        payload.extend_from_slice(&tag);
        STANDARD.encode(payload)
    }

    pub fn decode(&self, token: &str) -> Result<ShardIterator, IteratorError> {
        let bytes = STANDARD.decode(token).map_err(|_| IteratorError::Invalid)?;
        if bytes.len() < 32 + TAG_BYTES {
            return Err(IteratorError::Invalid);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        let expected = self.tag(payload);
        // Constant-time comparison: the tag is a secret-derived value.
        if expected.iter().zip(tag).fold(0u8, |difference, (a, b)| difference | (a ^ b)) != 0 {
            return Err(IteratorError::Invalid);
        }
        let mut reader = Reader(payload);
        if reader.u8()? != VERSION {
            return Err(IteratorError::Invalid);
        }
        let issued_ms = reader.u64()? as i64;
        let stream_created_ms = reader.u64()? as i64;
        let shard_index = reader.u32()?;
        let kind = reader.u8()?;
        let value = reader.u64()?;
        let position = match kind {
            1 => Position::AtSequence(value),
            2 => Position::AtTimestamp(value as i64),
            3 => Position::TrimHorizon,
            _ => return Err(IteratorError::Invalid),
        };
        let name_length = reader.u16()? as usize;
        let name = reader.take(name_length)?;
        if !reader.0.is_empty() {
            return Err(IteratorError::Invalid);
        }
        let stream = String::from_utf8(name.to_vec()).map_err(|_| IteratorError::Invalid)?;
        Ok(ShardIterator { stream, stream_created_ms, shard_index, position, issued_ms })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], IteratorError> {
        if self.0.len() < count {
            return Err(IteratorError::Invalid);
        }
        let (head, tail) = self.0.split_at(count);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, IteratorError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, IteratorError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("took 2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, IteratorError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("took 4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, IteratorError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("took 8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ShardIterator {
        ShardIterator {
            stream: "orders".into(),
            stream_created_ms: 17,
            shard_index: 3,
            position: Position::AtSequence(99 << 16),
            issued_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn round_trips() {
        let codec = IteratorCodec::new(b"secret");
        for position in [Position::AtSequence(5), Position::AtTimestamp(1234), Position::TrimHorizon] {
            let iterator = ShardIterator { position, ..sample() };
            let token = codec.encode(&iterator);
            assert!(token.len() <= 512);
            assert_eq!(codec.decode(&token), Ok(iterator));
        }
    }

    #[test]
    fn forged_and_foreign_tokens_are_invalid() {
        let codec = IteratorCodec::new(b"secret");
        let token = codec.encode(&sample());
        let mut bytes = STANDARD.decode(&token).expect("base64");
        bytes[20] ^= 1;
        assert_eq!(codec.decode(&STANDARD.encode(&bytes)), Err(IteratorError::Invalid));
        assert_eq!(IteratorCodec::new(b"other").decode(&token), Err(IteratorError::Invalid));
        assert_eq!(codec.decode("not base64!"), Err(IteratorError::Invalid));
        assert_eq!(codec.decode(""), Err(IteratorError::Invalid));
        assert_eq!(codec.decode(&STANDARD.encode([1u8; 20])), Err(IteratorError::Invalid));
    }
}
