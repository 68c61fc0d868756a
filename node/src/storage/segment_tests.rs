//! Unit tests of the segment store (a sibling file of `segment.rs` to keep that one readable).

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::task::Poll;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use riffle_proto::peer::RecordInput;

use super::*;
use crate::fs::memory::MemoryFileSystem;
use crate::fs::real::RealFileSystem;
use crate::seam::BoxFuture;

/// Runs the writer as a task of the test's current-thread runtime: deterministic, and the
/// writer only runs while the test awaits.
#[derive(Debug)]
struct TaskExecutor;

impl Executor for TaskExecutor {
    fn spawn(&self, _name: &'static str, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn spawn_dedicated(&self, _name: &'static str, task: BoxFuture<()>) {
        tokio::spawn(task);
    }
}

const ROOT: &str = "/segments";

fn log_id(index: u64) -> BatchLogId {
    BatchLogId { term: 1, node_id: 1, index }
}

fn batch(timestamp_ms: i64, record_count: usize, data_bytes: usize) -> AppendBatch {
    AppendBatch {
        timestamp_ms,
        records: (0..record_count)
            .map(|position| RecordInput {
                partition_key: format!("key-{position}"),
                data: Bytes::from(vec![(position % 251) as u8; data_bytes]),
            })
            .collect(),
    }
}

fn open_store(fs: Arc<dyn FileSystem>, config: SegmentStoreConfig) -> SegmentStore {
    SegmentStore::open(fs, PathBuf::from(ROOT), config, &TaskExecutor).expect("open store")
}

fn small_segments() -> SegmentStoreConfig {
    SegmentStoreConfig { segment_bytes_max: SegmentStoreConfig::SEGMENT_BYTES_MIN, ..SegmentStoreConfig::default() }
}

fn read_all(shard: &ShardSegments) -> Vec<StoredRecord> {
    shard.read(0, usize::MAX, usize::MAX).expect("read everything").records
}

fn sequence(index: u64, position: u64) -> u64 {
    crate::sequence::of_record(index, position as usize)
}

#[tokio::test]
async fn appended_records_read_back_in_order() {
    let store = open_store(Arc::new(MemoryFileSystem::new()), Default::default());
    let shard = store.shard(1).expect("shard");
    assert_eq!((shard.end_sequence(), shard.first_sequence().unwrap()), (0, 0));

    assert!(shard.append(log_id(3), &batch(10, 2, 5)).expect("append"));
    assert!(shard.append(log_id(4), &batch(11, 0, 0)).expect("append empty"));
    assert!(shard.append(log_id(7), &batch(12, 3, 5)).expect("append"));

    let expected = [sequence(3, 0), sequence(3, 1), sequence(7, 0), sequence(7, 1), sequence(7, 2)];
    let records = read_all(&shard);
    let sequences: Vec<u64> = records.iter().map(|record| record.sequence).collect();
    assert_eq!(sequences, expected, "read from memory");
    assert_eq!(records[3].partition_key, "key-1");
    assert_eq!(&records[3].data[..], &[1u8; 5]);
    assert_eq!(records[2].timestamp_ms, 12);

    let durable = shard.flush().await.expect("flush");
    assert_eq!(durable, Some(log_id(7)));
    assert_eq!(read_all(&shard), records, "the same records from the files");

    let middle = shard.read(sequence(3, 1), 2, usize::MAX).expect("read");
    let sequences: Vec<u64> = middle.records.iter().map(|record| record.sequence).collect();
    assert_eq!(sequences, [sequence(3, 1), sequence(7, 0)]);
    assert_eq!(middle.next_sequence, sequence(7, 0) + 1);

    assert_eq!(shard.first_sequence().unwrap(), sequence(3, 0));
    assert_eq!(shard.end_sequence(), sequence(7, 3));
    let past_end = shard.read(shard.end_sequence(), 10, 1000).expect("read at end");
    assert!(past_end.records.is_empty());
    assert_eq!(past_end.next_sequence, shard.end_sequence());
}

#[tokio::test]
async fn bytes_max_stops_before_exceeding_but_returns_at_least_one() {
    let store = open_store(Arc::new(MemoryFileSystem::new()), Default::default());
    let shard = store.shard(1).expect("shard");
    shard.append(log_id(1), &batch(1, 4, 100)).expect("append");
    // Each record is "key-N" (5 bytes) + 100 bytes of data.
    let two = shard.read(0, 10, 2 * 105 + 50).expect("read");
    assert_eq!(two.records.len(), 2);
    assert_eq!(two.next_sequence, sequence(1, 2));
    let one = shard.read(0, 10, 1).expect("read");
    assert_eq!(one.records.len(), 1, "at least one record even over bytes_max");
    let none = shard.read(0, 0, 1000).expect("read");
    assert_eq!((none.records.len(), none.next_sequence), (0, 0));
}

#[tokio::test]
async fn re_appending_old_indexes_is_a_no_op() {
    let store = open_store(Arc::new(MemoryFileSystem::new()), Default::default());
    let shard = store.shard(1).expect("shard");
    assert!(shard.append(log_id(5), &batch(1, 1, 1)).expect("append"));
    assert!(!shard.append(log_id(5), &batch(1, 9, 1)).expect("replay"));
    assert!(!shard.append(log_id(2), &batch(1, 9, 1)).expect("older"));
    assert_eq!(shard.last_appended(), Some(log_id(5)));
    assert_eq!(read_all(&shard).len(), 1);
}

#[tokio::test]
async fn timestamps_never_decrease_and_index_reads() {
    let store = open_store(Arc::new(MemoryFileSystem::new()), Default::default());
    let shard = store.shard(1).expect("shard");
    shard.append(log_id(1), &batch(100, 1, 1)).expect("append");
    shard.append(log_id(2), &batch(50, 1, 1)).expect("append from a lagging clock");
    shard.append(log_id(3), &batch(200, 1, 1)).expect("append");
    let timestamps: Vec<i64> = read_all(&shard).iter().map(|r| r.timestamp_ms).collect();
    assert_eq!(timestamps, [100, 100, 200]);
    assert_eq!(shard.last_timestamp_ms(), Some(200));

    assert_eq!(shard.sequence_at_timestamp(0).unwrap(), sequence(1, 0));
    assert_eq!(shard.sequence_at_timestamp(100).unwrap(), sequence(1, 0));
    assert_eq!(shard.sequence_at_timestamp(150).unwrap(), sequence(3, 0));
    assert_eq!(shard.sequence_at_timestamp(201).unwrap(), shard.end_sequence());
}

#[tokio::test]
async fn segments_roll_and_are_named_by_first_index() {
    let memory = MemoryFileSystem::new();
    let store = open_store(Arc::new(memory.clone()), small_segments());
    let shard = store.shard(9).expect("shard");
    for index in 1..=6 {
        shard.append(log_id(index), &batch(index as i64, 3, 500)).expect("append");
    }
    shard.flush().await.expect("flush");
    let names = memory.list_dir(&PathBuf::from(ROOT).join("9")).expect("list");
    // Each batch is ~1.6 KiB and a segment holds 4 KiB: two batches per file.
    assert_eq!(names, [segment_file_name(1), segment_file_name(3), segment_file_name(5)]);
    assert_eq!(names[1], "00000000000000000003.seg");
    assert_eq!(read_all(&shard).len(), 18);
}

#[tokio::test]
async fn restart_recovers_on_the_memory_fs() {
    let memory = MemoryFileSystem::new();
    let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
    let before = {
        let store = open_store(fs.clone(), small_segments());
        let shard = store.shard(1).expect("shard");
        for index in 1..=5 {
            shard.append(log_id(index), &batch(index as i64, 2, 700)).expect("append");
        }
        shard.flush().await.expect("flush");
        read_all(&shard)
    };

    let store = open_store(fs, small_segments());
    let shard = store.shard(1).expect("reopen shard");
    assert_eq!(read_all(&shard), before);
    assert_eq!(shard.last_appended(), Some(log_id(5)));
    assert_eq!(shard.last_durable(), Some(log_id(5)));
    assert!(!shard.append(log_id(5), &batch(9, 1, 1)).expect("replay is a no-op"));
    shard.append(log_id(6), &batch(1, 1, 1)).expect("append after restart");
    shard.flush().await.expect("flush");
    assert_eq!(read_all(&shard).len(), before.len() + 1);
    assert_eq!(read_all(&shard).last().map(|r| r.timestamp_ms), Some(5));
}

#[tokio::test]
async fn restart_recovers_on_the_real_fs() {
    let temp = tempfile::tempdir().expect("tempdir");
    let root = temp.path().join("segments");
    let fs: Arc<dyn FileSystem> = Arc::new(RealFileSystem::new());
    let open = || SegmentStore::open(fs.clone(), root.clone(), small_segments(), &TaskExecutor).expect("open");
    let before = {
        let store = open();
        let shard = store.shard(2).expect("shard");
        for index in 1..=4 {
            shard.append(log_id(index), &batch(index as i64, 3, 600)).expect("append");
        }
        shard.flush().await.expect("flush");
        read_all(&shard)
    };
    let shard = open().shard(2).expect("reopen");
    assert_eq!(read_all(&shard), before);
    assert_eq!(shard.last_durable(), Some(log_id(4)));
}

/// Writes `bytes` after the end of the newest segment without syncing, as a writer that
/// crashed mid-write would have.
fn write_unsynced_tail(memory: &MemoryFileSystem, path: &Path, bytes: &[u8]) {
    let file = memory.open(path, OpenMode::ReadWrite).expect("open segment");
    let len = file.len().expect("len");
    file.write_at(bytes, len).expect("unsynced write");
}

#[tokio::test]
async fn a_torn_tail_after_a_crash_is_truncated_and_synced_batches_survive() {
    for seed in 0..40u64 {
        let memory = MemoryFileSystem::new();
        let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
        let store = open_store(fs.clone(), Default::default());
        let shard = store.shard(1).expect("shard");
        for index in 1..=3 {
            shard.append(log_id(index), &batch(1, 2, 40)).expect("append");
        }
        shard.flush().await.expect("flush");
        let segment = PathBuf::from(ROOT).join("1").join(segment_file_name(1));
        let mut tail = encode_batch(log_id(4), 1, &batch(1, 2, 40).records).to_vec();
        tail.extend_from_slice(&encode_batch(log_id(5), 1, &batch(1, 2, 40).records));
        write_unsynced_tail(&memory, &segment, &tail);

        memory.crash(&mut ChaCha8Rng::seed_from_u64(seed));
        drop((shard, store));

        let store = open_store(fs, Default::default());
        let shard = store.shard(1).expect("recovery tolerates a torn tail");
        let last = shard.last_durable().expect("synced batches survive").index;
        assert!((3..=5).contains(&last), "seed {seed}: last batch {last}");
        assert_eq!(read_all(&shard).len() as u64, last * 2, "seed {seed}");
        let valid_len = memory.durable_content(&segment).expect("segment").len();
        assert_eq!(valid_len as u64 % (tail.len() as u64 / 2), 0, "seed {seed}: truncated");
        shard.append(log_id(last + 1), &batch(1, 1, 1)).expect("append");
        shard.flush().await.expect("flush after recovery");
    }
}

#[tokio::test]
async fn damage_before_the_tail_is_corruption() {
    let memory = MemoryFileSystem::new();
    let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
    let dir = PathBuf::from(ROOT).join("1");
    {
        let store = open_store(fs.clone(), small_segments());
        let shard = store.shard(1).expect("shard");
        for index in 1..=5 {
            shard.append(log_id(index), &batch(1, 2, 700)).expect("append");
        }
        shard.flush().await.expect("flush");
    }
    let second_batch_offset = (encode_batch(log_id(1), 1, &batch(1, 2, 700).records).len()) as u64;
    let first_segment = dir.join(segment_file_name(1));
    memory.corrupt_byte(&first_segment, second_batch_offset + 60).expect("corrupt");

    let store = open_store(fs.clone(), small_segments());
    match store.shard(1) {
        Err(StorageError::Corruption { file, offset, .. }) => {
            assert_eq!(file, first_segment);
            assert_eq!(offset, second_batch_offset);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[tokio::test]
async fn damage_inside_the_last_file_with_valid_batches_after_is_corruption() {
    let memory = MemoryFileSystem::new();
    let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
    {
        let store = open_store(fs.clone(), Default::default());
        let shard = store.shard(1).expect("shard");
        for index in 1..=3 {
            shard.append(log_id(index), &batch(1, 1, 10)).expect("append");
        }
        shard.flush().await.expect("flush");
    }
    let segment = PathBuf::from(ROOT).join("1").join(segment_file_name(1));
    memory.corrupt_byte(&segment, 30).expect("corrupt the first batch");
    let store = open_store(fs, Default::default());
    assert!(matches!(store.shard(1), Err(StorageError::Corruption { offset: 0, .. })));
}

#[tokio::test]
async fn reads_verify_checksums() {
    let memory = MemoryFileSystem::new();
    let store = open_store(Arc::new(memory.clone()), Default::default());
    let shard = store.shard(1).expect("shard");
    shard.append(log_id(1), &batch(1, 1, 10)).expect("append");
    shard.flush().await.expect("flush");
    let segment = PathBuf::from(ROOT).join("1").join(segment_file_name(1));
    memory.corrupt_byte(&segment, 55).expect("corrupt");
    let error = shard.read(0, 10, 1000).expect_err("damaged batch");
    assert!(error.is_corruption(), "got {error}");
}

/// Counts `write_all_at_and_sync` calls of the handles it opens.
#[derive(Debug)]
struct CountingFileSystem {
    inner: MemoryFileSystem,
    synced_writes: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct CountingFile {
    inner: Arc<dyn FileHandle>,
    synced_writes: Arc<AtomicUsize>,
}

impl FileHandle for CountingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn write_all_at_and_sync(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.synced_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write_all_at_and_sync(bufs, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl FileSystem for CountingFileSystem {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        Ok(Arc::new(CountingFile { inner: self.inner.open(path, mode)?, synced_writes: self.synced_writes.clone() }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
}

#[tokio::test]
async fn one_flush_group_commits_every_shard_with_one_sync_per_file() {
    let synced_writes = Arc::new(AtomicUsize::new(0));
    let fs = Arc::new(CountingFileSystem { inner: MemoryFileSystem::new(), synced_writes: synced_writes.clone() });
    let store = open_store(fs, Default::default());
    let shards: Vec<ShardSegments> = (1..=8).map(|group| store.shard(group).expect("shard")).collect();
    for shard in &shards {
        for index in 1..=3 {
            shard.append(log_id(index), &batch(1, 2, 10)).expect("append");
        }
    }
    assert!(shards.iter().all(|shard| shard.last_durable().is_none()));

    shards[0].flush().await.expect("flush one shard");

    for shard in &shards {
        assert_eq!(shard.last_durable(), Some(log_id(3)), "group {}", shard.group_id());
        assert_eq!(shard.pending_bytes(), 0);
    }
    assert_eq!(synced_writes.load(Ordering::SeqCst), shards.len(), "one sync per file");
}

#[tokio::test]
async fn write_batch_bytes_max_splits_rounds_without_losing_order() {
    let store = open_store(
        Arc::new(MemoryFileSystem::new()),
        SegmentStoreConfig {
            write_batch_bytes_max: SegmentStoreConfig::WRITE_BATCH_BYTES_MIN,
            ..SegmentStoreConfig::default()
        },
    );
    let shard = store.shard(1).expect("shard");
    for index in 1..=10 {
        shard.append(log_id(index), &batch(1, 2, 1000)).expect("append");
    }
    assert_eq!(shard.flush().await.expect("flush"), Some(log_id(10)));
    assert_eq!(read_all(&shard).len(), 20);
}

#[tokio::test]
async fn export_then_import_reproduces_the_shard() {
    let memory = MemoryFileSystem::new();
    let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
    let source_store = open_store(fs.clone(), small_segments());
    let source = source_store.shard(1).expect("source");
    for index in 1..=4 {
        source.append(log_id(index), &batch(index as i64 * 10, 2, 900)).expect("append");
    }
    source.flush().await.expect("flush");
    source.append(log_id(5), &batch(50, 0, 0)).expect("append empty, pending");
    source.append(log_id(6), &batch(60, 1, 10)).expect("append, pending");
    let snapshot = source.export().expect("export");

    let target_store = open_store(fs.clone(), small_segments());
    let target = target_store.shard(2).expect("target");
    target.append(log_id(1), &batch(1, 5, 5)).expect("old contents");
    target.flush().await.expect("flush old contents");
    target.import(&snapshot).expect("import");

    assert_eq!(read_all(&target), read_all(&source));
    assert_eq!(target.last_appended(), Some(log_id(6)));
    assert_eq!(target.last_durable(), Some(log_id(6)), "durable on return");
    assert_eq!(target.export().expect("export again"), snapshot);

    assert!(matches!(target.import(&snapshot[..snapshot.len() - 1]), Err(StorageError::InvalidInput(_))));
    assert_eq!(read_all(&target), read_all(&source), "a bad snapshot changes nothing");

    drop((target, target_store));
    let reopened = open_store(fs, small_segments()).shard(2).expect("reopen");
    assert_eq!(read_all(&reopened), read_all(&source));
    assert_eq!(reopened.last_appended(), Some(log_id(6)));
}

/// A snapshot of `indexes` (3 records of 500 bytes per batch), exported from a scratch store.
async fn snapshot_of(indexes: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    let store = open_store(Arc::new(MemoryFileSystem::new()), small_segments());
    let shard = store.shard(1).expect("scratch shard");
    for index in indexes {
        shard.append(log_id(index), &batch(index as i64, 3, 500)).expect("append");
    }
    shard.flush().await.expect("flush");
    shard.export().expect("export")
}

fn shard_dir(group_id: u64) -> PathBuf {
    PathBuf::from(ROOT).join(group_id.to_string())
}

/// Segment files directly in the shard directory (generation 0) and the generation
/// directories `gen-1 ..= gen-5` that exist.
fn layout(memory: &MemoryFileSystem, group_id: u64) -> (Vec<String>, Vec<u64>) {
    let dir = shard_dir(group_id);
    let top_level = memory
        .list_dir(&dir)
        .expect("list shard directory")
        .into_iter()
        .filter(|name| name.ends_with(SEGMENT_SUFFIX))
        .collect();
    let generations = (1..=5).filter(|generation| memory.exists(&generation_dir(&dir, *generation))).collect();
    (top_level, generations)
}

#[tokio::test]
async fn import_switches_generations_and_removes_the_old_one() {
    let memory = MemoryFileSystem::new();
    let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
    let store = open_store(fs.clone(), small_segments());
    let shard = store.shard(9).expect("shard");
    for index in 1..=4 {
        shard.append(log_id(index), &batch(index as i64, 3, 500)).expect("append");
    }
    shard.flush().await.expect("flush");
    let dir = shard_dir(9);
    assert!(!memory.exists(&dir.join(CURRENT_FILE)), "generation 0 has no CURRENT");
    assert_eq!(layout(&memory, 9).0.len(), 2, "generation 0: the shard directory");

    shard.import(&snapshot_of(10..=14).await).expect("first import");
    assert_eq!(layout(&memory, 9), (vec![], vec![1]));
    assert_eq!(
        memory.list_dir(&dir.join("gen-1")).expect("list"),
        [segment_file_name(10), segment_file_name(12), segment_file_name(14)]
    );
    assert_eq!(read_current(&memory, &dir).expect("CURRENT"), 1);
    shard.append(log_id(15), &batch(15, 1, 10)).expect("append after import");
    assert_eq!(shard.flush().await.expect("flush"), Some(log_id(15)));
    assert_eq!(layout(&memory, 9).1, [1], "appends after an import go to its generation");

    let second = snapshot_of(20..=21).await;
    shard.import(&second).expect("second import");
    assert_eq!(layout(&memory, 9), (vec![], vec![2]));
    assert_eq!(shard.export().expect("export"), second);
    shard.append(log_id(22), &batch(22, 2, 10)).expect("append");
    shard.flush().await.expect("flush");
    let expected = read_all(&shard);

    drop((shard, store));
    let shard = open_store(fs, small_segments()).shard(9).expect("reopen");
    assert_eq!(read_all(&shard), expected);
    assert_eq!(shard.last_durable(), Some(log_id(22)));
    assert_eq!(layout(&memory, 9), (vec![], vec![2]));
}

#[tokio::test]
async fn recovery_removes_what_an_unfinished_import_left() {
    let memory = MemoryFileSystem::new();
    let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
    let dir = shard_dir(3);
    let expected = {
        let store = open_store(fs.clone(), small_segments());
        let shard = store.shard(3).expect("shard");
        shard.import(&snapshot_of(1..=3).await).expect("import");
        read_all(&shard)
    };
    // Leftovers of an import to generation 2 that crashed before switching CURRENT, and of
    // the clean-up of generation 0.
    for leftover in [generation_dir(&dir, 2).join(segment_file_name(7)), dir.join(segment_file_name(1))] {
        memory.create_dir_all(leftover.parent().expect("parent")).expect("mkdir");
        memory
            .open(&leftover, OpenMode::CreateNew)
            .expect("create")
            .write_all_at_and_sync(&[b"leftover"], 0)
            .expect("write");
    }
    memory
        .open(&dir.join("CURRENT.tmp"), OpenMode::CreateNew)
        .expect("create")
        .write_at(&encode_current(2), 0)
        .expect("write");

    let shard = open_store(fs, small_segments()).shard(3).expect("reopen");
    assert_eq!(read_all(&shard), expected);
    assert_eq!(layout(&memory, 3), (vec![], vec![1]));
    assert!(!memory.exists(&dir.join("CURRENT.tmp")));
}

#[tokio::test]
async fn a_damaged_current_file_is_corruption() {
    let memory = MemoryFileSystem::new();
    let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
    {
        let store = open_store(fs.clone(), Default::default());
        let shard = store.shard(1).expect("shard");
        shard.import(&snapshot_of(1..=2).await).expect("import");
    }
    let current = shard_dir(1).join(CURRENT_FILE);
    memory.corrupt_byte(&current, 9).expect("corrupt");
    match open_store(fs, Default::default()).shard(1) {
        Err(StorageError::Corruption { file, .. }) => assert_eq!(file, current),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[tokio::test]
async fn import_and_reopen_on_the_real_fs() {
    let temp = tempfile::tempdir().expect("tempdir");
    let root = temp.path().join("segments");
    let fs: Arc<dyn FileSystem> = Arc::new(RealFileSystem::new());
    let open = || SegmentStore::open(fs.clone(), root.clone(), small_segments(), &TaskExecutor).expect("open");
    let snapshot = snapshot_of(5..=9).await;
    {
        let store = open();
        let shard = store.shard(2).expect("shard");
        shard.append(log_id(1), &batch(1, 3, 600)).expect("append");
        shard.flush().await.expect("flush");
        shard.import(&snapshot).expect("import");
        shard.import(&snapshot).expect("import again");
    }
    let shard = open().shard(2).expect("reopen");
    assert_eq!(shard.export().expect("export"), snapshot);
    let dir = root.join("2");
    assert!(dir.join("gen-2").is_dir());
    assert!(!dir.join("gen-1").exists());
    assert!(!dir.join(segment_file_name(1)).exists());
}

/// Where [`CrashingFileSystem`] dies: after `remaining` more changing operations.
#[derive(Debug)]
struct CrashPoint {
    memory: MemoryFileSystem,
    remaining: Mutex<Option<usize>>,
    crashed: AtomicBool,
    rng: Mutex<ChaCha8Rng>,
}

fn dead() -> io::Error {
    io::Error::other("the process crashed")
}

impl CrashPoint {
    /// Before an operation that changes something: fails once the process is dead, and
    /// crashes the memory file system (after `partial`, the part of the operation that got
    /// done unsynced) when the operation is the chosen step.
    fn step(&self, partial: impl FnOnce()) -> io::Result<()> {
        self.check()?;
        let mut remaining = lock(&self.remaining);
        match remaining.as_mut() {
            Some(0) => {
                *remaining = None;
                partial();
                self.memory.crash(&mut *lock(&self.rng));
                self.crashed.store(true, Ordering::SeqCst);
                Err(dead())
            }
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Before an operation that changes nothing.
    fn check(&self) -> io::Result<()> {
        if self.crashed.load(Ordering::SeqCst) {
            return Err(dead());
        }
        Ok(())
    }
}

/// A memory file system whose process dies at a chosen operation: the memory file system
/// crashes (unsynced data lost or torn) and every later call fails. The crashing operation
/// does not happen, except that a crashing write + sync leaves its writes unsynced.
#[derive(Debug)]
struct CrashingFileSystem {
    memory: MemoryFileSystem,
    point: Arc<CrashPoint>,
}

#[derive(Debug)]
struct CrashingFile {
    inner: Arc<dyn FileHandle>,
    point: Arc<CrashPoint>,
}

impl FileHandle for CrashingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.point.check()?;
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.point.step(|| ())?;
        self.inner.write_at(buf, offset)
    }
    fn write_all_at_and_sync(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.point.step(|| {
            let mut position = offset;
            for buf in bufs {
                self.inner.write_at(buf, position).expect("unsynced write");
                position += buf.len() as u64;
            }
        })?;
        self.inner.write_all_at_and_sync(bufs, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.point.step(|| ())?;
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.point.check()?;
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.point.step(|| ())?;
        self.inner.set_len(len)
    }
}

impl FileSystem for CrashingFileSystem {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        match mode {
            OpenMode::Create | OpenMode::CreateNew => self.point.step(|| ())?,
            OpenMode::Read | OpenMode::ReadWrite => self.point.check()?,
        }
        Ok(Arc::new(CrashingFile { inner: self.memory.open(path, mode)?, point: self.point.clone() }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.point.step(|| ())?;
        self.memory.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.point.step(|| ())?;
        self.memory.rename(from, to)
    }
    fn exists(&self, path: &Path) -> bool {
        self.memory.exists(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.point.step(|| ())?;
        self.memory.create_dir_all(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.point.check()?;
        self.memory.list_dir(dir)
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.point.step(|| ())?;
        self.memory.remove_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.point.step(|| ())?;
        self.memory.sync_dir(dir)
    }
}

/// Crashes an import at each of its file-system operations in turn (several seeds each, so
/// unsynced writes are lost, kept or torn), then reopens: the shard must hold exactly the
/// old contents or exactly the new ones, and nothing of the other generation may be left.
#[tokio::test]
async fn import_is_atomic_across_a_crash_at_every_step() {
    let new_snapshot = snapshot_of(10..=14).await;
    let earlier_snapshot = snapshot_of(1..=2).await;
    // The old contents in generation 0 (the shard directory) or in generation 1.
    for old_generation in 0..=1u64 {
        let mut outcomes: Vec<bool> = Vec::new();
        for step in 0.. {
            let mut completed = false;
            for seed in 0..3u64 {
                let memory = MemoryFileSystem::new();
                let point = Arc::new(CrashPoint {
                    memory: memory.clone(),
                    remaining: Mutex::new(None),
                    crashed: AtomicBool::new(false),
                    rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
                });
                let fs = Arc::new(CrashingFileSystem { memory: memory.clone(), point: point.clone() });
                let store = open_store(fs, small_segments());
                let shard = store.shard(1).expect("shard");
                if old_generation == 1 {
                    shard.import(&earlier_snapshot).expect("earlier import");
                }
                for index in 3..=5 {
                    shard.append(log_id(index), &batch(index as i64, 3, 500)).expect("append");
                }
                shard.flush().await.expect("flush");
                let old_snapshot = shard.export().expect("export");

                *lock(&point.remaining) = Some(step);
                let result = shard.import(&new_snapshot);
                let crashed = point.crashed.load(Ordering::SeqCst);
                let context = format!("old generation {old_generation}, step {step}, seed {seed}");
                // A crash while removing the replaced generation comes after the import took
                // effect: it still reports success (the clean-up is best effort).
                let succeeded = result.is_ok();
                if !crashed {
                    result.expect("an import without a crash succeeds");
                    completed = true;
                }
                drop((shard, store));

                let store = open_store(Arc::new(memory.clone()), small_segments());
                let shard = store.shard(1).unwrap_or_else(|error| {
                    panic!("{context}: recovery fails: {error}");
                });
                let recovered = shard.export().expect("export after recovery");
                let is_new = recovered == new_snapshot;
                assert!(is_new || !succeeded, "{context}: a successful import was lost");
                assert!(
                    is_new || recovered == old_snapshot,
                    "{context}: recovered neither the old nor the new contents"
                );
                if seed == 0 {
                    outcomes.push(is_new);
                } else {
                    assert_eq!(outcomes.last(), Some(&is_new), "{context}: outcome depends on the seed");
                }
                let live = if is_new { old_generation + 1 } else { old_generation };
                let expected_layout = if live == 0 { (layout(&memory, 1).0, vec![]) } else { (vec![], vec![live]) };
                assert_eq!(layout(&memory, 1), expected_layout, "{context}: leftovers");
                assert_eq!(read_current(&memory, &shard_dir(1)).expect("CURRENT"), live, "{context}");

                let next = shard.last_appended().expect("contents").index + 1;
                shard.append(log_id(next), &batch(99, 1, 1)).expect("append after recovery");
                shard.flush().await.expect("flush after recovery");
                drop((shard, store));
                let reopened =
                    open_store(Arc::new(memory.clone()), small_segments()).shard(1).expect("second recovery");
                assert_eq!(reopened.last_durable(), Some(log_id(next)), "{context}");
            }
            if completed {
                break;
            }
        }
        // Crashes before the switch of CURRENT keep the old contents, crashes after it the
        // new ones.
        let switch = outcomes.iter().position(|is_new| *is_new).expect("some crash keeps the new contents");
        assert!(switch > 0, "a crash at the first step keeps the old contents");
        assert!(
            outcomes.len() >= switch + 3,
            "crashes after the switch (directory sync, removing the old generation) were tried"
        );
        assert!(
            outcomes[switch..].iter().all(|is_new| *is_new),
            "old generation {old_generation}: outcomes {outcomes:?}"
        );
    }
}

#[tokio::test]
async fn a_flush_waiting_on_replaced_contents_fails() {
    let store = open_store(Arc::new(MemoryFileSystem::new()), Default::default());
    let shard = store.shard(1).expect("shard");
    let snapshot = snapshot_of(1..=3).await;

    shard.append(log_id(1), &batch(1, 2, 10)).expect("append");
    let mut waiting = std::pin::pin!(shard.flush());
    // Poll once: the flush asks the writer for a round and waits (the writer task has not
    // run yet, so nothing is durable).
    std::future::poll_fn(|context| {
        assert!(waiting.as_mut().poll(context).is_pending());
        Poll::Ready(())
    })
    .await;
    shard.import(&snapshot).expect("import");
    assert!(matches!(waiting.await, Err(StorageError::Replaced)));

    // A flush called before an import and first polled after it fails too.
    shard.append(log_id(4), &batch(4, 1, 1)).expect("append");
    let late = shard.flush();
    shard.import(&snapshot).expect("import again");
    let error = late.await.expect_err("replaced");
    assert!(error.is_replaced(), "got {error}");

    // Once everything asked about is durable, flush succeeds, before and after an import.
    assert_eq!(shard.flush().await.expect("flush"), Some(log_id(3)));
    shard.append(log_id(4), &batch(4, 1, 1)).expect("append");
    assert_eq!(shard.flush().await.expect("flush"), Some(log_id(4)));
    shard.import(&snapshot).expect("import");
    assert_eq!(shard.flush().await.expect("flush"), Some(log_id(3)));
}

#[tokio::test]
async fn removed_shards_are_closed_and_start_empty_again() {
    let store = open_store(Arc::new(MemoryFileSystem::new()), Default::default());
    let shard = store.shard(4).expect("shard");
    shard.append(log_id(1), &batch(1, 1, 1)).expect("append");
    let flushing = shard.flush();
    store.remove_shard(4).expect("remove");
    assert!(matches!(shard.append(log_id(2), &batch(1, 1, 1)), Err(StorageError::Closed)));
    assert!(matches!(flushing.await, Err(StorageError::Closed)));
    let fresh = store.shard(4).expect("re-create");
    assert_eq!(fresh.last_appended(), None);
    assert!(read_all(&fresh).is_empty());
}

#[test]
fn config_bounds_are_checked() {
    assert!(SegmentStoreConfig::default().validate().is_ok());
    let bad = [
        SegmentStoreConfig { segment_bytes_max: 10, ..Default::default() },
        SegmentStoreConfig { write_queue_depth_max: 0, ..Default::default() },
        SegmentStoreConfig { write_batch_bytes_max: usize::MAX, ..Default::default() },
    ];
    for config in bad {
        assert!(matches!(config.validate(), Err(StorageError::InvalidConfig(_))));
    }
}

#[test]
fn segment_names_parse_back() {
    assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
    assert_eq!(parse_segment_file_name("42.seg"), None);
    assert_eq!(parse_segment_file_name("00000000000000000042.tmp"), None);
}

#[tokio::test]
async fn trimming_hides_expired_records_and_removes_whole_expired_files() {
    let memory = MemoryFileSystem::new();
    let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
    let store = open_store(fs.clone(), small_segments());
    let shard = store.shard(9).expect("shard");
    // Two batches of three records per 4 KiB file: files start at indexes 1, 3, 5.
    for index in 1..=6 {
        shard.append(log_id(index), &batch(index as i64 * 1000, 3, 500)).expect("append");
    }
    // Not durable yet: the trim point holds, but no file goes.
    let keep_from = shard.sequence_at_timestamp(4_000).unwrap();
    assert_eq!(keep_from, sequence(4, 0));
    assert_eq!(shard.trim(keep_from).expect("trim"), 0);
    assert_eq!(shard.first_sequence().unwrap(), sequence(4, 0));
    assert_eq!(read_all(&shard).first().map(|record| record.sequence), Some(sequence(4, 0)));
    assert_eq!(shard.oldest_timestamp_ms().unwrap(), Some(4_000));

    shard.flush().await.expect("flush");
    // The file of batches 1-2 holds only expired records; the one of 3-4 still holds batch 4.
    assert_eq!(shard.trim(keep_from).expect("trim"), 1);
    let names = memory.list_dir(&PathBuf::from(ROOT).join("9")).expect("list");
    assert_eq!(names, [segment_file_name(3), segment_file_name(5)]);
    assert_eq!(read_all(&shard).len(), 9);
    assert_eq!(shard.read(0, 2, usize::MAX).expect("read").records[0].sequence, sequence(4, 0));
    // A lower trim later changes nothing; exports skip what expired.
    assert_eq!(shard.trim(0).expect("trim"), 0);
    assert_eq!(shard.trim_sequence(), keep_from);
    let exported = shard.export().expect("export");
    let imported = store.shard(10).expect("another shard");
    imported.import(&exported).expect("import");
    assert_eq!(read_all(&imported), read_all(&shard));
    // The newest file is never removed, even when everything in it expired.
    assert_eq!(shard.trim(sequence(7, 0)).expect("trim"), 1);
    assert_eq!(memory.list_dir(&PathBuf::from(ROOT).join("9")).expect("list"), [segment_file_name(5)]);
    assert!(read_all(&shard).is_empty());
    assert_eq!(shard.first_sequence().unwrap(), shard.end_sequence());
    // Appends continue after it, and a restart recovers from the remaining file.
    shard.append(log_id(7), &batch(7_000, 1, 10)).expect("append");
    shard.flush().await.expect("flush");
    drop(shard);
    drop(store);
    let store = open_store(fs, small_segments());
    let shard = store.shard(9).expect("reopen");
    assert_eq!(shard.last_appended(), Some(log_id(7)));
    assert_eq!(read_all(&shard).len(), 3 + 3 + 1, "untrimmed after a restart until the trim is applied again");
    shard.trim(sequence(7, 0)).expect("trim again");
    assert_eq!(read_all(&shard).len(), 1);
}

#[tokio::test]
async fn open_read_files_stay_within_their_bound() {
    let memory = MemoryFileSystem::new();
    let config = SegmentStoreConfig { open_read_files_max: 2, ..small_segments() };
    let store = open_store(Arc::new(memory.clone()), config);
    let shard = store.shard(9).expect("shard");
    let other = store.shard(10).expect("another shard");
    for index in 1..=10 {
        shard.append(log_id(index), &batch(index as i64, 3, 500)).expect("append");
        other.append(log_id(index), &batch(index as i64, 3, 500)).expect("append");
    }
    shard.flush().await.expect("flush");
    other.flush().await.expect("flush");
    // Five files per shard, all read, twice over.
    for _ in 0..2 {
        assert_eq!(read_all(&shard).len(), 30);
        assert_eq!(read_all(&other).len(), 30);
        assert!(shard.open_read_files() <= 2, "{} files open", shard.open_read_files());
    }
    // Removing a shard closes its files.
    store.remove_shard(10).expect("remove");
    assert!(shard.open_read_files() <= 2);
    assert_eq!(read_all(&shard).len(), 30);
}

#[tokio::test]
async fn only_the_newest_segment_keeps_its_index_in_memory() {
    let memory = MemoryFileSystem::new();
    let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
    // Ten batches of one small record per 4 KiB file; the cache holds about one file's entries.
    let config = SegmentStoreConfig { index_cache_entries_max: 12, ..small_segments() };
    let store = open_store(fs.clone(), config.clone());
    let shard = store.shard(9).expect("shard");
    let batches = 200u64;
    for index in 1..=batches {
        shard.append(log_id(index), &batch(index as i64 * 10, 1, 300)).expect("append");
    }
    // Pending batches stay indexed (and in memory) until they are durable.
    assert_eq!(shard.index_entries_in_memory().0, batches as usize);
    shard.flush().await.expect("flush");
    let files = shard.segment_count();
    assert!(files >= 10, "{files} files");
    let (newest, cached) = shard.index_entries_in_memory();
    assert!(newest <= 12 && cached == 0, "{newest} entries of the newest file, {cached} cached");

    // Reads, positions by time and by sequence, and exports reach every closed file through
    // the bounded cache.
    let all = read_all(&shard);
    assert_eq!(all.len(), batches as usize);
    assert!(all.windows(2).all(|pair| pair[0].sequence < pair[1].sequence));
    assert!(shard.index_entries_in_memory().1 <= 2 * 12);
    assert_eq!(shard.read(sequence(57, 0), 3, usize::MAX).expect("read").records[0].sequence, sequence(57, 0));
    assert_eq!(shard.read(sequence(57, 0) + 1, 1, usize::MAX).expect("read").records[0].sequence, sequence(58, 0));
    assert_eq!(shard.sequence_at_timestamp(575).unwrap(), sequence(58, 0));
    assert_eq!(shard.sequence_at_timestamp(10).unwrap(), sequence(1, 0));
    assert_eq!(shard.sequence_at_timestamp(batches as i64 * 10 + 1).unwrap(), shard.end_sequence());
    assert_eq!(shard.end_sequence(), sequence(batches, 0) + 1);
    assert_eq!(shard.last_durable(), Some(log_id(batches)));

    // A trim inside a closed file: the file stays, the first record is the first kept one.
    let keep_from = shard.sequence_at_timestamp(1_005).unwrap();
    assert_eq!(keep_from, sequence(101, 0));
    shard.trim(keep_from).expect("trim");
    assert_eq!(shard.first_sequence().unwrap(), sequence(101, 0));
    assert_eq!(shard.oldest_timestamp_ms().unwrap(), Some(1_010));
    assert_eq!(read_all(&shard).len(), 100);
    let exported = shard.export().expect("export");
    let imported = store.shard(10).expect("another shard");
    imported.import(&exported).expect("import");
    assert_eq!(read_all(&imported), read_all(&shard));
    assert!(imported.index_entries_in_memory().0 <= 12);

    // Recovery keeps only the newest file's entries too, and finds everything again.
    shard.append(log_id(batches + 1), &batch(5_000, 1, 300)).expect("append");
    shard.flush().await.expect("flush");
    drop((shard, imported));
    drop(store);
    let store = open_store(fs, config);
    let shard = store.shard(9).expect("reopen");
    assert!(shard.index_entries_in_memory().0 <= 12);
    assert_eq!(shard.last_durable(), Some(log_id(batches + 1)));
    // The files wholly expired are gone; the rest of the one holding the trim point is read
    // until the trim is applied again.
    let recovered = read_all(&shard);
    let first = recovered.first().map(|record| record.sequence).expect("records");
    assert!(first < sequence(101, 0) && first > sequence(80, 0), "first recovered {first}");
    assert_eq!(recovered.last().map(|record| record.sequence), Some(sequence(batches + 1, 0)));
    shard.trim(keep_from).expect("trim again");
    assert_eq!(read_all(&shard).len(), 101);
}

#[tokio::test]
async fn a_snapshot_streams_out_of_the_segments_and_in_through_a_spill_file() {
    let memory = MemoryFileSystem::new();
    let fs: Arc<dyn FileSystem> = Arc::new(memory.clone());
    let store = open_store(fs.clone(), small_segments());
    let source = store.shard(1).expect("source");
    for index in 1..=40 {
        source.append(log_id(index), &batch(index as i64 * 10, 2, 400)).expect("append");
    }
    source.flush().await.expect("flush");
    source.append(log_id(41), &batch(410, 1, 10)).expect("append, pending");
    source.trim(source.sequence_at_timestamp(55).unwrap()).expect("trim");

    // The sender's stream: the prefix, then the kept batches, read in odd-sized chunks as the
    // sender's chunks cut it — byte for byte what the in-memory export gives.
    let reader = source.export_reader(b"HEAD".to_vec()).expect("reader");
    let mut streamed = Vec::new();
    let mut chunk = [0u8; 333];
    loop {
        let read = reader.read_at(&mut chunk, streamed.len() as u64).expect("read");
        if read == 0 {
            break;
        }
        streamed.extend_from_slice(&chunk[..read]);
    }
    assert_eq!(streamed.len() as u64, reader.len());
    let exported = source.export().expect("export");
    assert_eq!(&streamed[..4], b"HEAD");
    assert_eq!(&streamed[4..], &exported[..]);
    // While it is being sent, no file it reads goes; once it is done, a trim removes them.
    let files = source.segment_count();
    assert_eq!(source.trim(sequence(30, 0)).expect("trim"), 0);
    assert_eq!(source.segment_count(), files);
    let again = reader.read_at(&mut chunk, 4).expect("read after the trim");
    assert_eq!(&chunk[..again], &streamed[4..4 + again]);
    drop(reader);
    assert!(source.trim(sequence(30, 0)).expect("trim") > 0);
    let source_records = read_all(&source);

    // The receiver writes the chunks to a spill file and imports from it.
    let target = store.shard(2).expect("target");
    target.append(log_id(1), &batch(1, 5, 5)).expect("old contents");
    target.flush().await.expect("flush old contents");
    let spill = target.incoming_snapshot().expect("spill");
    for (position, piece) in streamed.chunks(1000).enumerate() {
        spill.write_at(piece, (position * 1000) as u64).expect("write");
    }
    target.import_from(&mut spill.batches_from(4).expect("batches")).expect("import");
    let imported = read_all(&target);
    assert_eq!(imported.first().map(|record| record.sequence), Some(sequence(6, 0)));
    assert_eq!(imported.len(), 35 * 2 + 1);
    target.trim(sequence(30, 0)).expect("trim");
    assert_eq!(read_all(&target), source_records);
    assert_eq!(target.last_durable(), Some(log_id(41)), "durable on return");

    // A damaged spill fails and changes nothing; a spill file goes when dropped, and one a
    // crash left behind goes when the shard is opened again.
    let spilled = |name: &str| name.starts_with("incoming-");
    let damaged = target.incoming_snapshot().expect("spill");
    damaged.write_at(&streamed[..streamed.len() - 7], 0).expect("write");
    assert!(matches!(
        target.import_from(&mut damaged.batches_from(4).expect("batches")),
        Err(StorageError::InvalidInput(_))
    ));
    assert_eq!(read_all(&target), source_records, "a bad snapshot changes nothing");
    let names = || memory.list_dir(&shard_dir(2)).expect("list");
    assert_eq!(names().iter().filter(|name| spilled(name)).count(), 2);
    drop(spill);
    assert_eq!(names().iter().filter(|name| spilled(name)).count(), 1);
    std::mem::forget(damaged);
    drop((source, target, store));
    let reopened = open_store(fs, small_segments()).shard(2).expect("reopen");
    assert!(!names().iter().any(|name| spilled(name)), "{:?}", names());
    assert_eq!(reopened.last_appended(), Some(log_id(41)));
}
