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
