"""BD-rate against decode time: one point per codec configuration, the chart reviewers asked for
(MACs/pixel is not latency).

y: the configuration's BD-rate against an anchor curve (AVIF by default) from an eval folder
(its summary.json: our crops or whole images, classical codecs and peers measured in one run).
x: its decode time per megapixel on this CPU, on one thread and on every core, timed here on
full-size files of the same configuration given with ``--time CURVE=FILE[:FILE...]`` (a curve may
use several configurations, e.g. the `cpu` preset's low-rate networks: its x is their mean, the
range is recorded). Decode time depends on size, configuration and rate, not on how well a file
was trained, so short real encodes of a 768x512 image serve (benchmarks/make_bench_set.py).
Ours are timed with the C++ backend's own timer (file bytes to image in memory); a peer's with its
decoder's own per-frame timer (Cool-chic's cc_decode.py prints ``time = X seconds``: the
interpreter's start-up excluded), in a subprocess with its thread variables set.

A decoder whose RD is not in the evals (e.g. Cool-chic 4.2's C++ ``ccdec``, whose encoder's budget
is out of reach on a CPU) joins with ``--decoder-only NAME=COMMAND``: the command decodes one
full-size file and writes the image to ``{out}`` (PPM or PNG, read back for its size); it is timed
by its own ``time: ... all X`` line when it prints one (ccdec does), else by wall time, and drawn as
a vertical line at its decode time: where that decoder sits on x, with no RD claimed.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import statistics
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

from ..bench import cpu_model, run_decoder
from ..decoder.complexity import macs_per_pixel
from ..decoder.format import read_bitstream
from .peers import thread_env
from .report import versions

_PEER_TIME = re.compile(r"time\s*=\s*([\d.]+)\s*seconds")
_PEER_MACS = re.compile(r"residue decoder:\s*([\d.]+)\s*MAC\s*/\s*pixel")


def parse_times(specs: list[str]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for spec in specs:
        curve, sep, files = spec.partition("=")
        if not sep or not files:
            raise ValueError(f"--time {spec!r}: give CURVE=FILE[:FILE...]")
        paths = [Path(f) for f in files.split(":")]
        for p in paths:
            if not p.is_file():
                raise ValueError(f"--time {spec!r}: no file {p}")
        out[curve] = paths
    return out


def parse_decoders(specs: list[str], macs: list[str]) -> dict[str, dict]:
    """--decoder-only NAME=COMMAND (with {out}) and --decoder-macs NAME=N -> {NAME: {command, macs}}."""
    out: dict[str, dict] = {}
    for spec in specs:
        name, sep, command = spec.partition("=")
        if not sep or not command.strip() or "{out}" not in command:
            raise ValueError(f"--decoder-only {spec!r}: give NAME=COMMAND, the command writing the image to {{out}}")
        out[name] = {"command": command, "macs": None}
    for spec in macs:
        name, sep, value = spec.partition("=")
        if name not in out:
            raise ValueError(f"--decoder-macs {spec!r}: no --decoder-only {name!r}")
        try:
            out[name]["macs"] = float(value)
        except ValueError:
            raise ValueError(f"--decoder-macs {spec!r}: give NAME=MACS_PER_PIXEL") from None
    return out


def _decoder_only(command: str, threads: int, repeat: int) -> dict:
    """Times a decoder command line writing to {out} (bench.run_decoder: its own timer or wall time)."""
    from PIL import Image
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "decoded.ppm"
        argv = [a.replace("{out}", str(out)) for a in shlex.split(command)]
        runs = [run_decoder(argv, thread_env(threads)) for _ in range(repeat + 1)][1:]  # the first warms the cache
        if not out.is_file():
            raise RuntimeError(f"decoder {argv[0]} wrote no image to {{out}}")
        with Image.open(out) as im:
            pixels = im.width * im.height
    timer = "its own timer (all)" if runs[0]["source"] == "its own timer" else runs[0]["source"]
    return {"seconds": statistics.median(r["all"] for r in runs), "pixels": pixels, "timer": timer}


def _ours(path: Path, threads: int, repeat: int) -> dict:
    from ..decoder.backends import get_backend
    decode, data = get_backend("cpu"), path.read_bytes()
    decode(data, threads=threads)  # warm-up: tables, pages
    seconds = [decode(data, threads=threads).times["all"] for _ in range(repeat)]  # its own timer
    bs = read_bitstream(data)
    return {"seconds": statistics.median(seconds), "pixels": bs.width * bs.height,
            "macs_per_pixel": macs_per_pixel(bs.cfg, bs.height, bs.width)["total"]}


def _peer(path: Path, record: dict, threads: int, repeat: int) -> dict:
    from PIL import Image
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "decoded.png"
        for _ in range(repeat + 1):  # the first run warms the file cache
            done = subprocess.run([record["python"], str(Path(record["directory"]) / "cc_decode.py"),
                                   "--input", str(path), "--output", str(out)],
                                  capture_output=True, text=True, env=thread_env(threads), timeout=1800)
            found = _PEER_TIME.findall(done.stdout + done.stderr)
            if done.returncode or not found:
                raise RuntimeError(f"decoding {path} with {record['directory']}/cc_decode.py failed: "
                                   f"{(done.stderr or done.stdout).strip()[-300:]}")
            seconds.append(sum(float(s) for s in found))
        with Image.open(out) as im:
            pixels = im.width * im.height
    return {"seconds": statistics.median(seconds[1:]), "pixels": pixels}


def _peer_macs(eval_dir: Path, curve: str) -> float | None:
    """The peer's MACs/pixel as its own encoder logs print them (mean over the eval's items)."""
    found = [float(m) for log in (eval_dir / "peers" / curve).glob("*_encode.log")
             for m in _PEER_MACS.findall(log.read_text(errors="replace"))]
    return statistics.mean(found) if found else None


def chart(eval_dirs: list[str], times: dict[str, list[Path]], anchor: str = "avif", threads: list[int] | None = None,
          repeat: int = 5, log=print, decoders: dict[str, dict] | None = None) -> dict:
    """The chart's points (one per curve with timing files, and one per decoder-only command) as a
    JSON-ready dict."""
    threads = threads or sorted({1, len(os.sched_getaffinity(0))})
    points, seen = [], set()
    for folder in map(Path, eval_dirs):
        summary = json.loads((folder / "summary.json").read_text())
        classical = set(summary.get("classical", {}))
        peers = summary.get("peers", {})
        for curve, anchors in summary["bd_rate"].items():
            if curve in classical or curve.startswith("published:") or curve in seen:
                continue
            if anchor not in anchors:
                raise ValueError(f"{folder}: no {anchor!r} curve to measure BD-rates against")
            seen.add(curve)
            bd = anchors[anchor]
            point = {"curve": curve, "eval": str(folder), "images": summary["images"],
                     "bd_rate_vs_anchor": None if bd is None else bd[0],
                     "psnr_range": None if bd is None else bd[1:], "timing_files": [], "decode_ms_per_mpixel": {}}
            if curve not in times:
                log(f"chart: {curve}: no --time files, left off the chart")
                points.append(point)
                continue
            point["timing_files"] = [str(p) for p in times[curve]]
            for n in threads:
                rows = []
                for path in times[curve]:
                    log(f"chart: timing {curve} on {path.name}, {n} thread(s)")
                    rows.append(_peer(path, peers[curve], n, repeat) if curve in peers else _ours(path, n, repeat))
                per_mp = [1e9 * r["seconds"] / r["pixels"] for r in rows]  # ms per megapixel
                point["decode_ms_per_mpixel"][str(n)] = {"mean": statistics.mean(per_mp), "min": min(per_mp),
                                                         "max": max(per_mp)}
            if curve in peers:
                point["macs_per_pixel"] = _peer_macs(folder, curve)
                point["decoder"] = f"{peers[curve]['kind']} {peers[curve]['commit'][:12]} (its Python decoder)"
            else:
                macs = [r["macs_per_pixel"] for r in rows]
                point["macs_per_pixel"] = statistics.mean(macs)
                point["decoder"] = "lotterycodec C++ (cpu backend)"
            points.append(point)
    for name, spec in (decoders or {}).items():
        point = {"curve": name, "eval": None, "bd_rate_vs_anchor": None, "rd": "not in these evals",
                 "decoder": spec["command"], "macs_per_pixel": spec["macs"], "decode_ms_per_mpixel": {}}
        for n in threads:
            log(f"chart: timing {name} (decode only), {n} thread(s)")
            r = _decoder_only(spec["command"], n, repeat)
            ms = 1e9 * r["seconds"] / r["pixels"]
            point["decode_ms_per_mpixel"][str(n)] = {"mean": ms, "min": ms, "max": ms}
            point["timer"], point["pixels"] = r["timer"], r["pixels"]
        points.append(point)
    return {"anchor": anchor, "threads": threads, "repeat": repeat, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cpu": cpu_model(), "versions": versions(), "points": points,
            "x": "decode time per megapixel (median of repeat runs; mean over the curve's configurations)",
            "y": f"BD-rate against {anchor} on the eval's images (PCHIP, overlapping PSNR range)"}


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5))
    markers = {n: m for n, m in zip(report["threads"], "os^D")}
    for i, p in enumerate(q for q in report["points"] if q["decode_ms_per_mpixel"] and q["bd_rate_vs_anchor"] is not None):
        color = f"C{i}"
        xs = [p["decode_ms_per_mpixel"][str(n)]["mean"] for n in report["threads"]]
        y = p["bd_rate_vs_anchor"]
        ax.plot(xs, [y] * len(xs), "-", color=color, alpha=0.5)
        for n, x in zip(report["threads"], xs):
            ax.plot(x, y, markers[n], color=color, label=f"{p['curve']} ({n} thread{'s' if n > 1 else ''})")
        macs = p.get("macs_per_pixel")
        name = textwrap.fill(p["curve"], 24)  # long names (a preset and its changed fields) wrap at hyphens
        ax.annotate(f"{name}\n{macs:.0f} MACs/px" if macs else name, (xs[0], y),
                    textcoords="offset points", xytext=(6, 6), fontsize=8)
    for i, p in enumerate(q for q in report["points"] if q["decode_ms_per_mpixel"] and q["bd_rate_vs_anchor"] is None):
        x = p["decode_ms_per_mpixel"][str(report["threads"][0])]["mean"]
        macs = f", {p['macs_per_pixel']:.0f} MACs/px" if p.get("macs_per_pixel") else ""
        # in the legend only: such decoders often sit close together, where rotated labels collide
        ax.axvline(x, color=f"C{7 + i}", ls=("--", ":", "-.")[i % 3], lw=1.2,
                   label=f"{p['curve']}{macs} ({report['threads'][0]} thread): decode time only, RD not run")
    ax.set_xscale("log")
    ax.set_xlabel("decode time per megapixel (ms, log scale), this CPU")
    ax.set_ylabel(f"BD-rate vs {report['anchor']} (%)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.margins(x=0.15, y=0.2)  # room for the labels
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: the points keep the room
    ax.set_title("BD-rate against decode time (lower left is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(report: dict, out: str) -> Path:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chart.json").write_text(json.dumps(report, indent=1))
    plot(report, folder / "chart.png")
    return folder
