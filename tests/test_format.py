"""Container round trip and hostile input: every malformed file ends in FormatError."""

import numpy as np
import pytest
from forging import forge_header, reseal
from hypothesis import HealthCheck, given, settings, strategies as st

from lotterycodec.decoder import reference
from lotterycodec.decoder.config import CONFIG_FIELDS, ArchConfig, FormatError
from lotterycodec.decoder.format import config_record, encode_varint, pack_header, read_bitstream, read_networks, tensor_bits, write_networks
from lotterycodec.decoder.synthetic import synthetic_bitstream


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
    for version in (1, 5):
        bad[4] = version
        with pytest.raises(FormatError, match=f"version {version} .*reads versions 2, 3, 4"):
            read_bitstream(reseal(bad))


def test_old_versions_keep_decoding_and_hold_one_configuration_each():
    """Versions 2 and 3 (every field listed) still decode to the same image as version 4; each of
    them holds only the configurations it was written for (2 without parent inputs, 3 with), so a
    version 3 header without them, or a version 2 one read as 3, is refused."""
    cfg = ArchConfig(n_grids=3, arm_context=4, arm_width=4, mod_width=6, kept_weights=10)
    for old, c in ((2, cfg), (3, cfg.replace(arm_parents=3))):
        new_file, old_file = synthetic_bitstream(13, 11, c, seed=2), synthetic_bitstream(13, 11, c, seed=2, version=old)
        assert (new_file[4], old_file[4]) == (4, old)
        assert len(old_file) > len(new_file)
        assert read_bitstream(old_file).cfg == read_bitstream(new_file).cfg == c
        np.testing.assert_array_equal(reference.decode(old_file).image, reference.decode(new_file).image)
    v3 = synthetic_bitstream(13, 11, cfg.replace(arm_parents=3), seed=2, version=3)
    with pytest.raises(FormatError, match="version 3 header for a configuration of version 2"):
        read_bitstream(forge_header(v3, arm_parents=0))
    bad = bytearray(synthetic_bitstream(13, 11, cfg, seed=2, version=2))
    bad[4] = 3  # the same fields read as version 3: one field short
    with pytest.raises(FormatError):
        read_bitstream(reseal(bad))
    with pytest.raises(ValueError, match="version 3 written as version 2"):
        synthetic_bitstream(13, 11, cfg.replace(arm_parents=3), version=2)


def _with_config_record(data: bytes, record: bytes) -> bytes:
    bs = read_bitstream(data)
    b = bs.section_bytes
    head = pack_header(bs.width, bs.height, 3, 8, bs.seed, [], [b["networks"], b["mask"], b["latent_index"] + b["latents"]],
                       config=record)
    return head + data[data[5]:]


def test_compact_config_record(synthetic_file):
    """Version 4 sends only the fields that differ from their defaults, behind a bit set: the
    synthetic file's seven changed fields take 11 bytes (a 3-byte bit set, 8 of values) where
    version 2 lists all 19 fields in 20; a default sent
    anyway, or a bit beyond the fields, is refused (one way to write each file)."""
    cfg = read_bitstream(synthetic_file).cfg
    default = ArchConfig()
    changed = [i for i, f in enumerate(CONFIG_FIELDS) if getattr(cfg, f.name) != getattr(default, f.name)]
    assert [CONFIG_FIELDS[i].name for i in changed] == ["n_grids", "stripe_height", "shared_max_pixels", "arm_context",
                                                         "arm_width", "mod_width", "kept_weights"]
    record = encode_varint(sum(1 << i for i in changed)) + b"".join(
        encode_varint(getattr(cfg, CONFIG_FIELDS[i].name)) for i in changed)
    assert _with_config_record(synthetic_file, record) == synthetic_file
    assert len(record) == 11 and len(config_record([v for _, v in cfg.fields(2)], 2)) == 20
    with pytest.raises(FormatError, match="n_grids sent with its default value 7"):
        read_bitstream(_with_config_record(synthetic_file, encode_varint(1 << 0 | 1 << 4) + bytes([7, 4])))
    with pytest.raises(FormatError, match="beyond the"):
        read_bitstream(_with_config_record(synthetic_file, encode_varint(1 << len(CONFIG_FIELDS)) + bytes([1])))


@pytest.mark.parametrize("width,height", [(0, 5), (5, 0), (16385, 4), (16384, 16384), (65535, 65535)])
def test_absurd_dimensions(synthetic_file, width, height):
    with pytest.raises(FormatError, match="size"):
        read_bitstream(forge_header(synthetic_file, width=width, height=height))


def test_large_dimensions_with_tiny_payload_fail_fast(synthetic_file):
    with pytest.raises(FormatError):
        reference.decode(forge_header(synthetic_file, width=8000, height=8000))


def test_header_fields_must_fill_the_header(synthetic_file):
    bad = bytearray(synthetic_file)
    bad[5] += 1  # one byte more announced than the fields take
    with pytest.raises(FormatError):
        read_bitstream(reseal(bad))


@pytest.mark.parametrize("name,value", [("n_grids", 0), ("n_grids", 9), ("latent_bound", 65),
                                        ("arm_context", 33), ("ups_kernel_size", 7), ("synth_mode", 1),
                                        ("kept_weights", 100000), ("arm_frac_bits", 0), ("mod_width", 0)])
def test_impossible_configurations(synthetic_file, name, value):
    with pytest.raises(FormatError):
        reference.decode(forge_header(synthetic_file, **{name: value}))


def test_wrong_channels(synthetic_file):
    with pytest.raises(FormatError, match="channels"):
        read_bitstream(forge_header(synthetic_file, channels=1))


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
        out = reference.decode(reseal(bad))
    except FormatError:
        return
    assert out.image.dtype == np.uint8 and out.image.shape[2] == 3


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(blob):
    with pytest.raises(FormatError):
        reference.decode(b"LOTC\x02" + blob)


def test_networks_section_must_be_whole_words():
    cfg = ArchConfig(n_grids=2, arm_context=4, arm_width=4, mod_width=4, kept_weights=10)
    bs = read_bitstream(synthetic_bitstream(8, 8, cfg))
    read_networks(bs.networks, bs.cfg)
    with pytest.raises(FormatError, match="32-bit words"):
        read_networks(bs.networks + b"\x80", bs.cfg)


def _small_networks():
    cfg = ArchConfig(n_grids=3, arm_context=4, arm_width=4, mod_width=6, kept_weights=10)
    return read_networks(read_bitstream(synthetic_bitstream(9, 7, cfg)).networks, cfg), cfg


def test_networks_round_trip_escapes_and_costs():
    """Values past the tables' alphabet (up to the limits) survive; the section costs what the
    quantization searches were told (information content) plus at most the coder's final words."""
    nets, cfg = _small_networks()
    nets.mod[0].flat[:6] = [126, 127, -127, 128, 1 << 20, -(1 << 20)]
    nets.arm.weights[0].flat[0] = -(1 << 15)
    data, bits = write_networks(nets)
    back = read_networks(data, cfg)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(nets.tensors(), back.tensors()))
    info = sum(tensor_bits(t) for _, t in nets.tensors())
    assert abs(info - sum(bits.values())) < 0.2 and info <= 8 * len(data) <= info + 64


@pytest.mark.parametrize("module,value", [("mod", (1 << 20) + 1), ("arm", (1 << 15) + 1)])
def test_networks_values_above_their_limit_are_rejected(module, value):
    nets, cfg = _small_networks()
    (nets.mod[0] if module == "mod" else nets.arm.biases[0]).flat[0] = value
    with pytest.raises(FormatError, match="above"):
        read_networks(write_networks(nets)[0], cfg)
