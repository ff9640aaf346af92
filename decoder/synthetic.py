"""Valid bitstreams from random parts, without training (tests, fuzzing, large-size benchmarks).

Files made here are real format files (the current version) but their content is synthetic: every tool
that reports on them must say so.
"""
from __future__ import annotations

import numpy as np

from .config import ArchConfig
from .entropy import IntArm, encode_latents, encode_mask
from .format import VERSION, Networks, network_shapes, write_bitstream, write_networks


def random_networks(cfg: ArchConfig, rng: np.random.Generator) -> Networks:
    tensors = []
    for module, shape in network_shapes(cfg):
        scale = {"arm": 1 << (cfg.arm_frac_bits - 3), "ups": 1 << (cfg.ups_step_exp - 3),
                 "mod": 1 << (cfg.mod_weight_step_exp - 2)}[module]
        tensors.append(rng.integers(-scale, scale + 1, size=shape).astype(np.int64))
    n_arm = 2 * len(cfg.arm_in_out)
    arm = IntArm.of(tensors[0:n_arm:2], tensors[1:n_arm:2], cfg)
    return Networks(arm, tensors[n_arm], tensors[n_arm + 1:])


def random_masks(cfg: ArchConfig, rng: np.random.Generator) -> list[np.ndarray]:
    flat = np.zeros(cfg.synth_weight_count, dtype=bool)
    flat[rng.choice(flat.size, cfg.kept_weights, replace=False)] = True
    masks, start = [], 0
    for i, o in cfg.synth_in_out:
        masks.append(flat[start:start + i * o].reshape(o, i))
        start += i * o
    return masks


def synthetic_bitstream(width: int, height: int, cfg: ArchConfig | None = None, seed: int = 1,
                        rng: np.random.Generator | None = None, latent_spread: float = 2.0,
                        version: int = VERSION) -> bytes:
    """version: an older one for the tests of old files."""
    cfg = (cfg or ArchConfig()).validate()
    rng = rng or np.random.default_rng(seed)
    nets = random_networks(cfg, rng)
    grids = [np.clip(np.round(rng.laplace(0, latent_spread, size=s)), -cfg.latent_bound,
                     cfg.latent_bound - 1).astype(np.int64) for s in cfg.grid_shapes(height, width)]
    net_bytes, _ = write_networks(nets)
    counts, mask_words = encode_mask(random_masks(cfg, rng))
    return write_bitstream(width, height, seed, cfg, net_bytes, counts, mask_words,
                           encode_latents(grids, nets.arm, cfg), version)
