"""Decoder backends by name, each imported only when asked for (the decoder needs no torch)."""
from __future__ import annotations

import functools
import importlib.util
import os
import time
from typing import Callable

import numpy as np

from . import reference
from .config import SYNTH_DENSE, FormatError
from .format import peek_config, read_bitstream

# Backends whose decode honours a thread count (the others ignore it).
THREADED_BACKENDS = {"cpu", "cpu-scalar"}


def _cpu_module():
    try:
        from . import _lotc_cpu
    except ImportError:
        return None
    return _lotc_cpu


@functools.lru_cache(maxsize=1)
def _cpu_tables():
    from .entropy import load_tables
    return _cpu_module().make_tables(load_tables())


def _run_cpu(module, data: bytes, threads: int | None, latents_only: bool, kernels: str = "auto"):
    """One call into the C++ core: threads resolved (default every core), its errors as FormatError."""
    threads = threads or os.cpu_count() or 1
    if threads < 1:
        raise ValueError("threads must be at least 1")
    try:
        image, latents, times, kernels = module.decode(bytes(data), _cpu_tables(), threads, latents_only, kernels)
    except module.DecodeError as exc:
        raise FormatError(str(exc)) from None
    return image, [np.asarray(g, dtype=np.int64) for g in latents], times, kernels


def cpu_latents(data: bytes, threads: int | None = None) -> list | None:
    """Entropy decoding only, in C++ (None when the module is not built). Same errors as decoding."""
    module = _cpu_module()
    return None if module is None else _run_cpu(module, data, threads, True)[1]


def cpu_kernels() -> list[str]:
    """The C++ kernel tables this CPU runs, fastest first (empty when the module is not built)."""
    module = _cpu_module()
    return [] if module is None else list(module.available_kernels())


def _cpu_decode(data: bytes, threads: int | None = None, kernels: str = "auto") -> "reference.Decoded":
    """The C++ core (csrc/), built by setup.py; errors become FormatError like everywhere else.
    threads: substreams and row bands in parallel (default: every core); output is identical.
    kernels: auto (the fastest table this CPU runs) or scalar / avx2 / avx512 / neon."""
    module = _cpu_module()
    if module is None:
        raise RuntimeError("the cpu backend is not built: reinstall with a C++17 compiler (pip install -e .)")
    t0 = time.perf_counter()
    image, latents, times, _ = _run_cpu(module, data, threads, False, kernels)
    times["all"] = time.perf_counter() - t0
    return reference.Decoded(image, latents, read_bitstream(data), times)


def _cpu_scalar_decode(data: bytes, threads: int | None = None) -> "reference.Decoded":
    return _cpu_decode(data, threads, kernels="scalar")


def _reference_decode(data: bytes, threads: int | None = None) -> "reference.Decoded":
    return reference.decode(data)  # single-threaded by design: the readable spec


def _triton_decode(data: bytes, threads: int | None = None) -> "reference.Decoded":
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
        raise RuntimeError("the triton backend needs torch and triton: pip install 'lotterycodec[gpu]'")
    from ..kernels.decode import decode
    return decode(data, threads)


BACKENDS: dict[str, Callable[[bytes], "reference.Decoded"]] = {
    "cpu": _cpu_decode,
    "cpu-scalar": _cpu_scalar_decode,
    "reference": _reference_decode,
    "triton": _triton_decode,
}


def _triton_usable() -> bool:
    from ..kernels import usable
    return usable()


def available_backends() -> list[str]:
    """Backends that can run here, fastest first."""
    return (["triton"] if _triton_usable() else []) + (["cpu", "cpu-scalar"] if _cpu_module() else []) + ["reference"]


def default_backend() -> str:
    """The C++ decoder when built, else the reference (triton is never picked implicitly)."""
    return "cpu" if _cpu_module() else "reference"


def resolve_backend(name: str, data: bytes) -> str:
    """'auto' becomes the default backend, or the reference for what only it decodes (synth_mode 1)."""
    if name != "auto":
        return name
    cfg = peek_config(bytes(data))
    return "reference" if cfg is not None and cfg.synth_mode == SYNTH_DENSE else default_backend()


def _auto_decode(data: bytes, threads: int | None = None) -> "reference.Decoded":
    return BACKENDS[resolve_backend("auto", data)](data, threads)


def get_backend(name: str) -> Callable[[bytes], "reference.Decoded"]:
    if name == "auto":
        return _auto_decode
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None
