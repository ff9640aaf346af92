#!/usr/bin/env bash
# One device-tool call on a lent GPU (no network there; Python 3.12 with torch, triton, pybind11,
# numpy, pillow, pytest, hypothesis already installed; constriction missing). Prepare here first:
#   pip download constriction==0.5.0 --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 --no-deps -d local/wheels
# and copy some Kodak PNGs into local/kodak, then run `bash benchmarks/gpu_session.sh` through the
# device tool with carry: ["local/wheels", "local/kodak"].
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
python3 -m pip install -q --no-index --find-links local/wheels constriction || exit 1
time LOTC_BUILD_JOBS=16 python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1   # C++ core
time timeout "${TEST_TIMEOUT:-150}" python3 -m pytest -q -x tests/test_kernels_philox.py \
    tests/test_kernels_upsample.py tests/test_kernels_synthesis.py tests/test_kernels_decode.py \
    ${EXTRA_TESTS:-}     # compiled kernels vs reference
time timeout "${BENCH_TIMEOUT:-260}" python3 benchmarks/gpu_bench.py \
    --files results/bench_kodim14/kodim14_k0.3.lotc results/bench_kodim14/kodim14_k0.7.lotc \
    --synthetic-4k --out "$OUT/gpu_bench.json" ${BENCH_ARGS:-}
time timeout "${TRAIN_TIMEOUT:-200}" python3 benchmarks/encode_throughput.py local/kodak --crop 256 --steps 200 \
    --batches 1,4,16,64 --device cuda --out "$OUT"      # batched training: images/hour per B
