//! `riffle-bench machine`: what this machine can do right now, measured in the same run as the
//! benchmarks it qualifies — sequential write bandwidth of the disk under test (without and
//! with an fdatasync per 1 MiB write), small synced writes per second, and loopback TCP
//! bandwidth.
//!
//! What it is not: a replacement for fio. It is a few seconds of plain `write`/`fdatasync`
//! calls and one TCP stream, to put a report's figures next to the machine's ceiling on a
//! shared, noisy machine.
//!
//! Invariants: each measurement stops after [`MEASURE_TIME`] of writing or its byte cap
//! (so a final sync is bounded too), and its files are removed afterwards.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::machine::Machine;

/// How long each measurement writes.
const MEASURE_TIME: Duration = Duration::from_secs(2);

/// Most bytes the sequential write without syncs may leave for its final fsync (bounding it).
const SEQUENTIAL_BYTES_MAX: u64 = 512 * 1024 * 1024;

const MIB: usize = 1024 * 1024;
const SMALL_WRITE_BYTES: usize = 4096;

#[derive(Debug, Serialize)]
pub struct Limits {
    pub tool: &'static str,
    pub kind: &'static str,
    pub label: Option<String>,
    pub timestamp_utc: String,
    pub machine: Machine,
    pub disk_dir: String,
    /// 1 MiB writes without syncs, then one fsync, over the whole time.
    pub seq_write_mb_per_s: f64,
    /// 1 MiB writes, each followed by fdatasync.
    pub seq_write_fsync_each_mb_per_s: f64,
    /// 4 KiB appends, each followed by fdatasync.
    pub fsync_4k_per_s: f64,
    /// One TCP stream over loopback, 1 MiB writes.
    pub loopback_tcp_mb_per_s: f64,
}

/// Measures the machine; `directory` is on the disk under test.
pub fn measure(directory: &Path, label: Option<String>) -> Result<Limits> {
    std::fs::create_dir_all(directory).with_context(|| format!("creating {}", directory.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("riffle-bench-machine-")
        .tempdir_in(directory)
        .with_context(|| format!("making a scratch directory in {}", directory.display()))?;
    let file = scratch.path().join("write-test");
    let seq_write_mb_per_s = sequential_write(&file, false)?;
    let seq_write_fsync_each_mb_per_s = sequential_write(&file, true)?;
    let fsync_4k_per_s = small_synced_writes(&file)?;
    let loopback_tcp_mb_per_s = loopback_tcp()?;
    Ok(Limits {
        tool: crate::report::TOOL,
        kind: "machine",
        label,
        timestamp_utc: crate::machine::utc_timestamp_now(),
        machine: Machine::detect(Some(directory)),
        disk_dir: directory.canonicalize().unwrap_or_else(|_| directory.to_path_buf()).display().to_string(),
        seq_write_mb_per_s,
        seq_write_fsync_each_mb_per_s,
        fsync_4k_per_s,
        loopback_tcp_mb_per_s,
    })
}

/// MB/s of 1 MiB writes to a new file, with an fdatasync after each (`sync_each`) or one
/// fsync at the end.
fn sequential_write(path: &Path, sync_each: bool) -> Result<f64> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let block = vec![0x5au8; MIB];
    let start = Instant::now();
    let mut written = 0u64;
    while start.elapsed() < MEASURE_TIME && written < SEQUENTIAL_BYTES_MAX {
        file.write_all(&block).context("writing")?;
        if sync_each {
            file.sync_data().context("fdatasync")?;
        }
        written += MIB as u64;
    }
    file.sync_all().context("fsync")?;
    let seconds = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    Ok(written as f64 / 1e6 / seconds)
}

/// 4 KiB appends with an fdatasync each, per second.
fn small_synced_writes(path: &Path) -> Result<f64> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let block = vec![0xa5u8; SMALL_WRITE_BYTES];
    let start = Instant::now();
    let mut writes = 0u64;
    while start.elapsed() < MEASURE_TIME {
        file.write_all(&block).context("writing")?;
        file.sync_data().context("fdatasync")?;
        writes += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    Ok(writes as f64 / seconds)
}

/// MB/s of one TCP stream over loopback: a reader thread drains what the writer sends.
fn loopback_tcp() -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").context("listening on loopback")?;
    let address = listener.local_addr().context("the listener's address")?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0u8; MIB];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buffer)? {
                0 => return Ok(total),
                read => total += read as u64,
            }
        }
    });
    let mut stream = TcpStream::connect(address).context("connecting over loopback")?;
    stream.set_write_timeout(Some(MEASURE_TIME)).context("setting a write timeout")?;
    let block = vec![0x3cu8; MIB];
    let start = Instant::now();
    while start.elapsed() < MEASURE_TIME {
        stream.write_all(&block).context("writing over loopback")?;
    }
    stream.shutdown(std::net::Shutdown::Write).context("closing the stream")?;
    let received = reader.join().map_err(|_| anyhow::anyhow!("the loopback reader panicked"))?.context("reading")?;
    Ok(received as f64 / 1e6 / start.elapsed().as_secs_f64())
}

impl Limits {
    pub fn table(&self) -> String {
        let disk = self.machine.disk.as_ref().map_or_else(
            || "unknown".to_string(),
            |disk| {
                format!(
                    "{} on {} ({}{})",
                    disk.fs_type,
                    disk.device,
                    disk.model.as_deref().unwrap_or("model unknown"),
                    match disk.rotational {
                        Some(true) => ", rotational",
                        Some(false) => ", not rotational",
                        None => "",
                    }
                )
            },
        );
        [
            format!("  {:<34} {}", "directory", self.disk_dir),
            format!("  {:<34} {disk}", "disk"),
            format!("  {:<34} {:.0} MB/s", "sequential 1 MiB writes, one fsync", self.seq_write_mb_per_s),
            format!("  {:<34} {:.0} MB/s", "1 MiB writes, fdatasync each", self.seq_write_fsync_each_mb_per_s),
            format!("  {:<34} {:.0} per second", "4 KiB write + fdatasync", self.fsync_4k_per_s),
            format!("  {:<34} {:.0} MB/s", "loopback TCP, one stream", self.loopback_tcp_mb_per_s),
        ]
        .join("\n")
            + "\n"
    }
}
