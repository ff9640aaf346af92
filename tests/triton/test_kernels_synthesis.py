"""Triton modulation + fused masked synthesis (TRITON_INTERPRET=1 on CPU) against the reference."""

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from lotterycodec.decoder import reference
from lotterycodec.decoder.config import ArchConfig
from lotterycodec.decoder.philox import synthesis_weights
from lotterycodec.decoder.reference import live_neurons
from lotterycodec.decoder.synthetic import random_masks, random_networks
from lotterycodec.kernels import synthesis
from lotterycodec.kernels.synthesis import _gelu, prepare, run


def _case(height, width, arch, kept, seed):
    rng = np.random.default_rng(seed)
    cfg = ArchConfig(kept_weights=0, **arch)
    cfg = cfg.replace(kept_weights=int(cfg.synth_weight_count * kept))
    nets = reference.FloatNetworks.from_quantized(random_networks(cfg, rng), cfg)
    up = rng.normal(0, 1.5, (cfg.n_grids, height, width)).astype(np.float32)
    weights = [np.where(m, w, np.float32(0)) for w, m in
               zip(synthesis_weights(9, cfg.synth_in_out), random_masks(cfg, rng))]
    return cfg, nets, up, weights


@pytest.mark.parametrize("height,width,arch,kept", [(9, 13, {}, 0.67), (1, 5, {"mod_width": 20, "mod_out": 2}, 0.67),
                                                    (7, 1, {"synth_width0": 12, "n_grids": 3}, 0.67),
                                                    (6, 11, {}, 0.04), (5, 4, {"mod_out": 5}, 0.01),
                                                    (4, 6, {}, 1.0)])
def test_fused_synthesis_matches_reference(device, height, width, arch, kept):
    # kept 0.04 / 0.01: the loops over live neurons run zero or one time
    cfg, nets, up, weights = _case(height, width, arch, kept, height * 31 + width)
    mods = reference.modulate(up, nets.mod)
    want = reference.to_uint8(reference.synthesize(np.arange(height), width, height,
                                                   reference.rewind_inputs(mods), weights))
    p = prepare(nets.mod, weights, device)
    got = run(torch.from_numpy(up).to(device), p, block=64, num_warps=2).cpu().numpy()
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_compaction_counts_what_the_kernels_loop_over(device):
    cfg, nets, up, weights = _case(3, 3, {}, 0.04, 1)
    p = prepare(nets.mod, weights, device)
    assert p.head_rows.numel() == cfg.mod_width * (cfg.n_grids + 1 + cfg.mod_out + 3)
    assert p.live == tuple(len(a) for a in live_neurons(weights))
    assert p.l0_rows.numel() == p.live[0] * (p.live[1] + 2)


def test_modulation_passes_match_reference(device):
    # the head (o1, o0's share of the output sums) and residual-conv (o2) passes alone, so a
    # failure on a GPU names its stage
    cfg, nets, up, weights = _case(11, 70, {}, 0.5, 5)
    o0, o1, o2, _ = reference.modulate(up, nets.mod)
    p = prepare(nets.mod, weights, device)
    k = synthesis.kernels(cfg.n_grids, cfg.mod_out, p.live[1])
    height, width = up.shape[1:]
    got1 = torch.empty((cfg.mod_out, height, width), device=device)
    z0 = torch.empty((3, height, width), device=device)
    k["head_kernel"][(4,)](torch.from_numpy(up).to(device), p.head_rows, p.b1, got1, z0, height * width,
                           cfg.mod_width, BLOCK=256)
    assert np.allclose(got1.cpu().numpy(), o1, rtol=1e-4, atol=1e-5)
    m3_o0 = weights[3][:, cfg.synth_width2 + 3 * cfg.mod_out:]
    assert np.allclose(z0.cpu().numpy(), np.einsum("cj,jhw->chw", m3_o0, o0), rtol=1e-4, atol=1e-5)
    got2 = torch.empty_like(got1)
    k["conv_kernel"][(4,)](torch.from_numpy(o1).to(device), p.conv2, got2, height, width, BLOCK=256)
    assert np.allclose(got2.cpu().numpy(), o2, rtol=1e-4, atol=1e-5)


def test_live_neurons_drops_exactly_the_dead_ones():
    w0 = np.array([[1, 0], [0, 0], [0, 1]], np.float32)             # neuron 1: no kept input
    w1 = np.array([[1, 0, 1, 0], [0, 0, 0, 1]], np.float32)         # hidden in 0..2, one mod input
    w2 = np.array([[0, 1, 0], [0, 0, 0]], np.float32)               # h1 neuron 0 is never read
    w3 = np.array([[1, 0], [0, 0], [0, 0]], np.float32)             # h2 neuron 1 is never read
    live = live_neurons([w0, w1, w2, w3])
    # h1 neuron 0 unread -> h0 neurons 0 and 2 lose their only reader; h1 neuron 1 lives on its mod input
    assert [a.tolist() for a in live] == [[], [1], [0]]


@triton.jit
def _gelu_probe(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    tl.store(y_ptr + i, _gelu(tl.load(x_ptr + i, mask=i < n, other=0.0)), mask=i < n)


def test_gelu_matches_reference(device):
    x = np.linspace(-40, 40, 4001, dtype=np.float32)
    y = torch.empty(x.size, device=device)
    _gelu_probe[(1,)](torch.from_numpy(x).to(device), y, x.size, BLOCK=4096)
    assert np.allclose(y.cpu().numpy(), reference.gelu(x), rtol=1e-5, atol=1e-6)
