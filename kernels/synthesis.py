"""Modulation and masked synthesis on the device (twins of reference.modulate / synthesize).

Two kernels, both over blocks of pixels:
- ``_modulation_head_kernel``: o1 = GELU(W1 GELU(W0 u + b0) + b1) per pixel; only o1 (mod_out
  channels) is written to global memory, because the two 3x3 convs need it around each pixel.
- ``_fused_synthesis_kernel``: per pixel, o2 on the 3x3 neighbourhood (from o1 on 5x5, edge
  replicated), o3, o0 recomputed from the upsampled latents, then the masked random MLP with the
  rewind concatenations, the output transform and 8-bit rounding. No full-resolution o0/o2/o3
  tensor ever exists.
The MLP's concatenations are split by segment: [h | o3 | o2 | o1 | o0] @ M == h @ M_h + o3 @ M_3 ...
"""
from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

BLOCK = 64


@triton.jit
def _tanh(x):
    # Clamped so exp cannot overflow; beyond |x| = 15 the float32 result is exactly +-1 anyway.
    x = tl.minimum(tl.maximum(x, -15.0), 15.0)
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def _gelu(x):
    return 0.5 * x * (1.0 + _tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


@triton.jit
def _small_matmul(v, w):
    # v: [BLOCK, K], w: [K, N] with small K -> [BLOCK, N] (no tensor-core shape limits)
    return tl.sum(v[:, :, None] * w[None, :, :], axis=1)


@triton.jit
def _load_matrix(ptr, R: tl.constexpr, C: tl.constexpr):
    return tl.load(ptr + tl.arange(0, R)[:, None] * C + tl.arange(0, C)[None, :])


@triton.jit
def _load_pixels(ptr, pos, valid, HW, C: tl.constexpr):
    # ptr: (C_real padded to C, H, W) channel-major; pos: [BLOCK] flat pixel index -> [BLOCK, C]
    ch = tl.arange(0, C)
    return tl.load(ptr + ch[None, :] * HW + pos[:, None], mask=valid[:, None], other=0.0)


@triton.jit
def _o0_o1(u, w0, b0, w1, b1):
    o0 = _gelu(tl.dot(u, w0, input_precision="ieee") + b0[None, :])
    return o0, _gelu(_small_matmul(o0, w1) + b1[None, :])


@triton.jit
def _modulation_head_kernel(up_ptr, w0_ptr, b0_ptr, w1_ptr, b1_ptr, o1_ptr, HW,
                            LP: tl.constexpr, MWP: tl.constexpr, MOP: tl.constexpr, BLOCK: tl.constexpr):
    # up: (LP, H, W) zero-padded channels; o1 out: (MOP, H, W)
    pos = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = pos < HW
    u = _load_pixels(up_ptr, pos, valid, HW, LP)
    _, o1 = _o0_o1(u, _load_matrix(w0_ptr, LP, MWP), tl.load(b0_ptr + tl.arange(0, MWP)),
                   _load_matrix(w1_ptr, MWP, MOP), tl.load(b1_ptr + tl.arange(0, MOP)))
    ch = tl.arange(0, MOP)
    tl.store(o1_ptr + ch[None, :] * HW + pos[:, None], o1, mask=valid[:, None])


@triton.jit
def _res3x3(src_ptr, y, x, H, W, HW, valid, w_ptr, bias, MOP: tl.constexpr):
    # GELU(conv3x3(src; W) + b + src) at pixels (y, x); neighbours clamped (edge replication).
    acc = tl.zeros([y.shape[0], MOP], dtype=tl.float32)
    for t in tl.static_range(9):
        yy = tl.minimum(tl.maximum(y + (t // 3 - 1), 0), H - 1)
        xx = tl.minimum(tl.maximum(x + (t % 3 - 1), 0), W - 1)
        acc += _small_matmul(_load_pixels(src_ptr, yy * W + xx, valid, HW, MOP),
                             _load_matrix(w_ptr + t * MOP * MOP, MOP, MOP))
    centre = _load_pixels(src_ptr, y * W + x, valid, HW, MOP)
    return _gelu(acc + bias[None, :] + centre)


@triton.jit
def _o2_at(o1_ptr, y, x, H, W, HW, valid, w2_ptr, b2, MOP: tl.constexpr):
    return _res3x3(o1_ptr, y, x, H, W, HW, valid, w2_ptr, b2, MOP)


@triton.jit
def _fused_synthesis_kernel(
        up_ptr, o1_ptr, w0_ptr, b0_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr,
        m0_ptr, m1h_ptr, m1a_ptr, m1b_ptr, m2h_ptr, m2a_ptr, m2b_ptr, m2c_ptr,
        m3h_ptr, m3a_ptr, m3b_ptr, m3c_ptr, m3d_ptr, out_ptr, H, W,
        LP: tl.constexpr, MWP: tl.constexpr, MOP: tl.constexpr,
        N0: tl.constexpr, N1: tl.constexpr, N2: tl.constexpr, N3: tl.constexpr, BLOCK: tl.constexpr):
    # Weights are (in, out) row-major, zero-padded; m<l><h|a|b|c|d>: layer l's block for the hidden
    # input h and the modulation segments o3 (a), o2 (b), o1 (c), o0 (d). out: (H, W, 3) uint8.
    HW = H * W
    pos = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = pos < HW
    y = pos // W
    x = pos % W
    b2 = tl.load(b2_ptr + tl.arange(0, MOP))
    b3 = tl.load(b3_ptr + tl.arange(0, MOP))
    # o3 at the pixel needs o2 on its 3x3 neighbourhood, each from o1 on its own 3x3.
    acc3 = tl.zeros([BLOCK, MOP], dtype=tl.float32)
    for t in tl.static_range(9):
        yy = tl.minimum(tl.maximum(y + (t // 3 - 1), 0), H - 1)
        xx = tl.minimum(tl.maximum(x + (t % 3 - 1), 0), W - 1)
        o2n = _o2_at(o1_ptr, yy, xx, H, W, HW, valid, w2_ptr, b2, MOP)
        acc3 += _small_matmul(o2n, _load_matrix(w3_ptr + t * MOP * MOP, MOP, MOP))
    o2 = _o2_at(o1_ptr, y, x, H, W, HW, valid, w2_ptr, b2, MOP)
    o3 = _gelu(acc3 + b3[None, :] + o2)
    u = _load_pixels(up_ptr, pos, valid, HW, LP)
    o0, o1 = _o0_o1(u, _load_matrix(w0_ptr, LP, MWP), tl.load(b0_ptr + tl.arange(0, MWP)),
                    _load_matrix(w1_ptr, MWP, MOP), tl.load(b1_ptr + tl.arange(0, MOP)))

    w_f = tl.maximum(W - 1, 1).to(tl.float32)  # a side of length 1 has coordinate 0
    h_f = tl.maximum(H - 1, 1).to(tl.float32)
    cx = tl.where(W > 1, (2 * x - (W - 1)).to(tl.float32) / w_f, 0.0)
    cy = tl.where(H > 1, (2 * y - (H - 1)).to(tl.float32) / h_f, 0.0)
    n0 = tl.arange(0, N0)
    h = _gelu(cx[:, None] * tl.load(m0_ptr + n0)[None, :] + cy[:, None] * tl.load(m0_ptr + N0 + n0)[None, :])
    h = _gelu(tl.dot(h, _load_matrix(m1h_ptr, N0, N1), input_precision="ieee")
              + _small_matmul(o3, _load_matrix(m1a_ptr, MOP, N1))
              + _small_matmul(o2, _load_matrix(m1b_ptr, MOP, N1)))
    h = _gelu(tl.dot(h, _load_matrix(m2h_ptr, N1, N2), input_precision="ieee")
              + _small_matmul(o3, _load_matrix(m2a_ptr, MOP, N2))
              + _small_matmul(o2, _load_matrix(m2b_ptr, MOP, N2))
              + _small_matmul(o1, _load_matrix(m2c_ptr, MOP, N2)))
    z = (tl.dot(h, _load_matrix(m3h_ptr, N2, N3), input_precision="ieee")
         + _small_matmul(o3, _load_matrix(m3a_ptr, MOP, N3))
         + _small_matmul(o2, _load_matrix(m3b_ptr, MOP, N3))
         + _small_matmul(o1, _load_matrix(m3c_ptr, MOP, N3))
         + tl.dot(o0, _load_matrix(m3d_ptr, MWP, N3), input_precision="ieee"))
    rgb = 1.0 / (1.0 + tl.exp(-2.0 * tl.minimum(tl.maximum(z, -15.0), 15.0)))  # same 8-bit result
    q = tl.floor(tl.minimum(tl.maximum(rgb, 0.0), 1.0) * 255.0 + 0.5).to(tl.uint8)
    ch = tl.arange(0, N3)
    tl.store(out_ptr + pos[:, None] * 3 + ch[None, :], q, mask=valid[:, None] & (ch[None, :] < 3))


def _pow2(n: int, floor: int = 1) -> int:
    return max(floor, 1 << max(n - 1, 0).bit_length())


def _pad(a, shape: tuple[int, ...], device) -> torch.Tensor:
    a = torch.as_tensor(a, dtype=torch.float32, device=device)
    out = torch.zeros(shape, dtype=torch.float32, device=device)
    out[tuple(slice(0, s) for s in a.shape)] = a
    return out


def modulate_and_synthesize(up: torch.Tensor, mod: list[np.ndarray], weights: list) -> torch.Tensor:
    """up: (L, H, W) float32 on the device; mod: w0, b0, w1, b1, w2, b2, w3, b3 (float32);
    weights: masked synthesis matrices (out, in), numpy or device tensors. Returns (H, W, 3) uint8."""
    dev = up.device
    L, H, W = up.shape
    w0, b0, w1, b1, w2, b2, w3, b3 = mod
    mw, mo = w0.shape[0], w1.shape[0]
    LP, MWP, MOP = _pow2(L, 16), _pow2(mw, 16), _pow2(mo)
    widths = [weights[0].shape[0], weights[1].shape[0], weights[2].shape[0]]
    N0, N1, N2, N3 = (_pow2(widths[0], 16), _pow2(widths[1], 16), _pow2(widths[2], 16), 16)
    up_p = torch.zeros((LP, H, W), dtype=torch.float32, device=dev)
    up_p[:L] = up
    head = [_pad(w0.T, (LP, MWP), dev), _pad(b0, (MWP,), dev), _pad(w1.T, (MWP, MOP), dev), _pad(b1, (MOP,), dev)]
    conv = []
    for w, b in ((w2, b2), (w3, b3)):  # (out, in, 3, 3) -> (tap, in, out)
        conv += [_pad(np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(9, mo, mo), (9, MOP, MOP), dev),
                 _pad(b, (MOP,), dev)]
    m = weights
    seg = lambda w, lo, hi, rows, cols: _pad(w[:, lo:hi].T, (rows, cols), dev)  # noqa: E731
    w0s, w1s, w2s = widths
    syn = [_pad(m[0].T, (2, N0), dev),
           seg(m[1], 0, w0s, N0, N1), seg(m[1], w0s, w0s + mo, MOP, N1), seg(m[1], w0s + mo, w0s + 2 * mo, MOP, N1),
           seg(m[2], 0, w1s, N1, N2), seg(m[2], w1s, w1s + mo, MOP, N2),
           seg(m[2], w1s + mo, w1s + 2 * mo, MOP, N2), seg(m[2], w1s + 2 * mo, w1s + 3 * mo, MOP, N2),
           seg(m[3], 0, w2s, N2, N3), seg(m[3], w2s, w2s + mo, MOP, N3), seg(m[3], w2s + mo, w2s + 2 * mo, MOP, N3),
           seg(m[3], w2s + 2 * mo, w2s + 3 * mo, MOP, N3), seg(m[3], w2s + 3 * mo, w2s + 3 * mo + mw, MWP, N3)]
    o1 = torch.empty((MOP, H, W), dtype=torch.float32, device=dev)
    grid = (triton.cdiv(H * W, BLOCK),)
    _modulation_head_kernel[grid](up_p, *head, o1, H * W, LP=LP, MWP=MWP, MOP=MOP, BLOCK=BLOCK)
    out = torch.empty((H, W, 3), dtype=torch.uint8, device=dev)
    _fused_synthesis_kernel[grid](up_p, o1, *head, *conv, *syn, out, H, W, LP=LP, MWP=MWP, MOP=MOP,
                                  N0=N0, N1=N1, N2=N2, N3=N3, BLOCK=BLOCK)
    return out
