"""lotterycodec: one namespace, the required top-level parts mapped into it, and the C++ decoder
core built as a pybind11 module from the same source and flag lists as the standalone executable."""
from pathlib import Path

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension
from setuptools import setup

CSRC = Path("csrc")
CORE_SOURCES = [str(CSRC / s) for s in (CSRC / "core_sources.txt").read_text().split()]
CORE_FLAGS = (CSRC / "core_flags.txt").read_text().split()
# The core's translation units compile in parallel (LOTC_BUILD_JOBS=N; default: all cores).
ParallelCompile("LOTC_BUILD_JOBS", default=0).install()

setup(
    name="lotterycodec",
    version="0.1.0",
    description="LotteryCodec: an overfitted neural image codec with a masked random synthesis network",
    python_requires=">=3.10",
    packages=["lotterycodec", "lotterycodec.evaluation", "lotterycodec.decoder", "lotterycodec.trainer",
              "lotterycodec.kernels"],
    package_dir={
        "lotterycodec": "lotterycodec",
        "lotterycodec.decoder": "decoder",
        "lotterycodec.trainer": "trainer",
        "lotterycodec.kernels": "kernels",
    },
    package_data={"lotterycodec.decoder": ["data/*.npy"], "lotterycodec": ["data/*.png"],
                  "lotterycodec.evaluation": ["*.tsv"]},
    # The decoder needs only these; the trainer (encoder) adds torch.
    install_requires=["numpy>=1.24", "pillow>=10", "constriction>=0.4,<0.6", "tqdm>=4.60"],
    extras_require={
        "train": ["torch>=2.1"],
        "gpu": ["torch>=2.1", "triton>=3.0"],
        "test": ["pytest>=7", "hypothesis>=6", "triton>=3.2", "matplotlib>=3.5", "pillow-jxl-plugin>=1.3",
                 "pytorch-msssim>=1.0", "bjontegaard>=1.3", "distributed>=2024.1"],
        "bench": ["matplotlib>=3.5"],
        "cluster": ["distributed>=2024.1"],
        "eval": ["pillow>=11.3", "pillow-jxl-plugin>=1.3", "pytorch-msssim>=1.0", "bjontegaard>=1.3",
                 "matplotlib>=3.5"],
    },
    entry_points={"console_scripts": ["lotterycodec=lotterycodec.cli:main"]},
    ext_modules=[Pybind11Extension("lotterycodec.decoder._lotc_cpu", CORE_SOURCES + ["csrc/python/bindings.cpp"],
                                   cxx_std=17, extra_compile_args=CORE_FLAGS, extra_link_args=["-pthread"])],
)
