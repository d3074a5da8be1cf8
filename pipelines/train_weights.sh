#!/usr/bin/env bash
# Trains the shipped weights, patchmatch/weights/2ch2stream.pt, and their int8 file, in one command
# (patchmatch/weights/MODEL_CARD.md describes the recipe):
# 1. build the Brown-format patch sets of the benchmark split (pipelines/build_pairs.py) and the
#    sacre-coeur set from pycolmap's SIFT reconstruction (pipelines/build_sift_scene_set.py);
# 2. train 2ch2stream with the paper's hinge-loss recipe plus hard-negative mining by the model for
#    MINUTES of training steps (default 60) on one CPU thread with bfloat16 autocast (cosine learning
#    rate over that time; the epoch with the best validation FPR95 is kept);
# 3. fine-tune it with the warped set added (pipelines/build_warped_set.py: homography warps of the
#    training images, lund and sacre-coeur) for FINETUNE_EPOCHS epochs of 200 steps (default 2; 0 = skip)
#    of a cosine from 3e-4 to 3e-5 over FINETUNE_MINUTES (default 25), the same recipe otherwise;
# 4. fine-tune that on the data engine's rendered worlds (pipelines/build_engine_sets.py --sources
#    scenes worlds, in PAIRS/engine: 40 worlds, and castle-P30 / Herz-Jesus-P25 with a quarter of their
#    tracks as detected) drawn 0.5 / 0.25 / 0.25, for WORLDS_EPOCHS epochs of 200 steps (default 1;
#    0 = skip) of a cosine from 3e-4 to 3e-5 over WORLDS_STEPS steps (default 3200), the same recipe
#    otherwise. The fine-tunings stop at the epochs validation kept when they ran their whole schedules;
# 5. copy the float16 checkpoint into the package (NO_INSTALL=1 skips this and what follows), make its
#    int8 file (patchmatch quantize) and print the patch benchmark (pipelines/patch_benchmark.py).
# Usage: pipelines/train_weights.sh [MINUTES] [OUT]   (environment: PAIRS, JITTER, FINETUNE_EPOCHS,
#   FINETUNE_MINUTES, WORLDS_EPOCHS, WORLDS_STEPS, WARPS_PER_IMAGE, WARP_KEYPOINTS, DETECTED_SHARE, PYTHON).
#   Re-running resumes (the training states are kept in OUT).
# DETECTED_SHARE (default 0, the shipped weights' sets): share of the training tracks whose views keep their
# own detection (orientation unchosen); applies to sets built by this run (existing ones in PAIRS are kept).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
MINUTES=${1:-60}
OUT=${2:-outputs/final}
PAIRS=${PAIRS:-outputs/pairs}
JITTER=${JITTER:-none}
FINETUNE_MINUTES=${FINETUNE_MINUTES:-25}
FINETUNE_EPOCHS=${FINETUNE_EPOCHS:-2}
WARPS_PER_IMAGE=${WARPS_PER_IMAGE:-1}
WARP_KEYPOINTS=${WARP_KEYPOINTS:-1024}
WORLDS_STEPS=${WORLDS_STEPS:-3200}
WORLDS_EPOCHS=${WORLDS_EPOCHS:-1}
DETECTED_SHARE=${DETECTED_SHARE:-0}
"$PY" pipelines/build_pairs.py --out "$PAIRS" --detected-share "$DETECTED_SHARE"
[ -d "$PAIRS/sacre-coeur-train" ] || "$PY" pipelines/build_sift_scene_set.py sacre-coeur "$PAIRS/sacre-coeur-train" \
  --detected-share "$DETECTED_SHARE"
RESUME=()
[ -f "$OUT/2ch2stream.state.pt" ] && RESUME=(--resume)
OMP_NUM_THREADS=1 "$PY" -m patchmatch.cli train \
  --data "$PAIRS/castle-P30-train" "$PAIRS/Herz-Jesus-P25-train" "$PAIRS/sacre-coeur-train" \
  --val "$PAIRS/castle-P30-val" "$PAIRS/Herz-Jesus-P25-val" \
  --model 2ch2stream --optimizer adam --lr 1e-3 --batch 128 --epochs 1000 --steps-per-epoch 200 \
  --schedule-minutes "$MINUTES" --hard-fraction 0.5 --mine-factor 4 --jitter "$JITTER" --val-pairs 2000 --seed 0 --threads 1 --bf16 --fp16 \
  --out "$OUT/2ch2stream.pt" "${RESUME[@]}"
FINAL="$OUT/2ch2stream.pt"
if [ "$FINETUNE_EPOCHS" != 0 ]; then
  [ -d "$PAIRS/warped-${WARPS_PER_IMAGE}x${WARP_KEYPOINTS}-train" ] || "$PY" pipelines/build_warped_set.py "$PAIRS/warped-${WARPS_PER_IMAGE}x${WARP_KEYPOINTS}-train" \
    --per-image "$WARPS_PER_IMAGE" --max-keypoints "$WARP_KEYPOINTS"
  RESUME=()  # (a longer first stage needs a fresh OUT: the fine-tuning resumes from its own state)
  [ -f "$OUT/2ch2stream-warped.state.pt" ] && RESUME=(--resume)
  OMP_NUM_THREADS=1 "$PY" -m patchmatch.cli train \
    --data "$PAIRS/castle-P30-train" "$PAIRS/Herz-Jesus-P25-train" "$PAIRS/sacre-coeur-train" "$PAIRS/warped-${WARPS_PER_IMAGE}x${WARP_KEYPOINTS}-train" \
    --val "$PAIRS/castle-P30-val" "$PAIRS/Herz-Jesus-P25-val" --init "$OUT/2ch2stream.pt" \
    --model 2ch2stream --optimizer adam --lr 3e-4 --final-lr-fraction 0.1 --batch 128 --epochs "$FINETUNE_EPOCHS" --steps-per-epoch 200 \
    --schedule-minutes "$FINETUNE_MINUTES" --hard-fraction 0.5 --mine-factor 4 --jitter none --val-pairs 2000 --seed 0 \
    --threads 1 --bf16 --fp16 --out "$OUT/2ch2stream-warped.pt" "${RESUME[@]}"
  FINAL="$OUT/2ch2stream-warped.pt"
fi
if [ "$WORLDS_EPOCHS" != 0 ]; then
  E="$PAIRS/engine"
  "$PY" pipelines/build_engine_sets.py --out "$E" --sources scenes worlds --worlds 40
  RESUME=()
  [ -f "$OUT/2ch2stream-worlds.state.pt" ] && RESUME=(--resume)
  OMP_NUM_THREADS=1 "$PY" -m patchmatch.cli train \
    --data "$E/castle-P30-train" "$E/Herz-Jesus-P25-train" "$E/worlds-40-train" --data-weights 0.25 0.25 0.5 \
    --val "$PAIRS/castle-P30-val" "$PAIRS/Herz-Jesus-P25-val" --init "$FINAL" \
    --model 2ch2stream --optimizer adam --lr 3e-4 --final-lr-fraction 0.1 --batch 128 --epochs "$WORLDS_EPOCHS" \
    --schedule-steps "$WORLDS_STEPS" --steps-per-epoch 200 --hard-fraction 0.5 --mine-factor 4 --jitter none --val-pairs 2000 --seed 0 --threads 1 --bf16 --fp16 \
    --out "$OUT/2ch2stream-worlds.pt" "${RESUME[@]}"
  FINAL="$OUT/2ch2stream-worlds.pt"
fi
[ "${NO_INSTALL:-0}" = 1 ] && exit 0
cp "$FINAL" patchmatch/weights/2ch2stream.pt
"$PY" -m patchmatch.cli quantize patchmatch/weights/2ch2stream.pt --overwrite --data "$PAIRS/castle-P30-train" \
  "$PAIRS/Herz-Jesus-P25-train" "$PAIRS/sacre-coeur-train" --eval "$PAIRS/entry-P10-test" "$PAIRS/temple-ring-test"
"$PY" pipelines/patch_benchmark.py --sets "$PAIRS"
