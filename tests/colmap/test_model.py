"""patchmatch.colmap.model: reading and writing a sparse model, its numbers, poses and cameras."""

from __future__ import annotations

import errno

import numpy as np
import pycolmap
import pytest

from patchmatch import colmap
from patchmatch.colmap import database as database_module


def _synthetic_model(camera_model: str = "SIMPLE_RADIAL") -> pycolmap.Reconstruction:
    pycolmap.set_random_seed(0)
    options = pycolmap.SyntheticDatasetOptions()
    options.num_rigs, options.num_frames_per_rig, options.num_points3D = 1, 4, 200
    options.camera_model_id = getattr(pycolmap.CameraModelId, camera_model)
    options.camera_params = [1280.0, 1280.0, 512.0, 384.0] if camera_model == "PINHOLE" else [1280.0, 512.0, 384.0, 0.05]
    return pycolmap.synthesize_dataset(options)


def test_model_written_and_read_back(tmp_path):
    rec = _synthetic_model()
    path = colmap.write_reconstruction(rec, tmp_path / "sparse" / "0")
    again = colmap.read_reconstruction(path)
    stats, stats_again = colmap.reconstruction_stats(rec), colmap.reconstruction_stats(again)
    assert stats == stats_again and stats["registered"] == 4 and stats["points"] == 200
    assert stats["registered_names"] == sorted(stats["registered_names"])
    poses = colmap.reconstruction_poses(again)
    for name, (R, t) in colmap.reconstruction_poses(rec).items():
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(poses[name][0], R) and np.testing.assert_allclose(poses[name][1], t)
    assert colmap.reconstruction_points(again).shape == (200, 3)
    cameras = colmap.reconstruction_cameras(again)
    assert len(cameras) == 4 and all(c["model"] == "SIMPLE_RADIAL" for c in cameras.values())
    empty = colmap.reconstruction_stats(None)
    assert empty["registered"] == 0 and np.isnan(empty["mean_reprojection_error"])


def test_model_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a COLMAP model folder"):
        colmap.read_reconstruction(tmp_path)
    (tmp_path / "images.bin").write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match="not a readable COLMAP model"):
        colmap.read_reconstruction(tmp_path)


def test_model_write_refused_on_a_full_disk(tmp_path, monkeypatch):
    """pycolmap writes truncated model files on a full disk without an error: refused first."""
    monkeypatch.setattr(database_module, "_free_bytes", lambda path: 1000)
    with pytest.raises(OSError, match="disk full: cannot write .*sparse") as error:
        colmap.write_reconstruction(_synthetic_model(), tmp_path / "sparse")
    assert error.value.errno == errno.ENOSPC
    assert not (tmp_path / "sparse" / "points3D.bin").exists()


def test_pinhole_cameras_in_the_opencv_convention():
    rec = _synthetic_model("PINHOLE")
    cameras = colmap.reconstruction_pinhole_cameras(rec)
    poses = colmap.reconstruction_poses(rec)
    for image_id in rec.reg_image_ids():
        image = rec.image(image_id)
        K, R, t, width, height = cameras[image.name]
        camera = rec.camera(image.camera_id)
        fx, fy, cx, cy = camera.params
        np.testing.assert_allclose(K, [[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]])  # the +0.5 rule
        np.testing.assert_allclose(R, poses[image.name][0]) and np.testing.assert_allclose(t, poses[image.name][1])
        assert (width, height) == (camera.width, camera.height)
    with pytest.raises(ValueError, match="not a pinhole; undistort the model first"):
        colmap.reconstruction_pinhole_cameras(_synthetic_model("SIMPLE_RADIAL"))
