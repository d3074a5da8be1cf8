#!/usr/bin/env bash
# The ablation table of docs/model-evidence.md: the paper's recipe and one change at a time (full
# jitter, mining by the model, the sacre-coeur set), MINUTES of training steps each (default 16), four
# runs side by side with one thread each, then FPR95 on the full validation and test sets
# (pipelines/eval_checkpoints.py). Needs the sets of pipelines/build_pairs.py and build_sift_scene_set.py.
# Usage: pipelines/train_ablation.sh [MINUTES] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
MINUTES=${1:-16}
OUT=${2:-outputs/ablation}
P=${PAIRS:-outputs/pairs}
mkdir -p "$OUT"
base=(--data "$P/castle-P30-train" "$P/Herz-Jesus-P25-train" --val "$P/castle-P30-val" "$P/Herz-Jesus-P25-val"
  --model 2ch2stream --optimizer adam --lr 1e-3 --batch 128 --epochs 1000 --steps-per-epoch 100
  --schedule-minutes "$MINUTES" --hard-fraction 0.5 --val-pairs 1000 --seed 0 --threads 1 --bf16)
run() { name=$1; shift; OMP_NUM_THREADS=1 "$PY" -m patchmatch.cli train "${base[@]}" "$@" --out "$OUT/$name.pt" > "$OUT/$name.log" 2>&1; }
run paper &
run jitter --jitter full &
run mining --mine-factor 4 &
run sacre --data "$P/castle-P30-train" "$P/Herz-Jesus-P25-train" "$P/sacre-coeur-train" &
wait
"$PY" pipelines/eval_checkpoints.py "$OUT"/{paper,jitter,mining,sacre}.pt --sets "$P" --json "$OUT/eval.json"
