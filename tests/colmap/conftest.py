"""Fixtures of the patchmatch.colmap tests: real scenes from ../shared/data, pycolmap SIFT databases."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from patchmatch import colmap

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _scene(name: str) -> Path:
    path = DATA / "scenes" / name / "images"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (see shared/data/README.md)")
    return path


@pytest.fixture
def entry_dir() -> Path:
    """entry-P10's images (skipped where absent)."""
    return _scene("entry-P10")


@pytest.fixture
def lund_dir() -> Path:
    """lund's images (skipped where absent)."""
    return _scene("lund")


@pytest.fixture
def sift_database(tmp_path):
    """A factory: a database with pycolmap's SIFT features (1500, 768 px) and verified exhaustive
    matches of ``names`` of ``image_dir``."""

    def build(image_dir: Path, names: list[str]) -> Path:
        db = colmap.create_database(tmp_path / "database.db")
        pycolmap.set_random_seed(0)  # RANSAC's samples: the same verified matches on every run
        sift = colmap.SiftBaselineConfig(max_num_features=1500, max_image_size=768, num_threads=1)
        colmap.sift_extract(db, image_dir, names, sift)
        colmap.sift_match_exhaustive(db, colmap.SiftBaselineConfig(num_threads=1), colmap.VerificationConfig(num_threads=1))
        return db

    return build


@pytest.fixture
def small_database(tmp_path):
    """A database with two images (640x480 without a focal prior, 800x600 with 1000 px); returns
    ``(path, {name: image_id})``."""
    db = colmap.create_database(tmp_path / "database.db")
    infos = [colmap.CameraInfo("img0.jpg", 640, 480), colmap.CameraInfo("img1.jpg", 800, 600, focal=1000.0)]
    return db, colmap.add_images(db, infos)


ENTRY_VIEWS = ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"]


@pytest.fixture(scope="session")
def entry_matched(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A database of 4 entry-P10 views with OpenCV SIFT keypoints (1500, 768 px) and mutual
    nearest-neighbour matches of all 6 pairs, not verified; built once, copy before writing."""
    import cv2

    from patchmatch.features import detect
    from patchmatch.images import read_gray

    image_dir = _scene("entry-P10")
    feats = {}
    for name in ENTRY_VIEWS:
        image, _ = read_gray(image_dir / name, max_size=768)
        feats[name] = (detect(image, max_keypoints=1500), image.shape)
    db = colmap.create_database(tmp_path_factory.mktemp("entry") / "database.db")
    ids = colmap.add_images(db, [colmap.CameraInfo(n, s[1], s[0]) for n, (_, s) in feats.items()])
    colmap.write_keypoints(db, {ids[n]: f.xy for n, (f, _) in feats.items()})
    matcher = cv2.BFMatcher(cv2.NORM_L2, crossCheck=True)
    matches = {}
    for i, a in enumerate(ENTRY_VIEWS):
        for b in ENTRY_VIEWS[i + 1 :]:
            m = matcher.match(feats[a][0].descriptors, feats[b][0].descriptors)
            matches[(ids[a], ids[b])] = np.array([[x.queryIdx, x.trainIdx] for x in m])
    assert colmap.write_matches(db, matches) == 6
    return db, ids


@pytest.fixture
def entry_database(entry_matched, tmp_path) -> tuple[Path, dict[str, int]]:
    """A copy of :func:`entry_matched` in this test's folder."""
    db, ids = entry_matched
    copy = tmp_path / "database.db"
    shutil.copy(db, copy)
    return copy, ids
