//! The real file system: std files, io_uring for batched writes with fdatasync.
//!
//! Positional reads and writes use `pread`/`pwrite` (`std::os::unix::fs::FileExt`).
//! [`FileHandle::write_all_at_and_sync`] submits every write and one `fdatasync` to io_uring in
//! one `io_uring_enter`, the sync drained behind the writes (`IO_DRAIN`), so a batch costs one
//! system call and one device flush. Each thread lazily creates its own ring (the segment
//! writer runs on one dedicated thread, so in practice there is one ring). Where io_uring is
//! unavailable (disabled by a sandbox or an old kernel) the same call falls back to `pwrite` +
//! `fdatasync`, and says so once in the log.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring};

use super::{FileHandle, FileSystem, OpenMode};

/// Submission-queue entries per ring: one batch submits at most this many operations at once
/// (longer batches go in several rounds, the fsync in the last).
const RING_ENTRIES: u32 = 64;
/// The largest single io_uring write; longer buffers are split (the SQE length is a `u32`).
const RING_WRITE_BYTES_MAX: usize = 1 << 30;
/// Retries of `io_uring_enter` after a transient error (EINTR, EAGAIN, EBUSY) before giving up.
const RING_ENTER_RETRIES_MAX: u32 = 1000;
/// `user_data` of the fsync entry; writes use their piece index.
const FSYNC_USER_DATA: u64 = u64::MAX;

/// Files on the machine's own file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFileSystem;

impl RealFileSystem {
    pub fn new() -> Self {
        Self
    }
}

#[derive(Debug)]
struct RealFile {
    file: File,
}

impl FileHandle for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        // pread may return less than asked before EOF; keep reading so callers see either a
        // full buffer or the end of the file, as with the memory implementation.
        let mut filled = 0;
        while filled < buf.len() {
            match self.file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(filled)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn write_all_at_and_sync(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        RING.with(|slot| {
            let mut slot = slot.borrow_mut();
            if let RingSlot::Untried = *slot {
                *slot = match IoUring::new(RING_ENTRIES) {
                    Ok(ring) => RingSlot::Ready(Box::new(ring)),
                    Err(error) => {
                        if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                %error,
                                "io_uring unavailable; segment writes use pwrite + fdatasync"
                            );
                        }
                        RingSlot::Unavailable
                    }
                };
            }
            match &mut *slot {
                RingSlot::Ready(ring) => write_and_sync_with_ring(ring, &self.file, bufs, offset),
                _ => write_and_sync_plain(&self.file, bufs, offset),
            }
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

enum RingSlot {
    Untried,
    // Boxed: the ring is large and most threads never create one.
    Ready(Box<IoUring>),
    Unavailable,
}

thread_local! {
    static RING: RefCell<RingSlot> = const { RefCell::new(RingSlot::Untried) };
}

static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

fn write_and_sync_plain(file: &File, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
    let mut position = offset;
    for buf in bufs {
        file.write_all_at(buf, position)?;
        position += buf.len() as u64;
    }
    file.sync_data()
}

/// One write submitted to the ring: a slice of a caller's buffer and where it goes.
struct Piece<'a> {
    bytes: &'a [u8],
    offset: u64,
}

fn write_and_sync_with_ring(ring: &mut IoUring, file: &File, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
    let mut pieces = Vec::new();
    let mut position = offset;
    for buf in bufs {
        for bytes in buf.chunks(RING_WRITE_BYTES_MAX) {
            pieces.push(Piece { bytes, offset: position });
            position += bytes.len() as u64;
        }
    }
    let fd = types::Fd(file.as_raw_fd());
    let writes_per_round = RING_ENTRIES as usize - 1;
    let round_count = pieces.len().div_ceil(writes_per_round).max(1);
    let mut written = vec![0usize; pieces.len()];
    let mut first_error = None;
    for round in 0..round_count {
        let start = round * writes_per_round;
        let end = (start + writes_per_round).min(pieces.len());
        let is_last_round = round + 1 == round_count;
        let mut entries = Vec::with_capacity(end - start + 1);
        for (index, piece) in pieces.iter().enumerate().take(end).skip(start) {
            let length =
                u32::try_from(piece.bytes.len()).expect("pieces are at most RING_WRITE_BYTES_MAX, which fits a u32");
            entries.push(
                opcode::Write::new(fd, piece.bytes.as_ptr(), length)
                    .offset(piece.offset)
                    .build()
                    .user_data(index as u64),
            );
        }
        if is_last_round {
            entries.push(
                opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .flags(squeue::Flags::IO_DRAIN)
                    .user_data(FSYNC_USER_DATA),
            );
        }
        // SAFETY: every entry points into `pieces`, which borrow the caller's buffers; they
        // stay alive and unmoved until `submit_all_and_wait` has reaped one completion per
        // entry, i.e. until the kernel no longer uses them.
        unsafe {
            let mut submission = ring.submission();
            for entry in &entries {
                submission.push(entry).expect("the queue is empty between rounds and a round fits RING_ENTRIES");
            }
        }
        submit_all_and_wait(ring, entries.len())?;
        for completion in ring.completion() {
            let result = completion.result();
            if completion.user_data() == FSYNC_USER_DATA {
                if result < 0 && first_error.is_none() {
                    first_error = Some(io::Error::from_raw_os_error(-result));
                }
                continue;
            }
            let index = usize::try_from(completion.user_data()).expect("write user_data is a piece index");
            if result < 0 {
                if first_error.is_none() {
                    first_error = Some(io::Error::from_raw_os_error(-result));
                }
            } else {
                written[index] = usize::try_from(result).expect("a non-negative i32 fits usize");
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    // A short write (legal for regular files, rare) leaves a remainder the drained fsync did
    // not cover: finish it with pwrite and sync once more.
    let mut finished_short_write = false;
    for (piece, &count) in pieces.iter().zip(&written) {
        if count < piece.bytes.len() {
            file.write_all_at(&piece.bytes[count..], piece.offset + count as u64)?;
            finished_short_write = true;
        }
    }
    if finished_short_write {
        file.sync_data()?;
    }
    Ok(())
}

/// Submits queued entries and waits until `count` completions are in the completion queue.
///
/// Panics if the kernel keeps refusing: entries may then be in flight with pointers into the
/// caller's buffers, and returning would let those buffers be freed under the kernel.
fn submit_all_and_wait(ring: &mut IoUring, count: usize) -> io::Result<()> {
    for _ in 0..RING_ENTER_RETRIES_MAX {
        match ring.submit_and_wait(count) {
            Ok(_) => {
                if ring.completion().len() >= count {
                    return Ok(());
                }
            }
            Err(error)
                if matches!(error.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)) => {}
            Err(error) => panic!(
                "io_uring_enter failed ({error}) with writes possibly in flight; \
                 their buffers cannot be released safely"
            ),
        }
    }
    panic!("io_uring_enter kept failing transiently; writes may be in flight");
}

impl FileSystem for RealFileSystem {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                options.write(true);
            }
            OpenMode::Create => {
                options.write(true).create(true);
            }
            OpenMode::CreateNew => {
                options.write(true).create_new(true);
            }
        }
        let file = options.open(path)?;
        if file.metadata()?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{} is a directory", path.display())));
        }
        Ok(Arc::new(RealFile { file }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            // Riffle only creates ASCII names; anything else is not ours and is skipped.
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::conformance;
    use std::cell::Cell;
    use std::path::PathBuf;

    #[test]
    fn conformance_suite() {
        let temp = tempfile::tempdir().expect("tempdir");
        let case = Cell::new(0u32);
        let make = || -> (Arc<dyn FileSystem>, PathBuf) {
            case.set(case.get() + 1);
            let root = temp.path().join(format!("case-{}", case.get()));
            std::fs::create_dir_all(&root).expect("mkdir");
            (Arc::new(RealFileSystem::new()), root)
        };
        conformance::run_all(&make);
    }

    #[test]
    fn write_and_sync_spanning_several_ring_rounds() {
        let temp = tempfile::tempdir().expect("tempdir");
        let fs = RealFileSystem::new();
        let path = temp.path().join("many");
        let file = fs.open(&path, OpenMode::CreateNew).expect("create");
        let chunks: Vec<Vec<u8>> = (0..200u32).map(|index| vec![(index % 251) as u8; 100 + index as usize]).collect();
        let bufs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        file.write_all_at_and_sync(&bufs, 10).expect("write and sync");

        let expected: Vec<u8> = std::iter::repeat_n(0u8, 10).chain(chunks.iter().flatten().copied()).collect();
        assert_eq!(std::fs::read(&path).expect("read back"), expected);
    }

    #[test]
    fn plain_fallback_writes_the_same_bytes() {
        let temp = tempfile::tempdir().expect("tempdir");
        let path = temp.path().join("plain");
        let file = File::create(&path).expect("create");
        write_and_sync_plain(&file, &[b"ab", b"", b"cd"], 3).expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"\0\0\0abcd");
    }
}
