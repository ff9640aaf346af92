"""BD-rates between the lotterycodec curves of two `lotterycodec eval` runs on the same images
(e.g. a longer preset against the 5-minute one, or the dense-synthesis ablation against the
lottery), beside every classical codec of run A, for the mean curves and per image.

    python benchmarks/compare_runs.py results/eval_crop256_cpu_long results/eval_crop256_cpu \
        --name-b lotterycodec-cpu-5min --out results/eval_crop256_cpu_long/vs_cpu_preset.json

Reads each run's per_image.tsv (decoded-file bpp and PSNR-RGB). Only images with lotterycodec
points in both runs count; run A's classical codecs are restricted to them too. Run B's
lotterycodec curve is renamed --name-b; its other curves are ignored.

Where both runs encoded the same (image, lambda) items, the report also gives each item's change of
the fixed-lambda cost J = MSE + lambda * bpp (MSE of [0, 1] RGB, as training minimises it): an
A/B of a training or architecture change at the same lambdas, meaningful even with two points per
curve, where a BD-rate has little range to integrate.
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
                                          for image in sorted(images)},
            "fixed_lambda_cost": fixed_lambda_cost(rows_a, rows_b)}


def fixed_lambda_cost(rows_a: list, rows_b: list) -> dict:
    """Per item encoded in both runs: J = MSE + lambda * bpp in each, and B's change in percent."""
    cost = lambda r: 10 ** (-r.psnr_rgb / 10) + float(r.point) * r.bpp  # noqa: E731
    ours_b = {(r.image, float(r.point)): r for r in rows_b if r.codec == OUR_NAME}
    items = []
    for a in sorted((r for r in rows_a if r.codec == OUR_NAME), key=lambda r: (r.image, -float(r.point))):
        b = ours_b.get((a.image, float(a.point)))
        if b is not None:
            items.append({"image": a.image, "lambda": float(a.point), "bytes": [a.bytes, b.bytes],
                          "psnr": [a.psnr_rgb, b.psnr_rgb], "cost": [cost(a), cost(b)],
                          "change_percent": round(100 * (cost(b) / cost(a) - 1), 2)})
    changes = [i["change_percent"] for i in items]
    return {"items": items, "mean_change_percent": round(sum(changes) / len(changes), 2) if changes else None,
            "b_lower": sum(c < 0 for c in changes)}


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
    j = report["fixed_lambda_cost"]
    if j["items"]:
        lines += ["", f"Fixed-lambda cost J = MSE + lambda * bpp, {name_b} against {OUR_NAME}, same items:", "",
                  "| image | lambda | bytes | PSNR (dB) | J change |", "|---|---|---|---|---|"]
        for i in j["items"]:
            lines.append(f"| {i['image']} | {i['lambda']:g} | {i['bytes'][0]} → {i['bytes'][1]} | "
                         f"{i['psnr'][0]:.2f} → {i['psnr'][1]:.2f} | {i['change_percent']:+.1f} % |")
        lines.append(f"| mean | | | | **{j['mean_change_percent']:+.2f} %** ({j['b_lower']} of {len(j['items'])} lower) |")
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
