"""Build the ground-truth patch pair sets used to train and evaluate the shipped weights.

Training scenes: castle-P30 and Herz-Jesus-P25 only. Their last images are held out as an
image-disjoint validation set (tracks built among the held-out images alone). entry-P10, a
test scene never trained on, gives the evaluation pairs of the model card.
Never add castle-P19, Herz-Jesus-P8 (twins of the training scenes), temple-ring or entry-P10
to the training sets.

Usage::

    python pipelines/build_pairs.py [--data ../shared/data] [--out outputs/pairs] [--overwrite]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import h5py

from patchmatch.datasets.scenes import load_scene
from patchmatch.datasets.tracks import PairSetConfig, write_pair_set

#: scene → number of trailing images held out for validation (0: the whole scene is one set).
TRAIN_SCENES = {"castle-P30": 6, "Herz-Jesus-P25": 5}
TEST_SCENES = ["entry-P10"]
FORBIDDEN_FOR_TRAINING = {"entry-P10", "temple-ring", "castle-P19", "Herz-Jesus-P8"}


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data", help="shared data folder")
    ap.add_argument("--out", type=Path, default=root / "outputs" / "pairs")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    assert not FORBIDDEN_FOR_TRAINING & set(TRAIN_SCENES), "a test scene is listed for training"
    scenes = args.data / "scenes"
    if not scenes.is_dir():
        print(f"error: {scenes} not found (see shared/data/README.md)", file=sys.stderr)
        return 2
    config = PairSetConfig(seed=args.seed)
    jobs: list[tuple[str, str, list[str]]] = []
    for name, n_val in TRAIN_SCENES.items():
        names = load_scene(scenes / name).names
        jobs.append((name, f"{name}-train.h5", names[: len(names) - n_val]))
        jobs.append((name, f"{name}-val.h5", names[len(names) - n_val :]))
    for name in TEST_SCENES:
        jobs.append((name, f"{name}-test.h5", load_scene(scenes / name).names))
    for scene, fname, names in jobs:
        t0 = time.time()
        out = write_pair_set(scenes / scene, args.out / fname, names, config, overwrite=args.overwrite)
        with h5py.File(out, "r") as f:
            print(
                f"{fname}: {len(names)} images ({names[0]}..{names[-1]}), {f.attrs['num_tracks']} tracks, "
                f"{f.attrs['num_observations']} observations, mean length {f.attrs['mean_track_length']:.2f}, "
                f"{len(f['pairs/random'])} random pairs, {len(f['pairs/hard'])} hard pairs "
                f"[{time.time() - t0:.0f} s]",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
