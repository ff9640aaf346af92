"""Shared by the C++ decoder's tests: the module's decoders, the one-level agreement check
against the reference, and running a built lotterycodec-dec on bytes."""
import subprocess

import numpy as np
from lotterycodec.decoder import _lotc_cpu as cpu_module  # the test modules importorskip it first
from lotterycodec.decoder import reference
from lotterycodec.decoder.backends import get_backend

cpu = get_backend("cpu")
cpu_scalar = get_backend("cpu-scalar")
KERNELS = list(cpu_module.available_kernels())  # e.g. avx512, avx2, scalar: each is checked


def same(data: bytes):
    """Every kernel table this CPU runs (scalar included) against the reference: latents exactly,
    image to one level."""
    ref = reference.decode(data)
    for kernels in KERNELS:
        got = cpu(data, kernels=kernels)
        assert all(np.array_equal(a, b) for a, b in zip(ref.latents, got.latents)), kernels
        assert np.abs(ref.image.astype(int) - got.image.astype(int)).max() <= 1, kernels
    return got


def run_executable(command, data: bytes, tmp_path, *flags):
    """Decodes data with a built executable; returns (process, image or None, latents or None)."""
    src, ppm, lat = tmp_path / "in.lotc", tmp_path / "out.ppm", tmp_path / "out.lat"
    src.write_bytes(data)
    ppm.unlink(missing_ok=True)
    out = subprocess.run([*command, str(src), str(ppm), "--latents", str(lat), *flags], capture_output=True, text=True)
    if out.returncode:
        return out, None, None
    raw = ppm.read_bytes()
    _, size, _, pixels = raw.split(b"\n", 3)
    width, height = map(int, size.split())
    image = np.frombuffer(pixels, np.uint8).reshape(height, width, 3)
    return out, image, np.frombuffer(lat.read_bytes(), "<i4")
