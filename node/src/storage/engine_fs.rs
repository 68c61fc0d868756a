//! raft-engine on the file-system seam.
//!
//! [`EngineFileSystem`] implements `raft_engine::env::FileSystem` over an
//! `Arc<dyn FileSystem>`, so every byte of the Raft log goes through the seam (real disk in
//! production, [`crate::fs::memory::MemoryFileSystem`] in tests and the simulator).
//!
//! raft-engine still uses `std::fs` for its *directory*: it lists the log directory to find
//! its files on recovery, creates it, keeps a `LOCK` file in it and opens it to fsync it. When
//! the seam is not the real disk, the adapter therefore mirrors every file *name* onto the real
//! directory (`mirror_names`): creating a log file also creates an empty placeholder at the
//! same real path, and deletes and renames are applied to the placeholder too. The contents
//! live only in the seam. With the real file system the seam and the directory are the same
//! thing and no mirroring happens.
//!
//! raft-engine panics when a sync fails (on purpose: an fsync error may have lost data). Riffle
//! stops the node instead (`super::failstop`): a failed read, write or sync of a log file trips
//! the node's [`FailStop`] and *fences* the engine ([`EngineFence`]): from then on every
//! operation fails except `sync`, which does nothing — so the failed sync itself reports
//! success to raft-engine, and the log writer, which checks the latch after every write before
//! it acknowledges anything, turns that write into an error. A simulated crash fences the
//! engine the same way, so that the dead engine can be dropped without panicking and without
//! touching the disk.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use protobuf::well_known_types::BytesValue;
use raft_engine::env::{Handle, Permission, WriteExt};

use crate::fs::{FileHandle, FileSystem, OpenMode};
use crate::storage::error::{IoResultExt, StorageError};
use crate::storage::failstop::FailStop;

/// Bytes at the start of every raft-engine entry that hold its log index (big-endian).
pub const ENTRY_INDEX_BYTES: usize = 8;

/// The codec of Riffle's raft-engine entries: a `BytesValue` whose first
/// [`ENTRY_INDEX_BYTES`] bytes are the log index, big-endian, followed by the caller's payload.
pub struct EntryCodec;

impl EntryCodec {
    /// Builds an entry for log `index` carrying `payload`.
    pub fn encode(index: u64, payload: &[u8]) -> BytesValue {
        let mut value = Vec::with_capacity(ENTRY_INDEX_BYTES + payload.len());
        value.extend_from_slice(&index.to_be_bytes());
        value.extend_from_slice(payload);
        let mut entry = BytesValue::new();
        entry.value = value;
        entry
    }

    /// The payload of an entry (everything after the index).
    pub fn payload(entry: &BytesValue) -> &[u8] {
        entry.value.get(ENTRY_INDEX_BYTES..).unwrap_or_default()
    }
}

impl raft_engine::MessageExt for EntryCodec {
    type Entry = BytesValue;

    fn index(entry: &BytesValue) -> u64 {
        let prefix: [u8; ENTRY_INDEX_BYTES] = entry
            .value
            .get(..ENTRY_INDEX_BYTES)
            .and_then(|bytes| bytes.try_into().ok())
            .expect("every raft-engine entry is built by EntryCodec::encode with its index first");
        u64::from_be_bytes(prefix)
    }
}

/// Cuts an engine off from its files once a storage error stopped its node, or once the
/// simulator has declared the node dead.
#[derive(Debug, Clone, Default)]
pub struct EngineFence {
    fenced: Arc<AtomicBool>,
    failstop: FailStop,
}

impl EngineFence {
    fn new(failstop: FailStop) -> Self {
        EngineFence { fenced: Arc::default(), failstop }
    }

    /// From now on every file operation of the engine fails, except `sync`, which succeeds
    /// without doing anything (raft-engine panics on sync errors, also while dropping).
    pub fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// The node's storage-failure latch, which this fence trips.
    pub fn failstop(&self) -> &FailStop {
        &self.failstop
    }

    /// Passes `result` through; an error in it is a storage failure: the node's latch trips
    /// and the engine is fenced.
    fn watch<T>(&self, what: &str, result: io::Result<T>) -> io::Result<T> {
        if let Err(error) = &result {
            self.failstop.trip(format!("raft log {what}: {error}"));
            self.fence();
        }
        result
    }

    fn check(&self) -> io::Result<()> {
        if self.is_fenced() {
            Err(io::Error::other("raft-engine file system fenced after a simulated crash"))
        } else {
            Ok(())
        }
    }
}

/// `raft_engine::env::FileSystem` over the seam; see the module docs for `mirror_names`.
#[derive(Debug)]
pub struct EngineFileSystem {
    fs: Arc<dyn FileSystem>,
    mirror_names: bool,
    fence: EngineFence,
}

impl EngineFileSystem {
    /// `mirror_names` must be true whenever `fs` is not the real disk under the engine's
    /// directory (raft-engine lists that real directory to find its files).
    /// Storage errors trip `failstop`.
    pub fn new(fs: Arc<dyn FileSystem>, mirror_names: bool, failstop: FailStop) -> Self {
        Self { fs, mirror_names, fence: EngineFence::new(failstop) }
    }

    /// The fence of this file system and every handle it opens.
    pub fn fence(&self) -> EngineFence {
        self.fence.clone()
    }
}

/// An open raft-engine file.
#[derive(Debug)]
pub struct EngineHandle {
    file: Arc<dyn FileHandle>,
    fence: EngineFence,
}

impl Handle for EngineHandle {
    fn truncate(&self, offset: usize) -> io::Result<()> {
        self.fence.check()?;
        self.fence.watch("truncate", self.file.set_len(offset as u64))
    }

    fn file_size(&self) -> io::Result<usize> {
        self.fence.check()?;
        let len = self.fence.watch("size", self.file.len())?;
        usize::try_from(len).map_err(|_| io::Error::other("file size does not fit usize"))
    }

    fn sync(&self) -> io::Result<()> {
        if self.fence.is_fenced() {
            // The node is stopping or dead: nothing it wrote since reached the disk for sure.
            return Ok(());
        }
        // A failed sync trips the latch and reports success: raft-engine would panic on the
        // error, and the log writer refuses the write once the latch is tripped.
        let _ = self.fence.watch("fsync", self.file.sync_data());
        Ok(())
    }
}

/// A cursor over an [`EngineHandle`]; raft-engine's reader and writer.
#[derive(Debug)]
pub struct EngineFile {
    handle: Arc<EngineHandle>,
    offset: u64,
}

impl Read for EngineFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.handle.fence.check()?;
        let count = self.handle.fence.watch("read", self.handle.file.read_at(buf, self.offset))?;
        self.offset += count as u64;
        Ok(count)
    }
}

impl Write for EngineFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.handle.fence.check()?;
        self.handle.fence.watch("write", self.handle.file.write_at(buf, self.offset))?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Durability is `Handle::sync`; there is no user-space buffer to flush.
        Ok(())
    }
}

impl Seek for EngineFile {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        let target = match position {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.offset.checked_add_signed(delta),
            SeekFrom::End(delta) => self.handle.file.len()?.checked_add_signed(delta),
        };
        self.offset =
            target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the file"))?;
        Ok(self.offset)
    }
}

impl WriteExt for EngineFile {
    fn truncate(&mut self, offset: usize) -> io::Result<()> {
        self.handle.fence.check()?;
        self.handle.fence.watch("truncate", self.handle.file.set_len(offset as u64))?;
        self.offset = offset as u64;
        Ok(())
    }

    fn allocate(&mut self, _offset: usize, _size: usize) -> io::Result<()> {
        // Preallocation is an optimisation the seam does not offer; raft-engine truncates the
        // file to its written length on close either way.
        Ok(())
    }
}

fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl raft_engine::env::FileSystem for EngineFileSystem {
    type Handle = EngineHandle;
    type Reader = EngineFile;
    type Writer = EngineFile;

    fn create<P: AsRef<Path>>(&self, path: P) -> io::Result<EngineHandle> {
        self.fence.check()?;
        let path = path.as_ref();
        let file = self.fence.watch("create", self.fs.open(path, OpenMode::Create))?;
        if self.mirror_names {
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        }
        Ok(EngineHandle { file, fence: self.fence.clone() })
    }

    fn open<P: AsRef<Path>>(&self, path: P, permission: Permission) -> io::Result<EngineHandle> {
        self.fence.check()?;
        let mode = match permission {
            Permission::ReadOnly => OpenMode::Read,
            Permission::ReadWrite => OpenMode::ReadWrite,
        };
        let file = self.fs.open(path.as_ref(), mode)?;
        Ok(EngineHandle { file, fence: self.fence.clone() })
    }

    fn delete<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.fence.check()?;
        let path = path.as_ref();
        self.fs.remove_file(path)?;
        if self.mirror_names {
            // The seam is the truth; a placeholder that is already gone is not an error.
            ignore_not_found(std::fs::remove_file(path))?;
        }
        Ok(())
    }

    fn rename<P: AsRef<Path>>(&self, source: P, target: P) -> io::Result<()> {
        self.fence.check()?;
        let (source, target) = (source.as_ref(), target.as_ref());
        self.fs.rename(source, target)?;
        if self.mirror_names {
            std::fs::rename(source, target)?;
        }
        Ok(())
    }

    fn new_reader(&self, handle: Arc<EngineHandle>) -> io::Result<EngineFile> {
        Ok(EngineFile { handle, offset: 0 })
    }

    fn new_writer(&self, handle: Arc<EngineHandle>) -> io::Result<EngineFile> {
        Ok(EngineFile { handle, offset: 0 })
    }
}

/// The raft-engine instance of a node.
pub type RaftEngine = raft_engine::Engine<EngineFileSystem>;

/// Size at which raft-engine starts a new log file.
pub const ENGINE_FILE_BYTES_TARGET: u64 = 64 << 20;
/// Size of the append queue above which `purge_expired_files` rewrites the entries that hold
/// old files back (the groups that lag behind), so their files can be deleted.
pub const ENGINE_PURGE_THRESHOLD_BYTES: u64 = 1 << 30;

/// The raft-engine configuration Riffle uses for `dir`. Each choice:
/// - `format_version = V2`: the current format (signed file headers).
/// - `recovery_mode = TolerateTailCorruption`: a torn or partial record at the end of the
///   newest file was never synced, hence never acknowledged; it is dropped on recovery.
///   Damage anywhere else still fails the open.
/// - `recovery_threads = 1`: recovery reads files in one thread, so the simulator's run
///   does not depend on thread scheduling; at Riffle's log sizes (compacted as soon as the
///   segment store is durable) one thread is fast enough.
/// - `batch_compression_threshold = 0`: no LZ4. Entries are client records, often already
///   compressed, and compression would spend CPU on the acknowledgement path.
/// - `target_file_size` = [`ENGINE_FILE_BYTES_TARGET`], `purge_threshold` =
///   [`ENGINE_PURGE_THRESHOLD_BYTES`]: the log is purged once segments are durable, so it
///   stays small; the threshold is headroom for a lagging follower before rewrites start.
/// - `enable_log_recycle = false`: recycling renames purged files and overwrites them, which
///   keeps stale bytes around in the seam and in the mirrored directory; a new file per
///   64 MiB is cheap.
pub fn engine_config(dir: &Path) -> Result<raft_engine::Config, StorageError> {
    let dir =
        dir.to_str().ok_or_else(|| StorageError::InvalidConfig(format!("{} is not valid UTF-8", dir.display())))?;
    Ok(raft_engine::Config {
        dir: dir.to_string(),
        format_version: raft_engine::Version::V2,
        recovery_mode: raft_engine::RecoveryMode::TolerateTailCorruption,
        recovery_threads: 1,
        batch_compression_threshold: raft_engine::ReadableSize(0),
        target_file_size: raft_engine::ReadableSize(ENGINE_FILE_BYTES_TARGET),
        purge_threshold: raft_engine::ReadableSize(ENGINE_PURGE_THRESHOLD_BYTES),
        enable_log_recycle: false,
        prefill_for_recycle: false,
        ..raft_engine::Config::default()
    })
}

/// Opens (recovering) the raft-engine instance in `dir` on the seam `fs`. Set `mirror_names`
/// when `fs` is not the real disk (see the module docs). Blocking: call it from a thread that
/// may block.
pub fn open_engine(fs: Arc<dyn FileSystem>, dir: &Path, mirror_names: bool) -> Result<RaftEngine, StorageError> {
    open_engine_with_fence(fs, dir, mirror_names, FailStop::default()).map(|(engine, _fence)| engine)
}

/// [`open_engine`], also returning the fence the simulator pulls when it crashes the node.
pub fn open_engine_with_fence(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    mirror_names: bool,
    failstop: FailStop,
) -> Result<(RaftEngine, EngineFence), StorageError> {
    let config = engine_config(dir)?;
    fs.create_dir_all(dir).context(|| format!("create raft-engine directory {}", dir.display()))?;
    if mirror_names {
        std::fs::create_dir_all(dir).context(|| format!("create mirrored raft-engine directory {}", dir.display()))?;
    }
    let engine_fs = Arc::new(EngineFileSystem::new(fs, mirror_names, failstop));
    let fence = engine_fs.fence();
    let engine = raft_engine::Engine::open_with_file_system(config, engine_fs)?;
    Ok((engine, fence))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::memory::MemoryFileSystem;
    use crate::fs::real::RealFileSystem;
    use raft_engine::LogBatch;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const REGIONS: [u64; 2] = [7, 9];

    fn payload(region: u64, index: u64) -> Vec<u8> {
        format!("region {region} entry {index}").into_bytes()
    }

    fn write_entries(engine: &RaftEngine, indexes: std::ops::RangeInclusive<u64>, sync: bool) {
        let mut batch = LogBatch::default();
        for region in REGIONS {
            let entries: Vec<BytesValue> =
                indexes.clone().map(|index| EntryCodec::encode(index, &payload(region, index))).collect();
            batch.add_entries::<EntryCodec>(region, &entries).expect("add entries");
        }
        engine.write(&mut batch, sync).expect("write");
    }

    fn read_entries(engine: &RaftEngine, region: u64) -> Vec<BytesValue> {
        let (Some(first), Some(last)) = (engine.first_index(region), engine.last_index(region)) else {
            return Vec::new();
        };
        let mut entries = Vec::new();
        engine.fetch_entries_to::<EntryCodec>(region, first, last + 1, None, &mut entries).expect("fetch");
        entries
    }

    fn assert_prefix_with_synced(engine: &RaftEngine, synced_last: u64, context: &str) {
        for region in REGIONS {
            let entries = read_entries(engine, region);
            assert!(
                entries.len() as u64 >= synced_last,
                "{context}: region {region} lost synced entries ({} left)",
                entries.len()
            );
            for (position, entry) in entries.iter().enumerate() {
                let index = position as u64 + 1;
                assert_eq!(<EntryCodec as raft_engine::MessageExt>::index(entry), index);
                assert_eq!(EntryCodec::payload(entry), payload(region, index));
            }
        }
    }

    #[test]
    fn synced_entries_survive_a_memory_crash() {
        for seed in 0..16u64 {
            let names = tempfile::tempdir().expect("tempdir");
            let dir = names.path().join("raft");
            let memory = MemoryFileSystem::new();
            let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());

            let (engine, fence) = open_engine_with_fence(fs.clone(), &dir, true, FailStop::default()).expect("open");
            write_entries(&engine, 1..=5, true);
            write_entries(&engine, 6..=8, false);
            // Crash with the engine still open (its close would sync), as a process death
            // would; fenced, the dead engine drops without touching the disk.
            fence.fence();
            memory.crash(&mut ChaCha8Rng::seed_from_u64(seed));
            drop(engine);

            let engine = open_engine(fs.clone(), &dir, true).expect("reopen after crash");
            assert_prefix_with_synced(&engine, 5, &format!("seed {seed}"));
            // The recovered engine accepts new writes after whatever survived.
            let next = engine.last_index(REGIONS[0]).expect("entries survive") + 1;
            write_entries(&engine, next..=next + 1, true);
            drop(engine);
            let engine = open_engine(fs, &dir, true).expect("reopen again");
            assert_prefix_with_synced(&engine, next + 1, &format!("seed {seed}, second open"));
        }
    }

    #[test]
    fn a_failed_sync_stops_the_node_instead_of_panicking() {
        let names = tempfile::tempdir().expect("tempdir");
        let dir = names.path().join("raft");
        let memory = MemoryFileSystem::new();
        let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
        let failstop = FailStop::default();
        let (engine, fence) = open_engine_with_fence(fs.clone(), &dir, true, failstop.clone()).expect("open");
        write_entries(&engine, 1..=3, true);
        memory.fail_after(crate::fs::memory::IoFault::Sync, 1);
        // raft-engine hears of no error (it would panic); the latch and the fence have it.
        write_entries(&engine, 4..=5, true);
        assert!(failstop.reason().is_some_and(|reason| reason.contains("fsync")), "{:?}", failstop.reason());
        assert!(fence.is_fenced());
        let mut batch = LogBatch::default();
        batch.add_entries::<EntryCodec>(REGIONS[0], &[EntryCodec::encode(6, b"x")]).expect("add");
        assert!(engine.write(&mut batch, true).is_err(), "a fenced engine writes nothing more");
        drop(engine);
        // The failed sync lost entries 4 and 5 for good; a restart finds 1..=3.
        memory.crash(&mut ChaCha8Rng::seed_from_u64(1));
        let engine = open_engine(fs, &dir, true).expect("reopen");
        assert_prefix_with_synced(&engine, 3, "after the failed sync");
        assert_eq!(engine.last_index(REGIONS[0]), Some(3));
    }

    #[test]
    fn engine_on_the_real_file_system_reopens() {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("raft");
        let fs: Arc<dyn FileSystem> = Arc::new(RealFileSystem::new());
        let engine = open_engine(fs.clone(), &dir, false).expect("open");
        write_entries(&engine, 1..=3, true);
        drop(engine);
        let engine = open_engine(fs, &dir, false).expect("reopen");
        assert_prefix_with_synced(&engine, 3, "real fs");
        assert_eq!(engine.last_index(REGIONS[1]), Some(3));
    }

    #[test]
    fn mirrored_names_follow_the_seam() {
        let names = tempfile::tempdir().expect("tempdir");
        let memory: Arc<dyn FileSystem> = Arc::new(MemoryFileSystem::new());
        let engine_fs = EngineFileSystem::new(memory.clone(), true, FailStop::default());
        let dir = names.path();
        memory.create_dir_all(dir).expect("mkdir");
        use raft_engine::env::FileSystem as _;
        let (first, second) = (dir.join("first"), dir.join("second"));
        engine_fs.create(&first).expect("create");
        assert!(first.exists() && memory.exists(&first));
        engine_fs.rename(&first, &second).expect("rename");
        assert!(!first.exists() && second.exists() && memory.exists(&second));
        engine_fs.delete(&second).expect("delete");
        assert!(!second.exists() && !memory.exists(&second));
    }
}
