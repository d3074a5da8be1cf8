"""Where the network's verified matches go: per ground-truth scene, the verified inlier matches that
SIFT's ratio test accepted and those the network added, how many of each are correct, and how many
of the network's lie in image pairs whose verified two-view geometry is wrong; one table.

Reads ``patchmatch sfm`` runs (``OUT/SCENE/patchmatch`` as ``compare_scenes.py`` leaves them, or
``--runs SCENE=PATH``): ``features.h5``, ``matches.h5`` (a match's score is NaN where SIFT's ratio
test accepted it) and ``database.db`` (the verified inliers). A match is *correct* when both
keypoints lie within :data:`patchmatch.evaluation.epipolar.CORRECT_PX` of each other's
ground-truth epipolar line; a pair's geometry is *wrong* when fewer than half of its inliers are
correct. Pairs of views sharing a centre (temple-ring lists one view twice) are left out. Pairs are
binned by their SIFT inliers: the network decides which pairs below COLMAP's 15 inliers get verified.

Usage::

    python pipelines/network_inliers.py OUT [--scenes castle-P19 temple-ring ...] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SCENES = ("castle-P19", "entry-P10", "temple-ring", "Herz-Jesus-P8", "Herz-Jesus-P25", "castle-P30")
BINS = (0, 15, 30, 100, 300)
HEADER = ("| scene | pairs (by SIFT inliers) | verified pairs | with a wrong geometry | SIFT inliers | correct "
          "| network inliers | correct | network inliers in wrong-geometry pairs |")  # fmt: skip


def pair_rows(run: Path, cameras: Path) -> np.ndarray:
    """Per verified pair with distinct centres: ``[SIFT inliers, network inliers, correct SIFT,
    correct network]`` (K, 4) int."""
    import pycolmap

    from patchmatch import storage
    from patchmatch.evaluation.epipolar import correct_matches, ground_truth_fundamental
    from patchmatch.evaluation.pose import load_cameras_json

    gt = load_cameras_json(cameras)
    rows, xy = [], {}
    with pycolmap.Database.open(str(run / "database.db")) as db:
        names = {im.image_id: im.name for im in db.read_all_images()}
        for pair_id, geometry in zip(*db.read_two_view_geometries()):
            a, b = (names[i] for i in pycolmap.pair_id_to_image_pair(pair_id))
            inliers = np.asarray(geometry.inlier_matches, np.int64).reshape(-1, 2)
            if not len(inliers):
                continue
            try:
                F = ground_truth_fundamental(gt[a], gt[b])
            except ValueError:  # the same centre: no epipolar geometry
                continue
            for n in (a, b):
                xy.setdefault(n, storage.read_features(run / "features.h5", n).xy)
            matches, scores = storage.read_matches(run / "matches.h5", a, b)
            index = {tuple(m): i for i, m in enumerate(matches.tolist())}
            network = ~np.isnan(scores[[index[tuple(m)] for m in inliers.tolist()]])
            ok = correct_matches(F, xy[a], xy[b], inliers)
            rows.append([(~network).sum(), network.sum(), (ok & ~network).sum(), (ok & network).sum()])
    return np.array(rows, np.int64).reshape(-1, 4)


def scene_lines(scene: str, rows: np.ndarray) -> list[str]:
    """Markdown rows of one scene: all pairs, then one per bin of SIFT inliers."""
    wrong = 2 * (rows[:, 2] + rows[:, 3]) < rows[:, 0] + rows[:, 1]

    def line(label: str, sel: np.ndarray) -> str:
        r = rows[sel]
        share = lambda c, n: f"{100 * c / n:.0f} %" if n else "–"  # noqa: E731
        return (f"| {scene} | {label} | {sel.sum()} | {wrong[sel].sum()} | {r[:, 0].sum()} | {share(r[:, 2].sum(), r[:, 0].sum())} "
                f"| {r[:, 1].sum()} | {share(r[:, 3].sum(), r[:, 1].sum())} | {rows[wrong & sel, 1].sum()} |")  # fmt: skip

    out = [line("all pairs", np.ones(len(rows), bool))]
    for lo, hi in zip(BINS, BINS[1:] + (None,)):
        sel = (rows[:, 0] >= lo) & ((rows[:, 0] < hi) if hi else True)
        if sel.any():
            out.append(line(f"SIFT inliers {lo}–{hi - 1}" if hi else f"SIFT inliers ≥ {lo}", sel))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the compare_scenes.py output folder")
    parser.add_argument("--scenes", nargs="+", default=list(SCENES))
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    args = parser.parse_args(argv)
    lines = [HEADER, "|---" * HEADER.count(" | ") + "|---|"]
    for scene in args.scenes:
        run, cameras = args.out / scene / "patchmatch", args.data / "scenes" / scene / "cameras.json"
        if not (run / "database.db").is_file() or not cameras.is_file():
            print(f"{scene}: no run at {run} or no ground truth at {cameras}; skipped", file=sys.stderr)
            continue
        lines += scene_lines(scene, pair_rows(run, cameras))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
