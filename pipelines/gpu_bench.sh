#!/usr/bin/env bash
# Throughput of the scorer on a CUDA GPU, as one prepared run (issue 6): the dense fp32 GEMM and
# pairs/s per precision (fp32, bf16 and fp16 autocast, channels-last) and batch size, with the
# shipped weights; table on stdout, JSON in ${OUT:-outputs}/bench_gpu.json.
# Usage: pipelines/gpu_bench.sh [SECONDS_PER_MEASUREMENT]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SECONDS_EACH=${1:-3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -m patchmatch.cli bench --device cuda --seconds "$SECONDS_EACH" --pairs 65536 \
  --precision fp32 --precision bf16 --precision fp16 \
  --batch-size 1024 --batch-size 8192 --batch-size 32768 \
  --json "${OUT:-outputs}/bench_gpu.json"
