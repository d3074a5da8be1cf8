"""Mapping (COLMAP's incremental mapper, or GLOMAP's global one) with checked fallbacks.

COLMAP's incremental mapper can leave images unregistered, let a camera's intrinsics run away
in bundle adjustment, find no initial pair at all (a walk straight at a building), or register
an image at a wrong pose. :func:`map_database` runs it once with the configured settings, checks
every model (:mod:`~patchmatch.colmap.check`: wrong images deregistered and named) and, when the
models leave reachable images out or are degenerate, maps again along a fixed cascade of
relaxations (:func:`mapping_attempts`), keeping the run with most usable images. Every model of
the kept run is written (``sparse/0``, ``sparse/1``, … largest first, as COLMAP does).

Intrinsics are judged per camera (:func:`degenerate_cameras`: a focal length far from its prior,
a distortion beyond bounds) and per group of cameras that share a prior (same model, image size
and prior intrinsics: one physical camera, as far as the database can tell). With one camera per
image, COLMAP refines each image's focal length and distortion alone, and on a few images it can
trade them against the poses: the focal lengths run apart, every two-view geometry still agrees
with the model, and relative rotations are wrong by several degrees. Cameras of one prior whose
focal lengths end up more than :data:`MAX_PRIOR_GROUP_FOCAL_RATIO` apart are therefore implausible
too: their images are rejected like those of a degenerate camera, and the cascade maps again with
one camera shared by each group (:attr:`MapperConfig.shared_cameras_fallback`, COLMAP's
``single_camera`` per group, on a copy of the database), which constrains one focal length by all
of the group's images. The same rule judges the one bundle adjustment that refines a
fixed-intrinsics run's intrinsics at the end: when a group runs apart there, the priors are kept,
and the group's images are rejected where its prior focal length is a guess (no EXIF; a guessed
focal length held fixed leaves poses wrong).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from .check import check_model, drop_short_tracks, linked_groups
from .database import copy_with_shared_cameras, open_database, require_database, table_pairs
from .model import write_reconstruction

logger = logging.getLogger(__name__)

#: Smallest model COLMAP keeps (COLMAP: 10): a small project of 3 images still gets its model.
MIN_MODEL_SIZE = 3
#: Reprojection filter in pixels (COLMAP: 4): the network adds matches that pass RANSAC's 4 px but
#: lie 2-4 px off, and dropping those observations gives more accurate poses.
MAX_REPROJ_ERROR = 2.0
#: Other random seeds tried before giving up: COLMAP's result is chaotic in small changes.
RETRY_SEEDS = 2
#: Mapper threads: COLMAP's multi-threaded mapper gives different models from the same database.
MAPPER_THREADS = 1
#: 2D-3D inliers that register an image in the relaxed fallbacks (COLMAP's default: 30).
RELAXED_ABS_POSE_INLIERS = 15
#: Reprojection filter (pixels) at least, with the intrinsics fixed: unmodelled distortion leaves
#: residuals of a few pixels (COLMAP's default filter).
FIXED_INTRINSICS_MIN_REPROJ_ERROR = 4.0
#: Initial triangulation angles (degrees) of the forward-motion fallback, tried in this order.
FORWARD_MOTION_ANGLES = (8.0, 4.0)
#: A focal length more than this factor away from its prior is degenerate.
MAX_FOCAL_CHANGE = 4.0
#: A distortion coefficient beyond ±this (normalised image coordinates) is degenerate.
MAX_RADIAL = 1.0
#: Cameras of one prior (same model, size and prior intrinsics) whose refined focal lengths are more than this
#: factor apart ran apart. No factor separates right from wrong models (entry-P10's wrong ones spread x1.16-1.58,
#: right ones of temple-ring up to x1.42): this one catches every wrong one seen, and a right model caught by it is
#: mapped again with shared cameras (docs/benchmarks.md, "Wrongly registered images").
MAX_PRIOR_GROUP_FOCAL_RATIO = 1.15
#: A given (fixed) focal length that bundle adjustment, set free, moves by more than this factor
#: disagrees with the images (:func:`calibration_drift`): the data's true calibrations moved by at
#: most x1.07, vesta's focal length given 10 times too small by x2.9.
MAX_CALIBRATION_DRIFT = 1.25
#: The mappers of :attr:`MapperConfig.method`.
MAPPER_METHODS = ("auto", "incremental", "global")
#: Reachable images up to which ``method="auto"`` maps incrementally; above, globally. On rendered
#: views of one world (docs/scaling.md, the worst case: every image sees every point) the
#: incremental mapper took 113 s at 200 images and 490 s at 400, GLOMAP 30 s and 65 s, at
#: 0.022-0.032° median relative rotation error alike. Below, the incremental mapper's checked
#: fallbacks are worth its time, and on photographs matching takes most of a run.
AUTO_MAX_INCREMENTAL = 200
#: Tracks per image the global mapper (GLOMAP) positions and bundle-adjusts before retriangulating
#: all of them (pycolmap: every track). Where every image sees the same world its bundle
#: adjustments otherwise grow faster than the images; 150 tracks per image gave the same rotation
#: errors on rendered collections of 100 and 200 views and on lego's 100 photographs.
GLOBAL_TRACKS_PER_IMAGE = 150


@dataclass(frozen=True)
class MapperConfig:
    """Incremental mapping (COLMAP's IncrementalPipeline).

    Attributes:
        min_num_matches: verified inliers a pair needs to enter the scene graph.
        min_model_size: smallest model (registered images) COLMAP keeps.
        init_min_num_inliers: inliers required for the initial image pair.
        abs_pose_min_num_inliers: inliers required to register a further image.
        multiple_models: let COLMAP start a new model when registration stalls
            (the largest one is kept).
        refine_focal_length: refine focal length in bundle adjustment.
        refine_extra_params: refine the radial distortion in bundle adjustment.
        max_reproj_error: observations farther than this from their point's projection (pixels)
            are dropped after bundle adjustment, and triangulation completes and merges tracks
            only within it (COLMAP's ``filter_max_reproj_error``, ``complete_max_reproj_error``,
            ``merge_max_reproj_error``).
        extend_fallback: when the configured run's model (or the shared-camera run's) leaves reachable
            images unregistered (and its cameras are sane), first continue that model (as ``colmap mapper
            --input_path``) registering further images from ``RELAXED_ABS_POSE_INLIERS`` 2D-3D
            inliers: the images already registered keep their poses. A kept fallback run whose
            models leave reachable images out, or split one scene, is continued the same way once
            at the end of the cascade.
        fixed_intrinsics_fallback: when the model is incomplete or has a degenerate camera
            (:func:`degenerate_cameras`), map again with the distortion held at its prior and
            the focal length refined (``"focal length only"``: a few views whose guessed focal
            length is far off run their distortion away when both are free), then with focal
            length and distortion held at their priors (EXIF or the default guess) and the
            reprojection filter at ``FIXED_INTRINSICS_MIN_REPROJ_ERROR`` at least, then refine them in one global
            bundle adjustment (kept only if they stay sane). Refining intrinsics from the first
            pairs can run away; a complete model is a stable place to refine them.
        forward_motion_fallback: when the model is still incomplete, map again allowing an
            initial pair whose camera moved along its viewing direction
            (``init_max_forward_motion`` 1.0) at the initial triangulation angles
            ``FORWARD_MOTION_ANGLES`` (or the configured one, if lower), with the intrinsics
            free, then fixed, then registering from ``RELAXED_ABS_POSE_INLIERS`` inliers.
            COLMAP rejects initial pairs with forward motion above 0.95, and finds none in a
            walk towards a building.
        shared_cameras_fallback: when the configured run's model is incomplete or has implausible
            intrinsics (degenerate cameras, or cameras of one prior whose focal lengths ran apart:
            ``MAX_PRIOR_GROUP_FOCAL_RATIO``), map again with the configured settings on a copy of
            the database in which each group of cameras with the same prior (model, image size,
            prior intrinsics) is one camera (:func:`~patchmatch.colmap.database.copy_with_shared_cameras`):
            one focal length and distortion constrained by all of the group's images (continued
            like the configured run, ``extend_fallback``).
        retry_seeds: other random seeds tried with the configured settings first (when the first
            model is incomplete or degenerate), and with the best fallback's settings last
            (when every run leaves images unregistered).
        init_min_tri_angle: smallest median triangulation angle (degrees) of the initial pair
            (COLMAP: 16°, relaxed by halving when no pair qualifies).
        init_max_forward_motion: largest |t_z| of the unit relative translation of the initial
            pair (COLMAP: 0.95; 1.0 admits pure forward motion).
        num_threads: mapper threads; 1 gives the same model on every run of the same database,
            -1 = all cores (faster bundle adjustment on large scenes, not reproducible).
        random_seed: seed of the mapper (-1 = non-deterministic).
        method: ``"incremental"`` (COLMAP's incremental mapper and the fallbacks above),
            ``"global"`` (GLOMAP, ``pycolmap.global_mapping``: rotation averaging and global
            positioning, one run; faster on large sets) or ``"auto"``: incremental up to
            :data:`AUTO_MAX_INCREMENTAL` reachable images, global above (logged).
        image_names: map only these images (COLMAP's ``image_names``; empty: all). A scene
            graph of separate parts (images linked by verified pairs of ``min_num_matches``
            inliers) is mapped one part at a time this way by :func:`map_database`.
        min_focal_length_ratio, max_focal_length_ratio: a camera whose focal length over its longest
            image side leaves this range has bogus parameters for COLMAP's mapper (its images are
            not used to register others; COLMAP's 0.1 and 10). :func:`map_database` widens it to
            admit every camera's prior with a margin of 2: a telephoto lens (10.5 × its longest
            side) would be bogus from the start and never register.
        check: check every mapper run's models before one is kept
            (:func:`~patchmatch.colmap.check.check_model`): images whose poses disagree with
            their verified two-view geometries, that see too few well-triangulated points, or
            whose camera is degenerate are deregistered and named.
    """

    min_num_matches: int = 15
    min_model_size: int = MIN_MODEL_SIZE
    init_min_num_inliers: int = 100
    abs_pose_min_num_inliers: int = 30
    multiple_models: bool = True
    refine_focal_length: bool = True
    refine_extra_params: bool = True
    max_reproj_error: float = MAX_REPROJ_ERROR
    extend_fallback: bool = True
    fixed_intrinsics_fallback: bool = True
    forward_motion_fallback: bool = True
    shared_cameras_fallback: bool = True
    retry_seeds: int = RETRY_SEEDS
    init_min_tri_angle: float = 16.0
    init_max_forward_motion: float = 0.95
    num_threads: int = MAPPER_THREADS
    random_seed: int = 0
    method: str = "auto"
    image_names: tuple[str, ...] = ()
    min_focal_length_ratio: float = 0.1
    max_focal_length_ratio: float = 10.0
    check: bool = True

    def __post_init__(self):
        # checked here: some invalid COLMAP options abort the process instead of raising
        for field in dataclasses.fields(self):
            type_name = field.type if isinstance(field.type, str) else field.type.__name__
            value, kind = getattr(self, field.name), {"int": int, "bool": bool, "float": (int, float), "str": str,
                                                     "tuple[str, ...]": tuple}[type_name]  # fmt: skip
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                what = "a number" if type_name == "float" else type_name
                raise ValueError(f"MapperConfig: {field.name} must be {what}, got {value!r}")
        checks = {  # field: (valid, the valid range in words)
            "min_num_matches": (self.min_num_matches >= 1, ">= 1"), "min_model_size": (self.min_model_size >= 1, ">= 1"),
            "init_min_num_inliers": (self.init_min_num_inliers >= 1, ">= 1"),
            "abs_pose_min_num_inliers": (self.abs_pose_min_num_inliers >= 1, ">= 1"),
            "max_reproj_error": (0 < self.max_reproj_error < float("inf"), "> 0 pixels"),
            "retry_seeds": (0 <= self.retry_seeds <= 16, "in [0, 16]"),
            "init_min_tri_angle": (0 <= self.init_min_tri_angle <= 90, "in [0, 90] degrees"),
            "init_max_forward_motion": (0 <= self.init_max_forward_motion <= 1, "in [0, 1]"),
            "num_threads": (self.num_threads >= 1 or self.num_threads == -1, ">= 1, or -1 for all cores"),
            "random_seed": (-1 <= self.random_seed < 2**31 - 16, "in [-1, 2**31 - 17] (seed + retries must fit in int32)"),
            "method": (self.method in MAPPER_METHODS, f"one of {MAPPER_METHODS}"),
            "min_focal_length_ratio": (0 < self.min_focal_length_ratio < self.max_focal_length_ratio < float("inf"),
                                       "> 0 and below max_focal_length_ratio"),
        }  # fmt: skip
        bad = [f"{name}={getattr(self, name)!r} (must be {rule})" for name, (ok, rule) in checks.items() if not ok]
        if bad:
            raise ValueError(f"MapperConfig: invalid {', '.join(bad)}")


@dataclass
class MappingAttempt:
    """One run of COLMAP's incremental mapper inside :func:`incremental_mapping`.

    Attributes:
        name: what differed from the configured settings (``"configured"``, ``"shared cameras"``,
            ``"fixed intrinsics"``, ``"forward motion, init 8°"``, ...).
        registered: images registered in its models (0 when none was built).
        usable: of those, the images that passed the checks (:attr:`MapperConfig.check`; without
            them: the registered images whose camera is not degenerate).
        degenerate: :func:`degenerate_cameras` of its models, and the cameras of one prior whose
            focal lengths ran apart (``MAX_PRIOR_GROUP_FOCAL_RATIO``).
        seconds: wall time of the run.
        kept: whether its model is the one returned.
        intrinsics: for the kept run, what its cameras' intrinsics are: ``"refined"`` (by the
            mapper), ``"fixed at priors, refined after"`` (one global bundle adjustment on the
            fixed-intrinsics model; ``"... where it stayed sane"`` when it ran away in some of the
            models) or ``"fixed at priors"`` (it ran away and was dropped); ``intrinsics_note`` says what went wrong, including a camera that COLMAP
            moved away from its prior during a fixed-intrinsics run, and which cameras a
            ``"shared cameras"`` run shared.
        models: registered images of each model after the checks, largest first.
        rejected: ``[{"name", "reason"}]`` of the images the checks deregistered (and that no
            other model of the run holds).
        images: reachable images of the part of the scene graph the run mapped (all of them,
            unless the scene graph has separate parts: each is mapped with its own cascade).
    """

    name: str
    registered: int
    usable: int
    degenerate: list[str]
    seconds: float
    kept: bool = False
    intrinsics: str = ""
    intrinsics_note: str = ""
    models: list[int] = dataclasses.field(default_factory=list)
    rejected: list[dict[str, str]] = dataclasses.field(default_factory=list)
    images: int = 0


# --------------------------------------------------------------------------
# COLMAP's options, one mapper run, one bundle adjustment
# --------------------------------------------------------------------------
def _set_common_options(options, config: MapperConfig):
    """The settings the incremental and the global pipeline options share, set from ``config``."""
    options.min_num_matches = int(config.min_num_matches)
    options.min_model_size = int(config.min_model_size)
    options.image_names = list(config.image_names)
    options.multiple_models = bool(config.multiple_models)
    options.num_threads = int(config.num_threads)
    options.random_seed = int(config.random_seed)
    options.mapper.num_threads = int(config.num_threads)
    options.mapper.random_seed = int(config.random_seed)
    return options


def mapper_options(config: MapperConfig) -> pycolmap.IncrementalPipelineOptions:
    """pycolmap's options for a :class:`MapperConfig`."""
    options = _set_common_options(pycolmap.IncrementalPipelineOptions(), config)
    options.ba_refine_focal_length = bool(config.refine_focal_length)
    options.ba_refine_extra_params = bool(config.refine_extra_params)
    options.mapper.init_min_num_inliers = int(config.init_min_num_inliers)
    options.mapper.init_min_tri_angle = float(config.init_min_tri_angle)
    options.mapper.init_max_forward_motion = float(config.init_max_forward_motion)
    options.mapper.abs_pose_min_num_inliers = int(config.abs_pose_min_num_inliers)
    # The pipeline's own fields: COLMAP copies them over the mapper's (IncrementalPipelineOptions::Mapper()).
    options.min_focal_length_ratio = options.mapper.min_focal_length_ratio = float(config.min_focal_length_ratio)
    options.max_focal_length_ratio = options.mapper.max_focal_length_ratio = float(config.max_focal_length_ratio)
    options.mapper.filter_max_reproj_error = float(config.max_reproj_error)
    options.triangulation.complete_max_reproj_error = float(config.max_reproj_error)
    options.triangulation.merge_max_reproj_error = float(config.max_reproj_error)
    options.triangulation.random_seed = int(config.random_seed)
    return options


#: The files of one COLMAP model: a mapper continuing a model (``input_path``) writes them into
#: its output folder itself, not into a numbered subfolder.
_MODEL_FILES = tuple(f"{n}.{ext}" for n in ("cameras", "images", "points3D", "rigs", "frames") for ext in ("bin", "txt"))


#: Prefix of the hidden folder in the ``sparse`` folder that holds a mapping's runs until its models are final.
_SCRATCH_PREFIX = ".mapping-"


def _remove_models(output_dir: Path) -> None:
    """Removes the mapper's models from ``output_dir``: numbered subfolders and model files."""
    for child in output_dir.iterdir():
        if child.is_dir() and child.name.isdigit():
            shutil.rmtree(child)
        elif child.is_file() and child.name in _MODEL_FILES:
            child.unlink()


def _largest_first(models: Mapping[int, pycolmap.Reconstruction] | None) -> list[pycolmap.Reconstruction]:
    return sorted((models or {}).values(), key=lambda rec: -rec.num_reg_images())


def _run_mapper(name: str, output_dir: Path, config: MapperConfig, run) -> list[pycolmap.Reconstruction]:
    """Calls ``run()`` (a pycolmap mapper writing numbered models into ``output_dir``) seeded from
    ``config``, removes what it wrote, and returns its models, largest first."""
    if output_dir.exists():
        _remove_models(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.random_seed >= 0:
        pycolmap.set_random_seed(int(config.random_seed))
    models = run()
    _remove_models(output_dir)
    models = _largest_first(models)
    if models:
        logger.info("%s built %d model(s) of %s images", name, len(models), ", ".join(str(m.num_reg_images()) for m in models))
    return models


def map_once(
    database: Path, image_dir: Path, output_dir: Path, config: MapperConfig,
    input_model: pycolmap.Reconstruction | None = None,
) -> list[pycolmap.Reconstruction]:  # fmt: skip
    """One incremental mapper run, returning all its models, largest first (empty when COLMAP
    built none).

    With ``input_model`` it continues that model (registers further images). COLMAP writes its
    models into ``output_dir``; they are removed again (the caller writes the ones it keeps).
    """
    with tempfile.TemporaryDirectory() as start:
        if input_model is not None:
            input_model.write(start)
        return _run_mapper("COLMAP", output_dir, config, lambda: pycolmap.incremental_mapping(
            str(database), str(image_dir), str(output_dir), options=mapper_options(config),
            input_path=start if input_model is not None else ""))  # fmt: skip


def global_options(config: MapperConfig) -> pycolmap.GlobalPipelineOptions:
    """pycolmap's options of the global mapper (GLOMAP) for a :class:`MapperConfig`:
    :data:`GLOBAL_TRACKS_PER_IMAGE`, and bundle adjustment by Ceres' iterative Schur solver
    (Schur-Jacobi preconditioned), whose cost per iteration grows with the observations, not with
    the cube of the images as the sparse direct solver's does where images share many points."""
    options = _set_common_options(pycolmap.GlobalPipelineOptions(), config)
    options.mapper.track_required_tracks_per_view = GLOBAL_TRACKS_PER_IMAGE
    solver = options.mapper.bundle_adjustment.ceres.solver_options
    solver.linear_solver_type = type(solver.linear_solver_type).ITERATIVE_SCHUR
    solver.preconditioner_type = type(solver.preconditioner_type).SCHUR_JACOBI
    return options


def global_map_once(database: Path, image_dir: Path, output_dir: Path, config: MapperConfig) -> list[pycolmap.Reconstruction]:
    """One run of the global mapper (GLOMAP), all its models, largest first (empty when none)."""
    return _run_mapper("GLOMAP", output_dir, config, lambda: pycolmap.global_mapping(
        str(database), str(image_dir), str(output_dir), options=global_options(config)))


def global_bundle_adjustment(
    reconstruction: pycolmap.Reconstruction, options: pycolmap.BundleAdjustmentOptions
) -> None:
    """One global bundle adjustment of all registered images, in place.

    The steps of ``pycolmap.bundle_adjustment`` (observations behind a camera dropped, the
    gauge fixed by two camera poses, errors of the points updated), without its side effect:
    that function resets COLMAP's log settings (``pycolmap.logging.minloglevel`` to INFO, for
    every later COLMAP call) and writes its own log lines, whatever :func:`set_verbosity` chose.
    """
    if reconstruction.num_reg_frames() == 0:
        return
    pycolmap.ObservationManager(reconstruction).filter_observations_with_negative_depth()
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in reconstruction.reg_image_ids():
        config.add_image(image_id)
    config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    pycolmap.create_default_bundle_adjuster(options, config, reconstruction).solve()
    reconstruction.update_point_3d_errors()


# --------------------------------------------------------------------------
# Degenerate cameras
# --------------------------------------------------------------------------
def _degenerate_by_camera(
    reconstruction: pycolmap.Reconstruction, priors: Mapping[int, float] | None,
    max_focal_change: float = MAX_FOCAL_CHANGE, max_radial: float = MAX_RADIAL,
) -> dict[int, str]:  # fmt: skip
    bad = {}
    priors = priors or {}
    for cam_id, cam in reconstruction.cameras.items():
        f = float(cam.mean_focal_length())
        extra = [float(cam.params[i]) for i in cam.extra_params_idxs()]
        prior = priors.get(cam_id)
        why = []
        if not np.isfinite(f) or f <= 0:
            why.append(f"focal {f:.1f} px")
        elif prior and not (prior / max_focal_change <= f <= prior * max_focal_change):
            why.append(f"focal {f:.1f} px (prior {prior:.1f} px)")
        if any(not np.isfinite(e) or abs(e) > max_radial for e in extra):
            why.append(f"distortion {[round(e, 3) for e in extra]}")
        if why:
            bad[cam_id] = ", ".join(why)
    return bad


def degenerate_cameras(
    reconstruction: pycolmap.Reconstruction,
    priors: Mapping[int, float] | None = None,
    max_focal_change: float = MAX_FOCAL_CHANGE,
    max_radial: float = MAX_RADIAL,
) -> list[str]:
    """Cameras of a model whose intrinsics ran away in bundle adjustment.

    Args:
        reconstruction: the model.
        priors: camera id -> focal-length prior in pixels (the database's cameras); without
            one only the sign of the focal length is checked.
        max_focal_change: a focal length more than this factor away from its prior is degenerate.
        max_radial: a distortion parameter beyond ±this is degenerate (COLMAP's radial models,
            coefficients on normalised image coordinates).

    Returns:
        One line per degenerate camera (``"camera 16: focal -1002.2 px (prior 1035.4 px), ..."``);
        empty when all are sane.
    """
    bad = _degenerate_by_camera(reconstruction, priors, max_focal_change, max_radial)
    return [f"camera {cam_id}: {why}" for cam_id, why in bad.items()]


def prior_group_apart(
    reconstruction: pycolmap.Reconstruction, groups: Mapping[int, int], max_ratio: float = MAX_PRIOR_GROUP_FOCAL_RATIO
) -> dict[int, str]:
    """Cameras of one prior whose focal lengths ran apart in bundle adjustment.

    Args:
        reconstruction: the model; only the cameras of its registered images count.
        groups: camera id → the id naming its group, for the cameras that share a prior (same
            model, image size and prior intrinsics; :func:`prior_groups`).
        max_ratio: a group whose largest focal length is more than this factor above its smallest
            ran apart: every camera of it is named.

    Returns:
        camera id → why (``"focal 1828.0 px; the 5 cameras of its prior ran apart to 1222.2-1828.0 px
        (more than x1.15)"``); empty when every group agrees.
    """
    members: dict[int, list[int]] = {}
    for cam_id in sorted({reconstruction.images[i].camera_id for i in reconstruction.reg_image_ids()}):
        if cam_id in groups:
            members.setdefault(groups[cam_id], []).append(cam_id)
    bad = {}
    for cams in members.values():
        focal = {c: float(reconstruction.cameras[c].mean_focal_length()) for c in cams}
        low, high = min(focal.values()), max(focal.values())
        if len(cams) > 1 and 0 < low and high > max_ratio * low:  # a non-positive focal is degenerate anyway
            for c in cams:
                bad[c] = (f"focal {focal[c]:.1f} px; the {len(cams)} cameras of its prior ran apart to "
                          f"{low:.1f}-{high:.1f} px (more than x{max_ratio:g})")  # fmt: skip
    return bad


def _implausible(reconstruction: pycolmap.Reconstruction, scene: _Scene) -> dict[int, str]:
    """Camera id → why, for the degenerate cameras and those of a prior group that ran apart."""
    bad = prior_group_apart(reconstruction, scene.groups)
    bad.update(_degenerate_by_camera(reconstruction, scene.priors))
    return bad


def _refine_intrinsics(
    reconstruction: pycolmap.Reconstruction, config: MapperConfig, scene: _Scene
) -> tuple[pycolmap.Reconstruction, dict[int, str], set[int]]:
    """A copy refined by one global bundle adjustment with the intrinsics free, ``{}`` and ``set()``;
    or, when they run away, the input itself, the implausible cameras of the refined copy (camera
    id → why: degenerate, or its prior group ran apart) and, of those, the cameras whose prior is
    no measurement either: degenerate ones, and those of a group that ran apart whose prior focal
    length is a guess (no EXIF). A guessed prior held fixed leaves poses wrong (entry-P10's halves:
    1843 px for the true 1380 px, 2-4 of 5 images wrongly registered); a measured one is kept."""
    refined = _refined_copy(reconstruction, config.refine_focal_length, config.refine_extra_params, config.num_threads)
    bad = _implausible(refined, scene)
    if bad:
        logger.warning("refined intrinsics ran away (%s); keeping the prior intrinsics",
                       "; ".join(f"camera {c}: {why}" for c, why in list(bad.items())[:3]))  # fmt: skip
        degenerate = _degenerate_by_camera(refined, scene.priors)
        return reconstruction, bad, {c for c in bad if c in degenerate or c not in scene.measured}
    return refined, {}, set()


def _refined_copy(reconstruction: pycolmap.Reconstruction, focal_length: bool, extra_params: bool,
                  num_threads: int) -> pycolmap.Reconstruction:  # fmt: skip
    """A copy of ``reconstruction`` after one global bundle adjustment refining these intrinsics
    (the principal point held); one thread gives the same result on every run."""
    refined = pycolmap.Reconstruction(reconstruction)
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.refine_focal_length, options.refine_extra_params = bool(focal_length), bool(extra_params)
    options.refine_principal_point = False
    options.ceres.solver_options.num_threads = int(num_threads)
    global_bundle_adjustment(refined, options)
    return refined


def calibration_drift(
    reconstruction: pycolmap.Reconstruction, max_ratio: float = MAX_CALIBRATION_DRIFT
) -> dict[int, tuple[float, float]]:
    """Cameras whose fixed focal length the images disagree with: ``{camera id: (focal length,
    refined focal length)}`` (pixels) of those that one global bundle adjustment of a copy, with
    the focal lengths free (distortion and principal point held), moves by more than ``max_ratio``.

    A wrong calibration held fixed still gives a model, with small residuals and wrong poses
    (vesta with its focal length 10 times too small: 4/4 registered, 8.8° rotation error); this
    says so without ground truth. Empty when every camera agrees (or the model is empty).
    """
    if reconstruction.num_reg_frames() == 0:
        return {}
    refined = _refined_copy(reconstruction, focal_length=True, extra_params=False, num_threads=1)
    drift = {}
    for camera_id, camera in reconstruction.cameras.items():
        given, free = camera.mean_focal_length(), refined.cameras[camera_id].mean_focal_length()
        if not (1 / max_ratio <= free / given <= max_ratio):
            drift[int(camera_id)] = (float(given), float(free))
    return drift


# --------------------------------------------------------------------------
# The cascade of runs
# --------------------------------------------------------------------------
def _fixed_intrinsics(config: MapperConfig) -> MapperConfig:
    return dataclasses.replace(config, refine_focal_length=False, refine_extra_params=False,
                               max_reproj_error=max(config.max_reproj_error, FIXED_INTRINSICS_MIN_REPROJ_ERROR))  # fmt: skip


def _forward_motion_runs(config: MapperConfig, use_fixed: bool) -> list[tuple[str, MapperConfig]]:
    """Forward-motion initialisation at each angle (intrinsics free, then fixed), then with the
    relaxed registration threshold: the last images of a walk see few well-triangulated points."""
    angles = sorted({min(a, config.init_min_tri_angle) for a in FORWARD_MOTION_ANGLES}, reverse=True)
    bases = [("", config)] + ([(", fixed intrinsics", _fixed_intrinsics(config))] if use_fixed else [])
    runs = [(f"forward motion, init {angle:g}°{name}",
             dataclasses.replace(base, init_max_forward_motion=1.0, init_min_tri_angle=angle))
            for angle in angles for name, base in bases]  # fmt: skip
    relaxed = min(RELAXED_ABS_POSE_INLIERS, config.abs_pose_min_num_inliers)
    if relaxed < config.abs_pose_min_num_inliers:
        runs += [(f"forward motion, init {angle:g}°, registration from {relaxed} inliers",
                  dataclasses.replace(config, init_max_forward_motion=1.0, init_min_tri_angle=angle,
                                      abs_pose_min_num_inliers=relaxed))
                 for angle in angles]  # fmt: skip
    return runs


def mapping_attempts(config: MapperConfig) -> list[tuple[str, MapperConfig]]:
    """The fallback runs after the configured one, in order: other seeds, fixed intrinsics,
    forward-motion initialisation (see :class:`MapperConfig`). Each is ``(name, settings)``."""
    use_fixed = config.fixed_intrinsics_fallback and (config.refine_focal_length or config.refine_extra_params)
    runs = [(f"configured, seed {config.random_seed + k}", dataclasses.replace(config, random_seed=config.random_seed + k))
            for k in range(1, config.retry_seeds + 1)]  # fmt: skip
    if use_fixed and config.refine_focal_length and config.refine_extra_params:  # distortion held, focal length free
        runs += [("focal length only", dataclasses.replace(config, refine_extra_params=False))]
    runs += [("fixed intrinsics", _fixed_intrinsics(config))] if use_fixed else []
    if config.forward_motion_fallback:
        runs += _forward_motion_runs(config, use_fixed)
    return runs


@dataclass(frozen=True)
class _Scene:
    """What the database says about the mapping problem."""

    database: Path
    reachable: int  # images in a two-view geometry with enough inliers (all images if none is verified)
    verified: bool  # the database holds verified pairs (no fallback can help otherwise)
    priors: dict[int, float]  # camera id -> focal-length prior (pixels)
    params: dict[int, np.ndarray]  # camera id -> the database's intrinsics
    links: frozenset[tuple[int, int]] = frozenset()  # image-id pairs with enough verified inliers
    groups: dict[int, int] = dataclasses.field(default_factory=dict)  # camera id -> its prior group (prior_groups)
    measured: frozenset[int] = frozenset()  # cameras whose focal-length prior is measured (EXIF), not guessed


def prior_groups(db: pycolmap.Database) -> dict[int, int]:
    """Camera id → the smallest camera id of its group, for the cameras of an open database that
    share a prior (same model, image size and intrinsics, and the same prior-focal flag) with at
    least one other; empty where a rig holds several cameras or a frame several images (cameras
    are not shared there)."""
    if any(r.num_sensors() > 1 for r in db.read_all_rigs()) or any(f.num_data_ids() > 1 for f in db.read_all_frames()):
        return {}
    by_prior: dict[tuple, list[int]] = {}
    for camera in db.read_all_cameras():
        key = (camera.model.name, camera.width, camera.height, tuple(np.round(np.array(camera.params, dtype=np.float64), 9)),
               bool(camera.has_prior_focal_length))  # fmt: skip
        by_prior.setdefault(key, []).append(int(camera.camera_id))
    return {c: min(ids) for ids in by_prior.values() if len(ids) > 1 for c in ids}


def _read_scene(database: Path, config: MapperConfig) -> _Scene:
    with open_database(database) as db:
        num_verified = db.num_verified_image_pairs()
        cameras = db.read_all_cameras()
        reachable = db.num_images()
        groups = prior_groups(db)
    links: frozenset[tuple[int, int]] = frozenset()
    if num_verified > 0:  # an image without a verified pair (e.g. no keypoints) never registers
        geometries = table_pairs(database, "two_view_geometries")
        links = frozenset(pair for pair, inliers in geometries.items() if inliers >= config.min_num_matches)
        reachable = len({i for pair in links for i in pair})
    return _Scene(database, reachable, num_verified > 0, {c.camera_id: float(c.mean_focal_length()) for c in cameras},
                  {c.camera_id: np.array(c.params, dtype=np.float64) for c in cameras}, links, groups,
                  frozenset(c.camera_id for c in cameras if c.has_prior_focal_length))  # fmt: skip


@dataclass(frozen=True)
class _Run:
    name: str
    config: MapperConfig
    extends: bool = False  # continues the configured run's largest model instead of starting anew
    shared: bool = False  # maps the copy of the database whose cameras of one prior are one camera


def _planned_runs(config: MapperConfig, scene: _Scene) -> list[_Run]:
    """The configured run, the shared-camera run, each followed by its extension; then the fallbacks."""
    relaxed = min(RELAXED_ABS_POSE_INLIERS, config.abs_pose_min_num_inliers)
    extend = config.extend_fallback and scene.verified and relaxed < config.abs_pose_min_num_inliers
    runs = []
    for name, shared in [("configured", False), ("shared cameras", True)]:
        if shared and not (config.shared_cameras_fallback and scene.verified and scene.groups):
            continue
        runs.append(_Run(name, config, shared=shared))
        if extend:
            runs.append(_Run(f"{name}, extended (registration from {relaxed} inliers)",
                             dataclasses.replace(config, abs_pose_min_num_inliers=relaxed, multiple_models=False),
                             extends=True, shared=shared))  # fmt: skip
    return runs + ([_Run(name, c) for name, c in mapping_attempts(config)] if scene.verified else [])


def _reg_ids(model: pycolmap.Reconstruction) -> set[int]:
    return set(model.reg_image_ids())


def _models_linked(models: list[pycolmap.Reconstruction], scene: _Scene) -> bool:
    """Whether a verified pair links the largest model's images to another model's (one scene split)."""
    if len(models) < 2:
        return False
    first = _reg_ids(models[0])
    others = set().union(*(_reg_ids(m) for m in models[1:])) - first
    return any((a in first and b in others) or (b in first and a in others) for a, b in scene.links)


@dataclass
class _Search:
    """The best models so far among the runs of :func:`incremental_mapping`."""

    config: MapperConfig  # the configured settings
    scene: _Scene
    attempts: list[MappingAttempt]
    models: list[pycolmap.Reconstruction] = dataclasses.field(default_factory=list)  # checked, largest first
    run: _Run | None = None  # the run that built the models
    attempt: MappingAttempt | None = None  # that run's (or the first failed run's, while none built one)
    retries: int = 0  # seed retries left for the best fallback's settings
    workdir: Path | None = None  # where the shared-camera copy of the database goes
    shared_run: tuple[list[pycolmap.Reconstruction], MappingAttempt] | None = None  # the shared-camera run's, checked

    def base(self, run: _Run) -> tuple[list[pycolmap.Reconstruction], MappingAttempt | None]:
        """The models an extending ``run`` continues, and their attempt: the shared-camera run's, or the best."""
        if run.shared:
            return self.shared_run or ([], None)
        return self.models, self.attempt

    def database(self, run: _Run) -> Path:
        """The database ``run`` maps: the scene's, or its copy with shared cameras (made once)."""
        if not run.shared:
            return self.scene.database
        path = self.workdir / "shared-cameras.db"
        if not path.exists():
            copy_with_shared_cameras(self.scene.database, path, self.scene.groups)
        return path

    def usable(self) -> int:
        return len(set().union(*(_reg_ids(m) for m in self.models))) if self.models else 0

    def complete(self) -> bool:
        """Every reachable image is in one of the models (separate scenes may be separate models)."""
        return bool(self.models) and self.usable() == self.scene.reachable

    def decide(self, run: _Run) -> str:
        """``"run"``, ``"skip"`` or ``"stop"`` for the next run of the cascade."""
        if run.extends:  # only a sane configured (or shared-camera) run is continued: when incomplete, or one scene split
            models, attempt = self.base(run)
            sane = models and attempt.name == ("shared cameras" if run.shared else "configured") and not attempt.degenerate
            return "run" if sane and (not self.complete() or _models_linked(models, self.scene)) else "skip"
        if self.complete():
            if not self.attempt.degenerate:
                return "stop"
            init = (run.config.init_max_forward_motion, run.config.init_min_tri_angle)
            best = (self.run.config.init_max_forward_motion, self.run.config.init_min_tri_angle)
            if init != best:
                return "skip"  # complete but degenerate: other seeds or fixed intrinsics can help, another start not
        return "run"

    def record(self, run: _Run, models: list[pycolmap.Reconstruction], seconds: float) -> None:
        if run.extends and models:  # the continued run's other models, without the images now in the continued one
            models = models[:1] + _without(self.base(run)[0][1:], _reg_ids(models[0]))
        attempt, models = _checked(run.name, models, self.scene, self.config, seconds)
        self.attempts.append(attempt)
        if run.shared and not run.extends:
            self.shared_run = (models, attempt)
        # most usable images; then fewest degenerate cameras; then fewest models; then the earlier run
        if models and (not self.models or (attempt.usable, -len(attempt.degenerate), -len(models))
                       > (self.attempt.usable, -len(self.attempt.degenerate), -len(self.models))):  # fmt: skip
            self.models, self.run, self.attempt = models, run, attempt
        elif self.attempt is None:
            self.attempt = attempt

    def seed_retry(self) -> _Run | None:
        """The best fallback's settings with the next seed, when every run left images out (the
        configured settings had their other seeds first)."""
        if (self.retries <= 0 or not self.models or self.complete() or self.run.config == self.config
                or self.run.config.random_seed != self.config.random_seed or self.run.extends):  # fmt: skip
            return None
        seed = self.config.random_seed + self.config.retry_seeds - self.retries + 1
        self.retries -= 1
        return _Run(f"{self.attempt.name}, seed {seed}", dataclasses.replace(self.run.config, random_seed=seed),
                    shared=self.run.shared)  # fmt: skip

    def why_again(self) -> str:
        if self.attempt.degenerate:
            return "; ".join(self.attempt.degenerate[:3])
        if self.complete():
            return f"{len(self.models)} models of one scene"
        return f"{self.attempt.usable} of {self.scene.reachable} reachable images registered and checked"


def _without(models: list[pycolmap.Reconstruction], image_ids: set[int]) -> list[pycolmap.Reconstruction]:
    """Copies of ``models`` with ``image_ids`` deregistered; models left with fewer than 2 images dropped."""
    out = []
    for model in models:
        model = pycolmap.Reconstruction(model)
        for image_id in _reg_ids(model) & image_ids:
            model.deregister_frame(model.images[image_id].frame_id)
        if model.num_reg_images() >= 2:
            out.append(model)
    return out


def _checked(name: str, models: list[pycolmap.Reconstruction], scene: _Scene, config: MapperConfig,
             seconds: float) -> tuple[MappingAttempt, list[pycolmap.Reconstruction]]:  # fmt: skip
    """The attempt record of one run and its models after the checks (:func:`check_model`), largest
    first; models left with fewer than ``config.min_model_size`` images are dropped (two images are
    only their own two-view geometry: nothing checks it)."""
    degenerate, rejected, registered, usable, kept = [], {}, set(), set(), []
    for model in models:
        bad = _implausible(model, scene)
        degenerate += [f"camera {c}: {why}" for c, why in bad.items() if f"camera {c}: {why}" not in degenerate]
        registered |= {model.images[i].name for i in model.reg_image_ids()}
        if config.check:
            rejected.update(check_model(model, scene.database, bad).rejected)
        if model.num_reg_images() >= max(2, config.min_model_size):
            kept.append(model)
            usable |= {model.images[i].name for i in model.reg_image_ids() if model.images[i].camera_id not in bad}
    kept.sort(key=lambda m: -m.num_reg_images())
    rejected = {n: why for n, why in rejected.items() if n not in usable}
    if rejected:
        more = f"; and {len(rejected) - 5} more (report.json: mapping_attempts)" if len(rejected) > 5 else ""
        logger.info("%s mapping: the checks rejected %d image(s): %s%s", name, len(rejected),
                    "; ".join(f"{n} ({why})" for n, why in list(rejected.items())[:5]), more)  # fmt: skip
    attempt = MappingAttempt(name, len(registered), len(usable), degenerate, round(seconds, 2),
                             models=[m.num_reg_images() for m in kept],
                             rejected=[{"name": n, "reason": why} for n, why in sorted(rejected.items())])  # fmt: skip
    return attempt, kept


def _search(image_dir: Path, output_dir: Path, search: _Search, runs: list[_Run]) -> None:
    """Runs the cascade until the models hold every reachable image with sane cameras (appending
    seed retries at its end)."""
    for index, run in enumerate(runs):  # a list grown while iterating: the loop reaches the retries
        decision = search.decide(run)
        if decision == "stop":
            break
        if decision == "skip":
            continue
        if index > 0:
            logger.info("%s; mapping again (%s)", search.why_again(), run.name)
        _map_and_record(image_dir, output_dir, search, run, search.base(run)[0][0] if run.extends else None)
        retry = search.seed_retry() if index == len(runs) - 1 else None
        if retry is not None:
            runs.append(retry)
    last = _extension_of_best(search)
    if last is not None:
        logger.info("%s; mapping again (%s)", search.why_again(), last.name)
        _map_and_record(image_dir, output_dir, search, last, search.models[0])


def _map_and_record(image_dir: Path, output_dir: Path, search: _Search, run: _Run,
                    start: pycolmap.Reconstruction | None) -> None:  # fmt: skip
    """One mapper run of ``run`` (continuing ``start`` if given), recorded in ``search``."""
    t0 = time.perf_counter()
    models = map_once(search.database(run), image_dir, output_dir, run.config, input_model=start)
    search.record(run, models, time.perf_counter() - t0)


def _extension_of_best(search: _Search) -> _Run | None:
    """The kept fallback run continued once (its largest model, registration from
    ``RELAXED_ABS_POSE_INLIERS`` inliers, as ``extend_fallback`` continues the configured run),
    when its models leave reachable images out or split one scene: a walk mapped with
    forward-motion initialisation can end in two models that this joins (lund: 15 + 6 images,
    then 21 in one). None when the cascade's own extensions apply or nothing would change."""
    if not (search.models and search.config.extend_fallback and search.scene.verified) or search.run.extends:
        return None
    if search.attempt.degenerate or search.attempt.name in ("configured", "shared cameras"):
        return None
    if search.complete() and not _models_linked(search.models, search.scene):
        return None
    relaxed = min(RELAXED_ABS_POSE_INLIERS, search.run.config.abs_pose_min_num_inliers)
    config = dataclasses.replace(search.run.config, abs_pose_min_num_inliers=relaxed, multiple_models=False)
    return _Run(f"{search.attempt.name}, extended (registration from {relaxed} inliers)", config, extends=True,
                shared=search.run.shared)  # fmt: skip


def _settle_intrinsics(search: _Search) -> list[pycolmap.Reconstruction]:
    """Labels the kept run's intrinsics; a fixed-intrinsics run's models get them refined in one
    global bundle adjustment each (kept if they stay sane). With the checks on, the images of a
    camera whose refinement runs away are rejected (of a camera whose prior group ran apart, only
    where its prior focal length is a guess): their images disagree with the prior intrinsics
    (e.g. a narrow field of view far from the default focal length), so their poses are wrong too."""
    attempt, config = search.attempt, search.config
    refined = search.run.config.refine_focal_length or search.run.config.refine_extra_params
    attempt.intrinsics = "refined" if refined else "fixed at priors"
    if search.run.shared:
        attempt.intrinsics_note = _shared_note(search.scene.groups)
    if refined:
        return search.models
    notes, models, ran_away, sane = [], [], False, False
    params = search.scene.params
    for model in search.models:
        # COLMAP can still move a camera without a focal-length prior in a fixed-intrinsics run
        moved = [cid for cid, cam in model.cameras.items()
                 if cid in params and not np.allclose(np.array(cam.params), params[cid])]  # fmt: skip
        if moved:
            notes.append(f"COLMAP changed the intrinsics of camera(s) {moved[:5]} during mapping")
        if config.refine_focal_length or config.refine_extra_params:
            model, bad, wrong = _refine_intrinsics(model, config, search.scene)
            if bad:
                ran_away = True
                notes.append("refinement in one bundle adjustment ran away: "
                             + "; ".join(f"camera {c}: {why}" for c, why in list(bad.items())[:3]))  # fmt: skip
                if config.check and wrong:
                    _reject_cameras(model, {c: bad[c] for c in wrong}, attempt)
            else:
                sane = True
        if model.num_reg_images() >= max(2, config.min_model_size):
            models.append(model)
    if sane:  # refined in every model, or in those where the refinement stayed sane
        attempt.intrinsics = "fixed at priors, refined after" + (" where it stayed sane" if ran_away else "")
    # an image rejected in one model but registered in another (COLMAP's models may overlap) is registered
    registered = {m.images[i].name for m in models for i in m.reg_image_ids()}
    attempt.rejected = [item for item in attempt.rejected if item["name"] not in registered]
    attempt.intrinsics_note = "; ".join(([attempt.intrinsics_note] if attempt.intrinsics_note else []) + notes)
    attempt.models = [m.num_reg_images() for m in models]
    attempt.usable = len({m.images[i].name for m in models for i in m.reg_image_ids()})
    return sorted(models, key=lambda m: -m.num_reg_images())


def _shared_note(groups: Mapping[int, int]) -> str:
    """What a shared-camera run shared: ``"the 5 cameras of one prior (1, 2, 3, 4, 5) as camera 1"``."""
    members: dict[int, list[int]] = {}
    for cam_id, head in sorted(groups.items()):
        members.setdefault(head, []).append(cam_id)
    return "; ".join(f"the {len(ids)} cameras of one prior ({', '.join(map(str, ids[:8]))}{', …' if len(ids) > 8 else ''}) "
                     f"as camera {head}" for head, ids in members.items())  # fmt: skip


def _reject_cameras(model: pycolmap.Reconstruction, bad: Mapping[int, str], attempt: MappingAttempt) -> None:
    """Deregisters, in place, the images of the cameras ``bad`` (id → why) and names them in ``attempt``."""
    for image_id in sorted(model.reg_image_ids()):
        image = model.images[image_id]
        if image.camera_id in bad:
            why = f"intrinsics at their prior disagree with the images (refined, they run away: {bad[image.camera_id]})"
            attempt.rejected.append({"name": image.name, "reason": why})
            model.deregister_frame(image.frame_id)
    attempt.rejected.sort(key=lambda item: item["name"])
    drop_short_tracks(model)


def map_database(
    database: str | os.PathLike,
    image_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: MapperConfig = MapperConfig(),
    attempts: list[MappingAttempt] | None = None,
) -> list[pycolmap.Reconstruction]:
    """Maps a verified database and writes every model: ``output_dir/0``, ``1``, … largest first.

    With ``config.method == "incremental"`` (or ``"auto"`` up to :data:`AUTO_MAX_INCREMENTAL`
    reachable images), COLMAP's incremental mapper; when its models leave
    reachable images out (an image in a two-view geometry with ``min_num_matches`` inliers), or
    the checks reject some, or a camera is degenerate, the fallbacks of ``config``
    (:class:`MapperConfig`: the largest model continued, other seeds, fixed intrinsics,
    forward-motion initialisation) map again until the models hold every reachable image with
    sane cameras. Separate scenes are separate models: when the models of one run hold every
    reachable image, no other run is made (one scene split in models, linked by verified pairs,
    is first continued once). A scene graph of separate parts (no verified pair between them: two
    places photographed into one folder) is mapped one part at a time, each with its own cascade
    and mapper (``"auto"`` decides by the part's size), so one part's fallbacks neither re-map nor
    change another's models; parts smaller than ``min_model_size`` are left unregistered
    (:func:`unregistered_reasons` says why an image is in no model). The run with most usable
    images is kept (on a tie, the one with
    fewer degenerate cameras, then the earlier). With ``"global"``, one run of GLOMAP; when the
    checks reject images of its model or a camera is degenerate (signs of a wrong model, seen on
    temple-ring's ring of 16 views), or it builds none, the incremental cascade maps the part too
    (up to :data:`AUTO_MAX_INCREMENTAL` images: above, GLOMAP's checked model is kept, with a
    warning), and the run with most usable images is kept.
    Every run's models are checked first (:attr:`MapperConfig.check`): images that fail are
    deregistered and named in their :class:`MappingAttempt`.

    Args:
        database: the database with verified two-view geometries.
        image_dir: the image folder (COLMAP reads colours from it).
        output_dir: the ``sparse`` folder; created, and emptied of earlier numbered models first
            (a run stopped part-way leaves none: the mapper's runs go to a hidden folder in it,
            and each kept model is moved in whole at the end).
        config: mapper settings.
        attempts: if given, a :class:`MappingAttempt` is appended for every mapper run.

    Returns:
        The models written, largest first (empty when none was built).

    Raises:
        FileNotFoundError: the database or the image folder does not exist.
        OSError: ``ENOSPC``, too little free space for the models.
    """
    database = require_database(database)
    image_dir, output_dir = Path(image_dir), Path(output_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist")
    config = _admit_priors(database, config)
    scene = _read_scene(database, config)
    output_dir.mkdir(parents=True, exist_ok=True)
    _remove_models(output_dir)  # first: a run stopped before the end leaves no model, never a partial one
    for stale in output_dir.glob(f"{_SCRATCH_PREFIX}*"):  # of a killed run
        shutil.rmtree(stale, ignore_errors=True)
    models: list[pycolmap.Reconstruction] = []
    # the mapper writes its runs' models as it goes: they stay in a hidden folder beside the result
    with tempfile.TemporaryDirectory(prefix=_SCRATCH_PREFIX, dir=output_dir) as scratch:
        runs = Path(scratch) / "runs"
        for part, part_config in _scene_parts(database, scene, config):
            models += _map_part(image_dir, runs, part, part_config, [] if attempts is None else attempts)
        models.sort(key=lambda m: -m.num_reg_images())
        if not models:
            logger.warning("COLMAP built no model from %s", database)
        for index, model in enumerate(models):  # each model whole, then moved in by one rename
            os.replace(write_reconstruction(model, Path(scratch) / "models" / str(index)), output_dir / str(index))
    return models


def _admit_priors(database: Path, config: MapperConfig) -> MapperConfig:
    """``config`` with its focal-length ratio range widened to hold every camera's prior focal length
    over its longest side with a margin of 2 (:attr:`MapperConfig.max_focal_length_ratio`)."""
    with open_database(database) as db:
        ratios = [c.mean_focal_length() / max(c.width, c.height) for c in db.read_all_cameras() if max(c.width, c.height) > 0]
    if not ratios:
        return config
    low, high = min(config.min_focal_length_ratio, min(ratios) / 2), max(config.max_focal_length_ratio, max(ratios) * 2)
    if (low, high) != (config.min_focal_length_ratio, config.max_focal_length_ratio):
        logger.info("focal lengths of %.3g-%.3g x the longest image side admitted (priors %.3g-%.3g)", low, high,
                    min(ratios), max(ratios))  # fmt: skip
    return dataclasses.replace(config, min_focal_length_ratio=low, max_focal_length_ratio=high)


def unregistered_reasons(
    database: str | os.PathLike, models: list[pycolmap.Reconstruction], config: MapperConfig = MapperConfig()
) -> dict[str, str]:
    """Why each image of the database is in none of ``models``: no verified pair with
    ``config.min_num_matches`` inliers, a part of the scene graph smaller than
    ``config.min_model_size`` images, or not registered by the mapper.

    Returns:
        ``{image name: reason}`` of the database's images that no model holds.
    """
    scene = _read_scene(Path(database), config)
    registered = {m.images[i].name for m in models for i in m.reg_image_ids()}
    linked = {i for pair in scene.links for i in pair}
    small = {i for part in linked_groups(linked, sorted(scene.links)) if len(part) < config.min_model_size for i in part}
    with open_database(database) as db:
        names = {image.image_id: image.name for image in db.read_all_images()}
    reasons = {}
    for image_id, name in sorted(names.items(), key=lambda item: item[1]):
        if name in registered:
            continue
        if image_id not in linked:
            reasons[name] = f"no verified image pair with {config.min_num_matches} or more inliers"
        elif image_id in small:
            reasons[name] = f"its images linked by verified pairs are fewer than {config.min_model_size}"
        else:
            reasons[name] = "the mapper did not register it (or the checks left it out)"
    return reasons


def _scene_parts(database: Path, scene: _Scene, config: MapperConfig) -> list[tuple[_Scene, MapperConfig]]:
    """The parts of the scene graph to map one at a time: each connected part of
    ``config.min_model_size`` images at least (its images named in its config), or the whole
    scene when it is one part."""
    parts = [p for p in linked_groups({i for pair in scene.links for i in pair}, sorted(scene.links))
             if len(p) >= config.min_model_size]  # fmt: skip
    if config.image_names or len(parts) < 2:
        return [(scene, config)]
    with open_database(database) as db:
        names = {image.image_id: image.name for image in db.read_all_images()}
    logger.info("the scene graph has %d separate parts (%s images): each is mapped on its own", len(parts),
                ", ".join(str(len(p)) for p in parts))  # fmt: skip
    return [(dataclasses.replace(scene, reachable=len(p), links=frozenset(pair for pair in scene.links if pair[0] in p)),
             dataclasses.replace(config, image_names=tuple(sorted(names[i] for i in p)))) for p in parts]  # fmt: skip


def _map_part(image_dir: Path, output_dir: Path, scene: _Scene, config: MapperConfig,
              attempts: list[MappingAttempt]) -> list[pycolmap.Reconstruction]:  # fmt: skip
    """The models of one part of the scene (the kept run of its cascade, or GLOMAP's), checked
    and settled (:func:`map_database`); its runs appended to ``attempts``."""
    if 2 <= scene.reachable < config.min_model_size:  # a two-image project still gets its model
        config = dataclasses.replace(config, min_model_size=scene.reachable)
    search = _Search(config, scene, [], retries=config.retry_seeds if scene.verified else 0)
    method = config.method
    if method == "auto":
        method = "incremental" if scene.reachable <= AUTO_MAX_INCREMENTAL else "global"
        if method == "global":
            logger.info("%d images to map (more than %d): the global mapper (GLOMAP); --mapper incremental for "
                        "COLMAP's incremental one", scene.reachable, AUTO_MAX_INCREMENTAL)  # fmt: skip
    if method == "global":
        t0 = time.perf_counter()
        run = _Run("global", config)
        search.record(run, global_map_once(scene.database, image_dir, output_dir, config), time.perf_counter() - t0)
        # no model, or signs of a wrong one (not mere gaps: a large set would be mapped twice for them)
        if config.check and (not search.models or search.attempt.rejected or search.attempt.degenerate):
            why = search.why_again() if search.models else (
                f"the checks rejected all {search.attempt.registered} of its images" if search.attempt.registered else "none built")
            if scene.reachable <= AUTO_MAX_INCREMENTAL:
                logger.info("the global mapper's model: %s; mapping with the incremental mapper's cascade", why)
                method = "incremental"
            else:  # the cascade would cost many times GLOMAP's run: its checked model is kept
                logger.warning("the global mapper's model: %s; kept without the rejected images (the incremental "
                               "cascade maps at most %d images; --mapper incremental for it)", why, AUTO_MAX_INCREMENTAL)
    if method != "global":  # the shared-camera copy of the database (if one is made) next to the models, on their disk
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".mapping-", dir=output_dir) as work:
            search.workdir = Path(work)
            _search(image_dir, output_dir, search, _planned_runs(config, scene))
    for attempt in search.attempts:
        attempt.images = scene.reachable
    attempts.extend(search.attempts)
    if not search.models:
        return []
    search.attempt.kept = True
    if len(search.attempts) > 1:
        logger.info("kept the %s mapping: %d of %d reachable images registered in %d model(s)",
                    search.attempt.name, search.attempt.usable, scene.reachable, len(search.models))  # fmt: skip
    # a kept fixed-intrinsics run whose refinement rejects its images is not replaced by a run that refined
    # while mapping: measured on lego's halves, those runs hold wrongly registered images
    models = _settle_intrinsics(search)
    for item in search.attempt.rejected:
        logger.warning("%s: not registered, %s", item["name"], item["reason"])
    if not models:
        logger.warning("every image of the kept mapping was rejected: no model of these %d images", scene.reachable)
    return models


def incremental_mapping(
    database: str | os.PathLike,
    image_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: MapperConfig = MapperConfig(),
    attempts: list[MappingAttempt] | None = None,
) -> pycolmap.Reconstruction | None:
    """:func:`map_database` (every model written), returning the largest model or ``None``."""
    models = map_database(database, image_dir, output_dir, config, attempts)
    return models[0] if models else None
