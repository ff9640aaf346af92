"""Triton modulation + fused masked synthesis (TRITON_INTERPRET=1 on CPU) against the reference."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from lotterycodec.decoder import reference  # noqa: E402
from lotterycodec.decoder.config import ArchConfig  # noqa: E402
from lotterycodec.decoder.philox import synthesis_weights  # noqa: E402
from lotterycodec.decoder.synthetic import random_masks, random_networks  # noqa: E402
from lotterycodec.kernels.synthesis import modulate_and_synthesize  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"


@pytest.mark.parametrize("height,width,arch", [(9, 13, {}), (1, 5, {"mod_width": 20, "mod_out": 2}),
                                               (7, 1, {"synth_width0": 12, "n_grids": 3})])
def test_fused_synthesis_matches_reference(height, width, arch):
    rng = np.random.default_rng(height * 31 + width)
    cfg = ArchConfig(kept_weights=0, **arch)
    cfg = cfg.replace(kept_weights=cfg.synth_weight_count * 2 // 3)
    nets = reference.FloatNetworks.from_quantized(random_networks(cfg, rng), cfg)
    up = rng.normal(0, 1.5, (cfg.n_grids, height, width)).astype(np.float32)
    weights = [np.where(m, w, np.float32(0)) for w, m in
               zip(synthesis_weights(9, cfg.synth_in_out), random_masks(cfg, rng))]
    mods = reference.modulate(up, nets.mod)
    want = reference.to_uint8(reference.synthesize(np.arange(height), width, height,
                                                   reference.rewind_inputs(mods), weights))
    got = modulate_and_synthesize(torch.from_numpy(up).to(DEVICE), nets.mod, weights).cpu().numpy()
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
