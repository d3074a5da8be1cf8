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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path


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
    args = ap.parse_args(argv)
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
