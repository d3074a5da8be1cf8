"""A small real chain shared by the stage tests: 4 entry-P10 views at 640 px, 512 keypoints,
matched with normalised cross-correlation (:class:`tests.helpers.NCCScorer`)."""

from __future__ import annotations

import shutil

import pytest

from patchmatch.matching import MatchConfig
from patchmatch.stages import extract, match, select_pairs, to_database
from tests.conftest import shared_path
from tests.helpers import NCCScorer

NAMES = ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"]
EXTRACT = extract.ExtractConfig(max_keypoints=512, max_image_size=640)
MATCH = MatchConfig(min_score=0.5)


@pytest.fixture(scope="package")
def entry4(tmp_path_factory):
    """``(image_dir, out)``: links to 4 entry-P10 images, and an empty output folder."""
    scene = shared_path("scenes", "entry-P10")
    root = tmp_path_factory.mktemp("stages")
    images = root / "images"
    images.mkdir()
    for n in NAMES:
        (images / n).symlink_to(scene / "images" / n)
    return images, root


@pytest.fixture(scope="package")
def chain(entry4):
    """The paths of the first four stages run on :func:`entry4`, and their report."""
    images, root = entry4
    out = root / "out"
    report: dict = {}
    features = extract.run(images, NAMES, out / "features.h5", EXTRACT, report=report)
    pairs = select_pairs.run(features, NAMES, out / "pairs.json")
    matches = match.run(images, features, pairs, out / "matches.h5", NCCScorer(), MATCH, EXTRACT.max_image_size,
                        report=report)  # fmt: skip
    database = to_database.run(images, features, pairs, matches, out / "database.db", NAMES, single_camera=True,
                               report=report)  # fmt: skip
    return {"images": images, "features": features, "pairs": pairs, "matches": matches, "database": database,
            "report": report}  # fmt: skip


@pytest.fixture(scope="package")
def verified(chain, tmp_path_factory):
    """A verified copy of :func:`chain`'s database, and the verify stage's report."""
    from patchmatch import colmap
    from patchmatch.stages import verify

    db = shutil.copy(chain["database"], tmp_path_factory.mktemp("verified") / "database.db")
    report: dict = {}
    verify.run(db, colmap.VerificationConfig(num_threads=2), report=report)
    return db, report
