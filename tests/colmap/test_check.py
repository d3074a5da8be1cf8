"""patchmatch.colmap.check: a model is right, or its wrong images are deregistered and named; the
mapping cascade checks every run before one is kept."""

from __future__ import annotations

import dataclasses

import numpy as np
import pycolmap
import pytest

from patchmatch import colmap
from patchmatch.colmap import check, mapping

VIEWS = ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"]
UNCHECKED = colmap.MapperConfig(num_threads=2, check=False, retry_seeds=0, extend_fallback=False,
                                fixed_intrinsics_fallback=False, forward_motion_fallback=False)  # fmt: skip


def _rotate(rec: pycolmap.Reconstruction, name: str, degrees: float, axis=(0.0, 1.0, 0.0)) -> None:
    """Turns the camera of image ``name`` about its own centre by ``degrees``, in place."""
    image = next(im for im in rec.images.values() if im.name == name)
    frame = rec.frames[image.frame_id]
    pose = frame.rig_from_world
    turn = np.asarray(pycolmap.Rotation3d(np.radians(degrees) * np.asarray(axis) / np.linalg.norm(axis)).matrix())
    rotation = turn @ np.asarray(pose.rotation.matrix())
    frame.rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(rotation), turn @ np.asarray(pose.translation))


@pytest.fixture
def entry_model(sift_database, entry_dir, tmp_path):
    """4 entry-P10 views: pycolmap SIFT database and its unchecked model."""
    db = sift_database(entry_dir, VIEWS)
    rec = colmap.incremental_mapping(db, entry_dir, tmp_path / "unchecked", UNCHECKED)
    assert rec is not None and rec.num_reg_images() == 4
    return db, rec


def test_a_good_model_keeps_every_image(entry_model):
    db, rec = entry_model
    result = colmap.check_model(rec, db)
    assert result.rejected == {} and rec.num_reg_images() == 4
    assert result.pairs_checked == 6 and result.pairs_agreeing >= 5
    counts = check.well_triangulated_counts(rec)
    assert min(counts.values()) >= check.MIN_WELL_TRIANGULATED


@pytest.mark.parametrize("degrees, axis", [(15.0, (0.0, 1.0, 0.0)), (10.0, (1.0, 0.0, 0.0))])
def test_an_image_turned_away_from_its_pose_is_rejected(entry_model, degrees, axis):
    db, rec = entry_model
    _rotate(rec, "0002.jpg", degrees, axis)
    points = rec.num_points3D()
    result = colmap.check_model(rec, db)
    assert list(result.rejected) == ["0002.jpg"] and "two-view" in result.rejected["0002.jpg"]
    registered = {rec.images[i].name for i in rec.reg_image_ids()}
    assert registered == {"0000.jpg", "0001.jpg", "0003.jpg"} and rec.num_points3D() < points
    kept = set(rec.reg_image_ids())
    for point in rec.points3D.values():  # every point still seen by two registered images
        assert len({el.image_id for el in point.track.elements if el.image_id in kept}) >= 2


def test_degenerate_cameras_are_rejected(entry_model):
    db, rec = entry_model
    image = next(im for im in rec.images.values() if im.name == "0001.jpg")
    result = colmap.check_model(rec, db, {image.camera_id: "focal -900.0 px"})
    assert result.rejected == {"0001.jpg": "implausible intrinsics (focal -900.0 px)"}


def test_the_cascade_does_not_keep_a_wrong_run(sift_database, entry_dir, tmp_path, monkeypatch):
    """The configured run registers one image at a wrong pose: the check deregisters it, the model is
    continued and registers it right; turned wrong in every run, it is left out and named."""
    db = sift_database(entry_dir, VIEWS)
    real_map_once = mapping.map_once
    wrong_in = {"configured"}
    runs = []

    def one_image_wrong(database, image_dir, output_dir, config, input_model=None):
        models = real_map_once(database, image_dir, output_dir, config, input_model)
        runs.append(input_model is not None)
        if "all" in wrong_in or len(runs) == 1:
            _rotate(models[0], "0002.jpg", 20.0)
        return models

    monkeypatch.setattr(mapping, "map_once", one_image_wrong)
    attempts = []
    rec = colmap.incremental_mapping(db, entry_dir, tmp_path / "sparse", colmap.MapperConfig(num_threads=2), attempts)
    assert attempts[0].name == "configured" and not attempts[0].kept and attempts[0].usable == 3
    assert attempts[0].rejected == [{"name": "0002.jpg", "reason": "pose disagrees with its verified two-view geometries"}]
    assert attempts[1].kept and runs == [False, True] and rec.num_reg_images() == 4 and attempts[1].rejected == []
    assert colmap.check_model(pycolmap.Reconstruction(rec), db).rejected == {}
    # wrong in every run: every fallback tried, the image left out of the written model and named
    runs.clear()
    wrong_in.add("all")
    report: dict = {}
    from patchmatch.stages import reconstruct

    config = dataclasses.replace(colmap.MapperConfig(num_threads=2), retry_seeds=0, forward_motion_fallback=False)
    model = reconstruct.run(db, entry_dir, tmp_path / "sparse2", config, report)
    assert report["rejected"] == [{"name": "0002.jpg", "reason": "pose disagrees with its verified two-view geometries"}]
    assert [a["name"] for a in report["mapping_attempts"]] == ["configured", "configured, extended (registration from 15 inliers)",
                                                              "shared cameras", "shared cameras, extended (registration from 15 inliers)",
                                                              "focal length only", "fixed intrinsics"]  # fmt: skip
    written = colmap.read_reconstruction(model)
    assert sorted(written.images[i].name for i in written.reg_image_ids()) == ["0000.jpg", "0001.jpg", "0003.jpg"]
    assert report["models"] == [{"path": "sparse2/0", "registered": 3, "points": written.num_points3D(),
                                 "names": ["0000.jpg", "0001.jpg", "0003.jpg"]}]  # fmt: skip


def test_largest_linked_group():
    assert check.largest_linked_group({1, 2, 3, 4, 5}, [(1, 2), (2, 3), (4, 5), (6, 1)]) == {1, 2, 3}
    assert check.largest_linked_group({1, 2}, []) == {1}
    assert check.largest_linked_group(set(), [(1, 2)]) == set()
