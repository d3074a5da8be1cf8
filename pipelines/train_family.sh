#!/usr/bin/env bash
# The paper's model family trained with one budget each (issue 4): the same data, recipe and
# wall-clock training budget (MINUTES of steps, bfloat16 autocast, one CPU thread) for every model.
# Usage: pipelines/train_family.sh [MINUTES] [OUTDIR]; then evaluate all checkpoints with
#   python pipelines/patch_benchmark.py --weights OUTDIR/*.pt
# Re-running resumes the unfinished runs and skips the finished ones.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
MINUTES=${1:-8}
OUT=${2:-outputs/family}
PAIRS=${PAIRS:-outputs/pairs}
mkdir -p "$OUT"
for MODEL in 2ch2stream 2ch 2chdeep siam pseudo-siam siam-2stream; do
  grep -qx "done $MODEL" "$OUT/done.txt" 2>/dev/null && continue
  RESUME=()
  [ -f "$OUT/$MODEL.state.pt" ] && RESUME=(--resume)
  OMP_NUM_THREADS=1 "$PY" -m patchmatch.cli -q train \
    --data "$PAIRS/castle-P30-train" "$PAIRS/Herz-Jesus-P25-train" \
    --val "$PAIRS/castle-P30-val" "$PAIRS/Herz-Jesus-P25-val" \
    --model "$MODEL" --optimizer adam --lr 1e-3 --batch 128 --epochs 1000 --steps-per-epoch 100 \
    --schedule-minutes "$MINUTES" --hard-fraction 0.5 --val-pairs 1000 --seed 0 --threads 1 --bf16 --fp16 \
    --out "$OUT/$MODEL.pt" "${RESUME[@]}" 2>&1 | tee "$OUT/$MODEL.log"
  echo "done $MODEL" >> "$OUT/done.txt"
done
