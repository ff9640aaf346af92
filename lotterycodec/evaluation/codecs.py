"""The classical codecs measured beside ours, on the same pixels, at fixed quality grids."""
from __future__ import annotations

import io
import time
from typing import Callable

import numpy as np
from PIL import Image

from .metrics import Row, measure


def _jpeg(image: Image.Image, q: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=q, subsampling="4:2:0", optimize=True, progressive=True)
    return buf.getvalue()


def _webp(image: Image.Image, q: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "WEBP", quality=q, method=6, lossless=False)
    return buf.getvalue()


def _avif(image: Image.Image, q: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "AVIF", quality=q, speed=1, subsampling="4:4:4", range="full", codec="aom",
               advanced={"tune": "psnr"}, max_threads=1)
    return buf.getvalue()


def _jxl(image: Image.Image, q: int) -> bytes:
    import pillow_jxl  # noqa: F401  (registers the JXL plugin)
    buf = io.BytesIO()
    image.save(buf, "JXL", quality=q, effort=9, lossless=False, num_threads=1)
    return buf.getvalue()


# name -> (encoder, quality grid, settings as recorded). Settings from ../shared/research/rd.md:
# AVIF 4:4:4 with tune=psnr (the still-image default tune costs +2.8 %), speed 1 (speed 0: 1 % better,
# 2-3.5x slower); JPEG 4:2:0 (4:4:4 is 5.9 % worse on PSNR); WebP method 6; JXL effort 9.
CLASSICAL: dict[str, tuple[Callable[[Image.Image, int], bytes], list[int], str]] = {
    "jpeg": (_jpeg, [5, 8, 10, 15, 20, 25, 30, 40, 50, 60, 70, 75, 80, 85, 90, 93, 95, 97],
             "Pillow JPEG quality=q subsampling=4:2:0 optimize progressive"),
    "webp": (_webp, [0, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 93, 95],
             "Pillow WEBP quality=q method=6 lossy"),
    "avif": (_avif, [6, 10, 15, 20, 26, 32, 38, 44, 50, 56, 62, 68, 74, 80, 86],
             "Pillow AVIF quality=q speed=1 subsampling=4:4:4 range=full codec=aom tune=psnr max_threads=1"),
    "jxl": (_jxl, [0, 5, 10, 20, 30, 40, 50, 60, 70, 78, 85, 90, 93, 95],
            "pillow-jxl-plugin quality=q effort=9 lossy num_threads=1"),
}


def classical_rows(codec: str, name: str, image: np.ndarray) -> list[Row]:
    encoder, grid, _ = CLASSICAL[codec]
    pil = Image.fromarray(image)  # from an array: no ICC profile or other metadata to pay for
    rows = []
    for q in grid:
        t0 = time.perf_counter()
        data = encoder(pil, q)
        t1 = time.perf_counter()
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        rows.append(measure(codec, str(q), name, image, data, decoded, t1 - t0, time.perf_counter() - t1))
    return rows
