"""Training data from a scene without ground-truth cameras: reconstruct it with COLMAP's own SIFT
pipeline (pycolmap extraction, exhaustive matching, verification, incremental mapping), then build
the Brown-format patch set from that model (``patchmatch make-patches MODEL OUT --image-dir``).

Positives come from the reconstruction's cameras (not from any descriptor), so the set is as good
as the SIFT model: the script refuses a model whose cameras are degenerate (``make-patches``
checks the intrinsics). Used for the sacre-coeur training set of the shipped weights.

Usage::

    python pipelines/build_sift_scene_set.py sacre-coeur SETS/sacre-coeur-train \
        [--data ../shared/data] [--work DIR] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from patchmatch import colmap
from patchmatch.cli import main as cli_main
from patchmatch.images import list_images


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scene", help="scene name under DATA/scenes")
    ap.add_argument("out", type=Path, help="patch set folder to write")
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=root / "outputs" / "sift_scenes", help="database and model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--magnification", type=float, help="patch side / keypoint size (default: make-patches')")
    ap.add_argument("--detected-share", type=float, help="share of tracks kept as detected (default: make-patches')")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    images = args.data / "scenes" / args.scene / "images"
    if not images.is_dir():
        print(f"error: {images} not found (see shared/data/README.md)", file=sys.stderr)
        return 2
    work = args.work / args.scene
    model = work / "sparse" / "0"
    if not (model / "images.bin").is_file():
        work.mkdir(parents=True, exist_ok=True)
        db = colmap.create_database(work / "sift.db", overwrite=True)
        names = list_images(images)
        cfg = colmap.SiftBaselineConfig(num_threads=args.threads)
        colmap.sift_features_and_matches(db, images, names, cfg, colmap.VerificationConfig(num_threads=args.threads))
        rec = colmap.incremental_mapping(db, images, work / "sparse", colmap.MapperConfig(num_threads=args.threads))
        if rec is None:
            print(f"error: COLMAP's SIFT pipeline built no model of {images}", file=sys.stderr)
            return 1
        print(f"{args.scene}: SIFT model registers {rec.num_reg_images()} of {len(names)} images")
    mag = [] if args.magnification is None else ["--magnification", str(args.magnification)]
    mag += [] if args.detected_share is None else ["--detected-share", str(args.detected_share)]
    return cli_main(["make-patches", str(model), str(args.out), "--image-dir", str(images), *mag])


if __name__ == "__main__":
    sys.exit(main())
