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
    p.add_argument("--weights", type=Path, help="checkpoint (default: shipped weights)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--max-keypoints", type=int, default=2048)
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
    scorer = PatchScorer.load(args.weights, device=args.device)
    im0, _ = read_gray(args.image0)
    im1, _ = read_gray(args.image1)
    res = match_images(im0, im1, scorer, match_config_from_args(args), args.max_keypoints)
    print(json.dumps({"keypoints0": len(res.keypoints0), "keypoints1": len(res.keypoints1),
                      "candidates": res.num_candidates, "matches": len(res.matches)}))
    if args.out is not None:
        np.savez(args.out, keypoints0=res.keypoints0, keypoints1=res.keypoints1, matches=res.matches, scores=res.scores)
    return 0
