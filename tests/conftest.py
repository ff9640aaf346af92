import os
from pathlib import Path

import numpy as np
import pytest

BUNDLED = Path(__file__).resolve().parents[1] / "lotterycodec" / "data" / "kodim23_crop128.png"


def pytest_configure(config):
    # CI runs every test; `pytest -m "not slow" tests` is the quick set a developer runs between edits.
    config.addinivalue_line("markers", "slow: builds native trees, trains, or runs subprocess pipelines "
                                       "(seconds to minutes each); deselect with -m 'not slow'")


@pytest.fixture(scope="session")
def bundled_image() -> np.ndarray:
    from lotterycodec.decoder.imageio import load_image
    return load_image(BUNDLED)


@pytest.fixture(scope="session")
def small_image(bundled_image) -> np.ndarray:
    return np.ascontiguousarray(bundled_image[48:80, 40:72])


@pytest.fixture(scope="session")
def trained(small_image):
    """One real (short) training run shared by the end-to-end tests."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from lotterycodec.trainer.encode import encode_array
    return encode_array(small_image, lmbda=1e-3, kept_ratio=0.6, preset="fast", steps=80, seed=7,
                        arch=dict(stripe_height=8, shared_max_pixels=64),  # several stripes at 32x32
                        progress=False)


@pytest.fixture(scope="session")
def synthetic_file() -> bytes:
    from lotterycodec.decoder.config import ArchConfig
    from lotterycodec.decoder.synthetic import synthetic_bitstream
    cfg = ArchConfig(n_grids=3, arm_context=8, arm_width=8, mod_width=8, stripe_height=4,
                     shared_max_pixels=16, kept_weights=300)
    return synthetic_bitstream(13, 11, cfg, seed=3)
