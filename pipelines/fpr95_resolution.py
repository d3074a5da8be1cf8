"""How small an FPR95 change each protocol of the patch benchmark can resolve, and where int8 lands in it.

For each set and protocol (oriented and upright, random and hard negatives) the float32 scores of the
weights are perturbed by independent Gaussian noise of a few sizes (score units; the scores' standard
deviation is about 1) and the standard deviation of the resulting FPR95 changes is printed, with the
fraction of negatives within that size of the FPR95 threshold (``fpr95_sensitivity``) and the change
each int8 variant of the weights' int8 file makes, and the change from rounding the float32 scores to
float16 alone. Where noise far smaller than int8's error already
moves FPR95 by more than a target, no int8 model can be shown to meet that target on that protocol:
its change there is the reordering of near-equal scores at the threshold.

Usage::

    python pipelines/fpr95_resolution.py [NAME ...] [--weights W.pt] [--sets outputs/pairs] [--json out.json]
        # NAME: set folders under --sets; default: the validation, graf and test sets built there
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from patchmatch.evaluation.networks import check_set_folder
from patchmatch.device import int8_activation_bits
from patchmatch.evaluation.fpr95 import fpr95, fpr95_sensitivity
from patchmatch.models import CheckpointError
from patchmatch.models.quantize import int8_path, int8_variants
from patchmatch.scoring import PatchScorer, shipped_weights_path
from patchmatch.training.data import load_eval_pairs

SETS = ["castle-P30-val", "Herz-Jesus-P25-val", "graf-val", "entry-P10-test", "temple-ring-test"]
NOISE = (0.001, 0.01, 0.03)


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help=f"set folders under --sets (default, those built of: {' '.join(SETS)})")
    ap.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the shipped weights)")
    ap.add_argument("--sets", dest="root", type=Path, default=root / "outputs" / "pairs",
                    help="folder holding the sets (default outputs/pairs, built by pipelines/build_pairs.py)")
    ap.add_argument("--draws", type=int, default=50, help="noise draws per size (default 50, at least 2)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.draws < 2:
        ap.error(f"--draws must be at least 2, got {args.draws}")
    if not args.root.is_dir():
        ap.error(f"--sets {args.root}: no such folder")
    missing = [n for n in args.names if not (args.root / n).is_dir()]
    if missing:
        ap.error(f"not under {args.root}: {', '.join(missing)}")
    names = args.names or [n for n in SETS if (args.root / n).is_dir()]
    if not names:
        ap.error(f"none of {', '.join(SETS)} is under {args.root} (pipelines/build_pairs.py builds them)")
    try:
        for n in names:
            check_set_folder(args.root / n)
        weights = args.weights or shipped_weights_path()
        scorers = {"fp32": PatchScorer.load(weights, device="cpu", precision="fp32")}
        if int8_path(weights).is_file():
            for bits in int8_variants(int8_path(weights), weights):
                if bits <= int8_activation_bits():
                    scorers[f"int8/{bits}"] = PatchScorer.load(weights, device="cpu", precision="int8", activation_bits=bits)
    except (CheckpointError, FileNotFoundError) as e:
        ap.error(str(e))
    rng = np.random.default_rng(0)
    rows = {}
    head = " ".join(f"{f'noise {s:g}':>11}" for s in NOISE)
    print(f"{'set/protocol':<36}{'fp32':>8} {head}  (sd of the FPR95 change, points) | neg. within ±0.001/0.01/0.03 "
          "| fp32 scores rounded to float16 | int8 change")  # fmt: skip
    for name in names:
        folder = args.root / name
        for variant, upright in (("oriented", False), ("upright", True)):
            for kind in ("random", "hard"):
                try:
                    patches, pairs, labels = load_eval_pairs(folder, kind, upright=upright)
                except Exception as e:  # a set without that protocol
                    print(f"{folder} {variant} {kind}: {e}", file=sys.stderr)
                    continue
                scores = {k: sc.score_pairs(patches, patches, pairs) for k, sc in scorers.items()}
                s32 = scores["fp32"].astype(np.float64)
                base = fpr95(s32, labels)
                row = {"fp32": base, "pairs": int(len(labels)), "negatives": int((~labels).sum()),
                       "noise_sd": {str(s): float(np.std([fpr95(s32 + rng.normal(0, s, len(s32)), labels) - base
                                                          for _ in range(args.draws)])) for s in NOISE},
                       "sensitivity": {str(s): fpr95_sensitivity(s32, labels, s) for s in NOISE},
                       "float16_rounding_change": fpr95(s32.astype(np.float16), labels) - base,
                       "int8_change": {k: fpr95(v, labels) - base for k, v in scores.items() if k != "fp32"},
                       "int8_score_rms": {k: float(np.sqrt(np.mean((v - s32) ** 2))) for k, v in scores.items() if k != "fp32"}}  # fmt: skip
                label = f"{name}/{variant}/{kind}"
                rows[label] = row
                sd = " ".join(f"{100 * row['noise_sd'][str(s)]:>11.2f}" for s in NOISE)
                sens = "/".join(f"{100 * row['sensitivity'][str(s)]:.1f}" for s in NOISE)
                q = " ".join(f"{k} {100 * v:+.2f} (rms {row['int8_score_rms'][k]:.3f})" for k, v in row["int8_change"].items())
                print(f"{label:<36}{100 * base:>7.2f}% {sd}  | {sens:>24} % | {100 * row['float16_rounding_change']:+.2f} | {q}",
                      flush=True)  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"weights": str(weights), "draws": args.draws, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
