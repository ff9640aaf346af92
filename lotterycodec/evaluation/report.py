"""What an eval writes: per_image.tsv, curves.tsv, CompressAI JSON, bd_rate.md/.json, rd.png,
and the library versions it records."""
from __future__ import annotations

import csv
import json
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from PIL import features

from .curves import published_curves
from .metrics import Row


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "pillow": metadata.version("pillow"),
           "libjpeg": str(features.version("jpg")), "libwebp": str(features.version("webp")),
           "libavif": str(features.version("avif"))}
    for pkg in ("pillow-jxl-plugin", "pytorch-msssim", "bjontegaard", "torch", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_per_image(out_dir: Path, rows: list[Row]) -> None:
    """per_image.tsv: one row per (codec, point, image)."""
    with open(out_dir / "per_image.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(list(asdict(rows[0])))
        for r in rows:
            w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in asdict(r).values()])


def write_outputs(out_dir: Path, rows: list[Row], report: dict, ours: str) -> None:
    write_per_image(out_dir, rows)
    with open(out_dir / "curves.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["curve", "point", "n", "bpp", "psnr_rgb", "ms_ssim_rgb", "encoding_time", "decoding_time"])
        for name, pts in report["curves"].items():
            for p in pts:
                w.writerow([name, p["point"], p["n"], f"{p['bpp']:.6f}", f"{p['psnr']:.4f}",
                            "" if p["ms_ssim"] is None else f"{p['ms_ssim']:.6f}",
                            f"{p['encoding_time']:.4f}", f"{p['decoding_time']:.4f}"])
    cai = out_dir / "compressai"
    cai.mkdir(exist_ok=True)
    for name, pts in report["curves"].items():
        desc = (f"{name} on {len(report['images'])} images of {report['dataset']}"
                + (f", {report['settings']['crop']}x{report['settings']['crop']} centre crops" if report["settings"]["crop"] else "")
                + "; bpp from file sizes; mean of per-image values per point")
        results = {"psnr-rgb": [p["psnr"] for p in pts], "ms-ssim-rgb": [p["ms_ssim"] for p in pts],
                   "bpp": [p["bpp"] for p in pts], "encoding_time": [p["encoding_time"] for p in pts],
                   "decoding_time": [p["decoding_time"] for p in pts]}
        (cai / f"{name}.json").write_text(json.dumps({"name": name, "description": desc, "results": results}, indent=1))
    (out_dir / "summary.json").write_text(json.dumps(report, indent=1))
    (out_dir / "bd_rate.json").write_text(json.dumps(report["bd_rate"], indent=1))
    names = list(report["bd_rate"])
    lines = ["BD-rate (%) of the row's curve against the column's (negative: fewer bits at equal PSNR); "
             "PCHIP over the overlapping PSNR range (dB in parentheses).", "",
             "| test \\ anchor | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for test in names:
        cells = []
        for anchor in names:
            v = report["bd_rate"][test].get(anchor)
            cells.append("—" if anchor == test else ("n/a" if v is None else f"{v[0]:+.1f} ({v[1]:.1f}–{v[2]:.1f})"))
        lines.append(f"| {test} | " + " | ".join(cells) + " |")
    (out_dir / "bd_rate.md").write_text("\n".join(lines) + "\n")
    plot(report, out_dir / "rd.png", ours)


def plot(report: dict, path: Path, ours: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, pts in report["curves"].items():
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "o-" if name == ours else ".-",
                lw=2.5 if name == ours else 1, label=name)
    if report["published_curves"].startswith("compared"):
        for name, pts in published_curves().items():
            ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "x--", lw=1, label=f"{name} (published)")
    ours_pts = report["curves"].get(ours, [])
    if ours_pts:
        ax.set_xlim(0, 1.6 * max(p["bpp"] for p in ours_pts))
        ax.set_ylim(min(p["psnr"] for p in ours_pts) - 3, max(p["psnr"] for p in ours_pts) + 3)
    crop = report["settings"]["crop"]
    ax.set_title(f"{len(report['images'])} images" + (f", {crop}x{crop} crops" if crop else "")
                 + " — mean bpp / mean PSNR-RGB per point")
    ax.set_xlabel("bpp (file size)")
    ax.set_ylabel("PSNR-RGB (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
