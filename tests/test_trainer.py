"""Trainer units against their decoder twins, and the training-stage guarantees."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lotterycodec.decoder import reference  # noqa: E402
from lotterycodec.decoder.config import ACT_FRAC, ArchConfig  # noqa: E402
from lotterycodec.decoder.entropy import grid_parent, substream_plan, unit_inputs  # noqa: E402
from lotterycodec.trainer.model import LotteryModel, bicubic_phases, kumaraswamy_noise, soft_round  # noqa: E402
from lotterycodec.trainer.presets import get_preset  # noqa: E402
from lotterycodec.trainer.train import BatchedModel, evaluate, finetune  # noqa: E402


def _model(h=21, w=34, **arch):
    torch.manual_seed(0)
    cfg = ArchConfig(**{"stripe_height": 4, "shared_max_pixels": 30, "kept_weights": 900, **arch})
    m = LotteryModel(cfg, h, w, seed=5)
    with torch.no_grad():
        for y in m.latents:
            y.copy_(torch.randn_like(y) * 0.5)
    return m


@pytest.mark.parametrize("parents", [0, 5, 9])
def test_contexts_match_the_entropy_coder(parents):
    """Stripe-confined, zero-padded contexts and the upsampled parent grids: the trainer's ARM
    inputs (times 2^ACT_FRAC) are exactly the coder's integers."""
    m = _model(arm_parents=parents)
    q = m.quantized_latents("hard")
    got = m.contexts(q).detach().numpy() * (1 << ACT_FRAC)
    assert np.array_equal(got, np.round(got))
    ints = [v.detach().numpy().astype(np.int64) for v in q]
    plan = [u for units in substream_plan(m.cfg, m.height, m.width) for u in units]
    want = np.concatenate([unit_inputs(ints, u, m.cfg, grid_parent(ints, g, m.cfg))
                           for g in range(len(q)) for u in plan if u.grid == g])
    assert got.shape == want.shape and np.array_equal(got.astype(np.int64), want)


def test_context_gradient_is_the_gathers_adjoint():
    """The gather's backward (one index_add) against autograd through plain indexing."""
    m = _model()
    q = [v.detach().requires_grad_() for v in m.quantized_latents("noise")]
    weights = torch.randn(m.context_index.shape)
    (m.contexts(q) * weights).sum().backward()
    got = [v.grad.clone() for v in q]
    for v in q:
        v.grad = None
    flat = torch.cat([v.reshape(-1) for v in q] + [torch.zeros(1)])
    (flat[m.context_index] * weights).sum().backward()
    for a, b in zip(got, q):
        assert torch.allclose(a, b.grad, atol=1e-5)


@pytest.mark.parametrize("per_phase", [False, True])
@pytest.mark.parametrize("kernel_size", [4, 8, 12])
def test_upsampling_matches_reference(per_phase, kernel_size):
    m = _model(ups_kernel_size=kernel_size)
    with torch.no_grad():
        m.ups_kernel.add_(torch.randn_like(m.ups_kernel) * 0.1)
    q = m.quantized_latents("hard")
    got = m.upsample(q, per_phase=per_phase).detach().numpy()
    want = reference.upsample([v.detach().numpy() for v in q], m.ups_kernel.detach().numpy())
    assert np.allclose(got, want, atol=1e-4)


def test_bicubic_phases_preserve_constants():
    k = bicubic_phases(4)
    assert np.allclose(k.sum(axis=(2, 3)), 1.0, atol=1e-6)


def test_soft_round_limits_and_noise_range():
    x = torch.linspace(-3, 3, 601) + 0.003  # away from the ties at k + 1/2
    assert torch.allclose(soft_round(x, 1e-4), torch.round(x), atol=1e-3)
    assert torch.all((soft_round(x, 0.3) - x).abs() <= 0.5)
    n = kumaraswamy_noise((10000,), 2.0, "cpu")
    assert n.min() > -0.5 and n.max() < 0.5 and abs(float(n.mean())) < 0.02


def test_global_top_k_keeps_exactly_k():
    m = _model()
    masks = m.masks()
    assert int(sum(float(k.detach().sum()) for k in masks)) == m.cfg.kept_weights


def test_finetune_resets_to_best():
    m = BatchedModel([_model(h=16, w=16)])
    target, lmbda = torch.rand(1, 16, 16, 3), torch.tensor([1e-3])
    before = evaluate(m, target, lmbda)[0]["loss"]
    preset = get_preset("fast")
    import dataclasses
    finetune(m, target, lmbda, dataclasses.replace(preset, finetune_steps=20, finetune_lr=0.5),
             progress=False, eval_every=5)
    assert evaluate(m, target, lmbda)[0]["loss"] <= before + 1e-7


def test_hard_phase_trains_the_networks_on_frozen_latents():
    """Cool-chic 5's last phase (here every step of it): the latents stay at their integers, the
    networks move, and the state kept is the best the phase saw (never worse than its start)."""
    import dataclasses

    from lotterycodec.trainer.train import train
    m = BatchedModel([_model(h=16, w=16)])
    with torch.no_grad():
        for y in m.latents:
            y.uniform_(-0.3, 0.3)
    target, lmbda = torch.rand(1, 16, 16, 3), torch.tensor([1e-3])
    latents = [y.detach().clone() for y in m.latents]
    mod = [p.detach().clone() for p in m.mod]
    before = evaluate(m, target, lmbda)[0]["loss"]
    preset = dataclasses.replace(get_preset("fast"), hard_phase=1.0, hard_phase_lr=(1e-2, 1e-3))
    after = train(m, target, lmbda, preset, steps=30, progress=False, threads=1)[0]["loss"]
    assert all(torch.equal(a, b) for a, b in zip(latents, m.latents))
    assert any(not torch.equal(a, b) for a, b in zip(mod, m.mod))
    assert after <= before + 1e-7


def test_dense_synthesis_ablation_round_trip(small_image):
    """synth_mode 1: trained dense weights in the networks section, no mask; the reference decodes
    the model's computation, the default backend routes it there, the C++ backend refuses it."""
    from lotterycodec.decoder import reference
    from lotterycodec.decoder.backends import get_backend
    from lotterycodec.decoder.config import FormatError
    from lotterycodec.decoder.format import read_bitstream, read_networks
    from lotterycodec.trainer.encode import encode_array, model_image

    result = encode_array(small_image, lmbda=1e-2, preset="fast", steps=30, arch={"synth_mode": 1}, progress=False)
    bs = read_bitstream(result.data)
    assert bs.cfg.synth_mode == 1 and bs.cfg.kept_weights == 0 and bs.mask_counts == [0, 0, 0, 0]
    nets = read_networks(bs.networks, bs.cfg)
    assert [w.shape for w in nets.synth] == [(o, i) for i, o in bs.cfg.synth_in_out] and "synth" in nets.bits
    decoded = reference.decode(result.data)
    assert np.abs(decoded.image.astype(int) - model_image(result.model).astype(int)).max() <= 1
    assert np.array_equal(get_backend("auto")(result.data).image, decoded.image)
    assert result.summary["macs_per_pixel"]["synthesis_kept"] == result.summary["macs_per_pixel"]["synthesis_dense"]
    if get_backend("cpu") is not None:
        try:
            get_backend("cpu")(result.data)
        except FormatError as exc:
            assert "reference backend only" in str(exc)
        except RuntimeError:
            pass  # the C++ module is not built here
        else:
            raise AssertionError("the cpu backend decoded a synth_mode 1 file")


def test_training_gelu_is_the_formats_tanh_gelu():
    """The trainer computes GELU's tanh form through sigmoid (faster on CPU): same values, exact
    gradient (float64 gradcheck)."""
    import torch.nn.functional as F

    from lotterycodec.trainer.model import _gelu
    x = torch.linspace(-8, 8, 4001)
    assert torch.allclose(_gelu(x), F.gelu(x, approximate="tanh"), atol=2e-6, rtol=0)
    x64 = torch.randn(300, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_gelu, (x64,))


def test_stage1_quantizer_follows_the_presets_schedule():
    """Annealed from the first value to the second; the hard tail trains straight-through."""
    import dataclasses

    from lotterycodec.trainer.train import stage1_quantizer
    p = dataclasses.replace(get_preset("fast"), temperature=(0.4, 0.1), noise_a=(3.0, 1.0), noise_std=None,
                            hard_tail=0.25)
    first, last_noisy = stage1_quantizer(p, 0, 100), stage1_quantizer(p, 74, 100)
    assert first == {"mode": "noise", "temperature": 0.4, "noise_a": 3.0}
    assert last_noisy == {"mode": "noise", "temperature": pytest.approx(0.1), "noise_a": pytest.approx(1.0)}
    assert all(stage1_quantizer(p, s, 100) == {"mode": "ste"} for s in range(75, 100))
    g = dataclasses.replace(p, noise_std=(0.2, 0.1), hard_tail=0.0)
    assert stage1_quantizer(g, 99, 100) == {"mode": "gaussian", "temperature": pytest.approx(0.1),
                                            "noise_std": pytest.approx(0.1)}


@pytest.mark.slow
def test_gaussian_quantizer_noise_comes_from_the_items_generator():
    """Gaussian noise of the asked std, drawn from the item's generator (repeatable per item)."""
    m = _model()
    draws = []
    for _ in range(2):
        m.noise_generator = torch.Generator().manual_seed(3)
        draws.append(m.quantized_latents("gaussian", temperature=1e-3, noise_std=0.2))
    assert all(torch.equal(a, b) for a, b in zip(*draws))
    x = m.latents[0].detach() * m.gain
    assert not torch.equal(draws[0][0], soft_round(x, 1e-3))
    m.noise_generator = torch.Generator().manual_seed(3)
    big = torch.zeros(4096, 4096)
    from lotterycodec.trainer.model import quantize_latents
    q = quantize_latents([big[None]], 1.0, 64, "gaussian", 10.0, 2.0, [m.noise_generator], noise_std=0.2)[0]
    assert abs(float(q.std()) - 0.2) < 0.02  # a large temperature makes soft round nearly the identity


def test_networks_rdoq_lowers_the_files_own_cost_and_keeps_integers_and_values_together():
    """After the step search, RDOQ moves integers toward zero only where distortion + lambda * bits
    / pixel falls (per item, two items with their own lambdas in one batch); the batch then holds
    exactly the dequantized integers the file will carry."""
    from lotterycodec.decoder.format import tensor_bits
    from lotterycodec.trainer.model import modulate, synthesize, upsample
    from lotterycodec.trainer.quantize import RDOQ_GROUPS, rdoq_networks, search_steps
    items = [_model(h=24, w=20, mod_width=8) for _ in range(2)]
    m = BatchedModel(items)
    with torch.no_grad():
        for p in m.mod:
            p.add_(torch.randn_like(p) * 0.3)
    target, lmbdas = torch.rand(2, 24, 20, 3), [1e-3, 2e-2]
    chosen = search_steps(m, target, lmbdas)

    def cost() -> np.ndarray:
        with torch.no_grad():
            q = m.quantized_latents("hard")
            up = upsample(q, m.ups_kernel, m.shapes, per_phase=True)
            image = synthesize(m.coords, m.synthesis_layers(), modulate(up, list(m.mod)), m.height, m.width)
            mse = torch.mean((image - target) ** 2, dim=(1, 2, 3)).double().numpy()
        bits = np.array([sum(tensor_bits(t) for name in RDOQ_GROUPS for t in chosen[b][name][1]) for b in range(2)])
        return mse + np.array(lmbdas) / (24 * 20) * bits

    before = cost()
    ints_before = [[t.copy() for name in RDOQ_GROUPS for t in c[name][1]] for c in chosen]
    moves = rdoq_networks(m, target, lmbdas, chosen)
    after = cost()
    assert moves > 0 and np.all(after <= before) and np.any(after < before)
    params = {"ups_step_exp": [m.ups_kernel], "mod_weight_step_exp": list(m.mod[0::2]),
              "mod_bias_step_exp": list(m.mod[1::2])}
    for b in range(2):
        flat_before = iter(ints_before[b])
        for name in RDOQ_GROUPS:
            exp, tensors = chosen[b][name]
            for p, t in zip(params[name], tensors):
                assert torch.equal(p[b].detach(), torch.from_numpy(t.astype(np.float32)) * 2.0 ** -exp)
                old = next(flat_before)  # each integer stayed or moved one step toward zero
                assert np.all((t == old) | (t == old - np.sign(old)))


def test_chunked_synthesis_error_is_autograd_through_modulate_and_synthesize():
    """Training's fused pass (modulated_synthesis_mse: o0 recomputed per chunk, the synthesis chunk by
    chunk and differentiated during the forward) gives the error and every gradient autograd gives
    through modulate, synthesize and the image's error, for a batch, a last chunk shorter than the
    others and an incoming gradient other than ones."""
    from lotterycodec.trainer.model import modulate, modulated_synthesis_mse, synthesize
    torch.manual_seed(3)
    cfg = ArchConfig(arm_context=8, arm_width=8, mod_width=24)
    h, w, B = 37, 53, 2
    m = LotteryModel(cfg, h, w, seed=1)
    weights = [torch.randn(B, *x.shape, requires_grad=True) for x in m.synthesis_layers()]
    mod = [(torch.randn(B, *p.shape) * 0.5).requires_grad_() for p in m.mod]
    up = torch.randn(B, cfg.n_grids, h, w, requires_grad=True)
    leaves = [up, *weights, *mod]
    targets, upstream = torch.rand(B, h, w, 3), torch.tensor([1.0, 0.3])
    mse = ((synthesize(m.coords, weights, modulate(up, mod), h, w) - targets) ** 2).mean(dim=(1, 2, 3))
    (mse * upstream).sum().backward()
    expected = [p.grad.clone() for p in leaves]
    for p in leaves:
        p.grad = None
    fused_mse = modulated_synthesis_mse(m.coords, weights, up, mod, targets, chunk=300)  # 1961 pixels: 6 x 300 + 161
    (fused_mse * upstream).sum().backward()
    torch.testing.assert_close(fused_mse, mse, rtol=1e-5, atol=1e-7)
    for p, e in zip(leaves, expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-4 * float(e.abs().max()))
