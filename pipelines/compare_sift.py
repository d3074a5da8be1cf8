"""Compare patchmatch's SfM with COLMAP's own SIFT pipeline on one scene.

Usage::

    python pipelines/compare_sift.py SCENE_DIR OUT [--max-keypoints 4096] [--max-image-size N]
        [--weights CKPT] [--device cpu|cuda] [--single-camera] [--overwrite]

``SCENE_DIR`` holds ``images/`` and, optionally, ``cameras.json`` (ground truth,
see shared/data/README.md). Two reconstructions are made of the same images:

* ``OUT/colmap-sift``: pycolmap's SIFT extraction (same keypoint budget),
  exhaustive matching with the ratio test and cross-check, geometric
  verification, incremental mapping;
* ``OUT/patchmatch``: :func:`patchmatch.sfm.run_sfm` (OpenCV SIFT keypoints,
  candidates by descriptor kNN, decisions by the 2ch-2stream network), with
  the same verification and mapping.

Prints one table (registered images, 3D points, mean track length, mean
reprojection error, seconds, median relative-rotation error and AUC when
``cameras.json`` exists) and writes it to ``OUT/compare.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from pathlib import Path

from patchmatch import colmap
from patchmatch.evaluation.pose import evaluate_poses
from patchmatch.images import list_images
from patchmatch.sfm import SfmConfig, run_sfm

logger = logging.getLogger("compare_sift")


def run_colmap_sift(images: Path, out: Path, names: list[str], args: argparse.Namespace) -> dict:
    """COLMAP's SIFT pipeline on ``names``; returns model statistics and seconds."""
    if out.exists():
        if not args.overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to redo it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    start = time.perf_counter()
    database = colmap.create_database(out / "database.db")
    sift = colmap.SiftBaselineConfig(
        max_num_features=args.max_keypoints,
        max_image_size=args.max_image_size if args.max_image_size else -1,
    )
    summary = colmap.sift_features_and_matches(
        database, images, names, sift, single_camera=args.single_camera
    )
    t_match = time.perf_counter() - start
    reconstruction = colmap.incremental_mapping(database, images, out / "sparse", colmap.MapperConfig())
    seconds = time.perf_counter() - start
    stats = colmap.reconstruction_stats(reconstruction)
    stats.pop("registered_names")
    poses = colmap.reconstruction_poses(reconstruction) if reconstruction is not None else {}
    return {
        **stats,
        "verified_pairs": summary.verified_pairs,
        "seconds": round(seconds, 2),
        "seconds_features_matching": round(t_match, 2),
        "poses": poses,
    }


def _fmt(value, digits=2) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scene", type=Path, help="scene folder with images/ (and cameras.json)")
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--max-keypoints", type=int, default=4096, help="keypoints per image, both methods")
    parser.add_argument("--max-image-size", type=int, default=None, help="longest image side, both methods")
    parser.add_argument("--weights", type=Path, default=None, help="patchmatch checkpoint (default: shipped)")
    parser.add_argument("--device", default=None, help="torch device for the network (default: auto)")
    parser.add_argument("--single-camera", action="store_true", help="one shared camera, both methods")
    parser.add_argument("--overwrite", action="store_true", help="redo both reconstructions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    colmap.set_verbosity(False)

    images = args.scene / "images"
    names = list_images(images)
    if len(names) < 2:
        parser.error(f"{images}: fewer than 2 images")
    cameras = args.scene / "cameras.json"
    ground_truth = cameras if cameras.is_file() else None

    rows = {}
    logger.info("COLMAP SIFT on %d images of %s", len(names), args.scene)
    sift = run_colmap_sift(images, args.out / "colmap-sift", names, args)
    poses = sift.pop("poses")
    if ground_truth is not None:
        sift["pose"] = evaluate_poses(poses, ground_truth, names=[n for n in names if n in _gt_names(ground_truth)])
    rows["colmap-sift"] = sift

    logger.info("patchmatch on the same images")
    config = SfmConfig(
        max_keypoints=args.max_keypoints,
        max_image_size=args.max_image_size,
        device=args.device,
        single_camera=args.single_camera,
    )
    start = time.perf_counter()
    report = run_sfm(images, args.out / "patchmatch", config, weights=args.weights, overwrite=args.overwrite,
                     progress=True, ground_truth=ground_truth)  # fmt: skip
    rows["patchmatch"] = {
        k: report[k]
        for k in ("registered", "points", "observations", "mean_track_length", "mean_reprojection_error",
                  "verified_pairs", "seconds", "seconds_total", "weights")
    }  # fmt: skip
    rows["patchmatch"]["seconds"] = round(time.perf_counter() - start, 2)
    rows["patchmatch"]["seconds_per_stage"] = report["seconds"]
    if "pose" in report:
        rows["patchmatch"]["pose"] = report["pose"]

    header = ["method", "registered", "points", "track len", "reproj px", "time s", "rot med deg", "AUC@1", "AUC@2"]
    lines = [header]
    for method, row in rows.items():
        pose = row.get("pose", {})
        auc = pose.get("rotation_auc", {})
        lines.append([method, f"{row['registered']}/{len(names)}", row["points"], _fmt(row["mean_track_length"]),
                      _fmt(row["mean_reprojection_error"]), _fmt(float(row["seconds"]), 1),
                      _fmt(pose.get("rotation_error_median_deg", float("nan"))),
                      _fmt(auc.get("1", float("nan"))), _fmt(auc.get("2", float("nan")))])  # fmt: skip
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    print(f"\n{args.scene.name}: {len(names)} images, {args.max_keypoints} keypoints, "
          f"max image size {args.max_image_size or 'original'}")  # fmt: skip
    for line in lines:
        print("  ".join(str(v).rjust(w) for v, w in zip(line, widths)))
    for row in rows.values():
        row.get("pose", {}).pop("pair_errors", None)
    result = {"scene": str(args.scene), "images": len(names), "max_keypoints": args.max_keypoints,
              "max_image_size": args.max_image_size, "single_camera": args.single_camera, "methods": rows}  # fmt: skip
    (args.out / "compare.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written: {args.out / 'compare.json'}")
    return 0


def _gt_names(path: Path) -> set[str]:
    return set(json.loads(path.read_text())["images"])


if __name__ == "__main__":
    sys.exit(main())
