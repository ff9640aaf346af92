set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
exec > >(tee "$OUT/log.txt") 2>&1
python3 -m pip install -q --no-index --find-links local/wheels constriction || exit 1
time LOTC_BUILD_JOBS=16 python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
time timeout 110 python3 benchmarks/gpu_bench.py --files results/bench_kodim14/kodim14_k0.7.lotc --synthetic-4k \
    --no-compile --threadwise 128x4,256x8,512x4 --gelu exp,tanh --out "$OUT/gpu_bench.json" | grep -v '^ '
time timeout 130 python3 benchmarks/encode_throughput.py local/kodak --crop 256 --steps 200 \
    --batches 1,4,16,64 --device cuda --out "$OUT"
