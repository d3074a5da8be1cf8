"""Build the Brown-format ground-truth patch sets of the benchmark split (training, validation
and test sets; see :mod:`patchmatch.datasets.split`).

Usage::

    python pipelines/build_pairs.py [--data ../shared/data] [--out SETS] [--roles train val test detected] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from patchmatch.datasets.scenes import SceneError
from patchmatch.datasets.split import ROLES, build_split
from patchmatch.datasets.tracks import PairSetConfig, TrackConfig
from patchmatch.patches import MAGNIFICATION


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data", help="shared data folder")
    ap.add_argument("--out", type=Path, default=root / "outputs" / "pairs")
    ap.add_argument("--roles", nargs="+", default=list(ROLES), choices=ROLES,
                    help="detected = the test scenes with each view's own detection (the benchmark's as-detected protocol)")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detected-share", type=float, default=TrackConfig.detected_share,
                    help="training sets: share of tracks kept as detected (0: the shipped weights' sets)")
    ap.add_argument("--magnification", type=float, default=MAGNIFICATION, help="patch side / keypoint size")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    scenes = args.data / "scenes"
    if not scenes.is_dir():
        print(f"error: {scenes} not found (see shared/data/README.md)", file=sys.stderr)
        return 2
    try:
        sets = build_split(scenes, args.out, tuple(args.roles), PairSetConfig(tracks=TrackConfig(detected_share=args.detected_share), seed=args.seed), overwrite=args.overwrite,
                           magnification=args.magnification)
    except (SceneError, FileExistsError) as e:
        hint = " (only the training scenes at hand? --roles train val)" if {"test", "detected"} & set(args.roles) else ""
        print(f"error: {e}{hint}", file=sys.stderr)
        return 2
    print(f"| set | images | tracks | observations | mean track length | patches | random pairs | hard pairs | build s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, path in sets.items():
        s = json.loads((path / "summary.json").read_text())
        print(f"| {name} | {len(s['images'])} | {s['num_tracks']} | {s['num_observations']} | {s['mean_track_length']:.2f} | "
              f"{s['num_patches']} | {s['protocols']['random']['pairs']} | {s['protocols']['hard']['pairs']} | {s['seconds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
