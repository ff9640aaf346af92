"""The same eval run in this process and through a local two-worker Dask cluster: results and overhead.

    python benchmarks/cluster_overhead.py ../shared/data/kodak --images kodim03,kodim05,kodim14,kodim23 \
        --crop 128 --steps 200 --lmbda 1e-2,1e-3 --out results/cluster_overhead_cpu

Every run uses a fresh output folder and the same settings (batch 1: one job per image and lambda)
and one torch thread per training, so the files can be compared byte for byte: in this process,
then a one-worker cluster (same compute: the ratio of wall times is the engine's overhead), then
a two-worker cluster. Reports wall times, ratios and whether the files are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from lotterycodec import evaluation as evaluate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--images", default="")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--lmbda", default="1e-2,1e-3")
    p.add_argument("--workers", type=int, default=2, help="workers of the second cluster")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from distributed import LocalCluster

    out = Path(args.out)
    common = dict(lmbdas=[float(x) for x in args.lmbda.split(",")], preset=args.preset, steps=args.steps,
                  crop=args.crop, images=args.images.split(",") if args.images else None, codecs=[], batch=1,
                  progress=False)
    import torch
    runs = {}
    for engine, workers in (("in_process", 0), ("dask_1_worker", 1), (f"dask_{args.workers}_workers", args.workers)):
        folder = out / engine
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        if not workers:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            report = evaluate.run(args.dataset, out=str(folder), **common)
            torch.set_num_threads(threads)
        else:
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster:
                report = evaluate.run(args.dataset, out=str(folder), cluster=cluster.scheduler_address, **common)
        files = {q.name: q.read_bytes() for q in sorted((folder / "files").glob("*.lotc"))}
        runs[engine] = {"wall_s": time.perf_counter() - t0, "files": len(files),
                        "curve": report["curves"][f"lotterycodec-{args.preset}"], "_files": files}
        print(engine, runs[engine]["wall_s"], flush=True)
    base = runs["in_process"]
    reference_files = base["_files"]
    result = {"command": "python benchmarks/cluster_overhead.py " + " ".join(argv or os.sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu_count": os.cpu_count(),
              "torch_threads_per_training": 1, "runs": {}}
    for engine, run in runs.items():
        result["runs"][engine] = {**{k: v for k, v in run.items() if k != "_files"},
                                  "wall_over_in_process": run["wall_s"] / base["wall_s"],
                                  "files_identical_to_in_process": run["_files"] == reference_files}
    (out / "overhead.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "curve"} for k, v in result["runs"].items()},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
