"""B independent overfits in one batched model: the trainer every encode goes through (one
image is B = 1).

Items share the image size, the architecture (kept weight counts aside), the preset and the step
count; each has its own image, lambda, kept ratio and seed. Every parameter of
:class:`~.model.LotteryModel` is stacked on a leading item axis and each op runs once for the
batch (bmm, grouped convolutions), so the items never mix: the loss is the sum of the items'
losses, Adam is elementwise, and what the authors do globally is done per item here — gradient
clipping, the top-k of the mask, the quantization noise (one generator per item) and stage 2's
reset-to-best. After training the slices go back into per-item ``LotteryModel``s, which
quantize and write exactly as before.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from ..decoder.config import SYNTH_DENSE
from .model import (LotteryModel, arm_rate_bits, latent_contexts, modulate, modulated_synthesis_mse,
                    quantize_latents, synthesize, top_k_masks, upsample)
from . import fused
from .optim import BatchedSOAP
from .presets import Preset
from .threads import ThreadTuner

GRAD_CLIP = 10.0
# Training fuses its elementwise chains (trainer.fused) when at least this much work (items x pixels x
# steps: 256x256 for 1000 steps) repays the compile: ~20 s in a fresh process, ~4 s with a warm cache.
COMPILE_MIN_WORK = 256 * 256 * 1000
# From this many pixels on, training runs the modulation's head and the synthesis as chunked
# passes (model.modulated_synthesis_mse); below, plain autograd through the same computation is
# faster. Training steps of two commits alternated in fresh processes (benchmarks/train_step_ab.py,
# results/train_step_chunked): 768x512 0.76x the time, 256x256 1.10x; between, not measured.
CHUNKED_MIN_PIXELS = 1 << 18


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1 / mse) if mse > 0 else 100.0


class BatchedModel(nn.Module):
    def __init__(self, items: list[LotteryModel]):
        super().__init__()
        first = items[0]
        for m in items[1:]:
            if (m.height, m.width) != (first.height, first.width):
                raise ValueError("a batch holds images of one size")
            if m.cfg.replace(kept_weights=0) != first.cfg.replace(kept_weights=0):
                raise ValueError("a batch holds one architecture (kept weight counts may differ)")
        self.cfg, self.height, self.width, self.gain = first.cfg, first.height, first.width, first.gain
        self.shapes = first.shapes
        self.kept = [m.cfg.kept_weights for m in items]
        self.generators = [m.noise_generator for m in items]

        def stack(get) -> nn.Parameter:
            return nn.Parameter(torch.stack([get(m).detach() for m in items]))
        self.latents = nn.ParameterList([stack(lambda m, g=g: m.latents[g]) for g in range(len(first.latents))])
        self.ups_kernel = stack(lambda m: m.ups_kernel)
        self.mod = nn.ParameterList([stack(lambda m, k=k: m.mod[k]) for k in range(len(first.mod))])
        self.arm_weights = nn.ParameterList([stack(lambda m, l=l: m.arm[l].weight) for l in range(len(first.arm))])
        self.arm_biases = nn.ParameterList([stack(lambda m, l=l: m.arm[l].bias) for l in range(len(first.arm))])
        self.dense = nn.ParameterList([stack(lambda m, l=l: m.dense[l]) for l in range(len(first.dense))])
        self.scores = nn.ParameterList([stack(lambda m, l=l: m.scores[l]) for l in range(len(first.scores))])
        if self.cfg.synth_mode != SYNTH_DENSE:
            for l in range(len(first.scores)):
                self.register_buffer(f"random_weight{l}",
                                     torch.stack([getattr(m, f"random_weight{l}") for m in items]))
        self.register_buffer("coords", first.coords)
        self.register_buffer("context_index", first.context_index, persistent=False)

    @property
    def batch(self) -> int:
        return len(self.kept)

    @torch.no_grad()
    def keep(self, index: list[int], optimizers: list[torch.optim.Optimizer] = ()) -> None:
        """Shrinks the batch in place to the items at ``index`` (the seed search's survivors); the
        optimizer's per-parameter state is sliced alike, so training goes on where it was.
        Parameters are replaced, not resized: autograd keeps a leaf's shape in its gradient
        accumulator, so a leaf whose .data changed shape fails its next backward."""
        idx = torch.tensor(index, dtype=torch.long)
        replaced = {}
        for module in self.modules():
            for name, p in list(module._parameters.items()):
                new = nn.Parameter(p.detach()[idx.to(p.device)].clone())
                module._parameters[name] = replaced[p] = new
            for name, buf in list(module._buffers.items()):
                if name.startswith("random_weight"):
                    module._buffers[name] = buf[idx.to(buf.device)].clone()
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["params"] = [replaced[p] for p in group["params"]]
            for old, new in replaced.items():
                state = optimizer.state.pop(old, None)
                if state is not None:
                    optimizer.state[new] = {k: v[idx.to(v.device)].clone() if torch.is_tensor(v) and v.dim() else v
                                            for k, v in state.items()}
        self.kept = [self.kept[i] for i in index]
        self.generators = [self.generators[i] for i in index]

    @torch.no_grad()
    def unstack_into(self, items: list[LotteryModel]) -> None:
        """Copies each item's slice back into its own model."""
        for b, m in enumerate(items):
            for g, p in enumerate(m.latents):
                p.copy_(self.latents[g][b])
            m.ups_kernel.copy_(self.ups_kernel[b])
            for p, s in zip(m.mod, self.mod):
                p.copy_(s[b])
            for layer, w, bias in zip(m.arm, self.arm_weights, self.arm_biases):
                layer.weight.copy_(w[b])
                layer.bias.copy_(bias[b])
            for p, s in zip(list(m.dense) + list(m.scores), list(self.dense) + list(self.scores)):
                p.copy_(s[b])

    # ------------------------------------------------------------------ the model's computation
    def quantized_latents(self, mode: str, temperature: float = 0.3, noise_a: float = 2.0,
                          noise_std: float = 0.2) -> list[torch.Tensor]:
        return quantize_latents(list(self.latents), self.gain, self.cfg.latent_bound, mode, temperature, noise_a,
                                self.generators, noise_std)

    def rate_bits(self, q: list[torch.Tensor]) -> torch.Tensor:
        """(B,) training estimates of the latent rate."""
        return arm_rate_bits(q, latent_contexts(q, self.context_index, self.cfg.arm_parents > 0), list(self.arm_weights),
                             list(self.arm_biases), bool(self.cfg.arm_residual), bool(self.cfg.arm_stabiliser))

    def synthesis_layers(self) -> list[torch.Tensor]:
        if self.cfg.synth_mode == SYNTH_DENSE:
            return list(self.dense)
        return [getattr(self, f"random_weight{l}") * m for l, m in enumerate(top_k_masks(list(self.scores), self.kept))]

    def forward(self, mode: str = "hard", temperature: float = 0.3, noise_a: float = 2.0, noise_std: float = 0.2,
                per_phase: bool | None = None):
        """(B, H, W, 3) images in [0, 1] and (B,) rate estimates. per_phase: see upsample (default:
        on for "hard", the decoder's own multiplies)."""
        q = self.quantized_latents(mode, temperature, noise_a, noise_std)
        up = upsample(q, self.ups_kernel, self.shapes, per_phase=mode == "hard" if per_phase is None else per_phase)
        image = synthesize(self.coords, self.synthesis_layers(), modulate(up, list(self.mod)), self.height, self.width)
        return image, self.rate_bits(q)

    def mse_and_rate(self, targets: torch.Tensor, mode: str = "hard", temperature: float = 0.3, noise_a: float = 2.0,
                     noise_std: float = 0.2, per_phase: bool | None = None):
        """(B,) mean squared errors against targets (B, H, W, 3) and rate estimates, as forward's image
        would give them; with gradients on and a large image, the modulation's head and the synthesis
        with its error run as chunked passes (model.modulated_synthesis_mse), the same values faster."""
        if not torch.is_grad_enabled() or self.height * self.width < CHUNKED_MIN_PIXELS:
            image, rate = self(mode, temperature, noise_a, noise_std, per_phase)
            return torch.mean((image - targets) ** 2, dim=(1, 2, 3)), rate
        q = self.quantized_latents(mode, temperature, noise_a, noise_std)
        up = upsample(q, self.ups_kernel, self.shapes, per_phase=mode == "hard" if per_phase is None else per_phase)
        mse = modulated_synthesis_mse(self.coords, self.synthesis_layers(), up, list(self.mod), targets)
        return mse, self.rate_bits(q)


# ---------------------------------------------------------------------- training

def loss_terms(model: BatchedModel, targets: torch.Tensor, lmbdas: torch.Tensor, **forward_args):
    """Per item (B,): loss, mse, bpp."""
    mse, rates = model.mse_and_rate(targets, **forward_args)
    bpp = rates / (model.height * model.width)
    return mse + lmbdas * bpp, mse, bpp


def clip_per_item(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """clip_grad_norm_ for each item on its own slices (the leading axis); returns the norms."""
    grads = [p.grad for p in params if p.grad is not None]
    B = grads[0].shape[0]
    norms = torch.sqrt(sum(g.reshape(B, -1).pow(2).sum(dim=1) for g in grads))
    coef = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view(B, *[1] * (g.dim() - 1)))
    return norms


class Optimizers:
    """The optimizers of one training phase, stepped together under one learning-rate factor
    (each group's rate is its base rate times the factor): the latents and the mask scores on
    Adam, the networks on Adam or SOAP (preset.optimizer)."""

    def __init__(self, model: BatchedModel, preset: Preset, lr: float, score_lr: float, latents: bool = True):
        scores = {id(p) for p in model.scores}
        lat = {id(p) for p in model.latents}
        nets = [p for p in model.parameters() if id(p) not in scores and id(p) not in lat]
        if preset.score_optimizer not in ("adam", "soap"):
            raise ValueError(f"unknown score optimizer {preset.score_optimizer!r} (adam or soap)")
        score_soap = preset.score_optimizer == "soap" and preset.optimizer == "soap"
        groups = [] if score_soap else [{"params": list(model.scores), "lr": score_lr}]
        if latents:
            groups.append({"params": list(model.latents), "lr": lr})
        if preset.optimizer == "soap":
            self.all = [torch.optim.Adam(groups), BatchedSOAP(nets, lr=lr)] if groups else [BatchedSOAP(nets, lr=lr)]
            if score_soap:
                self.all.append(BatchedSOAP(list(model.scores), lr=score_lr))
        elif preset.optimizer == "adam":
            self.all = [torch.optim.Adam(groups + [{"params": nets, "lr": lr}])]
        else:
            raise ValueError(f"unknown optimizer {preset.optimizer!r} (adam or soap)")
        for opt in self.all:
            for group in opt.param_groups:
                group["base_lr"] = group["lr"]

    @property
    def params(self) -> list[torch.Tensor]:
        """Every parameter stepped (read from the groups: BatchedModel.keep replaces them)."""
        return [p for opt in self.all for group in opt.param_groups for p in group["params"]]

    def set_factor(self, factor: float) -> None:
        for opt in self.all:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * factor

    def zero_grad(self) -> None:
        for opt in self.all:
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self.all:
            opt.step()


class BestState:
    """Each item's lowest loss seen and its parameters then (stage 2, the hard phase)."""

    def __init__(self, params: list[torch.Tensor], loss: torch.Tensor):
        self.params, self.loss = params, loss
        self.saved = [p.detach().clone() for p in params]

    @torch.no_grad()
    def offer(self, loss: torch.Tensor) -> None:
        """loss (B,): the current state's; items that improved save their slices."""
        improved = loss < self.loss
        if improved.any():
            self.loss = torch.where(improved, loss, self.loss)
            for saved, p in zip(self.saved, self.params):
                saved[improved.to(p.device)] = p[improved.to(p.device)]

    @torch.no_grad()
    def restore(self) -> None:
        for saved, p in zip(self.saved, self.params):
            p.copy_(saved)


def cosine(step: int, steps: int, start: float = 1.0, end: float = 0.0) -> float:
    """The learning-rate factor at ``step`` of a cosine from start to end over ``steps``."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))


def _postfix(bar, loss, mse, bpp) -> None:
    psnr = [psnr_from_mse(m) for m in mse.tolist()]
    if len(psnr) == 1:
        bar.set_postfix(loss=f"{loss.item():.5f}", psnr=f"{psnr[0]:.2f}", est_bpp=f"{bpp.item():.3f}")
    else:
        bar.set_postfix(psnr=f"{min(psnr):.2f}..{max(psnr):.2f}", est_bpp=f"{bpp.min().item():.3f}.."
                        f"{bpp.max().item():.3f}")


def train(model: BatchedModel, targets: torch.Tensor, lmbdas: torch.Tensor, preset: Preset,
          steps: int | None = None, progress: bool = True, threads: int | None = None,
          candidates: int = 1, warmup_steps: int = 0, trace: list | None = None) -> list[dict]:
    """Train in place; returns each item's final hard-rounded training estimates. threads: torch
    threads (None: measured and re-measured as training goes, see threads.ThreadTuner).

    Seed search: with ``candidates`` K > 1 the batch holds K candidates per item (item i's are
    rows i*K .. i*K+K-1: other seeds, so other random synthesis weights and initialisations).
    They train together for the first ``warmup_steps`` steps of the schedule; then each item keeps
    the candidate with the lowest hard-rounded loss, the batch shrinks to those, and training goes
    on with the same optimizer state. Each result then carries ``"candidate"``: the kept row.

    trace: when a list, every ``log_every`` steps gets one entry per row, the step's own training
    estimates (noisy or straight-through, not the file's): step, row, mse, bpp."""
    steps = preset.steps if steps is None else steps
    if model.batch % candidates:
        raise ValueError(f"a batch of {model.batch} rows is not {candidates} candidates per item")
    with fused.enabled(compiles(model, steps)):
        return _train(model, targets, lmbdas, preset, steps, progress, threads, candidates, warmup_steps, trace)


def compiles(model: BatchedModel, steps: int) -> bool:
    """Whether training this batch for this many steps is worth compiling the fused parts for."""
    return model.batch * model.height * model.width * steps >= COMPILE_MIN_WORK


def _train(model: BatchedModel, targets: torch.Tensor, lmbdas: torch.Tensor, preset: Preset, steps: int,
           progress: bool, threads: int | None, candidates: int, warmup_steps: int, trace: list | None) -> list[dict]:
    hard_steps = round(preset.hard_phase * steps)
    noisy_steps = steps - hard_steps
    kept_rows = list(range(model.batch))
    tuner = ThreadTuner(threads)
    opt = Optimizers(model, preset, preset.lr, preset.score_lr)
    desc = "stage 1" if model.batch == 1 else f"stage 1 ({model.batch} items)"
    bar = tqdm(range(noisy_steps), desc=desc, disable=not progress, dynamic_ncols=True, mininterval=0.5)
    for step in bar:
        if candidates > 1 and step == min(warmup_steps, noisy_steps - 1):
            kept_rows = select_candidates(model, opt, targets, lmbdas, candidates)
            targets, lmbdas = targets[kept_rows], lmbdas[kept_rows]
            bar.set_description("stage 1" if model.batch == 1 else f"stage 1 ({model.batch} items)")
        opt.set_factor(cosine(step, noisy_steps))
        loss, mse, bpp = loss_terms(model, targets, lmbdas, **stage1_quantizer(preset, step, noisy_steps))
        opt.zero_grad()
        loss.sum().backward()  # items share no parameter: each gets exactly its own gradient
        clip_per_item(opt.params, GRAD_CLIP)
        opt.step()
        tuner.step_done()
        if step % preset.log_every == 0 or step == noisy_steps - 1:
            _postfix(bar, loss.detach(), mse.detach(), bpp.detach())
            if trace is not None:
                trace.extend({"step": step, "row": r, "mse": m, "bpp": b}
                             for r, m, b in zip(kept_rows, mse.tolist(), bpp.tolist()))
    if hard_steps:
        hard_phase(model, targets, lmbdas, preset, hard_steps, progress, tuner, trace, kept_rows, noisy_steps)
    if preset.finetune_steps:
        finetune(model, targets, lmbdas, preset, progress, tuner=tuner)
    return [{**r, "threads": tuner.chosen, "candidate": row % candidates}
            for r, row in zip(evaluate(model, targets, lmbdas), kept_rows)]


def hard_phase(model: BatchedModel, targets: torch.Tensor, lmbdas: torch.Tensor, preset: Preset, steps: int,
               progress: bool, tuner: ThreadTuner, trace: list | None, rows: list[int], first_step: int) -> None:
    """preset.hard_phase: the networks alone on the file's own integer latents (hard rounding:
    the latents get no gradient and no optimizer), so the ARM learns the rate of the symbols it
    will code and the synthesis the values it will decode. The loss each step measures is the
    state's exact loss before that step's update, so each item keeps its best state for free."""
    start, end = preset.hard_phase_lr
    opt = Optimizers(model, preset, start, start * preset.score_lr / preset.lr, latents=False)
    best = BestState(opt.params, torch.full((model.batch,), float("inf")))
    bar = tqdm(range(steps + 1), desc="hard phase", disable=not progress, dynamic_ncols=True, mininterval=0.5)
    for step in bar:
        loss, mse, bpp = loss_terms(model, targets, lmbdas, mode="hard", per_phase=False)
        best.offer(loss.detach().cpu())
        if step == steps:  # the last forward only measures the last update
            break
        opt.set_factor(cosine(step, steps, 1.0, end / start))
        opt.zero_grad()
        loss.sum().backward()
        clip_per_item(opt.params, GRAD_CLIP)
        opt.step()
        tuner.step_done()
        if step % preset.log_every == 0:
            bar.set_postfix(best_loss=f"{best.loss.mean().item():.5f}")
            if trace is not None:
                trace.extend({"step": first_step + step, "row": r, "mse": m, "bpp": b}
                             for r, m, b in zip(rows, mse.tolist(), bpp.tolist()))
    best.restore()


def stage1_quantizer(preset: Preset, step: int, steps: int) -> dict:
    """loss_terms' quantizer arguments at ``step`` of stage 1: the preset's annealed noise, then
    straight-through hard rounding for its last ``hard_tail`` of the steps."""
    noisy = steps - round(preset.hard_tail * steps)
    if step >= noisy:
        return {"mode": "ste"}
    frac = step / max(noisy - 1, 1)  # the annealing ends where the hard tail begins

    def at(pair: tuple[float, float]) -> float:
        return pair[0] + (pair[1] - pair[0]) * frac
    if preset.noise_std is not None:
        return {"mode": "gaussian", "temperature": at(preset.temperature), "noise_std": at(preset.noise_std)}
    return {"mode": "noise", "temperature": at(preset.temperature), "noise_a": at(preset.noise_a)}


def select_candidates(model: BatchedModel, opt: Optimizers, targets: torch.Tensor, lmbdas: torch.Tensor,
                      candidates: int) -> list[int]:
    """Keeps each item's candidate with the lowest hard-rounded loss; returns the kept rows."""
    losses = torch.tensor([r["loss"] for r in evaluate(model, targets, lmbdas)]).reshape(-1, candidates)
    rows = [i * candidates + int(k) for i, k in enumerate(losses.argmin(dim=1))]
    model.keep(rows, opt.all)
    return rows


@torch.no_grad()
def evaluate(model: BatchedModel, targets: torch.Tensor, lmbdas: torch.Tensor) -> list[dict]:
    loss, mse, bpp = loss_terms(model, targets, lmbdas, mode="hard")
    return [{"loss": l, "psnr_float": psnr_from_mse(m), "latent_bpp_estimate": b}
            for l, m, b in zip(loss.tolist(), mse.tolist(), bpp.tolist())]


def finetune(model: BatchedModel, targets: torch.Tensor, lmbdas: torch.Tensor, preset: Preset,
             progress: bool = True, eval_every: int = 10, tuner: ThreadTuner | None = None) -> None:
    """Straight-through rounding at a low rate, C3-style: each item keeps its own best state."""
    opt = Optimizers(model, preset, preset.finetune_lr, preset.finetune_lr)
    params = opt.params
    best = BestState(params, torch.tensor([r["loss"] for r in evaluate(model, targets, lmbdas)]))
    bar = tqdm(range(preset.finetune_steps), desc="stage 2", disable=not progress, dynamic_ncols=True)
    for step in bar:
        loss, _, _ = loss_terms(model, targets, lmbdas, mode="ste")
        opt.zero_grad()
        loss.sum().backward()
        clip_per_item(params, GRAD_CLIP)
        opt.step()
        if tuner is not None:
            tuner.step_done()
        if step % eval_every == eval_every - 1:
            best.offer(torch.tensor([r["loss"] for r in evaluate(model, targets, lmbdas)]))
            bar.set_postfix(best_loss=f"{best.loss.mean().item():.5f}")
    best.restore()
