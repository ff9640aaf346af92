"""The C++ core through its pybind11 module against the reference: every kernel table this CPU
runs, odd sizes and configurations, the ARM's integer paths, thread counts."""
import os
from pathlib import Path

import numpy as np
import pytest
from lotterycodec.decoder import reference
from lotterycodec.decoder.config import CONFIG_FIELDS, ArchConfig
from lotterycodec.decoder.synthetic import synthetic_bitstream

pytest.importorskip("lotterycodec.decoder._lotc_cpu")
from native import KERNELS, cpu, cpu_module, cpu_scalar, same  # noqa: E402


def test_config_fields_are_the_python_ones():
    default = ArchConfig()
    assert cpu_module.config_fields() == [(f.name, f.lo, f.hi, getattr(default, f.name)) for f in CONFIG_FIELDS]


def test_kernel_tables():
    assert cpu_module.kernels("scalar") == "scalar" and KERNELS[-1] == "scalar"
    assert cpu_module.kernels() == KERNELS[0]
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if os.uname().machine == "x86_64" and " avx2 " in flags and " fma " in flags:
        assert "avx2" in KERNELS
    if " avx512f " in flags:
        assert KERNELS[0] == "avx512"
    with pytest.raises(ValueError, match="not available"):
        cpu(b"", kernels="sse9")


def test_trained_file_matches_reference(trained):
    same(trained.data)


@pytest.mark.parametrize("exp", [0, 2])
def test_large_activations_stay_within_one_level(trained, exp):
    """A valid file need not be a trained one: the same integers read with a coarse modulation
    step (2^-exp) drive the activations into the hundreds, where an approximate reciprocal in
    a kernel table's GELU drifts by several levels (the AVX-512 table's 14-bit estimate did: 7).
    Every table this CPU runs must stay within FORMAT §8's one level."""
    from lotterycodec.decoder.format import read_bitstream, write_bitstream
    bs = read_bitstream(trained.data)
    cfg = bs.cfg.replace(mod_weight_step_exp=exp, mod_bias_step_exp=exp)
    same(write_bitstream(bs.width, bs.height, bs.seed, cfg, bs.networks, bs.mask_counts, bs.mask_words,
                          bs.latent_words))


@pytest.mark.parametrize("width,height,arch", [(1, 1, {}), (33, 17, {"stripe_height": 4}), (2, 1360, {}),
                                               (1, 2160, {"arm_layers": 0}), (9, 7, {"ups_kernel_size": 12,
                                                                                    "arm_context": 0})])
def test_odd_sizes_and_configs(width, height, arch):
    cfg = ArchConfig(arm_context=arch.pop("arm_context", 6), arm_width=5, mod_width=6, kept_weights=300, **arch)
    same(synthetic_bitstream(width, height, cfg, seed=width * 7 + height))


@pytest.mark.parametrize("context", [1, 8, 9, 16, 17])
def test_arm_memo_at_the_alphabet_edges(context):
    """Contexts of at most 16 latents go through the ARM memo (latents packed as bytes): latents
    at -A and A-1 with A = 64, the widest alphabet, must still decode exactly; 17 takes the plain path."""
    cfg = ArchConfig(arm_context=context, arm_width=8, latent_bound=64, mod_width=6, kept_weights=300)
    data = synthetic_bitstream(40, 30, cfg, seed=context, latent_spread=40.0)
    got = same(data)
    assert any(g.min() == -64 for g in got.latents) and any(g.max() == 63 for g in got.latents)


@pytest.mark.parametrize("context", [8, 16, 24])
def test_unit_buffers_reused_across_units_and_substreams(context):
    """A worker keeps its unit buffer from unit to unit and substream to substream, and clears only
    its border where no context reads the current cell (8, 16 and wider): stripes of 3 rows over
    several grids of different widths, wide latents, one thread and several must still match the
    reference exactly."""
    cfg = ArchConfig(arm_context=context, arm_width=8, latent_bound=64, mod_width=6, kept_weights=300,
                     stripe_height=3, shared_max_pixels=16)
    data = synthetic_bitstream(37, 29, cfg, seed=context + 1, latent_spread=30.0)
    ref = reference.decode(data)
    for threads in (1, 3):
        got = cpu(data, threads=threads)
        assert all(np.array_equal(a, b) for a, b in zip(ref.latents, got.latents)), threads


def test_register_arm_takes_32_bit_products_exactly():
    """The register ARM (contexts and layers of at most 8) multiplies in int16 pairs only while the
    inputs fit: hidden activations past 2^15, and a weight of 2^15 (no int16 copy at all), take its
    32-bit products. Latents must still match the reference exactly."""
    from lotterycodec.decoder.entropy import (
        IntArm,
        check_arm_bounds,
        encode_latents,
        encode_mask,
    )
    from lotterycodec.decoder.format import Networks, write_bitstream, write_networks
    from lotterycodec.decoder.synthetic import random_masks, random_networks
    cfg = ArchConfig(arm_context=8, arm_width=8, latent_bound=64, mod_width=6, kept_weights=300).validate()
    rng = np.random.default_rng(11)
    nets = random_networks(cfg, rng)
    weights = [w.copy() for w in nets.arm.weights]
    weights[0][:] = rng.integers(-2000, 2001, size=weights[0].shape)  # hidden inputs up to ~2^21
    weights[0][0, 0] = 1 << 15  # beyond int16: this layer has no pairs
    weights[1][:] = rng.integers(-30, 31, size=weights[1].shape)
    arm = IntArm(weights, [b.copy() for b in nets.arm.biases], cfg.arm_frac_bits)
    check_arm_bounds(arm, cfg.latent_bound)
    nets = Networks(arm, nets.ups_kernel, nets.mod)
    grids = [np.clip(np.round(rng.laplace(0, 20.0, size=s)), -64, 63).astype(np.int64)
             for s in cfg.grid_shapes(24, 32)]
    net_bytes, _ = write_networks(nets)
    counts, mask_words = encode_mask(random_masks(cfg, rng))
    data = write_bitstream(32, 24, 3, cfg, net_bytes, counts, mask_words, encode_latents(grids, arm, cfg))
    same(data)


def test_synthesis_neuron_kinds_decode_exactly():
    """The packing drops dead hidden neurons and splits layer 0 into neurons reading both
    coordinates, x alone (once per column) and y alone (once per row): a mask with all of these."""
    cfg = ArchConfig(arm_context=4, arm_width=4, mod_width=6, kept_weights=260)
    for seed in range(20):
        data = synthetic_bitstream(37, 29, cfg, seed=seed)
        w = reference.masked_weights(reference.read_bitstream(data))
        kept0 = w[0] != 0
        kinds = {(bool(x), bool(y)) for x, y in kept0}
        dead = (~(w[1][:, :w[0].shape[0]] != 0).any(axis=0)) & kept0.any(axis=1)  # fed but never read
        if {(True, True), (True, False), (False, True)} <= kinds and dead.any():
            break
    else:
        pytest.fail("no seed gave every kind of layer-0 neuron")
    same(data)



def test_any_thread_count_gives_identical_output(trained):
    data = synthetic_bitstream(40, 37, ArchConfig(arm_context=8, arm_width=8, stripe_height=4, shared_max_pixels=16,
                                                  kept_weights=900))
    for d in (data, trained.data):
        for decode in (cpu, cpu_scalar):
            one = decode(d, threads=1)
            for t in (2, 3, 8):
                other = decode(d, threads=t)
                assert np.array_equal(one.image, other.image)
                assert all(np.array_equal(a, b) for a, b in zip(one.latents, other.latents))
    with pytest.raises(ValueError):
        cpu(data, threads=-1)


@pytest.mark.parametrize("weight", [32768, 900, -32767])
def test_arm_input_kinds_agree(weight):
    """The SIMD ARM picks int16 pairs, a 15-bit split or int32 lanes per layer from the parse-time
    bounds; a weight of 2^15 forces int32 in layer 0, small ones the int16 paths. Same latents."""
    from lotterycodec.decoder.entropy import IntArm, encode_latents, encode_mask
    from lotterycodec.decoder.format import Networks, write_bitstream, write_networks
    from lotterycodec.decoder.synthetic import random_masks, random_networks

    cfg = ArchConfig(arm_context=8, arm_width=8, latent_bound=8, mod_width=6, kept_weights=300).validate()
    rng = np.random.default_rng(5)
    nets = random_networks(cfg, rng)
    weights = [w.copy() for w in nets.arm.weights]
    weights[0][3, 1] = weight
    weights[1][2, 5] = 7
    arm = IntArm(weights, nets.arm.biases, cfg.arm_frac_bits)
    nets = Networks(arm, nets.ups_kernel, nets.mod)
    grids = [np.clip(np.round(rng.laplace(0, 2.0, size=s)), -8, 7).astype(np.int64) for s in cfg.grid_shapes(21, 30)]
    counts, words = encode_mask(random_masks(cfg, rng))
    data = write_bitstream(30, 21, 9, cfg, write_networks(nets)[0], counts, words, encode_latents(grids, arm, cfg))
    got = same(data)
    assert all(np.array_equal(a, b) for a, b in zip(got.latents, grids))



@pytest.mark.parametrize("parents", [1, 5, 9])
@pytest.mark.parametrize("width,height,arch", [(45, 23, {"stripe_height": 4, "shared_max_pixels": 16}),
                                               (64, 40, {"stripe_height": 8, "shared_max_pixels": 30}),
                                               (13, 11, {}), (1, 1, {})])
def test_parent_inputs_decode_exactly_on_any_thread_count(parents, width, height, arch):
    """Version 3's inter-grid ARM inputs: striped grids whose parents are shared or striped, odd
    sizes (the bilinear's clamped edges), every table, and the threads' wait for the coarser grid:
    latents identical to the reference whatever the thread count."""
    cfg = ArchConfig(n_grids=4, arm_context=8, arm_width=8, mod_width=6, kept_weights=300, arm_parents=parents, **arch)
    data = synthetic_bitstream(width, height, cfg, seed=parents * 100 + width)
    assert data[4] == 4
    same(data)
    one = cpu(data, threads=1)
    for t in (2, 3, 8):
        other = cpu(data, threads=t)
        assert all(np.array_equal(a, b) for a, b in zip(one.latents, other.latents)), t
        assert np.array_equal(one.image, other.image)


def test_header_versions_in_cpp():
    """The C++ core refuses what the reference refuses: version 3 without parent inputs, a version 2
    file relabelled 3, an unknown version, a version 4 config record that sends a default or names a
    field beyond the last; and it decodes versions 2 and 3 as before (tests/test_format.py has the
    reference's side)."""
    from forging import reseal
    from lotterycodec.decoder.config import FormatError
    from lotterycodec.decoder.format import encode_varint, pack_header, read_bitstream
    cfg = ArchConfig(n_grids=3, arm_context=4, arm_width=4, mod_width=6, kept_weights=10)
    v3 = synthetic_bitstream(13, 11, cfg.replace(arm_parents=3), seed=2, version=3)
    bs = read_bitstream(v3)
    b = bs.section_bytes
    sections = [b["networks"], b["mask"], b["latent_index"] + b["latents"]]
    values = [getattr(bs.cfg, f.name) if f.name != "arm_parents" else 0 for f in CONFIG_FIELDS]
    head = pack_header(13, 11, 3, 8, bs.seed, values, sections, 3)
    with pytest.raises(FormatError, match="version 3 header for a configuration of version 2"):
        cpu(head + v3[v3[5]:])
    v2 = bytearray(synthetic_bitstream(13, 11, cfg, seed=2, version=2))
    np.testing.assert_array_equal(cpu(bytes(v2)).image, cpu(synthetic_bitstream(13, 11, cfg, seed=2)).image)
    np.testing.assert_array_equal(cpu(v3).image, cpu(synthetic_bitstream(13, 11, bs.cfg, seed=2)).image)
    v2[4] = 3
    with pytest.raises(FormatError):
        cpu(reseal(v2))
    v2[4] = 5
    with pytest.raises(FormatError, match="version 5 .*reads versions 2, 3, 4"):
        cpu(reseal(v2))
    v4 = synthetic_bitstream(13, 11, cfg, seed=2)
    for record, message in [(encode_varint(1 << 0) + bytes([7]), "n_grids sent with its default value"),
                            (encode_varint(1 << len(CONFIG_FIELDS)) + bytes([1]), "beyond")]:
        with pytest.raises(FormatError, match=message):
            cpu(pack_header(13, 11, 3, 8, 2, [], sections, config=record) + v4[v4[5]:])


