"""Generate the shipped latent frequency tables (run once; the output is data).

    python -m lotterycodec.decoder.make_tables decoder/data/laplace_tables.npy

Table (f, s) models the residual r = v - m of a latent v around m = floor(mu) for a
Laplace distribution whose mean lies f/MU_STEPS above m and whose scale is
2^(LOG2_SCALE_MIN + s / SCALE_STEPS_PER_OCTAVE).  Entry r + RESIDUAL_MAX holds the
constriction weight w = freq - 1 (frequencies sum to 2^24, each >= 1, the largest
<= 2^24 - 2^12).  Decoders never evaluate exp: they load this file and check its hash.
"""
from __future__ import annotations

import sys

import numpy as np

from .entropy import (LOG2_SCALE_MIN, MAX_FREQ, MU_STEPS, N_SCALES, PRECISION,
                      SCALE_STEPS_PER_OCTAVE)
from .config import RESIDUAL_MAX


def laplace_cdf(x: np.ndarray, b: float) -> np.ndarray:
    tail = 0.5 * np.exp(-np.abs(x) / b)
    return np.where(x < 0, tail, 1.0 - tail)


def make_table(mu_frac: float, scale: float) -> np.ndarray:
    n = 2 * RESIDUAL_MAX + 1
    r = np.arange(-RESIDUAL_MAX, RESIDUAL_MAX + 1, dtype=np.float64)
    edges_hi = laplace_cdf(r + 0.5 - mu_frac, scale)
    edges_lo = laplace_cdf(r - 0.5 - mu_frac, scale)
    edges_hi[-1], edges_lo[0] = 1.0, 0.0
    p = edges_hi - edges_lo
    total = (1 << PRECISION) - n
    w = np.floor(p * total).astype(np.int64)
    w[np.argmax(p)] += total - w.sum()  # the largest bin absorbs the rounding
    excess = w.max() + 1 - MAX_FREQ
    if excess > 0:
        top = int(np.argmax(w))
        w[top] -= excess
        w[top - 1] += excess // 2
        w[top + 1] += excess - excess // 2
    assert w.min() >= 0 and w.sum() == total and w.max() + 1 <= MAX_FREQ
    return w.astype(np.uint32)


def make_tables() -> np.ndarray:
    return np.stack([
        np.stack([make_table(f / MU_STEPS, 2.0 ** (LOG2_SCALE_MIN + s / SCALE_STEPS_PER_OCTAVE))
                  for s in range(N_SCALES)])
        for f in range(MU_STEPS)
    ])


if __name__ == "__main__":
    np.save(sys.argv[1], make_tables())
