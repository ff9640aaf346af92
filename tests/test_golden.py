"""Golden bitstreams: committed files with the SHA-256 of their latents and of their decoded image
per backend, so any change to the format or to a decoder shows up here as a diff. After a
deliberate change, tests/golden/make_golden.py rewrites them (review the manifest's diff)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lotterycodec.decoder.backends import cpu_kernels, get_backend
from lotterycodec.decoder.config import DECODE_STAGES, SYNTH_DENSE
from lotterycodec.decoder.format import peek_config

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from make_golden import latents_sha, sha  # noqa: E402  (one definition of the hashes)

MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
NAMES = sorted(MANIFEST)
MASKED = [n for n in NAMES if peek_config((GOLDEN / n).read_bytes()).synth_mode != SYNTH_DENSE]


def test_manifest_lists_every_golden_file():
    assert sorted(p.name for p in GOLDEN.glob("*.lotc")) == NAMES and len(MASKED) >= 5


@pytest.mark.parametrize("name", NAMES)
def test_reference_decodes_the_golden_image(name):
    data, want = (GOLDEN / name).read_bytes(), MANIFEST[name]
    assert sha(data) == want["sha256"], "the committed file changed"
    decoded = get_backend("reference")(data)
    assert latents_sha(decoded.latents) == want["latents_sha256"]
    assert sha(decoded.image.tobytes()) == want["images"]["reference"]


@pytest.mark.skipif(not cpu_kernels(), reason="the C++ module is not built")
@pytest.mark.parametrize("name", MASKED)
def test_cpu_tables_decode_the_golden_image(name):
    from lotterycodec.decoder.backends import _cpu_decode
    data, want = (GOLDEN / name).read_bytes(), MANIFEST[name]
    reference = get_backend("reference")(data).image.astype(int)
    for table in cpu_kernels():
        decoded = _cpu_decode(data, 2, kernels=table)
        assert latents_sha(decoded.latents) == want["latents_sha256"], table
        recorded = want["images"].get(f"cpu:{table}")
        if recorded is not None:
            assert sha(decoded.image.tobytes()) == recorded, table
        else:  # a table the manifest's machine did not run: the format's promise instead
            assert np.abs(decoded.image.astype(int) - reference).max() <= 1, table


@pytest.mark.skipif(importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None,
                    reason="needs torch and triton")
@pytest.mark.slow
def test_triton_interpreter_decodes_the_golden_images():
    # A subprocess: TRITON_INTERPRET must be set before Triton reads its kernels.
    done = subprocess.run([sys.executable, str(GOLDEN / "make_golden.py"), "--triton", *MASKED], capture_output=True,
                          text=True, env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {n: MANIFEST[n]["images"]["triton-interpret"] for n in MASKED}


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_every_backend_times_the_same_stages(backend):
    if backend == "cpu" and not cpu_kernels():
        pytest.skip("the C++ module is not built")
    decoded = get_backend(backend)((GOLDEN / "trained_32x32.lotc").read_bytes())
    assert set(decoded.times) == {*DECODE_STAGES, "all"}
