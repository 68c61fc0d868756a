//! The report's two plots, drawn on a small RGB canvas and written as PNG (`riffle_plot`):
//! throughput per second and per-call latency over the run, fault windows shaded. Time runs
//! left to right from the start of the run to its last operation; grid lines mark every 10 s
//! (throughput: every 100 calls/s; latency: every decade from 1 ms).

use std::path::Path;

use anyhow::Result;
use riffle_plot::{Image, Rgb};

use crate::report::FaultWindow;
use crate::workload::Operation;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 320;
/// Margins inside the image around the plotting area.
const LEFT: u32 = 10;
const RIGHT: u32 = 10;
const TOP: u32 = 10;
const BOTTOM: u32 = 10;

const BACKGROUND: Rgb = [255, 255, 255];
const SHADE: Rgb = [255, 224, 224];
const GRID: Rgb = [220, 220, 220];
const AXIS: Rgb = [90, 90, 90];
const OK: Rgb = [30, 140, 60];
const FAIL: Rgb = [200, 30, 30];
const INFO: Rgb = [230, 140, 0];

/// The report's drawing surface: `riffle_plot`'s image, with the corner-coordinates rectangle
/// this module draws with.
struct Canvas {
    image: Image,
}

impl Canvas {
    fn new() -> Canvas {
        Canvas { image: Image::new(WIDTH, HEIGHT, BACKGROUND) }
    }

    fn set(&mut self, x: u32, y: u32, color: Rgb) {
        self.image.set(x, y, color);
    }

    fn rectangle(&mut self, x0: u32, y0: u32, x1: u32, y1: u32, color: Rgb) {
        self.image.fill((x0, y0), (x1, y1), color);
    }

    fn write(&self, path: &Path) -> Result<()> {
        self.image.save(path).map_err(anyhow::Error::from)
    }
}

/// Maps time (µs since the start) to an x pixel.
fn x_of(time_us: u64, end_us: u64) -> u32 {
    let span = f64::from(WIDTH - LEFT - RIGHT - 1);
    LEFT + ((time_us as f64 / end_us.max(1) as f64).min(1.0) * span) as u32
}

/// Maps a fraction of the height (0 bottom, 1 top) to a y pixel.
fn y_of(fraction: f64) -> u32 {
    let span = f64::from(HEIGHT - TOP - BOTTOM - 1);
    HEIGHT - BOTTOM - 1 - (fraction.clamp(0.0, 1.0) * span) as u32
}

/// Background, shaded fault windows and vertical grid lines every 10 s.
fn frame(canvas: &mut Canvas, windows: &[FaultWindow], end_us: u64) {
    for window in windows {
        canvas.rectangle(x_of(window.start_us, end_us), y_of(1.0), x_of(window.end_us, end_us), y_of(0.0), SHADE);
    }
    let mut tick = 0u64;
    while tick <= end_us {
        let x = x_of(tick, end_us);
        for y in y_of(1.0)..=y_of(0.0) {
            canvas.set(x, y, GRID);
        }
        tick += 10_000_000;
    }
    canvas.rectangle(LEFT, y_of(0.0), WIDTH - RIGHT - 1, y_of(0.0), AXIS);
    canvas.rectangle(LEFT, y_of(1.0), LEFT, y_of(0.0), AXIS);
}

fn is_put(operation: &Operation) -> bool {
    operation.f == "put" || operation.f == "put-batch"
}

/// Acknowledged (green) and not acknowledged (red) put calls per second, as bars.
pub fn throughput_png(path: &Path, operations: &[Operation], windows: &[FaultWindow], end_us: u64) -> Result<()> {
    let seconds = (end_us / 1_000_000 + 1) as usize;
    let mut ok = vec![0u32; seconds];
    let mut failed = vec![0u32; seconds];
    for operation in operations.iter().filter(|operation| is_put(operation)) {
        let second = (operation.completed_us / 1_000_000) as usize;
        if second < seconds {
            if operation.kind == "ok" {
                ok[second] += 1;
            } else {
                failed[second] += 1;
            }
        }
    }
    let peak = ok.iter().zip(&failed).map(|(ok, failed)| ok + failed).max().unwrap_or(1).max(1);
    let mut canvas = Canvas::new();
    frame(&mut canvas, windows, end_us);
    let mut grid = 100;
    while grid < peak {
        canvas.rectangle(
            LEFT,
            y_of(f64::from(grid) / f64::from(peak)),
            WIDTH - RIGHT - 1,
            y_of(f64::from(grid) / f64::from(peak)),
            GRID,
        );
        grid += 100;
    }
    for second in 0..seconds {
        let (x0, x1) = (x_of(second as u64 * 1_000_000, end_us), x_of((second as u64 + 1) * 1_000_000, end_us));
        let good = f64::from(ok[second]) / f64::from(peak);
        let bad = f64::from(failed[second]) / f64::from(peak);
        if ok[second] > 0 {
            canvas.rectangle(x0, y_of(0.0), x1.saturating_sub(1).max(x0), y_of(good), OK);
        }
        if failed[second] > 0 {
            canvas.rectangle(x0, y_of(good), x1.saturating_sub(1).max(x0), y_of(good + bad), FAIL);
        }
    }
    canvas.write(path)
}

/// Every put call as a point: x its invocation, y its latency on a log scale from 1 ms to 10 s.
pub fn latency_png(path: &Path, operations: &[Operation], windows: &[FaultWindow], end_us: u64) -> Result<()> {
    let mut canvas = Canvas::new();
    frame(&mut canvas, windows, end_us);
    // Decades: 1 ms .. 10 s is four decades.
    let fraction = |latency_us: u64| ((latency_us.max(1) as f64 / 1_000.0).log10() / 4.0).clamp(0.0, 1.0);
    for decade in 1..4 {
        let y = y_of(f64::from(decade) / 4.0);
        canvas.rectangle(LEFT, y, WIDTH - RIGHT - 1, y, GRID);
    }
    for operation in operations.iter().filter(|operation| is_put(operation)) {
        let color = match operation.kind {
            "ok" => OK,
            "fail" => FAIL,
            _ => INFO,
        };
        let x = x_of(operation.invoked_us, end_us);
        let y = y_of(fraction(operation.completed_us.saturating_sub(operation.invoked_us)));
        canvas.rectangle(x, y, x + 1, y + 1, color);
    }
    canvas.write(path)
}
