"""Stages 5 and 6: geometric verification, then incremental mapping, on the shared chain."""

from __future__ import annotations

import logging
import shutil

from patchmatch import colmap
from patchmatch.stages import reconstruct, verify

VERIFY = colmap.VerificationConfig(num_threads=2)


def test_verify_then_reconstruct(chain, tmp_path):
    db = shutil.copy(chain["database"], tmp_path / "database.db")
    report: dict = {}
    assert verify.run(db, VERIFY, report=report) == db
    assert report["verified_pairs"] >= 5 and report["inlier_matches"] > 100
    sparse = tmp_path / "sparse"
    (sparse / "1").mkdir(parents=True)  # an earlier run's model is never left behind
    model = reconstruct.run(db, chain["images"], sparse, colmap.MapperConfig(num_threads=2), report)
    assert model == sparse / "0" and not (sparse / "1").exists()
    assert colmap.read_reconstruction(model).num_reg_images() == 4 and report["mapping_attempts"][0]["kept"]


def test_nothing_to_verify_or_map(tmp_path, caplog):
    db = colmap.create_database(tmp_path / "empty.db")
    report: dict = {}
    with caplog.at_level(logging.WARNING):
        verify.run(db, VERIFY, report=report)
    assert report == {"verified_pairs": 0, "inlier_matches": 0} and "nothing to verify" in caplog.text
    model = reconstruct.run(db, tmp_path, tmp_path / "sparse", report=report)
    assert not model.exists() and report["mapping_attempts"] == []
