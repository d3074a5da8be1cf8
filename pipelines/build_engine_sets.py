"""The data engine: every training source of ``../shared/data`` as Brown-format sets, and the
weights training draws them with (``patchmatch train --data ... --data-weights ...``).

Sources (never a test scene — entry-P10, temple-ring, dtu-scan65 — nor a twin of a training scene):

- ``scenes``: scenes with cameras — the split's castle-P30 and Herz-Jesus-P25 training sets
  (pipelines/build_pairs.py) and fox, lego, mobilebrick, vesta (at most CAMERA_SCENES[scene]
  images each, evenly spaced by name);
- ``collections``: photo collections without cameras, reconstructed and labelled by the model's
  cameras (``make-patches --reconstruct``): lund, sacre-coeur, caliterra-aerial, cyprus-arches, monstree;
- ``worlds``: ``--worlds`` rendered worlds textured with the training scenes' photographs
  (``make-patches --worlds``);
- ``warps``: homography warps of the training photographs (pipelines/build_warped_set.py).

A set already built is kept. Training sets get the pair builder's default share of positives
kept as detected (``TrackConfig.detected_share``). Writes ``SETS/engine.json`` (sets, weights,
sources) and prints the ``--data`` / ``--data-weights`` arguments.

Usage::

    python pipelines/build_engine_sets.py [--out SETS] [--sources scenes collections worlds warps]
        [--worlds 40] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from patchmatch.datasets.patchset import is_patch_set, write_patch_set
from patchmatch.datasets.photo_collections import write_collection_set
from patchmatch.datasets.scenes import load_scene
from patchmatch.datasets.split import build_split, split_sets
from patchmatch.datasets.worlds import write_world_set

#: scenes with cameras beyond the split, and how many of their images are used (evenly spaced: build time)
CAMERA_SCENES = {"fox": 25, "lego": 25, "mobilebrick": 5, "vesta": 4}
#: photo collections without cameras (reconstructed)
COLLECTIONS = ("lund", "sacre-coeur", "caliterra-aerial", "cyprus-arches", "monstree")
#: share of a batch per source (split evenly among its sets); a prior, not a measured optimum
SOURCE_WEIGHTS = {"scenes": 0.4, "collections": 0.25, "worlds": 0.25, "warps": 0.1}
#: texture photographs per training scene for the worlds (evenly spaced)
PHOTOS_PER_SCENE = 8


def _evenly(names: list[str], count: int) -> list[str]:
    """At most ``count`` of ``names``, evenly spaced."""
    if len(names) <= count:
        return names
    step = len(names) / count
    return [names[int(i * step)] for i in range(count)]


def scene_sets(scenes: Path, out: Path) -> list[Path]:
    """The split's training sets and the CAMERA_SCENES sets (built where missing)."""
    sets = [p for n, p in build_split(scenes, out, ("train",)).items()]
    for scene, count in CAMERA_SCENES.items():
        path = out / f"{scene}-train"
        if not is_patch_set(path):
            write_patch_set(scenes / scene, path, _evenly(load_scene(scenes / scene).names, count), overwrite=True)
        sets.append(path)
    return sets


def collection_sets(scenes: Path, out: Path) -> list[Path]:
    """The COLLECTIONS sets (reconstructed where missing; a collection whose model fails is left out, logged)."""
    sets = []
    for scene in COLLECTIONS:
        path = out / f"{scene}-sfm-train"
        if not is_patch_set(path):
            try:
                write_collection_set(scenes / scene / "images", path, overwrite=True)
            except (ValueError, OSError) as e:
                logging.warning("%s left out: %s", scene, e)
                continue
        sets.append(path)
    return sets


def world_set(scenes: Path, out: Path, count: int) -> list[Path]:
    """One set of ``count`` rendered worlds textured with the training scenes' photographs."""
    photos = [scenes / s.scene / "images" / n for s in split_sets(scenes, ("train",)) for n in _evenly(list(s.images), PHOTOS_PER_SCENE)]
    for scene in list(CAMERA_SCENES) + list(COLLECTIONS):
        photos += [scenes / scene / "images" / n for n in _evenly(load_scene_names(scenes / scene), PHOTOS_PER_SCENE)]
    path = out / f"worlds-{count}-train"
    if not is_patch_set(path):
        write_world_set(photos, path, count, overwrite=True)
    return [path]


def load_scene_names(folder: Path) -> list[str]:
    """The image names of a scene folder (with or without cameras)."""
    from patchmatch.images import list_images

    return list_images(folder / "images")


def warp_sets(data: Path, out: Path) -> list[Path]:
    """The warped set of pipelines/build_warped_set.py (built where missing)."""
    path = out / "warped-1x1024-train"
    if not is_patch_set(path):
        sys.path.insert(0, str(Path(__file__).parent))
        from build_warped_set import main as build_warped

        build_warped([str(path), "--data", str(data)])
    return [path]


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data", help="shared data folder")
    ap.add_argument("--out", type=Path, default=root / "outputs" / "pairs")
    ap.add_argument("--sources", nargs="+", default=list(SOURCE_WEIGHTS), choices=list(SOURCE_WEIGHTS))
    ap.add_argument("--worlds", type=int, default=40, help="rendered worlds (8 views each)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    scenes = args.data / "scenes"
    if not scenes.is_dir():
        print(f"error: {scenes} not found (see shared/data/README.md)", file=sys.stderr)
        return 2
    build = {"scenes": lambda: scene_sets(scenes, args.out), "collections": lambda: collection_sets(scenes, args.out),
             "worlds": lambda: world_set(scenes, args.out, args.worlds), "warps": lambda: warp_sets(args.data, args.out)}  # fmt: skip
    sets, weights, sources = [], [], {}
    for source in args.sources:
        built = build[source]()
        if not built:
            continue
        sources[source] = [str(p) for p in built]
        sets += built
        weights += [SOURCE_WEIGHTS[source] / len(built)] * len(built)
    (args.out / "engine.json").write_text(json.dumps({"sets": [str(p) for p in sets], "weights": weights, "sources": sources}, indent=1))
    print("--data " + " ".join(map(str, sets)))
    print("--data-weights " + " ".join(f"{w:.4g}" for w in weights))
    return 0


if __name__ == "__main__":
    sys.exit(main())
