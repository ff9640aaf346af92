"""Batched encoding: B items in one model train exactly as B separate runs, with no coupling."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lotterycodec.decoder import reference  # noqa: E402
from lotterycodec.api import psnr  # noqa: E402
from lotterycodec.decoder.config import ArchConfig  # noqa: E402
from lotterycodec.trainer.encode import encode_array, encode_arrays  # noqa: E402
from lotterycodec.trainer.model import LotteryModel  # noqa: E402
from lotterycodec.trainer.optim import BatchedSOAP  # noqa: E402
from lotterycodec.trainer.presets import get_preset  # noqa: E402
from lotterycodec.trainer.train import BatchedModel, clip_per_item  # noqa: E402


def _items(kept=(900, 400, 1300), seeds=(3, 4, 5), h=19, w=26, **arch):
    items = []
    for k, s in zip(kept, seeds):
        torch.manual_seed(s)
        cfg = ArchConfig(**{"stripe_height": 4, "shared_max_pixels": 30, "kept_weights": k, **arch})
        m = LotteryModel(cfg, h, w, seed=s)
        with torch.no_grad():
            for y in m.latents:
                y.copy_(torch.randn_like(y) * 0.4)
        m.noise_generator = torch.Generator().manual_seed(s)
        items.append(m)
    return items


@pytest.mark.parametrize("mode", ["hard", "noise", "ste"])
def test_batched_forward_equals_each_item(mode):
    items = _items()
    batch = BatchedModel(items)
    images, rates = batch(mode=mode, temperature=0.2, noise_a=1.5)
    for m in items:  # the item generators restart: the batch drew each item's noise from its own
        m.noise_generator.manual_seed(m.seed)
    for b, m in enumerate(items):
        image, rate = m(mode=mode, temperature=0.2, noise_a=1.5)
        assert torch.allclose(images[b], image, atol=2e-5), b
        assert torch.allclose(rates[b], rate, rtol=1e-5), b


def test_dense_ablation_batches_too():
    items = _items(kept=(0, 0), seeds=(1, 2), synth_mode=1)
    images, _ = BatchedModel(items)(mode="hard")
    for b, m in enumerate(items):
        assert torch.allclose(images[b], m(mode="hard")[0], atol=2e-5)


def test_unstack_round_trip():
    items = _items()
    batch = BatchedModel(items)
    with torch.no_grad():
        for p in batch.parameters():
            p.add_(0.01)
    batch.unstack_into(items)
    images, _ = batch(mode="hard")
    for b, m in enumerate(items):
        assert torch.allclose(images[b], m(mode="hard")[0], atol=2e-5)


def test_clipping_is_per_item():
    a = torch.zeros(2, 3, requires_grad=True)
    b = torch.zeros(2, 4, requires_grad=True)
    a.grad = torch.tensor([[30.0, 0, 0], [0.3, 0, 0]])
    b.grad = torch.tensor([[0, 40.0, 0, 0], [0, 0.4, 0, 0]])
    norms = clip_per_item([a, b], 10.0)
    assert torch.allclose(norms, torch.tensor([50.0, 0.5]))
    assert torch.allclose(a.grad[0], torch.tensor([6.0, 0, 0]), atol=1e-4)  # item 0 clipped to norm 10
    assert torch.equal(a.grad[1], torch.tensor([0.3, 0, 0]))                # item 1 untouched


def test_one_size_per_batch(small_image):
    with pytest.raises(ValueError, match="one size"):
        encode_arrays([small_image, small_image[:16]], [1e-3] * 2, [0.7] * 2, [1, 2], preset="fast", steps=1,
                      progress=False)


@pytest.mark.slow
def test_low_rate_items_train_in_their_own_batch(small_image):
    # the cpu preset's low-rate architecture (lambda >= 4e-3): one batch per architecture, order kept
    got = encode_arrays([small_image] * 3, [1e-3, 1e-2, 4e-3], [0.7] * 3, [1, 2, 3], preset="cpu", steps=1,
                        progress=False)
    assert [(r.cfg.arm_context, r.cfg.arm_width, r.cfg.mod_width) for r in got] == [(16, 16, 48), (8, 8, 24),
                                                                                    (8, 8, 24)]
    assert [r.summary["times"]["batch_size"] for r in got] == [1, 2, 2]
    assert [r.summary["lmbda"] for r in got] == [1e-3, 1e-2, 4e-3]


@pytest.mark.slow
def test_batch_of_three_matches_three_single_runs(bundled_image):
    """Same seeds, 32x32, 50 steps: each item of one B = 3 run decodes within 0.05 dB of its own run.
    With Adam for the networks, whose elementwise steps keep a row's rounding its own; SOAP's
    eigenbases are another matter (test_soap_rows_are_independent)."""
    crops = [np.ascontiguousarray(bundled_image[y:y + 32, x:x + 32]) for y, x in ((0, 0), (48, 40), (90, 70))]
    lmbdas, kept, seeds = [1e-3, 4e-3, 1e-2], [0.7, 0.5, 0.3], [11, 12, 13]
    adam = dataclasses.replace(get_preset("fast"), optimizer="adam")
    common = dict(preset=adam, steps=50, arch=dict(stripe_height=8, shared_max_pixels=64), progress=False)
    batched = encode_arrays(crops, lmbdas, kept, seeds, **common)
    for crop, lm, k, s, got in zip(crops, lmbdas, kept, seeds, batched):
        single = encode_array(crop, lmbda=lm, kept_ratio=k, seed=s, **common)
        p_single = psnr(reference.decode(single.data).image, crop)
        p_batched = psnr(reference.decode(got.data).image, crop)
        assert abs(p_single - p_batched) <= 0.05, (p_single, p_batched)
        assert got.summary["times"]["batch_size"] == 3 and single.summary["times"]["batch_size"] == 1
        assert got.cfg.kept_weights == single.cfg.kept_weights


def test_soap_rows_are_independent():
    """BatchedSOAP preconditions each item on its own: three items stepped as one batch end exactly
    where each ends alone. (Within a training run, an eigenbasis of nearly equal eigenvalues turns
    on rounding, so batched and single SOAP encodes agree in quality, not bit for bit.)"""
    torch.manual_seed(0)
    w = torch.randn(3, 6, 5, requires_grad=True)
    alone = [w.detach()[b:b + 1].clone().requires_grad_(True) for b in range(3)]
    x, target = torch.randn(3, 5, 7), torch.randn(3, 6, 7)
    batched, singles = BatchedSOAP([w], lr=1e-2), [BatchedSOAP([a], lr=1e-2) for a in alone]
    for _ in range(30):
        batched.zero_grad()
        ((torch.bmm(w, x) - target) ** 2).sum().backward()
        batched.step()
        for b, (a, opt) in enumerate(zip(alone, singles)):
            opt.zero_grad()
            ((torch.bmm(a, x[b:b + 1]) - target[b:b + 1]) ** 2).sum().backward()
            opt.step()
    assert all(torch.equal(w[b], alone[b][0]) for b in range(3))
    assert not torch.equal(w[0], w[1])


def test_cli_encodes_several_inputs_into_a_folder(tmp_path, bundled_image, capsys):
    import json

    from PIL import Image

    from lotterycodec.cli import main
    inputs = []
    for name, (h, w) in {"a": (16, 16), "b": (16, 16), "c": (12, 20)}.items():
        Image.fromarray(np.ascontiguousarray(bundled_image[:h, :w])).save(tmp_path / f"{name}.png")
        inputs.append(str(tmp_path / f"{name}.png"))
    out = tmp_path / "out"
    assert main(["encode", *inputs, "-o", str(out), "--preset", "fast", "--steps", "3", "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert [f["output"] for f in files] == [str(out / f"{n}.lotc") for n in "abc"]
    assert [f["times"]["batch_size"] for f in files] == [2, 2, 1]  # a and b share a batch
    for f, (h, w) in zip(files, [(16, 16), (16, 16), (12, 20)]):
        assert reference.decode((out / Path(f["output"]).name).read_bytes()).image.shape == (h, w, 3)
    (tmp_path / "x").mkdir()
    Image.fromarray(np.ascontiguousarray(bundled_image[:8, :8])).save(tmp_path / "x" / "a.png")
    assert main(["encode", inputs[0], str(tmp_path / "x" / "a.png"), "-o", str(out), "--steps", "1"]) == 1
    assert "same file" in capsys.readouterr().err


def test_files_of_a_batch_written_in_worker_processes_equal_those_written_here(small_image, monkeypatch):
    from lotterycodec.trainer import encode, workers
    sent = []

    def recording(items):
        sent.extend(items)
        return workers.pack_all(items)

    monkeypatch.setattr(encode, "pack_all", recording)
    monkeypatch.setattr(workers, "POOL_MIN_PIXELS", 0)  # tiny items: start the workers anyway
    monkeypatch.setattr(workers, "_workers_allowed", True)  # as the command line allows them
    results = encode_arrays([small_image] * 3, [1e-3] * 3, [0.7, 0.4, 0.7], [1, 2, 3], preset="fast", steps=2,
                            progress=False)
    assert len(sent) == 3 and workers._pool is not None
    assert [r.data for r in results] == [workers.pack(item).data for item in sent]
    assert len({r.data for r in results}) == 3


def test_library_callers_write_files_here_unless_they_allow_worker_processes(small_image, monkeypatch):
    # A worker imports the caller's main module again: a script without a main guard would run twice.
    from lotterycodec.trainer import workers

    def no_workers(fn, args):
        raise AssertionError("worker processes used without allow_worker_processes()")

    monkeypatch.setattr(workers, "POOL_MIN_PIXELS", 0)
    monkeypatch.setattr(workers, "_workers_allowed", False)
    monkeypatch.setattr(workers, "_submit", no_workers)
    results = encode_arrays([small_image] * 2, [1e-3] * 2, [0.7] * 2, [1, 2], preset="fast", steps=1, progress=False)
    assert len({r.data for r in results}) == 2


def test_low_rate_items_train_their_own_step_count(small_image, monkeypatch):
    import dataclasses

    from lotterycodec.trainer import presets
    tiny = dataclasses.replace(presets.PRESETS["fast"], steps=1, low_rate_steps=2, low_rate_from=4e-3)
    monkeypatch.setitem(presets.PRESETS, "tiny", tiny)
    assert [presets.item_steps(tiny, lm) for lm in (1e-3, 4e-3)] == [None, 2]
    assert presets.item_steps(tiny, 4e-3, steps=5) == 5  # the caller's count wins
    got = encode_arrays([small_image] * 3, [1e-2, 1e-3, 4e-3], [0.7] * 3, [1, 2, 3], preset="tiny", progress=False)
    assert [r.summary["steps"] for r in got] == [2, 1, 2]
    assert [r.summary["times"]["batch_size"] for r in got] == [2, 1, 2]
