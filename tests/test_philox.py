"""Philox4x32-10 and the seeded weights: known-answer tests and golden vectors."""
import numpy as np
import pytest

from lotterycodec.decoder.philox import layer_weights, philox_rounds, randint, weight_scale

# Random123 known-answer tests for Philox4x32-10.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_random123_kat(ctr, key, expected):
    out = philox_rounds(key, tuple(np.array([c], dtype=np.uint32) for c in ctr))[:, 0]
    assert tuple(int(x) for x in out) == expected


# tl.randint golden vectors (Triton 3.9, verified bit for bit; ../shared/research/verify.md).
TRITON = [(0, 0, 0x6627E8D5), (0, 1, 0xF8E4CCA4), (1, 0, 0xE3E80670), (12345, 0, 0xD1FA3E81),
          (12345, 1023, 0x19DC2EF9), (2**31 + 7, 5, 0x846D8196), (2**40 + 3, 0, 0x55D6FAB1),
          (2**40 + 3, 777, 0x400FD64B), (12345, 2**32 + 1, 0x2C0B0B38), (-1, 0, 0x72A47709)]


@pytest.mark.parametrize("seed,offset,value", TRITON)
def test_triton_randint_golden(seed, offset, value):
    assert int(randint(seed, np.array([offset], dtype=np.uint64))[0]) == value


def test_weights_are_exact_function_of_words():
    seed, layer, fan_in, fan_out = 12345, 2, 33, 16
    w = layer_weights(seed, layer, fan_in, fan_out)
    words = randint(seed, (np.uint64(layer) << np.uint64(32)) | np.arange(fan_in * fan_out, dtype=np.uint64))
    expected = np.array([np.float32(np.float32(int(np.int32(np.uint32(u).view(np.int32)) >> 8) * 2.0**-23)
                                    * weight_scale(fan_in)) for u in words], dtype=np.float32)
    assert w.dtype == np.float32 and w.shape == (fan_out, fan_in)
    assert np.array_equal(w.reshape(-1).view(np.uint32), expected.view(np.uint32))
    assert np.abs(w).max() <= weight_scale(fan_in)


# Golden weights (float32 bit patterns) pinned for every port: seed 1, default layer shapes;
# layer 0 (2 -> 32) entries 0, 1, 63 and layer 3 (73 -> 3) entries 0, 218 (docs/FORMAT.md).
GOLDEN_BITS = [0xBEC2A379, 0xBF917007, 0x3FC2BF03, 0xBD4A39BF, 0x3D1C9087]


def test_golden_weight_bits():
    w0 = layer_weights(1, 0, 2, 32)
    w3 = layer_weights(1, 3, 73, 3)
    got = [int(w0.reshape(-1).view(np.uint32)[i]) for i in (0, 1, 63)] + \
          [int(w3.reshape(-1).view(np.uint32)[i]) for i in (0, 218)]
    assert got == GOLDEN_BITS
