"""Analytic multiply-accumulates per decoded pixel, module by module.

Convention (the same for every codec we compare): one MAC per weight use; biases,
activations, rounding and entropy coding are not counted; the ARM is counted per latent
value and divided by H x W (every latent, no credit for skipped zeros); upsampling
counts the taps of the one polyphase kernel that produces each output value.
"""
from __future__ import annotations

from .config import ArchConfig


def macs_per_pixel(cfg: ArchConfig, height: int, width: int) -> dict[str, float]:
    pixels = height * width
    shapes = cfg.grid_shapes(height, width)
    latents = sum(h * w for h, w in shapes)
    arm = sum(i * o for i, o in cfg.arm_in_out) * latents / pixels
    taps2 = cfg.ups_taps ** 2
    ups = sum((cfg.n_grids - 1 - lvl) * taps2 * shapes[lvl][0] * shapes[lvl][1]
              for lvl in range(cfg.n_grids - 1)) / pixels
    mod = cfg.n_grids * cfg.mod_width + cfg.mod_width * cfg.mod_out + 2 * 9 * cfg.mod_out ** 2
    synth_dense = float(cfg.synth_weight_count)
    synth_kept = float(cfg.kept_weights)
    return {
        "arm": arm, "upsampling": ups, "modulation": float(mod),
        "synthesis_dense": synth_dense, "synthesis_kept": synth_kept,
        "total_dense": arm + ups + mod + synth_dense,
        "total": arm + ups + mod + synth_kept,
    }
