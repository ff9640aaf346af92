"""BD-rates between the lotterycodec curves of two `lotterycodec eval` runs on the same images
(e.g. a longer preset against the 5-minute one, or the dense-synthesis ablation against the
lottery), beside every classical codec of run A, for the mean curves and per image.

    python benchmarks/compare_runs.py results/eval_crop256_cpu_long results/eval_crop256_cpu \
        --name-b lotterycodec-cpu-5min --out results/eval_crop256_cpu_long/vs_cpu_preset.json

Reads each run's per_image.tsv (decoded-file bpp and PSNR-RGB). Only images with lotterycodec
points in both runs count; run A's classical codecs are restricted to them too. Run B's
lotterycodec curve is renamed --name-b; its other curves are ignored.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from lotterycodec.evaluation.curves import OUR_NAME, curves_of
from mix_rd import percent, read_rows


def compare(run_a: Path, run_b: Path, name_b: str) -> dict:
    rows_a, rows_b = read_rows(run_a), read_rows(run_b)
    images = {r.image for r in rows_a if r.codec == OUR_NAME} & {r.image for r in rows_b if r.codec == OUR_NAME}
    if not images:
        raise SystemExit(f"no image has lotterycodec points in both {run_a} and {run_b}")
    rows = ([r for r in rows_a if r.image in images]
            + [replace(r, codec=name_b) for r in rows_b if r.codec == OUR_NAME and r.image in images])
    curves = curves_of(rows)
    ours = (OUR_NAME, name_b)

    def table(curves: dict) -> dict:
        return {f"{test} vs {anchor}": percent(curves[anchor], curves[test])
                for test in ours for anchor in curves if anchor != test}

    return {"images": sorted(images), "curves": curves, "bd_rate_percent": table(curves),
            "bd_rate_percent_per_image": {image: table(curves_of([r for r in rows if r.image == image]))
                                          for image in sorted(images)}}


def markdown(report: dict, name_b: str) -> str:
    anchors = [c for c in report["curves"] if c not in (OUR_NAME, name_b)]
    head = ["curve", *anchors, f"vs {name_b}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v: "—" if v is None else f"{v:+.1f} %"
    subsets = [("mean of " + ", ".join(report["images"]), report["bd_rate_percent"])]
    subsets += list(report["bd_rate_percent_per_image"].items())
    for label, bd in subsets:
        for test in (OUR_NAME, name_b):
            cells = [fmt(bd[f"{test} vs {a}"]) for a in anchors]
            cells.append(fmt(bd[f"{OUR_NAME} vs {name_b}"]) if test == OUR_NAME else "")
            lines.append(f"| {test}, {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_a", type=Path, help="eval output folder whose classical codecs are used")
    p.add_argument("run_b", type=Path, help="eval output folder whose lotterycodec curve is compared")
    p.add_argument("--name-b", required=True, help="name given to run B's lotterycodec curve")
    p.add_argument("--out", type=Path, help="JSON report")
    args = p.parse_args(argv)
    report = compare(args.run_a, args.run_b, args.name_b)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(markdown(report, args.name_b))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
