//! The per-shard segment store: applied records in checksummed, append-only segment files.
//!
//! One [`SegmentStore`] per node owns one writer loop (started through
//! [`Executor::spawn_dedicated`]) shared by every shard on the node. [`ShardSegments::append`]
//! never blocks: it encodes the batch once, keeps it readable from memory, marks the shard
//! dirty and rings the writer. The writer group-commits: each round it takes every dirty
//! shard's pending bytes, issues one `write_all_at_and_sync` per touched file, then marks the
//! batches durable and wakes the [`ShardSegments::flush`] callers.
//!
//! Layout: `root/<group_id>/<first log index, 20 digits>.seg` until the shard's first
//! [`ShardSegments::import`]; from then on `root/<group_id>/gen-<n>/<first index>.seg`, with
//! `root/<group_id>/CURRENT` naming the live generation `n` (no `CURRENT`: generation 0, the
//! shard directory itself). An import writes and syncs a whole new generation, then switches
//! `CURRENT` (write `CURRENT.tmp`, sync, rename, sync the directory), so a crash leaves either
//! the old or the new contents. The batch encoding is in [`super::segment_format`] and
//! `docs/storage.md`.
//!
//! Invariants:
//! - batches are stored in strictly increasing log index; a record's sequence is
//!   `crate::sequence::of_record(index, position)`, so sequences strictly increase;
//! - stored arrival timestamps never decrease within a shard;
//! - the durable batches are a prefix of the appended ones, and within one shard a file is
//!   synced before the next file is written, so a crash can only tear the end of the newest
//!   file; recovery truncates such a torn tail and reports any other damage as corruption.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use riffle_proto::peer::{AppendBatch, StoredRecord};
use tokio::sync::{mpsc, oneshot};

use super::error::{IoResultExt, StorageError};
use super::failstop::FailStop;
use super::segment_format::{
    self, contains_valid_batch, decode_header, decode_records, encode_batch, peek_header, BatchHeader,
    BATCH_PAYLOAD_BYTES_MAX, BATCH_RECORDS_MAX,
};
use crate::fs::{FileHandle, FileSystem, OpenMode};
use crate::seam::Executor;

/// File-name suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// The file in a shard directory that names the live generation (absent: generation 0).
pub const CURRENT_FILE: &str = "CURRENT";
/// `CURRENT` is written under this name, synced, then renamed over `CURRENT`.
const CURRENT_TMP_FILE: &str = "CURRENT.tmp";
/// Generation `n >= 1` of a shard lives in the directory `gen-<n>` of the shard directory.
const GENERATION_DIR_PREFIX: &str = "gen-";
/// `CURRENT`: magic, format version (u16), reserved (u16), generation (u64), CRC32C of the
/// 16 bytes before it; integers little-endian.
const CURRENT_MAGIC: [u8; 4] = *b"RFSG";
const CURRENT_FORMAT_VERSION: u16 = 1;
const CURRENT_BYTES: usize = 20;

/// The Raft log entry that carried a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchLogId {
    pub term: u64,
    pub node_id: u64,
    pub index: u64,
}

/// Limits of a [`SegmentStore`]. Validated once by [`SegmentStore::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentStoreConfig {
    /// A segment file is closed and a new one started once the next batch would take it past
    /// this size (a single larger batch gets a file of its own). Retention drops whole
    /// segments, so this is also the granularity of expiry.
    /// Default 64 MiB; bounds 4 KiB ..= 1 GiB.
    pub segment_bytes_max: u64,
    /// Depth of the bounded channel that wakes the writer (doorbells and flush requests).
    /// Appends never wait on it: a full channel already holds a wake-up.
    /// Default 1024; bounds 1 ..= 1 048 576.
    pub write_queue_depth_max: usize,
    /// Most bytes of one shard written by one write + fdatasync in one writer round; more
    /// pending bytes wait for the next round, so one busy shard cannot starve the others.
    /// At least one whole batch is always written. Default 4 MiB; bounds 4 KiB ..= 1 GiB.
    pub write_batch_bytes_max: usize,
    /// Segment files the store keeps open for reading at most, over all shards; the least
    /// recently read is closed beyond it. Default 256; bounds 1 ..= 1 048 576.
    pub open_read_files_max: usize,
    /// Index entries (one per batch, about 80 bytes) of closed segments the store keeps loaded
    /// for reads, over all shards; the least recently used segment's are dropped beyond it.
    /// Only the newest segment of each shard keeps its entries in memory otherwise.
    /// Default 262 144; bounds 1 ..= 67 108 864.
    pub index_cache_entries_max: usize,
}

impl Default for SegmentStoreConfig {
    fn default() -> Self {
        Self {
            segment_bytes_max: 64 << 20,
            write_queue_depth_max: 1024,
            write_batch_bytes_max: 4 << 20,
            open_read_files_max: 256,
            index_cache_entries_max: 1 << 18,
        }
    }
}

impl SegmentStoreConfig {
    pub const SEGMENT_BYTES_MIN: u64 = 4 << 10;
    pub const SEGMENT_BYTES_LIMIT: u64 = 1 << 30;
    pub const WRITE_QUEUE_DEPTH_LIMIT: usize = 1 << 20;
    pub const WRITE_BATCH_BYTES_MIN: usize = 4 << 10;
    pub const WRITE_BATCH_BYTES_LIMIT: usize = 1 << 30;

    /// Checks every field against its bounds.
    pub fn validate(&self) -> Result<(), StorageError> {
        if !(Self::SEGMENT_BYTES_MIN..=Self::SEGMENT_BYTES_LIMIT).contains(&self.segment_bytes_max) {
            return Err(StorageError::InvalidConfig(format!(
                "segment_bytes_max {} is outside {}..={}",
                self.segment_bytes_max,
                Self::SEGMENT_BYTES_MIN,
                Self::SEGMENT_BYTES_LIMIT
            )));
        }
        if !(1..=Self::WRITE_QUEUE_DEPTH_LIMIT).contains(&self.write_queue_depth_max) {
            return Err(StorageError::InvalidConfig(format!(
                "write_queue_depth_max {} is outside 1..={}",
                self.write_queue_depth_max,
                Self::WRITE_QUEUE_DEPTH_LIMIT
            )));
        }
        if !(Self::WRITE_BATCH_BYTES_MIN..=Self::WRITE_BATCH_BYTES_LIMIT).contains(&self.write_batch_bytes_max) {
            return Err(StorageError::InvalidConfig(format!(
                "write_batch_bytes_max {} is outside {}..={}",
                self.write_batch_bytes_max,
                Self::WRITE_BATCH_BYTES_MIN,
                Self::WRITE_BATCH_BYTES_LIMIT
            )));
        }
        if !(1..=1 << 26).contains(&self.index_cache_entries_max) {
            return Err(StorageError::InvalidConfig(format!(
                "index_cache_entries_max {} is outside 1..=67108864",
                self.index_cache_entries_max
            )));
        }
        if !(1..=1 << 20).contains(&self.open_read_files_max) {
            return Err(StorageError::InvalidConfig(format!(
                "open_read_files_max {} is outside 1..=1048576",
                self.open_read_files_max
            )));
        }
        Ok(())
    }
}

/// What [`ShardSegments::read`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadOutcome {
    pub records: Vec<StoredRecord>,
    /// One past the last returned sequence, or the requested start if nothing was returned.
    pub next_sequence: u64,
}

/// The name of the segment file whose first batch has log index `first_index`.
pub fn segment_file_name(first_index: u64) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Generations

/// The directory holding generation `generation` of the shard in `shard_dir`: the shard
/// directory itself for generation 0 (the layout before the first import), `gen-<n>` otherwise.
pub fn generation_dir(shard_dir: &Path, generation: u64) -> PathBuf {
    if generation == 0 {
        shard_dir.to_path_buf()
    } else {
        shard_dir.join(format!("{GENERATION_DIR_PREFIX}{generation}"))
    }
}

fn encode_current(generation: u64) -> [u8; CURRENT_BYTES] {
    let mut bytes = [0u8; CURRENT_BYTES];
    bytes[0..4].copy_from_slice(&CURRENT_MAGIC);
    bytes[4..6].copy_from_slice(&CURRENT_FORMAT_VERSION.to_le_bytes());
    bytes[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode_current(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() != CURRENT_BYTES {
        return Err(format!("{} bytes, expected {CURRENT_BYTES}", bytes.len()));
    }
    if bytes[0..4] != CURRENT_MAGIC {
        return Err("bad magic".to_string());
    }
    let stored_crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if stored_crc != crc32c::crc32c(&bytes[..16]) {
        return Err("checksum mismatch".to_string());
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != CURRENT_FORMAT_VERSION || bytes[6..8] != [0, 0] {
        return Err(format!("unknown format version {version}"));
    }
    let generation = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if generation == 0 {
        return Err("names generation 0, which is never written".to_string());
    }
    Ok(generation)
}

/// The live generation of the shard in `shard_dir`: what `CURRENT` names, or 0 without it.
fn read_current(fs: &dyn FileSystem, shard_dir: &Path) -> Result<u64, StorageError> {
    let path = shard_dir.join(CURRENT_FILE);
    if !fs.exists(&path) {
        return Ok(0);
    }
    let file = fs.open(&path, OpenMode::Read).context(|| format!("open {}", path.display()))?;
    let mut bytes = vec![0u8; CURRENT_BYTES + 1];
    let read = file.read_at(&mut bytes, 0).context(|| format!("read {}", path.display()))?;
    bytes.truncate(read);
    // CURRENT is only ever replaced by a rename of a synced file, so damage is corruption.
    decode_current(&bytes).map_err(|reason| StorageError::Corruption {
        file: path,
        offset: 0,
        reason: format!("bad CURRENT file: {reason}"),
    })
}

/// Makes `generation` the live one, durably: `CURRENT.tmp` is written and synced, renamed
/// over `CURRENT`, and the shard directory is synced.
fn write_current(fs: &dyn FileSystem, shard_dir: &Path, generation: u64) -> Result<(), StorageError> {
    let tmp = shard_dir.join(CURRENT_TMP_FILE);
    let path = shard_dir.join(CURRENT_FILE);
    if fs.exists(&tmp) {
        fs.remove_file(&tmp).context(|| format!("remove {}", tmp.display()))?;
    }
    fs.open(&tmp, OpenMode::CreateNew)
        .and_then(|file| file.write_all_at_and_sync(&[&encode_current(generation)], 0))
        .context(|| format!("write {}", tmp.display()))?;
    fs.rename(&tmp, &path).context(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    fs.sync_dir(shard_dir).context(|| format!("sync directory {}", shard_dir.display()))
}

/// Removes generation `generation` of the shard in `shard_dir` (for generation 0, the segment
/// files directly in the shard directory); returns whether anything was there. Does not sync
/// the shard directory.
fn remove_generation(fs: &dyn FileSystem, shard_dir: &Path, generation: u64) -> Result<bool, StorageError> {
    let dir = generation_dir(shard_dir, generation);
    if generation > 0 {
        if !fs.exists(&dir) {
            return Ok(false);
        }
        fs.remove_dir_all(&dir).context(|| format!("remove generation {}", dir.display()))?;
        return Ok(true);
    }
    let mut removed = false;
    for name in fs.list_dir(shard_dir).context(|| format!("list shard directory {}", shard_dir.display()))? {
        if parse_segment_file_name(&name).is_some() {
            let path = shard_dir.join(&name);
            fs.remove_file(&path).context(|| format!("remove segment {}", path.display()))?;
            removed = true;
        }
    }
    Ok(removed)
}

/// Removes everything of the shard in `shard_dir` that is not generation `live`: a leftover
/// `CURRENT.tmp`, the generation after `live` (an import that did not finish) and every
/// generation before it that can exist. An import starts only after this succeeded, so at
/// most `live - 1` (an import whose clean-up did not finish) and `live + 1` can be present,
/// plus, once `live >= 1`, segment files of generation 0.
fn remove_stale_generations(fs: &dyn FileSystem, shard_dir: &Path, live: u64) -> Result<(), StorageError> {
    let mut removed = false;
    let tmp = shard_dir.join(CURRENT_TMP_FILE);
    if fs.exists(&tmp) {
        fs.remove_file(&tmp).context(|| format!("remove {}", tmp.display()))?;
        removed = true;
    }
    removed |= remove_generation(fs, shard_dir, live + 1)?;
    if live >= 2 {
        removed |= remove_generation(fs, shard_dir, live - 1)?;
    }
    if live >= 1 {
        removed |= remove_generation(fs, shard_dir, 0)?;
    }
    if removed {
        fs.sync_dir(shard_dir).context(|| format!("sync directory {}", shard_dir.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shard state

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Bytes assigned to the file, written or still pending.
    len: u64,
    /// What the file holds, kept for every segment: a closed segment's batches leave memory
    /// (see `ShardState::batches`), and this finds the segment a sequence or a time is in.
    summary: SegmentSummary,
}

/// A segment's batches in brief.
#[derive(Debug, Clone, Copy)]
struct SegmentSummary {
    last_log_id: BatchLogId,
    last_timestamp_ms: i64,
    /// Whether any batch holds records.
    has_records: bool,
    /// The end sequence of the last batch (past every record in the segment; a batch without
    /// records ends where it starts).
    end_sequence: u64,
}

impl Segment {
    /// A segment whose first batch is `first`.
    fn new(dir: &Path, first: &BatchEntry) -> Self {
        let summary = SegmentSummary {
            last_log_id: first.log_id,
            last_timestamp_ms: first.timestamp_ms,
            has_records: false,
            end_sequence: first.first_sequence(),
        };
        Self { path: dir.join(segment_file_name(first.log_id.index)), len: 0, summary }
    }

    /// Counts `batch`, placed at the end of this segment, in its length and summary.
    fn add(&mut self, batch: &BatchEntry) {
        self.len += batch.length;
        let summary = &mut self.summary;
        summary.last_log_id = batch.log_id;
        summary.last_timestamp_ms = batch.timestamp_ms;
        summary.end_sequence = batch.end_sequence();
        summary.has_records |= batch.record_count > 0;
    }
}

/// The segment files open for reading, over every shard of a store: at most
/// `open_read_files_max`, the least recently read closed first (a reader still holding one keeps
/// it usable until it is done).
#[derive(Debug)]
struct ReadFiles {
    max: usize,
    state: Mutex<ReadFilesState>,
}

#[derive(Debug, Default)]
struct ReadFilesState {
    open: std::collections::HashMap<PathBuf, (Arc<dyn FileHandle>, u64)>,
    tick: u64,
}

impl ReadFiles {
    fn new(max: usize) -> ReadFiles {
        ReadFiles { max: max.max(1), state: Mutex::default() }
    }

    /// The open handle of `path`, opening it (and closing the least recently read one beyond
    /// the bound) if needed.
    fn get(&self, fs: &dyn FileSystem, path: &Path) -> Result<Arc<dyn FileHandle>, StorageError> {
        {
            let mut state = lock(&self.state);
            state.tick += 1;
            let tick = state.tick;
            if let Some((handle, used)) = state.open.get_mut(path) {
                *used = tick;
                return Ok(handle.clone());
            }
        }
        // Opened outside the lock; a concurrent opener of the same file may win, either will do.
        let handle = fs.open(path, OpenMode::Read).context(|| format!("open segment {}", path.display()))?;
        let mut state = lock(&self.state);
        state.tick += 1;
        let tick = state.tick;
        let handle = state.open.entry(path.to_path_buf()).or_insert((handle, tick)).0.clone();
        while state.open.len() > self.max {
            let oldest = state.open.iter().min_by_key(|(_, (_, used))| *used).map(|(path, _)| path.clone());
            match oldest {
                Some(oldest) => state.open.remove(&oldest),
                None => break,
            };
        }
        Ok(handle)
    }

    /// Closes the handles of files under `prefix` (removed or replaced files).
    fn forget_under(&self, prefix: &Path) {
        lock(&self.state).open.retain(|path, _| !path.starts_with(prefix));
    }

    fn forget(&self, path: &Path) {
        lock(&self.state).open.remove(path);
    }

    fn open_count(&self) -> usize {
        lock(&self.state).open.len()
    }
}

/// The index entries of closed segments, loaded from their files' batch headers when a read
/// needs them: over every shard of a store, at most `entries_max` entries (the least recently
/// used segment's dropped first; one segment is always kept, however large).
#[derive(Debug)]
struct SegmentIndexes {
    entries_max: usize,
    state: Mutex<SegmentIndexesState>,
}

#[derive(Debug, Default)]
struct SegmentIndexesState {
    loaded: std::collections::HashMap<PathBuf, (Arc<Vec<BatchEntry>>, u64)>,
    entries: usize,
    tick: u64,
}

impl SegmentIndexes {
    fn new(entries_max: usize) -> SegmentIndexes {
        SegmentIndexes { entries_max: entries_max.max(1), state: Mutex::default() }
    }

    /// The entries of the closed segment at `path` (position `segment` in its shard), loading
    /// them from the file if needed.
    fn get(
        &self,
        fs: &dyn FileSystem,
        files: &ReadFiles,
        path: &Path,
        segment: usize,
    ) -> Result<Arc<Vec<BatchEntry>>, StorageError> {
        {
            let mut state = lock(&self.state);
            state.tick += 1;
            let tick = state.tick;
            if let Some((entries, used)) = state.loaded.get_mut(path) {
                *used = tick;
                return Ok(entries.clone());
            }
        }
        // Loaded outside the lock; a concurrent loader of the same file may win, either will do.
        let entries = Arc::new(index_segment(files.get(fs, path)?.as_ref(), path, segment)?);
        let mut state = lock(&self.state);
        state.tick += 1;
        let tick = state.tick;
        if !state.loaded.contains_key(path) {
            state.entries += entries.len();
            state.loaded.insert(path.to_path_buf(), (entries.clone(), tick));
        }
        while state.entries > self.entries_max && state.loaded.len() > 1 {
            let oldest = state.loaded.iter().min_by_key(|(_, (_, used))| *used).map(|(path, _)| path.clone());
            let Some(oldest) = oldest else { break };
            if let Some((dropped, _)) = state.loaded.remove(&oldest) {
                state.entries -= dropped.len();
            }
        }
        Ok(entries)
    }

    /// Forgets the entries of files under `prefix` (removed or replaced files).
    fn forget_under(&self, prefix: &Path) {
        let mut state = lock(&self.state);
        let gone: Vec<PathBuf> = state.loaded.keys().filter(|path| path.starts_with(prefix)).cloned().collect();
        for path in gone {
            if let Some((dropped, _)) = state.loaded.remove(&path) {
                state.entries -= dropped.len();
            }
        }
    }

    fn entry_count(&self) -> usize {
        lock(&self.state).entries
    }
}

/// The index entries of a closed segment, read from its batch headers (the checksums, which
/// cover whole batches, are verified when a batch is read).
fn index_segment(file: &dyn FileHandle, path: &Path, segment: usize) -> Result<Vec<BatchEntry>, StorageError> {
    let len = file.len().context(|| format!("size of segment {}", path.display()))?;
    let mut entries = Vec::new();
    let mut header = [0u8; segment_format::BATCH_HEADER_BYTES];
    let mut offset = 0u64;
    while offset < len {
        let read = file.read_at(&mut header, offset).context(|| format!("read segment {}", path.display()))?;
        let parsed =
            peek_header(&header[..read]).map_err(|error| corruption(path, offset as usize, error.to_string()))?;
        let length = parsed.encoded_bytes() as u64;
        if offset + length > len {
            return Err(corruption(path, offset as usize, format!("a {length}-byte batch runs past the file's end")));
        }
        entries.push(BatchEntry {
            log_id: parsed.log_id,
            timestamp_ms: parsed.timestamp_ms,
            record_count: parsed.record_count,
            segment,
            offset,
            length,
            pending: None,
        });
        offset += length;
    }
    Ok(entries)
}

/// The sparse index entry of one batch.
#[derive(Debug, Clone)]
struct BatchEntry {
    log_id: BatchLogId,
    timestamp_ms: i64,
    record_count: u32,
    /// Position of the batch's file in `ShardState::segments`.
    segment: usize,
    offset: u64,
    length: u64,
    /// The encoded batch while it is not yet durable; `None` once it is on disk.
    pending: Option<Bytes>,
}

impl BatchEntry {
    fn first_sequence(&self) -> u64 {
        crate::sequence::first_of_batch(self.log_id.index)
    }

    fn end_sequence(&self) -> u64 {
        self.first_sequence() + u64::from(self.record_count)
    }

    /// Where to read the batch: its bytes while they are pending, else its place in `path`.
    fn source(&self, path: &Path) -> BatchSource {
        match &self.pending {
            Some(encoded) => BatchSource::Memory(encoded.clone()),
            None => BatchSource::File { path: path.to_path_buf(), offset: self.offset, length: self.length },
        }
    }
}

#[derive(Debug, Default)]
struct ShardState {
    /// The live generation on disk (what `CURRENT` names; 0 without it).
    disk_generation: u64,
    /// The directory of the live generation: where `segments` are.
    data_dir: PathBuf,
    segments: Vec<Segment>,
    /// The index entries of the newest segments, from the first one not yet wholly durable
    /// (and always the newest one). Older segments are closed and durable: their entries
    /// leave memory, and a read that needs them loads them from the file's headers (through
    /// the store's bounded `SegmentIndexes` cache), so memory stays bounded however much a
    /// shard holds.
    batches: Vec<BatchEntry>,
    /// Batches before this position are durable; the rest are pending.
    durable_count: usize,
    /// Bumped when the contents are replaced (import) or removed, so a writer round planned
    /// on the old contents does not mark anything and a waiting flush fails. In memory only;
    /// unrelated to `disk_generation`.
    generation: u64,
    removed: bool,
    /// The first failed segment write: the shard stops accepting appends (an fsync error
    /// cannot be retried safely).
    write_error: Option<String>,
    /// Records below this sequence are expired (retention): never read or exported, and the
    /// files holding only such records are removed.
    trim_sequence: u64,
    /// Snapshots being sent from the files ([`ExportReader`]s alive): while there are any, no
    /// file is removed (a later trim, import or opening removes what is left).
    export_pins: usize,
    /// Recovery cut a tail it could not read (a torn write, or damage that reads like one).
    recovered_cut: bool,
}

impl ShardState {
    fn last_appended(&self) -> Option<BatchLogId> {
        self.batches.last().map(|batch| batch.log_id)
    }

    fn last_durable(&self) -> Option<BatchLogId> {
        match self.durable_count.checked_sub(1) {
            Some(position) => Some(self.batches[position].log_id),
            None => self.segments[..self.indexed_from()].last().map(|segment| segment.summary.last_log_id),
        }
    }

    fn end_sequence(&self) -> u64 {
        self.segments
            .iter()
            .rev()
            .find(|segment| segment.summary.has_records)
            .map_or(0, |segment| segment.summary.end_sequence)
    }

    /// The first segment whose batches are in `batches` (every segment has at least one).
    fn indexed_from(&self) -> usize {
        self.batches.first().map_or(self.segments.len(), |batch| batch.segment)
    }

    /// Drops the entries of leading segments that are closed (not the newest) and wholly
    /// durable. Only under the shard's I/O lock: a writer round addresses batches by position.
    fn evict_closed(&mut self) {
        let newest = self.segments.len().saturating_sub(1);
        let mut evicted = self.batches[..self.durable_count].partition_point(|batch| batch.segment < newest);
        // Whole segments only: back off to the start of a segment only partly durable.
        if let Some(partial) = self.batches.get(evicted).filter(|batch| batch.segment < newest) {
            let segment = partial.segment;
            evicted = self.batches.partition_point(|batch| batch.segment < segment);
        }
        if evicted > 0 {
            self.batches.drain(..evicted);
            self.durable_count -= evicted;
        }
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        if self.removed {
            return Err(StorageError::Closed);
        }
        if let Some(reason) = &self.write_error {
            return Err(StorageError::io("an earlier segment write failed", std::io::Error::other(reason.clone())));
        }
        Ok(())
    }

    /// Places a batch of `length` bytes at the end of the newest segment, rolling to a new one
    /// (named after `index`, in the live generation's directory) if it would go past
    /// `segment_bytes_max`.
    fn push_batch(&mut self, header: &BatchHeader, pending: Option<Bytes>, segment_bytes_max: u64) {
        let length = header.encoded_bytes() as u64;
        let mut batch = BatchEntry {
            log_id: header.log_id,
            timestamp_ms: header.timestamp_ms,
            record_count: header.record_count,
            segment: self.segments.len(),
            offset: 0,
            length,
            pending,
        };
        let roll = match self.segments.last() {
            None => true,
            Some(segment) => segment.len > 0 && segment.len + length > segment_bytes_max,
        };
        if roll {
            self.segments.push(Segment::new(&self.data_dir, &batch));
        }
        batch.segment = self.segments.len() - 1;
        let segment = &mut self.segments[batch.segment];
        batch.offset = segment.len;
        segment.add(&batch);
        self.batches.push(batch);
    }
}

/// A segment file open for writing, with its path.
type OpenSegment = (PathBuf, Arc<dyn FileHandle>);

/// The writer's open file of one shard, guarded by the shard's I/O lock.
#[derive(Debug, Default)]
struct WriterFile {
    current: Option<OpenSegment>,
}

#[derive(Debug)]
struct ShardInner {
    group_id: u64,
    /// Distinguishes a shard re-created after `remove_shard` from its predecessor.
    instance: u64,
    /// The shard directory (`root/<group_id>`); segments are in the live generation's
    /// directory, `ShardState::data_dir`.
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    config: SegmentStoreConfig,
    state: Mutex<ShardState>,
    /// Held by whoever does file I/O that changes the shard's files (the writer during its
    /// round, `import`, `remove_shard`), so those never interleave. Never held across `.await`.
    io: Mutex<WriterFile>,
    link: Arc<WriterLink>,
    read_files: Arc<ReadFiles>,
    indexes: Arc<SegmentIndexes>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent before anything that can panic
    // (asserts run before mutation), so a poisoned lock carries no torn state.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ShardInner {
    fn state(&self) -> MutexGuard<'_, ShardState> {
        lock(&self.state)
    }
}

// ---------------------------------------------------------------------------------------------
// Writer plumbing

#[derive(Debug)]
enum WriterMessage {
    /// Something was marked dirty.
    Wake,
    /// Answer once a round has completed.
    Flush(oneshot::Sender<()>),
}

type DirtyShards = Mutex<BTreeMap<(u64, u64), Arc<ShardInner>>>;

/// How shards reach the writer: a bounded doorbell channel and the set of dirty shards.
#[derive(Debug)]
struct WriterLink {
    sender: mpsc::Sender<WriterMessage>,
    dirty: Arc<DirtyShards>,
    /// The node's storage-failure latch, tripped by a failed segment write or sync.
    failstop: FailStop,
}

impl WriterLink {
    fn mark_dirty(&self, shard: &Arc<ShardInner>) -> Result<(), StorageError> {
        lock(&self.dirty).insert((shard.group_id, shard.instance), shard.clone());
        match self.sender.try_send(WriterMessage::Wake) {
            // A full channel holds messages the writer has not received yet; it drains the
            // dirty set after receiving them, so it will see this shard.
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StorageError::Closed),
        }
    }
}

/// One file write of a writer round.
struct PlannedWrite {
    path: PathBuf,
    offset: u64,
    bufs: Vec<Bytes>,
}

/// What the writer does for one shard in one round.
struct ShardPlan {
    generation: u64,
    writes: Vec<PlannedWrite>,
    /// Batches `durable_start..durable_end` become durable when the writes succeed.
    durable_start: usize,
    durable_end: usize,
    more_pending: bool,
}

fn plan_shard(state: &ShardState, write_batch_bytes_max: usize) -> ShardPlan {
    let mut writes: Vec<PlannedWrite> = Vec::new();
    let mut planned_bytes = 0usize;
    let mut position = state.durable_count;
    while let Some(batch) = state.batches.get(position) {
        if planned_bytes > 0 && planned_bytes + batch.length as usize > write_batch_bytes_max {
            break;
        }
        let pending = batch.pending.clone().expect("batches after the durable prefix keep their bytes until durable");
        let path = &state.segments[batch.segment].path;
        match writes.last_mut() {
            Some(write) if &write.path == path => write.bufs.push(pending),
            _ => writes.push(PlannedWrite { path: path.clone(), offset: batch.offset, bufs: vec![pending] }),
        }
        planned_bytes += batch.length as usize;
        position += 1;
    }
    ShardPlan {
        generation: state.generation,
        writes,
        durable_start: state.durable_count,
        durable_end: position,
        more_pending: position < state.batches.len(),
    }
}

/// Opens (creating if needed) the file the writer appends to; a newly created file's
/// directory entry is synced before any data is claimed durable in it.
fn writer_handle(shard: &ShardInner, file: &mut WriterFile, path: &Path) -> Result<Arc<dyn FileHandle>, StorageError> {
    if let Some((current_path, handle)) = &file.current {
        if current_path == path {
            return Ok(handle.clone());
        }
    }
    let handle = match shard.fs.open(path, OpenMode::CreateNew) {
        Ok(handle) => {
            let dir = path.parent().unwrap_or(&shard.dir);
            shard.fs.sync_dir(dir).context(|| format!("sync directory {}", dir.display()))?;
            handle
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            shard.fs.open(path, OpenMode::ReadWrite).context(|| format!("open segment {}", path.display()))?
        }
        Err(error) => return Err(StorageError::io(format!("create segment {}", path.display()), error)),
    };
    file.current = Some((path.to_path_buf(), handle.clone()));
    Ok(handle)
}

/// Writes one shard's pending bytes (at most `write_batch_bytes_max`); returns whether the
/// shard has more pending work.
fn write_shard_round(shard: &Arc<ShardInner>) -> bool {
    let mut file = lock(&shard.io);
    let plan = {
        let state = shard.state();
        if state.removed || state.write_error.is_some() {
            return false;
        }
        plan_shard(&state, shard.config.write_batch_bytes_max)
    };
    let mut outcome = Ok(());
    for write in &plan.writes {
        let bufs: Vec<&[u8]> = write.bufs.iter().map(|buf| &buf[..]).collect();
        outcome = writer_handle(shard, &mut file, &write.path).and_then(|handle| {
            if crate::planted::active(crate::planted::Bug::AckBeforeFsync) {
                let mut offset = write.offset;
                for buf in &bufs {
                    handle.write_at(buf, offset).context(|| format!("write segment {}", write.path.display()))?;
                    offset += buf.len() as u64;
                }
                return Ok(());
            }
            handle
                .write_all_at_and_sync(&bufs, write.offset)
                .context(|| format!("write segment {}", write.path.display()))
        });
        if outcome.is_err() {
            break;
        }
    }
    let mut state = shard.state();
    if state.generation != plan.generation {
        return false;
    }
    match outcome {
        Ok(()) => {
            for batch in &mut state.batches[plan.durable_start..plan.durable_end] {
                batch.pending = None;
            }
            state.durable_count = plan.durable_end;
            state.evict_closed();
            plan.more_pending
        }
        Err(error) => {
            shard.link.failstop.trip(format!("segment write of group {}: {error}", shard.group_id));
            state.write_error = Some(error.to_string());
            false
        }
    }
}

/// The writer loop: rounds of group commit until every sender is gone.
async fn run_writer(mut receiver: mpsc::Receiver<WriterMessage>, dirty: Arc<DirtyShards>) {
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut more_work = false;
    loop {
        if !more_work {
            match receiver.recv().await {
                Some(WriterMessage::Wake) => {}
                Some(WriterMessage::Flush(waiter)) => waiters.push(waiter),
                None => break,
            }
        }
        while let Ok(message) = receiver.try_recv() {
            if let WriterMessage::Flush(waiter) = message {
                waiters.push(waiter);
            }
        }
        let shards = std::mem::take(&mut *lock(&dirty));
        more_work = false;
        for shard in shards.values() {
            if write_shard_round(shard) {
                lock(&dirty).insert((shard.group_id, shard.instance), shard.clone());
                more_work = true;
            }
        }
        for waiter in waiters.drain(..) {
            // A flush caller that went away needs no answer.
            let _ = waiter.send(());
        }
        if more_work {
            // Let other tasks run between rounds (the simulator runs this loop as a task).
            tokio::task::yield_now().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Recovery

/// Reads and verifies one segment file; returns the verified batches and where valid data
/// ends. A bad batch is an error unless `is_last` and nothing valid follows it (a torn tail).
fn scan_segment(fs: &dyn FileSystem, path: &Path, is_last: bool) -> Result<(Vec<BatchHeader>, u64, u64), StorageError> {
    let file = fs.open(path, OpenMode::Read).context(|| format!("open segment {}", path.display()))?;
    let len = file.len().context(|| format!("size of segment {}", path.display()))?;
    let len_usize = usize::try_from(len).map_err(|_| StorageError::Corruption {
        file: path.to_path_buf(),
        offset: 0,
        reason: "segment too large to read".to_string(),
    })?;
    let mut bytes = vec![0u8; len_usize];
    let read = file.read_at(&mut bytes, 0).context(|| format!("read segment {}", path.display()))?;
    bytes.truncate(read);
    let bytes = Bytes::from(bytes);
    let mut headers = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        match decode_header(&bytes[offset..]) {
            Ok(header) => {
                let end = offset + header.encoded_bytes();
                if let Err(error) = decode_records(&bytes.slice(offset..end), &header) {
                    return Err(corruption(path, offset, error.to_string()));
                }
                headers.push(header);
                offset = end;
            }
            Err(error) => {
                let torn = is_last && !contains_valid_batch(&bytes[offset + 1..]);
                if !torn {
                    return Err(corruption(path, offset, error.to_string()));
                }
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    %error,
                    "truncating the torn tail of a segment"
                );
                return Ok((headers, offset as u64, len));
            }
        }
    }
    Ok((headers, offset as u64, len))
}

fn corruption(path: &Path, offset: usize, reason: String) -> StorageError {
    StorageError::Corruption { file: path.to_path_buf(), offset: offset as u64, reason }
}

/// Rebuilds a shard's state from the directory of its live generation, truncating a torn tail.
fn recover_generation(fs: &dyn FileSystem, dir: &Path) -> Result<ShardState, StorageError> {
    let mut files: Vec<(u64, String)> = fs
        .list_dir(dir)
        .context(|| format!("list shard directory {}", dir.display()))?
        .into_iter()
        .filter_map(|name| parse_segment_file_name(&name).map(|index| (index, name)))
        .collect();
    files.sort();
    let mut state = ShardState { data_dir: dir.to_path_buf(), ..ShardState::default() };
    let mut last_index: Option<u64> = None;
    let mut last_timestamp_ms = i64::MIN;
    for (position, (first_index, name)) in files.iter().enumerate() {
        let path = dir.join(name);
        let is_last = position + 1 == files.len();
        let (headers, valid_len, file_len) = scan_segment(fs, &path, is_last)?;
        if valid_len < file_len {
            state.recovered_cut = true;
            let file = fs
                .open(&path, OpenMode::ReadWrite)
                .context(|| format!("open segment {} to truncate", path.display()))?;
            file.set_len(valid_len)
                .and_then(|()| file.sync_data())
                .context(|| format!("truncate torn tail of {}", path.display()))?;
        }
        if headers.is_empty() {
            if !is_last {
                return Err(corruption(&path, 0, "empty segment before the last".into()));
            }
            // Created (or torn back to nothing) but never holding a durable batch.
            fs.remove_file(&path)
                .and_then(|()| fs.sync_dir(dir))
                .context(|| format!("remove empty segment {}", path.display()))?;
            continue;
        }
        if headers[0].log_id.index != *first_index {
            return Err(corruption(&path, 0, format!("first batch has index {}", headers[0].log_id.index)));
        }
        let segment = state.segments.len();
        let mut offset = 0u64;
        for header in headers {
            if last_index.is_some_and(|last| header.log_id.index <= last) {
                return Err(corruption(
                    &path,
                    offset as usize,
                    format!("batch index {} does not increase", header.log_id.index),
                ));
            }
            last_index = Some(header.log_id.index);
            last_timestamp_ms = last_timestamp_ms.max(header.timestamp_ms);
            let batch = BatchEntry {
                log_id: header.log_id,
                timestamp_ms: header.timestamp_ms,
                record_count: header.record_count,
                segment,
                offset,
                length: header.encoded_bytes() as u64,
                pending: None,
            };
            if offset == 0 {
                state.segments.push(Segment::new(dir, &batch));
            }
            state.segments[segment].add(&batch);
            offset += batch.length;
            state.batches.push(batch);
        }
        // Only the newest segment's entries stay in memory.
        state.durable_count = state.batches.len();
        state.evict_closed();
    }
    Ok(state)
}

/// Opens a shard directory: finds the live generation, removes what an interrupted import or
/// clean-up left behind, and recovers the live generation.
fn recover_shard(fs: &dyn FileSystem, shard_dir: &Path) -> Result<ShardState, StorageError> {
    let live = read_current(fs, shard_dir)?;
    remove_stale_generations(fs, shard_dir, live)?;
    remove_stale_spills(fs, shard_dir)?;
    let data_dir = generation_dir(shard_dir, live);
    if !fs.exists(&data_dir) {
        return Err(StorageError::Corruption {
            file: shard_dir.join(CURRENT_FILE),
            offset: 0,
            reason: format!("names generation {live}, whose directory is missing"),
        });
    }
    let mut state = recover_generation(fs, &data_dir)?;
    state.disk_generation = live;
    Ok(state)
}

// ---------------------------------------------------------------------------------------------
// The store

#[derive(Debug)]
struct StoreInner {
    fs: Arc<dyn FileSystem>,
    root: PathBuf,
    config: SegmentStoreConfig,
    link: Arc<WriterLink>,
    shards: Mutex<BTreeMap<u64, ShardSegments>>,
    next_instance: AtomicU64,
    read_files: Arc<ReadFiles>,
    indexes: Arc<SegmentIndexes>,
}

/// The segment store of a node: every shard's segments and the one writer loop.
#[derive(Debug, Clone)]
pub struct SegmentStore {
    inner: Arc<StoreInner>,
}

impl SegmentStore {
    /// Validates `config`, creates `root` and starts the writer loop on `executor`.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        root: PathBuf,
        config: SegmentStoreConfig,
        executor: &dyn Executor,
    ) -> Result<SegmentStore, StorageError> {
        Self::open_with_failstop(fs, root, config, executor, FailStop::default())
    }

    /// [`Self::open`], tripping `failstop` when a segment write or sync fails.
    pub fn open_with_failstop(
        fs: Arc<dyn FileSystem>,
        root: PathBuf,
        config: SegmentStoreConfig,
        executor: &dyn Executor,
        failstop: FailStop,
    ) -> Result<SegmentStore, StorageError> {
        config.validate()?;
        fs.create_dir_all(&root).context(|| format!("create segment root {}", root.display()))?;
        let (sender, receiver) = mpsc::channel(config.write_queue_depth_max);
        let dirty: Arc<DirtyShards> = Arc::default();
        executor.spawn_dedicated("segment-writer", Box::pin(run_writer(receiver, dirty.clone())));
        Ok(SegmentStore {
            inner: Arc::new(StoreInner {
                fs,
                root,
                config: config.clone(),
                read_files: Arc::new(ReadFiles::new(config.open_read_files_max)),
                indexes: Arc::new(SegmentIndexes::new(config.index_cache_entries_max)),
                link: Arc::new(WriterLink { sender, dirty, failstop }),
                shards: Mutex::default(),
                next_instance: AtomicU64::new(0),
            }),
        })
    }

    fn shard_dir(&self, group_id: u64) -> PathBuf {
        self.inner.root.join(group_id.to_string())
    }

    /// The segments of shard group `group_id`: opened once (recovering from disk, which reads
    /// and verifies every batch) or created empty, then shared.
    pub fn shard(&self, group_id: u64) -> Result<ShardSegments, StorageError> {
        let mut shards = lock(&self.inner.shards);
        if let Some(shard) = shards.get(&group_id) {
            return Ok(shard.clone());
        }
        let dir = self.shard_dir(group_id);
        let fs = &self.inner.fs;
        let state = if fs.exists(&dir) {
            recover_shard(fs.as_ref(), &dir)?
        } else {
            fs.create_dir_all(&dir)
                .and_then(|()| fs.sync_dir(&self.inner.root))
                .context(|| format!("create shard directory {}", dir.display()))?;
            ShardState { data_dir: dir.clone(), ..ShardState::default() }
        };
        let shard = ShardSegments {
            inner: Arc::new(ShardInner {
                group_id,
                instance: self.inner.next_instance.fetch_add(1, Ordering::Relaxed),
                dir,
                fs: fs.clone(),
                config: self.inner.config.clone(),
                state: Mutex::new(state),
                io: Mutex::default(),
                link: self.inner.link.clone(),
                read_files: self.inner.read_files.clone(),
                indexes: self.inner.indexes.clone(),
            }),
        };
        shards.insert(group_id, shard.clone());
        Ok(shard)
    }

    /// Deletes a shard's segments. Handles to it fail with [`StorageError::Closed`] afterwards.
    pub fn remove_shard(&self, group_id: u64) -> Result<(), StorageError> {
        let removed = lock(&self.inner.shards).remove(&group_id);
        if let Some(shard) = &removed {
            let mut file = lock(&shard.inner.io);
            file.current = None;
            let mut state = shard.inner.state();
            let generation = state.generation + 1;
            *state = ShardState { generation, removed: true, ..ShardState::default() };
        }
        let dir = self.shard_dir(group_id);
        self.inner.read_files.forget_under(&dir);
        self.inner.indexes.forget_under(&dir);
        if self.inner.fs.exists(&dir) {
            self.inner
                .fs
                .remove_dir_all(&dir)
                .and_then(|()| self.inner.fs.sync_dir(&self.inner.root))
                .context(|| format!("remove shard directory {}", dir.display()))?;
        }
        Ok(())
    }
}

/// The segments of one shard. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct ShardSegments {
    inner: Arc<ShardInner>,
}

/// Where to get one batch's bytes for a read, taken under the lock and used outside it.
enum BatchSource {
    Memory(Bytes),
    File { path: PathBuf, offset: u64, length: u64 },
}

impl ShardSegments {
    pub fn group_id(&self) -> u64 {
        self.inner.group_id
    }

    /// Appends the committed batch at `log_id`, in log order. Returns `false` without doing
    /// anything if `log_id.index` is not past the last appended batch (a replay after a
    /// restart). The stored timestamp is `max(batch.timestamp_ms, last stored timestamp)`.
    /// Never blocks: the batch is readable at once and becomes durable in a later writer round.
    ///
    /// Panics if the batch has 65 536 records or more (sequence numbers have 16 bits for the
    /// position; the leader's batching limit keeps far below) or if the index is 2^48 or more.
    pub fn append(&self, log_id: BatchLogId, batch: &AppendBatch) -> Result<bool, StorageError> {
        assert!(
            log_id.index < 1 << crate::sequence::LOG_INDEX_BITS,
            "log index {} leaves no room for the record position in a sequence",
            log_id.index
        );
        assert!(
            batch.records.len() < BATCH_RECORDS_MAX,
            "a batch holds fewer than {BATCH_RECORDS_MAX} records (got {})",
            batch.records.len()
        );
        let payload_bytes = segment_format::payload_bytes(&batch.records);
        if payload_bytes > BATCH_PAYLOAD_BYTES_MAX {
            return Err(StorageError::InvalidInput(format!(
                "batch payload of {payload_bytes} bytes exceeds {BATCH_PAYLOAD_BYTES_MAX}"
            )));
        }
        {
            let mut state = self.inner.state();
            state.check_usable()?;
            let last = state.batches.last();
            if last.is_some_and(|last| log_id.index <= last.log_id.index) {
                return Ok(false);
            }
            let mut timestamp_ms = last.map_or(batch.timestamp_ms, |last| batch.timestamp_ms.max(last.timestamp_ms));
            if crate::planted::active(crate::planted::Bug::TimestampRegress) {
                timestamp_ms = batch.timestamp_ms;
            }
            let encoded = encode_batch(log_id, timestamp_ms, &batch.records);
            let header = BatchHeader {
                log_id,
                timestamp_ms,
                record_count: batch.records.len() as u32,
                payload_bytes: payload_bytes as u32,
            };
            debug_assert_eq!(header.encoded_bytes(), encoded.len());
            state.push_batch(&header, Some(encoded), self.inner.config.segment_bytes_max);
        }
        self.inner.link.mark_dirty(&self.inner)?;
        Ok(true)
    }

    /// Records with `sequence >= from_sequence` (and not trimmed), in order: at most `limit`, and
    /// no more than `bytes_max` of keys and data (but at least one record if there is any).
    pub fn read(&self, from_sequence: u64, limit: usize, bytes_max: usize) -> Result<ReadOutcome, StorageError> {
        let from_sequence = from_sequence.max(self.trim_sequence());
        let mut outcome = ReadOutcome { records: Vec::new(), next_sequence: from_sequence };
        if limit == 0 {
            return Ok(outcome);
        }
        let sources = self.read_sources(from_sequence, limit, bytes_max)?;
        let mut bytes_taken = 0usize;
        'batches: for (first_sequence, timestamp_ms, source) in sources {
            let (bytes, path, offset) = self.load(source)?;
            let corrupt = |reason: String| StorageError::Corruption { file: path.clone(), offset, reason };
            let header = decode_header(&bytes).map_err(|error| corrupt(error.to_string()))?;
            if crate::sequence::first_of_batch(header.log_id.index) != first_sequence {
                return Err(corrupt(format!(
                    "batch at log index {} where the index expects sequence {first_sequence}",
                    header.log_id.index
                )));
            }
            let records = decode_records(&bytes, &header).map_err(|e| corrupt(e.to_string()))?;
            for (position, record) in records.into_iter().enumerate() {
                let sequence = first_sequence + position as u64;
                if sequence < from_sequence {
                    continue;
                }
                let size = record.partition_key.len() + record.data.len();
                let full =
                    outcome.records.len() >= limit || (!outcome.records.is_empty() && bytes_taken + size > bytes_max);
                if full {
                    break 'batches;
                }
                let partition_key = String::from_utf8(record.partition_key.to_vec())
                    .map_err(|_| corrupt("partition key is not UTF-8".to_string()))?;
                bytes_taken += size;
                outcome.records.push(StoredRecord { sequence, timestamp_ms, partition_key, data: record.data });
                outcome.next_sequence = sequence + 1;
            }
        }
        Ok(outcome)
    }

    /// Where the batches a read needs are (enough for `limit` records and `bytes_max` bytes).
    fn read_sources(
        &self,
        from_sequence: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<(u64, i64, BatchSource)>, StorageError> {
        let mut sources = Vec::new();
        let (mut records, mut bytes) = (0usize, 0usize);
        self.walk(
            |segment| segment.summary.end_sequence <= from_sequence,
            |batch| batch.end_sequence() <= from_sequence,
            |batch, path| {
                if batch.record_count == 0 {
                    return true;
                }
                sources.push((batch.first_sequence(), batch.timestamp_ms, batch.source(path)));
                let wanted = batch.end_sequence() - batch.first_sequence().max(from_sequence);
                records = records.saturating_add(usize::try_from(wanted).unwrap_or(usize::MAX));
                bytes += batch.length as usize;
                records < limit && bytes < bytes_max
            },
        )?;
        Ok(sources)
    }

    /// Visits the shard's batches in order with the path of each one's file, until `visit`
    /// returns `false`: from the first segment `segment_before` is false for, skipping the
    /// batches `batch_before` is true for (both hold for a prefix). The newest segments'
    /// entries are visited under the shard's lock; closed segments' are loaded (or found in
    /// the store's cache) outside it.
    fn walk(
        &self,
        segment_before: impl Fn(&Segment) -> bool,
        batch_before: impl Fn(&BatchEntry) -> bool,
        mut visit: impl FnMut(&BatchEntry, &Path) -> bool,
    ) -> Result<(), StorageError> {
        // The last log index of the closed segment visited last.
        let mut after: Option<u64> = None;
        loop {
            let (path, position, last_index) = {
                let state = self.inner.state();
                if state.removed {
                    return Err(StorageError::Closed);
                }
                let position = match after {
                    None => state.segments.partition_point(|segment| segment_before(segment)),
                    Some(after) => state.segments.partition_point(|segment| segment.summary.last_log_id.index <= after),
                };
                let Some(segment) = state.segments.get(position) else { return Ok(()) };
                if position >= state.indexed_from() {
                    let first = state.batches.partition_point(|batch| batch.segment < position || batch_before(batch));
                    for batch in &state.batches[first..] {
                        if !visit(batch, &state.segments[batch.segment].path) {
                            break;
                        }
                    }
                    return Ok(());
                }
                (segment.path.clone(), position, segment.summary.last_log_id.index)
            };
            let entries = self.inner.indexes.get(self.inner.fs.as_ref(), &self.inner.read_files, &path, position)?;
            let first = entries.partition_point(|batch| batch_before(batch));
            for batch in &entries[first..] {
                if !visit(batch, &path) {
                    return Ok(());
                }
            }
            after = Some(last_index);
        }
    }

    /// The bytes of one batch, with the file and offset to name in errors.
    fn load(&self, source: BatchSource) -> Result<(Bytes, PathBuf, u64), StorageError> {
        match source {
            BatchSource::Memory(bytes) => Ok((bytes, self.inner.dir.clone(), 0)),
            BatchSource::File { path, offset, length } => {
                let file = self.inner.read_files.get(self.inner.fs.as_ref(), &path)?;
                let length = usize::try_from(length).expect("a batch length fits usize");
                let mut bytes = vec![0u8; length];
                let read = file.read_at(&mut bytes, offset).context(|| format!("read segment {}", path.display()))?;
                if read < length {
                    return Err(StorageError::Corruption {
                        file: path,
                        offset,
                        reason: format!("file ends {} bytes into a {length}-byte batch", read),
                    });
                }
                Ok((Bytes::from(bytes), path, offset))
            }
        }
    }

    /// The first sequence whose arrival timestamp is `>= timestamp_ms`, or
    /// [`Self::end_sequence`] if there is none.
    pub fn sequence_at_timestamp(&self, timestamp_ms: i64) -> Result<u64, StorageError> {
        let mut found = None;
        self.walk(
            |segment| segment.summary.last_timestamp_ms < timestamp_ms,
            |batch| batch.timestamp_ms < timestamp_ms,
            |batch, _| {
                if batch.record_count > 0 {
                    found = Some(batch.first_sequence());
                }
                found.is_none()
            },
        )?;
        Ok(found.unwrap_or_else(|| self.end_sequence()))
    }

    /// One past the last appended record's sequence; 0 for a shard that never held a record.
    pub fn end_sequence(&self) -> u64 {
        self.inner.state().end_sequence()
    }

    /// The sequence and arrival time of the first record not trimmed, if any.
    fn first_kept(&self) -> Result<Option<(u64, i64)>, StorageError> {
        let trim = self.trim_sequence();
        let mut found = None;
        self.walk(
            |segment| segment.summary.end_sequence <= trim,
            |batch| batch.end_sequence() <= trim,
            |batch, _| {
                if batch.record_count > 0 {
                    found = Some((batch.first_sequence().max(trim), batch.timestamp_ms));
                }
                found.is_none()
            },
        )?;
        Ok(found)
    }

    /// The sequence of the first stored record not trimmed, or [`Self::end_sequence`] if there
    /// is none.
    pub fn first_sequence(&self) -> Result<u64, StorageError> {
        Ok(self.first_kept()?.map_or_else(|| self.end_sequence(), |(sequence, _)| sequence))
    }

    /// Whether opening the shard cut an unreadable tail off its newest segment: a torn write,
    /// or damage that reads like one (the caller tells them apart; see `host_shard`).
    pub fn recovered_cut(&self) -> bool {
        self.inner.state().recovered_cut
    }

    /// Records below this sequence are expired.
    pub fn trim_sequence(&self) -> u64 {
        self.inner.state().trim_sequence
    }

    /// The arrival timestamp of the oldest record not trimmed, if any.
    pub fn oldest_timestamp_ms(&self) -> Result<Option<i64>, StorageError> {
        Ok(self.first_kept()?.map(|(_, timestamp_ms)| timestamp_ms))
    }

    /// Expires every record below `sequence` (a later call with a lower one changes nothing):
    /// reads and exports skip them at once, and every segment file that holds only expired,
    /// durable records — the newest file excepted, which the writer appends to — is removed,
    /// with its entries in the in-memory index. Returns how many files were removed.
    ///
    /// The caller makes the trim point durable first (the shard's state machine persists it),
    /// so a crash between the two only leaves files that the next trim removes.
    pub fn trim(&self, sequence: u64) -> Result<usize, StorageError> {
        let inner = &self.inner;
        // The I/O lock keeps a writer round (which addresses batches by position) out.
        let _file = lock(&inner.io);
        let (paths, dir) = {
            let mut state = inner.state();
            state.check_usable()?;
            state.trim_sequence = state.trim_sequence.max(sequence);
            let trim = state.trim_sequence;
            if state.export_pins > 0 {
                // A snapshot is being sent from the files: they go at a later trim.
                return Ok(0);
            }
            let newest = state.segments.len().saturating_sub(1);
            let indexed_from = state.indexed_from();
            let durable_segments = match state.batches.get(state.durable_count) {
                Some(pending) => pending.segment,
                None => state.segments.len(),
            };
            // Leading segments, not the newest, whose every batch is expired and durable.
            let removable = state.segments[..newest.min(durable_segments)]
                .partition_point(|segment| segment.summary.end_sequence <= trim);
            if removable == 0 {
                return Ok(0);
            }
            if removable > indexed_from {
                let batches_removed = state.batches.partition_point(|batch| batch.segment < removable);
                state.batches.drain(..batches_removed);
                state.durable_count -= batches_removed;
            }
            for batch in &mut state.batches {
                batch.segment -= removable;
            }
            let paths: Vec<PathBuf> = state.segments.drain(..removable).map(|segment| segment.path).collect();
            (paths, state.data_dir.clone())
        };
        for path in &paths {
            inner.read_files.forget(path);
            inner.indexes.forget_under(path);
            inner.fs.remove_file(path).context(|| format!("remove expired segment {}", path.display()))?;
        }
        inner.fs.sync_dir(&dir).context(|| format!("sync directory {}", dir.display()))?;
        Ok(paths.len())
    }

    /// Segment files the shard has (expired ones not yet removed included).
    pub fn segment_count(&self) -> usize {
        self.inner.state().segments.len()
    }

    /// Index entries in memory: this shard's newest segments', and the store's cache of
    /// closed segments' (over every shard).
    pub fn index_entries_in_memory(&self) -> (usize, usize) {
        (self.inner.state().batches.len(), self.inner.indexes.entry_count())
    }

    /// Segment files the whole store has open for reading.
    pub fn open_read_files(&self) -> usize {
        self.inner.read_files.open_count()
    }

    /// The arrival timestamp of the last appended batch.
    pub fn last_timestamp_ms(&self) -> Option<i64> {
        self.inner.state().batches.last().map(|batch| batch.timestamp_ms)
    }

    pub fn last_appended(&self) -> Option<BatchLogId> {
        self.inner.state().last_appended()
    }

    pub fn last_durable(&self) -> Option<BatchLogId> {
        self.inner.state().last_durable()
    }

    /// Bytes appended but not yet durable (held in memory until the writer syncs them).
    pub fn pending_bytes(&self) -> u64 {
        let state = self.inner.state();
        state.batches[state.durable_count..].iter().map(|batch| batch.length).sum()
    }

    /// Waits until everything appended before this call is durable; returns the last durable
    /// batch. Fails if a segment write failed or the store is closed, and with
    /// [`StorageError::Replaced`] if an [`Self::import`] replaced the shard's contents after
    /// this call and before the flush saw them durable (what the caller asked about is gone;
    /// the imported contents are durable when `import` returns).
    pub fn flush(
        &self,
    ) -> impl std::future::Future<Output = Result<Option<BatchLogId>, StorageError>> + Send + 'static {
        let inner = self.inner.clone();
        let (target, generation) = {
            let state = inner.state();
            (state.last_appended(), state.generation)
        };
        async move {
            loop {
                {
                    let state = inner.state();
                    state.check_usable()?;
                    let reached = match (target, state.last_durable()) {
                        (None, _) => true,
                        (Some(target), Some(durable)) => durable.index >= target.index,
                        (Some(_), None) => false,
                    };
                    if state.generation != generation {
                        return Err(StorageError::Replaced);
                    }
                    if reached {
                        return Ok(state.last_durable());
                    }
                }
                let (sender, receiver) = oneshot::channel();
                inner.link.sender.send(WriterMessage::Flush(sender)).await.map_err(|_| StorageError::Closed)?;
                receiver.await.map_err(|_| StorageError::Closed)?;
            }
        }
    }

    /// Every kept batch of the shard, encoded as in the segment files and concatenated, after
    /// `prefix`, as a stream read on demand (see [`ExportReader`]).
    pub fn export_reader(&self, prefix: Vec<u8>) -> Result<ExportReader, StorageError> {
        let trim = {
            let mut state = self.inner.state();
            state.check_usable()?;
            state.export_pins += 1;
            state.trim_sequence
        };
        let pin = ExportPin(self.inner.clone());
        let mut len = prefix.len() as u64;
        let mut pieces = vec![(0, ExportPiece::Memory(Bytes::from(prefix)))];
        self.walk(
            |segment| segment.summary.end_sequence < trim,
            |batch| batch.end_sequence() <= trim && batch.first_sequence() < trim,
            |batch, path| {
                let next = match batch.source(path) {
                    BatchSource::Memory(bytes) => ExportPiece::Memory(bytes),
                    BatchSource::File { path, offset, length } => {
                        if let Some((_, ExportPiece::File { path: last, offset: start, length: extent })) =
                            pieces.last_mut()
                        {
                            if *last == path && *start + *extent == offset {
                                *extent += length;
                                len += length;
                                return true;
                            }
                        }
                        ExportPiece::File { path, offset, length }
                    }
                };
                pieces.push((len, next));
                len += batch.length;
                true
            },
        )?;
        Ok(ExportReader {
            pieces,
            len,
            fs: self.inner.fs.clone(),
            read_files: self.inner.read_files.clone(),
            _pin: pin,
        })
    }

    /// Every kept batch of the shard, encoded as in the segment files and concatenated, in
    /// memory (a snapshot is sent with [`Self::export_reader`] instead).
    pub fn export(&self) -> Result<Vec<u8>, StorageError> {
        let reader = self.export_reader(Vec::new())?;
        let len = usize::try_from(reader.len()).map_err(|_| StorageError::InvalidInput("export too large".into()))?;
        let mut bytes = vec![0u8; len];
        let read = read_fully(|buf, offset| reader.read_at(buf, offset), &mut bytes, 0)
            .map_err(|error| StorageError::io("read the shard for an export", error))?;
        if read < len {
            return Err(StorageError::io(
                "read the shard for an export",
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the export ended early"),
            ));
        }
        Ok(bytes)
    }

    /// A new file in the shard's directory to receive a snapshot into.
    pub fn incoming_snapshot(&self) -> Result<SpillFile, StorageError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = self.inner.dir.join(format!("{SPILL_PREFIX}{}{SPILL_SUFFIX}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let file = match self.inner.fs.open(&path, OpenMode::CreateNew) {
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let file = self.inner.fs.open(&path, OpenMode::ReadWrite);
                file.and_then(|file| file.set_len(0).map(|()| file))
            }
            other => other,
        }
        .context(|| format!("create {}", path.display()))?;
        Ok(SpillFile { path, file, fs: self.inner.fs.clone() })
    }

    /// Replaces the shard's contents with a snapshot from [`Self::export`]; durable on return.
    pub fn import(&self, snapshot: &[u8]) -> Result<(), StorageError> {
        self.import_from(&mut SliceBatches { bytes: snapshot, offset: 0 })
    }

    /// Replaces the shard's contents with `batches` (a snapshot); durable on return. Atomic
    /// across a crash: the batches are verified as they are written into a new generation
    /// directory, which is made durable before `CURRENT` is switched to it, so recovery finds
    /// either all the old contents or all the new ones. Reads see the old contents until the
    /// switch; a [`Self::flush`] waiting on them fails with [`StorageError::Replaced`]. The
    /// caller appends nothing meanwhile (a shard's state machine applies and installs one thing
    /// at a time). Memory: one batch and one segment's index entries at a time.
    ///
    /// An error before the switch (a bad batch, a failed write) removes the new directory and
    /// changes nothing; a failure to switch stops the shard as a failed segment write does (the
    /// disk holds the old or the new contents, which reopening the store recovers).
    pub fn import_from(&self, batches: &mut dyn SnapshotBatches) -> Result<(), StorageError> {
        let inner = &self.inner;
        let fs = inner.fs.as_ref();
        let mut file = lock(&inner.io);
        let (old_generation, new_generation, new_dir, trim_sequence) = {
            let state = inner.state();
            state.check_usable()?;
            let new_generation = state.disk_generation + 1;
            (state.disk_generation, new_generation, generation_dir(&inner.dir, new_generation), state.trim_sequence)
        };
        remove_stale_generations(fs, &inner.dir, old_generation)?;
        fs.create_dir_all(&new_dir)
            .and_then(|()| fs.sync_dir(&inner.dir))
            .context(|| format!("create generation {}", new_dir.display()))?;
        let mut next = ShardState {
            disk_generation: new_generation,
            data_dir: new_dir.clone(),
            trim_sequence,
            ..ShardState::default()
        };
        let written = write_imported(fs, &inner.config, &mut next, batches).and_then(|newest| {
            fs.sync_dir(&new_dir).context(|| format!("sync directory {}", new_dir.display()))?;
            Ok(newest)
        });
        let newest = match written {
            Ok(newest) => newest,
            Err(error) => {
                if let Err(cleanup) = remove_generation(fs, &inner.dir, new_generation) {
                    tracing::warn!(group_id = inner.group_id, %cleanup, "could not remove a failed import's files");
                }
                return Err(error);
            }
        };
        if let Err(error) = write_current(fs, &inner.dir, new_generation) {
            inner.link.failstop.trip(format!("snapshot import of group {}: {error}", inner.group_id));
            inner.state().write_error = Some(error.to_string());
            return Err(error);
        }
        let pinned = {
            let mut state = inner.state();
            next.generation = state.generation + 1;
            next.export_pins = state.export_pins;
            *state = next;
            state.export_pins > 0
        };
        file.current = newest;
        if pinned {
            // A snapshot is being sent from the old files: the next import or opening removes them.
            return Ok(());
        }
        // The new contents are live and durable; the old generation is garbage. Failing to
        // remove it is not an error: the next import or recovery removes it first.
        let old_dir = generation_dir(&inner.dir, old_generation);
        inner.read_files.forget_under(&old_dir);
        inner.indexes.forget_under(&old_dir);
        let removed = remove_generation(fs, &inner.dir, old_generation)
            .and_then(|_| fs.sync_dir(&inner.dir).context(|| format!("sync directory {}", inner.dir.display())));
        if let Err(error) = removed {
            tracing::warn!(
                group_id = inner.group_id,
                %error,
                "could not remove the generation an import replaced"
            );
        }
        Ok(())
    }
}

/// Writes an import's batches into the new, empty generation directory of `next`, placing them
/// in files as appends do: one write per `write_batch_bytes_max` of batches and one fdatasync
/// per file. Returns the newest file (the writer appends to it next).
fn write_imported(
    fs: &dyn FileSystem,
    config: &SegmentStoreConfig,
    next: &mut ShardState,
    batches: &mut dyn SnapshotBatches,
) -> Result<Option<OpenSegment>, StorageError> {
    struct Open {
        path: PathBuf,
        file: Arc<dyn FileHandle>,
        buffer: Vec<u8>,
        written: u64,
    }
    impl Open {
        fn write(&mut self) -> Result<(), StorageError> {
            self.file
                .write_at(&self.buffer, self.written)
                .context(|| format!("write segment {}", self.path.display()))?;
            self.written += self.buffer.len() as u64;
            self.buffer.clear();
            Ok(())
        }

        fn finish(mut self) -> Result<OpenSegment, StorageError> {
            self.write()?;
            self.file.sync_data().context(|| format!("sync segment {}", self.path.display()))?;
            Ok((self.path, self.file))
        }
    }
    let mut open: Option<Open> = None;
    let mut last: Option<BatchHeader> = None;
    while let Some((header, bytes)) = batches.next_batch()? {
        if let Some(previous) = &last {
            if header.log_id.index <= previous.log_id.index || header.timestamp_ms < previous.timestamp_ms {
                return Err(StorageError::InvalidInput(format!(
                    "snapshot batch at log index {} does not follow its predecessor",
                    header.log_id.index
                )));
            }
        }
        let files = next.segments.len();
        next.push_batch(&header, None, config.segment_bytes_max);
        if next.segments.len() != files {
            if let Some(done) = open.take() {
                done.finish()?;
            }
            let path = next.segments[files].path.clone();
            let file = fs.open(&path, OpenMode::CreateNew).context(|| format!("create segment {}", path.display()))?;
            open = Some(Open { path, file, buffer: Vec::new(), written: 0 });
        }
        let current = open.as_mut().expect("a file is open once a batch is placed");
        if !current.buffer.is_empty() && current.buffer.len() + bytes.len() > config.write_batch_bytes_max {
            current.write()?;
        }
        current.buffer.extend_from_slice(&bytes);
        // Durable once the import is done; only the newest file's entries stay in memory.
        next.durable_count = next.batches.len();
        next.evict_closed();
        last = Some(header);
    }
    open.map(Open::finish).transpose()
}

/// Removes what snapshots being received when the node stopped left in the shard directory.
fn remove_stale_spills(fs: &dyn FileSystem, shard_dir: &Path) -> Result<(), StorageError> {
    let names = fs.list_dir(shard_dir).context(|| format!("list shard directory {}", shard_dir.display()))?;
    for name in names.iter().filter(|name| name.starts_with(SPILL_PREFIX) && name.ends_with(SPILL_SUFFIX)) {
        let path = shard_dir.join(name);
        fs.remove_file(&path).context(|| format!("remove {}", path.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Snapshots: streamed out of the segments, spilled to a file on the way in

/// A shard's kept batches as one byte stream after a prefix (a snapshot's header), read from
/// where they are as they are asked for: a snapshot for a replica that fell behind, sent
/// without being built in memory. Contiguous durable batches of a file are one piece; a file
/// removed meanwhile (retention) fails the read, and the sender starts a new snapshot.
#[derive(Debug)]
pub struct ExportReader {
    /// Each piece with where it starts in the stream.
    pieces: Vec<(u64, ExportPiece)>,
    len: u64,
    fs: Arc<dyn FileSystem>,
    read_files: Arc<ReadFiles>,
    _pin: ExportPin,
}

/// Keeps the shard's files in place while a snapshot is read from them.
#[derive(Debug)]
struct ExportPin(Arc<ShardInner>);

impl Drop for ExportPin {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.export_pins = state.export_pins.saturating_sub(1);
    }
}

#[derive(Debug)]
enum ExportPiece {
    Memory(Bytes),
    File { path: PathBuf, offset: u64, length: u64 },
}

impl ExportReader {
    /// The stream's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads up to `buf.len()` bytes at `offset` of the stream (fewer at a piece's end; 0 at
    /// the stream's end).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let position = self.pieces.partition_point(|(start, _)| *start <= offset) - 1;
        let (start, piece) = &self.pieces[position];
        let within = offset - start;
        match piece {
            ExportPiece::Memory(bytes) => {
                let within = within as usize;
                let count = buf.len().min(bytes.len() - within);
                buf[..count].copy_from_slice(&bytes[within..within + count]);
                Ok(count)
            }
            ExportPiece::File { path, offset: file_offset, length } => {
                let count = usize::try_from(length - within).unwrap_or(usize::MAX).min(buf.len());
                let file = self.read_files.get(self.fs.as_ref(), path).map_err(std::io::Error::other)?;
                let read = file.read_at(&mut buf[..count], file_offset + within)?;
                if read == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("segment {} ends before a batch it holds", path.display()),
                    ));
                }
                Ok(read)
            }
        }
    }
}

/// Reads into `buf` from `offset` of a source read through `read_at` (which may return less
/// than asked, and 0 at the end) until `buf` is full or the source ends; returns the count.
pub fn read_fully(
    mut read_at: impl FnMut(&mut [u8], u64) -> std::io::Result<usize>,
    buf: &mut [u8],
    offset: u64,
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_at(&mut buf[filled..], offset + filled as u64)? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

/// A snapshot being received for a shard, written to a file in the shard's directory and
/// removed when dropped (a crash leaves it for the next opening of the shard to remove).
#[derive(Debug)]
pub struct SpillFile {
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    fs: Arc<dyn FileSystem>,
}

/// The file-name prefix and suffix of snapshots being received.
const SPILL_PREFIX: &str = "incoming-";
const SPILL_SUFFIX: &str = ".snap";

impl SpillFile {
    pub fn len(&self) -> std::io::Result<u64> {
        self.file.len()
    }

    pub fn is_empty(&self) -> std::io::Result<bool> {
        self.file.is_empty()
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    pub fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.file.write_at(buf, offset)
    }

    /// Reads exactly `buf.len()` bytes at `offset`; `Ok(false)` if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<bool> {
        Ok(read_fully(|buf, offset| self.file.read_at(buf, offset), buf, offset)? == buf.len())
    }

    /// The batches stored from `offset` on (after the snapshot's header), each verified.
    pub fn batches_from(&self, offset: u64) -> std::io::Result<SpillBatches<'_>> {
        Ok(SpillBatches { spill: self, offset, len: self.len()? })
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = self.fs.remove_file(&self.path);
    }
}

/// The batches of a snapshot to import, in order.
pub trait SnapshotBatches {
    /// The next batch, verified (checksum and records), or `None` at the end.
    fn next_batch(&mut self) -> Result<Option<(BatchHeader, Bytes)>, StorageError>;
}

/// Verifies the encoded batch `bytes` found at byte `offset` of a snapshot.
fn verified_batch(bytes: Bytes, offset: u64) -> Result<(BatchHeader, Bytes), StorageError> {
    let invalid = |error: String| StorageError::InvalidInput(format!("snapshot batch at byte {offset}: {error}"));
    let header = decode_header(&bytes).map_err(|error| invalid(error.to_string()))?;
    decode_records(&bytes, &header).map_err(|error| invalid(error.to_string()))?;
    Ok((header, bytes))
}

/// The batches of a snapshot held in memory.
struct SliceBatches<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl SnapshotBatches for SliceBatches<'_> {
    fn next_batch(&mut self) -> Result<Option<(BatchHeader, Bytes)>, StorageError> {
        if self.offset >= self.bytes.len() {
            return Ok(None);
        }
        let rest = &self.bytes[self.offset..];
        let header = peek_header(rest)
            .map_err(|error| StorageError::InvalidInput(format!("snapshot batch at byte {}: {error}", self.offset)))?;
        let end = header.encoded_bytes().min(rest.len());
        let batch = verified_batch(Bytes::copy_from_slice(&rest[..end]), self.offset as u64)?;
        self.offset += end;
        Ok(Some(batch))
    }
}

/// The batches of a snapshot received into a [`SpillFile`]: one batch in memory at a time.
pub struct SpillBatches<'a> {
    spill: &'a SpillFile,
    offset: u64,
    len: u64,
}

impl SnapshotBatches for SpillBatches<'_> {
    fn next_batch(&mut self) -> Result<Option<(BatchHeader, Bytes)>, StorageError> {
        if self.offset >= self.len {
            return Ok(None);
        }
        let offset = self.offset;
        let invalid = |error: String| StorageError::InvalidInput(format!("snapshot batch at byte {offset}: {error}"));
        let io = |error: std::io::Error| StorageError::io("read a received snapshot", error);
        let mut header = [0u8; segment_format::BATCH_HEADER_BYTES];
        if !self.spill.read_exact_at(&mut header, offset).map_err(io)? {
            return Err(invalid("the snapshot ends inside a batch header".into()));
        }
        let length = peek_header(&header).map_err(|error| invalid(error.to_string()))?.encoded_bytes();
        let mut bytes = vec![0u8; length];
        if !self.spill.read_exact_at(&mut bytes, offset).map_err(io)? {
            return Err(invalid(format!("the snapshot ends inside a {length}-byte batch")));
        }
        let batch = verified_batch(Bytes::from(bytes), offset)?;
        self.offset += length as u64;
        Ok(Some(batch))
    }
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
