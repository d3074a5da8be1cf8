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
