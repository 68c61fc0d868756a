//! Put → read, end to end: producers at a fixed rate write records whose first 8 bytes are
//! their intended send time (µs on the run's clock), and one reader per shard, opened at the
//! newest record before anything is sent, polls every `poll_interval`; each record's latency
//! is the time its read answered minus its intended send time.
//!
//! After the producers stop, readers go on until they have read as many records as were
//! acknowledged or [`DRAIN_WAIT_MAX`] passes, whichever is first. Records without a timestamp
//! of this run (another writer's) are counted as an error, not measured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::produce::Producers;
use super::{Outcome, Settings, READ_ERRORS_MAX};
use crate::driver::{Driver, ShardReader, StartAt};
use crate::measure::{self, micros, Clock, Progress, Recorder, Timeline, Totals};
use crate::records::{timestamp_of, RecordPool};

/// Longest wait after the producers stop for the readers to see what they acknowledged.
pub const DRAIN_WAIT_MAX: Duration = Duration::from_secs(10);

/// How often the drain wait compares records read with records acknowledged.
const DRAIN_CHECK_INTERVAL: Duration = Duration::from_millis(20);

pub async fn run(driver: &Driver, settings: &Settings, pool: Arc<RecordPool>, keys: &Arc<[String]>) -> Result<Outcome> {
    let shards = driver.shards().await?;
    if shards.is_empty() {
        bail!("the stream has no shards to read");
    }
    // Readers first, at the newest record, so that everything this run sends is after them.
    let mut readers = Vec::with_capacity(shards.len());
    for (index, shard) in shards.iter().enumerate() {
        readers.push(driver.reader(index, shard, StartAt::Latest).await?);
    }
    let producers = Producers::connect(driver, settings, keys).await?;

    let clock = Clock::new(settings.warmup);
    let stop = Arc::new(AtomicBool::new(false));
    let read_timeline = Arc::new(Timeline::default());
    let read_progress = Arc::new(Progress::default());
    let produce_timeline = Arc::new(Timeline::default());
    let produce_progress = Arc::new(Progress::default());
    let printer = settings
        .progress
        .then(|| tokio::spawn(measure::print_progress(clock, read_progress.clone(), "records read end to end")));
    let reader_tasks: Vec<_> = readers
        .into_iter()
        .map(|reader| {
            let recorder = Recorder::new(clock, read_timeline.clone(), read_progress.clone());
            tokio::spawn(poll(reader, settings.batch, settings.poll_interval, stop.clone(), recorder))
        })
        .collect();
    let running = producers.start(settings, pool, clock, &produce_timeline, &produce_progress, true);
    let (produced, ended_by_time_limit) = running.finish().await;
    let elapsed = Instant::now().saturating_duration_since(clock.measure_from);

    let drain_until = Instant::now() + DRAIN_WAIT_MAX;
    let acknowledged = produce_progress.records.load(Ordering::Relaxed);
    while read_progress.records.load(Ordering::Relaxed) < acknowledged && Instant::now() < drain_until {
        tokio::time::sleep(DRAIN_CHECK_INTERVAL).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut read = Totals::new();
    for task in reader_tasks {
        match task.await {
            Ok(task_totals) => read.add(&task_totals),
            Err(error) => panic!("a reader task failed: {error}"),
        }
    }
    if let Some(printer) = printer {
        printer.abort();
    }
    let read_requests = read.requests;
    let mut totals = Totals::new();
    totals.records = read.records;
    totals.bytes = read.bytes;
    totals.requests = produced.requests;
    totals.request = produced.request;
    totals.record = produced.record;
    totals.end_to_end = read.end_to_end;
    totals.errors = produced.errors;
    for (kind, count) in read.errors {
        *totals.errors.entry(format!("read: {kind}")).or_default() += count;
    }
    Ok(Outcome {
        elapsed,
        totals,
        timeline: read_timeline.take(),
        produced_records: Some(produced.records),
        read_requests: Some(read_requests),
        ended_by_time_limit,
    })
}

/// Reads a shard until caught up, pauses `poll_interval`, and again, until `stop`.
async fn poll(
    mut reader: ShardReader,
    limit: usize,
    poll_interval: Duration,
    stop: Arc<AtomicBool>,
    mut recorder: Recorder,
) -> Totals {
    // (send timestamp, size) of each record of one read; reused.
    let mut stamps: Vec<(Option<u64>, u64)> = Vec::with_capacity(limit.min(10_000));
    let mut errors_in_a_row = 0;
    'polls: while !stop.load(Ordering::Relaxed) {
        loop {
            stamps.clear();
            let started = Instant::now();
            let result = reader.read(limit, &mut |data| stamps.push((timestamp_of(data), data.len() as u64))).await;
            let answered = Instant::now();
            recorder.request(started, micros(answered - started));
            let now_us = recorder_clock_us(&recorder, answered);
            for &(stamp, bytes) in &stamps {
                match stamp {
                    Some(sent_us) if sent_us <= now_us => recorder.end_to_end(answered, sent_us, bytes),
                    _ => recorder.error(started, "record without a send time of this run", 1),
                }
            }
            match result {
                Ok(state) => {
                    errors_in_a_row = 0;
                    if state.ended {
                        break 'polls;
                    }
                    if state.caught_up {
                        break;
                    }
                }
                Err(kind) => {
                    recorder.error(started, &kind, 1);
                    errors_in_a_row += 1;
                    if errors_in_a_row >= READ_ERRORS_MAX {
                        eprintln!(
                            "note: a reader gave up its shard after {READ_ERRORS_MAX} failed reads in a row ({kind})"
                        );
                        break 'polls;
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(poll_interval).await;
    }
    recorder.finish()
}

fn recorder_clock_us(recorder: &Recorder, at: Instant) -> u64 {
    recorder.clock().micros_at(at)
}
