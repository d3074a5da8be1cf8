"""Stage 4: features and matches → a COLMAP database."""

from __future__ import annotations

import numpy as np

from patchmatch import colmap, storage


def test_database_holds_images_keypoints_and_every_match(chain):
    db = chain["database"]
    summary = colmap.database_summary(db)
    ids = colmap.read_image_ids(db)
    assert sorted(ids) == ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"] and summary.images == 4
    assert summary.matches == chain["report"]["putative_matches"] > 0
    m, _ = storage.read_matches(chain["matches"], "0000.jpg", "0001.jpg")
    np.testing.assert_array_equal(colmap.read_matches(db, ids["0000.jpg"], ids["0001.jpg"]), m)
    xy = storage.read_features(chain["features"], "0000.jpg").xy
    np.testing.assert_allclose(colmap.read_keypoints(db, ids["0000.jpg"])[:, :2], xy, atol=1e-4)  # read back in OpenCV pixels


def test_full_disk_during_the_database_stage_names_the_file(chain, tmp_path):
    """The database stage on a disk that fills up: one error naming the database and "disk
    full", not pycolmap's "No registered database factory succeeded." (needs root for a tmpfs)."""
    import errno
    import os
    import shutil
    import subprocess
    import sys

    import pytest

    from patchmatch.stages import to_database
    from .conftest import NAMES

    disk = tmp_path / "disk"
    disk.mkdir()
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small file system needs root on Linux (mount -t tmpfs)")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        with open(disk / "filler", "wb") as f:
            f.write(b"\0" * (shutil.disk_usage(disk).free - (200 << 10)))  # 200 KiB left: the keypoints do not fit
        db = disk / "database.db"
        with pytest.raises(OSError, match=f"disk full: cannot write {db}") as error:
            to_database.run(chain["images"], chain["features"], chain["pairs"], chain["matches"], db, NAMES)
        assert error.value.errno == errno.ENOSPC and "\n" not in str(error.value)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
