"""The `triton` backend: entropy decoding on the CPU (the C++ core on every core when built, else the
reference), everything after it on the GPU.

Stages, named as in reference.py: parse -> decode_latents (CPU) -> upload -> weights (Philox on
the device, masked, compacted) -> upsample -> modulate + synthesize (fused) -> 8-bit image.
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from ..decoder.backends import cpu_latents
from ..decoder.config import SYNTH_DENSE
from ..decoder.entropy import decode_latents, decode_mask
from ..decoder.format import read_bitstream, read_networks
from ..decoder.reference import Decoded, FloatNetworks
from .philox import masked_weights
from .synthesis import prepare, run
from .upsample import upsample


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("TRITON_INTERPRET") == "1":
        return torch.device("cpu")  # Triton's interpreter runs kernels on CPU tensors (tests)
    raise RuntimeError("the triton backend needs a CUDA GPU (or TRITON_INTERPRET=1 for testing)")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def decode(data: bytes, threads: int | None = None) -> Decoded:
    dev = device()
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    bs = read_bitstream(data)
    if bs.cfg.synth_mode == SYNTH_DENSE:
        raise RuntimeError("synth_mode 1 (trained dense synthesis, the lottery ablation) is decoded by the "
                           "reference backend only")
    nets = read_networks(bs.networks, bs.cfg)
    masks = decode_mask(bs.mask_counts, bs.mask_words, bs.cfg.synth_in_out)
    fnets = FloatNetworks.from_quantized(nets, bs.cfg)
    t1 = time.perf_counter()
    times["parse"] = t1 - t0
    latents = cpu_latents(data, threads)
    if latents is None:
        latents = decode_latents(bs.latent_words, nets.arm, bs.cfg, bs.height, bs.width)
    t2 = time.perf_counter()
    times["entropy"] = t2 - t1
    grids = [torch.from_numpy(g.astype(np.float32)).to(dev) for g in latents]
    kernel = torch.from_numpy(fnets.ups_kernel).to(dev)
    _sync(dev)
    t3 = time.perf_counter()
    times["upload"] = t3 - t2
    weights = masked_weights(bs.seed, bs.cfg.synth_in_out, masks, dev)
    params = prepare(fnets.mod, weights, dev)
    _sync(dev)
    t4 = time.perf_counter()
    times["weights"] = t4 - t3
    up = upsample(grids, kernel)
    _sync(dev)
    t5 = time.perf_counter()
    times["upsampling"] = t5 - t4
    image = run(up, params).cpu().numpy()
    t6 = time.perf_counter()
    times["synthesis"] = t6 - t5
    times["total"] = t6 - t0
    return Decoded(image, latents, bs, times)
