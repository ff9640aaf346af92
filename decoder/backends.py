"""Decoder backends by name, each imported only when asked for (the decoder needs no torch)."""
from __future__ import annotations

import importlib.util
import os
from typing import Callable

from . import reference


def _triton_decode(data: bytes) -> "reference.Decoded":
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
        raise RuntimeError("the triton backend needs torch and triton: pip install 'lotterycodec[gpu]'")
    from ..kernels.decode import decode
    return decode(data)


BACKENDS: dict[str, Callable[[bytes], "reference.Decoded"]] = {
    "reference": reference.decode,
    "triton": _triton_decode,
}


def _triton_usable() -> bool:
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    import torch
    return torch.cuda.is_available()


def available_backends() -> list[str]:
    """Backends that can run here, fastest first."""
    return (["triton"] if _triton_usable() else []) + ["reference"]


def default_backend() -> str:
    return "reference"


def get_backend(name: str) -> Callable[[bytes], "reference.Decoded"]:
    if name == "auto":
        name = default_backend()
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None
