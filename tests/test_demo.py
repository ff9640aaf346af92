"""The demo runs end to end and states the comparison with JPEG, whichever way it goes."""
import re

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

from lotterycodec.decoder.imageio import save_image  # noqa: E402
from lotterycodec.demo import main  # noqa: E402


def test_demo_reports_ours_against_jpeg_at_the_same_size(tmp_path, capsys, small_image):
    save_image(tmp_path / "in.png", small_image)
    assert main(["--image", str(tmp_path / "in.png"), "--preset", "fast", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    verdict = re.search(r"lotterycodec ([\d.]+) dB at (\d+) bytes, JPEG ([\d.]+) dB at (\d+) bytes: ([+-][\d.]+) dB, "
                        r"(ahead of|behind) JPEG", text)
    assert verdict, text
    ours, ours_bytes, jpeg, jpeg_bytes, delta, word = verdict.groups()
    assert int(jpeg_bytes) <= int(ours_bytes)
    assert float(delta) == pytest.approx(float(ours) - float(jpeg), abs=0.011)
    assert (word == "ahead of") == (float(ours) > float(jpeg))
    # a 32x32 image: the networks are most of the file, and the output says so
    assert "a fixed cost that weighs most on small images" in text
    assert (tmp_path / "out" / "demo.lotc").stat().st_size == int(ours_bytes)
    assert np.asarray(small_image).shape == (32, 32, 3)
