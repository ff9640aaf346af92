set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; lscpu | grep "Model name"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
python3 -m pip install -q --no-index --find-links local/wheels constriction || exit 1
time LOTC_BUILD_JOBS=16 python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
time timeout 110 python3 -m pytest -q -x tests/triton/test_kernels_philox.py tests/triton/test_kernels_upsample.py \
    tests/triton/test_kernels_synthesis.py tests/triton/test_kernels_decode.py 2>&1 | tail -5
time timeout 150 python3 benchmarks/encode_throughput.py local/kodak --crop 256 --steps 200 \
    --batches 1,4,16,64 --device cuda --out "$OUT"
time timeout 170 python3 benchmarks/gpu_bench.py \
    --files results/bench_kodim14/kodim14_k0.3.lotc results/bench_kodim14/kodim14_k0.7.lotc \
    --synthetic-4k --no-compile --launch-shapes 128x4,256x8,64x2,256x4 --out "$OUT/gpu_bench.json" | grep -v '^ '
time timeout 80 python3 local/gpu_exp.py "$OUT/gelu_exp.json"
