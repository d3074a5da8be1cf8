"""FPR95 of checkpoints on the validation sets (oriented; random and hard negatives) and the test sets
(oriented and upright) of the benchmark split, and the graf homography set (another domain, oriented; built by
``patchmatch make-patches ../shared/data/homography/graf outputs/pairs/graf-val``): the numbers the model card's ablation and the
choice of the shipped weights were made with (bfloat16 scoring, all pairs of every set). ``--tta`` scores with
test-time augmentation (:class:`patchmatch.scoring.PatchScorer`'s ``tta``).

Usage::

    python pipelines/eval_checkpoints.py A.pt [B.pt ...] [--sets outputs/pairs] [--tta dihedral] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from patchmatch.datasets.patchset import mismatched_magnification
from patchmatch.evaluation.fpr95 import fpr95
from patchmatch.models import load_checkpoint, trained_magnification
from patchmatch.scoring import TTA, PatchScorer
from patchmatch.training.data import load_eval_pairs

SETS = {"val": ["castle-P30-val", "Herz-Jesus-P25-val"], "graf": ["graf-val"], "entry": ["entry-P10-test"],
        "temple": ["temple-ring-test"]}


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--sets", type=Path, default=root / "outputs" / "pairs", help="built by pipelines/build_pairs.py")
    ap.add_argument("--tta", default="none", choices=list(TTA), help="test-time augmentation (default none)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    res = {}
    for w in args.weights:
        model, meta = load_checkpoint(w)
        scorer = PatchScorer(model, device="cpu", batch_size=512, precision="bf16", tta=args.tta)
        trained_at = trained_magnification(meta, w)
        for s in sorted({s for sets in SETS.values() for s in sets}):
            cut_at = mismatched_magnification(args.sets / s, trained_at)
            if cut_at is not None:
                print(f"warning: {args.sets / s} was cut at magnification {cut_at:g}, {w} trained at {trained_at:g}", file=sys.stderr)
        row = {}
        for name, sets in SETS.items():
            if not all((args.sets / s).is_dir() for s in sets):
                print(f"{name}: {', '.join(sets)} not under {args.sets}, skipped", file=sys.stderr)
                continue
            for upright in [False] if name in ("val", "graf") else [False, True]:
                for kind in ("random", "hard"):
                    scores, labels = [], []
                    for s in sets:
                        patches, pairs, lab = load_eval_pairs(args.sets / s, kind, upright=upright)
                        scores.append(scorer.score_pairs(patches, patches, pairs))
                        labels.append(lab)
                    row[f"{name}-{'up' if upright else 'ori'}-{kind}"] = 100 * fpr95(np.concatenate(scores), np.concatenate(labels))
        key = str(w) + ("" if args.tta == "none" else f" tta={args.tta}")
        res[key] = row
        print(key, " ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
