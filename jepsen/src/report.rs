//! What a run leaves behind: a directory with the history, the checker's input, the fault
//! windows, the verdict, availability figures per fault window, and an HTML page with PNG
//! plots of throughput and latency over time, fault windows shaded.
//!
//! Files: `history.jsonl` (every operation as an invoke line and a completion line, in time
//! order, with the node and the API), `checker-history.json` and `final-state.json` (the
//! checker's input, to check again offline), `faults.json`, `verdict.json`, `summary.txt`,
//! `index.html` with `throughput.png` and `latency.png`; `node-N/node.log` and `node-N/data/`
//! hold each node's log and data.

use std::path::Path;

use anyhow::{Context, Result};
use riffle_check::{FinalState, History};
use serde::Serialize;

use crate::run::{rerun_command, RunOptions, RunResult};
use crate::workload::Operation;

/// The checker's judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Invalid,
}

/// One fault package as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct FaultWindow {
    pub name: String,
    pub start_us: u64,
    pub end_us: u64,
    /// What the actions did, where worth saying (which file was damaged, how a reshard went).
    pub details: Vec<String>,
}

/// Put availability over one stretch of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Availability {
    pub window: String,
    pub start_us: u64,
    pub end_us: u64,
    /// Put calls invoked in the window, and how many were acknowledged.
    pub calls: usize,
    pub ok: usize,
    pub success_ratio: f64,
    /// Latency of acknowledged calls, milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// The longest time in the window with no put acknowledged.
    pub longest_stall_ms: f64,
}

fn is_put(operation: &Operation) -> bool {
    operation.f == "put" || operation.f == "put-batch"
}

fn figures(name: &str, operations: &[&Operation], start_us: u64, end_us: u64) -> Availability {
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("three significant figures is valid");
    let mut ok_completions: Vec<u64> = Vec::new();
    for operation in operations {
        if operation.kind == "ok" {
            let _ = histogram.record(operation.completed_us.saturating_sub(operation.invoked_us).max(1));
            ok_completions.push(operation.completed_us);
        }
    }
    ok_completions.sort_unstable();
    let mut stall = 0u64;
    let mut previous = start_us;
    for completed in ok_completions.iter().copied().filter(|at| (start_us..=end_us).contains(at)) {
        stall = stall.max(completed.saturating_sub(previous));
        previous = completed;
    }
    stall = stall.max(end_us.saturating_sub(previous));
    let ms = |us: u64| us as f64 / 1_000.0;
    let ok = ok_completions.len();
    Availability {
        window: name.to_string(),
        start_us,
        end_us,
        calls: operations.len(),
        ok,
        success_ratio: if operations.is_empty() { 1.0 } else { ok as f64 / operations.len() as f64 },
        p50_ms: ms(histogram.value_at_quantile(0.5)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        p999_ms: ms(histogram.value_at_quantile(0.999)),
        max_ms: ms(histogram.max()),
        longest_stall_ms: ms(stall),
    }
}

/// Availability of puts over the whole fault phase, outside every fault window, and in each
/// window (calls invoked inside it).
pub fn availability(operations: &[Operation], windows: &[FaultWindow], heal_us: u64) -> Vec<Availability> {
    let puts: Vec<&Operation> = operations.iter().filter(|operation| is_put(operation)).collect();
    let in_window =
        |operation: &Operation, window: &FaultWindow| (window.start_us..=window.end_us).contains(&operation.invoked_us);
    let during: Vec<&Operation> = puts.iter().copied().filter(|operation| operation.invoked_us <= heal_us).collect();
    let mut result = vec![figures("whole fault phase", &during, 0, heal_us)];
    if !windows.is_empty() {
        let quiet: Vec<&Operation> = during
            .iter()
            .copied()
            .filter(|operation| !windows.iter().any(|window| in_window(operation, window)))
            .collect();
        let mut quiet_figures = figures("outside fault windows", &quiet, 0, heal_us);
        // A stall is only meaningful within one stretch; outside windows the stretches are cut.
        quiet_figures.longest_stall_ms = f64::NAN;
        result.push(quiet_figures);
    }
    for window in windows {
        let inside: Vec<&Operation> = puts.iter().copied().filter(|operation| in_window(operation, window)).collect();
        result.push(figures(&window.name, &inside, window.start_us, window.end_us));
    }
    result
}

/// One line of `history.jsonl`.
#[derive(Serialize)]
struct HistoryLine<'a> {
    /// `invoke`, `ok`, `fail` or `info`.
    #[serde(rename = "type")]
    kind: &'a str,
    process: &'a str,
    f: &'a str,
    api: crate::workload::Api,
    node: u64,
    time_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("serializing")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes every file of the run directory.
pub fn write(
    dir: &Path,
    options: &RunOptions,
    result: &RunResult,
    operations: &[Operation],
    history: &History,
    state: &FinalState,
    windows: &[FaultWindow],
) -> Result<()> {
    let mut lines: Vec<(u64, String)> = Vec::new();
    for operation in operations {
        let mut line = HistoryLine {
            kind: "invoke",
            process: &operation.process,
            f: operation.f,
            api: operation.api,
            node: operation.node,
            time_us: operation.invoked_us,
            value: Some(&operation.detail),
        };
        lines.push((operation.invoked_us, serde_json::to_string(&line)?));
        line.kind = operation.kind;
        line.time_us = operation.completed_us;
        lines.push((operation.completed_us, serde_json::to_string(&line)?));
    }
    lines.sort_by_key(|(time, _)| *time);
    let text: String = lines.into_iter().map(|(_, line)| line + "\n").collect();
    std::fs::write(dir.join("history.jsonl"), text).context("writing history.jsonl")?;
    write_json(&dir.join("checker-history.json"), history)?;
    write_json(&dir.join("final-state.json"), state)?;
    write_json(&dir.join("faults.json"), &windows)?;
    write_json(&dir.join("verdict.json"), result)?;
    let summary = summary(options, result);
    std::fs::write(dir.join("summary.txt"), &summary).context("writing summary.txt")?;
    let end_us = operations.iter().map(|operation| operation.completed_us).max().unwrap_or(1).max(1);
    crate::plot::throughput_png(&dir.join("throughput.png"), operations, windows, end_us)?;
    crate::plot::latency_png(&dir.join("latency.png"), operations, windows, end_us)?;
    std::fs::write(dir.join("index.html"), html(options, result, windows, &summary)).context("writing index.html")?;
    Ok(())
}

/// The run in a few lines: verdict, counts, availability table, violations.
pub fn summary(options: &RunOptions, result: &RunResult) -> String {
    let mut text = String::new();
    text.push_str(&format!(
        "schedule {} · seed {} · {} s · rate {}/s · storage {:?}\nverdict: {:?}\n",
        options.schedule,
        options.seed,
        options.time_limit.as_secs(),
        options.rate,
        options.storage,
        result.verdict
    ));
    text.push_str(&format!(
        "{} put attempts, {} acknowledged; {} read chains; {} records drained; {} fault windows; recovery after healing: {}\n",
        result.puts,
        result.acknowledged,
        result.read_chains,
        result.records_drained,
        result.faults,
        result.recovery_ms.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "none within the bound".into())
    ));
    text.push_str(&format!(
        "\n{:<60} {:>6} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9}\n",
        "window", "calls", "ok %", "p50 ms", "p99 ms", "p99.9", "max ms", "stall ms"
    ));
    for row in &result.availability {
        let name: String = row.window.chars().take(60).collect();
        text.push_str(&format!(
            "{name:<60} {:>6} {:>7.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>9.1}\n",
            row.calls,
            row.success_ratio * 100.0,
            row.p50_ms,
            row.p99_ms,
            row.p999_ms,
            row.max_ms,
            row.longest_stall_ms
        ));
    }
    if result.lost_per_writer.values().any(|(_, lost)| *lost > 0) {
        text.push_str("\nlost acknowledged writes per writer (acknowledged, lost):\n");
        for (client, (acknowledged, lost)) in &result.lost_per_writer {
            let writer = if *client == 10_000 { "recovery probes".to_string() } else { format!("producer {client}") };
            text.push_str(&format!("  {writer:<16} {acknowledged:>7} {lost:>7}\n"));
        }
    }
    if !result.violations.is_empty() {
        text.push_str(&format!("\n{} violation(s):\n", result.violations.len()));
        for violation in result.violations.iter().take(50) {
            text.push_str(&format!("  {violation}\n"));
        }
    }
    if !result.notes.is_empty() {
        text.push_str("\nnotes:\n");
        for note in &result.notes {
            text.push_str(&format!("  {note}\n"));
        }
    }
    text.push_str(&format!("\nrerun: {}\n", rerun_command(options)));
    text
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn html(options: &RunOptions, result: &RunResult, windows: &[FaultWindow], summary: &str) -> String {
    let mut faults = String::new();
    for window in windows {
        faults.push_str(&format!(
            "<tr><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>\n",
            window.start_us as f64 / 1e6,
            window.end_us as f64 / 1e6,
            escape(&window.name),
            escape(&window.details.join("; "))
        ));
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>riffle-jepsen {schedule} seed {seed}: {verdict:?}</title>\n\
<style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f4f4f4;padding:1em}}td{{padding:0 1em}}\
.valid{{color:#070}}.invalid{{color:#b00}}</style></head><body>\n\
<h1>riffle-jepsen: {schedule}, seed {seed} — <span class=\"{class}\">{verdict:?}</span></h1>\n\
<h2>Throughput</h2><p>Acknowledged and failed puts per second; fault windows shaded.</p><img src=\"throughput.png\">\n\
<h2>Latency</h2><p>Each put call: green acknowledged, red failed, orange unknown (log scale); fault windows shaded.</p><img src=\"latency.png\">\n\
<h2>Summary</h2><pre>{summary}</pre>\n\
<h2>Fault windows</h2><table><tr><th>start s</th><th>end s</th><th>fault</th><th>details</th></tr>\n{faults}</table>\n\
<p>Files: <a href=\"history.jsonl\">history.jsonl</a>, <a href=\"checker-history.json\">checker-history.json</a>, \
<a href=\"final-state.json\">final-state.json</a>, <a href=\"faults.json\">faults.json</a>, <a href=\"verdict.json\">verdict.json</a>; \
each node's log in node-N/node.log.</p>\n</body></html>\n",
        schedule = escape(&options.schedule),
        seed = options.seed,
        verdict = result.verdict,
        class = if result.verdict == Verdict::Valid { "valid" } else { "invalid" },
        summary = escape(summary),
    )
}
