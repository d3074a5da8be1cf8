"""``patchmatch make-patches SCENE OUT.h5``: ground-truth patch pairs of a scene with cameras.json.

Keypoints are tied into tracks by geometry alone (see :mod:`patchmatch.datasets.tracks`); the
h5 file holds the oriented and upright patches and balanced random / hard pairs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-patches", help="build a ground-truth patch pair set from a scene with cameras.json", description=__doc__
    )
    p.add_argument("scene", type=Path, help="scene folder holding images/ and cameras.json")
    p.add_argument("out", type=Path, help="h5 file to write")
    p.add_argument("--images", nargs="+", metavar="NAME", help="use only these images (names in cameras.json)")
    p.add_argument("--exclude", nargs="+", metavar="NAME", default=[], help="leave these images out")
    p.add_argument("--max-keypoints", type=int, default=4096, help="SIFT keypoints per image")
    p.add_argument("--epipolar-px", type=float, default=1.0, help="max distance to the epipolar line")
    p.add_argument("--reprojection-px", type=float, default=1.0, help="max reprojection error in every view")
    p.add_argument("--size-ratio", type=float, default=1.4, help="max ratio of physical keypoint sizes")
    p.add_argument("--min-track-length", type=int, default=3)
    p.add_argument("--positives-per-track", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import h5py

    from ..datasets.scenes import load_scene
    from ..datasets.tracks import PairSetConfig, TrackConfig, write_pair_set

    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it.")
    scene = load_scene(args.scene)
    names = list(args.images) if args.images else scene.names
    unknown = [n for n in list(names) + list(args.exclude) if n not in scene.cameras]
    if unknown:
        raise ValueError(f"{args.scene / 'cameras.json'} has no image(s) {unknown}")
    names = [n for n in names if n not in set(args.exclude)]
    config = PairSetConfig(
        tracks=TrackConfig(
            max_keypoints=args.max_keypoints,
            epipolar_px=args.epipolar_px,
            reprojection_px=args.reprojection_px,
            size_ratio=args.size_ratio,
            min_track_length=args.min_track_length,
        ),
        max_positives_per_track=args.positives_per_track,
        seed=args.seed,
    )
    out = write_pair_set(args.scene, args.out, names, config, overwrite=True, progress=not args.quiet)
    with h5py.File(out, "r") as f:
        print(
            f"{out}: scene {f.attrs['scene']}, {len(names)} images, {f.attrs['num_tracks']} tracks, "
            f"{f.attrs['num_observations']} observations (mean track length {f.attrs['mean_track_length']:.2f}), "
            f"{len(f['patches'])} patches, {len(f['pairs/random'])} random pairs, {len(f['pairs/hard'])} hard pairs"
        )
    return 0
