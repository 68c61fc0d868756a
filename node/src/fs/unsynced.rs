//! A test-only storage mode for process-level fault testing: unsynced writes kept apart.
//!
//! `kill -9` of a process keeps what it wrote in the kernel's page cache, so killing real nodes
//! proves nothing about fsync. [`UnsyncedApartFileSystem`] wraps the real file system and keeps
//! every write in the process's memory until the file is synced: only then are the bytes written
//! to the real file and fdatasynced. Killing the process then loses exactly what a power failure
//! would lose — every write not yet synced — and killing every node at once is a coordinated
//! power loss. Reads, lengths and truncations see the unsynced writes as the process made them.
//!
//! With [`SyncMode::Skip`] the mode is a deliberate defect instead: a sync returns at once
//! without making anything durable, and the pending writes reach the real file only by a lazy
//! write-back (at most once per interval per file, [`WRITE_BACK_INTERVAL`] in the node, without
//! fsync), like a disk
//! that acknowledges before it persists. The fault harness runs it to prove that its checks
//! catch lost acknowledged writes.
//!
//! Directory entries (create, rename, remove) go to the real file system at once and survive a
//! kill, as with the memory file system (a documented simplification). Selected by the node's
//! `[test_only] storage` setting; never meant for production data.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::real::RealFileSystem;
use super::{FileHandle, FileSystem, OpenMode};

/// How often, at most, the `ack-before-fsync` defect writes a file's pending bytes back to the
/// real file.
pub const WRITE_BACK_INTERVAL: Duration = Duration::from_secs(1);

/// What a sync does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// A sync writes the pending bytes to the real file and fdatasyncs it.
    Persist,
    /// A sync does nothing (the defect): a file's pending bytes are written back, unsynced, at
    /// a sync at least `write_back` after the last write-back.
    Skip { write_back: Duration },
}

/// One change not yet made durable, in the order the process made it.
#[derive(Debug)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// A file's pending changes, shared by every handle open on it.
#[derive(Debug)]
struct Overlay {
    pending: Vec<Pending>,
    written_back: Instant,
}

impl Overlay {
    fn new() -> Overlay {
        Overlay { pending: Vec::new(), written_back: Instant::now() }
    }
}

/// The real file system with unsynced writes kept in memory (see the module documentation).
#[derive(Debug)]
pub struct UnsyncedApartFileSystem {
    real: RealFileSystem,
    mode: SyncMode,
    overlays: Mutex<HashMap<PathBuf, Arc<Mutex<Overlay>>>>,
}

impl UnsyncedApartFileSystem {
    pub fn new(mode: SyncMode) -> UnsyncedApartFileSystem {
        UnsyncedApartFileSystem { real: RealFileSystem::new(), mode, overlays: Mutex::new(HashMap::new()) }
    }

    fn overlays(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<Mutex<Overlay>>>> {
        // A poisoned map only means another thread panicked while holding it; its contents
        // are whole (every update is one insert or remove).
        self.overlays.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug)]
struct UnsyncedFile {
    real: Arc<dyn FileHandle>,
    overlay: Arc<Mutex<Overlay>>,
    writable: bool,
    mode: SyncMode,
}

impl UnsyncedFile {
    fn overlay(&self) -> std::sync::MutexGuard<'_, Overlay> {
        self.overlay.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "file opened read-only"))
        }
    }

    /// Applies the pending changes to the real file, in order, and forgets them.
    fn write_back(&self, overlay: &mut Overlay) -> io::Result<()> {
        for change in &overlay.pending {
            match change {
                Pending::Write { offset, bytes } => self.real.write_at(bytes, *offset)?,
                Pending::SetLen(len) => self.real.set_len(*len)?,
            }
        }
        overlay.pending.clear();
        overlay.written_back = Instant::now();
        Ok(())
    }

    /// The file's length as the process sees it.
    fn visible_len(&self, overlay: &Overlay) -> io::Result<u64> {
        let mut len = self.real.len()?;
        for change in &overlay.pending {
            len = match change {
                Pending::Write { offset, bytes } => len.max(offset + bytes.len() as u64),
                Pending::SetLen(new_len) => *new_len,
            };
        }
        Ok(len)
    }
}

impl FileHandle for UnsyncedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let overlay = self.overlay();
        let real_read = self.real.read_at(buf, offset)?;
        buf[real_read..].fill(0);
        let mut len = self.real.len()?;
        let end = offset + buf.len() as u64;
        for change in &overlay.pending {
            match change {
                Pending::Write { offset: at, bytes } => {
                    let from = (*at).max(offset);
                    let to = (at + bytes.len() as u64).min(end);
                    if from < to {
                        let source = (from - at) as usize..(to - at) as usize;
                        buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(&bytes[source]);
                    }
                    len = len.max(at + bytes.len() as u64);
                }
                Pending::SetLen(new_len) => {
                    // Bytes past a truncation are gone; grown again they read as zeros.
                    if *new_len < end {
                        let cut = (new_len.saturating_sub(offset) as usize).min(buf.len());
                        buf[cut..].fill(0);
                    }
                    len = *new_len;
                }
            }
        }
        Ok(len.saturating_sub(offset).min(buf.len() as u64) as usize)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        // An empty write changes nothing, not even the length.
        if !buf.is_empty() {
            self.overlay().pending.push(Pending::Write { offset, bytes: buf.to_vec() });
        }
        Ok(())
    }

    fn write_all_at_and_sync(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut position = offset;
        {
            let mut overlay = self.overlay();
            for buf in bufs.iter().filter(|buf| !buf.is_empty()) {
                overlay.pending.push(Pending::Write { offset: position, bytes: buf.to_vec() });
                position += buf.len() as u64;
            }
        }
        self.sync_data()
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut overlay = self.overlay();
        match self.mode {
            SyncMode::Persist => {
                self.write_back(&mut overlay)?;
                self.real.sync_data()
            }
            SyncMode::Skip { write_back } => {
                if overlay.written_back.elapsed() >= write_back {
                    self.write_back(&mut overlay)?;
                }
                Ok(())
            }
        }
    }

    fn len(&self) -> io::Result<u64> {
        let overlay = self.overlay();
        self.visible_len(&overlay)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        self.overlay().pending.push(Pending::SetLen(len));
        Ok(())
    }
}

impl FileSystem for UnsyncedApartFileSystem {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        // The real open creates the directory entry (and checks the mode's rules); the
        // contents the process sees are the real file's plus the pending changes.
        let real = self.real.open(path, mode)?;
        let overlay =
            self.overlays().entry(path.to_path_buf()).or_insert_with(|| Arc::new(Mutex::new(Overlay::new()))).clone();
        Ok(Arc::new(UnsyncedFile { real, overlay, writable: mode != OpenMode::Read, mode: self.mode }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.real.remove_file(path)?;
        self.overlays().remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.real.rename(from, to)?;
        let mut overlays = self.overlays();
        match overlays.remove(from) {
            Some(overlay) => overlays.insert(to.to_path_buf(), overlay),
            None => overlays.remove(to),
        };
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.real.exists(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.real.create_dir_all(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.real.list_dir(dir)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.real.remove_dir_all(dir)?;
        self.overlays().retain(|path, _| !path.starts_with(dir));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.real.sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::conformance;

    #[test]
    fn conformance_suite() {
        let temp = tempfile::tempdir().expect("tempdir");
        let case = std::cell::Cell::new(0u32);
        let make = || -> (Arc<dyn FileSystem>, PathBuf) {
            case.set(case.get() + 1);
            let root = temp.path().join(format!("case-{}", case.get()));
            std::fs::create_dir_all(&root).expect("mkdir");
            (Arc::new(UnsyncedApartFileSystem::new(SyncMode::Persist)), root)
        };
        conformance::run_all(&make);
    }

    #[test]
    fn only_synced_writes_reach_the_disk() {
        let temp = tempfile::tempdir().expect("tempdir");
        let path = temp.path().join("log");
        let fs = UnsyncedApartFileSystem::new(SyncMode::Persist);
        let file = fs.open(&path, OpenMode::Create).expect("create");
        file.write_at(b"synced", 0).expect("write");
        file.sync_data().expect("sync");
        file.write_at(b"-lost", 6).expect("write");
        file.set_len(3).expect("truncate");
        file.write_at(b"XY", 4).expect("write");
        // The process sees its own writes: a truncation to 3, then "XY" at 4 with a zero gap.
        let mut seen = vec![0u8; 16];
        let count = file.read_at(&mut seen, 0).expect("read");
        assert_eq!(&seen[..count], b"syn\0XY");
        assert_eq!(file.len().expect("len"), 6);
        // A power loss (the process dies): only the synced bytes are on disk.
        drop(file);
        drop(fs);
        assert_eq!(std::fs::read(&path).expect("read"), b"synced");

        let fs = UnsyncedApartFileSystem::new(SyncMode::Persist);
        let file = fs.open(&path, OpenMode::ReadWrite).expect("open");
        file.write_all_at_and_sync(&[b"ab", b"cd"], 6).expect("write and sync");
        drop(fs);
        assert_eq!(std::fs::read(&path).expect("read"), b"syncedabcd");
    }

    #[test]
    fn handles_of_one_file_share_unsynced_writes_across_a_rename() {
        let temp = tempfile::tempdir().expect("tempdir");
        let (from, to) = (temp.path().join("a"), temp.path().join("b"));
        let fs = UnsyncedApartFileSystem::new(SyncMode::Persist);
        let writer = fs.open(&from, OpenMode::CreateNew).expect("create");
        writer.write_at(b"pending", 0).expect("write");
        fs.rename(&from, &to).expect("rename");
        let reader = fs.open(&to, OpenMode::Read).expect("open");
        let mut seen = vec![0u8; 7];
        assert_eq!(reader.read_at(&mut seen, 0).expect("read"), 7);
        assert_eq!(&seen, b"pending");
        assert!(reader.write_at(b"x", 0).is_err(), "a read-only handle refuses writes");
    }

    #[test]
    fn skipped_syncs_leave_recent_writes_unsynced() {
        let temp = tempfile::tempdir().expect("tempdir");
        let path = temp.path().join("log");
        let fs = UnsyncedApartFileSystem::new(SyncMode::Skip { write_back: Duration::from_secs(3_600) });
        let file = fs.open(&path, OpenMode::Create).expect("create");
        file.write_at(b"acknowledged", 0).expect("write");
        file.sync_data().expect("a skipped sync reports success");
        drop(fs);
        drop(file);
        assert_eq!(std::fs::read(&path).expect("read"), b"", "the defect lost a write it reported durable");
    }
}
