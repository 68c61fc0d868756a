//! Snapshot bytes as openraft moves them. A metadata snapshot is small and lives in memory. A
//! shard snapshot is the shard's kept batches: the leader reads them from the segment files as
//! each chunk is sent ([`ExportReader`]), and a follower writes the chunks it receives to a file
//! ([`SpillFile`]) and imports from there, so neither side holds a shard's data in memory.

use std::io::{self, Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use crate::storage::segment::{read_fully, ExportReader, SpillFile};

/// The `SnapshotData` of every group.
#[derive(Debug)]
pub enum SnapshotData {
    /// Whole in memory: metadata snapshots, and empty ones.
    Memory(Cursor<Vec<u8>>),
    /// A shard snapshot being sent: a header, then the batches read from the segments.
    Export { reader: ExportReader, position: u64 },
    /// A snapshot being received, written to a file.
    Spill { file: SpillFile, position: u64 },
}

impl SnapshotData {
    pub fn memory(bytes: Vec<u8>) -> Box<SnapshotData> {
        Box::new(SnapshotData::Memory(Cursor::new(bytes)))
    }

    fn len(&self) -> io::Result<u64> {
        match self {
            SnapshotData::Memory(cursor) => Ok(cursor.get_ref().len() as u64),
            SnapshotData::Export { reader, .. } => Ok(reader.len()),
            SnapshotData::Spill { file, .. } => file.len(),
        }
    }

    /// Every byte, for a snapshot that is small by nature (the metadata group's).
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self {
            SnapshotData::Memory(cursor) => Ok(cursor.into_inner()),
            other => {
                let len = usize::try_from(other.len()?).map_err(io::Error::other)?;
                let mut bytes = vec![0u8; len];
                if read_fully(|buf, offset| other.read_at(buf, offset), &mut bytes, 0)? < len {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the snapshot ended early"));
                }
                Ok(bytes)
            }
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self {
            SnapshotData::Memory(cursor) => {
                let bytes = cursor.get_ref();
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let count = buf.len().min(bytes.len() - start);
                buf[..count].copy_from_slice(&bytes[start..start + count]);
                Ok(count)
            }
            SnapshotData::Export { reader, .. } => reader.read_at(buf, offset),
            SnapshotData::Spill { file, .. } => file.read_at(buf, offset),
        }
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(self: Pin<&mut Self>, context: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let position = match this {
            SnapshotData::Memory(cursor) => return Pin::new(cursor).poll_read(context, buf),
            SnapshotData::Export { position, .. } | SnapshotData::Spill { position, .. } => *position,
        };
        let read = this.read_at(buf.initialize_unfilled(), position)?;
        buf.advance(read);
        if let SnapshotData::Export { position, .. } | SnapshotData::Spill { position, .. } = this {
            *position += read as u64;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, target: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let len = this.len()?;
        match this {
            SnapshotData::Memory(cursor) => Pin::new(cursor).start_seek(target),
            SnapshotData::Export { position, .. } | SnapshotData::Spill { position, .. } => {
                let moved = match target {
                    SeekFrom::Start(offset) => Some(offset),
                    SeekFrom::End(delta) => len.checked_add_signed(delta),
                    SeekFrom::Current(delta) => position.checked_add_signed(delta),
                };
                *position = moved.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "a seek before the start of the snapshot")
                })?;
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            SnapshotData::Memory(cursor) => Pin::new(cursor).poll_complete(context),
            SnapshotData::Export { position, .. } | SnapshotData::Spill { position, .. } => Poll::Ready(Ok(*position)),
        }
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SnapshotData::Memory(cursor) => Pin::new(cursor).poll_write(context, buf),
            SnapshotData::Spill { file, position } => {
                file.write_at(buf, *position)?;
                *position += buf.len() as u64;
                Poll::Ready(Ok(buf.len()))
            }
            SnapshotData::Export { .. } => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::Unsupported, "a snapshot being sent is read only")))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn memory_snapshots_read_seek_and_write_like_a_cursor() {
        let mut data = SnapshotData::memory(Vec::new());
        data.write_all(b"hello world").await.expect("write");
        assert_eq!(data.seek(SeekFrom::End(0)).await.expect("seek"), 11);
        data.seek(SeekFrom::Start(6)).await.expect("seek");
        let mut word = String::new();
        data.read_to_string(&mut word).await.expect("read");
        assert_eq!(word, "world");
        assert_eq!(data.into_bytes().expect("bytes"), b"hello world");
    }
}
