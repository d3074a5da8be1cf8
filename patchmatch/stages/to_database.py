"""Stage 4: features and matches → a COLMAP ``database.db`` (images, cameras, keypoints, matches).

Rebuilt from the h5 files on every run: it is cheap, and verification rewrites its two-view
geometries anyway.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .. import colmap, storage
from . import select_pairs

logger = logging.getLogger(__name__)

#: Images whose keypoints go into the database in one transaction, and pairs whose matches do:
#: memory stays bounded (64 images of 8192 keypoints are 4 MiB) and a transaction is still large.
IMAGES_PER_WRITE = 64
PAIRS_PER_WRITE = 1024


def run(
    image_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    pairs_path: str | os.PathLike,
    matches_path: str | os.PathLike,
    database_path: str | os.PathLike,
    names: list[str],
    single_camera: bool = False,
    report: dict | None = None,
    intrinsics: colmap.CameraIntrinsics | None = None,
) -> Path:
    """Writes a new database holding the images of the pairs and their matches.

    Args:
        image_dir: the image folder (EXIF focal lengths are read from it).
        features_path: keypoints (pixels of the original images, OpenCV convention; the +0.5
            shift to COLMAP's is :mod:`patchmatch.colmap`'s).
        pairs_path: the pairs (:func:`select_pairs.run`).
        matches_path: the matches of every pair.
        database_path: replaced if present.
        names: the images, in the order they get their ids (one without a pair still gets its
            camera, so that the model's counts name every image).
        single_camera: one camera shared by all images; else one camera each.
        report: gets ``putative_matches`` (all pairs).
        intrinsics: the known camera of every image; None: SIMPLE_RADIAL, focal length from
            EXIF or guessed (:func:`patchmatch.colmap.add_images`).

    Raises:
        ValueError: ``intrinsics`` whose principal point lies outside an image (named).

    Returns:
        ``database_path``.
    """
    image_dir = Path(image_dir)
    pairs = select_pairs.read(pairs_path)
    database = colmap.create_database(database_path, overwrite=True)
    infos = []
    for n in names:
        w, h = (int(v) for v in storage.read_features(features_path, n).image_size)
        infos.append(colmap.CameraInfo(n, w, h, colmap.exif_focal(image_dir / n)))
    ids = colmap.add_images(database, infos, single_camera=single_camera, intrinsics=intrinsics)
    for start in range(0, len(names), IMAGES_PER_WRITE):  # a bounded part of the collection in memory
        chunk = names[start : start + IMAGES_PER_WRITE]
        colmap.write_keypoints(database, {ids[n]: storage.read_features(features_path, n).xy for n in chunk})
    count = 0
    for start in range(0, len(pairs), PAIRS_PER_WRITE):
        putative = {}
        for a, b in pairs[start : start + PAIRS_PER_WRITE]:
            m, _ = storage.read_matches(matches_path, a, b)
            count += len(m)
            if len(m):
                putative[(ids[a], ids[b])] = m
        colmap.write_matches(database, putative)
    if report is not None:
        report["putative_matches"] = count
    return Path(database_path)

