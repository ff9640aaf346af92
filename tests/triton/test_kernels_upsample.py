"""Triton upsampling (TRITON_INTERPRET=1 on CPU) against the numpy reference."""

import numpy as np
import pytest
import torch

from lotterycodec.decoder import reference
from lotterycodec.kernels.upsample import upsample


@pytest.mark.parametrize("height,width,taps", [(13, 11, 4), (1, 7, 4), (33, 17, 2), (20, 9, 6)])
def test_upsample_matches_reference(device, height, width, taps):
    rng = np.random.default_rng(height * width + taps)
    shapes = [(-(-height // (1 << l)), -(-width // (1 << l))) for l in range(5)]
    grids = [rng.integers(-20, 20, s).astype(np.int64) for s in shapes]
    kernel = rng.normal(0, 0.3, (2, 2, taps, taps)).astype(np.float32)
    want = reference.upsample(grids, kernel)
    got = upsample([torch.from_numpy(g).to(device) for g in grids], torch.from_numpy(kernel).to(device))
    assert got.shape == want.shape
    assert np.allclose(got.cpu().numpy(), want, rtol=1e-5, atol=1e-4)
