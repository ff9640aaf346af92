"""Seed search: K candidate seeds per item train as one batch for the warm-up, the best continues,
and its seed is the one the file holds."""
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lotterycodec.api import decode  # noqa: E402
from lotterycodec.cli import main  # noqa: E402
from lotterycodec.decoder.backends import available_backends  # noqa: E402
from lotterycodec.decoder.format import read_bitstream  # noqa: E402
from lotterycodec.trainer.encode import encode_array, encode_arrays  # noqa: E402
from lotterycodec.trainer.presets import get_preset  # noqa: E402
from lotterycodec.trainer.train import BatchedModel, Optimizers, evaluate, loss_terms, select_candidates  # noqa: E402

from test_batched import _items  # noqa: E402


def test_select_keeps_each_items_lowest_loss_and_slices_the_optimizer():
    rows = _items(kept=(900,) * 4, seeds=(3, 4, 5, 6))  # 2 items x 2 candidates
    with torch.no_grad():
        for y in rows[0].latents:  # item 0's first candidate: far from its target
            y.add_(3.0)
    batch = BatchedModel(rows)
    targets = torch.rand(4, 19, 26, 3)
    targets[1], targets[3] = targets[0], targets[2]
    lmbdas = torch.full((4,), 1e-3)
    # SOAP for the networks: its Kronecker factors and eigenbases are per item too.
    opt = Optimizers(batch, dataclasses.replace(get_preset("fast"), optimizer="soap"), 1e-3, 1e-3)
    loss_terms(batch, targets, lmbdas, mode="noise")[0].sum().backward()
    opt.step()
    loss = evaluate(batch, targets, lmbdas)

    def states():
        return [{k: v.clone() for k, v in o.state[p].items() if torch.is_tensor(v) and v.dim()}
                for o in opt.all for g in o.param_groups for p in g["params"]]
    before = states()
    assert any("QL" in s for s in before) and all("exp_avg" in s for s in before)
    expected = [int(np.argmin([loss[0]["loss"], loss[1]["loss"]])), 2 + int(np.argmin([loss[2]["loss"],
                                                                                         loss[3]["loss"]]))]
    assert expected[0] == 1  # the spoiled candidate lost
    kept = select_candidates(batch, opt, targets, lmbdas, 2)
    assert kept == expected and batch.batch == 2 and batch.latents[0].shape[0] == 2
    for now, then in zip(states(), before, strict=True):
        assert now.keys() == then.keys() and all(torch.equal(now[k], then[k][kept]) for k in now)
    assert all(p.shape[0] == 2 for p in batch.parameters())
    after = evaluate(batch, targets[kept], lmbdas[kept])
    assert [r["loss"] for r in after] == pytest.approx([loss[k]["loss"] for k in kept], rel=1e-5)


@pytest.mark.slow
def test_the_chosen_seed_is_written_and_decodes_on_every_backend(small_image, tmp_path):
    r = encode_array(small_image, lmbda=1e-3, preset="fast", steps=40, seed=7, seeds=3, progress=False)
    assert r.summary["seed_candidates"] == 3 and r.summary["seed"] in (7, 8, 9)
    assert read_bitstream(r.data).seed == r.summary["seed"]
    images = [decode(r.data, backend=b)[0] for b in available_backends()]
    for im in images[1:]:
        assert np.abs(im.astype(int) - images[0].astype(int)).max() <= 1


@pytest.mark.slow
def test_seed_search_equals_training_the_kept_seed_alone_through_the_warmup(small_image):
    """With the warm-up as long as training, the search is K independent runs and a choice: the
    file is the one the kept seed gives on its own, byte for byte (with Adam for the networks: SOAP's
    early eigenbases turn on rounding, which differs between a batch and a single item)."""
    from lotterycodec.trainer import presets
    preset = presets.PRESETS["fast"]
    try:
        presets.PRESETS["fast"] = type(preset)(**{**preset.__dict__, "seed_warmup": 1.0, "optimizer": "adam"})
        searched = encode_arrays([small_image] * 2, [1e-3, 4e-3], [0.7, 0.7], [1, 1], "fast", 30, n_seeds=2,
                                 progress=False)
        for r, lmbda in zip(searched, (1e-3, 4e-3)):
            alone = encode_arrays([small_image], [lmbda], [0.7], [r.summary["seed"]], "fast", 30, n_seeds=1,
                                  progress=False)[0]
            assert alone.data == r.data
    finally:
        presets.PRESETS["fast"] = preset


def test_cli_seeds_option(small_image, tmp_path):
    from lotterycodec.decoder.imageio import save_image
    save_image(tmp_path / "in.png", small_image)
    assert main(["encode", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.lotc"), "--preset", "fast",
                 "--steps", "20", "--seeds", "2", "--json"]) == 0
    assert read_bitstream((tmp_path / "o.lotc").read_bytes()).seed in (1, 2)
    with pytest.raises(SystemExit):
        main(["encode", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.lotc"), "--seeds", "0"])
