"""`lotterycodec bench`: decode latency per file, backend and thread count.

Each row: warm-up decodes, then the median of N timed decodes (from reading the file to the
image in memory; no image write), the per-stage medians, pixels/s, achieved GMAC/s (kept MACs
of the file's configuration) and the file's bpp. Outputs a table, JSON (`--json`), a TSV with
Cool-chic's decode-time column names (`--tsv`) and a latency-vs-MACs plot (`--plot`).
"""
from __future__ import annotations

import json
import platform
import re
import shlex
import statistics
import subprocess
import time
from pathlib import Path

from .decoder.backends import THREADED_BACKENDS, available_backends, get_backend
from .decoder.complexity import macs_per_pixel
from .decoder.format import read_bitstream

# Cool-chic's published decode-time columns and the stages of ours that each covers.
COOLCHIC_COLUMNS = {"dec_time_arm": ("parse", "entropy"), "dec_time_ups": ("upsampling",),
                    "dec_time_syn": ("modulation", "synthesis")}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_one(path: Path, backend: str, threads: int | None, repeat: int, warmup: int) -> dict:
    decode = get_backend(backend)
    runs = []
    for i in range(warmup + repeat):
        t0 = time.perf_counter()
        decoded = decode(path.read_bytes(), threads=threads)
        wall = time.perf_counter() - t0
        if i >= warmup:
            runs.append({**decoded.times, "all": wall})
    bs = read_bitstream(path.read_bytes())
    pixels = bs.width * bs.height
    macs = macs_per_pixel(bs.cfg, bs.height, bs.width)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    row = {"file": str(path), "backend": backend, "threads": threads, "width": bs.width, "height": bs.height,
           "bpp": 8 * path.stat().st_size / pixels, "macs_per_pixel": macs["total"],
           "kept_ratio": bs.cfg.kept_weights / bs.cfg.synth_weight_count, "repeat": repeat, "warmup": warmup,
           "median_s": med, "min_all_s": min(r["all"] for r in runs), "max_all_s": max(r["all"] for r in runs),
           "pixels_per_s": pixels / med["all"], "gmac_per_s": macs["total"] * pixels / med["all"] / 1e9}
    for col, stages in COOLCHIC_COLUMNS.items():
        row[col] = sum(med.get(s, 0.0) for s in stages)
    row["dec_time_all"] = med["all"]
    return row


# ccdec's own timing line (Cool-chic 4.x): file to image in memory, per stage and `all`.
COOLCHIC_TIME = re.compile(r"^time:.*?\barm ([\d.e+-]+) ups ([\d.e+-]+) syn ([\d.e+-]+).*?\ball ([\d.e+-]+)", re.M)


def run_decoder(argv: list[str], env: dict | None = None) -> dict:
    """One run of another decoder's command line (e.g. Cool-chic's ccdec): its own `time: ... all X`
    stages when it prints them (the same scope as ours: file to image in memory), else the process's
    wall time as `all`; `source` says which."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}")
    m = COOLCHIC_TIME.search(proc.stdout + proc.stderr)
    return ({"arm": float(m[1]), "ups": float(m[2]), "syn": float(m[3]), "all": float(m[4]), "source": "its own timer"}
            if m else {"all": wall, "source": "process wall time"})


def bench_anchor(command: str, repeat: int, warmup: int) -> dict:
    """Time another decoder (e.g. Cool-chic's ccdec) in the same run (:func:`run_decoder`)."""
    runs = [run_decoder(shlex.split(command)) for _ in range(warmup + repeat)][warmup:]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "source"}
    return {"command": command, "timer": runs[0]["source"], "repeat": repeat, "warmup": warmup,
            "dec_time_arm": med.get("arm"), "dec_time_ups": med.get("ups"), "dec_time_syn": med.get("syn"),
            "dec_time_all": med["all"]}


def run(files: list[str], backends: list[str], threads: list[int], repeat: int, warmup: int,
        anchor: str | None = None) -> dict:
    rows = []
    for f in files:
        for b in backends:
            for t in (threads if b in THREADED_BACKENDS else [None]):
                rows.append(bench_one(Path(f), b, t, repeat, warmup))
    report = {"cpu": cpu_model(), "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows, "anchor": None}
    if anchor:
        report["anchor"] = bench_anchor(anchor, repeat, warmup)
        for r in rows:
            r["time_ratio_vs_anchor"] = r["dec_time_all"] / report["anchor"]["dec_time_all"]
    return report


def resolve_backends(names: str) -> list[str]:
    return available_backends() if names == "all" else names.split(",")


def write_tsv(report: dict, path: str) -> None:
    cols = ["file", "backend", "threads", "width", "height", "bpp", "macs_per_pixel",
            "dec_time_arm", "dec_time_ups", "dec_time_syn", "dec_time_all"]
    lines = ["\t".join(cols)]
    for r in report["rows"]:
        lines.append("\t".join(str(r[c] if r[c] is not None else "") for c in cols))
    a = report.get("anchor")
    if a:
        lines.append("\t".join(["anchor: " + a["command"], "", "", "", "", "", ""]
                               + [str(a[c] if a[c] is not None else "") for c in cols[7:]]))
    Path(path).write_text(f"# cpu: {report['cpu']}\n" + "\n".join(lines) + "\n")


def write_plot(report: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    series: dict[str, list[tuple[float, float]]] = {}
    for r in report["rows"]:
        label = r["backend"] + (f", {r['threads']} threads" if r["threads"] else "")
        series.setdefault(label, []).append((r["macs_per_pixel"], 1000 * r["dec_time_all"]))
    for label, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    a = report.get("anchor")
    if a:
        name = Path(shlex.split(a["command"])[0]).name
        ax.axhline(1000 * a["dec_time_all"], color="gray", ls="--", label=f"anchor: {name}")
    ax.set_xlabel("MACs / pixel (kept)")
    ax.set_ylabel("decode time (ms, median, log scale)")
    ax.set_yscale("log")  # backends and the anchor differ by orders of magnitude
    ax.set_title(f"decode latency ({report['cpu']})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def format_table(report: dict) -> str:
    head = (f"{'file':30s} {'backend':10s} {'thr':>3s} {'bpp':>7s} {'MAC/px':>7s} {'arm ms':>8s} "
            f"{'ups ms':>7s} {'syn ms':>7s} {'all ms':>8s} {'Mpx/s':>7s} {'GMAC/s':>7s}")
    lines = [f"cpu: {report['cpu']}", head, "-" * len(head)]
    for r in report["rows"]:
        ratio = f"  {r['time_ratio_vs_anchor']:.2f}x anchor" if "time_ratio_vs_anchor" in r else ""
        lines.append(f"{Path(r['file']).name[:30]:30s} {r['backend']:10s} {str(r['threads'] or '-'):>3s} "
                     f"{r['bpp']:7.4f} {r['macs_per_pixel']:7.0f} {1000 * r['dec_time_arm']:8.1f} "
                     f"{1000 * r['dec_time_ups']:7.1f} {1000 * r['dec_time_syn']:7.1f} "
                     f"{1000 * r['dec_time_all']:8.1f} {r['pixels_per_s'] / 1e6:7.3f} {r['gmac_per_s']:7.3f}{ratio}")
    a = report.get("anchor")
    if a:
        stages = " ".join(f"{k[9:]} {1000 * a[k]:.1f} ms" for k in ("dec_time_arm", "dec_time_ups", "dec_time_syn")
                          if a[k] is not None)
        lines.append(f"anchor ({a['timer']}): all {1000 * a['dec_time_all']:.1f} ms {stages}  [{a['command']}]")
    return "\n".join(lines)


def to_json(report: dict) -> str:
    return json.dumps(report)
