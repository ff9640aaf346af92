"""Triton GPU kernels of the decoder (imported only when the GPU backend is asked for)."""
from __future__ import annotations

import importlib.util
import os


def usable() -> bool:
    """Whether the triton backend can run here: torch and triton installed, and a CUDA GPU (or
    Triton's interpreter, which runs the kernels on CPU tensors). Torch is imported only here, so
    the decoder package never imports it itself."""
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    import torch
    return torch.cuda.is_available()
