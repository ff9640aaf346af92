"""One measured point (a Row) and the metrics: bpp from the file size, PSNR-RGB and MS-SSIM of
the decoded 8-bit image."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..decoder.imageio import psnr


@dataclass
class Row:
    codec: str
    point: str          # lambda (ours) or quality (classical)
    image: str
    width: int
    height: int
    bytes: int
    bpp: float
    psnr_rgb: float
    ms_ssim_rgb: float | None
    encoding_time: float
    decoding_time: float


def ms_ssim_rgb(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (5 scales, 11x11 Gaussian window, data range 255) of two RGB uint8 images; None when
    the image is too small for five scales (a side of 161 pixels or less) or pytorch-msssim is missing."""
    if min(a.shape[:2]) <= 160:
        return None
    try:
        import torch
        from pytorch_msssim import ms_ssim
    except ImportError:
        return None
    x, y = (torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1))).float()[None] for v in (a, b))
    return float(ms_ssim(x, y, data_range=255.0, size_average=True))


def measure(codec: str, point: str, name: str, image: np.ndarray, data: bytes, decoded: np.ndarray,
            t_enc: float, t_dec: float) -> Row:
    h, w = image.shape[:2]
    return Row(codec, point, name, w, h, len(data), 8 * len(data) / (h * w), psnr(decoded, image),
               ms_ssim_rgb(decoded, image), t_enc, t_dec)
