"""MACs/pixel: the analytic counter against torch's FLOP counter, and against published figures."""
import json

import pytest

from lotterycodec.cli import main
from lotterycodec.decoder.complexity import coolchic_complexity, c3_complexity, lottery_complexity
from lotterycodec.decoder.config import ArchConfig


def test_published_anchor_figures():
    hop = coolchic_complexity("HOP", 512, 768)
    # Cool-chic 4.x docs: ARM 725 MAC/pixel for a 16-context ARM; kodim14 stream 1431 MAC/pixel.
    assert round(hop.modules["arm"]) == 725 and round(hop.total) == 1431
    assert hop.synthesis_dense == 642 and round(hop.modules["upsampling"]) == 64
    c3 = c3_complexity("Kodak", 512, 768)
    assert c3.synthesis_dense == 666 and round(c3.modules["arm"]) == 1056  # C3 paper digest figures


@pytest.mark.parametrize("arch", [{}, {"arm_context": 8, "arm_width": 8, "ups_kernel_size": 4, "mod_width": 16}])
def test_analytic_count_equals_torch_flop_counter(arch):
    """Independent count: torch's FlopCounterMode on the trainer's decode-mode computation."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode
    from lotterycodec.trainer.model import LotteryModel
    h, w = 128, 192  # divisible by 2^6: no cropped values, so executed == needed
    cfg = ArchConfig(**arch)
    model = LotteryModel(cfg, h, w, seed=1)
    analytic = lottery_complexity(cfg, h, w)
    counted = {}
    with torch.no_grad():
        q = model.quantized_latents("hard")
        for name, fn in [
            ("arm", lambda: model.arm_forward(model.contexts(q))),
            ("upsampling", lambda: model.upsample(q, per_phase=True)),
        ]:
            with FlopCounterMode(display=False) as fc:
                fn()
            counted[name] = fc.get_total_flops() / 2 / (h * w)
        up = model.upsample(q, per_phase=True)
        with FlopCounterMode(display=False) as fc:
            mods = model.modulate(up)
        counted["modulation"] = fc.get_total_flops() / 2 / (h * w)
        with FlopCounterMode(display=False) as fc:
            model.synthesize(mods)
        counted["synthesis_dense"] = fc.get_total_flops() / 2 / (h * w)
    for name in ("arm", "upsampling", "modulation"):
        assert counted[name] == pytest.approx(analytic.modules[name], rel=1e-9), name
    assert counted["synthesis_dense"] == pytest.approx(analytic.synthesis_dense, rel=1e-9)


def test_profile_cli_json_file_and_config(capsys):
    from lotterycodec.decoder.synthetic import synthetic_bitstream
    import tempfile, pathlib
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "s.lotc"
        path.write_bytes(synthetic_bitstream(20, 12, ArchConfig(kept_weights=500)))
        assert main(["profile", str(path), "--json"]) == 0
        rep = json.loads(capsys.readouterr().out)
    ours = rep["ours"]["macs_per_pixel"]
    assert ours["synthesis"] == {"dense": 1723.0, "kept": 500.0}
    assert sum(rep["file"]["bytes_per_part"].values()) == rep["file"]["bytes"]
    assert {a["name"] for a in rep["anchors"]} >= {"Cool-chic 4.2 VLOP", "Cool-chic 4.2 HOP", "C3 Kodak"}
    assert main(["profile", "--config", "arm_context=8", "--kept-ratio", "0.5"]) == 0
    assert "Cool-chic 4.2 LOP" in capsys.readouterr().out
    assert main(["profile", "--config", "nonsense=3"]) == 1
