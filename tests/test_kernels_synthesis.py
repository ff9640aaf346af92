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
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from lotterycodec.kernels import synthesis  # noqa: E402
from lotterycodec.kernels.synthesis import (_gelu, _load_matrix, _matmul, live_neurons, prepare,  # noqa: E402
                                            run)

DEVICE = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"


@pytest.mark.parametrize("height,width,arch,kept", [(9, 13, {}, 0.67), (1, 5, {"mod_width": 20, "mod_out": 2}, 0.67),
                                                    (7, 1, {"synth_width0": 12, "n_grids": 3}, 0.67),
                                                    (6, 11, {}, 0.04), (5, 4, {"mod_out": 5}, 0.01)])
def test_fused_synthesis_matches_reference(height, width, arch, kept):
    # kept 0.04 / 0.01: most hidden neurons and o0 channels are compacted away
    rng = np.random.default_rng(height * 31 + width)
    cfg = ArchConfig(kept_weights=0, **arch)
    cfg = cfg.replace(kept_weights=int(cfg.synth_weight_count * kept))
    nets = reference.FloatNetworks.from_quantized(random_networks(cfg, rng), cfg)
    up = rng.normal(0, 1.5, (cfg.n_grids, height, width)).astype(np.float32)
    weights = [np.where(m, w, np.float32(0)) for w, m in
               zip(synthesis_weights(9, cfg.synth_in_out), random_masks(cfg, rng))]
    mods = reference.modulate(up, nets.mod)
    want = reference.to_uint8(reference.synthesize(np.arange(height), width, height,
                                                   reference.rewind_inputs(mods), weights))
    up_dev = torch.from_numpy(up).to(DEVICE)
    got = run(up_dev, prepare(nets.mod, weights, cfg.n_grids, DEVICE)).cpu().numpy()
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_live_neurons_drops_exactly_the_dead_ones():
    w0 = np.array([[1, 0], [0, 0], [0, 1]], np.float32)             # neuron 1: no kept input
    w1 = np.array([[1, 0, 1, 0], [0, 0, 0, 1]], np.float32)         # hidden in 0..2, one mod input
    w2 = np.array([[0, 1, 0], [0, 0, 0]], np.float32)               # h1 neuron 0 is never read
    w3 = np.array([[1, 0], [0, 0], [0, 0]], np.float32)             # h2 neuron 1 is never read
    live = live_neurons([w0, w1, w2, w3])
    # h1 neuron 0 unread -> h0 neurons 0 and 2 lose their only reader; h1 neuron 1 lives on its mod input
    assert [a.tolist() for a in live] == [[], [1], [0]]


# ---- the kernels' building blocks one by one, so a failure on a GPU names its stage

@triton.jit
def _gelu_probe(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    tl.store(y_ptr + i, _gelu(tl.load(x_ptr + i, mask=i < n, other=0.0)), mask=i < n)


@triton.jit
def _matmul_probe(a_ptr, b_ptr, c_ptr, M: tl.constexpr, K: tl.constexpr, N: tl.constexpr, PREC: tl.constexpr):
    c = _matmul(_load_matrix(a_ptr, M, K), _load_matrix(b_ptr, K, N), PREC)
    tl.store(c_ptr + tl.arange(0, M)[:, None] * N + tl.arange(0, N)[None, :], c)


def test_gelu_matches_reference():
    x = np.linspace(-40, 40, 4001, dtype=np.float32)
    y = torch.empty(x.size, device=DEVICE)
    _gelu_probe[(1,)](torch.from_numpy(x).to(DEVICE), y, x.size, BLOCK=4096)
    assert np.allclose(y.cpu().numpy(), reference.gelu(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("m,k,n", [(64, 16, 32), (64, 64, 16), (128, 32, 16)])
def test_matmul_matches_numpy(m, k, n):
    rng = np.random.default_rng(m + k + n)
    a, b = rng.normal(size=(m, k)).astype(np.float32), rng.normal(size=(k, n)).astype(np.float32)
    c = torch.empty((m, n), device=DEVICE)
    _matmul_probe[(1,)](torch.from_numpy(a).to(DEVICE), torch.from_numpy(b).to(DEVICE), c, M=m, K=k, N=n, PREC="ieee")
    assert np.allclose(c.cpu().numpy(), a @ b, rtol=1e-4, atol=1e-4)


def test_modulation_stages_match_reference():
    rng = np.random.default_rng(5)
    cfg = ArchConfig()
    cfg = cfg.replace(kept_weights=cfg.synth_weight_count // 2)
    nets = reference.FloatNetworks.from_quantized(random_networks(cfg, rng), cfg)
    height, width = 11, 70
    up = rng.normal(0, 1.5, (cfg.n_grids, height, width)).astype(np.float32)
    o0, o1, o2, o3 = reference.modulate(up, nets.mod)
    weights = [np.where(m, w, np.float32(0)) for w, m in
               zip(synthesis_weights(9, cfg.synth_in_out), random_masks(cfg, rng))]
    p = prepare(nets.mod, weights, cfg.n_grids, DEVICE)
    up_p = torch.zeros((p.LP, height, width), device=DEVICE)
    up_p[:cfg.n_grids] = torch.from_numpy(up)
    got1 = torch.empty((height, width, p.MOP), device=DEVICE)
    grid = (triton.cdiv(height * width, synthesis.BLOCK),)
    synthesis._modulation_head_kernel[grid](up_p, *p.head, got1, height * width, LP=p.LP, MWP=p.MWP, MOP=p.MOP,
                                            M16=p.M16, BLOCK=synthesis.BLOCK, PREC="ieee")
    mo = cfg.mod_out
    assert np.allclose(got1.cpu().numpy()[..., :mo], o1.transpose(1, 2, 0), rtol=1e-4, atol=1e-5)
    src = torch.zeros((height, width, p.MOP), device=DEVICE)
    src[..., :mo] = torch.from_numpy(np.ascontiguousarray(o1.transpose(1, 2, 0)))
    got2 = torch.empty_like(src)
    synthesis._residual_conv_kernel[grid](src, *p.conv2, got2, height, width, MOP=p.MOP, BLOCK=synthesis.BLOCK)
    assert np.allclose(got2.cpu().numpy()[..., :mo], o2.transpose(1, 2, 0), rtol=1e-4, atol=1e-5)
