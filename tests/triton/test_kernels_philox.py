"""Triton weight regeneration (TRITON_INTERPRET=1 on CPU): bit-exact with the format's generator."""

import numpy as np
import pytest

from lotterycodec.decoder.config import ArchConfig
from lotterycodec.decoder.philox import layer_weights, randint
from lotterycodec.decoder.synthetic import random_masks
from lotterycodec.kernels.philox import masked_weights, philox_words


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**31 + 7, 2**40 + 3, 2**63 + 5, -1])
@pytest.mark.parametrize("layer", [0, 3])
def test_random_stream_bit_exact(device, seed, layer):
    n = 1500
    got = philox_words(seed, layer, n, device).cpu().numpy().view(np.uint32)
    ref = randint(seed, (np.uint64(layer) << np.uint64(32)) | np.arange(n, dtype=np.uint64))
    assert np.array_equal(got, ref)


def test_masked_weights_equal_reference(device):
    cfg = ArchConfig(kept_weights=900)
    masks = random_masks(cfg, np.random.default_rng(0))
    got = masked_weights(77, cfg.synth_in_out, masks, device)
    for l, ((i, o), m, g) in enumerate(zip(cfg.synth_in_out, masks, got)):
        ref = np.where(m, layer_weights(77, l, i, o), np.float32(0))
        assert np.array_equal(g.cpu().numpy().view(np.uint32), ref.view(np.uint32))
