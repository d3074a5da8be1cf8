"""``patchmatch match-pair IMAGE0 IMAGE1``: match two images and print/save the matches."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .options import add_match_arguments, match_config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("match-pair", help="match two images with the patch network", description=__doc__)
    p.add_argument("image0", type=Path)
    p.add_argument("image1", type=Path)
    p.add_argument("--out", type=Path, help="write matches (.npz: keypoints0, keypoints1, matches, scores)")
    p.add_argument("--weights", type=Path, help="checkpoint (default: shipped weights); patches are cut at its magnification")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--max-keypoints", type=int, default=2048)
    p.add_argument("--max-image-size", type=int, default=3200,
                   help="downscale images whose longer side exceeds this for detection and patches; keypoints are"
                        " written in original pixels (default 3200, COLMAP's; 0 = never)")
    add_match_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..images import read_gray
    from ..matching import match_images
    from ..scoring import PatchScorer

    if args.out is not None and args.out.suffix != ".npz":
        raise ValueError(f"--out {args.out}: the matches are written as .npz; name the file *.npz")
    if args.out is not None and args.out.exists():
        raise FileExistsError(f"{args.out} exists; remove it first.")
    if args.max_image_size and args.max_image_size < 32:
        raise ValueError(f"--max-image-size must be >= 32 (or 0 = never), got {args.max_image_size}")
    config = match_config_from_args(args)
    scorer = PatchScorer.load(args.weights, device=args.device)
    im0, scale0 = read_gray(args.image0, args.max_image_size or None)
    im1, scale1 = read_gray(args.image1, args.max_image_size or None)
    res = match_images(im0, im1, scorer, config, args.max_keypoints)
    # keypoints in pixels of the original images (pixel centres at integers)
    kp0 = (res.keypoints0 + 0.5) / np.float32(scale0) - 0.5
    kp1 = (res.keypoints1 + 0.5) / np.float32(scale1) - 0.5
    print(json.dumps({"keypoints0": len(kp0), "keypoints1": len(kp1), "overlap": res.overlap,
                      "candidates": res.num_candidates, "matches": len(res.matches)}))
    if res.overlap < config.min_overlap:
        print(f"descriptor overlap {res.overlap} < --min-overlap {config.min_overlap}: the network was not run"
              + ("" if config.unselected != "descriptor" else " (SIFT's own matches kept: --unselected descriptor)"
                 if config.accept_ratio is not None else " (--unselected descriptor keeps nothing: --accept-ratio is 0)"))
    if args.out is not None:
        np.savez(args.out, keypoints0=kp0, keypoints1=kp1, matches=res.matches, scores=res.scores)
    return 0
