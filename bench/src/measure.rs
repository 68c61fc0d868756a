//! What a run measures, task by task: counts, latency histograms, errors by type, and a
//! per-second timeline; merged into one [`Totals`] at the end.
//!
//! Each task owns a [`Recorder`], so the hot path takes no lock; the timeline is shared, and a
//! recorder hands it one finished second at a time. Anything that happened (or was due) before
//! the measuring start — the warm-up — is dropped here, in one place.
//!
//! Invariants: histograms saturate at [`LATENCY_MAX_US`] instead of failing; every count in the
//! totals is the sum of the recorders' counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency the histograms hold, in microseconds; slower ones count as this.
pub const LATENCY_MAX_US: u64 = 120_000_000;

/// Significant decimal digits of the run's histograms.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Significant digits of the per-second histograms: coarser, as there are many.
const TIMELINE_SIGNIFICANT_DIGITS: u8 = 2;

/// Longest timeline kept, in seconds; later seconds are folded into the last one.
const TIMELINE_SECONDS_MAX: usize = 86_400;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, SIGNIFICANT_DIGITS).expect("constant histogram bounds are valid")
}

fn new_timeline_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, TIMELINE_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The run's clock: the origin of timestamps and due times, and where measuring starts.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub start: Instant,
    /// `start` plus the warm-up.
    pub measure_from: Instant,
}

impl Clock {
    pub fn new(warmup: Duration) -> Clock {
        let start = Instant::now();
        Clock { start, measure_from: start + warmup }
    }

    /// Microseconds since the start.
    pub fn micros_at(&self, at: Instant) -> u64 {
        micros(at.saturating_duration_since(self.start))
    }

    /// Microseconds from the start to the measuring start.
    pub fn warmup_us(&self) -> u64 {
        self.micros_at(self.measure_from)
    }
}

/// One second of the timeline.
pub struct Second {
    pub records: u64,
    pub bytes: u64,
    /// The timeline's latency (per record when producing, end to end in e2e runs).
    pub latency: Histogram<u64>,
}

impl Second {
    pub fn new() -> Second {
        Second { records: 0, bytes: 0, latency: new_timeline_histogram() }
    }

    fn add(&mut self, other: &Second) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.latency.add(&other.latency).expect("timeline histograms share bounds");
    }
}

/// The per-second timeline all recorders of a run write to.
#[derive(Default)]
pub struct Timeline {
    seconds: Mutex<Vec<Second>>,
}

impl Timeline {
    fn merge(&self, index: usize, second: &Second) {
        let index = index.min(TIMELINE_SECONDS_MAX - 1);
        let mut seconds = self.seconds.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while seconds.len() <= index {
            seconds.push(Second::new());
        }
        seconds[index].add(second);
    }

    /// The seconds so far, from the measuring start; second `i` is `t_s = i + 1`.
    pub fn take(&self) -> Vec<Second> {
        std::mem::take(&mut *self.seconds.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// Running totals for the progress line (warm-up included).
#[derive(Default)]
pub struct Progress {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

/// One task's measurements.
pub struct Recorder {
    clock: Clock,
    timeline: Arc<Timeline>,
    progress: Arc<Progress>,
    /// The timeline second being filled, and its index.
    current: Option<(usize, Second)>,
    pub totals: Totals,
}

/// Measurements of one task, or of a whole run once merged.
pub struct Totals {
    pub records: u64,
    pub bytes: u64,
    pub requests: u64,
    /// Per request: from its due time (open loop) or sending (closed loop) to its answer.
    pub request: Histogram<u64>,
    /// Per acknowledged record, likewise.
    pub record: Histogram<u64>,
    /// Per record read in an end-to-end run: read time minus intended send time.
    pub end_to_end: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Totals {
    pub fn new() -> Totals {
        Totals {
            records: 0,
            bytes: 0,
            requests: 0,
            request: new_histogram(),
            record: new_histogram(),
            end_to_end: new_histogram(),
            errors: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, other: &Totals) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.requests += other.requests;
        self.request.add(&other.request).expect("histograms share bounds");
        self.record.add(&other.record).expect("histograms share bounds");
        self.end_to_end.add(&other.end_to_end).expect("histograms share bounds");
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
    }
}

impl Default for Totals {
    fn default() -> Self {
        Totals::new()
    }
}

impl Recorder {
    pub fn new(clock: Clock, timeline: Arc<Timeline>, progress: Arc<Progress>) -> Recorder {
        Recorder { clock, timeline, progress, current: None, totals: Totals::new() }
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Whether something started (or due) at `at` counts: not during the warm-up.
    pub fn measures(&self, at: Instant) -> bool {
        at >= self.clock.measure_from
    }

    /// A request answered, `latency_us` after it was due or sent; `at` is when it started.
    pub fn request(&mut self, started: Instant, latency_us: u64) {
        if self.measures(started) {
            self.totals.requests += 1;
            self.totals.request.saturating_record(latency_us);
        }
    }

    /// `records` records totalling `bytes` acknowledged or read at `at`, of work started at
    /// `started`; `latency_us`, when given, is each one's latency.
    pub fn records(&mut self, started: Instant, at: Instant, records: u64, bytes: u64, latency_us: Option<u64>) {
        self.progress.records.fetch_add(records, Ordering::Relaxed);
        self.progress.bytes.fetch_add(bytes, Ordering::Relaxed);
        if !self.measures(started) || records == 0 {
            return;
        }
        self.totals.records += records;
        self.totals.bytes += bytes;
        let second = self.second_at(at);
        second.records += records;
        second.bytes += bytes;
        if let Some(latency_us) = latency_us {
            second.latency.saturating_record_n(latency_us, records);
            self.totals.record.saturating_record_n(latency_us, records);
        }
    }

    /// One record read end to end at `at`, sent (intended) at `sent_us` on the run's clock.
    pub fn end_to_end(&mut self, at: Instant, sent_us: u64, bytes: u64) {
        self.progress.records.fetch_add(1, Ordering::Relaxed);
        self.progress.bytes.fetch_add(bytes, Ordering::Relaxed);
        if sent_us < self.clock.warmup_us() {
            return;
        }
        let latency_us = self.clock.micros_at(at).saturating_sub(sent_us);
        self.totals.records += 1;
        self.totals.bytes += bytes;
        self.totals.end_to_end.saturating_record(latency_us);
        let second = self.second_at(at);
        second.records += 1;
        second.bytes += bytes;
        second.latency.saturating_record(latency_us);
    }

    /// `count` errors of type `kind`, of work started at `started`.
    pub fn error(&mut self, started: Instant, kind: &str, count: u64) {
        self.progress.errors.fetch_add(count, Ordering::Relaxed);
        if self.measures(started) {
            match self.totals.errors.get_mut(kind) {
                Some(total) => *total += count,
                None => {
                    self.totals.errors.insert(kind.to_string(), count);
                }
            }
        }
    }

    fn second_at(&mut self, at: Instant) -> &mut Second {
        let index = at.saturating_duration_since(self.clock.measure_from).as_secs() as usize;
        if self.current.as_ref().is_some_and(|(current, _)| *current != index) {
            self.flush();
        }
        &mut self.current.get_or_insert_with(|| (index, Second::new())).1
    }

    fn flush(&mut self) {
        if let Some((index, second)) = self.current.take() {
            self.timeline.merge(index, &second);
        }
    }

    /// Hands the last second to the timeline and returns the totals.
    pub fn finish(mut self) -> Totals {
        self.flush();
        std::mem::take(&mut self.totals)
    }
}

/// Prints one line a second to stderr until aborted: records/s now and overall, errors.
pub async fn print_progress(clock: Clock, progress: Arc<Progress>, what: &'static str) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    let (mut previous_records, mut previous_bytes, mut previous_at) = (0, 0, clock.start);
    loop {
        interval.tick().await;
        let now = Instant::now();
        let records = progress.records.load(Ordering::Relaxed);
        let bytes = progress.bytes.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        let interval_s = (now - previous_at).as_secs_f64().max(f64::EPSILON);
        let phase = if now < clock.measure_from { " (warm-up)" } else { "" };
        eprintln!(
            "[{:>6.1}s] {:>9.0} records/s {:>7.2} MB/s now, {records} {what}, {errors} errors{phase}",
            (now - clock.start).as_secs_f64(),
            (records - previous_records) as f64 / interval_s,
            (bytes - previous_bytes) as f64 / 1e6 / interval_s,
        );
        (previous_records, previous_bytes, previous_at) = (records, bytes, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(warmup: Duration) -> (Recorder, Arc<Timeline>) {
        let timeline = Arc::new(Timeline::default());
        (Recorder::new(Clock::new(warmup), timeline.clone(), Arc::new(Progress::default())), timeline)
    }

    #[test]
    fn warmup_work_is_not_measured() {
        let (mut recorder, timeline) = recorder(Duration::from_secs(3600));
        let now = Instant::now();
        recorder.request(now, 100);
        recorder.records(now, now, 10, 1_000, Some(100));
        recorder.error(now, "request: transport", 1);
        let totals = recorder.finish();
        assert_eq!((totals.records, totals.requests, totals.request.len()), (0, 0, 0));
        assert!(totals.errors.is_empty());
        assert!(timeline.take().is_empty());
    }

    #[test]
    fn records_count_once_per_record_in_histogram_and_timeline() {
        let (mut recorder, timeline) = recorder(Duration::ZERO);
        let start = recorder.clock.start;
        recorder.request(start, 500);
        recorder.records(start, start, 100, 102_400, Some(500));
        recorder.records(start, start + Duration::from_millis(1_500), 50, 51_200, Some(700));
        recorder.error(start, "ProvisionedThroughputExceededException", 3);
        recorder.error(start, "ProvisionedThroughputExceededException", 2);
        let totals = recorder.finish();
        assert_eq!((totals.records, totals.bytes, totals.requests), (150, 153_600, 1));
        assert_eq!(totals.record.len(), 150);
        assert_eq!(totals.errors["ProvisionedThroughputExceededException"], 5);
        let seconds = timeline.take();
        assert_eq!(seconds.len(), 2);
        assert_eq!((seconds[0].records, seconds[1].records), (100, 50));
        assert_eq!(seconds[1].latency.len(), 50);
    }

    #[test]
    fn end_to_end_latency_is_read_time_minus_send_time() {
        let (mut recorder, _) = recorder(Duration::ZERO);
        let start = recorder.clock.start;
        recorder.end_to_end(start + Duration::from_millis(30), 10_000, 1024);
        let totals = recorder.finish();
        assert_eq!(totals.end_to_end.len(), 1);
        assert!((19_900..=20_100).contains(&totals.end_to_end.max()), "{}", totals.end_to_end.max());
    }
}
