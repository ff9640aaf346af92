"""Container round trip and hostile input: every malformed file ends in FormatError."""
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lotterycodec.decoder import reference
from lotterycodec.decoder.config import CONFIG_FIELDS, ArchConfig, FormatError
from lotterycodec.decoder.format import HEADER_SIZE, read_bitstream, read_networks
from lotterycodec.decoder.synthetic import synthetic_bitstream

CONFIG_OFFSET = 4 + 1 + 2 + 2 + 2 + 1 + 1 + 8


def _reseal(data: bytearray) -> bytes:
    """Recompute both CRCs so a forged file reaches the deeper checks."""
    struct.pack_into("<I", data, HEADER_SIZE - 4, zlib.crc32(bytes(data[:HEADER_SIZE - 4])))
    struct.pack_into("<I", data, len(data) - 4, zlib.crc32(bytes(data[HEADER_SIZE:-4])))
    return bytes(data)


def _field_offset(name: str) -> tuple[int, str]:
    off = CONFIG_OFFSET
    for f in CONFIG_FIELDS:
        if f.name == name:
            return off, f.fmt
        off += struct.calcsize("<" + f.fmt)
    raise KeyError(name)


def test_round_trip_header(synthetic_file):
    bs = read_bitstream(synthetic_file)
    assert (bs.width, bs.height, bs.seed) == (13, 11, 3)
    assert bs.cfg.n_grids == 3 and bs.cfg.kept_weights == 300
    assert sum(bs.section_bytes.values()) == len(synthetic_file)


def test_truncation_at_every_offset(synthetic_file):
    for n in range(len(synthetic_file)):
        with pytest.raises(FormatError):
            read_bitstream(synthetic_file[:n])


def test_every_single_byte_flip_is_detected(synthetic_file):
    for i in range(len(synthetic_file)):
        bad = bytearray(synthetic_file)
        bad[i] ^= 0x5A
        with pytest.raises(FormatError):
            reference.decode(bytes(bad))


def test_trailing_garbage(synthetic_file):
    with pytest.raises(FormatError, match="trailing"):
        read_bitstream(synthetic_file + b"\0")


def test_wrong_magic_and_version(synthetic_file):
    with pytest.raises(FormatError, match="magic"):
        read_bitstream(b"PNG!" + synthetic_file[4:])
    bad = bytearray(synthetic_file)
    bad[4] = 2
    with pytest.raises(FormatError, match="version 2"):
        read_bitstream(_reseal(bad))


@pytest.mark.parametrize("width,height", [(0, 5), (5, 0), (16385, 4), (16384, 16384), (65535, 65535)])
def test_absurd_dimensions(synthetic_file, width, height):
    bad = bytearray(synthetic_file)
    struct.pack_into("<HH", bad, 7, width, height)
    with pytest.raises(FormatError, match="size"):
        read_bitstream(_reseal(bad))


def test_large_dimensions_with_tiny_payload_fail_fast(synthetic_file):
    bad = bytearray(synthetic_file)
    struct.pack_into("<HH", bad, 7, 8000, 8000)
    with pytest.raises(FormatError):
        reference.decode(_reseal(bad))


@pytest.mark.parametrize("name,value", [("n_grids", 0), ("n_grids", 9), ("latent_bound", 65),
                                        ("arm_context", 33), ("ups_kernel_size", 7), ("synth_mode", 1),
                                        ("kept_weights", 100000), ("arm_frac_bits", 0), ("mod_width", 0)])
def test_impossible_configurations(synthetic_file, name, value):
    bad = bytearray(synthetic_file)
    off, fmt = _field_offset(name)
    struct.pack_into("<" + fmt, bad, off, value)
    with pytest.raises(FormatError):
        reference.decode(_reseal(bad))


def test_wrong_channels(synthetic_file):
    bad = bytearray(synthetic_file)
    bad[11] = 1
    with pytest.raises(FormatError, match="channels"):
        read_bitstream(_reseal(bad))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_resealed_mutations(synthetic_file, data):
    """Mutations behind valid CRCs reach the parsers and entropy decoders: FormatError or an image."""
    bad = bytearray(synthetic_file)
    n = data.draw(st.integers(1, 6))
    for _ in range(n):
        i = data.draw(st.integers(0, len(bad) - 5))
        bad[i] = data.draw(st.integers(0, 255))
    try:
        out = reference.decode(_reseal(bad))
    except FormatError:
        return
    assert out.image.dtype == np.uint8 and out.image.shape[2] == 3


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(blob):
    with pytest.raises(FormatError):
        reference.decode(b"LOTC\x01" + blob)


def test_networks_section_rejects_trailing_bits():
    cfg = ArchConfig(n_grids=2, arm_context=4, arm_width=4, mod_width=4, kept_weights=10)
    data = synthetic_bitstream(8, 8, cfg)
    bs = read_bitstream(data)
    read_networks(bs.networks, bs.cfg)
    with pytest.raises(FormatError):
        read_networks(bs.networks + b"\x80", bs.cfg)
