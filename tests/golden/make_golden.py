"""Writes the golden bitstreams and their manifest: run only when the format or a decoder changes
on purpose (then the diff of manifest.json is the change, for review).

    python tests/golden/make_golden.py          # writes the files not there yet, then the manifest
    python tests/golden/make_golden.py --all    # rewrites every file (a deliberate format change)

The files are small valid bitstreams covering the format's branches: a trained image with
several stripes and shared substreams, random networks with odd sizes, no ARM context, no hidden
ARM layer, a 1x1 image, and the dense ablation (synth_mode 1, reference only), all version 2;
version 3's inter-grid ARM inputs (arm_parents), trained and random with every offset, striped
grids reading shared and striped parents; and version 4 (the compact config record, what the
encoder writes): a trained file and the parents' random one, and random networks with the ARM
options of version 4 (residual hidden layers and the stabiliser, with parents). The manifest holds
each file's SHA-256, its latents' (identical on every backend) and its decoded image's per backend:
the reference, the C++ core's scalar table and each SIMD table this machine runs, and the Triton
kernels under TRITON_INTERPRET=1. Other tables and GPUs are checked against the reference within
one level instead (docs/FORMAT.md section 8)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def latents_sha(latents) -> str:
    return sha(b"".join(np.ascontiguousarray(g, np.int64).tobytes() for g in latents))


def make_files() -> dict[str, bytes]:
    from lotterycodec.decoder.config import SYNTH_DENSE, ArchConfig
    from lotterycodec.decoder.format import rewrite_bitstream
    from lotterycodec.decoder.imageio import load_image
    from lotterycodec.decoder.synthetic import synthetic_bitstream
    from lotterycodec.trainer.encode import encode_array
    import torch
    torch.set_num_threads(1)
    crop = np.ascontiguousarray(load_image(HERE.parents[1] / "lotterycodec" / "data" / "kodim23_crop128.png")[48:80, 40:72])
    trained = encode_array(crop, lmbda=1e-3, kept_ratio=0.6, preset="fast", steps=60, seed=7, progress=False,
                           arch=dict(stripe_height=8, shared_max_pixels=64), threads=1)
    dense = encode_array(crop[:12, :16], lmbda=1e-3, preset="fast", steps=20, seed=5, progress=False, threads=1,
                         arch=dict(synth_mode=SYNTH_DENSE))
    small = ArchConfig(n_grids=3, arm_context=8, arm_width=8, mod_width=8, stripe_height=4, shared_max_pixels=16,
                       kept_weights=300)
    parents = encode_array(crop, lmbda=1e-3, kept_ratio=0.6, preset="fast", steps=60, seed=8, progress=False,
                           arch=dict(stripe_height=8, shared_max_pixels=64, arm_parents=5), threads=1)
    return {
        "trained_32x32.lotc": rewrite_bitstream(trained.data, 2),
        "random_13x11.lotc": synthetic_bitstream(13, 11, small, seed=3, version=2),
        "no_context_9x7.lotc": synthetic_bitstream(9, 7, small.replace(arm_context=0), seed=4, version=2),
        "no_hidden_40x2.lotc": synthetic_bitstream(40, 2, small.replace(arm_layers=0), seed=5, version=2),
        "tiny_1x1.lotc": synthetic_bitstream(1, 1, small, seed=6, version=2),
        "dense_16x12.lotc": rewrite_bitstream(dense.data, 2),
        "parents_trained_32x32.lotc": rewrite_bitstream(parents.data, 3),
        "parents_random_45x23.lotc": synthetic_bitstream(45, 23, small.replace(n_grids=4, arm_parents=9), seed=9,
                                                         version=3),
        "v4_trained_32x32.lotc": trained.data,
        "v4_parents_random_45x23.lotc": synthetic_bitstream(45, 23, small.replace(n_grids=4, arm_parents=9), seed=9),
        "v4_arm_options_37x29.lotc": synthetic_bitstream(
            37, 29, small.replace(n_grids=4, arm_context=6, arm_width=8, arm_parents=2, arm_residual=1,
                                  arm_stabiliser=1), seed=11, latent_spread=3.0),
    }


def backend_hashes(names: list[str]) -> dict[str, dict]:
    """Image SHA-256 per file per backend (Triton in a subprocess under TRITON_INTERPRET=1)."""
    from lotterycodec.decoder.backends import cpu_kernels, get_backend
    from lotterycodec.decoder.config import SYNTH_DENSE
    from lotterycodec.decoder.format import peek_config
    out = {}
    for name in names:
        data = (HERE / name).read_bytes()
        ref = get_backend("reference")(data)
        images = {"reference": sha(ref.image.tobytes())}
        if peek_config(data).synth_mode != SYNTH_DENSE:
            from lotterycodec.decoder.backends import _cpu_decode
            for table in cpu_kernels():
                images[f"cpu:{table}"] = sha(_cpu_decode(data, 1, kernels=table).image.tobytes())
        out[name] = {"sha256": sha(data), "latents_sha256": latents_sha(ref.latents), "images": images}
    triton = subprocess.run([sys.executable, __file__, "--triton", *names], capture_output=True, text=True,
                            env={**os.environ, "TRITON_INTERPRET": "1"})
    if triton.returncode == 0:
        for name, digest in json.loads(triton.stdout).items():
            out[name]["images"]["triton-interpret"] = digest
    return out


def triton_hashes(names: list[str]) -> None:
    from lotterycodec.decoder.backends import get_backend
    from lotterycodec.decoder.config import SYNTH_DENSE
    from lotterycodec.decoder.format import peek_config
    digests = {}
    for name in names:
        data = (HERE / name).read_bytes()
        if peek_config(data).synth_mode != SYNTH_DENSE:
            digests[name] = sha(get_backend("triton")(data).image.tobytes())
    print(json.dumps(digests))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--triton"]:
        triton_hashes(sys.argv[2:])
        sys.exit()
    for name, data in make_files().items():
        if "--all" in sys.argv or not (HERE / name).exists():
            (HERE / name).write_bytes(data)
    manifest = backend_hashes(sorted(p.name for p in HERE.glob("*.lotc")))
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(manifest)} files and {MANIFEST}")
