"""The torch-free half of an encode: from one trained item's integers and float ARM to the bytes
of its file (the ARM's quantization search, mask and latent range coding).

This is serial CPU work per item that follows the batched training (workers.pack_all runs it for
a batch in worker processes). Every step is integer or exact, so the bytes do not depend on where
they were made."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from ..decoder.config import ArchConfig, FormatError
from ..decoder.entropy import (ARM_PARAM_MAX, IntArm, check_arm_bounds, encode_latents, encode_mask, latent_bits,
                               latent_inputs)
from ..decoder.format import Networks, tensor_bits, write_bitstream, write_networks

ARM_FRAC_CANDIDATES = range(3, 13)


@dataclass
class ItemIntegers:
    """What one trained item sends, before the ARM is quantized: plain arrays, cheap to pickle."""
    width: int
    height: int
    seed: int
    cfg: ArchConfig
    grids: list[np.ndarray]                       # integer latents per grid
    masks: list[np.ndarray]                       # kept synthesis weights (out, in) per layer
    arm_float: list[tuple[np.ndarray, np.ndarray]]  # trained ARM (weight, bias) per layer, float64
    steps: dict                                   # header field -> (exponent, integer tensors)


@dataclass
class Packed:
    data: bytes
    cfg: ArchConfig              # with the chosen steps and ARM fractional bits
    arm: IntArm
    latent_bits: float           # exact information content under the quantized ARM
    net_bytes: bytes
    net_bits: dict
    latent_words: list[np.ndarray]
    seconds: float               # CPU time of this item's packing (its thread only)


def quantize_arm(arm_float: list[tuple[np.ndarray, np.ndarray]], cfg: ArchConfig) -> IntArm:
    """The ARM rounded to integers times 2^-cfg.arm_frac_bits."""
    frac = cfg.arm_frac_bits
    scale = float(1 << frac)
    ints = [[np.clip(np.round(a * scale), -ARM_PARAM_MAX, ARM_PARAM_MAX).astype(np.int64) for a in layer]
            for layer in arm_float]
    return IntArm.of([w for w, _ in ints], [b for _, b in ints], cfg)


def search_arm(arm_float: list[tuple[np.ndarray, np.ndarray]], grids: list[np.ndarray], cfg: ArchConfig,
               inputs=None):
    """The fractional-bit count minimising real latent bits + ARM bits: (frac, IntArm, latent bits,
    ARM bits). inputs: latent_inputs(grids, cfg) when the caller has them (they do not depend on frac)."""
    best = None
    inputs = latent_inputs(grids, cfg) if inputs is None else inputs
    for frac in ARM_FRAC_CANDIDATES:
        arm = quantize_arm(arm_float, cfg.replace(arm_frac_bits=frac))
        if not _within_bounds(arm, cfg.latent_bound):
            continue
        net = sum(tensor_bits(t) for t in arm.weights + arm.biases)
        lat = latent_bits(grids, arm, cfg.replace(arm_frac_bits=frac), inputs)
        if best is None or lat + net < best[0]:
            best = (lat + net, frac, arm, lat, net)
    if best is None:
        raise RuntimeError("no ARM quantization keeps the accumulators within 32 bits")
    return best[1:]


def _within_bounds(arm: IntArm, latent_bound: int) -> bool:
    try:
        check_arm_bounds(arm, latent_bound)
    except FormatError:
        return False
    return True


def rdoq_arm(arm: IntArm, grids: list[np.ndarray], cfg: ArchConfig, inputs, lat_bits: float) -> tuple[IntArm, float, int]:
    """Each non-zero ARM integer in turn moves one step toward zero where that lowers the latents'
    exact bits plus the ARM's own coded bits: the ARM decides only rates, so bits are the whole cost,
    and the float-trained ARM rounded to integers is not their minimum under the integer tables.
    Moves toward zero keep check_arm_bounds satisfied, but for a residual layer's diagonal (its
    effective weight is the integer plus 2^frac), checked there. (Also trying moves away from zero, zeros
    included, saved no more on two crops for 2-3x the time.) Returns (ARM, latent bits, moves kept)."""
    tensors = [t.copy() for pair in zip(arm.weights, arm.biases) for t in pair]  # w0, b0, w1, b1, ...
    bits = [tensor_bits(t) for t in tensors]

    def build() -> IntArm:
        return dataclasses.replace(arm, weights=tensors[0::2], biases=tensors[1::2])

    moves = 0
    for k, t in enumerate(tensors):
        flat = t.reshape(-1)
        for i in np.flatnonzero(flat):
            now = flat[i]
            flat[i] = now - np.sign(now)
            trial_bits, trial = tensor_bits(t), build()
            if arm.residual and not _within_bounds(trial, cfg.latent_bound):
                flat[i] = now
                continue
            trial_lat = latent_bits(grids, trial, cfg, inputs)
            if trial_lat + trial_bits < lat_bits + bits[k]:
                lat_bits, bits[k] = trial_lat, trial_bits
                moves += 1
            else:
                flat[i] = now
    return build(), lat_bits, moves


def pack(item: ItemIntegers) -> Packed:
    t0 = time.thread_time()
    inputs = latent_inputs(item.grids, item.cfg)  # the ARM's inputs, once for the search and the RDOQ
    frac, arm, lat_bits, _ = search_arm(item.arm_float, item.grids, item.cfg, inputs)
    arm, lat_bits, _ = rdoq_arm(arm, item.grids, item.cfg.replace(arm_frac_bits=frac), inputs, lat_bits)
    exps = {name: exp for name, (exp, _) in item.steps.items()}
    ints = {name: q for name, (_, q) in item.steps.items()}
    synth_step_exp = exps.pop("synth_step_exp", 0)  # written in the networks section, not the header
    cfg = item.cfg.replace(arm_frac_bits=frac, **exps)
    mod_ints = [None] * (len(ints["mod_weight_step_exp"]) + len(ints["mod_bias_step_exp"]))
    mod_ints[0::2], mod_ints[1::2] = ints["mod_weight_step_exp"], ints["mod_bias_step_exp"]
    nets = Networks(arm, ints["ups_step_exp"][0], mod_ints, synth=ints.get("synth_step_exp"),
                    synth_step_exp=synth_step_exp)
    net_bytes, net_bits = write_networks(nets)
    counts, mask_words = encode_mask(item.masks)
    latent_words = encode_latents(item.grids, arm, cfg)
    data = write_bitstream(item.width, item.height, item.seed, cfg, net_bytes, counts, mask_words, latent_words)
    return Packed(data, cfg, arm, lat_bits, net_bytes, net_bits, latent_words, time.thread_time() - t0)
