"""`lotterycodec eval` end to end on two tiny images: real files, classical codecs, BD-rates, resumability."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lotterycodec.cli import main

pytest.importorskip("torch")
pytest.importorskip("bjontegaard")
from lotterycodec.evaluation import curves, metrics  # noqa: E402
from lotterycodec.evaluation import report as eval_report  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, bundled_image):
    d = tmp_path_factory.mktemp("ds")
    Image.fromarray(bundled_image[:32, :40]).save(d / "a.png")
    Image.fromarray(bundled_image[64:96, 70:102]).save(d / "b.png")
    return d


@pytest.mark.slow
def test_eval_end_to_end_and_resume(dataset, tmp_path, capsys):
    out = tmp_path / "ev"
    argv = ["eval", str(dataset), "--lmbda", "1e-2,1e-3", "--preset", "fast", "--steps", "20", "--codecs", "jpeg,webp",
            "--out", str(out), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    ours = report["curves"]["lotterycodec-fast"]
    assert [p["n"] for p in ours] == [2, 2]
    rows = [ln.split("\t") for ln in (out / "per_image.tsv").read_text().splitlines()]
    header, body = rows[0], rows[1:]
    for r in body:  # bpp is always the file's size
        rec = dict(zip(header, r))
        if rec["codec"] == "lotterycodec":
            size = (out / "files" / f"{rec['image']}_lambda{rec['point']}.lotc").stat().st_size
            assert int(rec["bytes"]) == size
            assert float(rec["bpp"]) == pytest.approx(8 * size / (int(rec["width"]) * int(rec["height"])), rel=1e-5)
    assert {r[0] for r in body} == {"lotterycodec", "jpeg", "webp"}
    mean_bpp = np.mean([float(dict(zip(header, r))["bpp"]) for r in body if r[0] == "lotterycodec" and r[1] == "0.01"])
    assert ours[0]["bpp"] == pytest.approx(mean_bpp, rel=1e-4)
    cai = json.loads((out / "compressai" / "lotterycodec-fast.json").read_text())
    assert cai["name"] == "lotterycodec-fast" and set(cai["results"]) == {
        "psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time"}
    assert (out / "rd.png").stat().st_size > 0 and "| test \\ anchor |" in (out / "bd_rate.md").read_text()
    # whole images, but not Kodak's: the published (Kodak-mean) curves stay out
    assert not any(k.startswith("published") for k in report["bd_rate"])
    assert report["published_curves"] == "not compared: 2 of the 2 images are not Kodak images"

    # Second run: every finished encode is reused (same bytes, same recorded encode time).
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "files").iterdir()}
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "files").iterdir()} == stamps
    strip = lambda pts: [{k: v for k, v in p.items() if k != "decoding_time"} for p in pts]  # noqa: E731
    assert strip(again["curves"]["lotterycodec-fast"]) == strip(ours)  # decodes are timed again


def test_eval_crops_never_meet_published_curves(dataset, tmp_path, capsys):
    argv = ["eval", str(dataset), "--lmbda", "1e-2", "--preset", "fast", "--steps", "10", "--codecs", "jpeg", "--crop", "24",
            "--out", str(tmp_path / "c"), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert not any(k.startswith("published") for k in report["bd_rate"])


def test_published_curves_need_exactly_the_kodak_images():
    lines = [ln for ln in curves.KODAK_PIXELS.read_text().splitlines()[3:]]
    assert len(lines) == 24 and all(len(ln.split("\t")[2]) == 64 for ln in lines)
    assert "not Kodak" in curves.kodak_mismatch({"x": np.zeros((4, 4, 3), np.uint8)})
    assert curves.kodak_mismatch({}) == "24 of the 24 Kodak images are missing (the published curves average all 24)"


FAKE_COOLCHIC = Path(__file__).parent / "fake_coolchic"


@pytest.mark.slow
def test_eval_peer_runs_its_own_scripts_on_our_pixels(dataset, tmp_path, capsys):
    out = tmp_path / "peer"
    argv = ["eval", str(dataset), "--lmbda", "1e-2", "--preset", "fast", "--steps", "10", "--codecs", "jpeg",
            "--crop", "24", "--out", str(out), "--json", "--peer", f"coolchic={FAKE_COOLCHIC},lmbda=2e-2:5e-3,threads=3,"
            "n_itr=7,name=cc"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    peer = report["peers"]["cc"]
    assert peer["lambdas"] == [0.02, 0.005] and peer["n_itr"] == 7 and peer["threads"] == 3 and peer["crop"] == 24
    assert [p["n"] for p in report["curves"]["cc"]] == [2, 2]
    assert report["bd_rate"]["cc"]["lotterycodec-fast"] is not None or report["bd_rate"]["cc"]["jpeg"] is not None
    folder = out / "peers" / "cc"
    assert "threads 3 n_itr 7 cfg hop.cfg" in (folder / "a_lambda0.02_encode.log").read_text()
    with Image.open(folder / "a.png") as im:  # the peer got our crop's exact pixels
        pixels = np.asarray(im)
    header, *body = [ln.split("\t") for ln in (out / "per_image.tsv").read_text().splitlines()]
    rows = [dict(zip(header, r)) for r in body]
    a = next(r for r in rows if r["codec"] == "cc" and r["image"] == "a" and r["point"] == "0.005")
    assert int(a["bytes"]) == (folder / "a_lambda0.005.cool").stat().st_size and pixels.shape == (24, 24, 3)
    ours = next(r for r in rows if r["codec"] == "lotterycodec" and r["image"] == "a")
    assert (ours["width"], ours["height"]) == ("24", "24")
    assert "cc" in (out / "curves.tsv").read_text() and (out / "compressai" / "cc.json").exists()

    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert main(argv) == 0  # resumed: nothing runs again
    capsys.readouterr()
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_chart_points_from_an_eval_with_a_peer(dataset, tmp_path, capsys, synthetic_file):
    """`lotterycodec chart`: BD-rate against JPEG from the eval's summary, decode time per megapixel
    from the files given (ours by the C++ core, the peer by its own decoder's timing line)."""
    pytest.importorskip("lotterycodec.decoder._lotc_cpu")
    out = tmp_path / "ev"
    assert main(["eval", str(dataset), "--lmbda", "1e-2,1e-3", "--preset", "fast", "--steps", "10", "--codecs", "jpeg",
                 "--crop", "24", "--out", str(out), "--json", "--peer", f"coolchic={FAKE_COOLCHIC},lmbda=2e-2:5e-3,name=cc"]) == 0
    capsys.readouterr()
    ours_file = tmp_path / "t.lotc"
    ours_file.write_bytes(synthetic_file)
    peer_file = out / "peers" / "cc" / "a_lambda0.02.cool"
    argv = ["chart", str(out), "--anchor", "jpeg", "--threads", "1,2", "--repeat", "2", "--out", str(tmp_path / "ch"),
            "--time", f"lotterycodec-fast={ours_file}:{ours_file}", "--time", f"cc={peer_file}", "--json",
            "--decoder-only", f"ccd={sys.executable} {FAKE_COOLCHIC / 'ccdec.py'} --input={peer_file} --output={{out}}",
            "--decoder-macs", "ccd=1431"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    points = {p["curve"]: p for p in report["points"]}
    assert set(points) == {"lotterycodec-fast", "cc", "ccd"}  # classical curves are anchors, not points
    # a decoder-only line: its own `all` (0.25 s) over the image it wrote (32x16), no RD claimed
    ccd = points.pop("ccd")
    assert ccd["bd_rate_vs_anchor"] is None and ccd["macs_per_pixel"] == 1431 and ccd["pixels"] == 32 * 16
    assert ccd["decode_ms_per_mpixel"]["1"]["mean"] == pytest.approx(0.25e3 / (32 * 16 / 1e6))
    assert ccd["timer"].startswith("its own timer")
    summary = json.loads((out / "summary.json").read_text())
    for name, p in points.items():
        want = summary["bd_rate"][name]["jpeg"]
        assert p["bd_rate_vs_anchor"] == (None if want is None else want[0])
        assert set(p["decode_ms_per_mpixel"]) == {"1", "2"}
    # the fake decoder reports 0.5 s and more for a 24x24 frame: its own timer, per megapixel
    assert points["cc"]["decode_ms_per_mpixel"]["1"]["mean"] >= 0.5e3 / (24 * 24 / 1e6)
    assert points["cc"]["macs_per_pixel"] == 1234
    assert points["lotterycodec-fast"]["macs_per_pixel"] > 0 and len(points["lotterycodec-fast"]["timing_files"]) == 2
    assert (tmp_path / "ch" / "chart.png").stat().st_size > 0
    assert json.loads((tmp_path / "ch" / "chart.json").read_text())["points"] == report["points"]
    assert main(["chart", str(out), "--time", "cc"]) == 1 and "CURVE=FILE" in capsys.readouterr().err
    assert main(["chart", str(out), "--decoder-only", "x=ccdec --input=a.cool"]) == 1  # no {out}
    assert "{out}" in capsys.readouterr().err


@pytest.mark.parametrize("spec,message", [
    ("x265=/tmp", "unknown peer 'x265'"),
    ("coolchic=/nonexistent", "not a Cool-chic checkout"),
    (f"coolchic={FAKE_COOLCHIC},cfg=lop", "no decoder config 'lop'"),
    (f"coolchic={FAKE_COOLCHIC},speed=3", "unknown option 'speed'"),
])
def test_eval_peer_spec_errors_before_training(dataset, tmp_path, capsys, spec, message):
    assert main(["eval", str(dataset), "--lmbda", "1e-2", "--out", str(tmp_path / "x"), "--peer", spec]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x" / "files").exists() or not any((tmp_path / "x" / "files").iterdir())


def test_eval_peer_failure_names_its_log(dataset, tmp_path, capsys):
    argv = ["eval", str(dataset), "--lmbda", "1e-2", "--preset", "fast", "--steps", "5", "--codecs", "", "--crop", "16",
            "--out", str(tmp_path / "f"), "--peer", f"coolchic={FAKE_COOLCHIC},lmbda=0.5"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "encode of a_lambda0.5 failed" in err and "_encode.log" in err and "lambda 0.5 refused" in err


def test_eval_bad_input_is_one_line(dataset, tmp_path, capsys):
    assert main(["eval", str(dataset), "--lmbda", "1e-2", "--codecs", "gif", "--out", str(tmp_path / "x")]) == 1
    assert "unknown codec" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--lmbda", "1e-2", "--out", str(tmp_path / "y")]) == 1
    assert "no PNG images" in capsys.readouterr().err


def test_our_curve_names_each_complexity_an_eval_changed():
    from lotterycodec.evaluation.run import our_curve
    assert our_curve("cpu", 0.7) == "lotterycodec-cpu"  # the preset's own settings: the plain name
    assert our_curve("cpu", 0.4, {"mod_width": 24, "arm_context": 8}) == \
        "lotterycodec-cpu-kept0.4-arm_context8-mod_width24"
    assert our_curve("cpu-full", 0.2) == "lotterycodec-cpu-full"  # 0.2 is cpu-full's own kept ratio
    assert our_curve("cpu-full", 0.4) == "lotterycodec-cpu-full-kept0.4"


def test_a_record_is_reused_whatever_the_preset_description_said(tmp_path):
    """Older records carry the preset's description; rewording it must not retrain the files."""
    from lotterycodec.evaluation import store
    settings = {"preset": "cpu", "preset_definition": {"steps": 2800}, "steps": None}
    old = {**settings, "preset_definition": {"steps": 2800, "description": "earlier wording"}}
    (tmp_path / "x_lambda0.001.lotc").write_bytes(b"file")
    (tmp_path / "x_lambda0.001.json").write_text(json.dumps({"settings": old}))
    assert store._finished(tmp_path, "x", 1e-3, settings) is not None
    assert store._finished(tmp_path, "x", 1e-3, {**settings, "preset_definition": {"steps": 2400}}) is None


def test_bd_rate_matches_a_known_shift():
    anchor = [{"bpp": b, "psnr": p} for b, p in [(0.2, 28.0), (0.4, 31.0), (0.8, 34.0), (1.6, 37.0)]]
    test = [{"bpp": 0.8 * q["bpp"], "psnr": q["psnr"]} for q in anchor]  # 20 % fewer bits everywhere
    value, lo, hi = curves.bd_rate(anchor, test)
    assert value == pytest.approx(-20.0, abs=0.01) and (lo, hi) == (28.0, 37.0)
    assert curves.bd_rate(anchor, [{"bpp": 1, "psnr": 40.0}, {"bpp": 2, "psnr": 41.0}]) is None


def test_compare_runs_between_two_evals(tmp_path, monkeypatch):
    """benchmarks/compare_runs.py: run B's curve 20 % smaller than run A's at equal PSNR on the
    shared image; an image only run A encoded is left out."""
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    compare_runs = pytest.importorskip("compare_runs")
    curve = [(0.2, 28.0), (0.4, 31.0), (0.8, 34.0), (1.6, 37.0)]

    def run(name, rows):
        (tmp_path / name).mkdir()
        eval_report.write_per_image(tmp_path / name, rows)
        return tmp_path / name

    def rows(codec, image, scale):
        return [metrics.Row(codec, str(i), image, 8, 8, 8, scale * b, p, None, 1.0, 0.1)
                for i, (b, p) in enumerate(curve)]

    a = run("a", rows(curves.OUR_NAME, "x", 1.0) + rows("webp", "x", 1.25) + rows(curves.OUR_NAME, "y", 9.0))
    b = run("b", rows(curves.OUR_NAME, "x", 0.8) + rows("webp", "x", 5.0))
    report = compare_runs.compare(a, b, "longer")
    assert report["images"] == ["x"] and set(report["curves"]) == {curves.OUR_NAME, "webp", "longer"}
    bd = report["bd_rate_percent"]
    assert bd[f"longer vs {curves.OUR_NAME}"] == pytest.approx(-20.0, abs=0.01)
    assert bd[f"{curves.OUR_NAME} vs webp"] == pytest.approx(-20.0, abs=0.01)
    assert bd["longer vs webp"] == pytest.approx(-36.0, abs=0.01)
    assert report["bd_rate_percent_per_image"]["x"] == bd
    assert "longer" in compare_runs.markdown(report, "longer")
    # the same (image, lambda) items in both runs: J = MSE + lambda * bpp, here bpp 20 % lower at equal PSNR
    j = report["fixed_lambda_cost"]
    assert [(i["image"], i["lambda"]) for i in j["items"]] == [("x", 3.0), ("x", 2.0), ("x", 1.0), ("x", 0.0)]
    mse = 10 ** -3.1
    assert j["items"][2]["change_percent"] == pytest.approx(100 * ((0.32 + mse) / (0.4 + mse) - 1), abs=0.01)
    assert j["items"][3]["change_percent"] == 0 and j["b_lower"] == 3


def _children(pid: int) -> list[int]:
    """Live processes whose parent is pid (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_stops_an_eval_and_its_workers(dataset, tmp_path):
    """A SIGTERM sent to the eval alone (a scheduler's, `kill`) ends the run and the worker
    processes with it, instead of leaving them training their jobs."""
    import os
    import signal
    import subprocess
    import time
    workers: list[int] = []
    argv = [sys.executable, "-m", "lotterycodec", "eval", str(dataset), "--lmbda", "1e-2", "--preset", "fast",
            "--steps", "1000000", "--codecs", "", "--workers", "2", "--batch", "1", "--threads", "1",
            "--out", str(tmp_path / "ev")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = [p for p in _children(proc.pid)
                       if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2, "the eval did not start its two workers"
        time.sleep(3)  # in their jobs
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.time() + 20
        while time.time() < deadline and any(Path(f"/proc/{p}").exists() and
                                             Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
                                             for p in workers):
            time.sleep(0.2)
        alive = [p for p in workers if Path(f"/proc/{p}").exists()]
        assert not alive, "worker processes outlived the eval"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in workers:  # whatever happened above, no worker is left training
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
