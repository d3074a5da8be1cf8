"""What the network gets wrong at 95 % recall on a patch set: its false positives and its hardest positives.

Scores one protocol of a set (``patchmatch make-patches`` output) with a checkpoint, takes the
threshold that keeps 95 % of the positives (the FPR95 operating point) and reports:

- the negatives above it (false positives): how many lie in one image, and, where the set's scene has
  ground-truth cameras (``cameras.json``), how many lie within 3 px of each other's epipolar line
  (candidates for label noise; the rate among all random negatives is printed beside it);
- how alike the two patches of false positives, positives and random negatives are in pixels:
  zero-mean normalised cross-correlation (NCC), best over shifts of ±2 px, on the central 32×32 px
  and on the central 56×56 px;
- a picture of the highest-scoring false positives and the lowest-scoring positives (``--picture``).

Usage::

    python pipelines/confusions.py SETS/entry-P10-test [--weights W.pt] [--protocol random]
        [--upright] [--picture confusions.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from patchmatch.datasets.scenes import Camera, fundamental_matrix, load_scene
from patchmatch.scoring import PatchScorer
from patchmatch.training.data import PairSetError, load_eval_pairs


def best_ncc(a: np.ndarray, b: np.ndarray, half: int, shift: int = 2) -> float:
    """Largest zero-mean NCC of the central (2·half)² pixels of ``a`` with those of ``b`` shifted by up to ``shift`` px."""
    c = 32
    x = a[c - half : c + half, c - half : c + half].astype(np.float32)
    x = (x - x.mean()) / (x.std() + 1e-6)
    best = -1.0
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            y = b[c - half + dy : c + half + dy, c - half + dx : c + half + dx].astype(np.float32)
            best = max(best, float((x * (y - y.mean()) / (y.std() + 1e-6)).mean()))
    return best


def _epipolar_px(cams: dict[str, Camera], names: list[str], interest: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Distance (px) of each pair's second keypoint to the epipolar line of its first; NaN within one image."""
    out = np.full(len(pairs), np.nan)
    for m, (a, b) in enumerate(pairs):
        ia, ib = int(interest[a, 0]), int(interest[b, 0])
        if ia == ib:
            continue
        line = fundamental_matrix(cams[names[ia]], cams[names[ib]]) @ np.array([interest[a, 1], interest[a, 2], 1.0])
        out[m] = abs(line @ np.array([interest[b, 1], interest[b, 2], 1.0])) / np.hypot(line[0], line[1])
    return out


def _picture(patches: np.ndarray, pairs: np.ndarray, rows: list[tuple[str, np.ndarray]], path: Path) -> None:
    gap = np.full((64, 4), 255, np.uint8)
    lines = []
    for _, index in rows:
        tiles = [np.hstack([patches[pairs[m, 0]], gap, patches[pairs[m, 1]], np.full((64, 12), 128, np.uint8)]) for m in index[:8]]
        tiles += [np.full((64, 144), 128, np.uint8)] * (8 - len(tiles))
        lines.append(np.hstack(tiles))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.resize(np.vstack(lines), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)):
        raise OSError(f"cannot write {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set", type=Path, help="a patch set folder (patchmatch make-patches output)")
    ap.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the shipped weights)")
    ap.add_argument("--protocol", choices=["random", "hard"], default="random")
    ap.add_argument("--upright", action="store_true", help="the upright patches instead of the oriented ones")
    ap.add_argument("--picture", type=Path, default=None, help="PNG: top row(s) false positives, bottom hardest positives")
    ap.add_argument("--sample", type=int, default=500, help="positives and random negatives whose NCC is computed")
    args = ap.parse_args(argv)
    try:
        patches, pairs, labels = load_eval_pairs(args.set, args.protocol, upright=args.upright)
        scorer = PatchScorer.load(args.weights, precision="fp32")
    except (PairSetError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scores = scorer.score_pairs(patches, patches, pairs)
    threshold = float(np.quantile(scores[labels], 0.05))
    neg = np.where(~labels)[0]
    fp = neg[scores[neg] >= threshold]
    fp = fp[np.argsort(-scores[fp])]
    pos = np.where(labels)[0]
    print(f"{args.set} ({'upright' if args.upright else 'oriented'}, {args.protocol}): threshold at 95 % recall "
          f"{threshold:.3f}; {len(fp)} of {len(neg)} negatives above it (FPR95 {100 * len(fp) / len(neg):.2f} %)")  # fmt: skip
    variant = args.set / ("upright" if args.upright else "oriented")
    interest = np.loadtxt(variant / "interest.txt", ndmin=2)
    same = int((interest[pairs[fp, 0], 0] == interest[pairs[fp, 1], 0]).sum())
    print(f"false positives within one image: {same}")
    summary = json.loads((args.set / "summary.json").read_text()) if (args.set / "summary.json").is_file() else {}
    scene = summary.get("scene_folder") or summary.get("source")
    if scene and (Path(scene) / "cameras.json").is_file():
        cams = load_scene(scene, check_images=False).cameras
        names = summary["images"]
        near = np.nan_to_num(_epipolar_px(cams, names, interest, pairs[fp]), nan=np.inf) < 3
        rng = np.random.default_rng(0)
        sample = rng.choice(neg, min(2000, len(neg)), replace=False)
        d = _epipolar_px(cams, names, interest, pairs[sample])
        print(f"false positives across images within 3 px of the epipolar line: {int(near.sum())} "
              f"(among {np.isfinite(d).sum()} random negatives across images: {100 * np.mean(d[np.isfinite(d)] < 3):.1f} %)")  # fmt: skip
    rng = np.random.default_rng(1)
    groups = [("false positives", fp), ("positives", rng.choice(pos, min(args.sample, len(pos)), replace=False)),
              ("random negatives", rng.choice(neg, min(args.sample, len(neg)), replace=False))]  # fmt: skip
    print(f"{'pairs':<18}{'n':>6}  NCC central 32 px: median, >0.9   NCC central 56 px: median, >0.9")
    for name, index in groups:
        if not len(index):
            continue
        n32 = np.array([best_ncc(patches[pairs[m, 0]], patches[pairs[m, 1]], 16) for m in index])
        n56 = np.array([best_ncc(patches[pairs[m, 0]], patches[pairs[m, 1]], 28) for m in index])
        print(f"{name:<18}{len(index):>6}  {np.median(n32):>18.2f} {100 * np.mean(n32 > 0.9):>5.0f} %"
              f"{np.median(n56):>28.2f} {100 * np.mean(n56 > 0.9):>5.0f} %")  # fmt: skip
    if args.picture is not None:
        hardest = pos[np.argsort(scores[pos])]
        _picture(patches, pairs, [("false positives", fp), ("", fp[8:]), ("hardest positives", hardest), ("", hardest[8:])], args.picture)
        print(f"picture: {args.picture} (rows 1-2: highest-scoring false positives; rows 3-4: lowest-scoring positives)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
