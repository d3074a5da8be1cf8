#!/usr/bin/env bash
# The data engine's ablation (patchmatch/weights/MODEL_CARD.md): fine-tunings of the shipped weights on
# the split's training scenes (castle-P30, Herz-Jesus-P25) alone ("control": the same steps, no new
# data) and with one engine source added at a time (half of each batch from it), then with every
# source at the weights of SETS/engine.json ("all"). Each run: STEPS training steps (default 3200,
# about 20 minutes on one CPU thread), learning rate 3e-4 -> 3e-5 by a cosine over the steps, the
# shipped recipe otherwise; JOBS runs side by side (default 2), one thread each. Then FPR95 of the
# shipped weights and of every run on validation, graf and the test scenes (consistent and as
# detected; pipelines/eval_checkpoints.py). Needs the sets of pipelines/build_engine_sets.py and of
# pipelines/build_pairs.py --roles val test detected in SETS.
# Usage: pipelines/engine_ablation.sh [SETS] [OUT]   (environment: STEPS, JOBS, RUNS, EVAL=0 to train only, PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SETS=${1:-outputs/pairs}
OUT=${2:-outputs/engine-ablation}
STEPS=${STEPS:-3200}
JOBS=${JOBS:-2}
RUNS=${RUNS:-control scenes collections worlds warps all}
mkdir -p "$OUT"
[ -f "$SETS/engine.json" ] || { echo "error: $SETS/engine.json not found (pipelines/build_engine_sets.py --out $SETS)" >&2; exit 2; }
# one run's sets and their shares, two lines: control = the split's two training scenes; all = engine.json's
# sets and weights; SOURCE = the two scenes (a quarter each) and that source's other sets (half, split evenly)
run_data() {
  "$PY" - "$SETS" "$1" <<'PYEOF'
import json, sys
from pathlib import Path
sets, name = Path(sys.argv[1]), sys.argv[2]
engine = json.loads((sets / "engine.json").read_text())
base = [str(sets / "castle-P30-train"), str(sets / "Herz-Jesus-P25-train")]
if name == "all":
    data, weights = engine["sets"], engine["weights"]
else:
    extra = [] if name == "control" else [p for p in engine["sources"].get(name, []) if Path(p).name not in ("castle-P30-train", "Herz-Jesus-P25-train")]
    data = base + extra
    weights = [0.5, 0.5] if not extra else [0.25, 0.25] + [0.5 / len(extra)] * len(extra)
if name not in ("control", "all") and not extra:
    sys.exit(f"{name}: no sets in {sets / 'engine.json'}, skipped")
print(" ".join(data))
print(" ".join(f"{w:.6g}" for w in weights))
PYEOF
}
run() {
  local name=$1 lines
  lines=$(run_data "$name") || return 0
  read -r -a data <<< "$(sed -n 1p <<< "$lines")"
  read -r -a weights <<< "$(sed -n 2p <<< "$lines")"
  RESUME=(); [ -f "$OUT/$name.state.pt" ] && RESUME=(--resume)
  OMP_NUM_THREADS=1 "$PY" -m patchmatch.cli train --data "${data[@]}" --data-weights "${weights[@]}" \
    --val "$SETS/castle-P30-val" "$SETS/Herz-Jesus-P25-val" --init patchmatch/weights/2ch2stream.pt \
    --model 2ch2stream --optimizer adam --lr 3e-4 --final-lr-fraction 0.1 --batch 128 \
    --epochs $((STEPS / 200)) --steps-per-epoch 200 --hard-fraction 0.5 --mine-factor 4 --jitter none \
    --val-pairs 2000 --seed 0 --threads 1 --bf16 --fp16 --out "$OUT/$name.pt" "${RESUME[@]}" > "$OUT/$name.log" 2>&1
  echo "$name done: $OUT/$name.pt"
}
for name in $RUNS; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  run "$name" &
done
wait
[ "${EVAL:-1}" = 0 ] && exit 0
ckpts=(patchmatch/weights/2ch2stream.pt)
for name in $RUNS; do [ -f "$OUT/$name.pt" ] && ckpts+=("$OUT/$name.pt"); done
"$PY" pipelines/eval_checkpoints.py "${ckpts[@]}" --sets "$SETS" --json "$OUT/eval.json"
