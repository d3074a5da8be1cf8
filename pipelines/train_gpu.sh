#!/usr/bin/env bash
# GPU recipe (for when a GPU is lent): the data are prepared on the CPU beforehand —
# pipelines/build_engine_sets.py (training sources and SETS/engine.json with their weights) and
# pipelines/build_pairs.py --roles val test detected — and carried to the GPU machine with this
# repository; this script trains 2ch2stream there on every engine set, drawn by weight, for MINUTES
# (default 8) of training steps on CUDA with bfloat16 autocast (cosine learning rate over that time,
# the epoch with the best validation FPR95 kept), and writes OUT/2ch2stream-engine.pt. Bring the
# checkpoint back and evaluate it here: pipelines/patch_benchmark.py --weights OUT/2ch2stream-engine.pt.
# Ship it (patchmatch/weights/, then patchmatch quantize) only if it beats the shipped weights on the
# test scenes without being worse elsewhere (docs/model-evidence.md).
# Usage: pipelines/train_gpu.sh [MINUTES] [OUT]   (environment: PAIRS, INIT=checkpoint to fine-tune, PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
MINUTES=${1:-8}
OUT=${2:-outputs/gpu}
PAIRS=${PAIRS:-outputs/pairs}
mapfile -t DATA < <("$PY" -c "import json,sys; print(*json.load(open(sys.argv[1]))['sets'], sep='\n')" "$PAIRS/engine.json")
mapfile -t WEIGHTS < <("$PY" -c "import json,sys; print(*json.load(open(sys.argv[1]))['weights'], sep='\n')" "$PAIRS/engine.json")
INIT_ARGS=()
[ -n "${INIT:-}" ] && INIT_ARGS=(--init "$INIT")
mkdir -p "$OUT"
"$PY" -m patchmatch.cli train --data "${DATA[@]}" --data-weights "${WEIGHTS[@]}" \
  --val "$PAIRS/castle-P30-val" "$PAIRS/Herz-Jesus-P25-val" "${INIT_ARGS[@]}" \
  --model 2ch2stream --optimizer adam --lr 1e-3 --batch 512 --epochs 1000 --steps-per-epoch 500 \
  --schedule-minutes "$MINUTES" --hard-fraction 0.5 --mine-factor 4 --val-pairs 4000 --seed 0 --bf16 --device cuda \
  --out "$OUT/2ch2stream-engine.pt"
