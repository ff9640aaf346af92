"""The trainable LotteryCodec model: the decoder's computation in torch, plus what training adds
(float latents, noise quantizers, mask scores with a straight-through top-k).

With :meth:`LotteryModel.forward` in ``mode="hard"`` after an encode (quantized steps and ARM),
the image equals the reference decoder's (same formulas, float32; see tests).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..decoder.config import CONTEXT_OFFSETS, PARENT_OFFSETS, SYNTH_DENSE, ArchConfig
from ..decoder.entropy import LOG2_SCALE_MIN, N_SCALES, SCALE_STEPS_PER_OCTAVE
from ..decoder.philox import synthesis_weights
from ..decoder.reference import coordinates
from .fused import Fused

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


_GELU_A = 2 * math.sqrt(2 / math.pi)   # 0.5 (1 + tanh(z)) = sigmoid(2 z), z = sqrt(2/pi) (x + 0.044715 x^3)
_GELU_B = _GELU_A * 0.044715


@Fused
def _gelu_forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.sigmoid_((x * x).mul_(_GELU_B).add_(_GELU_A).mul_(x))
    return x * s, s


@Fused
def _gelu_backward(x: torch.Tensor, s: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    # d/dx x s(x) = s + x s (1 - s) (A + 3 B x^2)
    return (x * x).mul_(3 * _GELU_B).add_(_GELU_A).mul_(x).mul_(s).mul_(1 - s).add_(s).mul_(grad)


class _TanhGelu(torch.autograd.Function):
    """GELU's tanh form (the format's), as x * sigmoid(2z): the same function, computed through
    sigmoid because torch's CPU tanh and F.gelu(approximate="tanh") are 4x slower than its
    sigmoid (torch 2.13, AVX2). Forward and backward are each one fused loop when training
    compiles them (trainer.fused)."""

    @staticmethod
    def forward(ctx, x):
        y, s = _gelu_forward(x)
        ctx.save_for_backward(x, s)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, s = ctx.saved_tensors
        return _gelu_backward(x, s, grad)


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return _TanhGelu.apply(x)


# ---------------------------------------------------------------------- the computation
# One definition, on a leading item axis B: LotteryModel runs it with B = 1, the batched trainer
# (train.BatchedModel) on B stacked items.

def quantize_latents(latents: list[torch.Tensor], gain: float, bound: int, mode: str, temperature: float,
                     noise_a: float, generators: list, noise_std: float = 0.2) -> list[torch.Tensor]:
    """latents: (B, h, w) per grid; noise for item b from generators[b] (None: the global one).
    Modes: "noise" (soft round, Kumaraswamy(noise_a) noise, soft round), "gaussian" (the same with
    Gaussian noise of std noise_std), "ste" (straight-through rounding), "hard"."""
    out = []
    for y in latents:
        x = y * gain
        if mode in ("noise", "gaussian"):
            if mode == "noise":
                noise = torch.stack([kumaraswamy_noise(x.shape[1:], noise_a, x.device, g) for g in generators])
            else:
                noise = noise_std * torch.stack([torch.randn(x.shape[1:], device=x.device, generator=g)
                                                 for g in generators])
            q = soft_round(soft_round(x, temperature) + noise, temperature)
        elif mode == "ste":
            q = x + (torch.round(x) - x).detach()
        else:
            q = torch.round(x)
        out.append(q.clamp(-bound, bound - 1))
    return out


def context_index(shapes: list[tuple[int, int]], n_context: int, stripe_height: int,
                  shared_max_pixels: int, n_parents: int = 0) -> torch.Tensor:
    """(N, n_context + n_parents) positions of every latent's ARM inputs in :func:`latent_contexts`'
    flat layout: the flattened grids (raster order, grid after grid, N latents in all), then with
    parents each grid's upsampled parent (grid l + 1 at grid l's size, for all but the coarsest),
    then a zero, the position of every input that reads "outside": a spatial context outside its
    grid or, in a striped grid, above the latent's stripe (grids of more than shared_max_pixels
    values are striped, as the coder cuts them); a parent offset outside the grid; the coarsest
    grid's parents (docs/FORMAT.md 6.2, decoder.entropy.unit_inputs)."""
    dy = torch.tensor([o[0] for o in CONTEXT_OFFSETS[:n_context]], dtype=torch.long)
    dx = torch.tensor([o[1] for o in CONTEXT_OFFSETS[:n_context]], dtype=torch.long)
    py = torch.tensor([o[0] for o in PARENT_OFFSETS[:n_parents]], dtype=torch.long)
    px = torch.tensor([o[1] for o in PARENT_OFFSETS[:n_parents]], dtype=torch.long)
    sizes = [h * w for h, w in shapes]
    n_latents = sum(sizes)
    total = n_latents + (sum(sizes[:-1]) if n_parents else 0)
    out, start, parent_start = [], 0, n_latents
    for g, (h, w) in enumerate(shapes):
        y, x = torch.arange(h)[:, None, None], torch.arange(w)[None, :, None]
        top = (y // stripe_height) * stripe_height if h * w > shared_max_pixels else torch.zeros_like(y)
        yy, xx = y - dy, x - dx
        inside = (yy >= top) & (xx >= 0) & (xx < w)
        cols = [torch.where(inside, start + yy * w + xx, total).reshape(h * w, n_context)]
        if n_parents:
            yy, xx = y + py, x + px
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w) & (g + 1 < len(shapes))
            cols.append(torch.where(inside, parent_start + yy * w + xx, total).reshape(h * w, n_parents))
            parent_start += h * w if g + 1 < len(shapes) else 0
        out.append(torch.cat(cols, dim=1))
        start += h * w
    return torch.cat(out)


def upsampled_parents(q: list[torch.Tensor]) -> list[torch.Tensor]:
    """Grid l + 1 upsampled 2x bilinearly to grid l's size, for every grid but the coarsest: the
    parent features' source (decoder.entropy.upsampled_parent computes the same, in sixteenths)."""
    return [F.interpolate(c[:, None], scale_factor=2, mode="bilinear", align_corners=False)[:, 0, :f.shape[1], :f.shape[2]]
            for f, c in zip(q[:-1], q[1:])]


class _Gather(torch.autograd.Function):
    """flat[:, index] with the backward as one index_add: autograd's own indexing backward (and
    the earlier stack of shifted slices) cost 2-3x as much, at 256x256 ~10 ms of a ~145 ms step."""

    @staticmethod
    def forward(ctx, flat, index):
        ctx.save_for_backward(index)
        ctx.width = flat.shape[1]
        return flat.index_select(1, index)

    @staticmethod
    def backward(ctx, grad):
        index, = ctx.saved_tensors
        return grad.new_zeros(grad.shape[0], ctx.width).index_add_(1, index, grad), None


def latent_contexts(q: list[torch.Tensor], index: torch.Tensor, parents: bool = False) -> torch.Tensor:
    """q: (B, h, w) per grid, index from context_index (parents: built with n_parents > 0) ->
    (B, N, inputs) the ARM's inputs: causal contexts, then parent features."""
    B = q[0].shape[0]
    if not index.shape[1]:
        return q[0].new_zeros(B, index.shape[0], 0)
    ups = upsampled_parents(q) if parents else []
    flat = torch.cat([v.reshape(B, -1) for v in q + ups] + [q[0].new_zeros(B, 1)], dim=1)
    return _Gather.apply(flat, index.reshape(-1)).reshape(B, *index.shape)


def arm_forward(ctx: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor],
                residual: bool = False, stabiliser: bool = False):
    """ctx (B, N, C); weights (B, out, in), biases (B, out) per tensor pair the file sends (the
    layers, then the stabiliser's, config.ArchConfig.arm_in_out) -> mu, log2 scale (B, N).
    The same computation as decoder.entropy.IntArm.forward, in floats."""
    n = len(weights) - stabiliser
    x = ctx
    for l in range(n):
        y = torch.baddbmm(biases[l][:, None, :], x, weights[l].transpose(1, 2))
        x = F.relu(y + x if residual else y) if l < n - 1 else y
    if stabiliser:
        x = x + torch.baddbmm(biases[n][:, None, :], ctx, weights[n].transpose(1, 2))
    return x[..., 0], x[..., 1]


def rate_bits(q: list[torch.Tensor], mu: torch.Tensor, log2_scale: torch.Tensor) -> torch.Tensor:
    """(B,) training estimate of the latent rate: continuous Laplace, -log2 of each bin."""
    inv_b = torch.exp2(-log2_scale.clamp(LOG2_SCALE_MIN, LOG2_SCALE_MAX))
    u = (torch.cat([v.reshape(v.shape[0], -1) for v in q], dim=1) - mu).abs()
    near = torch.exp(-(u - 0.5).abs() * inv_b)
    far = torch.exp(-(u + 0.5) * inv_b)
    p = torch.where(u >= 0.5, 0.5 * (near - far), 1 - 0.5 * (near + far))
    return -torch.log2(p.clamp_min(2.0 ** -24)).sum(dim=1)


@Fused
def arm_rate_bits(q: list[torch.Tensor], ctx: torch.Tensor, weights: list[torch.Tensor],
                  biases: list[torch.Tensor], residual: bool = False, stabiliser: bool = False) -> torch.Tensor:
    """(B,) rate estimate from the contexts: the ARM and the rate as one graph, so that training
    compiles the biases, ReLUs and the rate's elementwise chain (forward and backward) around the
    matrix products. 256x256, one thread: this part alone 30 -> 22 ms (ARM 16/16); a whole step,
    A/B in one process, 143.4 -> 142.2 ms (16/16) and 118.5 -> 113.9 ms (8/8)."""
    mu, log2_scale = arm_forward(ctx, weights, biases, residual, stabiliser)
    return rate_bits(q, mu, log2_scale)


def _conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, groups: int = 1) -> torch.Tensor:
    """F.conv2d run in channels-last memory: for these convolutions of a few channels over a whole
    image, oneDNN's channels-first path is 2-3x slower, its backward most (256x256, one thread,
    forward + backward: the 3x3 residual conv 3 -> 3 8.6 -> 2.9 ms, the last upsampling step
    7.7 -> 4.7 ms). Same values up to float summation order."""
    cl = torch.channels_last
    return F.conv2d(x.contiguous(memory_format=cl), weight.contiguous(memory_format=cl), bias, groups=groups)


def upsample(q: list[torch.Tensor], kernel: torch.Tensor, shapes: list[tuple[int, int]],
             per_phase: bool = False) -> torch.Tensor:
    """q: (B, h, w) per grid, kernel (B, 2, 2, T, T) -> (B, L, H, W): cumulative 2x steps from the
    coarsest grid, each (item, channel) its own conv group.

    Training embeds the four T x T phase kernels in one (T+1) x (T+1) conv (fastest on CPU);
    ``per_phase`` runs one T x T conv per phase instead, spending exactly the decoder's multiplies
    (what a FLOP counter should see). Both compute the same values."""
    B, taps = kernel.shape[0], kernel.shape[-1]
    if not per_phase:
        embedded = kernel.new_zeros(B, 4, 1, taps + 1, taps + 1)
        for a in range(2):
            for b in range(2):
                embedded[:, 2 * a + b, 0, a:a + taps, b:b + taps] = kernel[:, a, b]
    acc = q[-1][:, None]
    for lvl in range(len(q) - 2, -1, -1):
        h, w = shapes[lvl]
        c, hi, wi = acc.shape[1:]
        pad = taps // 2
        x = F.pad(acc, (pad,) * 4, mode="replicate").reshape(1, B * c, hi + 2 * pad, wi + 2 * pad)
        if per_phase:
            phases = [_conv2d(x[:, :, a:a + hi + taps - 1, b:b + wi + taps - 1],
                              kernel[:, a, b][:, None, None].expand(B, c, 1, taps, taps).reshape(B * c, 1, taps, taps),
                              groups=B * c).reshape(B, c, hi, wi)
                      for a in range(2) for b in range(2)]
            y = torch.stack(phases, dim=2).reshape(B, 4 * c, hi, wi)
        else:
            weight = embedded[:, None].expand(B, c, 4, 1, taps + 1, taps + 1).reshape(B * c * 4, 1, taps + 1, taps + 1)
            y = _conv2d(x, weight, groups=B * c).reshape(B, 4 * c, hi, wi)
        acc = F.pixel_shuffle(y, 2)[:, :, :h, :w]
        acc = torch.cat([q[lvl][:, None], acc], dim=1)
    return acc


def modulate(up: torch.Tensor, mod: list[torch.Tensor]) -> list[torch.Tensor]:
    """up (B, L, H, W); mod: w0, b0, w1, b1, w2, b2, w3, b3 with a leading B -> o0..o3 (B, c, H*W)."""
    w0, b0, w1, b1 = mod[:4]
    B, _, height, width = up.shape
    o0 = _gelu(torch.baddbmm(b0[:, :, None], w0, up.reshape(B, up.shape[1], -1)))
    o1 = _gelu(torch.baddbmm(b1[:, :, None], w1, o0))
    return [o0, o1, *modulation_tail(o1, mod[4:], height, width)]


def modulation_tail(o1: torch.Tensor, mod: list[torch.Tensor], height: int, width: int) -> list[torch.Tensor]:
    """o2, o3 from o1 (B, c, H*W): the two residual 3x3 layers (mod: w2, b2, w3, b3)."""
    B = o1.shape[0]

    def res3x3(x, w, b):
        c = x.shape[1]
        y = _conv2d(F.pad(x.reshape(1, B * c, height, width), (1, 1, 1, 1), mode="replicate"),
                    w.reshape(B * c, c, 3, 3), b.reshape(-1), groups=B)
        return _gelu(y.reshape(x.shape) + x)

    o2 = res3x3(o1, mod[0], mod[1])
    return [o2, res3x3(o2, mod[2], mod[3])]


def top_k_masks(scores: list[torch.Tensor], kept: list[int]) -> list[torch.Tensor]:
    """scores (B, out, in) per layer; item b keeps the top kept[b] of its own scores over all
    layers; straight-through gradient to the scores."""
    B = scores[0].shape[0]
    flat = torch.cat([s.reshape(B, -1) for s in scores], dim=1)
    keep = torch.zeros_like(flat)
    for b, k in enumerate(kept):
        if k:
            keep[b, torch.topk(flat[b].detach(), k).indices] = 1.0
    keep = keep + flat - flat.detach()
    return [k.reshape(s.shape) for k, s in zip(torch.split(keep, [s[0].numel() for s in scores], dim=1), scores)]


def synthesize(coords: torch.Tensor, weights: list[torch.Tensor], mods: list[torch.Tensor], height: int,
               width: int) -> torch.Tensor:
    """Masked random MLP, channel-first: layer l adds W_mod @ [rewind modulation] to W_h @ h.
    coords (H*W, 2), weights (B, out, in), mods (B, c, H*W) -> (B, H, W, 3) in [0, 1]."""
    B = weights[0].shape[0]
    rewind = [torch.cat(mods[::-1][:k + 1], dim=1) for k in range(1, 4)]
    h = coords.T.expand(B, -1, -1)
    for l, w in enumerate(weights):
        if l:
            n = h.shape[1]
            h = torch.bmm(w[:, :, :n], h) + torch.bmm(w[:, :, n:], rewind[l - 1])
        else:
            h = torch.bmm(w, h)
        if l < len(weights) - 1:
            h = _gelu(h)
    return torch.sigmoid(2 * h).transpose(1, 2).reshape(B, height, width, 3)


# Pixels per chunk of synthesis_mse: a chunk's activations (up to 49 channels) stay in cache, and
# the per-chunk overhead of a few dozen small ops stays small. 768x512, cpu-full networks, two
# threads, the synthesis' forward + backward (first version): 4096 pixels 246 ms, 16384 201,
# 65536 223; autograd through synthesize over the whole image 332.
SYNTH_CHUNK = 16384


def _synthesis_chunk(coords: torch.Tensor, weights: list[torch.Tensor], rewind: torch.Tensor, saved: list):
    """synthesize's layers on one chunk of pixels -> (B, 3, P), before the image's layout.
    coords (P, 2); rewind (B, C, P): the modulations in rewind order (o3, o2, o1, o0), so that
    layer l's are a prefix of it. Each layer's input, pre-activation and activation go to
    ``saved`` for the backward."""
    B = weights[0].shape[0]
    h = coords.T.expand(B, -1, -1)
    for l, w in enumerate(weights):
        n = h.shape[1]
        pre = torch.bmm(w[:, :, :n], h)
        if l:
            pre.baddbmm_(w[:, :, n:], rewind[:, :w.shape[2] - n])
        if l < len(weights) - 1:
            act, s = _gelu_forward(pre)
        else:
            pre, act = None, torch.sigmoid(2 * pre)
            s = act
        saved.append((h, pre, s))
        h = act
    return h


def _o0_chunk(up: torch.Tensor, w0: torch.Tensor, b0: torch.Tensor):
    """modulate's o0 on a chunk of pixels (up (B, L, P)) -> (o0, its pre-activation, sigmoid)."""
    pre = torch.baddbmm(b0[:, :, None], w0, up)
    o0, s = _gelu_forward(pre)
    return o0, pre, s


def _o0_backward(g: torch.Tensor, up: torch.Tensor, w0: torch.Tensor, pre: torch.Tensor, s: torch.Tensor,
                 gw0: torch.Tensor, gb0: torch.Tensor) -> torch.Tensor:
    """Accumulates o0's weight and bias gradients from g = d/d o0 on a chunk; returns d/d up."""
    g = _gelu_backward(pre, s, g)
    gw0.baddbmm_(g, up.transpose(1, 2))
    gb0 += g.sum(dim=2)
    return torch.bmm(w0.transpose(1, 2), g)


class _ModulationHead(torch.autograd.Function):
    """modulate's o1 = gelu(w1 gelu(w0 up + b0) + b1), chunk by chunk, with o0 (the widest
    modulation, mod_width channels over every pixel) never stored: the backward recomputes each
    chunk's o0 in cache."""

    @staticmethod
    def forward(ctx, up, chunk, w0, b0, w1, b1):
        B, _, P = up.shape
        o1 = up.new_empty(B, w1.shape[1], P)
        for s in range(0, P, chunk):
            o0 = _o0_chunk(up[:, :, s:s + chunk], w0, b0)[0]
            o1[:, :, s:s + chunk] = _gelu_forward(torch.baddbmm(b1[:, :, None], w1, o0))[0]
        ctx.save_for_backward(up, w0, b0, w1, b1)
        ctx.chunk = chunk
        return o1

    @staticmethod
    def backward(ctx, g_o1):
        up, w0, b0, w1, b1 = ctx.saved_tensors
        P = up.shape[2]
        g_up = torch.empty_like(up)
        gw0, gb0, gw1, gb1 = (torch.zeros_like(x) for x in (w0, b0, w1, b1))
        for s in range(0, P, ctx.chunk):
            e = min(P, s + ctx.chunk)
            upc = up[:, :, s:e]
            o0, pre0, s0 = _o0_chunk(upc, w0, b0)
            pre1 = torch.baddbmm(b1[:, :, None], w1, o0)
            g = _gelu_backward(pre1, _gelu_forward(pre1)[1], g_o1[:, :, s:e])
            gw1.baddbmm_(g, o0.transpose(1, 2))
            gb1 += g.sum(dim=2)
            g_up[:, :, s:e] = _o0_backward(torch.bmm(w1.transpose(1, 2), g), upc, w0, pre0, s0, gw0, gb0)
        return g_up, None, gw0, gb0, gw1, gb1


class _SynthesisMSE(torch.autograd.Function):
    """(B,) mean squared error of synthesize(...) against targets, with the synthesis run chunk by
    chunk and differentiated in the same pass: the error's gradient is known during the forward
    (2 (image - target) / 3HW per item), so each chunk goes forward and back while its activations
    are in cache, and no tensor the size of the image's hidden layers is ever written; o0 is
    recomputed per chunk from the upsampled grids (and its share of the gradient taken back to
    them there). The backward only scales the stored gradients by the incoming one.
    With _ModulationHead, a training step at 768x512 takes 0.76x the time of autograd through
    modulate, synthesize and the image's error (results/train_step_chunked); at 256x256, where the
    activations fit in the L3 cache, 1.10x, so training uses it on large images only
    (train.CHUNKED_MIN_PIXELS)."""

    @staticmethod
    def forward(ctx, coords, targets, chunk, up, w0, b0, *tensors):
        n = len(tensors) - 3
        weights, small = tensors[:n], tensors[n:][::-1]  # o3, o2, o1: the rewind's order
        B, P = weights[0].shape[0], coords.shape[0]
        t = targets.reshape(B, P, 3)
        small_rewind = torch.cat(small, dim=1)
        k = small_rewind.shape[1]
        g_small, g_up = torch.empty_like(small_rewind), torch.empty_like(up)
        gw = [torch.zeros_like(w) for w in weights]
        gw0, gb0 = torch.zeros_like(w0), torch.zeros_like(b0)
        err = coords.new_zeros(B)
        for s in range(0, P, chunk):
            e = min(P, s + chunk)
            upc = up[:, :, s:e]
            o0, pre0, s0 = _o0_chunk(upc, w0, b0)
            rewind = torch.cat([small_rewind[:, :, s:e], o0], dim=1)
            saved = []
            out = _synthesis_chunk(coords[s:e], weights, rewind, saved)
            diff = out - t[:, s:e].transpose(1, 2)
            err += (diff * diff).sum(dim=(1, 2))
            g = diff.mul_(2.0 / (3 * P))  # d mse / d out
            gr = torch.empty_like(rewind)
            for l in range(n - 1, -1, -1):
                h, pre, act = saved[l]
                g = g.mul_(act * (1 - act) * 2) if l == n - 1 else _gelu_backward(pre, act, g)
                w, width = weights[l], h.shape[1]
                gw[l][:, :, :width].baddbmm_(g, h.transpose(1, 2))
                if l:
                    c = w.shape[2] - width
                    gw[l][:, :, width:].baddbmm_(g, rewind[:, :c].transpose(1, 2))
                    if l == n - 1:  # the widest prefix (the layers' prefixes shrink toward layer 1)
                        gr[:, :c] = torch.bmm(w[:, :, width:].transpose(1, 2), g)
                        gr[:, c:] = 0
                    else:
                        gr[:, :c].baddbmm_(w[:, :, width:].transpose(1, 2), g)
                    g = torch.bmm(w[:, :, :width].transpose(1, 2), g)
            g_small[:, :, s:e] = gr[:, :k]
            g_up[:, :, s:e] = _o0_backward(gr[:, k:], upc, w0, pre0, s0, gw0, gb0)
        sizes = [m.shape[1] for m in small]
        ctx.grads = [g_up, gw0, gb0, *gw, *list(torch.split(g_small, sizes, dim=1))[::-1]]
        return err / (3 * P)

    @staticmethod
    def backward(ctx, grad):
        grads, ctx.grads = ctx.grads, None
        if not bool((grad == 1).all()):  # loss.sum() gives ones: the stored gradients as they are
            grads = [g * grad.view(-1, *[1] * (g.dim() - 1)) for g in grads]
        return (None, None, None, *grads)


def modulated_synthesis_mse(coords: torch.Tensor, weights: list[torch.Tensor], up: torch.Tensor,
                            mod: list[torch.Tensor], targets: torch.Tensor, chunk: int = SYNTH_CHUNK) -> torch.Tensor:
    """(B,) mean squared error of synthesize(coords, weights, modulate(up, mod)) against targets
    (B, H, W, 3), for training: the same values and gradients, with o0 never stored and the
    synthesis run chunk by chunk (_ModulationHead, _SynthesisMSE). up (B, L, H, W)."""
    B, L, height, width = up.shape
    flat = up.reshape(B, L, -1)
    o1 = _ModulationHead.apply(flat, chunk, *mod[:4])
    o2, o3 = modulation_tail(o1, mod[4:], height, width)
    return _SynthesisMSE.apply(coords, targets, chunk, flat, mod[0], mod[1], *weights, o1, o2, o3)


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
            last = len(self.arm) - 1 - cfg.arm_stabiliser
            for l, layer in enumerate(self.arm):
                # the output layer and the stabiliser start at 0; a residual layer starts as the
                # identity (before its ReLU), as Cool-chic 5 initialises its ARM
                if l >= last or cfg.arm_residual:
                    layer.weight.zero_()
                    layer.bias.zero_()

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
        self.register_buffer("context_index", context_index(self.shapes, cfg.arm_context, cfg.stripe_height,
                                                            cfg.shared_max_pixels, cfg.arm_parents), persistent=False)
        # Quantization noise comes from the model's own generator, so an item trains the same
        # alone or in a batch (trainer.train); None: the global generator.
        self.noise_generator: torch.Generator | None = None

    # ------------------------------------------------------------------ latents and rate
    def quantized_latents(self, mode: str, temperature: float = 0.3, noise_a: float = 2.0, noise_std: float = 0.2):
        q = quantize_latents([y[None] for y in self.latents], self.gain, self.cfg.latent_bound, mode, temperature,
                             noise_a, [self.noise_generator], noise_std)
        return [v[0] for v in q]

    def contexts(self, q: list[torch.Tensor]) -> torch.Tensor:
        """(N, arm_inputs): every grid's latents' ARM inputs, grid after grid."""
        return latent_contexts([v[None] for v in q], self.context_index, self.cfg.arm_parents > 0)[0]

    def _arm_params(self) -> tuple[list[torch.Tensor], list[torch.Tensor], bool, bool]:
        """The ARM's weights and biases with the leading item axis (B = 1), and its options."""
        return ([layer.weight[None] for layer in self.arm], [layer.bias[None] for layer in self.arm],
                bool(self.cfg.arm_residual), bool(self.cfg.arm_stabiliser))

    def arm_forward(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log2_scale = arm_forward(ctx[None], *self._arm_params())
        return mu[0], log2_scale[0]

    def rate_bits(self, q: list[torch.Tensor]) -> torch.Tensor:
        q1 = [v[None] for v in q]
        return arm_rate_bits(q1, latent_contexts(q1, self.context_index, self.cfg.arm_parents > 0),
                             *self._arm_params())[0]

    # ------------------------------------------------------------------ synthesis side
    def upsample(self, q: list[torch.Tensor], per_phase: bool = False) -> torch.Tensor:
        return upsample([v[None] for v in q], self.ups_kernel[None], self.shapes, per_phase)[0]

    def modulate(self, up: torch.Tensor) -> list[torch.Tensor]:
        """Outputs o0..o3 as (channels, H*W) matrices."""
        return [o[0] for o in modulate(up[None], [p[None] for p in self.mod])]

    def masks(self, kept: int | None = None) -> list[torch.Tensor]:
        """Global top-k (kept, default the config's) over all scores; straight-through gradient."""
        kept = self.cfg.kept_weights if kept is None else kept
        return [m[0] for m in top_k_masks([s[None] for s in self.scores], [kept])]

    def synthesis_layers(self) -> list[torch.Tensor]:
        """The weights the synthesis multiplies: masked random ones, or the trained dense ones."""
        if self.cfg.synth_mode == SYNTH_DENSE:
            return list(self.dense)
        return [getattr(self, f"random_weight{l}") * m for l, m in enumerate(self.masks())]

    def synthesize(self, mods: list[torch.Tensor]) -> torch.Tensor:
        return synthesize(self.coords, [w[None] for w in self.synthesis_layers()], [m[None] for m in mods],
                          self.height, self.width)[0]

    def forward(self, mode: str = "hard", temperature: float = 0.3, noise_a: float = 2.0,
                with_rate: bool = True, noise_std: float = 0.2):
        q = self.quantized_latents(mode, temperature, noise_a, noise_std)
        image = self.synthesize(self.modulate(self.upsample(q, per_phase=mode == "hard")))
        rate = self.rate_bits(q) if with_rate else None
        return image, rate
