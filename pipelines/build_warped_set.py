"""Training set from homography warps of real photographs (``patchmatch.datasets.warps``).

Source images: lund and sacre-coeur (no ground truth, never tested on) and the training images of
castle-P30 and Herz-Jesus-P25 (``patchmatch.datasets.split``; their validation images and the
test scenes are never used). Each image is warped ``--per-image`` times; the pairs are written
under ``OUT.pairs`` and the Brown-format set under ``OUT`` (as ``patchmatch make-patches``).

Usage::

    python pipelines/build_warped_set.py SETS/warped-1x1024-train [--data ../shared/data] [--per-image 1]
        [--max-keypoints 1024] [--seed 0] [--overwrite]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from patchmatch.datasets.patchset import check_output
from patchmatch.datasets.homography import HomographyPairConfig
from patchmatch.datasets.split import split_sets
from patchmatch.datasets.warps import WarpConfig, write_warped_set
from patchmatch.images import list_images
from patchmatch.patches import MAGNIFICATION

#: scenes without ground truth whose images are all used
EXTRA_SCENES = ("lund", "sacre-coeur")


def source_images(data: Path) -> list[Path]:
    """Training-split images of the ground-truth scenes, then every image of EXTRA_SCENES."""
    scenes = data / "scenes"
    out = [scenes / s.scene / "images" / n for s in split_sets(scenes, ("train",)) for n in s.images]
    for scene in EXTRA_SCENES:
        out += [scenes / scene / "images" / n for n in list_images(scenes / scene / "images")]
    return out


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="patch set folder to write")
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    ap.add_argument("--per-image", type=int, default=1, help="warps per image (the shipped weights' set: 1)")
    ap.add_argument("--max-keypoints", type=int, default=1024, help="SIFT keypoints per image of a pair (shipped: 1024)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--magnification", type=float, default=MAGNIFICATION, help="patch side / keypoint size")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    if args.per_image < 1 or args.max_keypoints < 1:
        ap.error("--per-image and --max-keypoints must be >= 1")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    config = WarpConfig(per_image=args.per_image, seed=args.seed)
    hconf = HomographyPairConfig(max_keypoints=args.max_keypoints, seed=args.seed, magnification=args.magnification)
    images = source_images(args.data)
    check_output(args.out, args.overwrite, [args.data])  # before any work
    summary = write_warped_set(images, args.out, config, hconf, overwrite=args.overwrite)
    print({k: summary[k] for k in summary if isinstance(summary[k], (int, float, str))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
