"""``patchmatch match-pair IMAGE0 IMAGE1``: match two images; prints a summary (keypoints, matches,
what the network decided) and writes the matches with ``--out``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .options import add_scorer_arguments, max_image_size, positive_int, set_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("match-pair", help="match two images with the patch network", description=__doc__)
    p.add_argument("image0", type=Path)
    p.add_argument("image1", type=Path)
    p.add_argument("--out", type=Path, metavar="NPZ",
                   help="write matches (.npz: keypoints0, keypoints1, matches, scores; NaN: kept without the network)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--max-keypoints", type=positive_int, default=2048, metavar="N", help="SIFT keypoints per image (default 2048)")
    p.add_argument("--max-image-size", type=int, default=3200, metavar="PX",
                   help="downscale images whose longer side exceeds this for detection and patches; keypoints are"
                        " written in original pixels (default 3200, COLMAP's; 0 = never)")
    add_scorer_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..images import read_gray
    from ..matching import MatchConfig, match_images
    from ..scoring import PatchScorer

    if args.out is not None and args.out.suffix != ".npz":
        raise ValueError(f"--out {args.out}: the matches are written as .npz; name the file *.npz")
    if args.out is not None and args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")
    size = max_image_size(args.max_image_size)
    set_threads(args.threads)
    config = MatchConfig()
    scorer = PatchScorer.load(args.weights, device=args.device, precision=args.precision, tta=args.tta)
    im0, scale0 = read_gray(args.image0, size)
    im1, scale1 = read_gray(args.image1, size)
    res = match_images(im0, im1, scorer, config, args.max_keypoints)
    # keypoints in pixels of the original images (pixel centres at integers)
    kp0 = (res.keypoints0 + 0.5) / np.float32(scale0) - 0.5
    kp1 = (res.keypoints1 + 0.5) / np.float32(scale1) - 0.5
    print(json.dumps({"keypoints0": len(kp0), "keypoints1": len(kp1), "overlap": res.overlap,
                      "candidates": res.num_candidates, "matches": len(res.matches)}))
    if res.overlap < config.min_overlap:
        print(f"descriptor overlap {res.overlap} < {config.min_overlap} (MatchConfig.min_overlap): the network was not run")
    elif res.num_candidates == 0:
        print(f"a strong pair: SIFT's ratio test accepted {int(np.isnan(res.scores).sum())} matches (at least "
              f"{config.strong_pair_accepted}, MatchConfig.strong_pair_accepted), kept without the network (score NaN)")
    if args.out is not None:
        np.savez(args.out, keypoints0=kp0, keypoints1=kp1, matches=res.matches, scores=res.scores)
    return 0
