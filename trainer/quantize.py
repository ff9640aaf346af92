"""From the trained float model to what the file holds: integer latents, the mask, and the sent
networks quantized with searched steps (the model is left holding the dequantized values)."""
from __future__ import annotations

import numpy as np
import torch

from ..decoder.config import SYNTH_DENSE, ArchConfig, FormatError
from ..decoder.entropy import ARM_PARAM_MAX, IntArm, check_arm_bounds, latent_bits, latent_inputs
from ..decoder.format import Networks, best_golomb_order, golomb_bits
from .model import LotteryModel, modulate, synthesize, upsample
from .train import BatchedModel

ARM_FRAC_CANDIDATES = range(3, 13)
STEP_EXP_CANDIDATES = range(2, 17)


def tensor_bits(q: np.ndarray) -> int:
    flat = q.reshape(-1)
    return 5 + (golomb_bits(flat, best_golomb_order(flat)) if flat.size else 0)


def integer_latents(model: LotteryModel) -> list[np.ndarray]:
    with torch.no_grad():
        return [q.cpu().numpy().astype(np.int64) for q in model.quantized_latents("hard")]


def integer_masks(model: LotteryModel, kept: int | None = None) -> list[np.ndarray]:
    if model.cfg.synth_mode == SYNTH_DENSE:  # no mask: every weight is sent
        return [np.zeros((o, i), dtype=bool) for i, o in model.cfg.synth_in_out]
    with torch.no_grad():
        return [m.detach().cpu().numpy() > 0.5 for m in model.masks(kept)]


def _quantize_arm(model: LotteryModel, frac: int) -> IntArm:
    scale = float(1 << frac)
    ws, bs = [], []
    for layer in model.arm:
        ws.append(np.clip(np.round(layer.weight.detach().cpu().numpy().astype(np.float64) * scale),
                          -ARM_PARAM_MAX, ARM_PARAM_MAX).astype(np.int64))
        bs.append(np.clip(np.round(layer.bias.detach().cpu().numpy().astype(np.float64) * scale),
                          -ARM_PARAM_MAX, ARM_PARAM_MAX).astype(np.int64))
    return IntArm(ws, bs, frac)


def search_arm(model: LotteryModel, grids: list[np.ndarray], cfg: ArchConfig):
    """The fractional-bit count minimising real latent bits + ARM bits."""
    best = None
    inputs = latent_inputs(grids, cfg)
    for frac in ARM_FRAC_CANDIDATES:
        arm = _quantize_arm(model, frac)
        try:
            check_arm_bounds(arm, cfg.latent_bound)
        except FormatError:
            continue
        c = cfg.replace(arm_frac_bits=frac)
        net = sum(tensor_bits(t) for t in arm.weights + arm.biases)
        lat = latent_bits(grids, arm, c, inputs)
        if best is None or lat + net < best[0]:
            best = (lat + net, frac, arm, lat, net)
    if best is None:
        raise RuntimeError("no ARM quantization keeps the accumulators within 32 bits")
    return best[1:]


def _round_to_step(p: torch.Tensor, exp: int) -> tuple[torch.Tensor, np.ndarray]:
    q = torch.round(p.detach() * 2.0 ** exp).clamp(-(1 << 20), 1 << 20)
    return q * 2.0 ** -exp, q.cpu().numpy().astype(np.int64)


@torch.no_grad()
def search_steps(batch: BatchedModel, targets: torch.Tensor, lmbdas: list[float]) -> list[dict]:
    """Per item, the step of each sent float group minimising distortion + lambda * bits / pixel.

    Groups are searched in a fixed order, each with the earlier ones already quantized; every
    item is searched at once (one batched forward per candidate step), each keeping its own best.
    Leaves the batch holding the dequantized values. Returns per item {group: (exp, ints)}."""
    B, pixels = batch.batch, batch.height * batch.width
    q_latents = batch.quantized_latents("hard")
    weights = np.asarray(lmbdas, dtype=np.float64) / pixels

    # Only the group being searched changes between candidates: the upsampled latents are rebuilt
    # while the upsampling kernel is searched, the synthesis weights while a dense one is.
    up = upsample(q_latents, batch.ups_kernel, batch.shapes, per_phase=True)
    layers = batch.synthesis_layers()

    def refresh(name: str) -> None:
        nonlocal up, layers
        if name == "ups_step_exp":
            up = upsample(q_latents, batch.ups_kernel, batch.shapes, per_phase=True)
        if name == "synth_step_exp":
            layers = batch.synthesis_layers()

    def distortion(name: str) -> np.ndarray:
        refresh(name)
        image = synthesize(batch.coords, layers, modulate(up, list(batch.mod)), batch.height, batch.width)
        return torch.mean((image - targets) ** 2, dim=(1, 2, 3)).double().cpu().numpy()

    groups = {  # header field (or the dense synthesis' own step) -> parameters quantized with that step
        "ups_step_exp": [batch.ups_kernel],
        "mod_weight_step_exp": list(batch.mod[0::2]),
        "mod_bias_step_exp": list(batch.mod[1::2]),
    }
    if batch.cfg.synth_mode == SYNTH_DENSE:
        groups["synth_step_exp"] = list(batch.dense)
    chosen: list[dict] = [{} for _ in range(B)]
    for name, params in groups.items():
        originals = [p.detach().clone() for p in params]
        best_cost = np.full(B, np.inf)
        best: list = [None] * B
        for exp in STEP_EXP_CANDIDATES:
            quantized = [_round_to_step(o, exp) for o in originals]
            for p, (f, _) in zip(params, quantized):
                p.copy_(f)
            bits = np.array([sum(tensor_bits(q[b]) for _, q in quantized) for b in range(B)])
            cost = distortion(name) + weights * bits
            for b in np.flatnonzero(cost < best_cost):
                best_cost[b] = cost[b]
                best[b] = (exp, [(f[b].clone(), q[b]) for f, q in quantized])
        for b, (exp, item) in enumerate(best):
            for p, (f, _) in zip(params, item):
                p[b].copy_(f)
            chosen[b][name] = (exp, [q for _, q in item])
        refresh(name)  # the later groups see this one's chosen values
    return chosen


def quantize_model(model: LotteryModel, steps: dict):
    """Returns (cfg with steps, Networks, integer latents, masks, bits per module); steps: this
    item's entry of :func:`search_steps` (the model already holds those dequantized values)."""
    cfg = model.cfg
    grids = integer_latents(model)
    masks = integer_masks(model)
    frac, arm, lat_bits, arm_bits = search_arm(model, grids, cfg)
    cfg = cfg.replace(arm_frac_bits=frac)
    with torch.no_grad():
        for layer, w, b in zip(model.arm, arm.weights, arm.biases):
            layer.weight.copy_(torch.from_numpy(w).float() * 2.0 ** -frac)
            layer.bias.copy_(torch.from_numpy(b).float() * 2.0 ** -frac)
    chosen = {name: exp for name, (exp, _) in steps.items()}
    ints = {name: q for name, (_, q) in steps.items()}
    synth_step_exp = chosen.pop("synth_step_exp", 0)  # written in the networks section, not the header
    cfg = cfg.replace(**chosen)
    mod_ints = [None] * len(model.mod)
    mod_ints[0::2], mod_ints[1::2] = ints["mod_weight_step_exp"], ints["mod_bias_step_exp"]
    nets = Networks(arm, ints["ups_step_exp"][0], mod_ints, synth=ints.get("synth_step_exp"),
                    synth_step_exp=synth_step_exp)
    return cfg, nets, grids, masks, {"latent_bits": lat_bits}
