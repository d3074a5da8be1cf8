#!/usr/bin/env bash
# Scoring throughput on a CUDA GPU (the GPU table of docs/benchmarks.md): the dense fp32 GEMM and
# pairs/s per precision (fp32 with TF32 convolutions, bf16 and fp16 autocast) and batch size with the
# shipped weights, as one prepared run. Prints the GPU, the torch/CUDA versions and the bench tables;
# JSON in ${OUT:-outputs}/bench_gpu.json. Needs only torch, kornia, opencv, numpy, h5py and tqdm.
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
