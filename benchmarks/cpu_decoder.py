"""Times the standalone C++ decoder against an anchor decoder (Cool-chic's ccdec) in the same run.

    python benchmarks/cpu_decoder.py --exe build/lotterycodec-dec FILE.lotc ... --threads 1,2 \
        --kernels avx2,avx512,scalar --repeat 9 --anchor "ccdec --input=kodim14.cool --output= --avx2 --v=1" \
        --json out.json --table out.md --plot out.png

Every repetition runs each configuration once, round robin with the anchor, so slow drift of the
host hits all of them alike. Per configuration: medians of the decoder's own per-stage timer
(`--time`: file read to image in memory, the scope of ccdec's `all`), max RSS of the process
(GNU time's %M, as `/usr/bin/time -v` reports it), bpp from the file size, MACs/pixel from the header, effective GMAC/s, and the ratio of
its median `all` to the anchor's median `all`.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lotterycodec.bench import cpu_model
from lotterycodec.decoder.complexity import macs_per_pixel
from lotterycodec.decoder.config import DECODE_STAGES
from lotterycodec.decoder.format import read_bitstream

STAGES = (*DECODE_STAGES, "all")
OUR_TIME = re.compile(r"^time: " + " ".join(rf"{s} (\S+)" for s in STAGES) + r" \(kernels (\w+)", re.M)
ANCHOR_TIME = re.compile(r"^time:.*?\barm ([\d.e+-]+) ups ([\d.e+-]+) syn ([\d.e+-]+).*?\ball ([\d.e+-]+)", re.M)


def run_measured(argv: list[str]) -> tuple[str, float, int]:
    """Runs a process under /usr/bin/time; returns its output, wall seconds and max RSS in bytes.
    (A forking parent's own rusage would count the interpreter's pre-exec copy.)"""
    with tempfile.NamedTemporaryFile("r") as rss_file:
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-o", rss_file.name, "-f", "%M", *argv],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stdout.strip()[:300]}")
        return proc.stdout, wall, int(rss_file.read().split()[-1]) * 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--exe", required=True, help="the built lotterycodec-dec")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--kernels", default="auto", help="comma list of kernel tables: auto, avx512, avx2, neon, scalar")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--anchor", help="anchor decoder command printing `time: ... all X`")
    p.add_argument("--json", help="write the report here (else stdout)")
    p.add_argument("--table", help="write a markdown table here")
    p.add_argument("--plot", help="write a PNG of the per-stage times here")
    args = p.parse_args(argv)

    configs = []
    for f in args.files:
        data = Path(f).read_bytes()
        header = read_bitstream(data)
        cfg, width, height = header.cfg, header.width, header.height
        macs = macs_per_pixel(cfg, height, width)
        for kernels in args.kernels.split(","):
            for threads in (int(t) for t in args.threads.split(",")):
                configs.append({"file": f, "width": width, "height": height, "bpp": 8 * len(data) / (width * height),
                                "macs_per_pixel": macs["total"], "kept_ratio": cfg.kept_weights / cfg.synth_weight_count,
                                "arm": f"{cfg.arm_context}/{cfg.arm_width}x{cfg.arm_layers}",
                                "threads": threads, "kernels_flag": kernels, "runs": []})
    anchor_runs = []
    out_ppm = Path(tempfile.mkdtemp()) / "out.ppm"
    for rep in range(args.warmup + args.repeat):
        if args.anchor:
            output, wall, rss = run_measured(shlex.split(args.anchor))
            m = ANCHOR_TIME.search(output)
            if rep >= args.warmup:
                anchor_runs.append({"arm": float(m[1]), "ups": float(m[2]), "syn": float(m[3]), "all": float(m[4]),
                                    "max_rss": rss} if m else {"all": wall, "max_rss": rss})
        for c in configs:
            cmd = [args.exe, c["file"], str(out_ppm), "--time", "--threads", str(c["threads"])]
            cmd += ["--kernels", c["kernels_flag"]]
            output, _, rss = run_measured(cmd)
            m = OUR_TIME.search(output)
            if m is None:
                raise RuntimeError(f"no time line from {shlex.join(cmd)}: {output[:200]}")
            c["kernels"] = m[7]
            if rep >= args.warmup:
                c["runs"].append({**{s: float(m[i + 1]) for i, s in enumerate(STAGES)}, "max_rss": rss})

    report = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": shlex.join(sys.argv),
              "repeat": args.repeat, "warmup": args.warmup, "anchor": None, "rows": []}
    if anchor_runs:
        report["anchor"] = {"command": args.anchor, **{k: statistics.median(r[k] for r in anchor_runs)
                                                       for k in anchor_runs[0]}}
    for c in configs:
        runs = c.pop("runs")
        med = {s: statistics.median(r[s] for r in runs) for s in (*STAGES, "max_rss")}
        row = {**c, **{f"{s}_ms": 1e3 * med[s] for s in STAGES}, "max_rss_mb": med["max_rss"] / 2**20,
               "min_all_ms": 1e3 * min(r["all"] for r in runs), "max_all_ms": 1e3 * max(r["all"] for r in runs),
               "gmac_per_s": c["macs_per_pixel"] * c["width"] * c["height"] / med["all"] / 1e9}
        if report["anchor"]:
            row["ratio_vs_anchor"] = med["all"] / report["anchor"]["all"]
        report["rows"].append(row)

    text = json.dumps(report, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)
    if args.table:
        Path(args.table).write_text(markdown_table(report))
    if args.plot:
        plot(report, args.plot)
    return 0


def markdown_table(report: dict) -> str:
    lines = ["| file | bpp | MACs/px | ARM | kept | kernels | threads | entropy | upsampling | modulation | synthesis | all (ms) | "
             "GMAC/s | max RSS (MB) | × anchor |", "|" + "---|" * 15]
    for r in report["rows"]:
        ratio = f"{r['ratio_vs_anchor']:.2f}" if "ratio_vs_anchor" in r else ""
        lines.append(f"| {Path(r['file']).name} | {r['bpp']:.3f} | {r['macs_per_pixel']:.0f} | {r['arm']} | "
                     f"{r['kept_ratio']:.2f} | {r['kernels']} | {r['threads']} | {r['entropy_ms']:.1f} | "
                     f"{r['upsampling_ms']:.1f} | {r['modulation_ms']:.1f} | {r['synthesis_ms']:.1f} | {r['all_ms']:.1f} | "
                     f"{r['gmac_per_s']:.1f} | {r['max_rss_mb']:.1f} | {ratio} |")
    a = report["anchor"]
    if a:
        stages = " ".join(f"{k} {1e3 * a[k]:.1f}" for k in ("arm", "ups", "syn") if k in a)
        lines.append(f"\nAnchor `{a['command']}`: all {1e3 * a['all']:.1f} ms ({stages}), "
                     f"max RSS {a['max_rss'] / 2**20:.1f} MB; medians of {report['repeat']} runs in the same run.")
    lines.append(f"\nCPU: {report['cpu']}. Command: `{report['command']}`")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = []
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(report["rows"]) + 2))
    rows = report["rows"]
    for i, r in enumerate(rows):
        labels.append(f"{Path(r['file']).stem} {r['kernels']} t{r['threads']}")
        left = 0.0
        for stage, color in zip(DECODE_STAGES, plt.cm.tab10.colors):
            ax.barh(i, r[f"{stage}_ms"], left=left, color=color, label=stage if i == 0 else None)
            left += r[f"{stage}_ms"]
    if report["anchor"]:
        ax.axvline(1e3 * report["anchor"]["all"], color="k", ls="--", label="anchor all")
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel("ms (median)")
    ax.set_title(f"lotterycodec-dec per-stage decode time — {report['cpu']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
