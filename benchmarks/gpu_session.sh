#!/usr/bin/env bash
# One device-tool call on a lent GPU (no network there; Python 3.12 with torch, triton, pybind11,
# numpy, pillow, pytest, hypothesis already installed; constriction missing). Prepare here first:
#   pip download constriction==0.5.0 --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 --no-deps -d local/wheels
# then run this script through the device tool with carry: ["local/wheels"].
set -euo pipefail
python3 -m pip install -q --no-index --find-links local/wheels constriction
python3 -m pip install -q --no-deps --no-build-isolation -e .        # builds the C++ core there
export TRITON_INTERPRET=0
python3 -m pytest -q tests/test_kernels_philox.py tests/test_kernels_upsample.py \
    tests/test_kernels_synthesis.py tests/test_kernels_decode.py     # compiled kernels vs reference
mkdir -p "${OUT:-out}"
python3 benchmarks/gpu_bench.py --files results/bench_kodim14/kodim14_k0.3.lotc results/bench_kodim14/kodim14_k0.7.lotc \
    --synthetic-4k --out "${OUT:-out}/gpu_bench.json"
