"""Training step time at 256x256, eager against fused (trainer/fused.py), and a batch of items on
several threads against one item per core in separate processes.

    python benchmarks/train_step.py ../shared/data/kodak/kodim23.png --out step.json

Each layout runs in fresh processes (so each compiles, as an encode does; the compile is not
timed): median of the timed steps after warm-up steps, per lambda (1e-3: the `cpu` preset's
default networks, 4e-3: its low-rate ones). "per core": one single-threaded process per core,
each pinned to its core, started together; its step time is the slowest process's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from lotterycodec.trainer.threads import available_cores

CHILD = r"""
import json, os, statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[4]))
from lotterycodec.decoder.config import ArchConfig, kept_weights_for
from lotterycodec.decoder.imageio import center_crop, load_image
from lotterycodec.trainer import fused
from lotterycodec.trainer.model import LotteryModel
from lotterycodec.trainer.presets import PRESETS, item_arch
from lotterycodec.trainer.train import GRAD_CLIP, BatchedModel, Optimizers, clip_per_item, loss_terms, stage1_quantizer
path, batch, lmbda, compiled, warmup, timed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[5] == "1", int(sys.argv[6]), int(sys.argv[7])
preset = PRESETS["cpu"]
base = ArchConfig(**{**preset.arch, **item_arch(preset, lmbda)})
cfg = base.replace(kept_weights=kept_weights_for(base, 0.7)).validate()
image = torch.from_numpy(center_crop(load_image(path), 256).copy()).float().div(255)
model = BatchedModel([LotteryModel(cfg, 256, 256, seed=1 + b) for b in range(batch)])
targets, lmbdas = image[None].expand(batch, -1, -1, -1).contiguous(), torch.full((batch,), lmbda)
opt = Optimizers(model, preset, preset.lr, preset.score_lr)
times = []
with fused.enabled(compiled):
    for i in range(warmup + timed):
        t0 = time.perf_counter()
        loss, _, _ = loss_terms(model, targets, lmbdas, **stage1_quantizer(preset, i, 2000))
        opt.zero_grad(); loss.sum().backward(); clip_per_item(opt.params, GRAD_CLIP); opt.step()
        times.append(time.perf_counter() - t0)
print(json.dumps({"step_ms": 1e3 * statistics.median(times[warmup:])}))
"""


def run(path: str, batch: int, lmbda: float, threads: int, compiled: bool, processes: int, warmup: int,
        timed: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    procs = []
    for core in range(processes):
        pin = ["taskset", "-c", str(core)] if processes > 1 else []
        procs.append(subprocess.Popen([*pin, sys.executable, "-c", CHILD, path, str(batch), repr(lmbda), str(threads),
                                       "1" if compiled else "0", str(warmup), str(timed)],
                                      stdout=subprocess.PIPE, text=True, env=env))
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a step-time child failed: {outs}")
    return max(json.loads(o.strip().splitlines()[-1])["step_ms"] for o in outs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("--lmbdas", default="1e-3,4e-3")
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    cores = available_cores()
    layouts = [("one item, 1 thread", 1, 1, 1), (f"batch of {cores}, {cores} threads", cores, cores, 1),
               (f"{cores} items, one process per core", 1, 1, cores)]
    rows = []
    for lmbda in map(float, args.lmbdas.split(",")):
        for name, batch, threads, processes in layouts:
            for compiled in (False, True):
                ms = run(args.image, batch, lmbda, threads, compiled, processes, args.warmup, args.steps)
                rows.append({"lmbda": lmbda, "layout": name, "fused": compiled, "step_ms": ms,
                             "item_steps_per_s": 1e3 * batch * processes / ms})
                print(f"lambda {lmbda:g}  {name:<32} {'fused' if compiled else 'eager':<5} {ms:7.1f} ms/step  "
                      f"{rows[-1]['item_steps_per_s']:5.2f} item-steps/s", flush=True)
    report = {"image": args.image, "cores": cores, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "warmup": args.warmup, "steps": args.steps, "rows": rows,
              "summary": {f"{r['lmbda']:g} {r['layout']} {'fused' if r['fused'] else 'eager'}": round(r["step_ms"], 1)
                          for r in rows}}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
