"""liblotc, the C library: built and installed with CMake, used as an embedding app would (the
example built against the installed package with find_package and with pkg-config), only lotc_*
exported, a SONAME, no data file needed, concurrent decodes, errors as values."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lotterycodec.decoder import reference
from lotterycodec.decoder.complexity import macs_per_pixel
from lotterycodec.decoder.format import read_bitstream

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "csrc" / "fuzz" / "corpus"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not all(shutil.which(t) for t in ("cmake", "cc", "pkg-config")),
                                reason="needs cmake, a C compiler and pkg-config")]


@pytest.fixture(scope="session")
def installed(native_prefix):
    return native_prefix  # conftest: one Release build per test run, installed, its build tree gone


def _libdir(prefix: Path) -> Path:
    return next(p.parent for p in prefix.rglob("liblotc.so.1"))


def _ppm(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    magic, size, maxval, rest = raw.split(b"\n", 3)
    w, h = map(int, size.split())
    assert magic == b"P6" and maxval == b"255"
    return np.frombuffer(rest, np.uint8).reshape(h, w, 3)


def test_install_layout_and_exports(installed):
    lib = _libdir(installed)
    assert (installed / "include" / "lotc.h").is_file() and (lib / "liblotc.a").is_file()
    assert (lib / "pkgconfig" / "lotc.pc").is_file() and (lib / "cmake" / "lotc" / "lotcConfig.cmake").is_file()
    soname = subprocess.run(["objdump", "-p", str(lib / "liblotc.so.1")], capture_output=True, text=True).stdout
    assert "SONAME               liblotc.so.1" in soname
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(lib / "liblotc.so.1")], capture_output=True,
                             text=True).stdout.split("\n")
    names = {line.split()[-1].split("@")[0] for line in symbols if line.strip()}
    assert names - {"LOTC_1"} and all(n.startswith("lotc_") for n in names - {"LOTC_1"}), names


@pytest.mark.parametrize("how", ["find_package", "pkg-config"])
def test_example_against_the_installed_package(installed, tmp_path, how):
    if how == "find_package":
        subprocess.run(["cmake", "-S", str(ROOT / "examples"), "-B", str(tmp_path / "b"),
                        f"-DCMAKE_PREFIX_PATH={installed}"], check=True, capture_output=True)
        subprocess.run(["cmake", "--build", str(tmp_path / "b")], check=True, capture_output=True)
        exe = tmp_path / "b" / "decode"
    else:
        env = {**os.environ, "PKG_CONFIG_PATH": str(_libdir(installed) / "pkgconfig")}
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "lotc"], check=True, capture_output=True,
                               text=True, env=env).stdout.split()
        exe = tmp_path / "decode"
        subprocess.run(["cc", str(ROOT / "examples" / "decode.c"), *flags, "-o", str(exe)], check=True)
    env = {**os.environ, "LD_LIBRARY_PATH": str(_libdir(installed))}
    for name in ("odd_45x23", "default_32x24", "tiny_1x1"):
        out = subprocess.run([str(exe), str(CORPUS / f"{name}.lotc"), str(tmp_path / "o.ppm")], capture_output=True,
                             text=True, env=env)
        assert out.returncode == 0, out.stderr
        ref = reference.decode((CORPUS / f"{name}.lotc").read_bytes()).image
        assert np.abs(_ppm(tmp_path / "o.ppm").astype(int) - ref.astype(int)).max() <= 1
    bad = subprocess.run([str(exe), str(CORPUS / "substreams_doubled.lotc"), str(tmp_path / "x.ppm")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "do not end where its symbols do" in bad.stderr


def test_executable_is_self_contained(installed, tmp_path):
    """Copied anywhere (no tables file beside it, none at the build path: the build tree is gone),
    it decodes; --info probes without decoding and agrees with the Python profile."""
    exe = tmp_path / "lotterycodec-dec"
    shutil.copy(installed / "bin" / "lotterycodec-dec", exe)
    data = (CORPUS / "wide_arm_17x33.lotc").read_bytes()
    out = subprocess.run([str(exe), str(CORPUS / "wide_arm_17x33.lotc"), "-"], capture_output=True)
    assert out.returncode == 0 and out.stdout.startswith(b"P6\n17 33\n255\n")
    info = subprocess.run([str(exe), "--info", str(CORPUS / "wide_arm_17x33.lotc")], capture_output=True,
                          text=True).stdout
    bs = read_bitstream(data)
    assert f"{macs_per_pixel(bs.cfg, bs.height, bs.width)['total']:.1f} MACs/pixel" in info
    capped = subprocess.run([str(exe), str(CORPUS / "wide_arm_17x33.lotc"), "-", "--max-pixels", "100"],
                            capture_output=True, text=True)
    assert capped.returncode == 1 and "above the caller's limit of 100" in capped.stderr


def test_concurrent_decodes_and_errors_as_values(installed, tmp_path):
    env = {**os.environ, "PKG_CONFIG_PATH": str(_libdir(installed) / "pkgconfig")}
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "lotc"], check=True, capture_output=True, text=True,
                           env=env).stdout.split()
    exe = tmp_path / "threads"
    subprocess.run(["cc", str(ROOT / "tests" / "c" / "threads.c"), *flags, "-lpthread", "-o", str(exe)], check=True)
    out = subprocess.run([str(exe), str(CORPUS / "default_32x24.lotc"), "6"], capture_output=True, text=True,
                         env={**os.environ, "LD_LIBRARY_PATH": str(_libdir(installed))})
    assert out.returncode == 0 and "6 decodes at once: identical" in out.stdout, out.stdout + out.stderr
