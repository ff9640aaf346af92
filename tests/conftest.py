import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "lotterycodec" / "data" / "kodim23_crop128.png"  # the demo's image


def pytest_configure(config):
    # CI runs every test; `pytest -m "not slow" tests` is the quick set a developer runs between edits.
    config.addinivalue_line("markers", "slow: builds native trees, trains, or runs subprocess pipelines "
                                       "(seconds to minutes each); deselect with -m 'not slow'")


@pytest.fixture(scope="session")
def bundled_image() -> np.ndarray:
    from lotterycodec.decoder.imageio import load_image
    return load_image(BUNDLED)


@pytest.fixture(scope="session")
def small_image(bundled_image) -> np.ndarray:
    return np.ascontiguousarray(bundled_image[48:80, 40:72])


@pytest.fixture(scope="session")
def trained(small_image):
    """One real (short) training run shared by the end-to-end tests."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from lotterycodec.trainer.encode import encode_array
    return encode_array(small_image, lmbda=1e-3, kept_ratio=0.6, preset="fast", steps=80, seed=7,
                        arch=dict(stripe_height=8, shared_max_pixels=64),  # several stripes at 32x32
                        progress=False)


@pytest.fixture(scope="session")
def synthetic_file() -> bytes:
    from lotterycodec.decoder.config import ArchConfig
    from lotterycodec.decoder.synthetic import synthetic_bitstream
    cfg = ArchConfig(n_grids=3, arm_context=8, arm_width=8, mod_width=8, stripe_height=4,
                     shared_max_pixels=16, kept_weights=300)
    return synthetic_bitstream(13, 11, cfg, seed=3)


@pytest.fixture(scope="session")
def small_file() -> bytes:
    """A tiny valid file with every section non-trivial: the hostile-input tests mutate it."""
    from lotterycodec.decoder.config import ArchConfig
    from lotterycodec.decoder.synthetic import synthetic_bitstream
    return synthetic_bitstream(11, 7, ArchConfig(n_grids=3, arm_context=4, arm_width=4, mod_width=8,
                                                 stripe_height=2, shared_max_pixels=10, kept_weights=250))


# Native builds of csrc/ are minutes each on 2 cores: one of each kind per test run, shared.
def _cmake(build: Path, *flags: str, target: str | None = None) -> None:
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    run = dict(check=True, capture_output=True, text=True)
    subprocess.run(["cmake", "-S", str(ROOT / "csrc"), "-B", str(build), *flags], **run)
    subprocess.run(["cmake", "--build", str(build), f"-j{min(4, os.cpu_count() or 1)}",
                    *(["--target", target] if target else [])], **run)


@pytest.fixture(scope="session")
def native_prefix(tmp_path_factory) -> Path:
    """csrc built (Release, plus LOTC_TEST_CMAKE_FLAGS) and installed to a fresh prefix; the build
    tree removed, so nothing the tests find can come from it."""
    root = tmp_path_factory.mktemp("lotc")
    build, prefix = root / "build", root / "prefix"
    _cmake(build, "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_INSTALL_PREFIX={prefix}",
           *os.environ.get("LOTC_TEST_CMAKE_FLAGS", "").split())
    subprocess.run(["cmake", "--install", str(build)], check=True, capture_output=True)
    shutil.rmtree(build)
    return prefix


@pytest.fixture(scope="session")
def executable(native_prefix) -> Path:
    return native_prefix / "bin" / "lotterycodec-dec"


@pytest.fixture(scope="session")
def sanitizer_build(tmp_path_factory) -> Path:
    """The core and its fuzz replay driver built with ASan + UBSan (Debug)."""
    build = tmp_path_factory.mktemp("asan")
    _cmake(build, "-DCMAKE_BUILD_TYPE=Debug", "-DLOTC_SANITIZE=ON")
    return build


def _tools(names: tuple[str, ...], require: str, packages: str) -> list[str]:
    """The tools' paths; a missing one skips the test, or fails it where the environment variable
    `require` is 1 (CI installs the packages and must not skip)."""
    tools = [shutil.which(t) for t in names]
    if not all(tools):
        if os.environ.get(require) == "1":
            pytest.fail(f"{require}=1 but one of {', '.join(names)} is missing ({packages})")
        pytest.skip(f"needs {', '.join(names)} (Debian: {packages})")
    return tools


def _cross_command(tmp_path_factory, name: str, compiler: str, qemu: str, toolchain: str, require: str,
                   package: str) -> list[str]:
    """The executable cross-compiled with a Debian cross compiler, run under qemu-user."""
    tools = _tools(("cmake", compiler, qemu), require, f"{package} qemu-user")
    build = tmp_path_factory.mktemp(name)
    _cmake(build, "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_TOOLCHAIN_FILE={ROOT / 'csrc/cmake' / toolchain}",
           target="lotterycodec-dec")
    return [tools[2], str(build / "lotterycodec-dec")]


@pytest.fixture(scope="session")
def aarch64_command(tmp_path_factory) -> list[str]:
    """64-bit ARM (NEON kernels)."""
    return _cross_command(tmp_path_factory, "arm64", "aarch64-linux-gnu-g++", "qemu-aarch64",
                          "aarch64-linux-gnu.cmake", "LOTC_REQUIRE_AARCH64", "g++-aarch64-linux-gnu")


@pytest.fixture(scope="session")
def armv7_command(tmp_path_factory) -> list[str]:
    """32-bit ARMv7-A with NEON and VFPv4 (NEON kernels)."""
    return _cross_command(tmp_path_factory, "armv7", "arm-linux-gnueabihf-g++", "qemu-arm",
                          "arm-linux-gnueabihf.cmake", "LOTC_REQUIRE_ARMV7", "g++-arm-linux-gnueabihf")


@pytest.fixture(scope="session")
def libfuzzer_build(tmp_path_factory) -> Path:
    """The libFuzzer target (csrc/fuzz/fuzz_decode.cpp) built with clang, ASan and UBSan."""
    clang, clangxx = _tools(("clang", "clang++"), "LOTC_REQUIRE_CLANG", "clang libfuzzer-14-dev")
    build = tmp_path_factory.mktemp("libfuzzer")
    _cmake(build, "-DCMAKE_BUILD_TYPE=Release", "-DLOTC_FUZZ=ON", f"-DCMAKE_CXX_COMPILER={clangxx}",
           f"-DCMAKE_C_COMPILER={clang}", target="lotc-fuzz")
    return build / "lotc-fuzz"
