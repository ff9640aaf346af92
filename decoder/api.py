"""Decoding a .lotc file: the decoder library's one user-facing call (no torch needed)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .backends import get_backend, resolve_backend
from .format import check_pixel_limit
from .imageio import check_writable, save_image


def decode(source: str | Path | bytes, output: str | Path | None = None,
           backend: str = "auto", threads: int | None = None,
           max_pixels: int | None = None) -> tuple[np.ndarray, dict]:
    """Decode a .lotc file (path or bytes); optionally write the image. Returns (image, summary).
    threads: for the cpu backend (default: every core). max_pixels: refuse (LimitError) a file
    declaring more pixels, before decoding anything, whatever the backend."""
    if output is not None:
        check_writable(output)
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    check_pixel_limit(data, max_pixels)
    backend = resolve_backend(backend, data)
    t0 = time.perf_counter()
    decoded = get_backend(backend)(data, threads=threads)
    elapsed = time.perf_counter() - t0
    if output is not None:
        save_image(output, decoded.image)
    bs = decoded.bitstream
    summary = {"width": bs.width, "height": bs.height, "bytes": len(data),
               "bpp": 8 * len(data) / (bs.width * bs.height), "backend": backend,
               "bytes_breakdown": bs.section_bytes,
               "times": {"decode_s": elapsed, **{f"{k}_s": v for k, v in decoded.times.items()}}}
    return decoded.image, summary
