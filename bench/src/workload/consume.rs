//! Drains: one reader task per shard (per subject for NATS), from the oldest record, reading
//! `batch` records per request.
//!
//! A run ends when `--expect-records` records were read in all, or — without it — when every
//! shard has answered "caught up, nothing new" twice in a row (or was read to its end). Either
//! way the time limit bounds it, and a reader gives up its shard after
//! [`READ_ERRORS_MAX`](super::READ_ERRORS_MAX) failed reads in a row.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{Outcome, Settings, READ_ERRORS_MAX};
use crate::driver::{Driver, ShardReader, StartAt};
use crate::measure::{self, micros, Clock, Progress, Recorder, Timeline, Totals};

/// Empty, caught-up reads in a row after which a shard counts as drained.
const EMPTY_READS_TO_DRAIN: u32 = 2;

/// Pause after a read that returned nothing while not caught up (the system is behind).
const BEHIND_PAUSE: Duration = Duration::from_millis(20);

/// What the reader tasks share.
struct Shared {
    clock: Clock,
    time_limit: Duration,
    poll_interval: Duration,
    limit: usize,
    expect_records: Option<u64>,
    read: AtomicU64,
    stop: AtomicBool,
    time_limit_hit: AtomicBool,
}

pub async fn run(driver: &Driver, settings: &Settings) -> Result<Outcome> {
    let shards = driver.shards().await?;
    if shards.is_empty() {
        bail!("the stream has no shards to read");
    }
    let mut readers = Vec::with_capacity(shards.len());
    for (index, shard) in shards.iter().enumerate() {
        readers.push(driver.reader(index, shard, StartAt::Oldest).await?);
    }
    let clock = Clock::new(settings.warmup);
    let shared = Arc::new(Shared {
        clock,
        time_limit: settings.time_limit,
        poll_interval: settings.poll_interval,
        limit: settings.batch,
        expect_records: settings.expect_records,
        read: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        time_limit_hit: AtomicBool::new(false),
    });
    let timeline = Arc::new(Timeline::default());
    let progress = Arc::new(Progress::default());
    let printer =
        settings.progress.then(|| tokio::spawn(measure::print_progress(clock, progress.clone(), "records read")));
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|reader| {
            let recorder = Recorder::new(clock, timeline.clone(), progress.clone());
            tokio::spawn(drain(reader, shared.clone(), recorder))
        })
        .collect();
    let mut totals = Totals::new();
    for task in tasks {
        match task.await {
            Ok(task_totals) => totals.add(&task_totals),
            Err(error) => panic!("a reader task failed: {error}"),
        }
    }
    let elapsed = Instant::now().saturating_duration_since(clock.measure_from);
    if let Some(printer) = printer {
        printer.abort();
    }
    Ok(Outcome {
        elapsed,
        totals,
        timeline: timeline.take(),
        produced_records: None,
        read_requests: None,
        ended_by_time_limit: shared.time_limit_hit.load(Ordering::Relaxed),
    })
}

async fn drain(mut reader: ShardReader, shared: Arc<Shared>, mut recorder: Recorder) -> Totals {
    let mut empty_reads = 0;
    let mut errors_in_a_row = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.clock.start.elapsed() >= shared.time_limit {
            shared.time_limit_hit.store(true, Ordering::Relaxed);
            break;
        }
        let (mut records, mut bytes) = (0u64, 0u64);
        let started = Instant::now();
        let result = reader
            .read(shared.limit, &mut |data| {
                records += 1;
                bytes += data.len() as u64;
            })
            .await;
        let answered = Instant::now();
        recorder.request(started, micros(answered - started));
        match result {
            Ok(state) => {
                errors_in_a_row = 0;
                recorder.records(started, answered, records, bytes, None);
                let read = shared.read.fetch_add(records, Ordering::Relaxed) + records;
                if shared.expect_records.is_some_and(|expected| read >= expected) {
                    shared.stop.store(true, Ordering::Relaxed);
                    break;
                }
                if state.ended {
                    break;
                }
                if records > 0 {
                    empty_reads = 0;
                } else if state.caught_up {
                    empty_reads += 1;
                    if shared.expect_records.is_none() && empty_reads >= EMPTY_READS_TO_DRAIN {
                        break;
                    }
                    tokio::time::sleep(shared.poll_interval).await;
                } else {
                    tokio::time::sleep(BEHIND_PAUSE).await;
                }
            }
            Err(kind) => {
                recorder.error(started, &kind, 1);
                errors_in_a_row += 1;
                if errors_in_a_row >= READ_ERRORS_MAX {
                    eprintln!(
                        "note: a reader gave up its shard after {READ_ERRORS_MAX} failed reads in a row ({kind})"
                    );
                    break;
                }
                tokio::time::sleep(shared.poll_interval).await;
            }
        }
    }
    recorder.finish()
}
