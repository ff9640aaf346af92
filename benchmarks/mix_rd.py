"""BD-rates of a curve assembled from two `lotterycodec eval` runs on the same images: per image,
the points of run A at some lambdas and of run B at the others (e.g. a small architecture for the
low rates, the preset's for the high ones), against every other curve of run A.

    python benchmarks/mix_rd.py --base results/eval_crop256_cpu --base-lmbda 1e-3,3e-4 \
        --other results/eval_crop256_cpu_small_arch --other-lmbda 1e-2,4e-3 \
        --name lotterycodec-cpu+small-arch-low-rates --out results/eval_crop256_cpu_small_arch/mixed.json

Reads each run's per_image.tsv (decoded-file bpp and PSNR-RGB); only images present in both runs
count, and the BD-rates of run A's own curve are recomputed on those images for comparison.
"""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import replace
from pathlib import Path

from lotterycodec.evaluation.curves import OUR_NAME, bd_rate, curves_of
from lotterycodec.evaluation.metrics import Row


def read_rows(run: Path) -> list[Row]:
    with open(run / "per_image.tsv", newline="") as f:
        return [Row(r["codec"], r["point"], r["image"], int(r["width"]), int(r["height"]), int(r["bytes"]),
                    float(r["bpp"]), float(r["psnr_rgb"]),
                    float(r["ms_ssim_rgb"]) if r["ms_ssim_rgb"] not in ("", "None") else None,
                    float(r["encoding_time"]), float(r["decoding_time"]))
                for r in csv.DictReader(f, delimiter="\t")]


def percent(anchor: list[dict], test: list[dict]) -> float | None:
    bd = bd_rate(anchor, test)
    return None if bd is None else round(bd[0], 2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="eval output folder (run A, with the classical codecs)")
    p.add_argument("--base-lmbda", required=True, help="lambdas taken from run A")
    p.add_argument("--other", required=True, help="eval output folder (run B)")
    p.add_argument("--other-lmbda", required=True, help="lambdas taken from run B")
    p.add_argument("--name", required=True, help="name of the assembled curve")
    p.add_argument("--out", required=True, help="JSON report")
    args = p.parse_args(argv)
    base, other = read_rows(Path(args.base)), read_rows(Path(args.other))
    points = lambda spec: {f"{float(x):g}" for x in spec.split(",")}  # noqa: E731
    images = {r.image for r in base} & {r.image for r in other if r.codec == OUR_NAME}
    base = [r for r in base if r.image in images]
    mixed = [replace(r, codec=args.name) for r in
             [r for r in base if r.codec == OUR_NAME and r.point in points(args.base_lmbda)]
             + [r for r in other if r.codec == OUR_NAME and r.image in images and r.point in points(args.other_lmbda)]]
    missing = len(images) * (len(points(args.base_lmbda)) + len(points(args.other_lmbda))) - len(mixed)
    if missing:
        raise SystemExit(f"{missing} (image, lambda) points of the assembled curve are missing")
    curves = curves_of(base + mixed)
    report = {"images": sorted(images), "curves": curves, "bd_rate_percent": {}}
    for test in (args.name, OUR_NAME):
        for anchor in curves:
            if anchor in (args.name, OUR_NAME):
                continue
            report["bd_rate_percent"][f"{test} vs {anchor}"] = percent(curves[anchor], curves[test])
    per_image = {}
    for image in sorted(images):
        rows = [r for r in base if r.image == image]
        mine = [r for r in mixed if r.image == image]
        c = curves_of(rows + mine)
        per_image[image] = {test: percent(c["webp"], c[test]) for test in (OUR_NAME, args.name)}
    report["bd_rate_vs_webp_per_image"] = per_image
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("bd_rate_percent", "bd_rate_vs_webp_per_image")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
