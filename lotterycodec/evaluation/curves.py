"""Curves (the mean of per-image bpp and PSNR per point), the published Kodak curves, BD-rate."""
from __future__ import annotations

import csv
import hashlib
import warnings
from pathlib import Path

import numpy as np

from .metrics import Row


PUBLISHED_KODAK = Path(__file__).with_name("published_kodak.tsv")
KODAK_PIXELS = Path(__file__).with_name("kodak_sha256.tsv")
OUR_NAME = "lotterycodec"


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


def kodak_mismatch(images: dict[str, np.ndarray]) -> str | None:
    """None when ``images`` are exactly the 24 Kodak images (by their pixels' SHA-256: the
    published curves are means over those and nothing else); else why not, in a few words."""
    lines = [ln for ln in KODAK_PIXELS.read_text().splitlines() if ln and not ln.startswith("#")]
    known = {rec["pixels_sha256"] for rec in csv.DictReader(lines, delimiter="\t")}
    ours = {hashlib.sha256(np.ascontiguousarray(a, np.uint8).tobytes()).hexdigest() for a in images.values()}
    if ours == known:
        return None
    stray = len(ours - known)
    if stray:
        return f"{stray} of the {len(images)} images are not Kodak images"
    return f"{len(known - ours)} of the 24 Kodak images are missing (the published curves average all 24)"


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
