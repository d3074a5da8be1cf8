#!/usr/bin/env bash
# Train the 2ch2stream weights shipped as patchmatch/weights/2ch2stream.pt (see MODEL_CARD.md).
# 1. build the Brown-format patch sets of the benchmark split (pipelines/build_pairs.py) and the
#    sacre-coeur set from pycolmap's SIFT reconstruction (pipelines/build_sift_scene_set.py)
# 2. train 2ch2stream with the paper's recipe plus hard-negative mining by the model (and JITTER,
#    default none) for MINUTES of training steps (default 60) on one CPU thread with bfloat16
#    autocast (cosine learning rate over that time; the epoch with the best validation FPR95 is kept)
# 3. copy the float16 checkpoint into the package and print the benchmark table.
# Re-running resumes (the training state is kept in OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
MINUTES=${1:-60}
OUT=${2:-outputs/final}
PAIRS=${PAIRS:-outputs/pairs}
JITTER=${JITTER:-none}
"$PY" pipelines/build_pairs.py --out "$PAIRS"
[ -d "$PAIRS/sacre-coeur-train" ] || "$PY" pipelines/build_sift_scene_set.py sacre-coeur "$PAIRS/sacre-coeur-train"
RESUME=()
[ -f "$OUT/2ch2stream.state.pt" ] && RESUME=(--resume)
OMP_NUM_THREADS=1 "$PY" -m patchmatch.cli train \
  --data "$PAIRS/castle-P30-train" "$PAIRS/Herz-Jesus-P25-train" "$PAIRS/sacre-coeur-train" \
  --val "$PAIRS/castle-P30-val" "$PAIRS/Herz-Jesus-P25-val" \
  --model 2ch2stream --optimizer adam --lr 1e-3 --batch 128 --epochs 1000 --steps-per-epoch 200 \
  --schedule-minutes "$MINUTES" --hard-fraction 0.5 --mine-factor 4 --jitter "$JITTER" --val-pairs 2000 --seed 0 --threads 1 --bf16 --fp16 \
  --out "$OUT/2ch2stream.pt" "${RESUME[@]}"
[ "${NO_INSTALL:-0}" = 1 ] && exit 0
cp "$OUT/2ch2stream.pt" patchmatch/weights/2ch2stream.pt
"$PY" pipelines/patch_benchmark.py --sets "$PAIRS"
