"""Seeded synthesis weights on the device: Triton regenerates them from (seed, layer, index) and
applies the mask in the same pass.

Twin of :func:`lotterycodec.decoder.philox.layer_weights` (format section 4): ``tl.randint`` is
Philox4x32-10 with key = the seed's 32-bit halves and counter = (low, high halves of a 64-bit
offset, 0, 0); offset ``(layer << 32) | index`` puts the layer in the counter's high word.
"""
from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from ..decoder.philox import weight_scale

BLOCK = 1024


# Integer arguments equal to 0 or 1 are compiled as constants unless told otherwise; layer must stay
# a tensor so that it widens to int64 before the shift.
@triton.jit(do_not_specialize=["seed", "layer"])
def _philox_words_kernel(out_ptr, seed, layer, n, BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    offset = (layer.to(tl.int64) << 32) | idx.to(tl.int64)
    tl.store(out_ptr + idx, tl.randint(seed, offset).to(tl.int32, bitcast=True), mask=idx < n)


@triton.jit(do_not_specialize=["seed", "layer"])
def _masked_weights_kernel(out_ptr, mask_ptr, seed, layer, n, scale, BLOCK: tl.constexpr):
    # out, mask: flat (fan_out * fan_in) row-major; scale: float32(sqrt(6 / fan_in)).
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = idx < n
    offset = (layer.to(tl.int64) << 32) | idx.to(tl.int64)
    word = tl.randint(seed, offset).to(tl.int32, bitcast=True)
    weight = (word >> 8).to(tl.float32) * 1.1920928955078125e-07 * scale  # exact, then one rounding
    keep = tl.load(mask_ptr + idx, mask=valid, other=0)
    tl.store(out_ptr + idx, tl.where(keep != 0, weight, 0.0), mask=valid)


def _seed_arg(seed: int) -> int:
    """tl.randint's key is the seed's uint64 bit pattern; pass it in the range Triton accepts."""
    s = int(seed) & 0xFFFFFFFFFFFFFFFF
    return s - (1 << 64) if s >= 1 << 63 else s


def philox_words(seed: int, layer: int, n: int, device: str | torch.device) -> torch.Tensor:
    """The raw uint32 stream (as int32 bits) for one layer: for bit-exactness checks."""
    out = torch.empty(n, dtype=torch.int32, device=device)
    _philox_words_kernel[(triton.cdiv(n, BLOCK),)](out, _seed_arg(seed), layer, n, BLOCK=BLOCK)
    return out


def masked_weights(seed: int, in_out: list[tuple[int, int]], masks: list[np.ndarray],
                   device: str | torch.device) -> list[torch.Tensor]:
    """Per synthesis layer, float32 (fan_out, fan_in): seeded weight where kept, else 0."""
    out = []
    for layer, ((fan_in, fan_out), mask) in enumerate(zip(in_out, masks)):
        n = fan_in * fan_out
        w = torch.empty(n, dtype=torch.float32, device=device)
        keep = torch.as_tensor(np.ascontiguousarray(mask, dtype=np.int8).reshape(-1), device=device)
        _masked_weights_kernel[(triton.cdiv(n, BLOCK),)](
            w, keep, _seed_arg(seed), layer, n, float(weight_scale(fan_in)), BLOCK=BLOCK)
        out.append(w.reshape(fan_out, fan_in))
    return out
