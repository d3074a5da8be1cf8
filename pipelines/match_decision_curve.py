"""The match decision measured on ground-truth scenes: how the candidate ratio and the decision
rule trade correct matches against network work.

For every image pair of a scene whose SIFT descriptors show overlap (≥ 20 mutual ratio-test
nearest neighbours, the ``min_overlap`` skip of ``patchmatch sfm``), with 4096 SIFT keypoints per
image, it compares

* ``sift``: mutual nearest neighbours passing Lowe's ratio test at 0.8 (COLMAP's default), no network;
* ``net R``: patchmatch's decision (candidates = each keypoint's nearest neighbour in both
  directions with ratio < R, mutual best by network score, score > 0);
* ``hybrid R``: the SIFT matches plus the network's decision among the candidates SIFT rejects
  (ratio in [0.8, R)), so the network scores only those.

A match is correct when it lies within 2 px of the epipolar lines of the ground-truth cameras in
both images. Prints a Markdown table (correct matches, all matches, precision, network pairs
scored) and writes JSON.

Usage::

    python pipelines/match_decision_curve.py [--scenes entry-P10 temple-ring] [--precision auto]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from patchmatch.candidates import knn as _knn, root_sift
from patchmatch.datasets.scenes import SceneError, fundamental_matrix, load_scene
from patchmatch.features import detect
from patchmatch.images import read_gray
from patchmatch.matching import MatchConfig, decide_matches
from patchmatch.patches import extract_patches
from patchmatch.scoring import PatchScorer

RATIOS = (0.8, 0.85, 0.9, 0.95)


def _nearest(q, r):
    d, i = _knn(q, r, 2)
    return i[:, 0].numpy(), (d[:, 0] / d[:, 1].clamp_min(1e-9)).numpy()


def _epipolar_ok(F, k0, k1, m, px=2.0):
    x0 = np.c_[k0[m[:, 0], :2], np.ones(len(m))]
    x1 = np.c_[k1[m[:, 1], :2], np.ones(len(m))]
    l1, l0 = x0 @ F.T, x1 @ F
    e1 = np.abs((l1 * x1).sum(1)) / np.linalg.norm(l1[:, :2], axis=1)
    e0 = np.abs((l0 * x0).sum(1)) / np.linalg.norm(l0[:, :2], axis=1)
    return np.maximum(e0, e1) < px


def scene_curve(scene_dir: Path, scorer: PatchScorer, max_keypoints: int = 4096) -> dict:
    scene = load_scene(scene_dir)
    feats, patches = {}, {}
    for n in scene.names:
        img, _ = read_gray(scene.image_path(n))
        feats[n] = detect(img, max_keypoints)
        patches[n] = extract_patches(img, feats[n].keypoints, magnification=scorer.magnification)
    rules = ["sift"] + [f"net {r}" for r in RATIOS] + [f"hybrid {r}" for r in RATIOS[1:]]
    tot = {k: {"correct": 0, "matches": 0, "scored": 0} for k in rules}
    names, pairs_used = scene.names, 0
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            f0, f1 = feats[names[a]], feats[names[b]]
            i01, r01 = _nearest(root_sift(f0.descriptors), root_sift(f1.descriptors))
            i10, r10 = _nearest(root_sift(f1.descriptors), root_sift(f0.descriptors))
            sift_ok = (i10[i01] == np.arange(len(i01))) & (r01 < 0.8) & (r10[i01] < 0.8)
            if sift_ok.sum() < 20:
                continue
            try:
                F = fundamental_matrix(scene.cameras[names[a]], scene.cameras[names[b]])
            except SceneError:  # two views from one centre
                continue
            pairs_used += 1
            cand = np.r_[np.c_[np.arange(len(i01)), i01][r01 < RATIOS[-1]], np.c_[i10, np.arange(len(i10))][r10 < RATIOS[-1]]]
            ratio = np.r_[r01[r01 < RATIOS[-1]], r10[r10 < RATIOS[-1]]]
            order = np.lexsort((ratio, cand[:, 1], cand[:, 0]))
            cand, ratio = cand[order], ratio[order]
            first = np.r_[True, (np.diff(cand, axis=0) != 0).any(1)]
            cand, ratio = cand[first], ratio[first]  # each pair once, with its smaller ratio
            scores = scorer.score_pairs(patches[names[a]], patches[names[b]], cand)
            sift = np.c_[np.arange(len(i01)), i01][sift_ok]

            def add(rule, m, scored):
                tot[rule]["correct"] += int(_epipolar_ok(F, f0.keypoints, f1.keypoints, m).sum()) if len(m) else 0
                tot[rule]["matches"] += int(len(m))
                tot[rule]["scored"] += int(scored)

            add("sift", sift, 0)
            for r in RATIOS:
                sel = ratio < r
                m, _ = decide_matches(cand[sel], scores[sel], len(i01), len(i10), MatchConfig())
                add(f"net {r}", m, sel.sum())
            used0 = np.isin(np.arange(len(i01)), sift[:, 0])
            used1 = np.isin(np.arange(len(i10)), sift[:, 1])
            for r in RATIOS[1:]:
                sel = (ratio >= 0.8) & (ratio < r) & ~used0[cand[:, 0]] & ~used1[cand[:, 1]]
                m, _ = decide_matches(cand[sel], scores[sel], len(i01), len(i10), MatchConfig())
                add(f"hybrid {r}", np.r_[sift, m.reshape(-1, 2)], sel.sum())
    return {"image_pairs": pairs_used, "rules": tot}


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    ap.add_argument("--scenes", nargs="+", default=["entry-P10", "temple-ring"])
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--json", type=Path, default=root / "outputs" / "match_decision_curve.json")
    args = ap.parse_args(argv)
    scorer = PatchScorer.load(args.weights, device="cpu", precision=args.precision)
    out = {}
    print("| scene | rule | correct matches | all matches | precision | network pairs scored |")
    print("|---|---|---|---|---|---|")
    for s in args.scenes:
        res = scene_curve(args.data / "scenes" / s, scorer)
        out[s] = res
        for rule, t in res["rules"].items():
            print(f"| {s} ({res['image_pairs']} pairs) | {rule} | {t['correct']} | {t['matches']} | "
                  f"{t['correct'] / max(t['matches'], 1):.3f} | {t['scored']} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"precision": scorer.precision, "scenes": out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
