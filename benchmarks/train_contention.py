"""Training step time on an idle machine and beside competing CPU-bound processes, per thread setting.

    python benchmarks/train_contention.py IMAGE.png [--crop 256] [--steps 150] [--busy 1] --out results/x

For each setting (auto: the default, measured by trainer.threads; every core: what torch does
unasked; 1) it trains the `cpu` preset's architecture for --steps steps at lambda 1e-3, idle and
then with --busy other processes spinning on the CPU, and reports the mean step time and its
ratio to the idle default. Writes OUT/contention.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lotterycodec.decoder.imageio import load_image
from lotterycodec.trainer.encode import encode_array
from lotterycodec.decoder.imageio import center_crop
from lotterycodec.trainer.threads import available_cores


def step_seconds(image: np.ndarray, steps: int, threads: int | None) -> tuple[float, int]:
    r = encode_array(image, lmbda=1e-3, preset="cpu", steps=steps, threads=threads, progress=False)
    return r.summary["times"]["train_s"] / steps, r.summary["threads"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--busy", type=int, default=1, help="competing single-threaded CPU-bound processes")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    image = load_image(args.image)
    image = center_crop(image, args.crop) if args.crop else image
    cores = available_cores()
    settings = {"auto (default)": None, f"{cores} (every core)": cores, "1": 1}
    rows = []
    for load in (0, args.busy):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
        try:
            time.sleep(0.5)
            for name, threads in settings.items():
                s, ended = step_seconds(image, args.steps, threads)
                rows.append({"competing_processes": load, "threads": name, "ended_with": ended, "step_ms": 1000 * s})
                print(f"competing {load}, threads {name:>16}: {1000 * s:7.1f} ms/step (ended with {ended})", flush=True)
        finally:
            for sp in spinners:
                sp.kill()
    idle = next(r["step_ms"] for r in rows if r["competing_processes"] == 0 and r["threads"] == "auto (default)")
    for r in rows:
        r["vs_idle_default"] = r["step_ms"] / idle
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "contention.json").write_text(json.dumps({
        "image": Path(args.image).name, "crop": args.crop, "steps": args.steps, "cores": cores,
        "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows},
        indent=1))


if __name__ == "__main__":
    main()
