"""A/B training schedules at a fixed step count: each variant changes some fields of a preset
(learning rates, noise annealing, the straight-through tail, ...) and encodes the same 256x256
centre crops at one lambda, all crops as one batch.

    python benchmarks/schedule_study.py DATASET_DIR --images kodim03,kodim05,kodim14,kodim23 \
        --lmbda 1e-3 --preset cpu --variants adam_kumaraswamy,soap_gauss_cc5 --threads 1 --out OUT

Per variant and crop: the file's bytes and the decoded PSNR, and the fixed-lambda loss the
trainer minimises, D + lambda R (D: MSE on [0, 1] of the decoded file, R: file bits per pixel).
A variant wins at this lambda when its mean loss is lower; ``delta_loss_pct`` is against the
first variant listed. OUT/<lambda>.json holds everything, including the training trace (the
noisy training estimates of PSNR and rate every log_every steps), OUT/<lambda>.png plots it.
Results are appended: run variants in several calls and they land in one file.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from lotterycodec.decoder.api import decode
from lotterycodec.decoder.imageio import center_crop, load_image, psnr
from lotterycodec.trainer.encode import encode_arrays
from lotterycodec.trainer.presets import get_preset, item_arch, item_steps

# Each variant: Preset fields changed from the preset named on the command line. Each names
# every field it depends on, so its result does not move when a default changes; "preset" is the
# preset as it stands.
_ADAM_KUMARASWAMY = {"optimizer": "adam", "noise_std": None, "temperature": (0.3, 0.1), "noise_a": (2.0, 1.0)}
_SOAP_KUMARASWAMY = {**_ADAM_KUMARASWAMY, "optimizer": "soap"}
_GAUSS_CC5 = {"noise_std": (0.22, 0.15), "temperature": (0.35, 0.08)}
VARIANTS = {
    "preset": {},
    # the defaults until 2026-12-05: Adam, Kumaraswamy noise 2 -> 1, soft-round temperature 0.3 -> 0.1
    "adam_kumaraswamy": _ADAM_KUMARASWAMY,
    "adam_kumaraswamy_lr2e-2": {**_ADAM_KUMARASWAMY, "lr": 2e-2},
    "adam_kumaraswamy_hard_tail20": {**_ADAM_KUMARASWAMY, "hard_tail": 0.2},
    "adam_gauss_cc5": {**_ADAM_KUMARASWAMY, **_GAUSS_CC5},
    "soap_kumaraswamy": _SOAP_KUMARASWAMY,
    "soap_kumaraswamy_hard10": {**_SOAP_KUMARASWAMY, "hard_phase": 0.1},
    # the defaults since 2026-12-06
    "soap_gauss_cc5": {**_SOAP_KUMARASWAMY, **_GAUSS_CC5},
    "soap_gauss_cc5_lr2e-2": {**_SOAP_KUMARASWAMY, **_GAUSS_CC5, "lr": 2e-2},
    "soap_gauss_cc5_score_lr3e-1": {**_SOAP_KUMARASWAMY, **_GAUSS_CC5, "score_lr": 3e-1},
    "soap_gauss_cc5_scores_soap": {**_SOAP_KUMARASWAMY, **_GAUSS_CC5, "score_optimizer": "soap"},
    "soap_gauss_cc5_score_lr5e-2": {**_SOAP_KUMARASWAMY, **_GAUSS_CC5, "score_lr": 5e-2},
    "soap_gauss_cc5_hard10": {**_SOAP_KUMARASWAMY, **_GAUSS_CC5, "hard_phase": 0.1},
}


def run_variant(name: str, crops: dict[str, np.ndarray], lmbda: float, preset: str, threads: int | None,
                steps: int | None) -> dict:
    base = get_preset(preset)
    chosen = dataclasses.replace(base, name=f"{preset}+{name}", **VARIANTS[name])
    names = list(crops)
    trace: list = []
    t0 = time.perf_counter()
    results = encode_arrays([crops[n] for n in names], [lmbda] * len(names), [0.7] * len(names), [1] * len(names),
                            preset=chosen, steps=steps, progress=False, threads=threads, trace=trace)
    seconds = time.perf_counter() - t0
    items = []
    for n, r in zip(names, results):
        image, _ = decode(r.data, backend="reference")
        pixels = image.shape[0] * image.shape[1]
        p = psnr(image, crops[n])
        bpp = 8 * len(r.data) / pixels
        items.append({"image": n, "bytes": len(r.data), "bpp": bpp, "psnr": p,
                      "loss": 10 ** (-p / 10) + lmbda * bpp, "steps": r.summary["steps"]})
    return {"variant": name, "changes": VARIANTS[name],
            "lmbda": lmbda, "preset": preset, "arch": item_arch(base, lmbda),
            "steps": item_steps(base, lmbda, steps) or base.steps, "threads": threads, "seconds": seconds,
            "items": items, "mean_loss": float(np.mean([i["loss"] for i in items])),
            "trace": [{**t, "image": names[t.pop("row")]} for t in trace]}


def table(runs: list[dict]) -> str:
    ref = runs[0]["mean_loss"]
    images = [i["image"] for i in runs[0]["items"]]
    lines = ["| variant | changes | steps | " + " | ".join(f"{n} B / dB" for n in images)
             + " | mean D+λR | Δ loss vs first | train s |",
             "|---|---|---|" + "---|" * len(images) + "---|---|---|"]
    for r in runs:
        cells = [f"{i['bytes']} / {i['psnr']:.2f}" for i in r["items"]]
        lines.append(f"| {r['variant']} | {json.dumps(r['changes'])} | {r['steps']} | " + " | ".join(cells)
                     + f" | {r['mean_loss']:.6f} | {100 * (r['mean_loss'] / ref - 1):+.2f} % | {r['seconds']:.0f} |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        steps = sorted({t["step"] for t in r["trace"]})
        mean = {k: [np.mean([t[k] for t in r["trace"] if t["step"] == s]) for s in steps] for k in ("mse", "bpp")}
        ax_p.plot(steps, [-10 * math.log10(m) for m in mean["mse"]], label=r["variant"])
        ax_r.plot(steps, mean["bpp"], label=r["variant"])
    ax_p.set(xlabel="step", ylabel="training PSNR (dB, mean MSE of the crops)")
    ax_r.set(xlabel="step", ylabel="training latent rate estimate (bpp)", yscale="log")
    ax_p.legend(fontsize=7)
    fig.suptitle(f"lambda {runs[0]['lmbda']:g}, preset {runs[0]['preset']}: training estimates (noisy quantizer)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--images", default="kodim03,kodim05,kodim14,kodim23")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lmbda", type=float, default=1e-3)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=None, help="stage-1 steps (default: the preset's for this lambda)")
    ap.add_argument("--variants", default="preset", help=f"comma-separated; known: {', '.join(VARIANTS)}")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    crops = {n: center_crop(load_image(Path(args.dataset) / f"{n}.png"), args.crop) for n in args.images.split(",")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.lmbda:g}.json"
    report = json.loads(path.read_text()) if path.exists() else {"host": platform.node(), "runs": []}
    for v in args.variants.split(","):
        run = run_variant(v, crops, args.lmbda, args.preset, args.threads, args.steps)
        report["runs"] = [r for r in report["runs"] if r["variant"] != v] + [run]
        path.write_text(json.dumps(report, indent=1))
        print(table(report["runs"]), flush=True)
    (out / f"{args.lmbda:g}.md").write_text(table(report["runs"]) + "\n")
    plot(report["runs"], out / f"{args.lmbda:g}.png")


if __name__ == "__main__":
    main()
