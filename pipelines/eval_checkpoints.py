"""FPR95 of checkpoints on the validation sets (oriented; random and hard negatives), the graf homography set
(another domain, oriented) and the test sets (oriented and upright; consistent and "as detected") of the benchmark split, scored in bfloat16
on every pair: the numbers by which the shipped weights were chosen (validation and graf decide; the test
scenes are reported, never used to choose). ``--tta`` scores with test-time augmentation
(:class:`patchmatch.scoring.PatchScorer`'s ``tta``). Prints one Markdown table (FPR95 in %), one row per
checkpoint; ``--json`` also writes the numbers.

The sets are built by ``pipelines/build_pairs.py`` (validation and test) and by
``patchmatch make-patches ../shared/data/homography/graf SETS/graf-val`` (graf); a missing group is skipped.

Usage::

    python pipelines/eval_checkpoints.py A.pt [B.pt ...] [--sets DIR] [--tta dihedral] [--json out.json]
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
        "temple": ["temple-ring-test"], "dtu": ["dtu-scan65-test"],
        # the test scenes "as detected": each view's own detection, no orientation choice
        "entry-det": ["entry-P10-detected"], "temple-det": ["temple-ring-detected"], "dtu-det": ["dtu-scan65-detected"]}


def evaluate_checkpoint(weights: Path, sets_root: Path, tta: str) -> dict[str, float]:
    """FPR95 (%) per protocol (``val-ori-random``, ``entry-up-hard``, ...) of one checkpoint."""
    model, meta = load_checkpoint(weights)
    scorer = PatchScorer(model, device="cpu", batch_size=512, precision="bf16", tta=tta)
    trained_at = trained_magnification(meta, weights)
    for s in sorted({s for sets in SETS.values() for s in sets}):
        cut_at = mismatched_magnification(sets_root / s, trained_at)
        if cut_at is not None:
            print(f"warning: {sets_root / s} was cut at magnification {cut_at:g}, {weights} trained at {trained_at:g}",
                  file=sys.stderr)  # fmt: skip
    row = {}
    for name, sets in SETS.items():
        if not all((sets_root / s).is_dir() for s in sets):
            print(f"{name}: {', '.join(sets)} not under {sets_root}, skipped", file=sys.stderr)
            continue
        for upright in [False] if name in ("val", "graf") else [False, True]:
            for kind in ("random", "hard"):
                scores, labels = [], []
                for s in sets:
                    patches, pairs, lab = load_eval_pairs(sets_root / s, kind, upright=upright)
                    scores.append(scorer.score_pairs(patches, patches, pairs))
                    labels.append(lab)
                row[f"{name}-{'up' if upright else 'ori'}-{kind}"] = 100 * fpr95(np.concatenate(scores), np.concatenate(labels))
    return row


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """One row per checkpoint, one column per protocol (FPR95 in %)."""
    columns = list(dict.fromkeys(k for row in results.values() for k in row))
    lines = ["| weights | " + " | ".join(f"{c} FPR95 %" for c in columns) + " |", "|---" * (1 + len(columns)) + "|"]
    for key, row in results.items():
        lines.append(f"| {key} | " + " | ".join(f"{row[c]:.2f}" if c in row else "–" for c in columns) + " |")
    return "\n".join(lines)


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
        key = str(w) + ("" if args.tta == "none" else f" tta={args.tta}")
        res[key] = evaluate_checkpoint(w, args.sets, args.tta)
    print(markdown_table(res), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
