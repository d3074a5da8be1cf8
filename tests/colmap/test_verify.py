"""patchmatch.colmap.verify: COLMAP's geometric verification of written matches."""

from __future__ import annotations

import numpy as np
import pytest

from patchmatch import colmap


def test_verify_real_matches(entry_database):
    """OpenCV SIFT + mutual NN on 4 real views → verified pairs with their inliers."""
    db, ids = entry_database
    summary = colmap.verify_matches(db, colmap.VerificationConfig(num_threads=2))
    assert summary.verified_pairs >= 5 and summary.inlier_matches > 500
    inliers = colmap.read_verified_matches(db, ids["0000.jpg"], ids["0001.jpg"])
    assert len(inliers) > 100
    putative = {tuple(m) for m in colmap.read_matches(db, ids["0000.jpg"], ids["0001.jpg"]).tolist()}
    assert {tuple(m) for m in inliers.tolist()} <= putative  # inliers are some of the written matches
    reversed_pair = colmap.read_verified_matches(db, ids["0001.jpg"], ids["0000.jpg"])
    np.testing.assert_array_equal(reversed_pair, inliers[:, ::-1])


def test_verify_pairs_touches_only_the_given_pairs(entry_database):
    db, ids = entry_database
    colmap.verify_matches(db, colmap.VerificationConfig(num_threads=2))
    first, second = (ids["0000.jpg"], ids["0001.jpg"]), (ids["0002.jpg"], ids["0003.jpg"])
    kept = colmap.read_verified_matches(db, *second)
    colmap.delete_pairs(db, [first])
    colmap.write_matches(db, {first: np.array([[i, i] for i in range(50)])})  # 50 arbitrary matches
    assert first not in colmap.pairs_with_matches(db)[1]
    config = colmap.VerificationConfig(num_threads=2)
    summary = colmap.verify_pairs(db, [("0000.jpg", "0001.jpg")], config)
    assert first in colmap.pairs_with_matches(db)[1]  # verified (and rejected: no geometry in noise)
    assert len(colmap.read_verified_matches(db, *first)) < 50
    np.testing.assert_array_equal(colmap.read_verified_matches(db, *second), kept)
    assert summary.matched_pairs == 6


def test_nothing_to_verify(small_database):
    db, _ = small_database
    with pytest.raises(ValueError, match="holds no keypoints"):
        colmap.verify_matches(db)
