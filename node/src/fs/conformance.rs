//! The behaviours every [`FileSystem`] must share, as one suite.
//!
//! Each implementation calls [`run_all`] from its own tests (the real one under a temporary
//! directory), so the simulated disk cannot drift from the real one. Crash behaviour is
//! specific to the memory implementation and is tested beside it.
//!
//! This is test code compiled into the library so other crates (the simulator) can run it on
//! their own file systems; failures panic with the name of the broken behaviour.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{FileHandle, FileSystem, OpenMode};

/// Makes a fresh, empty file system and an existing, empty directory to work in.
pub type MakeFileSystem<'a> = &'a dyn Fn() -> (Arc<dyn FileSystem>, PathBuf);

type Check = fn(&dyn FileSystem, &Path);

/// Runs every check, each on a fresh file system from `make`.
pub fn run_all(make: MakeFileSystem<'_>) {
    let checks: &[(&str, Check)] = &[
        ("open modes", open_modes),
        ("missing files are NotFound", missing_files_are_not_found),
        ("read past end of file", read_past_end_of_file),
        ("write_at grows with zero fill", write_at_grows_with_zero_fill),
        ("set_len shrinks and grows", set_len_shrinks_and_grows),
        ("write_all_at_and_sync content", write_all_at_and_sync_content),
        ("rename", rename),
        ("remove_file", remove_file),
        ("list_dir sorted files only", list_dir_sorted_files_only),
        ("exists", exists),
        ("remove_dir_all", remove_dir_all),
        ("read-only handles reject writes", read_only_handles_reject_writes),
    ];
    for (name, check) in checks {
        let (fs, root) = make();
        eprintln!("file-system conformance: {name}");
        check(fs.as_ref(), &root);
    }
}

fn must<T>(result: io::Result<T>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what}: unexpected error {error}"),
    }
}

fn must_fail_with<T: std::fmt::Debug>(result: io::Result<T>, kind: io::ErrorKind, what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected {kind:?}, got Ok({value:?})"),
        Err(error) => assert_eq!(error.kind(), kind, "{what}: wrong error {error}"),
    }
}

fn content(file: &dyn FileHandle) -> Vec<u8> {
    let len = must(file.len(), "len") as usize;
    let mut buf = vec![0; len];
    let read = must(file.read_at(&mut buf, 0), "read whole file");
    assert_eq!(read, len, "read of the whole file returns its length");
    buf
}

fn open_modes(fs: &dyn FileSystem, root: &Path) {
    let path = root.join("file");
    let created = must(fs.open(&path, OpenMode::CreateNew), "CreateNew on a new file");
    must(created.write_at(b"hello", 0), "write");
    must_fail_with(fs.open(&path, OpenMode::CreateNew), io::ErrorKind::AlreadyExists, "CreateNew on an existing file");
    let reopened = must(fs.open(&path, OpenMode::Create), "Create on an existing file");
    assert_eq!(content(reopened.as_ref()), b"hello", "Create does not truncate");
    let read_write = must(fs.open(&path, OpenMode::ReadWrite), "ReadWrite");
    must(read_write.write_at(b"J", 0), "write through ReadWrite");
    let read_only = must(fs.open(&path, OpenMode::Read), "Read");
    assert_eq!(content(read_only.as_ref()), b"Jello", "handles share one file");
    let fresh = must(fs.open(&root.join("other"), OpenMode::Create), "Create new");
    assert_eq!(must(fresh.len(), "len"), 0, "a created file is empty");
}

fn missing_files_are_not_found(fs: &dyn FileSystem, root: &Path) {
    let missing = root.join("missing");
    for mode in [OpenMode::Read, OpenMode::ReadWrite] {
        must_fail_with(fs.open(&missing, mode), io::ErrorKind::NotFound, "open missing");
    }
    let in_missing_dir = root.join("no-dir").join("file");
    must_fail_with(
        fs.open(&in_missing_dir, OpenMode::Create),
        io::ErrorKind::NotFound,
        "create in a missing directory",
    );
    must_fail_with(fs.remove_file(&missing), io::ErrorKind::NotFound, "remove missing");
    must_fail_with(fs.rename(&missing, &root.join("target")), io::ErrorKind::NotFound, "rename missing");
    must_fail_with(fs.list_dir(&root.join("no-dir")), io::ErrorKind::NotFound, "list missing directory");
}

fn read_past_end_of_file(fs: &dyn FileSystem, root: &Path) {
    let file = must(fs.open(&root.join("file"), OpenMode::CreateNew), "create");
    must(file.write_at(b"abc", 0), "write");
    let mut buf = [0xaa; 8];
    assert_eq!(must(file.read_at(&mut buf, 1), "read across end"), 2);
    assert_eq!(&buf[..2], b"bc");
    assert_eq!(must(file.read_at(&mut buf, 3), "read at end"), 0);
    assert_eq!(must(file.read_at(&mut buf, 100), "read past end"), 0);
    assert_eq!(must(file.read_at(&mut [], 0), "empty read"), 0);
}

fn write_at_grows_with_zero_fill(fs: &dyn FileSystem, root: &Path) {
    let file = must(fs.open(&root.join("file"), OpenMode::CreateNew), "create");
    must(file.write_at(b"xy", 4), "write past end");
    assert_eq!(content(file.as_ref()), b"\0\0\0\0xy");
    must(file.write_at(b"ab", 1), "overwrite inside");
    assert_eq!(content(file.as_ref()), b"\0ab\0xy");
    must(file.write_at(b"", 100), "empty write");
    assert_eq!(must(file.len(), "len"), 6, "an empty write does not grow the file");
}

fn set_len_shrinks_and_grows(fs: &dyn FileSystem, root: &Path) {
    let file = must(fs.open(&root.join("file"), OpenMode::CreateNew), "create");
    must(file.write_at(b"abcdef", 0), "write");
    must(file.set_len(2), "shrink");
    assert_eq!(content(file.as_ref()), b"ab");
    must(file.set_len(4), "grow");
    assert_eq!(content(file.as_ref()), b"ab\0\0", "growing fills with zeros");
    must(file.sync_data(), "sync");
    assert_eq!(must(file.len(), "len after sync"), 4);
}

fn write_all_at_and_sync_content(fs: &dyn FileSystem, root: &Path) {
    let path = root.join("file");
    let file = must(fs.open(&path, OpenMode::CreateNew), "create");
    must(file.write_at(b"0123456789", 0), "write");
    must(file.write_all_at_and_sync(&[b"ab", b"", b"cde"], 8), "write_all_at_and_sync");
    assert_eq!(content(file.as_ref()), b"01234567abcde");
    must(file.write_all_at_and_sync(&[], 0), "empty batch");
    let other = must(fs.open(&path, OpenMode::Read), "reopen");
    assert_eq!(content(other.as_ref()), b"01234567abcde");
}

fn rename(fs: &dyn FileSystem, root: &Path) {
    let (source, target) = (root.join("source"), root.join("target"));
    let file = must(fs.open(&source, OpenMode::CreateNew), "create source");
    must(file.write_at(b"source", 0), "write source");
    let existing = must(fs.open(&target, OpenMode::CreateNew), "create target");
    must(existing.write_at(b"old", 0), "write target");
    must(fs.rename(&source, &target), "rename over an existing file");
    assert!(!fs.exists(&source), "the source name is gone");
    let renamed = must(fs.open(&target, OpenMode::Read), "open target");
    assert_eq!(content(renamed.as_ref()), b"source", "rename replaces the target");
    must(file.write_at(b"S", 0), "write through a handle opened before the rename");
    assert_eq!(content(renamed.as_ref()), b"Source", "a handle follows its file");
}

fn remove_file(fs: &dyn FileSystem, root: &Path) {
    let path = root.join("file");
    must(fs.open(&path, OpenMode::CreateNew), "create");
    must(fs.remove_file(&path), "remove");
    assert!(!fs.exists(&path));
    must_fail_with(fs.open(&path, OpenMode::Read), io::ErrorKind::NotFound, "open removed");
    let again = must(fs.open(&path, OpenMode::CreateNew), "create after remove");
    assert_eq!(must(again.len(), "len"), 0, "a re-created file starts empty");
}

fn list_dir_sorted_files_only(fs: &dyn FileSystem, root: &Path) {
    assert!(must(fs.list_dir(root), "list empty").is_empty());
    for name in ["b.seg", "a.seg", "c"] {
        must(fs.open(&root.join(name), OpenMode::CreateNew), "create");
    }
    must(fs.create_dir_all(&root.join("subdir").join("deeper")), "mkdir");
    must(fs.open(&root.join("subdir").join("inner"), OpenMode::CreateNew), "create in subdir");
    assert_eq!(must(fs.list_dir(root), "list"), vec!["a.seg", "b.seg", "c"]);
    assert_eq!(must(fs.list_dir(&root.join("subdir")), "list subdir"), vec!["inner"]);
    must(fs.sync_dir(root), "sync_dir");
}

fn exists(fs: &dyn FileSystem, root: &Path) {
    let path = root.join("file");
    assert!(!fs.exists(&path));
    must(fs.open(&path, OpenMode::Create), "create");
    assert!(fs.exists(&path));
    let dir = root.join("dir");
    assert!(!fs.exists(&dir));
    must(fs.create_dir_all(&dir), "mkdir");
    must(fs.create_dir_all(&dir), "mkdir is idempotent");
    assert!(fs.exists(&dir));
}

fn remove_dir_all(fs: &dyn FileSystem, root: &Path) {
    let dir = root.join("shard");
    must(fs.create_dir_all(&dir.join("nested")), "mkdir");
    must(fs.open(&dir.join("one"), OpenMode::CreateNew), "create");
    must(fs.open(&dir.join("nested").join("two"), OpenMode::CreateNew), "create");
    let sibling = root.join("shard-sibling");
    must(fs.open(&sibling, OpenMode::CreateNew), "create sibling");
    must(fs.remove_dir_all(&dir), "remove_dir_all");
    assert!(!fs.exists(&dir));
    assert!(!fs.exists(&dir.join("one")));
    assert!(fs.exists(&sibling), "a sibling with a common name prefix stays");
    assert_eq!(must(fs.list_dir(root), "list"), vec!["shard-sibling"]);
}

fn read_only_handles_reject_writes(fs: &dyn FileSystem, root: &Path) {
    let path = root.join("file");
    must(fs.open(&path, OpenMode::CreateNew), "create");
    let read_only = must(fs.open(&path, OpenMode::Read), "open read-only");
    assert!(read_only.write_at(b"x", 0).is_err(), "write through Read handle");
    assert!(read_only.set_len(3).is_err(), "set_len through Read handle");
}
