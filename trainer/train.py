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
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..decoder.config import CONTEXT_OFFSETS, SYNTH_DENSE
from .model import LOG2_SCALE_MAX, LOG2_SCALE_MIN, LotteryModel, kumaraswamy_noise, soft_round
from .presets import Preset

GRAD_CLIP = 10.0


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1 / mse) if mse > 0 else 100.0


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


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
        # (C, h, 1) stripe masks -> (1, h, 1, C) for contexts laid out (B, h, w, C)
        self._context_masks = [None if m is None else m.permute(1, 2, 0)[None] for m in first._context_masks]

    @property
    def batch(self) -> int:
        return len(self.kept)

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

    # ------------------------------------------------------------------ latents and rate
    def quantized_latents(self, mode: str, temperature: float = 0.3, noise_a: float = 2.0) -> list[torch.Tensor]:
        A = self.cfg.latent_bound
        out = []
        for y in self.latents:
            x = y * self.gain
            if mode == "noise":
                noise = torch.stack([kumaraswamy_noise(x.shape[1:], noise_a, x.device, g) for g in self.generators])
                q = soft_round(soft_round(x, temperature) + noise, temperature)
            elif mode == "ste":
                q = x + (torch.round(x) - x).detach()
            else:
                q = torch.round(x)
            out.append(q.clamp(-A, A - 1))
        return out

    def contexts(self, g: int, v: torch.Tensor) -> torch.Tensor:
        """v: (B, h, w) -> (B, h*w, C) causal contexts."""
        B, h, w = v.shape
        if not self.cfg.arm_context:
            return v.new_zeros(B, h * w, 0)
        padded = F.pad(v, (4, 4, 4, 0))
        ctx = torch.stack([padded[:, 4 - dy:4 - dy + h, 4 - dx:4 - dx + w]
                           for dy, dx in CONTEXT_OFFSETS[:self.cfg.arm_context]], dim=-1)
        if self._context_masks[g] is not None:
            ctx = ctx * self._context_masks[g].to(ctx.device)
        return ctx.reshape(B, h * w, -1)

    def arm_forward(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = ctx
        last = len(self.arm_weights) - 1
        for l, (w, b) in enumerate(zip(self.arm_weights, self.arm_biases)):
            x = torch.baddbmm(b[:, None, :], x, w.transpose(1, 2))
            if l < last:
                x = F.relu(x)
        return x[..., 0], x[..., 1]

    def rate_bits(self, q: list[torch.Tensor]) -> torch.Tensor:
        """(B,) training estimates of the latent rate (continuous Laplace, -log2 of each bin)."""
        ctx = torch.cat([self.contexts(g, v) for g, v in enumerate(q)], dim=1)
        mu, ls = self.arm_forward(ctx)
        inv_b = torch.exp2(-ls.clamp(LOG2_SCALE_MIN, LOG2_SCALE_MAX))
        u = (torch.cat([v.reshape(v.shape[0], -1) for v in q], dim=1) - mu).abs()
        near = torch.exp(-(u - 0.5).abs() * inv_b)
        far = torch.exp(-(u + 0.5) * inv_b)
        p = torch.where(u >= 0.5, 0.5 * (near - far), 1 - 0.5 * (near + far))
        return -torch.log2(p.clamp_min(2.0 ** -24)).sum(dim=1)

    # ------------------------------------------------------------------ synthesis side
    def upsample(self, q: list[torch.Tensor], per_phase: bool = False) -> torch.Tensor:
        """(B, L, H, W); the same two forms as LotteryModel.upsample, each item its own kernel."""
        taps, B = self.cfg.ups_taps, self.batch
        if not per_phase:
            embedded = self.ups_kernel.new_zeros(B, 4, 1, taps + 1, taps + 1)
            for a in range(2):
                for b in range(2):
                    embedded[:, 2 * a + b, 0, a:a + taps, b:b + taps] = self.ups_kernel[:, a, b]
        acc = q[-1][:, None]
        for lvl in range(len(q) - 2, -1, -1):
            h, w = self.shapes[lvl]
            c, hi, wi = acc.shape[1:]
            x = F.pad(acc, (taps // 2,) * 4, mode="replicate").reshape(1, B * c, hi + 2 * (taps // 2),
                                                                        wi + 2 * (taps // 2))
            if per_phase:
                phases = [F.conv2d(x[:, :, a:a + hi + taps - 1, b:b + wi + taps - 1],
                                   self.ups_kernel[:, a, b][:, None, None].expand(B, c, 1, taps, taps)
                                   .reshape(B * c, 1, taps, taps), groups=B * c).reshape(B, c, hi, wi)
                          for a in range(2) for b in range(2)]
                y = torch.stack(phases, dim=2).reshape(B, 4 * c, hi, wi)
            else:
                weight = embedded[:, None].expand(B, c, 4, 1, taps + 1, taps + 1).reshape(B * c * 4, 1, taps + 1,
                                                                                          taps + 1)
                y = F.conv2d(x, weight, groups=B * c).reshape(B, 4 * c, hi, wi)
            acc = F.pixel_shuffle(y, 2)[:, :, :h, :w]
            acc = torch.cat([q[lvl][:, None], acc], dim=1)
        return acc

    def modulate(self, up: torch.Tensor) -> list[torch.Tensor]:
        """Outputs o0..o3 as (B, channels, H*W)."""
        w0, b0, w1, b1, w2, b2, w3, b3 = self.mod
        B = self.batch
        hw = (self.height, self.width)

        def res3x3(x, w, b):
            c = x.shape[1]
            y = F.conv2d(F.pad(x.reshape(1, B * c, *hw), (1, 1, 1, 1), mode="replicate"),
                         w.reshape(B * c, c, 3, 3), b.reshape(-1), groups=B)
            return _gelu(y.reshape(x.shape) + x)

        o0 = _gelu(torch.baddbmm(b0[:, :, None], w0, up.reshape(B, up.shape[1], -1)))
        o1 = _gelu(torch.baddbmm(b1[:, :, None], w1, o0))
        o2 = res3x3(o1, w2, b2)
        o3 = res3x3(o2, w3, b3)
        return [o0, o1, o2, o3]

    def masks(self) -> list[torch.Tensor]:
        """Per item, the top-k of its own scores (k its own kept count); straight-through gradient."""
        B = self.batch
        flat = torch.cat([s.reshape(B, -1) for s in self.scores], dim=1)
        keep = torch.zeros_like(flat)
        for b, kept in enumerate(self.kept):
            if kept:
                keep[b, torch.topk(flat[b].detach(), kept).indices] = 1.0
        keep = keep + flat - flat.detach()
        return [k.reshape(s.shape) for k, s in zip(torch.split(keep, [s[0].numel() for s in self.scores], dim=1),
                                                    self.scores)]

    def synthesis_layers(self) -> list[torch.Tensor]:
        if self.cfg.synth_mode == SYNTH_DENSE:
            return list(self.dense)
        return [getattr(self, f"random_weight{l}") * m for l, m in enumerate(self.masks())]

    def synthesize(self, mods: list[torch.Tensor]) -> torch.Tensor:
        rewind = [torch.cat(mods[::-1][:k + 1], dim=1) for k in range(1, 4)]
        h = self.coords.T.expand(self.batch, -1, -1)
        weights = self.synthesis_layers()
        for l, w in enumerate(weights):
            if l:
                width = h.shape[1]
                h = torch.bmm(w[:, :, :width], h) + torch.bmm(w[:, :, width:], rewind[l - 1])
            else:
                h = torch.bmm(w, h)
            if l < len(weights) - 1:
                h = _gelu(h)
        return torch.sigmoid(2 * h).transpose(1, 2).reshape(self.batch, self.height, self.width, 3)

    def forward(self, mode: str = "hard", temperature: float = 0.3, noise_a: float = 2.0):
        q = self.quantized_latents(mode, temperature, noise_a)
        image = self.synthesize(self.modulate(self.upsample(q, per_phase=mode == "hard")))
        return image, self.rate_bits(q)


# ---------------------------------------------------------------------- training

def loss_terms(model: BatchedModel, targets: torch.Tensor, lmbdas: torch.Tensor, **forward_args):
    """Per item (B,): loss, mse, bpp."""
    images, rates = model(**forward_args)
    mse = torch.mean((images - targets) ** 2, dim=(1, 2, 3))
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


def _param_groups(model: BatchedModel, lr: float, score_lr: float):
    scores = {id(p) for p in model.scores}
    rest = [p for p in model.parameters() if id(p) not in scores]
    return [{"params": rest, "lr": lr}, {"params": list(model.scores), "lr": score_lr}]


def _postfix(bar, loss, mse, bpp) -> None:
    psnr = [psnr_from_mse(m) for m in mse.tolist()]
    if len(psnr) == 1:
        bar.set_postfix(loss=f"{loss.item():.5f}", psnr=f"{psnr[0]:.2f}", est_bpp=f"{bpp.item():.3f}")
    else:
        bar.set_postfix(psnr=f"{min(psnr):.2f}..{max(psnr):.2f}", est_bpp=f"{bpp.min().item():.3f}.."
                        f"{bpp.max().item():.3f}")


def train(model: BatchedModel, targets: torch.Tensor, lmbdas: torch.Tensor, preset: Preset,
          steps: int | None = None, progress: bool = True) -> list[dict]:
    """Train in place; returns each item's final hard-rounded training estimates."""
    steps = preset.steps if steps is None else steps
    opt = torch.optim.Adam(_param_groups(model, preset.lr, preset.score_lr))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    params = list(model.parameters())
    desc = "stage 1" if model.batch == 1 else f"stage 1 ({model.batch} items)"
    bar = tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True, mininterval=0.5)
    for step in bar:
        frac = step / max(steps - 1, 1)
        loss, mse, bpp = loss_terms(model, targets, lmbdas, mode="noise",
                                    temperature=0.3 - 0.2 * frac, noise_a=2.0 - frac)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # items share no parameter: each gets exactly its own gradient
        clip_per_item(params, GRAD_CLIP)
        opt.step()
        sched.step()
        if step % preset.log_every == 0 or step == steps - 1:
            _postfix(bar, loss.detach(), mse.detach(), bpp.detach())
    if preset.finetune_steps:
        finetune(model, targets, lmbdas, preset, progress)
    return evaluate(model, targets, lmbdas)


@torch.no_grad()
def evaluate(model: BatchedModel, targets: torch.Tensor, lmbdas: torch.Tensor) -> list[dict]:
    loss, mse, bpp = loss_terms(model, targets, lmbdas, mode="hard")
    return [{"loss": l, "psnr_float": psnr_from_mse(m), "latent_bpp_estimate": b}
            for l, m, b in zip(loss.tolist(), mse.tolist(), bpp.tolist())]


def finetune(model: BatchedModel, targets: torch.Tensor, lmbdas: torch.Tensor, preset: Preset,
             progress: bool = True, eval_every: int = 10) -> None:
    """Straight-through rounding at a low rate, C3-style: each item keeps its own best state."""
    opt = torch.optim.Adam(_param_groups(model, preset.finetune_lr, preset.finetune_lr))
    params = list(model.parameters())
    best = torch.tensor([r["loss"] for r in evaluate(model, targets, lmbdas)])
    best_state = [p.detach().clone() for p in params]
    bar = tqdm(range(preset.finetune_steps), desc="stage 2", disable=not progress, dynamic_ncols=True)
    for step in bar:
        loss, _, _ = loss_terms(model, targets, lmbdas, mode="ste")
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        clip_per_item(params, GRAD_CLIP)
        opt.step()
        if step % eval_every == eval_every - 1:
            current = torch.tensor([r["loss"] for r in evaluate(model, targets, lmbdas)])
            improved = current < best
            if improved.any():
                best = torch.where(improved, current, best)
                with torch.no_grad():
                    for saved, p in zip(best_state, params):
                        saved[improved.to(saved.device)] = p[improved.to(p.device)]
            bar.set_postfix(best_loss=f"{best.mean().item():.5f}")
    with torch.no_grad():
        for saved, p in zip(best_state, params):
            p.copy_(saved)
