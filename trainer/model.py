"""The trainable LotteryCodec model: the decoder's computation in torch, plus what training adds
(float latents, noise quantizers, mask scores with a straight-through top-k).

With :meth:`LotteryModel.forward` in ``mode="hard"`` after :func:`quantize.quantize_model`,
the image equals the reference decoder's (same formulas, float32; see tests).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..decoder.config import CONTEXT_OFFSETS, SYNTH_DENSE, ArchConfig
from ..decoder.entropy import LOG2_SCALE_MIN, N_SCALES, SCALE_STEPS_PER_OCTAVE
from ..decoder.philox import synthesis_weights
from ..decoder.reference import coordinates

LOG2_SCALE_MAX = LOG2_SCALE_MIN + (N_SCALES - 1) / SCALE_STEPS_PER_OCTAVE


def bicubic_phases(taps: int) -> np.ndarray:
    """Separable bicubic (a = -0.75) 2x interpolation written as the (2, 2, T, T) phase kernel."""
    def cubic(d: float) -> float:
        a, d = -0.75, abs(d)
        if d <= 1:
            return (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
        if d < 2:
            return a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a
        return 0.0
    k = np.zeros((2, taps))
    for a in range(2):
        src = (a + 0.5) / 2 - 0.5  # source position of output 2i+a relative to i
        for p in range(taps):
            k[a, p] = cubic(src - (a - taps // 2 + p))
    return np.einsum("ap,bq->abpq", k, k).astype(np.float32)


def soft_round(x: torch.Tensor, t: float) -> torch.Tensor:
    fl = torch.floor(x)
    r = x - fl - 0.5
    return fl + 0.5 + 0.5 * torch.tanh(r / t) / math.tanh(0.5 / t)


def kumaraswamy_noise(shape, a: float, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise in (-1/2, 1/2) with mode 0; a = 1 is uniform, larger a is more peaked."""
    b = (2 ** a * (a - 1) + 1) / a  # makes the mode of Kumaraswamy(a, b) equal 1/2
    u = torch.rand(shape, device=device, generator=generator).clamp(1e-6, 1 - 1e-6)
    return (1 - (1 - u) ** (1 / b)) ** (1 / a) - 0.5


class LotteryModel(nn.Module):
    def __init__(self, cfg: ArchConfig, height: int, width: int, seed: int, gain: float = 16.0):
        super().__init__()
        self.cfg, self.height, self.width, self.seed, self.gain = cfg, height, width, seed, gain
        self.shapes = cfg.grid_shapes(height, width)
        self.latents = nn.ParameterList([nn.Parameter(torch.zeros(h, w)) for h, w in self.shapes])
        self.ups_kernel = nn.Parameter(torch.from_numpy(bicubic_phases(cfg.ups_taps)))

        def conv_init(out_c: int, in_c: int, k: int = 1):
            fan = in_c * k * k
            w = torch.empty(out_c, in_c, k, k).uniform_(-1 / math.sqrt(fan), 1 / math.sqrt(fan))
            b = torch.empty(out_c).uniform_(-1 / math.sqrt(fan), 1 / math.sqrt(fan))
            return nn.Parameter(w.squeeze(-1).squeeze(-1) if k == 1 else w), nn.Parameter(b)

        mw, mo = cfg.mod_width, cfg.mod_out
        self.mod = nn.ParameterList([*conv_init(mw, cfg.n_grids), *conv_init(mo, mw),
                                     *conv_init(mo, mo, 3), *conv_init(mo, mo, 3)])
        self.arm = nn.ModuleList([nn.Linear(i, o) for i, o in cfg.arm_in_out])
        with torch.no_grad():  # start from a unit-ish Laplace: mu = 0, log2 scale = 0
            self.arm[-1].weight.zero_()
            self.arm[-1].bias.zero_()

        in_out = cfg.synth_in_out
        self.dense = nn.ParameterList()
        self.scores = nn.ParameterList()
        if cfg.synth_mode == SYNTH_DENSE:  # the ablation: the same weights as a start, then trained
            self.dense.extend(nn.Parameter(torch.from_numpy(w)) for w in synthesis_weights(seed, in_out))
        else:
            for l, w in enumerate(synthesis_weights(seed, in_out)):
                self.register_buffer(f"random_weight{l}", torch.from_numpy(w))
            self.scores.extend(
                nn.Parameter(torch.empty(o, i).uniform_(-1 / math.sqrt(o * i), 1 / math.sqrt(o * i)))
                for i, o in in_out)
        ys, xs = np.meshgrid(coordinates(height), coordinates(width), indexing="ij")
        self.register_buffer("coords", torch.from_numpy(np.stack([xs.ravel(), ys.ravel()], 1)).contiguous())
        self._context_masks = self._stripe_masks()
        # Quantization noise comes from the model's own generator, so an item trains the same
        # alone or in a batch (trainer.train); None: the global generator.
        self.noise_generator: torch.Generator | None = None

    # ------------------------------------------------------------------ latents and rate
    def _stripe_masks(self) -> list[torch.Tensor | None]:
        """Per striped grid, (C, h, 1) masks zeroing context rows above the pixel's stripe."""
        dys = torch.tensor([dy for dy, _ in CONTEXT_OFFSETS[:self.cfg.arm_context]], dtype=torch.long)
        masks: list[torch.Tensor | None] = []
        for h, w in self.shapes:
            if h * w <= self.cfg.shared_max_pixels:
                masks.append(None)
            else:
                rows = torch.arange(h) % self.cfg.stripe_height
                masks.append((rows[None, :] >= dys[:, None]).float()[:, :, None])
        return masks

    def quantized_latents(self, mode: str, temperature: float = 0.3, noise_a: float = 2.0):
        A = self.cfg.latent_bound
        out = []
        for y in self.latents:
            x = y * self.gain
            if mode == "noise":
                q = soft_round(soft_round(x, temperature) + kumaraswamy_noise(x.shape, noise_a, x.device,
                                                                              self.noise_generator),
                               temperature)
            elif mode == "ste":
                q = x + (torch.round(x) - x).detach()
            else:
                q = torch.round(x)
            out.append(q.clamp(-A, A - 1))
        return out

    def contexts(self, g: int, v: torch.Tensor) -> torch.Tensor:
        h, w = v.shape
        padded = F.pad(v, (4, 4, 4, 0))
        ctx = torch.stack([padded[4 - dy:4 - dy + h, 4 - dx:4 - dx + w]
                           for dy, dx in CONTEXT_OFFSETS[:self.cfg.arm_context]]) if self.cfg.arm_context \
            else v.new_zeros(0, h, w)
        if self._context_masks[g] is not None:
            ctx = ctx * self._context_masks[g].to(ctx.device)
        return ctx.reshape(ctx.shape[0], -1).T

    def arm_forward(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = ctx
        for l, layer in enumerate(self.arm):
            x = layer(x)
            if l < len(self.arm) - 1:
                x = F.relu(x)
        return x[:, 0], x[:, 1]

    def rate_bits(self, q: list[torch.Tensor]) -> torch.Tensor:
        """Training estimate of the latent rate: continuous Laplace, -log2 of each bin."""
        ctx = torch.cat([self.contexts(g, v) for g, v in enumerate(q)])
        mu, ls = self.arm_forward(ctx)
        inv_b = torch.exp2(-ls.clamp(LOG2_SCALE_MIN, LOG2_SCALE_MAX))
        u = (torch.cat([v.reshape(-1) for v in q]) - mu).abs()
        near = torch.exp(-(u - 0.5).abs() * inv_b)
        far = torch.exp(-(u + 0.5) * inv_b)
        p = torch.where(u >= 0.5, 0.5 * (near - far), 1 - 0.5 * (near + far))
        return -torch.log2(p.clamp_min(2.0 ** -24)).sum()

    # ------------------------------------------------------------------ synthesis side
    def upsample(self, q: list[torch.Tensor], per_phase: bool = False) -> torch.Tensor:
        """Cumulative 2x steps from the coarsest grid, each channel its own conv group.

        Training embeds the four T x T phase kernels in one (T+1) x (T+1) conv (fastest on
        CPU); ``per_phase`` runs one T x T conv per phase instead, spending exactly the decoder's
        multiplies (what a FLOP counter should see). Both compute the same values.
        """
        taps = self.cfg.ups_taps
        if not per_phase:
            embedded = self.ups_kernel.new_zeros(4, 1, taps + 1, taps + 1)
            for a in range(2):
                for b in range(2):
                    embedded[2 * a + b, 0, a:a + taps, b:b + taps] = self.ups_kernel[a, b]
        acc = q[-1][None, None]
        for lvl in range(len(q) - 2, -1, -1):
            h, w = self.shapes[lvl]
            c, hi, wi = acc.shape[1:]
            x = F.pad(acc, (taps // 2,) * 4, mode="replicate")
            if per_phase:
                phases = [F.conv2d(x[:, :, a:a + hi + taps - 1, b:b + wi + taps - 1],
                                   self.ups_kernel[a, b].expand(c, 1, taps, taps), groups=c)
                          for a in range(2) for b in range(2)]
                y = torch.stack(phases, dim=2).reshape(1, 4 * c, hi, wi)
            else:
                y = F.conv2d(x, embedded.repeat(c, 1, 1, 1), groups=c)
            acc = F.pixel_shuffle(y, 2)[:, :, :h, :w]
            acc = torch.cat([q[lvl][None, None], acc], dim=1)
        return acc[0]

    def modulate(self, up: torch.Tensor) -> list[torch.Tensor]:
        """Outputs o0..o3 as (channels, H*W) matrices."""
        w0, b0, w1, b1, w2, b2, w3, b3 = self.mod
        hw = (self.height, self.width)
        gelu = lambda x: F.gelu(x, approximate="tanh")  # noqa: E731

        def res3x3(x, w, b):
            y = F.conv2d(F.pad(x.reshape(1, -1, *hw), (1, 1, 1, 1), mode="replicate"), w, b)
            return gelu(y.reshape(x.shape) + x)

        o0 = gelu(torch.addmm(b0[:, None], w0, up.reshape(up.shape[0], -1)))
        o1 = gelu(torch.addmm(b1[:, None], w1, o0))
        o2 = res3x3(o1, w2, b2)
        o3 = res3x3(o2, w3, b3)
        return [o0, o1, o2, o3]

    def masks(self, kept: int | None = None) -> list[torch.Tensor]:
        """Global top-k (kept, default the config's) over all scores; straight-through gradient."""
        kept = self.cfg.kept_weights if kept is None else kept
        flat = torch.cat([s.reshape(-1) for s in self.scores])
        keep = torch.zeros_like(flat)
        if kept:
            keep[torch.topk(flat.detach(), kept).indices] = 1.0
        keep = keep + flat - flat.detach()
        return [k.reshape(s.shape) for k, s in zip(torch.split(keep, [s.numel() for s in self.scores]),
                                                    self.scores)]

    def synthesis_layers(self) -> list[torch.Tensor]:
        """The weights the synthesis multiplies: masked random ones, or the trained dense ones."""
        if self.cfg.synth_mode == SYNTH_DENSE:
            return list(self.dense)
        return [getattr(self, f"random_weight{l}") * m for l, m in enumerate(self.masks())]

    def synthesize(self, mods: list[torch.Tensor]) -> torch.Tensor:
        """Masked random MLP, channel-first: layer l adds W_mod @ [rewind modulation] to W_h @ h."""
        rewind = [torch.cat(mods[::-1][:k + 1], dim=0) for k in range(1, 4)]
        h = self.coords.T
        weights = self.synthesis_layers()
        n_layers = len(weights)
        for l, w in enumerate(weights):
            if l:
                width = h.shape[0]
                h = w[:, :width] @ h + w[:, width:] @ rewind[l - 1]
            else:
                h = w @ h
            if l < n_layers - 1:
                h = F.gelu(h, approximate="tanh")
        return torch.sigmoid(2 * h).T.reshape(self.height, self.width, 3)

    def forward(self, mode: str = "hard", temperature: float = 0.3, noise_a: float = 2.0,
                with_rate: bool = True):
        q = self.quantized_latents(mode, temperature, noise_a)
        image = self.synthesize(self.modulate(self.upsample(q, per_phase=mode == "hard")))
        rate = self.rate_bits(q) if with_rate else None
        return image, rate
