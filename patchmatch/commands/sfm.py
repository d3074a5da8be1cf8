"""``patchmatch sfm IMAGES OUT``: reconstruct a scene (features, network matches, COLMAP mapping)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import add_match_arguments, add_network_arguments, match_config_from_args, pairs_spec


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sfm",
        help="structure-from-motion of an image folder with the patch network",
        description=__doc__ + " Rerunning the same command resumes an interrupted run.",
    )
    p.add_argument("images", type=Path, help="image folder (searched recursively)")
    p.add_argument("out", type=Path, help="output folder: features.h5, matches.h5, database.db, sparse/0, report.json")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--max-keypoints", type=int, default=8192, help="SIFT keypoints per image (default: 8192, as COLMAP)")
    p.add_argument("--max-image-size", type=int, default=3200, help="downscale images whose longer side exceeds this (default 3200, COLMAP's; 0 = never)")
    p.add_argument("--weights", type=Path, default=None,
                   help="checkpoint (default: shipped 2ch2stream weights); patches are cut at the magnification it was trained at")
    p.add_argument("--pairs", default="exhaustive", help="exhaustive | sequential:N | retrieval:N (N most similar images by VLAD) | file:PATH or PATH (a pairs file, one 'name0 name1' per line; default: exhaustive)")
    p.add_argument("--single-camera", action="store_true", help="all images share one camera (same size and zoom)")
    p.add_argument("--batch-size", type=int, default=None, help="patch pairs per network forward pass (default: 128 on CPU, 8192 on GPU)")
    p.add_argument("--ground-truth", type=Path, default=None, help="cameras.json: add pose errors to the report")
    p.add_argument("--overwrite", action="store_true", help="replace another run's outputs in OUT")
    add_network_arguments(p)
    add_match_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..colmap import set_verbosity
    from ..sfm import SfmConfig, run_sfm

    set_verbosity(bool(getattr(args, "verbose", False)))  # COLMAP's own log lines only with -v
    if args.max_image_size and args.max_image_size < 32:
        raise ValueError(f"--max-image-size must be >= 32 (or 0 = never), got {args.max_image_size}")

    config = SfmConfig(
        max_keypoints=args.max_keypoints,
        max_image_size=args.max_image_size or None,
        device=args.device,
        batch_size=args.batch_size,
        precision=args.precision,
        tta=args.tta,
        pairs=pairs_spec(args.pairs),
        single_camera=args.single_camera,
        match=match_config_from_args(args),
    )
    report = run_sfm(args.images, args.out, config, weights=args.weights, overwrite=args.overwrite,
                     progress=not args.quiet, ground_truth=args.ground_truth)  # fmt: skip
    keys = ["images", "images_used", "registered", "points", "mean_track_length", "mean_reprojection_error",
            "pairs", "verified_pairs", "seconds_total"]  # fmt: skip
    summary = {k: report[k] for k in keys}
    if "pose" in report:
        summary["rotation_error_median_deg"] = report["pose"]["rotation_error_median_deg"]
        summary["rotation_auc"] = report["pose"]["rotation_auc"]
    kept = [a for a in report.get("mapping_attempts", []) if a["kept"]]
    if len(report.get("mapping_attempts", [])) > 1 and kept:
        summary["mapping"] = (f"{kept[0]['name']} (after {len(report['mapping_attempts'])} mapper runs); "
                              f"intrinsics {kept[0]['intrinsics']}" + (f" ({kept[0]['intrinsics_note']})" if kept[0]["intrinsics_note"] else ""))
    if report["skipped"]:
        summary["skipped"] = [s["name"] for s in report["skipped"]]
    from ..sfm import _finite

    print(json.dumps(_finite(summary), indent=2, allow_nan=False))  # strict JSON: undefined values (no model) are null
    model = f"model: {args.out / 'sparse' / '0'}" if report["registered"] else "no model"
    print(f"{model}  report: {args.out / 'report.json'}")
    return 0 if report["registered"] else 1
