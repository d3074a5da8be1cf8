"""A small real patch set (3 entry-P10 views, Brown format), built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_path


@pytest.fixture(scope="session")
def pairset(tmp_path_factory) -> Path:
    from patchmatch.datasets.patchset import write_patch_set
    from patchmatch.datasets.tracks import PairSetConfig, TrackConfig

    scene = shared_path("scenes", "entry-P10")
    out = tmp_path_factory.mktemp("pairs") / "entry3"
    write_patch_set(scene, out, ["0003.jpg", "0004.jpg", "0005.jpg"], PairSetConfig(tracks=TrackConfig(max_keypoints=800)))
    return out
