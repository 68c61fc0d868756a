//! The file-system seam.
//!
//! Every byte Riffle reads or writes — raft-engine's log files and the shard segment store —
//! goes through [`FileSystem`]. Production uses [`real::RealFileSystem`] (std files, io_uring
//! for batched write + fdatasync); tests and the simulator use [`memory::MemoryFileSystem`],
//! which keeps only synced bytes across a simulated crash and may tear the last unsynced write.
//!
//! Durability contract (both implementations):
//! - `write_at` data is durable only after `sync_data` (or `write_all_at_and_sync`) returns Ok.
//! - Directory entries (create, rename, remove) are durable after `sync_dir` on the parent.
//!   The memory implementation keeps them durable at once (documented simplification);
//!   the real one follows the kernel.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod conformance;
pub mod memory;
pub mod real;
pub mod unsynced;

/// How [`FileSystem::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, reads only.
    Read,
    /// Existing file, reads and writes.
    ReadWrite,
    /// Create the file (truncating nothing: an existing file is opened as is), reads and writes.
    Create,
    /// Create a new file; fails with `AlreadyExists` if it exists.
    CreateNew,
}

/// An open file. All offsets are absolute; there is no cursor.
pub trait FileHandle: Send + Sync + std::fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns the count (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, growing the file if needed. Not durable until synced.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Writes `bufs` back to back starting at `offset`, then makes the file's data durable.
    /// The real implementation submits the writes and one fdatasync to io_uring together.
    fn write_all_at_and_sync(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()>;
    /// Makes all written data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Current length in bytes (including unsynced writes).
    fn len(&self) -> io::Result<u64>;
    /// Whether the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Sets the length; shrinking drops bytes, growing fills with zeros.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// A file system. Paths are plain `Path`s; implementations must not touch anything outside
/// what they are asked for.
pub trait FileSystem: Send + Sync + std::fmt::Debug + 'static {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the files directly inside `dir`, sorted.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Removes a directory and everything under it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// Joins a directory and a file name; a small helper shared by the stores.
pub fn child(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
