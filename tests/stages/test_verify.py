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
