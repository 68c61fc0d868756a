//! In-memory file system with crash semantics.
//!
//! Each file keeps two images: the *durable* bytes (what survives a crash) and the *current*
//! bytes (what reads see), plus the ordered list of changes made since the last sync.
//! [`MemoryFileSystem::crash`] models a power loss: every file goes back to its durable image,
//! except that the disk may have already persisted a prefix of the unsynced changes, the last
//! of which may be torn (only a prefix of its bytes reached the platter).
//!
//! Simplifications, on purpose:
//! - Directory entries (create, rename, remove, directories themselves) are durable at once;
//!   `sync_dir` is a no-op. Only file *contents* are subject to crash loss.
//! - Unsynced changes survive in order (a prefix). Real disks may reorder writes between two
//!   flushes; the stores above never depend on the order of unsynced writes, so a prefix is
//!   the interesting case (torn tails) without making every test nondeterministic in new ways.
//!
//! Handles opened before a crash fail every operation afterwards, so a task that survived the
//! "process death" cannot write through a stale handle. Everything is kept in `BTreeMap`s:
//! nothing depends on hash order, so a seeded run is reproducible.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;

use super::{FileHandle, FileSystem, OpenMode};

/// Chance in percent that a crash keeps some of a file's unsynced changes (otherwise the file
/// goes back to exactly its durable bytes).
const CRASH_KEEP_UNSYNCED_PERCENT: u32 = 50;

/// One change made to a file since its last sync, replayed in order on a crash.
#[derive(Debug, Clone)]
enum PendingChange {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    unsynced: Vec<PendingChange>,
}

impl Inode {
    /// Makes every unsynced change durable. (`durable` plus the unsynced changes in order is
    /// always `current`, unless a sync failed and lost some of them.)
    fn sync(&mut self) {
        for change in std::mem::take(&mut self.unsynced) {
            // Replaying a change already applied once to `current` cannot fail.
            let replayed = match change {
                PendingChange::Write { offset, bytes } => write_into(&mut self.durable, offset, &bytes),
                PendingChange::SetLen(len) => set_len_of(&mut self.durable, len),
            };
            debug_assert!(replayed.is_ok(), "a change applied before replays again");
        }
    }

    /// A failed fsync, as Linux has it: the changes it could not write never reach the disk,
    /// not even through a later fsync that succeeds, while reads still see them until a crash.
    fn lose_unsynced(&mut self) {
        self.unsynced.clear();
    }
}

/// The operation an injected storage error hits (see [`MemoryFileSystem::fail_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoFault {
    /// A read returns EIO.
    Read,
    /// A write returns EIO and writes nothing.
    Write,
    /// An fsync returns EIO and the changes it should have made durable are lost for good.
    Sync,
}

fn injected(fault: IoFault) -> io::Error {
    io::Error::other(format!("injected {fault:?} error (EIO)"))
}

fn write_into(content: &mut Vec<u8>, offset: u64, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        // As pwrite: writing nothing changes nothing, even past the end.
        return Ok(());
    }
    let start = usize::try_from(offset).map_err(|_| invalid_input("offset does not fit usize"))?;
    let end = start.checked_add(bytes.len()).ok_or_else(|| invalid_input("write end overflows"))?;
    if content.len() < end {
        content.resize(end, 0);
    }
    content[start..end].copy_from_slice(bytes);
    Ok(())
}

fn set_len_of(content: &mut Vec<u8>, len: u64) -> io::Result<()> {
    let len = usize::try_from(len).map_err(|_| invalid_input("length does not fit usize"))?;
    content.resize(len, 0);
    Ok(())
}

fn invalid_input(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_string())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file or directory", path.display()))
}

/// Normalises a path lexically (drops `.`, resolves `..`), so `a/./b` and `a/b` are one key.
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normalized.pop();
            }
            other => normalized.push(other.as_os_str()),
        }
    }
    normalized
}

#[derive(Debug, Default)]
struct Namespace {
    files: BTreeMap<PathBuf, Arc<Mutex<Inode>>>,
    directories: BTreeSet<PathBuf>,
}

impl Namespace {
    fn directory_exists(&self, dir: &Path) -> bool {
        dir.as_os_str().is_empty() || dir.parent().is_none() || self.directories.contains(dir)
    }

    fn parent_exists(&self, path: &Path) -> bool {
        match path.parent() {
            Some(parent) => self.directory_exists(parent),
            None => true,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    namespace: Mutex<Namespace>,
    /// Bumped by every crash; handles remember the value they were opened under.
    generation: AtomicU64,
    /// Armed storage errors: each fails the operation of its kind when its count runs out.
    faults: Mutex<Vec<(IoFault, u64)>>,
}

impl Shared {
    /// Counts one operation of kind `fault`; fails it if an armed error runs out on it.
    fn check(&self, fault: IoFault) -> io::Result<()> {
        let mut faults = lock(&self.faults);
        let mut fired = false;
        faults.retain_mut(|(kind, remaining)| {
            if *kind != fault || fired {
                return true;
            }
            *remaining = remaining.saturating_sub(1);
            fired = *remaining == 0;
            !fired
        });
        if fired {
            Err(injected(fault))
        } else {
            Ok(())
        }
    }
}

/// An in-memory [`FileSystem`] that can simulate a crash. Cheap to clone; clones share files.
#[derive(Debug, Clone, Default)]
pub struct MemoryFileSystem {
    shared: Arc<Shared>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data (bytes, maps) in a consistent state:
    // every mutation is a single assignment or resize, so the poison flag carries no meaning.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryFileSystem {
    pub fn new() -> Self {
        Self::default()
    }

    fn namespace(&self) -> MutexGuard<'_, Namespace> {
        lock(&self.shared.namespace)
    }

    /// Simulates a power loss. Every file's content goes back to its durable bytes, except
    /// that, with some probability per file, a prefix of its unsynced changes survives and the
    /// last surviving write may be torn (only a prefix of its bytes kept). Handles opened
    /// before the crash fail from now on. Deterministic for a given `rng` state.
    pub fn crash(&self, rng: &mut impl Rng) {
        let namespace = self.namespace();
        // Bumped before any file is touched and checked under each file's lock, so a write
        // either lands before the crash (and is treated as unsynced) or fails.
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        for inode in namespace.files.values() {
            let mut inode = lock(inode);
            let mut survivor = inode.durable.clone();
            let pending = std::mem::take(&mut inode.unsynced);
            if !pending.is_empty() && rng.gen_ratio(CRASH_KEEP_UNSYNCED_PERCENT, 100) {
                let kept_count = rng.gen_range(1..=pending.len());
                for (position, change) in pending.iter().take(kept_count).enumerate() {
                    let is_last = position + 1 == kept_count;
                    // Replaying a change already applied once to `current` cannot fail.
                    let replayed = match change {
                        PendingChange::Write { offset, bytes } if is_last => {
                            let torn_len = rng.gen_range(0..=bytes.len());
                            write_into(&mut survivor, *offset, &bytes[..torn_len])
                        }
                        PendingChange::Write { offset, bytes } => write_into(&mut survivor, *offset, bytes),
                        PendingChange::SetLen(len) => set_len_of(&mut survivor, *len),
                    };
                    debug_assert!(replayed.is_ok(), "a change applied before replays again");
                }
            }
            inode.current.clone_from(&survivor);
            inode.durable = survivor;
        }
    }

    /// Arms a storage error: the `operations`-th next operation of kind `fault` (over every
    /// file; 1 is the very next) fails with EIO. For the simulator's storage-fault family.
    pub fn fail_after(&self, fault: IoFault, operations: u64) {
        lock(&self.shared.faults).push((fault, operations.max(1)));
    }

    /// Disarms every storage error not fired yet.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Flips every bit of the byte at `offset` in both the durable and the current image,
    /// as a disk that returns damaged data would. For tests of checksum handling.
    pub fn corrupt_byte(&self, path: &Path, offset: u64) -> io::Result<()> {
        let namespace = self.namespace();
        let inode = namespace.files.get(&normalize(path)).ok_or_else(|| not_found(path))?;
        let mut inode = lock(inode);
        let index = usize::try_from(offset).map_err(|_| invalid_input("offset too large"))?;
        if index >= inode.current.len() {
            return Err(invalid_input("corrupt_byte offset is past the end of the file"));
        }
        inode.current[index] ^= 0xff;
        if let Some(byte) = inode.durable.get_mut(index) {
            *byte ^= 0xff;
        }
        Ok(())
    }

    /// Zeroes `len` bytes from `offset` (clipped to the file) in both images, as a sector the
    /// disk lost or returns stale would read in an append-only file. For tests of checksum
    /// handling.
    pub fn zero_range(&self, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        let namespace = self.namespace();
        let inode = namespace.files.get(&normalize(path)).ok_or_else(|| not_found(path))?;
        let mut inode = lock(inode);
        let start = usize::try_from(offset).map_err(|_| invalid_input("offset too large"))?;
        let end = start.saturating_add(usize::try_from(len).map_err(|_| invalid_input("length too large"))?);
        if start >= inode.current.len() {
            return Err(invalid_input("zero_range offset is past the end of the file"));
        }
        let current_end = end.min(inode.current.len());
        inode.current[start..current_end].fill(0);
        let durable_end = end.min(inode.durable.len());
        if start < durable_end {
            inode.durable[start..durable_end].fill(0);
        }
        Ok(())
    }

    /// Every file under `dir`, at any depth, with its durable length. For tests that damage
    /// stored data.
    pub fn files_under(&self, dir: &Path) -> Vec<(PathBuf, u64)> {
        let dir = normalize(dir);
        let namespace = self.namespace();
        namespace
            .files
            .iter()
            .filter(|(path, _)| path.starts_with(&dir))
            .map(|(path, inode)| (path.clone(), lock(inode).durable.len() as u64))
            .collect()
    }

    /// The durable bytes of a file (what a crash now would keep at least). For tests.
    pub fn durable_content(&self, path: &Path) -> io::Result<Vec<u8>> {
        let namespace = self.namespace();
        let inode = namespace.files.get(&normalize(path)).ok_or_else(|| not_found(path))?;
        let content = lock(inode).durable.clone();
        Ok(content)
    }
}

#[derive(Debug)]
struct MemoryFile {
    inode: Arc<Mutex<Inode>>,
    shared: Arc<Shared>,
    generation: u64,
    writable: bool,
}

impl MemoryFile {
    /// Locks the file's inode, failing if the handle predates a crash.
    fn inode(&self) -> io::Result<MutexGuard<'_, Inode>> {
        let inode = lock(&self.inode);
        if self.shared.generation.load(Ordering::SeqCst) != self.generation {
            return Err(io::Error::other("stale file handle: opened before a simulated crash"));
        }
        Ok(inode)
    }

    fn writable_inode(&self) -> io::Result<MutexGuard<'_, Inode>> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "file opened read-only"));
        }
        self.inode()
    }
}

impl FileHandle for MemoryFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let inode = self.inode()?;
        self.shared.check(IoFault::Read)?;
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= inode.current.len() {
            return Ok(0);
        }
        let count = buf.len().min(inode.current.len() - start);
        buf[..count].copy_from_slice(&inode.current[start..start + count]);
        Ok(count)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut inode = self.writable_inode()?;
        self.shared.check(IoFault::Write)?;
        write_into(&mut inode.current, offset, buf)?;
        if !buf.is_empty() {
            inode.unsynced.push(PendingChange::Write { offset, bytes: buf.to_vec() });
        }
        Ok(())
    }

    fn write_all_at_and_sync(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let mut inode = self.writable_inode()?;
        self.shared.check(IoFault::Write)?;
        let mut position = offset;
        for buf in bufs {
            write_into(&mut inode.current, position, buf)?;
            if !buf.is_empty() {
                inode.unsynced.push(PendingChange::Write { offset: position, bytes: buf.to_vec() });
            }
            position += buf.len() as u64;
        }
        if let Err(error) = self.shared.check(IoFault::Sync) {
            inode.lose_unsynced();
            return Err(error);
        }
        inode.sync();
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut inode = self.inode()?;
        if let Err(error) = self.shared.check(IoFault::Sync) {
            inode.lose_unsynced();
            return Err(error);
        }
        inode.sync();
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.inode()?.current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut inode = self.writable_inode()?;
        set_len_of(&mut inode.current, len)?;
        inode.unsynced.push(PendingChange::SetLen(len));
        Ok(())
    }
}

impl FileSystem for MemoryFileSystem {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        let path = normalize(path);
        let mut namespace = self.namespace();
        if namespace.directories.contains(&path) {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{} is a directory", path.display())));
        }
        let existing = namespace.files.get(&path).cloned();
        let inode = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} already exists", path.display())))
            }
            (_, Some(inode)) => inode,
            (OpenMode::Read | OpenMode::ReadWrite, None) => return Err(not_found(&path)),
            (OpenMode::Create | OpenMode::CreateNew, None) => {
                if !namespace.parent_exists(&path) {
                    return Err(not_found(&path));
                }
                let inode = Arc::new(Mutex::new(Inode::default()));
                namespace.files.insert(path, inode.clone());
                inode
            }
        };
        Ok(Arc::new(MemoryFile {
            inode,
            shared: self.shared.clone(),
            generation: self.shared.generation.load(Ordering::SeqCst),
            writable: mode != OpenMode::Read,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        match self.namespace().files.remove(&path) {
            Some(_) => Ok(()),
            None => Err(not_found(&path)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (normalize(from), normalize(to));
        let mut namespace = self.namespace();
        if !namespace.files.contains_key(&from) || !namespace.parent_exists(&to) {
            return Err(not_found(&from));
        }
        if namespace.directories.contains(&to) {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{} is a directory", to.display())));
        }
        let inode = namespace.files.remove(&from).expect("presence was checked under the same lock");
        namespace.files.insert(to, inode);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let path = normalize(path);
        let namespace = self.namespace();
        namespace.files.contains_key(&path) || namespace.directories.contains(&path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut namespace = self.namespace();
        for ancestor in path.ancestors() {
            if ancestor.as_os_str().is_empty() || ancestor.parent().is_none() {
                continue;
            }
            if namespace.files.contains_key(ancestor) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} is a file", ancestor.display())));
            }
        }
        for ancestor in path.ancestors() {
            if ancestor.as_os_str().is_empty() || ancestor.parent().is_none() {
                continue;
            }
            namespace.directories.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = normalize(dir);
        let namespace = self.namespace();
        if !namespace.directory_exists(&dir) {
            return Err(not_found(&dir));
        }
        // BTreeMap order over full paths with a common parent is the order of the names.
        let names = namespace
            .files
            .keys()
            .filter(|path| path.parent() == Some(dir.as_path()))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_string))
            .collect();
        Ok(names)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let dir = normalize(dir);
        let mut namespace = self.namespace();
        if !namespace.directories.contains(&dir) {
            return Err(not_found(&dir));
        }
        namespace.files.retain(|path, _| !path.starts_with(&dir));
        namespace.directories.retain(|path| !path.starts_with(&dir));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // Directory entries are durable at once in this model.
        let dir = normalize(dir);
        if self.namespace().directory_exists(&dir) {
            Ok(())
        } else {
            Err(not_found(&dir))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::conformance;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const ROOT: &str = "/memory-root";

    fn make() -> (Arc<dyn FileSystem>, PathBuf) {
        let fs = MemoryFileSystem::new();
        fs.create_dir_all(Path::new(ROOT)).expect("memory mkdir");
        (Arc::new(fs), PathBuf::from(ROOT))
    }

    #[test]
    fn conformance_suite() {
        conformance::run_all(&make);
    }

    fn setup() -> (MemoryFileSystem, PathBuf) {
        let fs = MemoryFileSystem::new();
        let root = PathBuf::from(ROOT);
        fs.create_dir_all(&root).expect("memory mkdir");
        (fs, root)
    }

    fn read_all(fs: &MemoryFileSystem, path: &Path) -> Vec<u8> {
        let file = fs.open(path, OpenMode::Read).expect("open");
        let mut buf = vec![0; file.len().expect("len") as usize];
        let read = file.read_at(&mut buf, 0).expect("read");
        assert_eq!(read, buf.len());
        buf
    }

    #[test]
    fn crash_keeps_synced_bytes_and_loses_or_tears_unsynced_ones() {
        for seed in 0..200u64 {
            let (fs, root) = setup();
            let path = root.join("log");
            let file = fs.open(&path, OpenMode::CreateNew).expect("create");
            file.write_all_at_and_sync(&[b"durable-"], 0).expect("sync write");
            file.write_at(b"first", 8).expect("write");
            file.write_at(b"second", 13).expect("write");

            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            fs.crash(&mut rng);

            let survived = read_all(&fs, &path);
            let full: &[u8] = b"durable-firstsecond";
            assert!(survived.len() >= 8, "seed {seed}: synced bytes lost");
            assert_eq!(
                &survived[..],
                &full[..survived.len()],
                "seed {seed}: crash kept something that is not a prefix of the writes"
            );
            assert_eq!(fs.durable_content(&path).expect("durable"), survived);
        }
    }

    #[test]
    fn crash_outcomes_cover_lost_torn_and_kept() {
        let mut lengths = BTreeSet::new();
        for seed in 0..200u64 {
            let (fs, root) = setup();
            let path = root.join("log");
            let file = fs.open(&path, OpenMode::CreateNew).expect("create");
            file.write_at(b"0123456789", 0).expect("write");
            fs.crash(&mut ChaCha8Rng::seed_from_u64(seed));
            lengths.insert(read_all(&fs, &path).len());
        }
        assert!(lengths.contains(&0), "some crash must lose the write");
        assert!(lengths.contains(&10), "some crash must keep the write");
        assert!(lengths.iter().any(|len| (1..10).contains(len)), "some crash must tear it");
    }

    #[test]
    fn handles_from_before_a_crash_fail() {
        let (fs, root) = setup();
        let path = root.join("file");
        let stale = fs.open(&path, OpenMode::CreateNew).expect("create");
        stale.write_all_at_and_sync(&[b"abc"], 0).expect("write");

        fs.crash(&mut ChaCha8Rng::seed_from_u64(1));

        assert!(stale.write_at(b"x", 0).is_err());
        assert!(stale.sync_data().is_err());
        let mut buf = [0; 3];
        assert!(stale.read_at(&mut buf, 0).is_err());
        let fresh = fs.open(&path, OpenMode::ReadWrite).expect("reopen");
        assert_eq!(fresh.read_at(&mut buf, 0).expect("read"), 3);
        assert_eq!(&buf, b"abc");
    }

    #[test]
    fn directory_entries_survive_a_crash() {
        let (fs, root) = setup();
        fs.open(&root.join("a"), OpenMode::CreateNew).expect("create");
        fs.open(&root.join("b"), OpenMode::CreateNew).expect("create");
        fs.rename(&root.join("b"), &root.join("c")).expect("rename");
        fs.crash(&mut ChaCha8Rng::seed_from_u64(7));
        assert_eq!(fs.list_dir(&root).expect("list"), vec!["a", "c"]);
    }

    #[test]
    fn set_len_is_undone_by_a_crash_unless_synced() {
        let (fs, root) = setup();
        let path = root.join("file");
        let file = fs.open(&path, OpenMode::CreateNew).expect("create");
        file.write_all_at_and_sync(&[b"abcdef"], 0).expect("write");
        file.set_len(2).expect("truncate");
        // Seed chosen freely: any outcome must be either the old or the new length.
        fs.crash(&mut ChaCha8Rng::seed_from_u64(3));
        let survived = read_all(&fs, &path);
        assert!(survived == b"abcdef" || survived == b"ab", "got {survived:?}");
    }

    #[test]
    fn corrupt_byte_flips_durable_and_current() {
        let (fs, root) = setup();
        let path = root.join("file");
        let file = fs.open(&path, OpenMode::CreateNew).expect("create");
        file.write_all_at_and_sync(&[b"abc"], 0).expect("write");
        fs.corrupt_byte(&path, 1).expect("corrupt");
        assert_eq!(read_all(&fs, &path), vec![b'a', b'b' ^ 0xff, b'c']);
        fs.crash(&mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(read_all(&fs, &path), vec![b'a', b'b' ^ 0xff, b'c']);
        assert!(fs.corrupt_byte(&path, 3).is_err());
    }
    #[test]
    fn zero_range_zeroes_both_images_within_the_file() {
        let (fs, root) = setup();
        let path = root.join("file");
        let file = fs.open(&path, OpenMode::CreateNew).expect("create");
        file.write_all_at_and_sync(&[b"abcdef"], 0).expect("write");
        fs.zero_range(&path, 4, 512).expect("zero");
        assert_eq!(read_all(&fs, &path), b"abcd\0\0");
        fs.crash(&mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(read_all(&fs, &path), b"abcd\0\0");
        assert!(fs.zero_range(&path, 6, 1).is_err());
    }

    #[test]
    fn a_failed_sync_loses_its_writes_for_good() {
        let (fs, root) = setup();
        let path = root.join("file");
        let file = fs.open(&path, OpenMode::CreateNew).expect("create");
        file.write_all_at_and_sync(&[b"abc"], 0).expect("write");
        file.write_at(b"def", 3).expect("write");
        fs.fail_after(IoFault::Sync, 1);
        assert!(file.sync_data().is_err());
        // Reads still see the lost bytes, and a later sync succeeds without saving them.
        assert_eq!(read_all(&fs, &path), b"abcdef");
        file.write_at(b"g", 6).expect("write");
        file.sync_data().expect("sync");
        assert_eq!(fs.durable_content(&path).expect("durable"), b"abc\0\0\0g");
        fs.crash(&mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(read_all(&fs, &path), b"abc\0\0\0g");
    }

    #[test]
    fn injected_errors_fire_once_on_the_counted_operation() {
        let (fs, root) = setup();
        let file = fs.open(&root.join("file"), OpenMode::CreateNew).expect("create");
        fs.fail_after(IoFault::Write, 2);
        file.write_at(b"a", 0).expect("first write");
        assert!(file.write_all_at_and_sync(&[b"b"], 1).is_err(), "the second write fails");
        file.write_at(b"c", 1).expect("third write");
        let mut buf = [0u8; 2];
        fs.fail_after(IoFault::Read, 1);
        assert!(file.read_at(&mut buf, 0).is_err());
        assert_eq!(file.read_at(&mut buf, 0).expect("read"), 2);
        assert_eq!(&buf, b"ac");
        fs.fail_after(IoFault::Read, 1);
        fs.clear_faults();
        file.read_at(&mut buf, 0).expect("disarmed");
    }
}
