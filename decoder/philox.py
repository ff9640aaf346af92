"""Philox4x32-10 and the seeded random synthesis weights (spec in docs/FORMAT.md, section 4).

The generator is the one behind Triton's ``tl.randint``: key = (low, high) 32-bit
halves of the 64-bit seed, counter = (low, high halves of a 64-bit offset, 0, 0), and the
value is output word 0.  The weight of synthesis layer ``l`` at flat index ``i``
(row-major over (fan_out, fan_in)) uses offset ``(l << 32) | i``, and is

    w = float32(int32(u) >> 8) * 2^-23 * b_l,    b_l = float32(sqrt(6 / fan_in))

where the first factor is exact in float32 and the product is one correctly rounded
float32 multiply, so every backend regenerates bit-identical weights.
"""
from __future__ import annotations

import math

import numpy as np

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint32(0x9E3779B9)
_W1 = np.uint32(0xBB67AE85)
_LO = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


def philox_rounds(key: tuple[int, int], counter: tuple[np.ndarray, ...]) -> np.ndarray:
    """Philox4x32-10 of a (k0, k1) key and four uint32 counter words; returns (4, n) uint32."""
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint32) for c in counter)
    with np.errstate(over="ignore"):
        for _ in range(10):
            p0 = _M0 * c0.astype(np.uint64)
            p1 = _M1 * c2.astype(np.uint64)
            c0, c1, c2, c3 = (
                (p1 >> _SHIFT).astype(np.uint32) ^ c1 ^ k0,
                (p1 & _LO).astype(np.uint32),
                (p0 >> _SHIFT).astype(np.uint32) ^ c3 ^ k1,
                (p0 & _LO).astype(np.uint32),
            )
            k0 = np.uint32(k0 + _W0)
            k1 = np.uint32(k1 + _W1)
    return np.stack(np.broadcast_arrays(c0, c1, c2, c3))


def philox4x32(seed: int, offsets: np.ndarray) -> np.ndarray:
    """Output words (shape (4, n), uint32) for a 64-bit seed and 64-bit counter offsets."""
    s = int(seed) & 0xFFFFFFFFFFFFFFFF
    off = np.asarray(offsets, dtype=np.uint64)
    zero = np.zeros(off.shape, dtype=np.uint32)
    return philox_rounds((s & 0xFFFFFFFF, s >> 32),
                         ((off & _LO).astype(np.uint32), (off >> _SHIFT).astype(np.uint32), zero, zero))


def randint(seed: int, offsets: np.ndarray) -> np.ndarray:
    """Triton's ``tl.randint(seed, offsets)``: output word 0."""
    return philox4x32(seed, offsets)[0]


def weight_scale(fan_in: int) -> np.float32:
    return np.float32(math.sqrt(6.0 / fan_in))


def layer_weights(seed: int, layer: int, fan_in: int, fan_out: int) -> np.ndarray:
    """Random weights of one synthesis layer, float32 of shape (fan_out, fan_in)."""
    index = np.arange(fan_in * fan_out, dtype=np.uint64)
    words = randint(seed, (np.uint64(layer) << _SHIFT) | index)
    unit = (words.view(np.int32) >> 8).astype(np.float32) * np.float32(2.0 ** -23)
    return (unit * weight_scale(fan_in)).reshape(fan_out, fan_in)


def synthesis_weights(seed: int, in_out: list[tuple[int, int]]) -> list[np.ndarray]:
    return [layer_weights(seed, l, i, o) for l, (i, o) in enumerate(in_out)]
