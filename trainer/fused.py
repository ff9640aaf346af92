"""Elementwise chains of the training step fused into one loop each by torch.compile (inductor:
one vectorized C++ loop per chain on a CPU, instead of one pass over memory per op).

Why: a training step is memory-bound on its elementwise work. At 256x256 on one thread the GELU's
forward and backward alone were 32 % of a step as eager passes (six and seven of them); fused, the
same values come 3x faster; a whole step 12-15 % (results/train_step_crop256). Only small pure functions are compiled:
the whole step does not compile on CPU (inductor has no replication_pad2d_backward, torch 2.13),
and small graphs compile in seconds and are cached on disk across processes.

Compiling costs ~20 s in a fresh process with a cold cache (~4 s warm), so :func:`enabled` turns
it on only around training long enough to repay that (train.train decides); anything that fails
to compile (no C++ compiler, an unsupported platform) falls back to the eager function, once, with
a warning. LOTC_COMPILE=0 switches it off.
"""
from __future__ import annotations

import contextlib
import os
import warnings

import torch

_ACTIVE = False


@contextlib.contextmanager
def enabled(on: bool = True):
    """Fused functions run compiled inside this block (when on and not switched off by LOTC_COMPILE=0)."""
    global _ACTIVE
    before, _ACTIVE = _ACTIVE, on and os.environ.get("LOTC_COMPILE", "1") != "0"
    try:
        yield
    finally:
        _ACTIVE = before


class Fused:
    """A decorator: ``fn`` eager outside :func:`enabled`, compiled (dynamic shapes: one compile serves every
    size) inside it."""

    def __init__(self, fn):
        self.fn, self.compiled, self.failed = fn, None, False

    def __call__(self, *args):
        if not _ACTIVE or self.failed:
            return self.fn(*args)
        if self.compiled is None:
            import torch._inductor.config as inductor
            inductor.compile_threads = 1  # no compile subprocesses: encode jobs may run in daemon workers
            self.compiled = torch.compile(self.fn, dynamic=True)
        try:
            return self.compiled(*args)
        except Exception as exc:  # noqa: BLE001 - any compile failure: same values, eager speed
            self.failed = True
            warnings.warn(f"torch.compile failed for {self.fn.__name__} ({type(exc).__name__}: {exc}); "
                          "training goes on without fused kernels", RuntimeWarning, stacklevel=2)
            return self.fn(*args)
