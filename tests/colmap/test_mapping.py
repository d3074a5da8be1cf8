"""patchmatch.colmap.mapping: incremental mapping, its fallback cascade, degenerate cameras,
bundle adjustment."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest

from patchmatch import colmap
from patchmatch.colmap import mapping
from patchmatch.stages import reconstruct
from tests.conftest import shared_path


def test_verify_and_map_real_images(entry_database, entry_dir, tmp_path):
    """OpenCV SIFT + mutual NN on 4 real views → verified pairs → a 4-image model."""
    db, ids = entry_database
    colmap.verify_matches(db, colmap.VerificationConfig(num_threads=2))
    # an image without keypoints cannot be reached: the first complete, sane model of the other 4 ends the
    # search (no further fallback run for the blank one)
    colmap.add_images(db, [colmap.CameraInfo("blank.png", 640, 480)])
    attempts = []
    rec = colmap.incremental_mapping(db, entry_dir, tmp_path / "sparse", colmap.MapperConfig(num_threads=2), attempts)
    assert attempts[-1].kept and attempts[-1].usable == 4 and not attempts[-1].degenerate, attempts
    stats = colmap.reconstruction_stats(rec)
    assert stats["registered"] == 4 and stats["points"] > 300
    assert stats["mean_track_length"] > 2.0 and 0 < stats["mean_reprojection_error"] < 1.5
    again = colmap.reconstruction_stats(colmap.read_reconstruction(tmp_path / "sparse" / "0"))
    assert again["registered"] == 4 and again["points"] == stats["points"]
    assert [p.name for p in (tmp_path / "sparse").iterdir()] == ["0"]
    poses = colmap.reconstruction_poses(rec)
    for R, t in poses.values():
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert colmap.reconstruction_stats(None)["registered"] == 0
    # a model whose intrinsics ran away is flagged ...
    assert colmap.degenerate_cameras(rec) == []
    broken = pycolmap.Reconstruction(rec)
    cam = next(iter(broken.cameras.values()))
    params = cam.params.copy()
    params[0] = -params[0]
    cam.params = params
    assert colmap.degenerate_cameras(broken)[0].startswith(f"camera {cam.camera_id}: focal -")
    params[0], params[3] = 10 * abs(params[0]), 4.8
    cam.params = params
    assert "prior" in colmap.degenerate_cameras(broken, {cam.camera_id: abs(params[0]) / 10})[0]
    assert "distortion" in colmap.degenerate_cameras(broken)[0]


def _synthetic_model() -> pycolmap.Reconstruction:
    """A seeded synthetic scene (6 views of 300 points) with noisy observations and poses."""
    pycolmap.set_random_seed(0)
    options = pycolmap.SyntheticDatasetOptions()
    options.num_frames_per_rig, options.num_points3D = 6, 300
    rec = pycolmap.synthesize_dataset(options)
    noise = pycolmap.SyntheticNoiseOptions()
    noise.point2D_stddev, noise.point3D_stddev = 1.0, 0.05
    noise.rig_from_world_translation_stddev, noise.rig_from_world_rotation_stddev = 0.05, 1.0
    pycolmap.synthesize_noise(noise, rec)
    return rec


def test_global_bundle_adjustment_is_pycolmaps_without_touching_the_log(capfd):
    """The same result as ``pycolmap.bundle_adjustment`` to the last bit, and COLMAP's log
    settings left as they were (pycolmap's resets them to INFO and prints)."""
    rec = _synthetic_model()
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    ours, theirs = pycolmap.Reconstruction(rec), pycolmap.Reconstruction(rec)
    level = pycolmap.logging.minloglevel
    try:
        colmap.set_verbosity(False)
        capfd.readouterr()
        colmap.global_bundle_adjustment(ours, options)
        assert pycolmap.logging.minloglevel == 3 and capfd.readouterr().err == ""
        pycolmap.bundle_adjustment(theirs, options)
    finally:
        pycolmap.logging.minloglevel = level
    assert ours.compute_mean_reprojection_error() < 0.5 * rec.compute_mean_reprojection_error()
    for cam_id, cam in theirs.cameras.items():
        np.testing.assert_array_equal(ours.cameras[cam_id].params, cam.params)
    for image_id in theirs.reg_image_ids():
        np.testing.assert_array_equal(ours.image(image_id).cam_from_world().matrix(),
                                      theirs.image(image_id).cam_from_world().matrix())  # fmt: skip
    np.testing.assert_array_equal(colmap.reconstruction_points(ours), colmap.reconstruction_points(theirs))


def test_mapping_falls_back_to_fixed_intrinsics(sift_database, entry_dir, tmp_path, monkeypatch):
    """A first model with a runaway camera is mapped again with the intrinsics fixed, then refined."""
    db = sift_database(entry_dir, ["0000.jpg", "0001.jpg", "0002.jpg"])
    real_map_once = mapping.map_once
    calls = []

    def first_one_runs_away(database, image_dir, output_dir, config, input_model=None):
        models = real_map_once(database, image_dir, output_dir, config, input_model)
        calls.append(config)
        if config.refine_focal_length:  # what lund does: focal length negative, huge distortion
            cam = next(iter(models[0].cameras.values()))
            p = cam.params.copy()
            p[0], p[3] = -p[0], 4.8
            cam.params = p
        return models

    monkeypatch.setattr(mapping, "map_once", first_one_runs_away)
    attempts = []
    rec = colmap.incremental_mapping(db, entry_dir, tmp_path / "sparse", colmap.MapperConfig(num_threads=1), attempts)
    kept = [a for a in attempts if a.kept]
    assert [a.name for a in kept] == ["fixed intrinsics"] and kept[0].intrinsics.startswith("fixed at priors")
    # the configured settings with shared cameras (the 3 cameras share a prior), then with two other
    # seeds, then with the distortion held (all run away here), then fixed intrinsics
    assert [a.name for a in attempts[:2]] == ["configured", "shared cameras"]
    assert [a.name for a in attempts[4:6]] == ["focal length only", "fixed intrinsics"]
    assert len(calls) == 6 and all(c.refine_focal_length for c in calls[:5]) and not calls[5].refine_focal_length
    assert [c.random_seed for c in calls] == [0, 0, 1, 2, 0, 0]
    assert calls[4].refine_extra_params is False and calls[3].refine_extra_params
    assert not calls[5].refine_extra_params and rec.num_reg_images() == 3
    assert calls[0].max_reproj_error == 2.0 and calls[5].max_reproj_error == 4.0
    assert colmap.degenerate_cameras(rec) == []
    assert colmap.read_reconstruction(tmp_path / "sparse" / "0").num_reg_images() == 3
    # switched off, the first model is kept as it is
    calls.clear()
    attempts = []
    rec = colmap.incremental_mapping(
        db, entry_dir, tmp_path / "sparse",
        colmap.MapperConfig(num_threads=1, fixed_intrinsics_fallback=False, min_model_size=2), attempts
    )  # fmt: skip
    # the runaway camera's image is rejected by the checks: shared cameras, the seeds, then the
    # forward-motion runs (all run away here), and the configured model kept without that image
    assert len(calls) == 8 and colmap.degenerate_cameras(rec) and rec.num_reg_images() == 2, attempts
    assert attempts[0].kept and attempts[0].rejected[0]["reason"].startswith("implausible intrinsics (focal -")
    # the model with most usable images (registered, camera sane) is kept: a complete model with one
    # runaway camera (2 usable) loses to a sane one registering 2 (the next run, seed 1), and beats
    # sane ones registering 1 (no model: fewer than 2 images)
    for drop, kept_first in [(1, False), (2, True)]:
        calls.clear()

        def second_one_smaller(database, image_dir, output_dir, config, input_model=None):
            models = real_map_once(database, image_dir, output_dir, config, input_model)
            rec = models[0]
            calls.append(config)
            if len(calls) == 1:
                cam = rec.cameras[rec.images[min(rec.reg_image_ids())].camera_id]
                p = cam.params.copy()
                p[3] = 1.5
                cam.params = p
            else:
                for frame_id in sorted(rec.reg_frame_ids())[:drop]:
                    rec.deregister_frame(frame_id)
            return models

        monkeypatch.setattr(mapping, "map_once", second_one_smaller)
        attempts = []
        two = colmap.MapperConfig(num_threads=1, min_model_size=2)  # models of 2 images kept after the checks
        rec = colmap.incremental_mapping(db, entry_dir, tmp_path / "sparse", two, attempts)
        names = [a.name for a in attempts if a.name != "shared cameras, extended (registration from 15 inliers)"]
        assert names[:4] == ["configured", "shared cameras", "configured, seed 1", "configured, seed 2"]
        runs = [(a.name, a.registered, a.usable, a.degenerate, a.kept) for a in attempts]
        # the earliest run with most usable images and fewest degenerate cameras (which later run
        # passes the checks with 2 images varies with COLMAP's models: the shared-camera run's mostly)
        best = max(attempts, key=lambda a: (a.usable, -len(a.degenerate)))
        assert [a.kept for a in attempts] == [a is best for a in attempts] and attempts[0].kept == kept_first, runs
        assert rec.num_reg_images() == 2  # the runaway camera's image rejected by the checks
        assert attempts[0].registered == 3 and attempts[0].usable == 2 and len(attempts[0].degenerate) == 1


def test_an_incomplete_fallback_model_is_continued_once(sift_database, entry_dir, tmp_path, monkeypatch):
    """The kept fallback's model, when it leaves reachable images out, is continued once with the
    relaxed registration threshold (lund's walk: 15 + 6 images, then 21 in one model)."""
    db = sift_database(entry_dir, ["0000.jpg", "0001.jpg", "0002.jpg"])
    real_map_once = mapping.map_once
    starts = []

    def fixed_runs_leave_one_out(database, image_dir, output_dir, config, input_model=None):
        models = real_map_once(database, image_dir, output_dir, config, input_model)
        starts.append(None if input_model is None else input_model.num_reg_images())
        if config.refine_focal_length and input_model is None:  # every run with free intrinsics runs away
            cam = next(iter(models[0].cameras.values()))
            cam.params = [-cam.params[0], *cam.params[1:3], 4.8]
        elif input_model is None:  # fixed intrinsics: one image left out
            models[0].deregister_frame(max(models[0].reg_frame_ids()))
        return models

    monkeypatch.setattr(mapping, "map_once", fixed_runs_leave_one_out)
    attempts = []
    rec = colmap.incremental_mapping(db, entry_dir, tmp_path / "sparse", colmap.MapperConfig(min_model_size=2), attempts)
    assert attempts[-1].name == "fixed intrinsics, extended (registration from 15 inliers)" and attempts[-1].kept
    assert starts[-1] == 2 and rec.num_reg_images() == 3 and colmap.degenerate_cameras(rec) == []
    assert [a.name for a in attempts].count("fixed intrinsics, extended (registration from 15 inliers)") == 1


def test_mapping_falls_back_to_forward_motion_initialisation(sift_database, lund_dir, tmp_path):
    """lund's first images walk straight at the cathedral: every image pair has |t_z| > 0.95, so COLMAP
    finds no initial pair; allowing forward motion at a lower initial triangulation angle maps them."""
    db = sift_database(lund_dir, ["01.jpg", "02.jpg", "03.jpg", "04.jpg"])
    off = colmap.MapperConfig(fixed_intrinsics_fallback=False, forward_motion_fallback=False)
    assert colmap.incremental_mapping(db, lund_dir, tmp_path / "off", off) is None
    attempts = []
    rec = colmap.incremental_mapping(db, lund_dir, tmp_path / "sparse", colmap.MapperConfig(), attempts)
    assert rec is not None and rec.num_reg_images() >= 3
    assert attempts[0].name == "configured" and attempts[0].registered == 0
    kept = [a for a in attempts if a.kept]
    assert len(kept) == 1 and kept[0].name.startswith("forward motion") and kept[0].usable == rec.num_reg_images()
    assert colmap.degenerate_cameras(rec, {c: 1035.36 for c in rec.cameras}) == []
    assert colmap.read_reconstruction(tmp_path / "sparse" / "0").num_reg_images() == rec.num_reg_images()
    # the options reach COLMAP
    opts = mapping.mapper_options(colmap.MapperConfig(init_max_forward_motion=1.0, init_min_tri_angle=4.0))
    assert opts.mapper.init_max_forward_motion == 1.0 and opts.mapper.init_min_tri_angle == 4.0


def test_mapper_options_carry_the_reprojection_filter():
    opts = mapping.mapper_options(colmap.MapperConfig(max_reproj_error=1.5, num_threads=1))
    assert opts.mapper.filter_max_reproj_error == 1.5
    assert opts.triangulation.complete_max_reproj_error == 1.5 and opts.triangulation.merge_max_reproj_error == 1.5
    assert mapping.mapper_options(colmap.MapperConfig()).mapper.filter_max_reproj_error == 2.0


def test_focal_length_ratio_range_admits_every_prior(tmp_path):
    """COLMAP's mapper calls a camera bogus outside focal lengths of 0.1-10 x its longest side (its
    images then never register): a database whose prior (a telephoto lens, given or from EXIF) lies
    beyond gets a range holding it with a margin of 2; a usual one keeps COLMAP's."""
    opts = mapping.mapper_options(colmap.MapperConfig(min_focal_length_ratio=0.05, max_focal_length_ratio=30.0))
    assert opts.min_focal_length_ratio == 0.05 and opts.max_focal_length_ratio == 30.0  # what COLMAP's mapper uses
    db = colmap.create_database(tmp_path / "database.db")
    colmap.add_images(db, [colmap.CameraInfo("usual.jpg", 1024, 768, focal=1200.0)])
    assert mapping._admit_priors(db, colmap.MapperConfig()) == colmap.MapperConfig()
    colmap.add_images(db, [colmap.CameraInfo("tele.jpg", 1024, 1024, focal=10715.0),
                           colmap.CameraInfo("fisheye.jpg", 1000, 1000, focal=80.0)])  # fmt: skip
    admitted = mapping._admit_priors(db, colmap.MapperConfig())
    assert admitted.max_focal_length_ratio == pytest.approx(2 * 10715.0 / 1024)
    assert admitted.min_focal_length_ratio == pytest.approx(0.04)


def test_incomplete_mapping_is_retried_with_other_seeds(sift_database, entry_dir, tmp_path, monkeypatch):
    """When every fallback leaves images out, the best settings run again with other random seeds;
    a complete model stops the search. (The extension of the configured model is switched off here:
    see test_incomplete_model_is_extended_first.)"""
    db = sift_database(entry_dir, ["0000.jpg", "0001.jpg", "0002.jpg"])
    real_map_once = mapping.map_once
    seeds = []

    def incomplete_unless_seed_2(database, image_dir, output_dir, config, input_model=None):
        models = real_map_once(database, image_dir, output_dir, config, input_model)
        seeds.append(config.random_seed)
        if config.random_seed != 2:
            models[0].deregister_frame(next(iter(models[0].reg_frame_ids())))
        return models

    monkeypatch.setattr(mapping, "map_once", incomplete_unless_seed_2)
    attempts = []
    # models of 2 of the 3 images count (kept after the checks); no shared-camera run (seed 0 again)
    no_extension = colmap.MapperConfig(num_threads=2, extend_fallback=False, shared_cameras_fallback=False, min_model_size=2)
    rec = colmap.incremental_mapping(db, entry_dir, tmp_path / "sparse", no_extension, attempts)
    assert rec.num_reg_images() == 3 and seeds[:3] == [0, 1, 2]  # the configured settings with seeds 1, 2 first
    assert attempts[2].kept and attempts[2].name == "configured, seed 2" and len(attempts) == 3
    seeds.clear()
    colmap.incremental_mapping(db, entry_dir, tmp_path / "sparse",
                               colmap.MapperConfig(num_threads=2, retry_seeds=0, extend_fallback=False,
                                                   shared_cameras_fallback=False))  # fmt: skip
    assert 2 not in seeds and 1 not in seeds
    # seeds after the fallbacks: forward-motion runs register 2 images, all others 1; the best of them
    # (forward motion at 8°) registers all 3 with seed 2, which only the end retries reach
    seeds.clear()

    def incomplete_unless_forward_seed_2(database, image_dir, output_dir, config, input_model=None):
        models = real_map_once(database, image_dir, output_dir, config, input_model)
        seeds.append((config.random_seed, config.init_max_forward_motion))
        drop = 2 if config.init_max_forward_motion < 1 else 0 if config.random_seed == 2 else 1
        for frame_id in list(models[0].reg_frame_ids())[:drop]:
            models[0].deregister_frame(frame_id)
        return models

    monkeypatch.setattr(mapping, "map_once", incomplete_unless_forward_seed_2)
    attempts = []
    rec = colmap.incremental_mapping(db, entry_dir, tmp_path / "sparse", no_extension, attempts)
    assert rec.num_reg_images() == 3 and attempts[-1].kept and attempts[-1].name.startswith("forward motion, init 8°")
    assert attempts[-1].name.endswith("seed 2") and seeds[-1] == (2, 1.0)


def test_incomplete_model_is_extended_first(sift_database, entry_dir, tmp_path, monkeypatch):
    """An incomplete but sane configured model is continued (COLMAP's mapper with an input model,
    registration from 15 inliers) before any new model is built: the images it has keep their poses."""
    db = sift_database(entry_dir, ["0000.jpg", "0001.jpg", "0002.jpg"])
    real_map_once = mapping.map_once
    calls = []

    def configured_leaves_one_out(database, image_dir, output_dir, config, input_model=None):
        calls.append((config.abs_pose_min_num_inliers, None if input_model is None else input_model.num_reg_images()))
        models = real_map_once(database, image_dir, output_dir, config, input_model=input_model)
        if len(calls) == 1:
            models[0].deregister_frame(max(models[0].reg_frame_ids()))
        return models

    monkeypatch.setattr(mapping, "map_once", configured_leaves_one_out)
    attempts = []
    two = colmap.MapperConfig(num_threads=2, min_model_size=2)  # a model of 2 of the 3 images counts
    rec = colmap.incremental_mapping(db, entry_dir, tmp_path / "sparse", two, attempts)
    assert calls == [(30, None), (15, 2)]  # the 2-image model continued, no other run needed
    assert [a.name for a in attempts] == ["configured", "configured, extended (registration from 15 inliers)"]
    assert attempts[1].kept and rec.num_reg_images() == 3 and not attempts[1].degenerate
    # COLMAP wrote the continued model into sparse/ itself: removed with the runs' other models
    assert not [p.name for p in (tmp_path / "sparse").iterdir() if p.is_file()]
    # switched off, or with the configured threshold at 15 already: the other fallbacks as before
    for config in (colmap.MapperConfig(num_threads=2, extend_fallback=False, min_model_size=2),
                   colmap.MapperConfig(num_threads=2, abs_pose_min_num_inliers=15, min_model_size=2)):  # fmt: skip
        calls.clear()
        attempts = []
        colmap.incremental_mapping(db, entry_dir, tmp_path / "sparse", config, attempts)
        assert all(start is None for _, start in calls) and attempts[1].name == "shared cameras"


def test_mapper_config_rejects_values_colmap_would_abort_on():
    for field, value in [("init_max_forward_motion", 1.5), ("retry_seeds", -1), ("max_reproj_error", 0.0),
                         ("init_min_tri_angle", -1.0), ("num_threads", -2), ("min_model_size", 0)]:
        with pytest.raises(ValueError, match=field):
            colmap.MapperConfig(**{field: value})
    for field, value in [("retry_seeds", 1.5), ("retry_seeds", "2"), ("init_max_forward_motion", None),
                         ("random_seed", 2**40), ("num_threads", 0), ("refine_focal_length", "false"),
                         ("init_min_tri_angle", 200.0), ("retry_seeds", 10**9), ("retry_seeds", True)]:
        with pytest.raises(ValueError, match=field):
            colmap.MapperConfig(**{field: value})
    assert colmap.MapperConfig(init_max_forward_motion=1.0, retry_seeds=0).retry_seeds == 0
    assert colmap.MapperConfig(max_reproj_error=3).max_reproj_error == 3  # an int is a number
    # a lowered initial angle keeps the forward-motion fallback (at that angle)
    names = [name for name, _ in colmap.mapping_attempts(colmap.MapperConfig(init_min_tri_angle=4.0))]
    assert "forward motion, init 4°" in names and "forward motion, init 8°" not in names


def test_mapping_attempts_are_the_documented_cascade():
    names = [name for name, _ in colmap.mapping_attempts(colmap.MapperConfig())]
    assert names == ["configured, seed 1", "configured, seed 2", "focal length only", "fixed intrinsics",
                     "forward motion, init 8°", "forward motion, init 8°, fixed intrinsics",
                     "forward motion, init 4°", "forward motion, init 4°, fixed intrinsics",
                     "forward motion, init 8°, registration from 15 inliers",
                     "forward motion, init 4°, registration from 15 inliers"]  # fmt: skip
    fixed = dict(colmap.mapping_attempts(colmap.MapperConfig()))["fixed intrinsics"]
    assert not fixed.refine_focal_length and not fixed.refine_extra_params and fixed.max_reproj_error == 4.0
    focal = dict(colmap.mapping_attempts(colmap.MapperConfig()))["focal length only"]
    assert focal.refine_focal_length and not focal.refine_extra_params and focal.max_reproj_error == 2.0
    held = colmap.MapperConfig(refine_extra_params=False)  # the distortion held already: no such step
    assert "focal length only" not in dict(colmap.mapping_attempts(held))
    assert [n for n, _ in colmap.mapping_attempts(colmap.MapperConfig(retry_seeds=0, fixed_intrinsics_fallback=False,
                                                                      forward_motion_fallback=False))] == []  # fmt: skip


def test_fixed_intrinsics_stay_at_their_priors_without_exif(sift_database, entry_dir, tmp_path):
    """A fixed-intrinsics run keeps cameras without an EXIF focal length at their priors (1.2 × the longer side)."""
    db = sift_database(entry_dir, ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"])
    with pycolmap.Database.open(str(db)) as database:
        priors = {c.camera_id: np.array(c.params) for c in database.read_all_cameras()}
        assert not any(c.has_prior_focal_length for c in database.read_all_cameras())  # no EXIF focal length
    fixed = colmap.MapperConfig(num_threads=1, refine_focal_length=False, refine_extra_params=False)
    rec = mapping.map_once(db, entry_dir, tmp_path / "sparse", fixed)[0]
    assert rec.num_reg_images() == 4
    for cam_id, cam in rec.cameras.items():
        np.testing.assert_allclose(cam.params, priors[cam_id], rtol=1e-9)


def test_separate_scenes_are_separate_models_all_written(sift_database, entry_dir, tmp_path):
    """Two places in one folder: COLMAP's models of them together hold every reachable image, so they
    are the answer (no other mapper run), each written, largest first."""
    temple = entry_dir.parents[1] / "temple-ring" / "images"
    if not temple.is_dir():
        pytest.skip(f"real data not found at {temple} (see shared/data/README.md)")
    both = tmp_path / "both"
    for sub, source, names in [("entry", entry_dir, ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"]),
                               ("temple", temple, ["templeSR0003.png", "templeSR0004.png", "templeSR0005.png"])]:  # fmt: skip
        (both / sub).mkdir(parents=True)
        for name in names:
            (both / sub / name).symlink_to(source / name)
    names = sorted(str(p.relative_to(both)) for p in both.rglob("*.*"))
    db = sift_database(both, names)
    attempts = []
    models = colmap.map_database(db, both, tmp_path / "sparse", colmap.MapperConfig(), attempts)
    # two parts of the scene graph, each mapped on its own: one configured run each, both kept
    assert [(a.name, a.kept, a.models, a.images) for a in attempts] == [("configured", True, [4], 4),
                                                                         ("configured", True, [3], 3)], attempts
    assert sorted(p.name for p in (tmp_path / "sparse").iterdir()) == ["0", "1"]
    for index, prefix in enumerate(["entry/", "temple/"]):
        written = colmap.read_reconstruction(tmp_path / "sparse" / str(index))
        names_in = {written.images[i].name for i in written.reg_image_ids()}
        assert all(n.startswith(prefix) for n in names_in) and len(names_in) == models[index].num_reg_images()


def test_a_mapping_stopped_part_way_leaves_no_model(sift_database, entry_dir, tmp_path, monkeypatch):
    """Ctrl-C after a mapper run (its models written by COLMAP as it goes): neither they nor the
    earlier models are left in the sparse folder, whose scratch is removed too."""
    from patchmatch.colmap import mapping

    db = sift_database(entry_dir, ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"])
    sparse = tmp_path / "sparse"
    colmap.map_database(db, entry_dir, sparse, colmap.MapperConfig())
    assert sorted(p.name for p in sparse.iterdir()) == ["0"]
    real = mapping.map_once

    def stopped(database, image_dir, output_dir, config, input_model=None):
        real(database, image_dir, output_dir, config, input_model)
        (output_dir / "0").mkdir(exist_ok=True)  # what the mapper leaves while it runs
        raise KeyboardInterrupt

    monkeypatch.setattr(mapping, "map_once", stopped)
    with pytest.raises(KeyboardInterrupt):
        colmap.map_database(db, entry_dir, sparse, colmap.MapperConfig())
    assert list(sparse.iterdir()) == []


def test_global_mapper_registers_the_scene(sift_database, entry_dir, tmp_path):
    db = sift_database(entry_dir, ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"])
    attempts = []
    models = colmap.map_database(db, entry_dir, tmp_path / "sparse", colmap.MapperConfig(num_threads=2, method="global"),
                                 attempts)  # fmt: skip
    assert [a.name for a in attempts] == ["global"] and attempts[0].kept and attempts[0].rejected == []
    assert len(models) == 1 and models[0].num_reg_images() == 4
    assert colmap.read_reconstruction(tmp_path / "sparse" / "0").num_reg_images() == 4
    with pytest.raises(ValueError, match="method"):
        colmap.MapperConfig(method="hierarchical")


def test_a_suspect_global_model_is_mapped_again_by_the_incremental_cascade(sift_database, entry_dir, tmp_path, monkeypatch):
    """GLOMAP has no fallbacks of its own: when the checks find a degenerate camera in its model (or
    reject images, or it builds none) the incremental cascade maps the scene too, and the run with
    most usable images is kept."""
    db = sift_database(entry_dir, ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"])
    real = mapping.global_map_once

    def distortion_ran_away(*args):
        models = real(*args)
        camera = models[0].cameras[min(models[0].cameras)]
        camera.params = [*camera.params[:-1], 3.0]  # SIMPLE_RADIAL's k1 far beyond MAX_RADIAL
        return models

    monkeypatch.setattr(mapping, "global_map_once", distortion_ran_away)
    attempts = []
    models = colmap.map_database(db, entry_dir, tmp_path / "sparse", colmap.MapperConfig(num_threads=2, method="global"),
                                 attempts)  # fmt: skip
    assert [a.name for a in attempts][:2] == ["global", "configured"] and attempts[0].degenerate
    assert not attempts[0].kept and attempts[1].kept and models[0].num_reg_images() == 4
    report: dict = {}  # the report says so
    reconstruct.run(db, entry_dir, tmp_path / "reported", colmap.MapperConfig(num_threads=2, method="global"), report)
    assert report["mapper"] == "incremental" and "the global mapper's model of 4 images was not kept" in report["notes"][0]
    monkeypatch.setattr(mapping, "AUTO_MAX_INCREMENTAL", 3)  # a part too large for the cascade: GLOMAP's checked model
    attempts = []
    models = colmap.map_database(db, entry_dir, tmp_path / "large", colmap.MapperConfig(num_threads=2, method="global"),
                                 attempts)  # fmt: skip
    assert [a.name for a in attempts] == ["global"] and attempts[0].kept and models[0].num_reg_images() == 3
    monkeypatch.setattr(mapping, "AUTO_MAX_INCREMENTAL", 200)
    attempts = []  # without the checks, GLOMAP's model is kept as it is
    colmap.map_database(db, entry_dir, tmp_path / "unchecked", colmap.MapperConfig(num_threads=2, method="global", check=False),
                        attempts)  # fmt: skip
    assert [a.name for a in attempts] == ["global"]


def test_auto_mapper_is_global_above_its_image_count(sift_database, entry_dir, tmp_path, monkeypatch):
    db = sift_database(entry_dir, ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"])
    assert colmap.MapperConfig().method == "auto"
    attempts = []
    colmap.map_database(db, entry_dir, tmp_path / "a", colmap.MapperConfig(), attempts)
    assert attempts[0].name == "configured"  # 4 images: incremental
    monkeypatch.setattr("patchmatch.colmap.mapping.AUTO_MAX_INCREMENTAL", 3)
    attempts = []
    models = colmap.map_database(db, entry_dir, tmp_path / "b", colmap.MapperConfig(), attempts)
    assert [a.name for a in attempts] == ["global"] and models[0].num_reg_images() == 4


def test_cameras_of_one_prior_that_ran_apart_are_implausible(sift_database, entry_dir, tmp_path):
    """The 3 cameras of 3 entry-P10 views share a prior (one size, no EXIF): focal lengths spread by
    more than MAX_PRIOR_GROUP_FOCAL_RATIO name all three; a smaller spread, or other priors, none."""
    db = sift_database(entry_dir, ["0000.jpg", "0001.jpg", "0002.jpg"])
    with colmap.open_database(db) as raw:
        groups = mapping.prior_groups(raw)
    assert groups == {1: 1, 2: 1, 3: 1}
    rec = mapping.map_once(db, entry_dir, tmp_path / "sparse", colmap.MapperConfig())[0]
    assert mapping.prior_group_apart(rec, groups) == {}
    for factor, flagged in [(1.1, set()), (1.2, {1, 2, 3})]:
        spread = pycolmap.Reconstruction(rec)
        camera = spread.cameras[2]
        camera.params = np.r_[camera.params[0] * factor, camera.params[1:]]
        bad = mapping.prior_group_apart(spread, groups)
        assert set(bad) == flagged and all("cameras of its prior ran apart" in why for why in bad.values())
        assert mapping.prior_group_apart(spread, {1: 1, 3: 1}) == {}  # camera 2 of another prior


@pytest.fixture(scope="module")
def entry_half(tmp_path_factory):
    """A random half of entry-P10 (the views of numpy seed 2 out of 10), matched by the network at
    640 px like the scene's wrong-model benchmark: ``(database, image folder, cameras.json)``."""
    from patchmatch.scoring import PatchScorer
    from patchmatch.sfm import SfmConfig, run_sfm

    scene = shared_path("scenes", "entry-P10")  # skips where the data is absent
    root = tmp_path_factory.mktemp("entry-half")
    (root / "images").mkdir()
    for name in ["0000.jpg", "0001.jpg", "0002.jpg", "0004.jpg", "0005.jpg"]:
        (root / "images" / name).symlink_to(scene / "images" / name)
    config = SfmConfig(max_keypoints=2048, max_image_size=640, threads=1, device="cpu",
                       mapper=colmap.MapperConfig(fixed_intrinsics_fallback=False, shared_cameras_fallback=False,
                                                  forward_motion_fallback=False, retry_seeds=0, check=False))  # fmt: skip
    run_sfm(root / "images", root / "out", config, scorer=PatchScorer.load(device="cpu"))
    return root / "out" / "database.db", root / "images", scene / "cameras.json"


def _wrong(models, cameras_json) -> list[str]:
    from patchmatch.evaluation.pose import load_cameras_json, relative_pose_errors, wrongly_registered

    truth = {n: (c.R, c.t) for n, c in load_cameras_json(cameras_json).items()}
    return [n for m in models for n in wrongly_registered(relative_pose_errors(truth, colmap.reconstruction_poses(m)))]


def test_focal_lengths_run_apart_are_mapped_again_with_shared_cameras(entry_half, tmp_path):
    """On this half, one camera per image lets the focal lengths run away (8,000-13,000 px for the
    true 1380 px) in every run with the intrinsics refined: the run with shared cameras maps all 5
    right."""
    database, images, cameras_json = entry_half
    attempts = []
    models = colmap.map_database(database, images, tmp_path / "sparse", colmap.MapperConfig(), attempts)
    kept = next(a for a in attempts if a.kept)
    assert kept.name == "shared cameras" and kept.intrinsics_note == "the 5 cameras of one prior (1, 2, 3, 4, 5) as camera 1"
    assert any("ran apart" in line for line in attempts[0].degenerate), attempts[0]
    assert [m.num_reg_images() for m in models] == [5] and list(models[0].cameras) == [1]
    assert _wrong(models, cameras_json) == []
    assert abs(models[0].cameras[1].mean_focal_length() / 1380.0 - 1) < 0.05  # the true focal length
    written = colmap.read_reconstruction(tmp_path / "sparse" / "0")
    assert written.num_reg_images() == 5 and not any(p.name.startswith(".") for p in (tmp_path / "sparse").iterdir())


@pytest.mark.xfail(strict=True, reason="without the shared-camera fallback the fixed-intrinsics run keeps 2 wrong "
                   "images of this half: its guessed priors (1843 px) leave their poses wrong and the refined focal "
                   "lengths (1533-1673 px, true 1380 px) stay within the checks' x1.15")  # fmt: skip
def test_without_shared_cameras_no_wrong_image_is_kept(entry_half, tmp_path):
    """Without the shared cameras: the fixed-intrinsics run at guessed priors must not report wrong poses."""
    database, images, cameras_json = entry_half
    attempts = []
    off = colmap.MapperConfig(shared_cameras_fallback=False, forward_motion_fallback=False)
    models = colmap.map_database(database, images, tmp_path / "off", off, attempts)
    kept = next(a for a in attempts if a.kept)
    assert kept.name == "fixed intrinsics", kept
    assert _wrong(models, cameras_json) == []


@pytest.mark.xfail(strict=True, reason="a focal length more than x4 from its guessed prior (no EXIF) is rejected as "
                   "implausible: vesta's lens (10,715 px, 8.7x the guess) costs every image, where pycolmap's SIFT "
                   "pipeline registers 3 of 4 right; relaxing the bound (20x the longest side) and preferring the "
                   "refined shared-camera run let 5 more wrong lego images through")  # fmt: skip
def test_a_narrow_field_of_view_far_from_the_guessed_prior_is_kept(tmp_path):
    """vesta (an asteroid seen by the Dawn probe, no EXIF): the shared-camera run finds the lens's
    focal length and registers 3 of the 4 views right; that model should be kept."""
    from patchmatch.matching import MatchConfig
    from patchmatch.sfm import SfmConfig, run_sfm

    scene = shared_path("scenes", "vesta")
    config = SfmConfig(max_image_size=800, max_keypoints=4096, match=MatchConfig(network=False))
    report = run_sfm(scene / "images", tmp_path / "out", config, ground_truth=scene / "cameras.json")
    assert report["registered"] == 3 and report["pose"]["wrongly_registered"] == [], report["mapping_attempts"]
