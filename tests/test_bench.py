"""`lotterycodec bench` outputs and kept-ratio variants of one trained model."""
import json

import pytest

from lotterycodec.decoder import reference
from lotterycodec.cli import main
from lotterycodec.decoder.format import read_bitstream


def test_kept_ratio_variants_share_latents(trained):
    a = read_bitstream(trained.data)
    for ratio in (0.2, 0.9, 1.0):
        data = trained.with_kept_ratio(ratio)
        b = read_bitstream(data)
        assert b.cfg.kept_weights == round(ratio * a.cfg.synth_weight_count)
        assert b.networks == a.networks
        assert all((x == y).all() for x, y in zip(a.latent_words, b.latent_words))
        assert reference.decode(data).image.shape == (32, 32, 3)


def test_bench_json_tsv_plot(tmp_path, trained, capsys):
    pytest.importorskip("matplotlib")
    files = []
    for ratio in (0.3, 0.9):
        f = tmp_path / f"k{ratio}.lotc"
        f.write_bytes(trained.with_kept_ratio(ratio))
        files.append(str(f))
    assert main(["bench", *files, "--backend", "reference", "--repeat", "2", "--warmup", "0",
                 "--tsv", str(tmp_path / "t.tsv"), "--plot", str(tmp_path / "p.png"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["cpu"] and len(rep["rows"]) == 2
    for row in rep["rows"]:
        assert row["backend"] == "reference" and row["repeat"] == 2
        assert row["dec_time_all"] >= row["dec_time_arm"] > 0
        assert row["pixels_per_s"] > 0 and row["bpp"] > 0
    assert rep["rows"][0]["macs_per_pixel"] < rep["rows"][1]["macs_per_pixel"]
    header = (tmp_path / "t.tsv").read_text().splitlines()[1].split("\t")
    assert {"dec_time_arm", "dec_time_ups", "dec_time_syn", "dec_time_all", "bpp"} <= set(header)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_anchor_timed_in_the_same_run(tmp_path, trained, capsys):
    import sys
    f = tmp_path / "a.lotc"
    f.write_bytes(trained.data)
    fake_ccdec = f"{sys.executable} -c \"print('time: arm 0.01 ups 0.002 syn 0.003 blend 0 warp 0 all 0.02')\""
    args = ["bench", str(f), "--backend", "reference", "--repeat", "1", "--warmup", "0"]
    assert main([*args, "--anchor", fake_ccdec, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["anchor"]["timer"] == "its own timer" and rep["anchor"]["dec_time_all"] == 0.02
    assert rep["rows"][0]["time_ratio_vs_anchor"] == pytest.approx(rep["rows"][0]["dec_time_all"] / 0.02)
    assert main([*args, "--anchor", f"{sys.executable} -c pass"]) == 0
    assert "process wall time" in capsys.readouterr().out
    assert main([*args, "--anchor", f"{sys.executable} -c 'import sys; sys.exit(3)'"]) == 1
