"""Seed variance of the cpu preset's low-rate points: the eval's batching (one image, its two
low-rate lambdas, one batched model) with another random-synthesis/initialisation seed.

    python benchmarks/seed_variance.py DATASET_DIR SEED [IMAGE ...]   (default images: kodim03 kodim23)

Writes IMAGE_lambdaL_seedS.lotc and seedS.json in the current folder.
"""
import json
import sys
import time
from pathlib import Path

from lotterycodec.api import decode
from lotterycodec.decoder.imageio import center_crop, load_image, psnr
from lotterycodec.trainer.encode import encode_arrays


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    dataset, seed = Path(sys.argv[1]), int(sys.argv[2])
    rows = []
    for name in sys.argv[3:] or ("kodim03", "kodim23"):
        image = center_crop(load_image(dataset / f"{name}.png"), 256)
        t0 = time.perf_counter()
        results = encode_arrays([image, image], [1e-2, 4e-3], [0.7, 0.7], [seed, seed], "cpu", progress=False)
        wall = time.perf_counter() - t0
        for lmbda, r in zip((1e-2, 4e-3), results):
            Path(f"{name}_lambda{lmbda}_seed{seed}.lotc").write_bytes(r.data)
            decoded, _ = decode(r.data)
            rows.append({"image": name, "lambda": lmbda, "seed": seed, "bytes": len(r.data),
                         "psnr_rgb": psnr(image, decoded), "encode_s_shared": wall / 2,
                         "network_bits": r.summary["network_bits"]})
            print(json.dumps(rows[-1]), flush=True)
    Path(f"seed{seed}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":  # the file-writing pool spawns processes that import this file
    main()
