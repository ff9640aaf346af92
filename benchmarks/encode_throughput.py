"""Encode throughput (images/hour) of batched training: B crops trained at once in one batched model.

    python benchmarks/encode_throughput.py ../shared/data/kodak --crop 256 --steps 100 \
        --batches 1,4,16 --device cpu --out results/encode_throughput_cpu

For each B, B images (centre crops of the folder's images in order, repeated when B exceeds
their number: items are independent trainings either way) are encoded with the same preset and
step count; the wall time covers training, quantization and writing every file (the decode
that measures each file's PSNR comes after it). The worker processes that write the files of a
batch are started before the timings, as a dataset run starts them once. images/hour = B / wall time. Writes
throughput.json (machine-readable, with per-item bpp / PSNR) and throughput.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from lotterycodec.decoder.imageio import center_crop, load_image, psnr
from lotterycodec.decoder.backends import get_backend
from lotterycodec.trainer.workers import start_workers
from lotterycodec.trainer.encode import encode_arrays


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--lmbda", type=float, default=1e-3)
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    paths = sorted(Path(args.dataset).glob("*.png"))
    if not paths:
        raise SystemExit(f"no PNG images in {args.dataset}")
    paths = [paths[i % len(paths)] for i in range(max(batches))]
    crops = {q: center_crop(load_image(q), args.crop) for q in set(paths)}
    images = [crops[q] for q in paths]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.device == "cuda":  # CUDA context, cuBLAS handles and kernel loading stay out of B=1's time
        encode_arrays(images[:1], [args.lmbda], [0.7], [1], args.preset, 5, args.device, progress=False)
    start_workers(max(batches))  # the file-writing worker processes, started once per dataset run
    for B in batches:
        if args.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        results = encode_arrays(images[:B], [args.lmbda] * B, [0.7] * B, [1] * B, args.preset, args.steps,
                                args.device, progress=False)
        wall = time.perf_counter() - t0
        items = [{"image": q.stem, "bpp": r.summary["bpp"],
                  "psnr": psnr(get_backend("auto")(r.data).image, im)} for q, r, im in zip(paths, results, images)]
        times = results[0].summary["times"]
        train_s, search_s = times["train_s"], times["step_search_s"]
        row = {"batch": B, "wall_s": wall, "train_s": train_s, "step_search_s": search_s,
               "write_s": times["write_s"], "write_cpu_s_per_item": float(np.mean(
                   [r.summary["times"]["write_cpu_s"] for r in results])),
               "images_per_hour": 3600 * B / wall,
               "train_images_per_hour": 3600 * B / train_s,
               "train_step_ms": 1000 * train_s / args.steps, "mean_bpp": float(np.mean([i["bpp"] for i in items])),
               "mean_psnr": float(np.mean([i["psnr"] for i in items])), "items": items}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "items"}), flush=True)
    for row in rows:
        row["speedup_vs_first"] = row["images_per_hour"] / rows[0]["images_per_hour"]
        row["train_speedup_vs_first"] = row["train_images_per_hour"] / rows[0]["train_images_per_hour"]
    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    report = {"command": "python benchmarks/encode_throughput.py " + " ".join(argv or os.sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "device": device, "cpu_threads": torch.get_num_threads(),
              "torch": torch.__version__, "crop": args.crop, "steps": args.steps, "preset": args.preset,
              "lmbda": args.lmbda, "rows": rows}
    (out / "throughput.json").write_text(json.dumps(report, indent=1))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([r["batch"] for r in rows], [r["images_per_hour"] for r in rows], "o-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size B")
        ax.set_ylabel("images / hour")
        ax.set_title(f"{args.crop}x{args.crop}, {args.steps} steps, {args.device}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=120)
    except ImportError:
        print("matplotlib missing: no plot")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
