"""``patchmatch compare IMAGES OUT``: pycolmap's own SIFT pipeline (extraction, exhaustive matching,
mapping), patchmatch, and patchmatch without the network (SIFT's ratio-test matches through the same
stages and mapper) on the same images, one table: registered images, points, track length,
reprojection error, time per stage and, with a cameras.json (IMAGES/cameras.json,
IMAGES/../cameras.json or --ground-truth), relative rotation errors of all image pairs (median,
AUC at 0.5°, 1°, 2°; unregistered images count as failures). Rerunning resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import (add_camera_arguments, add_scorer_arguments, camera_intrinsics, max_image_size, pairs_spec,
                      positive_int, set_threads)  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="pycolmap's SIFT pipeline vs. patchmatch (with and without the network), one table",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("images", type=Path, help="image folder (e.g. SCENE/images)")
    p.add_argument("out", type=Path, help="output folder: colmap-sift/, patchmatch/, patchmatch-without-network/, compare.json")
    p.add_argument("--max-keypoints", type=positive_int, default=8192, metavar="N", help="keypoints per image, all methods (default 8192, COLMAP's)")
    p.add_argument("--max-image-size", type=int, default=3200, metavar="PX", help="longest image side, all methods (default 3200; 0 = original)")
    p.add_argument("--pairs", default="exhaustive", metavar="SPEC", help="patchmatch's image pairs (SIFT: always exhaustive)")
    add_scorer_arguments(p)
    add_camera_arguments(p, ", all methods")
    p.add_argument("--ground-truth", type=Path, default=None, metavar="JSON", help="cameras.json (default: looked for next to IMAGES)")
    p.add_argument("--overwrite", action="store_true", help="redo all runs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..colmap import set_verbosity
    from ..compare import compare, format_table
    from ..sfm import SfmConfig

    set_verbosity(bool(getattr(args, "verbose", False)))
    set_threads(args.threads)
    if args.ground_truth is not None and not args.ground_truth.is_file():
        raise FileNotFoundError(f"{args.ground_truth}: ground-truth cameras.json not found")
    config = SfmConfig(max_keypoints=args.max_keypoints, max_image_size=max_image_size(args.max_image_size),
                       device=args.device, precision=args.precision, tta=args.tta, pairs=pairs_spec(args.pairs),
                       single_camera=args.single_camera, camera=camera_intrinsics(args), threads=args.threads)  # fmt: skip
    result = compare(args.images, args.out, config, weights=args.weights, ground_truth=args.ground_truth,
                     overwrite=args.overwrite, progress=not args.quiet)  # fmt: skip
    print(f"\n{args.images}: {result['images']} images, {args.max_keypoints} keypoints, "
          f"max image size {args.max_image_size or 'original'}, ground truth {result['ground_truth'] or 'none'}"
          + (f", camera {config.camera} ({'refined' if config.camera.refine else 'fixed'})" if config.camera else "")
          + "\n")  # fmt: skip
    print(format_table(result))
    print(f"\nwritten: {args.out / 'compare.json'}")
    return 0
