"""Tests of the compare table: a results directory shaped like bench/compare's, built from the
fixture report (fixtures/report.json, the riffle-bench JSON contract) and the real plan of
bench/compare, rendered to Markdown, JSON and into a doc.

Run: cd bench/report && python3 -m unittest   (or: python3 -m unittest discover bench/report)
"""

import contextlib
import copy
import io
import importlib.machinery
import importlib.util
import json
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import render  # noqa: E402


def load_compare():
    """bench/compare is a script without a .py name: load it as a module for its plan."""
    path = HERE.parent / "compare"
    loader = importlib.machinery.SourceFileLoader("bench_compare", str(path))
    spec = importlib.util.spec_from_loader("bench_compare", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


compare = load_compare()
TEMPLATE = json.loads((HERE / "fixtures" / "report.json").read_text(encoding="utf-8"))
MACHINE = json.loads((HERE / "fixtures" / "machine.json").read_text(encoding="utf-8"))

# Figures per system: throughput records/s, latency p50 µs (p99 = 3×, p99.9 = 5×).
FIGURES = {
    "riffle": (50_000, 4_000),
    "riffle-kinesis": (20_000, 5_000),
    "nats": (100_000, 2_000),
    "kinesalite": (5_000, 1_000),
}


def fixture_report(system, workload):
    report = copy.deepcopy(TEMPLATE)
    records_per_s, p50 = FIGURES[system["id"]]
    record_bytes = workload["parameters"].get("record-bytes", 1024)
    report["system"]["name"] = system["id"]
    report["system"]["durability"] = f"durability of {system['id']}"
    report["system"]["driver"] = f"driver of {system['id']}"
    results = report["results"]
    results["records_per_s"] = records_per_s
    rate = workload["parameters"].get("rate")
    if rate:
        # Riffle keeps up with 1,000 records/s and falls behind at 5,000.
        report["workload"]["rate_records_per_s"] = rate
        results["records_per_s"] = rate if rate < 5_000 or system["id"] != "riffle" else 3_000
    results["mb_per_s"] = records_per_s * record_bytes / 1e6
    latency = {"count": 1000, "mean": p50, "p50": p50, "p90": 2 * p50, "p99": 3 * p50, "p999": 5 * p50,
               "p9999": 6 * p50, "max": 7 * p50}
    if workload["kind"] == "e2e":
        results["latency_us"] = {"request": None, "record": None, "end_to_end": latency}
    else:
        results["latency_us"] = {"request": dict(latency), "record": dict(latency), "end_to_end": None}
    return report


def write_results(directory, broken=("kinesalite", "latency-5000"), with_errors=("nats", "produce-100")):
    """A results directory as bench/compare leaves it: one run failed (no report), one with errors."""
    directory = Path(directory)
    plan = {
        "stamp": "20261208T010000Z", "quick": False, "command": "bench/compare", "revision": "0123456789ab",
        "systems": [{key: system[key] for key in ("id", "title", "role")} for system in compare.systems()],
        "comparisons": compare.COMPARISONS,
        "workloads": [{key: w[key] for key in ("id", "title", "kind", "command", "stream", "parameters")}
                      for w in compare.workloads(quick=False)],
        "runs": {},
    }
    for system in plan["systems"]:
        system["version"] = f"v-{system['id']}"
        for workload in plan["workloads"]:
            name = f"{system['id']}--{workload['id']}"
            key = f"{system['id']}/{workload['id']}"
            if (system["id"], workload["id"]) == broken:
                plan["runs"][key] = {"status": "failed", "detail": "exit 1; see its log", "json": None}
                continue
            report = fixture_report(system, workload)
            if (system["id"], workload["id"]) == with_errors:
                report["results"]["errors"] = {"request: timeout": 3, "Throttled": 1}
            (directory / f"{name}.json").write_text(json.dumps(report), encoding="utf-8")
            plan["runs"][key] = {"status": "ok", "json": f"{name}.json"}
    (directory / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    (directory / "machine.json").write_text(json.dumps(MACHINE), encoding="utf-8")
    return plan


class SummaryTest(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()
        self.addCleanup(self.directory.cleanup)
        write_results(self.directory.name)
        self.summary = render.summarize(self.directory.name)
        self.rows = {row["id"]: row for row in self.summary["workloads"]}

    def test_every_workload_is_a_row_with_every_system(self):
        self.assertEqual([w["id"] for w in compare.workloads(quick=False)], list(self.rows))
        for row in self.rows.values():
            self.assertEqual(set(FIGURES), set(row["figures"]))

    def test_throughput_ratio_is_riffle_over_peer(self):
        ratios = self.rows["produce-1k"]["ratios"]
        self.assertAlmostEqual(ratios["riffle/nats"]["records_per_s"], 0.5)
        self.assertAlmostEqual(ratios["riffle-kinesis/kinesalite"]["records_per_s"], 4.0)

    def test_latency_ratio_per_percentile(self):
        ratios = self.rows["latency-1000"]["ratios"]["riffle/nats"]
        for key in ("p50_us", "p99_us", "p999_us"):
            self.assertAlmostEqual(ratios[key], 2.0)

    def test_e2e_uses_end_to_end_latency(self):
        figures = self.rows["e2e"]["figures"]["riffle"]
        self.assertEqual("end_to_end", figures["latency_source"])
        self.assertEqual(4_000, figures["p50_us"])

    def test_failed_run_has_no_figures_and_no_ratio(self):
        row = self.rows["latency-5000"]
        self.assertIsNone(row["figures"]["kinesalite"])
        self.assertEqual("failed", row["status"]["kinesalite"])
        self.assertIsNone(row["ratios"]["riffle-kinesis/kinesalite"])

    def test_durability_comes_from_the_reports(self):
        durability = {system["id"]: system["durability"] for system in self.summary["systems"]}
        self.assertEqual("durability of nats", durability["nats"])

    def test_machine_fractions_of_riffle_throughput(self):
        fractions = [f for f in self.summary["machine_fractions"]
                     if f["system"] == "riffle" and f["workload"] == "produce-1k"
                     and f["limit"] == "seq_write_fsync_each_mb_per_s"]
        self.assertEqual(1, len(fractions))
        # 50,000 records/s of 1,024 B = 51.2 MB/s against 200 MB/s: 25.6 %, 6 copies: 153.6 %.
        self.assertAlmostEqual(0.256, fractions[0]["fraction"])
        self.assertAlmostEqual(6 * 0.256, fractions[0]["fraction_of_copies"])
        self.assertFalse(any(f["system"] in ("nats", "kinesalite") for f in self.summary["machine_fractions"]))


class MarkdownTest(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()
        self.addCleanup(self.directory.cleanup)
        write_results(self.directory.name)
        self.markdown = render.render_markdown(render.summarize(self.directory.name))

    def row(self, title):
        return next(line for line in self.markdown.splitlines() if line.startswith(f"| {title} |"))

    def test_header_names_systems_and_ratios(self):
        header = self.markdown.splitlines()[next(i for i, line in enumerate(self.markdown.splitlines())
                                                 if line.startswith("| workload"))]
        for title in ("Riffle (gRPC)", "Riffle (Kinesis API)", "NATS JetStream", "kinesalite",
                      "Riffle (gRPC) ÷ NATS JetStream", "Riffle (Kinesis API) ÷ kinesalite"):
            self.assertIn(title, header)

    def test_throughput_cells(self):
        cells = [cell.strip() for cell in self.row("throughput, 1 KiB records").split("|")[1:-1]]
        self.assertEqual("50,000 rec/s · 51.2 MB/s", cells[1])
        self.assertEqual("0.50×", cells[5])
        self.assertEqual("4.00×", cells[6])

    def test_latency_cells_in_milliseconds(self):
        cells = [cell.strip() for cell in self.row("latency at 1,000 records/s (1 KiB, 1 per put)").split("|")[1:-1]]
        self.assertEqual("4.00 / 12.0 / 20.0 ms", cells[1])
        self.assertEqual("2.00× / 2.00× / 2.00×", cells[5])

    def test_an_open_loop_run_that_fell_behind_is_marked(self):
        self.assertNotIn("behind", self.row("latency at 1,000 records/s (1 KiB, 1 per put)"))
        self.assertIn("(behind: 3,000 rec/s)", self.row("latency at 5,000 records/s (1 KiB, 1 per put)"))

    def test_failures_and_errors_are_listed(self):
        self.assertIn("kinesalite, latency at 5,000 records/s (1 KiB, 1 per put): failed (exit 1; see its log)",
                      self.markdown)
        self.assertIn("| failed |", self.row("latency at 5,000 records/s (1 KiB, 1 per put)"))
        self.assertIn("(4 errors)", self.row("throughput, 100 B records"))
        self.assertIn("Throttled 1, request: timeout 3", self.markdown)

    def test_machine_fractions_one_row_per_riffle_throughput_run(self):
        row = self.row("Riffle (gRPC), throughput, 1 KiB records")
        self.assertIn("25.6% (×6: 154%)", row)
        self.assertIn("3.2% (×3: 10%)", row)

    def test_machine_line_describes_the_disk(self):
        self.assertIn("disk /dev/vda (ext4 on /, rotational)", self.markdown)

    def test_durability_lines(self):
        self.assertIn("- **NATS JetStream** v-nats: durability of nats", self.markdown)


class DocumentTest(unittest.TestCase):
    def test_table_replaces_the_block_between_markers_and_keeps_the_rest(self):
        with tempfile.TemporaryDirectory() as directory:
            doc = Path(directory) / "bench.md"
            doc.write_text(f"# Page\n\nbefore\n\n{render.DOC_BEGIN}\nold table\n{render.DOC_END}\n\nafter\n",
                           encoding="utf-8")
            render.update_doc(doc, "new table\n")
            render.update_doc(doc, "newer table\n")
            text = doc.read_text(encoding="utf-8")
            self.assertEqual(f"# Page\n\nbefore\n\n{render.DOC_BEGIN}\nnewer table\n{render.DOC_END}\n\nafter\n", text)

    def test_a_doc_without_markers_gets_a_section(self):
        with tempfile.TemporaryDirectory() as directory:
            doc = Path(directory) / "bench.md"
            doc.write_text("# Page\n", encoding="utf-8")
            render.update_doc(doc, "table\n")
            render.update_doc(doc, "table 2\n")
            text = doc.read_text(encoding="utf-8")
            self.assertEqual(1, text.count(render.DOC_BEGIN))
            self.assertIn("table 2", text)
            self.assertNotIn("table\n", text.replace("table 2\n", ""))


class CommandTest(unittest.TestCase):
    def test_main_writes_summary_files(self):
        with tempfile.TemporaryDirectory() as directory:
            write_results(directory)
            self.assertEqual(0, render.main([directory, "--quiet"]))
            summary = json.loads((Path(directory) / "summary.json").read_text(encoding="utf-8"))
            self.assertEqual(6, len(summary["workloads"]))
            self.assertIn("| workload", (Path(directory) / "summary.md").read_text(encoding="utf-8"))

    def test_baseline_shows_this_run_over_the_earlier_one(self):
        with tempfile.TemporaryDirectory() as earlier, tempfile.TemporaryDirectory() as later:
            write_results(earlier)
            write_results(later)
            report = json.loads((Path(later) / "riffle--produce-1k.json").read_text(encoding="utf-8"))
            report["results"]["records_per_s"] *= 1.5
            (Path(later) / "riffle--produce-1k.json").write_text(json.dumps(report), encoding="utf-8")
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(0, render.main([later, "--baseline", earlier, "--quiet"]))
            markdown = (Path(later) / "summary.md").read_text(encoding="utf-8")
            section = markdown[markdown.index("Against the run of"):]
            row = next(line for line in section.splitlines() if line.startswith("| throughput, 1 KiB records |"))
            self.assertEqual("| throughput, 1 KiB records | 1.50× | 1.00× | 1.00× | 1.00× |", row)
            self.assertIn("| machine: loopback TCP | 1.00× |", section)

    def test_a_directory_without_a_plan_is_an_error(self):
        with tempfile.TemporaryDirectory() as directory:
            with contextlib.redirect_stderr(io.StringIO()) as stderr:
                self.assertEqual(1, render.main([directory, "--quiet"]))
            self.assertIn("no plan.json", stderr.getvalue())


if __name__ == "__main__":
    unittest.main()
