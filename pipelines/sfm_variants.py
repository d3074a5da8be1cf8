"""Pose accuracy of `patchmatch sfm` setting variants on a ground-truth scene, one line of JSON each.

How the mapper's 2 px reprojection filter and the other settings in the README's "How the
defaults were chosen" were compared. One thread per run, so that two runs can share the 2 cores.

Usage::

    python pipelines/sfm_variants.py SCENE VARIANT [VARIANT ...] [--data ../shared/data] [--out outputs/sfm_variants]

Variants: default, map4px (COLMAP's 4 px filter), map3px, map1.5px, no_network (SIFT's ratio-test matches only),
ver2px (RANSAC at 2 px), score1 (network score >= 1), map4_ver2, single_camera, unselected_descriptor (pairs
without a network pass get their descriptor matches instead of none), kp4096_r95 (the defaults before 8192
keypoints: 4096 keypoints, candidates at descriptor ratio 0.95), kp8192 (8192 keypoints, ratio 0.95), kp8192_r90,
kp8192_r85 (= today's default). Every other variant changes one setting of today's defaults; the README's figures for
map4px, ver2px, score1, map1.5px and unselected_descriptor were measured when the defaults were kp4096_r95.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import torch

from patchmatch import colmap
from patchmatch.matching import MatchConfig
from patchmatch.sfm import SfmConfig, run_sfm


def variants() -> dict[str, SfmConfig]:
    ver = colmap.VerificationConfig(num_threads=1)
    mapper = colmap.MapperConfig(num_threads=1)
    base = SfmConfig(verification=ver, mapper=mapper)
    map4 = dataclasses.replace(mapper, max_reproj_error=4.0)
    ver2 = dataclasses.replace(ver, max_error=2.0)
    return {
        "default": base,
        "map4px": dataclasses.replace(base, mapper=map4),
        "no_network": dataclasses.replace(base, match=MatchConfig(min_score=1e9)),
        "ver2px": dataclasses.replace(base, verification=ver2),
        "score1": dataclasses.replace(base, match=MatchConfig(min_score=1.0)),
        "map4_ver2": dataclasses.replace(base, mapper=map4, verification=ver2),
        "single_camera": dataclasses.replace(base, single_camera=True),
        "map1.5px": dataclasses.replace(base, mapper=dataclasses.replace(mapper, max_reproj_error=1.5)),
        "map3px": dataclasses.replace(base, mapper=dataclasses.replace(mapper, max_reproj_error=3.0)),
        "unselected_descriptor": dataclasses.replace(base, match=MatchConfig(unselected="descriptor")),
        "kp4096_r95": dataclasses.replace(base, max_keypoints=4096, match=MatchConfig(max_ratio=0.95)),
        "kp8192": dataclasses.replace(base, max_keypoints=8192, match=MatchConfig(max_ratio=0.95)),
        "kp8192_r90": dataclasses.replace(base, max_keypoints=8192, match=MatchConfig(max_ratio=0.9)),
        "kp8192_r85": dataclasses.replace(base, max_keypoints=8192, match=MatchConfig(max_ratio=0.85)),
        "accept_none": dataclasses.replace(base, match=MatchConfig(accept_ratio=None)),
        "strong_none": dataclasses.replace(base, match=MatchConfig(strong_pair_accepted=None)),
        "weak300": dataclasses.replace(base, match=MatchConfig(strong_pair_accepted=300)),
        "weak500": dataclasses.replace(base, match=MatchConfig(strong_pair_accepted=500)),
        "weak1000": dataclasses.replace(base, match=MatchConfig(strong_pair_accepted=1000)),
        "all_pairs": dataclasses.replace(base, match=MatchConfig(strong_overlap=0)),
    }


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scene")
    ap.add_argument("variant", nargs="+", choices=sorted(variants()))
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=root / "outputs" / "sfm_variants")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    colmap.set_verbosity(False)
    images = args.data / "scenes" / args.scene / "images"
    if not images.is_dir():
        print(f"error: {images} not found (see shared/data/README.md)", file=sys.stderr)
        return 2
    for name in args.variant:
        out = args.out / f"{args.scene}_{name}"
        shutil.rmtree(out, ignore_errors=True)
        report = run_sfm(images, out, variants()[name], ground_truth=images.parent / "cameras.json")
        pose = report.get("pose", {})
        print(json.dumps({"scene": args.scene, "variant": name, "registered": report.get("registered"),
                          "points": report.get("points"), "mean_track_length": report.get("mean_track_length"),
                          "mean_reprojection_error": report.get("mean_reprojection_error"),
                          "rotation_error_median_deg": pose.get("rotation_error_median_deg"),
                          "seconds": report.get("seconds_total")}), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
