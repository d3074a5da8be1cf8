"""Stage 5: geometric verification of a database's matches."""

from __future__ import annotations

import logging

from patchmatch import colmap
from patchmatch.stages import verify


def test_every_matched_pair_is_verified(verified):
    db, report = verified
    assert report["verified_pairs"] >= 5 and report["inlier_matches"] > 100
    assert colmap.database_summary(db).verified_pairs == report["verified_pairs"]


def test_only_the_given_pairs_are_verified(chain, tmp_path):
    import shutil

    db = shutil.copy(chain["database"], tmp_path / "database.db")
    report: dict = {}
    verify.run(db, colmap.VerificationConfig(num_threads=2), pairs=[("0000.jpg", "0001.jpg")], report=report)
    assert report["verified_pairs"] == 1


def test_a_database_without_matches_is_left_alone(tmp_path, caplog):
    db = colmap.create_database(tmp_path / "empty.db")
    report: dict = {}
    with caplog.at_level(logging.WARNING):
        assert verify.run(db, report=report) == db
    assert report == {"verified_pairs": 0, "inlier_matches": 0} and "nothing to verify" in caplog.text


def test_a_pair_verification_rejects_is_not_counted_as_verified(chain, tmp_path):
    """COLMAP stores a rejected pair's two-view geometry too, without inliers: not a verified pair."""
    import shutil

    import numpy as np

    from patchmatch.colmap.database import table_pairs

    db = shutil.copy(chain["database"], tmp_path / "database.db")
    ids = colmap.read_image_ids(db)
    pair = (ids["0000.jpg"], ids["0001.jpg"])
    colmap.delete_pairs(db, [pair])
    rng = np.random.default_rng(0)  # 60 random correspondences: no geometry explains them
    colmap.write_matches(db, {pair: np.stack([rng.permutation(500)[:60], rng.permutation(500)[:60]], 1)})
    report: dict = {}
    verify.run(db, colmap.VerificationConfig(num_threads=2), report=report)
    rows = table_pairs(db, "two_view_geometries")
    assert rows[pair] == 0  # stored, rejected
    assert report["verified_pairs"] == colmap.database_summary(db).verified_pairs == sum(r > 0 for r in rows.values())
    assert report["verified_pairs"] == len(rows) - 1
