"""Shared fixtures: real data from ../shared/data (skipped with a message where absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (expected beside the repository, see README)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def entry_images() -> list[Path]:
    return sorted(shared_path("scenes", "entry-P10", "images").glob("*.jpg"))


@pytest.fixture(scope="session")
def temple_dir() -> Path:
    return shared_path("scenes", "temple-ring")


@pytest.fixture(scope="session")
def pairset(tmp_path_factory) -> Path:
    """A small real patch set (3 entry-P10 views, Brown format), built once per test session."""
    from patchmatch.datasets.patchset import write_patch_set
    from patchmatch.datasets.tracks import PairSetConfig, TrackConfig

    scene = shared_path("scenes", "entry-P10")
    out = tmp_path_factory.mktemp("pairs") / "entry3"
    write_patch_set(scene, out, ["0003.jpg", "0004.jpg", "0005.jpg"], PairSetConfig(tracks=TrackConfig(max_keypoints=800, detected_share=0.0)))
    return out
