"""Triton upsampling (TRITON_INTERPRET=1 on CPU) against the numpy reference."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from lotterycodec.decoder import reference  # noqa: E402
from lotterycodec.kernels.upsample import upsample  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"


@pytest.mark.parametrize("height,width,taps", [(13, 11, 4), (1, 7, 4), (33, 17, 2), (20, 9, 6)])
def test_upsample_matches_reference(height, width, taps):
    rng = np.random.default_rng(height * width + taps)
    shapes = [(-(-height // (1 << l)), -(-width // (1 << l))) for l in range(5)]
    grids = [rng.integers(-20, 20, s).astype(np.int64) for s in shapes]
    kernel = rng.normal(0, 0.3, (2, 2, taps, taps)).astype(np.float32)
    want = reference.upsample(grids, kernel)
    got = upsample([torch.from_numpy(g).to(DEVICE) for g in grids], torch.from_numpy(kernel).to(DEVICE))
    assert got.shape == want.shape
    assert np.allclose(got.cpu().numpy(), want, rtol=1e-5, atol=1e-4)
