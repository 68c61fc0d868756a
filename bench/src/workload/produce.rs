//! Writers: `concurrency` tasks, each with its own producer, sending batches from the shared
//! [`Plan`], closed loop or open loop.
//!
//! Latency of a request, and of each record it carries, runs from the batch's due time (open
//! loop) or from sending (closed loop) to the answer; a system that acknowledges records one
//! by one (NATS) gives each record its own acknowledgement time. Failed requests and records
//! are counted by error type and not sent again.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use bytes::BytesMut;

use super::{Outcome, Settings};
use crate::driver::{Driver, Entry, Producer, Sent};
use crate::measure::{self, micros, Clock, Progress, Recorder, Timeline, Totals};
use crate::plan::Plan;
use crate::records::RecordPool;

/// Producers connected and ready to start.
pub struct Producers {
    producers: Vec<Producer>,
}

/// Producers running.
pub struct Running {
    workers: Vec<tokio::task::JoinHandle<Totals>>,
    plan: Arc<Plan>,
}

impl Producers {
    /// One producer per task, each starting at a different endpoint.
    pub async fn connect(driver: &Driver, settings: &Settings, keys: &Arc<[String]>) -> Result<Producers> {
        let mut producers = Vec::with_capacity(settings.concurrency);
        for worker in 0..settings.concurrency {
            producers.push(driver.producer(worker, keys).await?);
        }
        Ok(Producers { producers })
    }

    /// Starts every task on `clock`; `stamp` writes each record's due time into its first
    /// bytes (end-to-end runs).
    pub fn start(
        self,
        settings: &Settings,
        pool: Arc<RecordPool>,
        clock: Clock,
        timeline: &Arc<Timeline>,
        progress: &Arc<Progress>,
        stamp: bool,
    ) -> Running {
        let plan = Arc::new(Plan::new(settings.end, settings.batch, settings.rate_records_per_s, settings.time_limit));
        let workers = self
            .producers
            .into_iter()
            .enumerate()
            .map(|(worker, producer)| {
                let task = Task {
                    worker,
                    producer,
                    plan: plan.clone(),
                    pool: pool.clone(),
                    keys: settings.keys,
                    batch: settings.batch,
                    clock,
                    stamp,
                    recorder: Recorder::new(clock, timeline.clone(), progress.clone()),
                };
                tokio::spawn(task.run())
            })
            .collect();
        Running { workers, plan }
    }
}

impl Running {
    /// Waits for every task; returns their merged totals and whether the time limit hit.
    pub async fn finish(self) -> (Totals, bool) {
        let mut totals = Totals::new();
        for worker in self.workers {
            match worker.await {
                Ok(worker_totals) => totals.add(&worker_totals),
                // A task that panicked broke an invariant; the run's figures would be wrong.
                Err(error) => panic!("a producer task failed: {error}"),
            }
        }
        (totals, self.plan.time_limit_hit())
    }
}

struct Task {
    worker: usize,
    producer: Producer,
    plan: Arc<Plan>,
    pool: Arc<RecordPool>,
    keys: usize,
    batch: usize,
    clock: Clock,
    stamp: bool,
    recorder: Recorder,
}

impl Task {
    async fn run(mut self) -> Totals {
        let mut entries: Vec<Entry> = Vec::with_capacity(self.batch);
        let mut sent = Sent::default();
        let mut buffer = BytesMut::new();
        // Tasks start at different records and keys, so concurrent batches differ and spread
        // over the shards.
        let mut record = self.worker * 7_919;
        let mut key = (self.worker * 997) % self.keys;
        while let Some(batch) = self.plan.claim(self.clock.start.elapsed()) {
            let due = batch.due.map(|due| self.clock.start + due);
            let timestamp_us = self.clock.micros_at(due.unwrap_or_else(Instant::now));
            entries.clear();
            if self.stamp {
                buffer.reserve(batch.records * self.pool.max_bytes());
            }
            for _ in 0..batch.records {
                let data = if self.stamp {
                    self.pool.stamp_into(record, timestamp_us, &mut buffer)
                } else {
                    self.pool.get(record).clone()
                };
                entries.push(Entry { key: key as u32, data });
                record += 1;
                key = (key + 1) % self.keys;
            }
            if let Some(due) = due {
                tokio::time::sleep_until(due.into()).await;
            }
            let started = due.unwrap_or_else(Instant::now);
            sent.clear();
            self.producer.send(&entries, &mut sent).await;
            let answered = Instant::now();
            let latency_us = micros(answered.saturating_duration_since(started));
            self.recorder.request(started, latency_us);
            if sent.ack_times.is_empty() {
                self.recorder.records(started, answered, sent.acked, sent.acked_bytes, Some(latency_us));
            } else {
                for &(acked_at, bytes) in &sent.ack_times {
                    let latency_us = micros(acked_at.saturating_duration_since(started));
                    self.recorder.records(started, acked_at, 1, bytes, Some(latency_us));
                }
            }
            for (kind, count) in sent.failures.iter() {
                self.recorder.error(started, kind, count);
            }
        }
        self.recorder.finish()
    }
}

/// The produce workload: connect, run, merge.
pub async fn run(driver: &Driver, settings: &Settings, pool: Arc<RecordPool>, keys: &Arc<[String]>) -> Result<Outcome> {
    let producers = Producers::connect(driver, settings, keys).await?;
    let clock = Clock::new(settings.warmup);
    let timeline = Arc::new(Timeline::default());
    let progress = Arc::new(Progress::default());
    let printer =
        settings.progress.then(|| tokio::spawn(measure::print_progress(clock, progress.clone(), "records acked")));
    let running = producers.start(settings, pool, clock, &timeline, &progress, false);
    let (totals, ended_by_time_limit) = running.finish().await;
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
        ended_by_time_limit,
    })
}
