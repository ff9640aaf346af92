"""2x polyphase upsampling of the latent grids on the device (twin of reference.upsample_2x).

out[c, 2i+a, 2j+b] = sum_pq K[a,b,p,q] * x[c, clamp(i+a-T/2+p), clamp(j+b-T/2+q)], cropped.
One program per block of output values of one channel; no Python loop over rows.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 256


@triton.jit
def _upsample2x_kernel(x_ptr, k_ptr, out_ptr, h, w, out_h, out_w, TAPS: tl.constexpr, BLOCK: tl.constexpr):
    # x: (C, h, w) float32; k: (2, 2, TAPS, TAPS); out: (C, out_h, out_w); grid (C, cdiv(out_h*out_w, BLOCK))
    c = tl.program_id(0)
    idx = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = idx < out_h * out_w
    y = idx // out_w
    x = idx % out_w
    a = y % 2
    b = x % 2
    i = y // 2
    j = x // 2
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    base = x_ptr + c * h * w
    for p in tl.static_range(TAPS):
        row = tl.minimum(tl.maximum(i + a - TAPS // 2 + p, 0), h - 1)
        for q in tl.static_range(TAPS):
            col = tl.minimum(tl.maximum(j + b - TAPS // 2 + q, 0), w - 1)
            kval = tl.load(k_ptr + ((a * 2 + b) * TAPS + p) * TAPS + q, mask=valid, other=0.0)
            acc += kval * tl.load(base + row * w + col, mask=valid, other=0.0)
    tl.store(out_ptr + c * out_h * out_w + idx, acc, mask=valid)


def upsample_2x(x: torch.Tensor, kernel: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """x: (C, h, w) float32 on the device; kernel: (2, 2, T, T)."""
    c, h, w = x.shape
    out = torch.empty((c, out_h, out_w), dtype=torch.float32, device=x.device)
    grid = (c, triton.cdiv(out_h * out_w, BLOCK))
    _upsample2x_kernel[grid](x.contiguous(), kernel.contiguous(), out, h, w, out_h, out_w,
                             TAPS=kernel.shape[-1], BLOCK=BLOCK)
    return out


def upsample(latents: list[torch.Tensor], kernel: torch.Tensor) -> torch.Tensor:
    """(L, H, W): cumulative from the coarsest grid, all channels of a level in one launch."""
    acc = latents[-1][None].float()
    for lvl in range(len(latents) - 2, -1, -1):
        h, w = latents[lvl].shape
        acc = torch.cat([latents[lvl][None].float(), upsample_2x(acc, kernel, h, w)])
    return acc
