"""Which turns of the second patch ``PatchScorer(tta="orient")`` should try, chosen on validation.

For each set of angles, a pair's score is the network's highest over the second patch turned by
each angle (:func:`patchmatch.scoring.turn_patches`); FPR95 (%) on the validation sets of the split
(castle-P30 and Herz-Jesus-P25's held-out images), oriented patches and random negatives, in both
keypoint protocols: "consistent" (``-val``: among a location's detected orientations the one that
agrees with the other views) and "as detected" (``-val-detected``: each view's own strongest
orientation). The last column is the geometric mean of the four FPR95 ratios to one pass (lower is
better), the criterion; the SIFT row gives the keypoints' own SIFT descriptors. Prints a Markdown
table; ``--json`` also writes the numbers.

Usage::

    python pipelines/orient_angles.py [--weights W.pt] [--sets DIR] [--max-pairs 3000] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from patchmatch.datasets.brown import BrownDataset
from patchmatch.datasets.patchset import find_pair_files
from patchmatch.datasets.split import TRAIN_SCENES, build_split
from patchmatch.evaluation.fpr95 import fpr95
from patchmatch.evaluation.patches import _keypoint_descriptors, _subset
from patchmatch.scoring import PatchScorer, turn_patches

ROOT = Path(__file__).resolve().parents[1]

#: (label, angles in degrees): narrow ranges around the detected angle up to the full circle
ANGLE_SETS = (
    ("one pass", (0.0,)),
    ("±20° in 10° steps", (-20.0, -10.0, 0.0, 10.0, 20.0)),
    ("±30° in 15° steps", (-30.0, -15.0, 0.0, 15.0, 30.0)),
    ("±45° in 22.5° steps", (-45.0, -22.5, 0.0, 22.5, 45.0)),
    ("±45° in 15° steps", (-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0)),
    ("±60° in 20° steps", (-60.0, -40.0, -20.0, 0.0, 20.0, 40.0, 60.0)),
    ("±90° in 30° steps", (-90.0, -60.0, -30.0, 0.0, 30.0, 60.0, 90.0)),
    ("quarter turns", (0.0, 90.0, 180.0, 270.0)),
    ("full circle in 60° steps", (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)),
    ("full circle in 45° steps", (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)),
)


def set_pairs(folder: Path, max_pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``(patches0, patches1, labels, SIFT keypoint-descriptor scores)`` of a set's random-negative pairs (oriented)."""
    oriented = folder / "oriented"
    ds = BrownDataset(oriented)
    index, labels = _subset(ds.pairs(find_pair_files(oriented)["random"][0].name), max_pairs, 0, oriented)
    desc = _keypoint_descriptors(oriented, len(ds))
    sift = None if desc is None else -np.linalg.norm(desc[index[:, 0]] - desc[index[:, 1]], axis=1)
    return np.ascontiguousarray(ds.patches[index[:, 0]]), np.ascontiguousarray(ds.patches[index[:, 1]]), labels, sift


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="shared data folder")
    ap.add_argument("--sets", type=Path, default=ROOT / "outputs" / "pairs", help="where the split's sets are (built)")
    ap.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the shipped weights)")
    ap.add_argument("--max-pairs", type=int, default=3000, help="stratified random pairs per set (default 3000)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    if not (args.data / "scenes").is_dir():
        print(f"error: {args.data / 'scenes'} not found (see shared/data/README.md)", file=sys.stderr)
        return 2
    sets = build_split(args.data / "scenes", args.sets, ("val", "val-detected"))
    names = [f"{s}-{role}" for role in ("val", "val-detected") for s in TRAIN_SCENES]
    scorer = PatchScorer.load(args.weights, device="cpu", precision="fp32")
    data = {n: set_pairs(sets[n], args.max_pairs) for n in names}
    rows = {"SIFT keypoint descriptors": {n: 100 * fpr95(d[3], d[2]) for n, d in data.items() if d[3] is not None}}
    for label, angles in ANGLE_SETS:
        row = {}
        for n, (p0, p1, labels, _) in data.items():
            pairs = np.stack([np.arange(len(p0))] * 2, 1)
            scores = np.max([scorer.score_pairs(p0, turn_patches(p1, a), pairs) for a in angles], 0)
            row[n] = 100 * fpr95(scores, labels)
        rows[f"{label} ({len(angles)})"] = row
        print(label, {n: round(v, 2) for n, v in row.items()}, flush=True)
    one = rows["one pass (1)"]
    head = " | ".join(f"{n} FPR95 %" for n in names)
    print(f"\n| turns of the second patch (passes) | {head} | geometric mean of the ratios to one pass |")
    print("|---" * (len(names) + 2) + "|")
    for label, row in rows.items():
        ratio = math.exp(np.mean([math.log(row[n] / one[n]) for n in names])) if len(row) == len(names) else None
        cells = " | ".join(f"{row[n]:.2f}" if n in row else "–" for n in names)
        print(f"| {label} | {cells} | {'–' if ratio is None else f'{ratio:.3f}'} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
