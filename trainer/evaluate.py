"""`lotterycodec eval`: rate-distortion of every image x lambda against classical codecs, same run.

Our points are real files: each image is encoded at each lambda (resumable: a finished file and
its record are kept and skipped when the settings match), the written file is decoded, and
bpp = 8 x file bytes / pixels, PSNR-RGB and MS-SSIM on the decoded 8-bit image. The classical
codecs (Pillow: JPEG, WebP, native AVIF; pillow-jxl-plugin: JPEG XL) encode the same pixels
(metadata never reaches them: images are rebuilt from arrays) at fixed quality grids. A curve
point is the mean of per-image bpp and the mean of per-image PSNR (and MS-SSIM) at one
lambda or quality. BD-rate: PCHIP of log-rate over PSNR, on the overlapping PSNR range only.

Outputs in OUT: files/ (our bitstreams and their records), per_image.tsv, curves.tsv,
compressai/<curve>.json (CompressAI's format), bd_rate.md / .json, rd.png, summary.json.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, features

from ..decoder.backends import get_backend
from ..decoder.imageio import center_crop, load_image, psnr

PUBLISHED_KODAK = Path(__file__).parent / "data" / "published_kodak.tsv"
OUR_NAME = "lotterycodec"


def _jpeg(image: Image.Image, q: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=q, subsampling="4:2:0", optimize=True, progressive=True)
    return buf.getvalue()


def _webp(image: Image.Image, q: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "WEBP", quality=q, method=6, lossless=False)
    return buf.getvalue()


def _avif(image: Image.Image, q: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "AVIF", quality=q, speed=1, subsampling="4:4:4", range="full", codec="aom",
               advanced={"tune": "psnr"}, max_threads=1)
    return buf.getvalue()


def _jxl(image: Image.Image, q: int) -> bytes:
    import pillow_jxl  # noqa: F401  (registers the JXL plugin)
    buf = io.BytesIO()
    image.save(buf, "JXL", quality=q, effort=9, lossless=False, num_threads=1)
    return buf.getvalue()


# name -> (encoder, quality grid, settings as recorded). Settings from ../shared/research/rd.md:
# AVIF 4:4:4 with tune=psnr (the still-image default tune costs +2.8 %), speed 1 (speed 0: 1 % better,
# 2-3.5x slower); JPEG 4:2:0 (4:4:4 is 5.9 % worse on PSNR); WebP method 6; JXL effort 9.
CLASSICAL: dict[str, tuple[Callable[[Image.Image, int], bytes], list[int], str]] = {
    "jpeg": (_jpeg, [5, 8, 10, 15, 20, 25, 30, 40, 50, 60, 70, 75, 80, 85, 90, 93, 95, 97],
             "Pillow JPEG quality=q subsampling=4:2:0 optimize progressive"),
    "webp": (_webp, [0, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 93, 95],
             "Pillow WEBP quality=q method=6 lossy"),
    "avif": (_avif, [6, 10, 15, 20, 26, 32, 38, 44, 50, 56, 62, 68, 74, 80, 86],
             "Pillow AVIF quality=q speed=1 subsampling=4:4:4 range=full codec=aom tune=psnr max_threads=1"),
    "jxl": (_jxl, [0, 5, 10, 20, 30, 40, 50, 60, 70, 78, 85, 90, 93, 95],
            "pillow-jxl-plugin quality=q effort=9 lossy num_threads=1"),
}


@dataclass
class Row:
    codec: str
    point: str          # lambda (ours) or quality (classical)
    image: str
    width: int
    height: int
    bytes: int
    bpp: float
    psnr_rgb: float
    ms_ssim_rgb: float | None
    encoding_time: float
    decoding_time: float


def ms_ssim_rgb(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (5 scales, 11x11 Gaussian window, data range 255) of two RGB uint8 images; None when
    the image is too small for five scales (a side of 161 pixels or less) or pytorch-msssim is missing."""
    if min(a.shape[:2]) <= 160:
        return None
    try:
        import torch
        from pytorch_msssim import ms_ssim
    except ImportError:
        return None
    x, y = (torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1))).float()[None] for v in (a, b))
    return float(ms_ssim(x, y, data_range=255.0, size_average=True))


def measure(codec: str, point: str, name: str, image: np.ndarray, data: bytes, decoded: np.ndarray,
            t_enc: float, t_dec: float) -> Row:
    h, w = image.shape[:2]
    return Row(codec, point, name, w, h, len(data), 8 * len(data) / (h * w), psnr(decoded, image),
               ms_ssim_rgb(decoded, image), t_enc, t_dec)


def classical_rows(codec: str, name: str, image: np.ndarray) -> list[Row]:
    encoder, grid, _ = CLASSICAL[codec]
    pil = Image.fromarray(image)  # from an array: no ICC profile or other metadata to pay for
    rows = []
    for q in grid:
        t0 = time.perf_counter()
        data = encoder(pil, q)
        t1 = time.perf_counter()
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        rows.append(measure(codec, str(q), name, image, data, decoded, t1 - t0, time.perf_counter() - t1))
    return rows


def _paths(files: Path, name: str, lmbda: float) -> tuple[Path, Path]:
    path = files / f"{name}_lambda{lmbda:g}.lotc"
    return path, path.with_suffix(".json")


def _finished(files: Path, name: str, lmbda: float, settings: dict) -> dict | None:
    path, record_path = _paths(files, name, lmbda)
    record = json.loads(record_path.read_text()) if record_path.exists() and path.exists() else None
    return record if record is not None and record.get("settings") == settings else None


def missing_jobs(name: str, image: np.ndarray, lmbdas: list[float], files: Path, settings_for, batch: int,
                 device: str, threads: int | None = None) -> list:
    """The lambdas of one image without a finished file, ``batch`` of one architecture per job (one
    batched training); settings_for(lambda): the settings its record must match."""
    from .jobs import EncodeJob
    groups: dict[str, list[float]] = {}
    for lm in lmbdas:
        settings = settings_for(lm)
        if _finished(files, name, lm, settings) is None:
            groups.setdefault(json.dumps(settings, sort_keys=True), []).append(lm)
    return [EncodeJob(name, image, missing[i:i + batch], settings_for(missing[0]), device, threads)
            for missing in groups.values() for i in range(0, len(missing), batch)]


def store(files: Path, settings_for, items: list) -> None:
    """Writes finished encodes; a file's record is written last and marks it finished."""
    for item in items:
        path, record_path = _paths(files, item.name, item.lmbda)
        path.write_bytes(item.data)
        record = {"settings": settings_for(item.lmbda), "encoding_time": item.encoding_time, "summary": item.summary}
        record_path.write_text(json.dumps(record, indent=1))


def our_row(name: str, image: np.ndarray, lmbda: float, files: Path, settings: dict) -> Row:
    """Decodes the finished file of one image at one lambda and measures it."""
    path, _ = _paths(files, name, lmbda)
    record = _finished(files, name, lmbda, settings)
    data = path.read_bytes()
    t0 = time.perf_counter()
    decoded = get_backend("auto")(data).image
    return measure(OUR_NAME, f"{lmbda:g}", name, image, data, decoded, record["encoding_time"],
                   time.perf_counter() - t0)


def curves_of(rows: list[Row]) -> dict[str, list[dict]]:
    """Per codec, per point: mean of per-image bpp, PSNR, MS-SSIM and times (points sorted by bpp)."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.codec, r.point), []).append(r)
    curves: dict[str, list[dict]] = {}
    for (codec, point), rs in groups.items():
        ssim = [r.ms_ssim_rgb for r in rs]
        curves.setdefault(codec, []).append({
            "point": point, "n": len(rs), "bpp": float(np.mean([r.bpp for r in rs])),
            "psnr": float(np.mean([r.psnr_rgb for r in rs])),
            "ms_ssim": float(np.mean(ssim)) if None not in ssim else None,
            "encoding_time": float(np.mean([r.encoding_time for r in rs])),
            "decoding_time": float(np.mean([r.decoding_time for r in rs]))})
    for pts in curves.values():
        pts.sort(key=lambda p: p["bpp"])
    return curves


def published_curves() -> dict[str, list[dict]]:
    curves: dict[str, list[dict]] = {}
    lines = [ln for ln in PUBLISHED_KODAK.read_text().splitlines() if ln and not ln.startswith("#")]
    for rec in csv.DictReader(lines, delimiter="\t"):
        curves.setdefault(f"published:{rec['curve']}", []).append(
            {"point": rec["point"], "bpp": float(rec["bpp"]), "psnr": float(rec["psnr"])})
    return curves


def bd_rate(anchor: list[dict], test: list[dict]) -> tuple[float, float, float] | None:
    """BD-rate (%) of test against anchor: PCHIP of log-rate over PSNR, integrated over the
    overlapping PSNR range. Each curve keeps its points inside the overlap plus the nearest one
    outside on each side, so the interpolant spans it; non-monotone points are dropped.
    Returns (percent, low dB, high dB), or None without an overlap."""
    import bjontegaard

    def monotone(curve):
        out = []
        for p in sorted(curve, key=lambda p: p["bpp"]):
            if not out or p["psnr"] > out[-1]["psnr"]:
                out.append(p)
        return out

    a, t = monotone(anchor), monotone(test)
    if len(a) < 2 or len(t) < 2:
        return None
    lo, hi = max(a[0]["psnr"], t[0]["psnr"]), min(a[-1]["psnr"], t[-1]["psnr"])
    if hi <= lo:
        return None

    def span(curve):
        inside = [i for i, p in enumerate(curve) if lo <= p["psnr"] <= hi]
        first, last = max(min(inside, default=0) - 1, 0), min(max(inside, default=0) + 1, len(curve) - 1)
        return curve[first:last + 1]

    a, t = span(a), span(t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(bjontegaard.bd_rate([p["bpp"] for p in a], [p["psnr"] for p in a], [p["bpp"] for p in t],
                                          [p["psnr"] for p in t], method="pchip", require_matching_points=False,
                                          min_overlap=0.0))
    return (value, lo, hi) if np.isfinite(value) else None


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


def run(dataset: str, lmbdas: list[float], out: str, preset: str = "cpu", steps: int | None = None,
        crop: int = 0, images: list[str] | None = None, codecs: list[str] | None = None,
        kept_ratio: float | None = None, arch: dict | None = None, batch: int = 8, device: str = "cpu",
        cluster: str | None = None, workers: int = 1, retries: int = 2, progress: bool = True, log=print,
        threads: int | None = None, seeds: int | None = None) -> dict:
    """cluster: a Dask scheduler address (jobs run there); else ``workers`` local processes.
    threads: torch threads per encode job (None: measured in the job; a local pool's workers get
    an equal share of the cores, a Dask worker its own thread count)."""
    from tqdm import tqdm

    from .jobs import run_jobs

    from .presets import get_preset

    kept_ratio = get_preset(preset).kept_ratio if kept_ratio is None else kept_ratio  # recorded as a number
    codecs = list(CLASSICAL) if codecs is None else codecs
    unknown = set(codecs) - set(CLASSICAL)
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(sorted(unknown))}; known: {', '.join(CLASSICAL)}")
    paths = sorted(Path(dataset).glob("*.png"))
    if images:
        wanted = set(images)
        paths = [p for p in paths if p.stem in wanted]
        missing = wanted - {p.stem for p in paths}
        if missing:
            raise ValueError(f"not in {dataset}: {', '.join(sorted(missing))}")
    if not paths:
        raise ValueError(f"no PNG images in {dataset}")
    out_dir = Path(out)
    files = out_dir / "files"
    files.mkdir(parents=True, exist_ok=True)
    from .presets import get_preset, item_arch, item_steps
    # Everything an encode depends on, the preset's definition included: a finished file is reused
    # only when this matches its record. "arch" and "steps" are the item's own (its lambda may select
    # the preset's low-rate ones), so the low-rate rule itself is left out of the recorded definition.
    chosen = get_preset(preset)
    settings = {"preset": preset, "preset_definition": {k: v for k, v in dataclasses.asdict(chosen).items()
                                                        if not k.startswith("low_rate")},
                "steps": steps, "crop": crop, "kept_ratio": kept_ratio, "arch": arch or {},
                "seeds": chosen.seeds if seeds is None else seeds}
    settings = json.loads(json.dumps(settings))  # as a record reads back (tuples become lists)

    def settings_for(lmbda: float) -> dict:
        return {**settings, "arch": item_arch(chosen, lmbda, arch), "steps": item_steps(chosen, lmbda, steps)}
    loaded = {}
    for path in paths:
        image = load_image(path)
        loaded[path.stem] = center_crop(image, crop) if crop else image
    jobs = [job for name, image in loaded.items()
            for job in missing_jobs(name, image, lmbdas, files, settings_for, batch, device, threads)]
    resources = {"GPU": 1} if device == "cuda" else None  # a cluster's GPU workers declare --resources GPU=1
    run_jobs(jobs, lambda items: store(files, settings_for, items), cluster=cluster, workers=workers, retries=retries,
             resources=resources, progress=progress)
    rows: list[Row] = []
    bar = tqdm(total=len(loaded) * len(lmbdas), desc="measure", unit="file", disable=not progress)
    for name, image in loaded.items():
        for lmbda in lmbdas:
            rows.append(our_row(name, image, lmbda, files, settings_for(lmbda)))
            bar.set_postfix(image=name, lmbda=f"{lmbda:g}", bpp=f"{rows[-1].bpp:.3f}",
                            psnr=f"{rows[-1].psnr_rgb:.2f}")
            bar.update()
        for codec in codecs:
            rows.extend(classical_rows(codec, name, image))
    bar.close()

    curves = curves_of(rows)
    ours = f"{OUR_NAME}-{preset}"
    curves = {(ours if k == OUR_NAME else k): v for k, v in curves.items()}
    compared = dict(curves)
    if not crop:  # published curves are whole-image Kodak results: never compared with crops
        compared.update(published_curves())
    bd = {test: {anchor: bd_rate(compared[anchor], compared[test]) for anchor in compared if anchor != test}
          for test in compared}
    report = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "dataset": str(dataset),
              "images": [p.stem for p in paths], "lambdas": lmbdas, "settings": settings,
              "engine": f"dask cluster {cluster}" if cluster else f"local, {workers} process(es)", "batch": batch,
              "classical": {c: CLASSICAL[c][2] for c in codecs}, "versions": versions(),
              "aggregation": "per point: mean of per-image bpp and mean of per-image PSNR-RGB / MS-SSIM",
              "bd_rate_method": "PCHIP of log10 rate over PSNR on the overlapping PSNR range (bjontegaard)",
              "curves": curves, "bd_rate": bd}
    write_outputs(out_dir, rows, report, ours)
    return report


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
    if not report["settings"]["crop"]:
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
