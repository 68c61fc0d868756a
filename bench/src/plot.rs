//! `--plots DIR`: the run's timeline as two PNG images — `throughput.png` (records per second,
//! one bar per second) and `latency.png` (p50 in blue and p99 in red per second, on a log
//! scale from 100 µs to 10 s, grid lines at each decade).
//!
//! What it is not: a charting library; there are no labels, only the shapes — the numbers are
//! in the JSON report beside the images. Horizontal grid lines of the throughput plot mark
//! every power of ten below the peak; vertical ones every 10 s.

use std::path::Path;

use anyhow::{Context, Result};
use riffle_plot::{Image, Rgb};

use crate::report::TimelinePoint;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 300;
/// Empty border around the plotting area, in pixels.
const MARGIN: u32 = 12;

const BACKGROUND: Rgb = [255, 255, 255];
const GRID: Rgb = [225, 225, 225];
const AXIS: Rgb = [80, 80, 80];
const BARS: Rgb = [40, 120, 200];
const P50: Rgb = [40, 90, 200];
const P99: Rgb = [210, 50, 40];

/// Lowest and highest latency on the latency plot's log scale, in microseconds.
const LATENCY_FLOOR_US: f64 = 100.0;
const LATENCY_DECADES: f64 = 5.0;

/// The plotting area: x for the second `t_s` (its right edge), y for a fraction of the height.
struct Area {
    seconds: u64,
}

impl Area {
    fn x(&self, t_s: f64) -> u32 {
        let span = f64::from(WIDTH - 2 * MARGIN - 1);
        MARGIN + ((t_s / self.seconds.max(1) as f64).clamp(0.0, 1.0) * span) as u32
    }

    fn y(&self, fraction: f64) -> u32 {
        let span = f64::from(HEIGHT - 2 * MARGIN - 1);
        HEIGHT - MARGIN - 1 - (fraction.clamp(0.0, 1.0) * span) as u32
    }

    fn frame(&self, image: &mut Image, horizontal_lines: &[f64]) {
        for &fraction in horizontal_lines {
            image.fill((self.x(0.0), self.y(fraction)), (self.x(self.seconds as f64), self.y(fraction)), GRID);
        }
        for tick in (10..self.seconds).step_by(10) {
            image.fill((self.x(tick as f64), self.y(0.0)), (self.x(tick as f64), self.y(1.0)), GRID);
        }
        image.fill((self.x(0.0), self.y(0.0)), (self.x(self.seconds as f64), self.y(0.0)), AXIS);
        image.fill((self.x(0.0), self.y(0.0)), (self.x(0.0), self.y(1.0)), AXIS);
    }
}

/// Writes `throughput.png` and `latency.png` into `directory` (created if missing).
pub fn write(directory: &Path, timeline: &[TimelinePoint]) -> Result<()> {
    std::fs::create_dir_all(directory).with_context(|| format!("creating {}", directory.display()))?;
    let area = Area { seconds: timeline.last().map_or(1, |point| point.t_s) };
    throughput(&area, timeline).save(&directory.join("throughput.png"))?;
    latency(&area, timeline).save(&directory.join("latency.png"))?;
    Ok(())
}

fn throughput(area: &Area, timeline: &[TimelinePoint]) -> Image {
    let mut image = Image::new(WIDTH, HEIGHT, BACKGROUND);
    let peak = timeline.iter().map(|point| point.records).max().unwrap_or(0).max(1) as f64;
    let mut lines = Vec::new();
    let mut power = 1.0;
    while power < peak {
        lines.push(power / peak);
        power *= 10.0;
    }
    area.frame(&mut image, &lines);
    for point in timeline.iter().filter(|point| point.records > 0) {
        let (left, right) = (area.x((point.t_s - 1) as f64) + 1, area.x(point.t_s as f64).saturating_sub(1));
        image.fill((left, area.y(0.0)), (right.max(left), area.y(point.records as f64 / peak)), BARS);
    }
    image
}

fn latency(area: &Area, timeline: &[TimelinePoint]) -> Image {
    let mut image = Image::new(WIDTH, HEIGHT, BACKGROUND);
    let decades: Vec<f64> = (1..LATENCY_DECADES as u32).map(|decade| f64::from(decade) / LATENCY_DECADES).collect();
    area.frame(&mut image, &decades);
    let fraction = |latency_us: u64| (latency_us.max(1) as f64 / LATENCY_FLOOR_US).log10() / LATENCY_DECADES;
    for (pick, color) in [(0usize, P50), (1, P99)] {
        let points: Vec<(u32, u32)> = timeline
            .iter()
            .filter_map(|point| {
                let value = if pick == 0 { point.p50_us } else { point.p99_us }?;
                Some((area.x(point.t_s as f64 - 0.5), area.y(fraction(value))))
            })
            .collect();
        for pair in points.windows(2) {
            image.segment(pair[0], pair[1], color);
        }
        if let [only] = points.as_slice() {
            image.fill(*only, (only.0 + 2, only.1 + 2), color);
        }
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_written_as_png() {
        let directory = tempfile::tempdir().expect("a scratch directory");
        let timeline: Vec<TimelinePoint> = (1..=30)
            .map(|t_s| TimelinePoint {
                t_s,
                records: 1_000 * t_s,
                bytes: 1_024_000 * t_s,
                p50_us: Some(2_000 + 10 * t_s),
                p99_us: (t_s != 7).then_some(20_000),
            })
            .collect();
        write(directory.path(), &timeline).expect("plots");
        for name in ["throughput.png", "latency.png"] {
            let bytes = std::fs::read(directory.path().join(name)).expect("written");
            assert_eq!(&bytes[1..4], b"PNG", "{name}");
        }
        write(&directory.path().join("empty"), &[]).expect("an empty timeline still plots");
    }
}
