"""Adds libFuzzer runs to results/fuzz_decode/stats.json from their logs (run with -print_final_stats=1).

    python benchmarks/fuzz_stats.py results/fuzz_decode/stats.json run4a.log run4b.log \
        --name "run 4a" --name "run 4b" --mutator "section-aware (commit b07a65a)"

Each log gives its executions, exec/s, new units, peak RSS, the last coverage line (edges and
features) and whether libFuzzer reported anything: a crash, a sanitizer report, a timeout, an
out-of-memory or a leak ends a run with one of the markers below, and such a run is counted as a
report. --ended lets a run that was ended from outside say so; --spurious explains a report that
replaying its unit showed to be an artefact (e.g. a timeout from a paused process): the run keeps
the report and the note, and is left out of the genuine count.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
COVERAGE = re.compile(r"^#\d+\s+(?:DONE|NEW|REDUCE|pulse|INITED)\s+cov: (\d+) ft: (\d+)", re.M)
REPORT_MARKERS = ("==ERROR:", "ALARM: working on the last Unit", "out-of-memory", "SUMMARY: ", "deadly signal",
                  "Test unit written to")


def parse(log: Path) -> dict:
    text = log.read_text(errors="replace")
    stats = {k: int(v) for k, v in STAT.findall(text)}
    if "number_of_executed_units" not in stats:
        raise SystemExit(f"{log}: no final stats (run libFuzzer with -print_final_stats=1)")
    cov = COVERAGE.findall(text)
    reports = [m for m in REPORT_MARKERS if m in text]
    return {"executions": stats["number_of_executed_units"], "exec_per_s": stats.get("average_exec_per_sec"),
            "new_units": stats.get("new_units_added"), "peak_rss_mb": stats.get("peak_rss_mb"),
            "final_cov_edges": int(cov[-1][0]) if cov else None,
            "final_features": int(cov[-1][1]) if cov else None,
            "reports": 1 if reports else 0, "report_markers": reports}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stats", type=Path)
    p.add_argument("logs", type=Path, nargs="+")
    p.add_argument("--name", action="append", required=True, help="one per log")
    p.add_argument("--mutator", required=True)
    p.add_argument("--ended", default=None, help="how the runs ended when not by -max_total_time")
    p.add_argument("--spurious", default=None, help="why these runs' reports are artefacts (replayed units)")
    args = p.parse_args()
    if len(args.name) != len(args.logs):
        raise SystemExit("give one --name per log")
    data = json.loads(args.stats.read_text())
    for name, log in zip(args.name, args.logs):
        run = {"run": name, "mutator": args.mutator, **parse(log)}
        if args.ended:
            run["ended"] = args.ended
        if args.spurious:
            run["spurious"] = args.spurious
        data["runs"] = [r for r in data["runs"] if r["run"] != name] + [run]
    data["total_executions"] = sum(r["executions"] for r in data["runs"])
    data["total_genuine_reports"] = sum(r["reports"] for r in data["runs"] if "spurious" not in r)
    args.stats.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{len(data['runs'])} runs, {data['total_executions']:,} executions, {data['total_genuine_reports']} genuine reports")
    print("\n| run | mutator | executions | exec/s | new units | edges / features at the end | reports |")
    print("|---|---|---|---|---|---|---|")
    for r in data["runs"]:
        reports = f"{r['reports']} (spurious: {r['spurious']})" if r.get("spurious") else str(r["reports"])
        print(f"| {r['run']} | {r['mutator']} | {r['executions']:,} | {r['exec_per_s']} | {r['new_units']} | "
              f"{r['final_cov_edges']} / {r['final_features']} | {reports} |")


if __name__ == "__main__":
    main()
