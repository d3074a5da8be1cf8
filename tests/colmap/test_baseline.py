"""patchmatch.colmap.baseline: COLMAP's own SIFT pipeline."""

from __future__ import annotations

import pytest

from patchmatch import colmap


def test_sift_pipeline_on_two_real_views(entry_dir, tmp_path):
    db = colmap.create_database(tmp_path / "database.db")
    config = colmap.SiftBaselineConfig(max_num_features=500, max_image_size=640, num_threads=2)
    summary = colmap.sift_features_and_matches(db, entry_dir, ["0000.jpg", "0001.jpg"], config,
                                               colmap.VerificationConfig(num_threads=2))  # fmt: skip
    assert summary.images == 2 and summary.keypoints > 2 * 300  # about 500 each (SIFT's cap is loose)
    assert summary.matched_pairs == 1 and summary.verified_pairs == 1 and summary.inlier_matches > 50
    images = colmap.read_database_images(db)
    assert set(images) == {"0000.jpg", "0001.jpg"}
    first = images["0000.jpg"]
    assert first.keypoints.shape == (len(first.descriptors), 6) and first.descriptors.shape[1] == 128


def test_sift_extract_checks_its_input(entry_dir, tmp_path):
    db = colmap.create_database(tmp_path / "database.db")
    with pytest.raises(ValueError, match="no images given"):
        colmap.sift_extract(db, entry_dir, [])
    with pytest.raises(FileNotFoundError, match="missing.jpg does not exist"):
        colmap.sift_extract(db, entry_dir, ["missing.jpg"])
    with pytest.raises(FileNotFoundError, match="create_database first"):
        colmap.sift_extract(tmp_path / "none.db", entry_dir, ["0000.jpg"])


def test_sift_extract_takes_known_intrinsics(entry_dir, tmp_path):
    db = colmap.create_database(tmp_path / "database.db")
    known = colmap.CameraIntrinsics("PINHOLE", (1379.74, 1382.08, 760.595, 503.655))
    config = colmap.SiftBaselineConfig(max_num_features=200, max_image_size=640, num_threads=2)
    colmap.sift_extract(db, entry_dir, ["0000.jpg", "0001.jpg"], config, intrinsics=known)
    with colmap.open_database(db) as raw:
        cameras = raw.read_all_cameras()
    assert len(cameras) == 2
    for camera in cameras:
        assert camera.model.name == "PINHOLE" and camera.has_prior_focal_length
        assert tuple(camera.params) == known.params
