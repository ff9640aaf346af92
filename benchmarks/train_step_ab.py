"""Training step time of two commits, alternated in one run (the host drifts minute to minute, so
only an A/B taken round-robin says whether a trainer change made the step faster).

    python benchmarks/train_step_ab.py ../shared/data/kodak/kodim14.png --a 57cb5b1 --b HEAD \
        --preset cpu-full --threads 2 --out ab_full.json
    python benchmarks/train_step_ab.py ../shared/data/kodak/kodim14.png --a 57cb5b1 --b HEAD \
        --preset cpu --crop 256 --lmbda 1e-3 --threads 1 --out ab_256.json

Each commit is checked out (git worktree) and laid out as the installed package (setup.py's
package_dir: lotterycodec/, with decoder/, trainer/ and kernels/ inside it) in a temporary folder;
a fresh process per round imports it ahead of this checkout's editable install and times the
fused training step (the one encode and eval run) at the preset's networks and kept ratio: median
of the timed steps after warm-up steps (the compile is not timed). Rounds alternate A, B, A, B...
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# setup.py's package_dir: these top-level folders live inside the lotterycodec package.
SUBPACKAGES = ("decoder", "trainer", "kernels")

CHILD = r"""
import json, statistics, sys, time
pkg, image, preset_name, crop, lmbda, kept, threads, warmup, timed = sys.argv[1:10]
# this checkout's editable install would win over sys.path: drop its finder, put the commit first
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, pkg)
import torch
torch.set_num_threads(int(threads))
import lotterycodec.trainer.model as model_module
from lotterycodec.decoder.config import ArchConfig, kept_weights_for
from lotterycodec.decoder.imageio import center_crop, load_image
from lotterycodec.trainer import fused
from lotterycodec.trainer.model import LotteryModel
from lotterycodec.trainer.presets import get_preset, item_arch
from lotterycodec.trainer.train import GRAD_CLIP, BatchedModel, Optimizers, clip_per_item, loss_terms, stage1_quantizer
assert model_module.__file__.startswith(pkg), model_module.__file__
preset, lmbda = get_preset(preset_name), float(lmbda)
base = ArchConfig(**{**preset.arch, **item_arch(preset, lmbda)})
cfg = base.replace(kept_weights=kept_weights_for(base, float(kept) if kept != "preset" else preset.kept_ratio)).validate()
pixels = load_image(image)
if int(crop):
    pixels = center_crop(pixels, int(crop))
target = torch.from_numpy(pixels.astype("float32") / 255.0)[None].contiguous()
model = BatchedModel([LotteryModel(cfg, target.shape[1], target.shape[2], seed=1)])
opt = Optimizers(model, preset, preset.lr, preset.score_lr)
times = []
with fused.enabled(True):
    for i in range(int(warmup) + int(timed)):
        t0 = time.perf_counter()
        loss, _, _ = loss_terms(model, target, torch.full((1,), lmbda), **stage1_quantizer(preset, i, 2000))
        opt.zero_grad(); loss.sum().backward(); clip_per_item(opt.params, GRAD_CLIP); opt.step()
        times.append(time.perf_counter() - t0)
print(json.dumps({"step_ms": 1e3 * statistics.median(times[int(warmup):])}))
"""


def package_tree(commit: str, work: Path) -> tuple[Path, str]:
    """The commit laid out as the installed package under work/; returns (folder for sys.path, full hash)."""
    full = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], check=True, capture_output=True,
                          text=True).stdout.strip()
    tree = work / f"tree-{full[:12]}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), full], check=True)
    pkg = work / f"pkg-{full[:12]}"
    shutil.copytree(tree / "lotterycodec", pkg / "lotterycodec")
    for sub in SUBPACKAGES:
        shutil.copytree(tree / sub, pkg / "lotterycodec" / sub)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)
    return pkg, full


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("--a", required=True, help="commit A (the baseline)")
    p.add_argument("--b", default="HEAD", help="commit B")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--crop", type=int, default=0, help="centre crop side (0: the whole image)")
    p.add_argument("--lmbda", type=float, default=1e-3, help="picks the preset's networks for that rate")
    p.add_argument("--kept-ratio", default="preset")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="train_step_ab-") as tmp:
        sides = {name: package_tree(commit, Path(tmp)) for name, commit in (("a", args.a), ("b", args.b))}
        runs: dict[str, list[float]] = {"a": [], "b": []}
        for r in range(args.rounds):
            for name, (pkg, _) in sides.items():
                out = subprocess.run([sys.executable, "-c", CHILD, str(pkg), args.image, args.preset, str(args.crop),
                                      repr(args.lmbda), args.kept_ratio, str(args.threads), str(args.warmup),
                                      str(args.steps)], capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(f"the step-time child of {name} failed:\n{out.stderr[-2000:]}")
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1])["step_ms"])
                print(f"round {r + 1} {name}: {runs[name][-1]:.1f} ms/step", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"A {args.a}: {med['a']:.1f} ms/step  B {args.b}: {med['b']:.1f} ms/step  B/A {med['b'] / med['a']:.3f}")
    report = {"image": args.image, "preset": args.preset, "crop": args.crop, "lmbda": args.lmbda,
              "kept_ratio": args.kept_ratio, "threads": args.threads, "warmup": args.warmup, "steps": args.steps,
              "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "a": {"commit": sides["a"][1], "step_ms": runs["a"], "median": med["a"]},
              "b": {"commit": sides["b"][1], "step_ms": runs["b"], "median": med["b"]},
              "b_over_a": med["b"] / med["a"]}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
