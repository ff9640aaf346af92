"""trainer.fused: the training step's elementwise chains compiled by torch.compile give the eager
functions' values and gradients, fall back to eager when compiling fails, and are switched on
only for training long enough to repay the compile."""
import warnings

import pytest

torch = pytest.importorskip("torch")

from lotterycodec.trainer import fused  # noqa: E402
from lotterycodec.trainer.model import _gelu, arm_rate_bits  # noqa: E402


def _values_and_grads(x, q, ctx, arm):
    x, ctx = x.clone().requires_grad_(), ctx.clone().requires_grad_()
    q = [v.clone().requires_grad_() for v in q]
    arm = [p.clone().requires_grad_() for p in arm]
    loss = (_gelu(x) ** 2).sum() + arm_rate_bits(q, ctx, arm[0::2], arm[1::2]).sum()
    loss.backward()
    return [loss.detach(), x.grad, ctx.grad, *[v.grad for v in q], *[p.grad for p in arm]]


@pytest.mark.slow
def test_compiled_chains_equal_eager():
    g = torch.Generator().manual_seed(0)
    for batch, width in ((1, 40), (2, 24)):  # a second shape: dynamic shapes, no wrong reuse
        x = 3 * torch.randn(batch, width, 1000, generator=g)
        q = [torch.round(4 * torch.randn(batch, h, w, generator=g)) for h, w in ((16, 16), (8, 8), (4, 4))]
        ctx = torch.round(4 * torch.randn(batch, 336, 8, generator=g))
        arm = [t for i, o in ((8, 8), (8, 8), (8, 2)) for t in (0.3 * torch.randn(batch, o, i, generator=g),
                                                                 0.3 * torch.randn(batch, o, generator=g))]
        eager = _values_and_grads(x, q, ctx, arm)
        with fused.enabled():
            compiled = _values_and_grads(x, q, ctx, arm)
        assert arm_rate_bits.compiled is not None and not arm_rate_bits.failed
        for a, b in zip(eager, compiled):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_failing_compile_falls_back_to_eager(monkeypatch):
    f = fused.Fused(lambda x: x * 2)

    def broken(fn, **kw):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run
    monkeypatch.setattr(torch, "compile", broken)
    with fused.enabled(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torch.equal(f(torch.ones(3)), torch.full((3,), 2.0))
        assert torch.equal(f(torch.ones(3)), torch.full((3,), 2.0))  # once failed, eager without retrying
    assert f.failed and len([w for w in caught if "torch.compile failed" in str(w.message)]) == 1


def test_enabled_only_inside_the_block_and_never_with_lotc_compile_0(monkeypatch):
    calls = []
    f = fused.Fused(lambda x: x + 1)
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: (lambda *a: calls.append(1) or fn(*a)))
    f(torch.zeros(1))
    with fused.enabled(False):
        f(torch.zeros(1))
    assert calls == []
    with fused.enabled():
        f(torch.zeros(1))
    assert calls == [1]
    monkeypatch.setenv("LOTC_COMPILE", "0")
    with fused.enabled():
        f(torch.zeros(1))
    assert calls == [1]


def test_training_turns_fusion_on_only_past_the_threshold(monkeypatch):
    from lotterycodec.trainer import train as train_module
    from lotterycodec.trainer.presets import get_preset
    seen = []
    monkeypatch.setattr(train_module, "_train", lambda *a, **k: seen.append(fused._ACTIVE) or [])

    class Model:
        batch, height, width = 2, 256, 256
    train_module.train(Model(), None, None, get_preset("cpu"), steps=1000)
    train_module.train(Model(), None, None, get_preset("cpu"), steps=100)
    assert seen == [True, False] and fused._ACTIVE is False
