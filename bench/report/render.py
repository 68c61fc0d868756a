#!/usr/bin/env python3
"""Renders one `bench/compare` run as a side-by-side table.

Input: a results directory written by `bench/compare` (see docs/bench.md):

    plan.json                 what was run: systems, workloads, which run wrote which report
    machine.json              `riffle-bench machine` report (the machine's limits)
    <system>--<workload>.json one `riffle-bench` report per run (the JSON contract of riffle-bench)

Output: `summary.md` (the table, Markdown) and `summary.json` (the same figures as data) in the
same directory, and, with `--doc PATH`, the table written into PATH between the markers
`<!-- bench-compare:latest:begin -->` and `<!-- bench-compare:latest:end -->` (a section is
appended when the markers are missing).

Python 3 standard library only. Run it again on an old results directory to redraw its table:

    python3 bench/report/render.py bench/results/<stamp> [--doc docs/bench.md] [--baseline OLDER]

`--baseline` adds a table of this run ÷ an earlier one, per system and workload.
"""

import argparse
import json
import math
import sys
from pathlib import Path

DOC_BEGIN = "<!-- bench-compare:latest:begin -->"
DOC_END = "<!-- bench-compare:latest:end -->"

# Workload kinds and what a cell shows for each.
THROUGHPUT_KINDS = ("throughput", "drain")
LATENCY_KINDS = ("latency", "e2e")
PERCENTILES = (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"))
# An open-loop run whose acknowledged rate fell below this fraction of its target is marked
# "behind": its latency is a queue that grew through the run.
KEPT_UP_FRACTION = 0.95


class RenderError(Exception):
    """The results directory is not what `bench/compare` writes."""


def load_json(path):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise RenderError(f"{path}: not JSON ({error})") from error


# --- figures out of one report ---------------------------------------------------------------


def error_count(report):
    errors = (report.get("results") or {}).get("errors") or {}
    return sum(count for count in errors.values() if isinstance(count, (int, float)))


def latency_summary(report, kind):
    """The latency summary a workload of this kind is judged by: end-to-end for e2e runs, per
    record (falling back to per request) for produce runs."""
    latency = (report.get("results") or {}).get("latency_us") or {}
    names = ("end_to_end",) if kind == "e2e" else ("record", "request")
    for name in names:
        summary = latency.get(name)
        if summary and summary.get("count"):
            return name, summary
    return None, None


def figures_of(report, kind):
    """The figures of one run, as plain numbers (None where the report has none)."""
    results = report.get("results") or {}
    figures = {
        "records": results.get("records"),
        "elapsed_s": results.get("elapsed_s"),
        "errors": error_count(report),
        "error_kinds": (results.get("errors") or {}),
    }
    if kind in THROUGHPUT_KINDS:
        figures["records_per_s"] = results.get("records_per_s")
        figures["mb_per_s"] = results.get("mb_per_s")
    else:
        source, summary = latency_summary(report, kind)
        figures["latency_source"] = source
        figures["records_per_s"] = results.get("records_per_s")
        figures["rate_records_per_s"] = (report.get("workload") or {}).get("rate_records_per_s")
        for key, _ in PERCENTILES:
            figures[f"{key}_us"] = summary.get(key) if summary else None
    return figures


def ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def ratios_of(riffle, peer, kind):
    """Riffle ÷ peer, per figure the cell shows."""
    if riffle is None or peer is None:
        return None
    if kind in THROUGHPUT_KINDS:
        return {"records_per_s": ratio(riffle.get("records_per_s"), peer.get("records_per_s"))}
    return {f"{key}_us": ratio(riffle.get(f"{key}_us"), peer.get(f"{key}_us")) for key, _ in PERCENTILES}


# --- formatting -------------------------------------------------------------------------------


def format_count(value):
    if value is None:
        return "–"
    return f"{value:,.0f}"


def format_mb(value):
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def format_ms(microseconds):
    """Milliseconds with three significant figures (at least two decimals below 1 ms)."""
    if microseconds is None:
        return "–"
    milliseconds = microseconds / 1000
    if milliseconds < 1:
        return f"{milliseconds:.2f}"
    if milliseconds < 10:
        return f"{milliseconds:.2f}"
    if milliseconds < 100:
        return f"{milliseconds:.1f}"
    return f"{milliseconds:,.0f}"


def format_ratio(value):
    if value is None or not math.isfinite(value):
        return "–"
    if value >= 10:
        return f"{value:.0f}×"
    return f"{value:.2f}×"


def cell(figures, kind, status):
    if figures is None:
        return status or "–"
    if kind in THROUGHPUT_KINDS:
        text = f"{format_count(figures['records_per_s'])} rec/s · {format_mb(figures['mb_per_s'])} MB/s"
    else:
        text = " / ".join(format_ms(figures[f"{key}_us"]) for key, _ in PERCENTILES) + " ms"
        # An open-loop run that did not keep up measured a growing queue, not a steady latency.
        rate, achieved = figures.get("rate_records_per_s"), figures.get("records_per_s")
        if rate and achieved is not None and achieved < KEPT_UP_FRACTION * rate:
            text += f" (behind: {format_count(achieved)} rec/s)"
    if figures["errors"]:
        text += f" ({format_count(figures['errors'])} errors)"
    return text


def ratio_cell(ratios, kind):
    if not ratios:
        return "–"
    if kind in THROUGHPUT_KINDS:
        return format_ratio(ratios["records_per_s"])
    return " / ".join(format_ratio(ratios[f"{key}_us"]) for key, _ in PERCENTILES)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(value).replace("|", "\\|") for value in row) + " |" for row in rows]
    return lines


# --- the summary ------------------------------------------------------------------------------


def summarize(results_dir):
    """Reads a results directory; returns the summary as data (what summary.json holds)."""
    results_dir = Path(results_dir)
    plan = load_json(results_dir / "plan.json")
    if plan is None:
        raise RenderError(f"{results_dir}: no plan.json (is this a bench/compare results directory?)")
    systems = plan["systems"]
    system_ids = [system["id"] for system in systems]
    runs = plan.get("runs", {})

    # Durability and client driver: what the runs' reports say (the tool knows what it
    # configured), else what the plan says.
    for system in systems:
        for workload in plan["workloads"]:
            run = runs.get(f"{system['id']}/{workload['id']}") or {}
            report = load_json(results_dir / run["json"]) if run.get("json") else None
            if report:
                reported = report.get("system") or {}
                for key in ("durability", "driver"):
                    system[key] = reported.get(key) or system.get(key)
                break

    workloads = []
    for workload in plan["workloads"]:
        kind = workload["kind"]
        row = {"id": workload["id"], "title": workload["title"], "kind": kind,
               "parameters": workload.get("parameters", {}), "figures": {}, "status": {}, "details": {}, "ratios": {}}
        for system_id in system_ids:
            run = runs.get(f"{system_id}/{workload['id']}") or {"status": "not run"}
            report = load_json(results_dir / run["json"]) if run.get("json") else None
            row["status"][system_id] = run.get("status", "ok" if report else "missing")
            row["details"][system_id] = run.get("detail")
            row["figures"][system_id] = figures_of(report, kind) if report else None
        for comparison in plan.get("comparisons", []):
            key = f"{comparison['riffle']}/{comparison['peer']}"
            row["ratios"][key] = ratios_of(row["figures"].get(comparison["riffle"]),
                                           row["figures"].get(comparison["peer"]), kind)
        workloads.append(row)

    machine = load_json(results_dir / "machine.json")
    return {
        "stamp": plan.get("stamp"),
        "quick": plan.get("quick", False),
        "command": plan.get("command"),
        "revision": plan.get("revision"),
        "systems": systems,
        "comparisons": plan.get("comparisons", []),
        "workloads": workloads,
        "machine": machine,
        "machine_fractions": machine_fractions(machine, workloads, plan),
    }


def machine_fractions(machine, workloads, plan):
    """Riffle's throughput runs against the machine's limits: client MB/s over each limit, and
    the same times the copies the disk and network really carry."""
    if not machine:
        return []
    limits = [
        ("seq_write_fsync_each_mb_per_s", "sequential write, fdatasync after each 1 MiB", 6),
        ("seq_write_mb_per_s", "sequential write, no fsync", 6),
        ("loopback_tcp_mb_per_s", "loopback TCP", 3),
    ]
    riffle_ids = [system["id"] for system in plan["systems"] if system.get("role") == "riffle"]
    fractions = []
    for workload in workloads:
        if workload["kind"] != "throughput":
            continue
        for system_id in riffle_ids:
            figures = workload["figures"].get(system_id)
            if not figures or not figures.get("mb_per_s"):
                continue
            for key, title, copies in limits:
                limit = machine.get(key)
                if not limit:
                    continue
                fraction = figures["mb_per_s"] / limit
                fractions.append({"workload": workload["id"], "system": system_id, "limit": key,
                                  "limit_title": title, "limit_mb_per_s": limit,
                                  "mb_per_s": figures["mb_per_s"], "fraction": fraction,
                                  "copies": copies, "fraction_of_copies": fraction * copies})
    return fractions


def describe_disk(disk):
    """`/dev/vda (ext4 on /, rotational)` from the report's disk facts (a dict, or older text)."""
    if not isinstance(disk, dict):
        return str(disk) if disk else "?"
    text = str(disk.get("device") or disk.get("path") or "?")
    if disk.get("model"):
        text += f" {disk['model']}"
    details = []
    if disk.get("fs_type"):
        details.append(f"{disk['fs_type']} on {disk.get('mount_point') or '?'}")
    if disk.get("rotational") is not None:
        details.append("rotational" if disk["rotational"] else "non-rotational")
    return text + (f" ({', '.join(details)})" if details else "")


def render_markdown(summary):
    systems = summary["systems"]
    titles = {system["id"]: system["title"] for system in systems}
    lines = []
    stamp = summary.get("stamp") or "?"
    mode = " (`--quick`: short runs, a smoke test, not figures to quote)" if summary.get("quick") else ""
    lines.append(f"Run {stamp}{mode}: `{summary.get('command') or 'bench/compare'}` at revision "
                 f"{summary.get('revision') or '?'}.")
    machine = (summary.get("machine") or {}).get("machine") or {}
    if machine:
        lines.append("")
        lines.append(f"Machine: {machine.get('cpus', '?')} CPUs ({machine.get('cpu_model', '?')}), "
                     f"{format_count(machine.get('memory_mib'))} MiB RAM, Linux {machine.get('kernel', '?')}, "
                     f"disk {describe_disk(machine.get('disk'))}. Every system ran alone on it, one after another.")
    lines.append("")

    header = ["workload"] + [titles[system["id"]] for system in systems]
    comparisons = summary.get("comparisons", [])
    header += [f"{titles[c['riffle']]} ÷ {titles[c['peer']]}" for c in comparisons]
    rows = []
    for workload in summary["workloads"]:
        kind = workload["kind"]
        row = [workload["title"]]
        for system in systems:
            row.append(cell(workload["figures"].get(system["id"]), kind,
                            workload["status"].get(system["id"])))
        for comparison in comparisons:
            row.append(ratio_cell(workload["ratios"].get(f"{comparison['riffle']}/{comparison['peer']}"), kind))
        rows.append(row)
    lines += markdown_table(header, rows)
    lines.append("")
    lines.append("Throughput cells: acknowledged (or, for the drain, read) records per second and MB/s "
                 "(10^6 bytes) of record data, warm-up excluded. Latency cells: p50 / p99 / p99.9 in "
                 "milliseconds, from when a record was due (open loop) to its acknowledgement, or, "
                 "end to end, to when a consumer read it; \"behind\" marks a run that acknowledged less "
                 "than 95% of its target rate, so its latency is a queue that grew through the run. "
                 "Ratios are Riffle ÷ peer: above 1 means Riffle moved more records (throughput) or "
                 "waited longer (latency).")
    lines.append("")
    lines.append("Durability of an acknowledgement:")
    lines.append("")
    for system in systems:
        version = f" {system['version']}" if system.get("version") else ""
        driver = f"; client: {system['driver']}" if system.get("driver") else ""
        lines.append(f"- **{system['title']}**{version}: {system.get('durability') or 'unknown'}{driver}")

    errors = []
    for workload in summary["workloads"]:
        for system in systems:
            figures = workload["figures"].get(system["id"])
            status = workload["status"].get(system["id"])
            if figures and figures["errors"]:
                kinds = ", ".join(f"{name} {count:,}" for name, count in sorted(figures["error_kinds"].items()))
                errors.append(f"- {titles[system['id']]}, {workload['title']}: {kinds}")
            if status != "ok":
                detail = workload["details"].get(system["id"])
                errors.append(f"- {titles[system['id']]}, {workload['title']}: {status}"
                              + (f" ({detail})" if detail else ""))
    if errors:
        lines.append("")
        lines.append("Errors and failed runs:")
        lines.append("")
        lines += errors

    fractions = summary.get("machine_fractions") or []
    limits = summary.get("machine") or {}
    if limits:
        lines.append("")
        lines.append(f"Machine limits measured in the same run (`riffle-bench machine`, on the disk of the "
                     f"data directories, {limits.get('disk_dir', '?')}): sequential write "
                     f"{format_mb(limits.get('seq_write_mb_per_s'))} MB/s, with an fdatasync after each 1 MiB write "
                     f"{format_mb(limits.get('seq_write_fsync_each_mb_per_s'))} MB/s; "
                     f"{format_count(limits.get('fsync_4k_per_s'))} fsyncs/s of 4 KiB writes; loopback TCP "
                     f"{format_mb(limits.get('loopback_tcp_mb_per_s'))} MB/s.")
    if fractions:
        lines.append("")
        lines.append("Riffle's throughput as a fraction of those limits. Riffle writes every record on three "
                     "nodes, each into its raft log and then its segment files, so the disk carries about 6× "
                     "the record bytes, and the network (loopback here) 3× (client to leader, leader to two "
                     "followers):")
        lines.append("")
        limit_keys = []
        for fraction in fractions:
            if fraction["limit"] not in limit_keys:
                limit_keys.append(fraction["limit"])
        limit_titles = {f["limit"]: f"{f['limit_title']} ({format_mb(f['limit_mb_per_s'])} MB/s)" for f in fractions}
        header = ["run", "record data"] + [limit_titles[key] for key in limit_keys]
        rows = []
        for workload in summary["workloads"]:
            for system in systems:
                mine = {f["limit"]: f for f in fractions
                        if f["workload"] == workload["id"] and f["system"] == system["id"]}
                if not mine:
                    continue
                any_fraction = next(iter(mine.values()))
                row = [f"{titles[system['id']]}, {workload['title']}", f"{format_mb(any_fraction['mb_per_s'])} MB/s"]
                for key in limit_keys:
                    fraction = mine.get(key)
                    row.append(f"{fraction['fraction']:.1%} (×{fraction['copies']}: {fraction['fraction_of_copies']:.0%})"
                               if fraction else "–")
                rows.append(row)
        lines += markdown_table(header, rows)
    return "\n".join(lines) + "\n"


def render_baseline(summary, baseline, baseline_dir):
    """This run against an earlier one: this ÷ that, per system and workload, for the figures
    that matter (throughput: records/s; latency: p50 and p99)."""
    lines = ["", f"Against the run of {baseline.get('stamp') or '?'} (`{baseline_dir}`), this run ÷ that one "
             "(throughput: records/s; latency: p50 / p99). On a shared machine, differences of "
             "±10% are within the noise; compare the machine limits of both runs too.", ""]
    earlier = {row["id"]: row for row in baseline["workloads"]}
    systems = [s for s in summary["systems"] if any(s["id"] == b["id"] for b in baseline["systems"])]
    header = ["workload"] + [system["title"] for system in systems]
    rows = []
    for row in summary["workloads"]:
        before = earlier.get(row["id"])
        cells = [row["title"]]
        for system in systems:
            now = row["figures"].get(system["id"])
            then = before["figures"].get(system["id"]) if before else None
            if now is None or then is None:
                cells.append("–")
            elif before["parameters"] != row["parameters"]:
                cells.append("other parameters")
            elif row["kind"] in THROUGHPUT_KINDS:
                cells.append(format_ratio(ratio(now["records_per_s"], then["records_per_s"])))
            else:
                cells.append(" / ".join(format_ratio(ratio(now[f"{key}_us"], then[f"{key}_us"]))
                                        for key in ("p50", "p99")))
        rows.append(cells)
    for name, key in (("seq. write with fdatasync", "seq_write_fsync_each_mb_per_s"),
                      ("4 KiB fsyncs/s", "fsync_4k_per_s"), ("loopback TCP", "loopback_tcp_mb_per_s")):
        now = (summary.get("machine") or {}).get(key)
        then = (baseline.get("machine") or {}).get(key)
        rows.append([f"machine: {name}"] + [format_ratio(ratio(now, then))] + ["" for _ in systems[1:]])
    return lines + markdown_table(header, rows)


def update_doc(doc_path, table_markdown):
    """Writes the table between the markers of DOC_PATH (appending a section without them)."""
    doc_path = Path(doc_path)
    text = doc_path.read_text(encoding="utf-8") if doc_path.exists() else ""
    block = f"{DOC_BEGIN}\n{table_markdown.rstrip()}\n{DOC_END}"
    begin, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if begin != -1 and end != -1 and begin < end:
        text = text[:begin] + block + text[end + len(DOC_END):]
    else:
        text = text.rstrip() + "\n\n## Latest results\n\n" + block + "\n"
    doc_path.write_text(text, encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Render a bench/compare results directory as a table.")
    parser.add_argument("results_dir", help="a directory bench/compare wrote (bench/results/<stamp>)")
    parser.add_argument("--doc", help="also write the table into this Markdown file between its markers")
    parser.add_argument("--baseline", help="an earlier results directory: add this run ÷ that one")
    parser.add_argument("--quiet", action="store_true", help="do not print the table")
    arguments = parser.parse_args(argv)
    try:
        summary = summarize(arguments.results_dir)
        baseline = summarize(arguments.baseline) if arguments.baseline else None
    except RenderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    table = render_markdown(summary)
    if baseline:
        table += "\n".join(render_baseline(summary, baseline, arguments.baseline)) + "\n"
    results_dir = Path(arguments.results_dir)
    (results_dir / "summary.md").write_text(table, encoding="utf-8")
    (results_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if arguments.doc:
        update_doc(arguments.doc, table)
    if not arguments.quiet:
        print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
