"""`--backend triton` end to end (TRITON_INTERPRET=1 on CPU): same latents, image within one level."""
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

from lotterycodec.decoder import reference
from lotterycodec.decoder.backends import available_backends, get_backend
from lotterycodec.cli import main
from lotterycodec.decoder.config import DECODE_STAGES, ArchConfig
from lotterycodec.decoder.synthetic import synthetic_bitstream


def test_triton_backend_matches_reference_on_a_trained_file(trained):
    assert "triton" in available_backends()
    ref = reference.decode(trained.data)
    out = get_backend("triton")(trained.data)
    assert all(np.array_equal(a, b) for a, b in zip(ref.latents, out.latents))
    assert np.abs(out.image.astype(int) - ref.image.astype(int)).max() <= 1
    assert tuple(out.times) == (*DECODE_STAGES, "all")


@pytest.mark.parametrize("width,height", [(17, 5), (1, 9)])
def test_triton_backend_odd_sizes(width, height):
    data = synthetic_bitstream(width, height, ArchConfig(arm_context=4, arm_width=4, kept_weights=700))
    ref = reference.decode(data).image
    got = get_backend("triton")(data).image
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


def test_cli_decode_backend_triton(tmp_path, capsys):
    src = tmp_path / "a.lotc"
    src.write_bytes(synthetic_bitstream(6, 4, ArchConfig(arm_context=4, arm_width=4, kept_weights=700)))
    assert main(["decode", str(src), "-o", str(tmp_path / "a.png"), "--backend", "triton"]) == 0
    assert "[triton]" in capsys.readouterr().out


def test_clear_error_without_gpu(tmp_path, trained):
    src = tmp_path / "a.lotc"
    src.write_bytes(trained.data)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import torch, sys\n"
            "if torch.cuda.is_available(): print('has-gpu'); sys.exit(0)\n"
            "from lotterycodec.cli import main\n"
            f"sys.exit(main(['decode', {str(src)!r}, '-o', {str(tmp_path / 'b.png')!r}, '--backend', 'triton']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    if out.stdout.strip() == "has-gpu":
        pytest.skip("this machine has a GPU")
    assert out.returncode == 1
    assert "needs a CUDA GPU" in out.stderr and out.stderr.count("\n") == 1
