#!/usr/bin/env bash
# Throughput of the scorer on a CUDA GPU, as one prepared run (issue 6): the dense fp32 GEMM and
# pairs/s per precision (fp32, bf16 and fp16 autocast, channels-last, cuDNN autotuning) and batch
# size with the shipped weights; then bf16/fp16 through torch.compile at the largest batch
# (COMPILE=0 skips it). Tables on stdout, JSON in ${OUT:-outputs}/bench_gpu*.json.
# Usage: pipelines/gpu_bench.sh [SECONDS_PER_MEASUREMENT]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SECONDS_EACH=${1:-2}
DEST=${OUT:-outputs}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
"$PY" -m patchmatch.cli bench --device cuda --seconds "$SECONDS_EACH" --pairs 262144 \
  --precision fp32 --precision bf16 --precision fp16 \
  --batch-size 1024 --batch-size 8192 --batch-size 32768 \
  --json "$DEST/bench_gpu.json"
if [ "${COMPILE:-1}" = 1 ]; then
  timeout "${COMPILE_TIMEOUT:-300}" "$PY" -m patchmatch.cli bench --device cuda --seconds "$SECONDS_EACH" --pairs 262144 \
    --precision bf16 --precision fp16 --batch-size 32768 --compile --json "$DEST/bench_gpu_compile.json"
fi
