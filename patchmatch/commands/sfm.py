"""``patchmatch sfm IMAGES OUT``: reconstruct a scene (features, network matches, COLMAP mapping)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import (add_camera_arguments, add_executor_argument, add_scorer_arguments, camera_intrinsics,
                      max_image_size, pairs_spec, positive_int, set_threads)  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sfm", help="structure-from-motion of an image folder with the patch network",
                       description=__doc__ + " Rerunning the same command resumes an interrupted run.")  # fmt: skip
    p.add_argument("images", type=Path, help="image folder (searched recursively)")
    p.add_argument("out", type=Path, help="output folder: features.h5, pairs.json, matches.h5, database.db, sparse/N, report.json, run.json, viz/")
    p.add_argument("--max-keypoints", type=positive_int, default=8192, metavar="N", help="SIFT keypoints per image (default 8192, COLMAP's)")
    p.add_argument("--max-image-size", type=int, default=3200, metavar="PX",
                   help="longest image side used (default 3200; 0 = original)")
    p.add_argument("--pairs", default="auto", metavar="SPEC",
                   help="auto|exhaustive|sequential:N|retrieval:N|PATH of pairs (auto: retrieval above 200 images)")
    add_scorer_arguments(p)
    add_executor_argument(p)
    add_camera_arguments(p)
    p.add_argument("--mapper", choices=("auto", "incremental", "global"), default="auto", metavar="M",
                   help="auto|incremental|global (auto: GLOMAP above 200 images)")
    p.add_argument("--ground-truth", type=Path, default=None, metavar="JSON", help="cameras.json: add pose errors to the report")
    p.add_argument("--overwrite", action="store_true", help="replace another run's outputs in OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..colmap import MapperConfig, set_verbosity
    from ..report import finite
    from ..sfm import SfmConfig, run_sfm

    set_verbosity(bool(getattr(args, "verbose", False)))  # COLMAP's own log lines only with -v
    set_threads(args.threads)
    config = SfmConfig(max_keypoints=args.max_keypoints, max_image_size=max_image_size(args.max_image_size),
                       device=args.device, precision=args.precision, tta=args.tta, pairs=pairs_spec(args.pairs),
                       single_camera=args.single_camera, camera=camera_intrinsics(args), executor=args.executor, threads=args.threads,
                       mapper=MapperConfig(method=args.mapper))  # fmt: skip
    report = run_sfm(args.images, args.out, config, weights=args.weights, overwrite=args.overwrite,
                     progress=not args.quiet, ground_truth=args.ground_truth)  # fmt: skip
    print(json.dumps(finite(summary(report)), indent=2, allow_nan=False))  # strict JSON: undefined values are null
    count = len(report.get("models", []))
    model = f"model: {args.out / 'sparse' / '0'}" if report["registered"] else "no model"
    if count > 1:
        model = f"{count} models: {args.out / 'sparse'}/0 … {count - 1} (largest first)"
    print(f"{model}  report: {args.out / 'report.json'}")
    return 0 if report["registered"] else 1


def summary(report: dict) -> dict:
    """The lines of ``report.json`` worth printing: counts, time, pose errors, the mapping kept."""
    keys = ["images", "images_used", "registered", "points", "mean_track_length", "mean_reprojection_error",
            "pairs", "verified_pairs", "seconds_total"]  # fmt: skip
    out = {k: report[k] for k in keys}
    if "pose" in report:
        out["rotation_error_median_deg"] = report["pose"]["rotation_error_median_deg"]
        out["rotation_auc"] = report["pose"]["rotation_auc"]
        out["wrongly_registered"] = report["pose"].get("wrongly_registered", [])  # > 5° off to most others
    attempts = report.get("mapping_attempts", [])
    kept = [a for a in attempts if a["kept"]]
    if len(attempts) > len(kept) and kept:  # a fallback ran: say which run was kept (per part of the scene)
        out["mapping"] = "; ".join(f"{a['name']} ({a['images']} images); intrinsics {a['intrinsics']}"
                                   + (f" ({a['intrinsics_note']})" if a["intrinsics_note"] else "") for a in kept)
        out["mapping"] += f" (after {len(attempts)} mapper runs)"
    out["pairs_strategy"], out["mapper"] = report.get("pairs_strategy"), report.get("mapper")  # what auto chose
    if len(report.get("models", [])) > 1:
        out["registered_in_models"] = report["registered_in_models"]
        out["models"] = {m["path"]: m["registered"] for m in report["models"]}
    if report.get("rejected"):
        out["rejected"] = {r["name"]: r["reason"] for r in report["rejected"]}
    if report["skipped"]:
        out["skipped"] = [s["name"] for s in report["skipped"]]
    return out
