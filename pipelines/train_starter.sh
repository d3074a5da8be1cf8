#!/usr/bin/env bash
# Train the shipped starter weights patchmatch/weights/2ch2stream.pt (see MODEL_CARD.md).
# 1. build the pair sets (castle-P30, Herz-Jesus-P25 train/val; entry-P10 test) with build_pairs.py
# 2. train 2ch2stream on 2 CPU threads for 20 min of training time (cosine learning rate over that time,
#    so the result uses whatever share of the CPU it gets; ~23 min wall with validation)
# 3. copy the float16 checkpoint into the package and print the evaluation table.
# Logs: outputs/train_starter.log. Re-running resumes (the training state is kept in outputs/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PAIRS=outputs/pairs
"$PY" pipelines/build_pairs.py --out "$PAIRS"
RESUME=()
[ -f outputs/starter/2ch2stream.state.pt ] && RESUME=(--resume)
"$PY" -m patchmatch.cli train \
  --data "$PAIRS/castle-P30-train.h5" "$PAIRS/Herz-Jesus-P25-train.h5" \
  --val "$PAIRS/castle-P30-val.h5" "$PAIRS/Herz-Jesus-P25-val.h5" \
  --model 2ch2stream --optimizer adam --lr 1e-3 --batch 128 --epochs 200 --steps-per-epoch 100 --schedule-minutes 20 \
  --hard-fraction 0.5 --val-pairs 1000 --max-minutes 28 --seed 0 --threads 2 --fp16 \
  --out outputs/starter/2ch2stream.pt "${RESUME[@]}"
cp outputs/starter/2ch2stream.pt patchmatch/weights/2ch2stream.pt
"$PY" pipelines/eval_starter.py --weights patchmatch/weights/2ch2stream.pt --pairs "$PAIRS/entry-P10-test.h5"
