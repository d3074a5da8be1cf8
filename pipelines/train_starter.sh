#!/usr/bin/env bash
# Train the 2ch2stream weights shipped as patchmatch/weights/2ch2stream.pt (see MODEL_CARD.md).
# 1. build the Brown-format patch sets of the benchmark split (pipelines/build_pairs.py)
# 2. train 2ch2stream with the paper's recipe for MINUTES of training steps (default 44) on one
#    CPU thread with bfloat16 autocast (cosine learning rate over that time; the epoch with the best
#    validation FPR95 is kept)
# 3. copy the float16 checkpoint into the package and print the benchmark table.
# Re-running resumes (the training state is kept in OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
MINUTES=${1:-44}
OUT=${2:-outputs/long}
PAIRS=${PAIRS:-outputs/pairs}
"$PY" pipelines/build_pairs.py --out "$PAIRS"
RESUME=()
[ -f "$OUT/2ch2stream.state.pt" ] && RESUME=(--resume)
OMP_NUM_THREADS=1 "$PY" -m patchmatch.cli train \
  --data "$PAIRS/castle-P30-train" "$PAIRS/Herz-Jesus-P25-train" \
  --val "$PAIRS/castle-P30-val" "$PAIRS/Herz-Jesus-P25-val" \
  --model 2ch2stream --optimizer adam --lr 1e-3 --batch 128 --epochs 1000 --steps-per-epoch 200 \
  --schedule-minutes "$MINUTES" --hard-fraction 0.5 --val-pairs 1000 --seed 0 --threads 1 --bf16 --fp16 \
  --out "$OUT/2ch2stream.pt" "${RESUME[@]}"
cp "$OUT/2ch2stream.pt" patchmatch/weights/2ch2stream.pt
"$PY" pipelines/patch_benchmark.py --sets "$PAIRS"
