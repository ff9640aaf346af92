"""From the trained float model to what the file holds: integer latents, the mask, and the sent
networks quantized with searched steps (the model is left holding the dequantized values)."""
from __future__ import annotations

import numpy as np
import torch

from ..decoder.config import SYNTH_DENSE
from ..decoder.format import NET_VALUE_MAX, tensor_bits
from .bitstream import ItemIntegers, Packed
from .model import LotteryModel, modulate, synthesize, upsample
from .train import BatchedModel

STEP_EXP_CANDIDATES = range(2, 17)


def integer_latents(model: LotteryModel) -> list[np.ndarray]:
    with torch.no_grad():
        return [q.cpu().numpy().astype(np.int64) for q in model.quantized_latents("hard")]


def integer_masks(model: LotteryModel, kept: int | None = None) -> list[np.ndarray]:
    if model.cfg.synth_mode == SYNTH_DENSE:  # no mask: every weight is sent
        return [np.zeros((o, i), dtype=bool) for i, o in model.cfg.synth_in_out]
    with torch.no_grad():
        return [m.detach().cpu().numpy() > 0.5 for m in model.masks(kept)]


def _round_to_step(p: torch.Tensor, exp: int) -> tuple[torch.Tensor, np.ndarray]:
    q = torch.round(p.detach() * 2.0 ** exp).clamp(-NET_VALUE_MAX, NET_VALUE_MAX)
    return q * 2.0 ** -exp, q.cpu().numpy().astype(np.int64)


def sent_float_groups(batch: BatchedModel) -> dict[str, list[torch.Tensor]]:
    """Header field (or the dense synthesis' own step) -> the parameters quantized with that step."""
    groups = {"ups_step_exp": [batch.ups_kernel], "mod_weight_step_exp": list(batch.mod[0::2]),
              "mod_bias_step_exp": list(batch.mod[1::2])}
    if batch.cfg.synth_mode == SYNTH_DENSE:
        groups["synth_step_exp"] = list(batch.dense)
    return groups


class _Distortion:
    """Per-item MSE of the hard-rounded forward against the targets, for searches that change one
    group at a time: only what that group feeds is rebuilt (the upsampled latents for the
    upsampling kernel, the synthesis weights for a dense synthesis)."""

    def __init__(self, batch: BatchedModel, targets: torch.Tensor):
        self.batch, self.targets = batch, targets
        self.latents = batch.quantized_latents("hard")
        self.refresh("ups_step_exp")
        self.refresh("synth_step_exp")

    def refresh(self, name: str) -> None:
        if name == "ups_step_exp":
            self.up = upsample(self.latents, self.batch.ups_kernel, self.batch.shapes, per_phase=True)
        if name == "synth_step_exp":
            self.layers = self.batch.synthesis_layers()

    def __call__(self, name: str) -> np.ndarray:
        """(B,) MSE with group `name` as the batch holds it now."""
        self.refresh(name)
        b = self.batch
        image = synthesize(b.coords, self.layers, modulate(self.up, list(b.mod)), b.height, b.width)
        return torch.mean((image - self.targets) ** 2, dim=(1, 2, 3)).double().cpu().numpy()


@torch.no_grad()
def search_steps(batch: BatchedModel, targets: torch.Tensor, lmbdas: list[float]) -> list[dict]:
    """Per item, the step of each sent float group minimising distortion + lambda * bits / pixel.

    Groups are searched in a fixed order, each with the earlier ones already quantized; every
    item is searched at once (one batched forward per candidate step), each keeping its own best.
    Leaves the batch holding the dequantized values. Returns per item {group: (exp, ints)}."""
    B, pixels = batch.batch, batch.height * batch.width
    weights = np.asarray(lmbdas, dtype=np.float64) / pixels
    distortion = _Distortion(batch, targets)
    chosen: list[dict] = [{} for _ in range(B)]
    for name, params in sent_float_groups(batch).items():
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
        distortion.refresh(name)  # the later groups see this one's chosen values
    return chosen


# The sent float groups RDOQ revisits (their integers may reach format.NET_VALUE_MAX).
RDOQ_GROUPS = ("ups_step_exp", "mod_weight_step_exp", "mod_bias_step_exp")


@torch.no_grad()
def rdoq_networks(batch: BatchedModel, targets: torch.Tensor, lmbdas: list[float], chosen: list[dict],
                  passes: int = 1) -> int:
    """Rate-distortion optimised quantization of the upsampling kernel and the modulation after
    :func:`search_steps`: each non-zero integer in turn moves one step toward zero where that
    lowers distortion + lambda * bits / pixel, the file's own cost (the hard-rounded forward, the
    networks' exact coded bits). Rounding each value to its nearest step does not minimise it: the
    integers interact through the image. (Trying a move away from zero too, on the 16 files of
    results/cpu_crop256_vs_coolchic, gained at most 0.03 dB more for twice the forwards.) Every
    item tries its own move in one batched forward. Updates `chosen` and the batch's dequantized
    values in place; returns the moves kept."""
    B, pixels = batch.batch, batch.height * batch.width
    weights = np.asarray(lmbdas, dtype=np.float64) / pixels
    groups = sent_float_groups(batch)
    distortion = _Distortion(batch, targets)
    bits = {(name, j): np.array([tensor_bits(chosen[b][name][1][j]) for b in range(B)])
            for name in RDOQ_GROUPS for j in range(len(groups[name]))}
    dist, rate = distortion(RDOQ_GROUPS[0]), sum(bits.values())  # per item: the cost is dist + weights * rate
    kept = 0
    for _ in range(passes):
        for name in RDOQ_GROUPS:
            steps = torch.tensor([2.0 ** -chosen[b][name][0] for b in range(B)], dtype=torch.float32,
                                 device=batch.ups_kernel.device)
            for j, p in enumerate(groups[name]):
                key = (name, j)
                ints = np.stack([chosen[b][name][1][j].reshape(-1) for b in range(B)])
                flat = p.view(B, -1)

                def set_column(i: int, values: np.ndarray) -> None:
                    flat[:, i] = torch.from_numpy(values.astype(np.float32)).to(flat.device) * steps

                for i in np.flatnonzero(ints.any(axis=0)):
                    now = ints[:, i].copy()
                    trial = now - np.sign(now)
                    set_column(i, trial)
                    ints[:, i] = trial
                    trial_bits = np.array([tensor_bits(ints[b]) if now[b] else bits[key][b] for b in range(B)])
                    trial_dist, trial_rate = distortion(name), rate - bits[key] + trial_bits
                    better = (now != 0) & (trial_dist + weights * trial_rate < dist + weights * rate)
                    ints[:, i] = np.where(better, trial, now)
                    dist, rate = np.where(better, trial_dist, dist), np.where(better, trial_rate, rate)
                    bits[key] = np.where(better, trial_bits, bits[key])
                    kept += int(better.sum())
                    set_column(i, ints[:, i])
                for b in range(B):
                    chosen[b][name][1][j][...] = ints[b].reshape(chosen[b][name][1][j].shape)
            distortion.refresh(name)  # the last move's rejection restored values the cache has not seen
    return kept


def item_integers(model: LotteryModel, steps: dict) -> ItemIntegers:
    """What :func:`bitstream.pack` needs of one trained item; steps: this item's entry of
    :func:`search_steps` (the model already holds those dequantized values)."""
    arm_float = [(layer.weight.detach().cpu().numpy().astype(np.float64),
                  layer.bias.detach().cpu().numpy().astype(np.float64)) for layer in model.arm]
    return ItemIntegers(model.width, model.height, model.seed, model.cfg, integer_latents(model),
                        integer_masks(model), arm_float, steps)


@torch.no_grad()
def adopt_quantized_arm(model: LotteryModel, packed: Packed) -> None:
    """Leave the model holding the ARM the file sends (dequantized), like every other group."""
    for layer, w, b in zip(model.arm, packed.arm.weights, packed.arm.biases):
        layer.weight.copy_(torch.from_numpy(w).float() * 2.0 ** -packed.arm.frac_bits)
        layer.bias.copy_(torch.from_numpy(b).float() * 2.0 ** -packed.arm.frac_bits)
