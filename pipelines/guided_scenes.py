"""Geometry-guided matching and adaptive detection, with and without, per ground-truth scene: one table.

For each scene, ``run_sfm`` (shipped weights, the command line's defaults, ``--ground-truth``) runs
in ``OUT/SCENE/VARIANT`` for each variant: ``no-guided`` (the defaults), ``guided``
(``SfmConfig.guided = GuidedConfig()``) and, for ``--fixed-threshold`` scenes, ``fixed-threshold``
(the defaults with one SIFT contrast threshold, :data:`patchmatch.features.CONTRAST_SCHEDULE`'s first). A variant whose
``report.json`` is complete is read back, not run again. Columns: verified inlier matches that
are correct (pairs of views with distinct centres) against the ground-truth epipolar geometry (within
:data:`patchmatch.evaluation.epipolar.CORRECT_PX` in both images) and all verified inliers,
the guided stage's counts, registered images, mean track length, rotation error median, time.

Usage::

    python pipelines/guided_scenes.py OUT [--scenes temple-ring entry-P10 ...] [--every lego=6]
        [--fixed-threshold temple-ring lego] [--data ../shared/data] [--threads 2]
    python pipelines/guided_scenes.py OUT --scenes temple-ring --margins 8 [--tta orient]   # decision margins
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np


SCENES = ("temple-ring", "entry-P10", "Herz-Jesus-P8", "castle-P19", "lego")
HEADER = ("| scene | variant | correct verified matches (2 px, GT) | verified inlier matches | guided: pairs / "
          "candidates scored / matches added | registered images | mean track length (views) "
          "| rotation error median (°) | time (s) |")  # fmt: skip


def subset(scene_dir: Path, out: Path, every: int) -> Path:
    """``scene_dir/images`` or a folder of links to every ``every``-th image of it (sorted by name)."""
    images = scene_dir / "images"
    if every <= 1:
        return images
    folder = out / f"images-every-{every}"
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in images.iterdir() if p.is_file())[::every]:
        if not (folder / path.name).exists():
            (folder / path.name).symlink_to(path.resolve())
    return folder


def correct_verified(out: Path, cameras_json: Path) -> tuple[int, int]:
    """(correct, all) verified inlier matches of ``out/database.db`` against the ground truth."""
    from patchmatch import colmap, storage
    from patchmatch.evaluation.epipolar import correct_matches, ground_truth_fundamental
    from patchmatch.evaluation.pose import load_cameras_json
    from patchmatch.stages import select_pairs

    cameras, db = load_cameras_json(cameras_json), out / "database.db"
    ids = colmap.read_image_ids(db)
    xy = {n: storage.read_features(out / "features.h5", n).xy for n in ids}
    correct = total = 0
    for a, b in select_pairs.read(out / "pairs.json"):
        inliers = colmap.read_verified_matches(db, ids[a], ids[b])
        if len(inliers) and a in cameras and b in cameras:
            try:
                F = ground_truth_fundamental(cameras[a], cameras[b])
            except ValueError:  # two views from one centre (temple-ring lists one twice): no epipolar line
                continue
            ok = correct_matches(F, xy[a], xy[b], inliers)
            correct, total = correct + int(ok.sum()), total + len(ok)
    return correct, total


def run_variant(images: Path, out: Path, cameras_json: Path, variant: str, threads: int) -> dict:
    """The variant's report.json, run when absent or incomplete, with the correct-match counts."""
    from patchmatch.features import CONTRAST_SCHEDULE
    from patchmatch.sfm import SfmConfig, run_sfm

    path = out / "report.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    if report.get("status") != "complete":
        config = SfmConfig(threads=threads)
        if variant == "guided":
            from patchmatch.stages.guided import GuidedConfig

            config = dataclasses.replace(config, guided=GuidedConfig())
        elif variant == "fixed-threshold":
            config = dataclasses.replace(config, contrast_schedule=CONTRAST_SCHEDULE[:1])
        report = run_sfm(images, out, config, overwrite=True, ground_truth=cameras_json)
    report["correct"], report["verified"] = correct_verified(out, cameras_json)
    return report


MARGINS = (None, 0.5, 1.0, 2.0)


def margin_precision(out: Path, images: Path, cameras_json: Path, num_pairs: int, tta: str = "none") -> list[str]:
    """Share of correct guided matches (2 px, GT) per decision margin on the first ``num_pairs``
    verified pairs of a finished run ``out`` (its verified inliers as the reference), scored once
    (test-time augmentation ``tta``)."""
    from patchmatch import colmap, storage
    from patchmatch.evaluation.epipolar import correct_matches, ground_truth_fundamental
    from patchmatch.evaluation.pose import load_cameras_json
    from patchmatch.matching import MatchConfig, decide_matches
    from patchmatch.scoring import PatchScorer
    from patchmatch.stages import guided, select_pairs
    from patchmatch.stages.match import patch_loader

    cameras, db = load_cameras_json(cameras_json), out / "database.db"
    scorer, config = PatchScorer.load(tta=tta), guided.GuidedConfig()
    ids = colmap.read_image_ids(db)
    feats = {n: storage.read_features(out / "features.h5", n) for n in ids}
    load = patch_loader(images, feats, 3200, False, scorer.magnification)
    counts, inliers, done = {m: [0, 0] for m in MARGINS}, [0, 0], 0
    for a, b in select_pairs.read(out / "pairs.json"):
        g = colmap.read_pair_geometry(db, ids[a], ids[b])
        if g is None or len(g.inliers) < config.min_inliers or done == num_pairs:
            continue
        try:
            F = ground_truth_fundamental(cameras[a], cameras[b])
        except ValueError:
            continue
        done += 1
        ok = correct_matches(F, feats[a].xy, feats[b].xy, g.inliers)
        inliers = [inliers[0] + int(ok.sum()), inliers[1] + len(ok)]
        scores = {}
        cand, _, _ = guided.guided_matches(feats[a], feats[b], g, lambda: (load(a), load(b)), _Keep(scorer, scores), config)
        for m in MARGINS:
            mm, _ = decide_matches(scores["pairs"], scores["scores"], len(feats[a]), len(feats[b]),
                                   MatchConfig(min_margin=m)) if "pairs" in scores else (np.zeros((0, 2), int), None)
            ok = correct_matches(F, feats[a].xy, feats[b].xy, mm)
            counts[m] = [counts[m][0] + int(ok.sum()), counts[m][1] + len(ok)]
    lines = [f"verified inliers of the {done} pairs: {inliers[0]}/{inliers[1]} correct"]
    lines += [f"margin {m}: {c}/{t} guided matches correct ({c / max(t, 1):.3f})" for m, (c, t) in counts.items()]
    return lines


class _Keep:
    """A scorer that keeps the last candidates and scores it computed."""

    def __init__(self, scorer, into: dict):
        self.scorer, self.into = scorer, into

    def score_pairs(self, p0, p1, pairs):
        self.into["pairs"], self.into["scores"] = pairs, self.scorer.score_pairs(p0, p1, pairs)
        return self.into["scores"]


def row(scene: str, variant: str, r: dict) -> str:
    g = r.get("guided") or {}
    guided = f"{g['pairs_guided']} / {g['candidates_scored']} / {g['matches_added']}" if g else "–"
    median = (r.get("pose") or {}).get("rotation_error_median_deg")
    median = "–" if median is None else f"{median:.4g}"
    return (f"| {scene} | {variant} | {r['correct']} | {r['verified']} | {guided} | {r['registered']}/{r['images_used']} "
            f"| {r['mean_track_length']:.3f} | {median} | {r['seconds_total']:.1f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--scenes", nargs="+", default=list(SCENES))
    ap.add_argument("--every", nargs="*", default=["lego=6"], help="SCENE=N: every N-th image of SCENE")
    ap.add_argument("--fixed-threshold", nargs="*", default=["temple-ring", "lego"])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--margins", type=int, metavar="PAIRS", help="instead: precision per guided decision margin "
                    "on the first PAIRS verified pairs of OUT/SCENE/no-guided (run first)")
    ap.add_argument("--tta", default="none", help="with --margins: the network's test-time augmentation (default none)")
    args = ap.parse_args(argv)
    if args.margins:
        for scene in args.scenes:
            scene_dir = args.data / "scenes" / scene
            print(scene, *margin_precision(args.out / scene / "no-guided", scene_dir / "images",
                                           scene_dir / "cameras.json", args.margins, args.tta), sep="\n")
        return 0
    every = {k: int(v) for k, v in (item.split("=") for item in args.every)}
    from pipelines.compare_scenes import machine

    rows = []
    for scene in args.scenes:
        scene_dir = args.data / "scenes" / scene
        if not scene_dir.is_dir():
            print(f"{scene_dir}: absent, skipped", file=sys.stderr)
            continue
        images = subset(scene_dir, args.out / scene, every.get(scene, 1))
        variants = ["no-guided", "guided"] + (["fixed-threshold"] if scene in args.fixed_threshold else [])
        for variant in variants:
            report = run_variant(images, args.out / scene / variant, scene_dir / "cameras.json", variant, args.threads)
            rows.append(row(scene + (f" (every {every[scene]}th)" if scene in every else ""), variant, report))
            print(rows[-1], file=sys.stderr, flush=True)
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    print("\n".join(rows))
    print(f"\n{machine()}; {args.threads} threads")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
