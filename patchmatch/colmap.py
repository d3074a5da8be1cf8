"""Everything that talks to COLMAP (pycolmap 4.x), and the one +0.5 pixel rule.

Every ``pycolmap`` call of the package lives in this module, so that the churn
of pycolmap's API between versions is absorbed in one place. The module covers:

* the pixel-origin rule between OpenCV/kornia (pixel centres at integer
  coordinates) and COLMAP (top-left pixel centre at ``(0.5, 0.5)``):
  :func:`opencv_to_colmap` / :func:`colmap_to_opencv`, defined in
  :mod:`patchmatch.colmap_convention` and applied by every function here that
  writes or reads keypoints;
* a COLMAP database: :func:`create_database`, :func:`add_images` (one
  SIMPLE_RADIAL camera, rig and frame per image), :func:`write_keypoints`,
  :func:`write_matches` (transactional), :func:`database_summary`,
  :func:`read_verified_matches`;
* geometric verification (:func:`verify_matches`, pycolmap's
  ``geometric_verification``), incremental mapping (:func:`incremental_mapping`,
  largest model kept), reading a model (:func:`read_reconstruction`,
  :func:`reconstruction_stats`, :func:`reconstruction_poses`);
* COLMAP's own SIFT pipeline (:func:`sift_features_and_matches`), the baseline
  of ``patchmatch compare`` (:mod:`patchmatch.compare`).

Some pycolmap misuse aborts the whole process instead of raising (wrong dtype
or shape, an image id that does not exist, a second write of the same pair):
every public function here validates its input first and raises ``ValueError``
or ``FileExistsError`` with the file and the problem named.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

# The +0.5 rule has one home, shared with patches.extract_patches_colmap; every
# coordinate written to or read from COLMAP here goes through these two functions.
from .colmap_convention import colmap_to_opencv, opencv_to_colmap

logger = logging.getLogger(__name__)

#: Focal length prior (pixels) = ``DEFAULT_FOCAL_FACTOR * max(width, height)``
#: when the image carries no EXIF focal length (COLMAP's own default).
DEFAULT_FOCAL_FACTOR = 1.2


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class VerificationConfig:
    """Geometric verification of putative matches (COLMAP two-view geometry).

    Attributes:
        max_error: RANSAC inlier threshold in pixels (epipolar / homography).
        min_num_inliers: pairs with fewer inliers are not kept as verified.
        confidence: RANSAC confidence.
        max_num_trials: RANSAC iteration cap.
        num_threads: worker threads; -1 = all cores.
        random_seed: RANSAC seed (-1 = non-deterministic).
    """

    max_error: float = 4.0
    min_num_inliers: int = 15
    confidence: float = 0.999
    max_num_trials: int = 10000
    num_threads: int = -1
    random_seed: int = 0


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
            ``merge_max_reproj_error``; COLMAP's default is 4 px). 2 px here: the network adds
            matches that pass RANSAC's 4 px but lie 2–4 px off; dropping those observations
            lowered the median rotation error on entry-P10 from 0.33° to 0.22°, castle-P19
            0.68° → 0.64°, temple-ring 1.27° → 1.15° (all images still registered).
        extend_fallback: when the configured run's model leaves reachable images unregistered (and
            its cameras are sane), first continue that model (COLMAP's mapper with an input
            model, as ``colmap mapper --input_path``) registering further images from 15 2D-3D
            inliers instead of ``abs_pose_min_num_inliers``: the images already registered keep
            their poses as the start, instead of a new model from another initial pair.
            temple-ring with float32 scores: the configured run registered 13 of 16; extended,
            16 of 16 at a rotation error median of 1.08° (the later fallbacks' model: 16 of 16
            at 2.14°).
        fixed_intrinsics_fallback: when the largest model leaves images unregistered or has a
            degenerate camera (see :func:`degenerate_cameras`), map once more with focal
            length and distortion held at their priors (EXIF focal length or the default
            guess) and the reprojection filter at 4 px at least, then refine them in one
            global bundle adjustment (kept only if they stay
            sane), and keep whichever model registers more images. Refining intrinsics from
            the first image pairs can run away (lund: focal −1002 px, k = 4.8 from an EXIF prior
            of 1035 px; 2 of 29 images registered); a complete model is a stable place to refine
            them. On a tie in registered images the fixed-intrinsics model is kept. Costs a
            second mapping only when the first one is incomplete or degenerate (and the
            database holds verified pairs).
        forward_motion_fallback: when the model is still incomplete, map again allowing an
            initial image pair whose camera moved along its viewing direction
            (``init_max_forward_motion`` 1.0) with the initial triangulation angle lowered to
            8°, then 4° (or the configured angle, if lower; with the intrinsics free, then
            fixed; then with images registered from 15 2D-3D inliers instead of 30), and keep
            the model with most
            registered images. COLMAP rejects initial pairs with forward motion above 0.95;
            in a walk towards a building (lund: every pair with 100+ inliers has
            |t_z| ≥ 0.997 and a median triangulation angle of 1.4–3°) it finds no initial
            pair at all and builds no model; with this fallback lund registers 29 of 29.
        retry_seeds: other random seeds tried with the configured settings first (when the
            first model is incomplete or degenerate), and with the best fallback's settings last
            (when every run leaves images unregistered). COLMAP's RANSAC, initial-pair choice and
            bundle adjustment make its result chaotic in small changes: on one castle-P19
            database seed 0 left two cameras at a focal length of 10⁷ px (rotation error median
            5.8°), seed 2 gave 0.62°; on lund's, the same settings registered 24 or 29 of 29.
        init_min_tri_angle: smallest median triangulation angle (degrees) of the initial pair
            (COLMAP: 16°, relaxed by halving when no pair qualifies).
        init_max_forward_motion: largest |t_z| of the unit relative translation of the initial
            pair (COLMAP: 0.95; 1.0 admits pure forward motion).
        num_threads: mapper threads; 1 (default) gives the same model on every run of the same
            database. COLMAP's multi-threaded mapper does not: on one castle-P19 database, runs with
            2 threads gave a model with two runaway cameras (rotation error median 5.8°) once
            and a sane one (0.615°) the next time; with one thread 0.615° every time, in the
            same mapping time on these scenes (castle-P30: 21.5 s against 23.2 s with 2 threads).
            -1 = all cores (faster bundle adjustment on large scenes).
        random_seed: seed of the mapper (-1 = non-deterministic).
    """

    min_num_matches: int = 15
    min_model_size: int = 3
    init_min_num_inliers: int = 100
    abs_pose_min_num_inliers: int = 30
    multiple_models: bool = True
    refine_focal_length: bool = True
    refine_extra_params: bool = True
    max_reproj_error: float = 2.0
    extend_fallback: bool = True
    fixed_intrinsics_fallback: bool = True
    forward_motion_fallback: bool = True
    retry_seeds: int = 2
    init_min_tri_angle: float = 16.0
    init_max_forward_motion: float = 0.95
    num_threads: int = 1
    random_seed: int = 0

    def __post_init__(self):
        # checked here: some invalid COLMAP options abort the process instead of raising
        for name, kind in [("min_num_matches", int), ("min_model_size", int), ("init_min_num_inliers", int),
                           ("abs_pose_min_num_inliers", int), ("retry_seeds", int), ("num_threads", int),
                           ("random_seed", int), ("multiple_models", bool), ("refine_focal_length", bool),
                           ("refine_extra_params", bool), ("fixed_intrinsics_fallback", bool), ("extend_fallback", bool),
                           ("forward_motion_fallback", bool), ("max_reproj_error", (int, float)),
                           ("init_min_tri_angle", (int, float)), ("init_max_forward_motion", (int, float))]:
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ValueError(f"MapperConfig: {name} must be {getattr(kind, '__name__', 'a number')}, got {value!r}")
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
        }  # fmt: skip
        bad = [f"{name}={getattr(self, name)!r} (must be {rule})" for name, (ok, rule) in checks.items() if not ok]
        if bad:
            raise ValueError(f"MapperConfig: invalid {', '.join(bad)}")


@dataclass(frozen=True)
class CameraInfo:
    """What :func:`add_images` needs to create one camera and one image.

    Attributes:
        name: image name in the database (path relative to the image folder,
            posix separators).
        width: width in pixels of the image as the keypoints see it.
        height: height in pixels.
        focal: focal-length prior in pixels; ``None`` = ``1.2 * max(w, h)``.
    """

    name: str
    width: int
    height: int
    focal: float | None = None


def _two_view_options(config: VerificationConfig) -> pycolmap.TwoViewGeometryOptions:
    options = pycolmap.TwoViewGeometryOptions()
    options.min_num_inliers = int(config.min_num_inliers)
    options.ransac.max_error = float(config.max_error)
    options.ransac.confidence = float(config.confidence)
    options.ransac.max_num_trials = int(config.max_num_trials)
    options.ransac.random_seed = int(config.random_seed)
    return options


def _mapper_options(config: MapperConfig) -> pycolmap.IncrementalPipelineOptions:
    options = pycolmap.IncrementalPipelineOptions()
    options.min_num_matches = int(config.min_num_matches)
    options.min_model_size = int(config.min_model_size)
    options.multiple_models = bool(config.multiple_models)
    options.num_threads = int(config.num_threads)
    options.random_seed = int(config.random_seed)
    options.ba_refine_focal_length = bool(config.refine_focal_length)
    options.ba_refine_extra_params = bool(config.refine_extra_params)
    options.mapper.init_min_num_inliers = int(config.init_min_num_inliers)
    options.mapper.init_min_tri_angle = float(config.init_min_tri_angle)
    options.mapper.init_max_forward_motion = float(config.init_max_forward_motion)
    options.mapper.abs_pose_min_num_inliers = int(config.abs_pose_min_num_inliers)
    options.mapper.filter_max_reproj_error = float(config.max_reproj_error)
    options.triangulation.complete_max_reproj_error = float(config.max_reproj_error)
    options.triangulation.merge_max_reproj_error = float(config.max_reproj_error)
    options.mapper.num_threads = int(config.num_threads)
    options.mapper.random_seed = int(config.random_seed)
    options.triangulation.random_seed = int(config.random_seed)
    return options


def set_verbosity(verbose: bool) -> None:
    """Let COLMAP's glog write its INFO lines to stderr (``verbose``) or only fatal errors.

    Quiet by default: patchmatch checks every COLMAP result itself and logs what failed in its
    own words (e.g. "COLMAP built no model from DB"); COLMAP's ERROR lines (such as
    "Failed to create any sparse model" from a mapper run that a fallback then repairs) would
    only mislead.
    """
    pycolmap.logging.minloglevel = 0 if verbose else 3


# --------------------------------------------------------------------------
# Database
# --------------------------------------------------------------------------
def create_database(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create an empty COLMAP database file.

    Args:
        path: database file to create (parent folders are created).
        overwrite: delete an existing file first; otherwise an existing file
            is an error.

    Returns:
        The path of the new database.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(
                f"COLMAP database {path} already exists; pass overwrite=True to replace it"
            )
        path.unlink()
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    pycolmap.Database.open(str(path)).close()
    return path


def _require_database(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COLMAP database {path} does not exist (create_database first)")
    with open(path, "rb") as f:
        header = f.read(16)
    if header and header != b"SQLite format 3\x00":
        raise ValueError(f"{path} is not a COLMAP database (not an SQLite file)")
    return path


def exif_focal(image_path: str | os.PathLike) -> float | None:
    """Focal length in pixels from the image's EXIF data, if it has one.

    Args:
        image_path: the image file.

    Returns:
        The focal length in pixels of the file as stored (before any EXIF
        rotation), or ``None`` when the file carries no usable EXIF focal
        length or COLMAP cannot read it.
    """
    try:
        camera = pycolmap.infer_camera_from_image(str(image_path))
    except Exception as error:  # noqa: BLE001 - any reader failure means "no prior"
        logger.debug("no EXIF focal for %s: %s", image_path, error)
        return None
    if not camera.has_prior_focal_length:
        return None
    return float(camera.mean_focal_length())


def add_images(
    database: str | os.PathLike, cameras: Sequence[CameraInfo], single_camera: bool = False
) -> dict[str, int]:
    """Add one SIMPLE_RADIAL camera, trivial rig, frame and image per entry.

    The camera's principal point is the image centre, its radial distortion
    0, and its focal length ``info.focal`` or ``1.2 * max(width, height)``;
    a given focal is flagged as a prior COLMAP may trust.

    Args:
        database: an existing database file (see :func:`create_database`).
        cameras: one :class:`CameraInfo` per image; names must be unique and
            not yet in the database.
        single_camera: all images share one camera (and one rig), built from
            the first entry: for a set taken with one camera and zoom, where
            per-image intrinsics are poorly constrained.

    Returns:
        ``{name: image_id}`` for the images added.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: a duplicate or already-present name, or a non-positive size.
    """
    database = _require_database(database)
    names = [info.name for info in cameras]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate image names given for {database}")
    for info in cameras:
        if info.width <= 0 or info.height <= 0:
            raise ValueError(f"image {info.name!r}: invalid size {info.width}x{info.height}")
        if info.focal is not None and not (np.isfinite(info.focal) and info.focal > 0):
            raise ValueError(f"image {info.name!r}: invalid focal length {info.focal}")
    if single_camera and len({(info.width, info.height) for info in cameras}) > 1:
        raise ValueError(f"single_camera needs images of one size; got {sorted({(i.width, i.height) for i in cameras})}")
    ids: dict[str, int] = {}
    with pycolmap.Database.open(str(database)) as db:
        existing = {image.name for image in db.read_all_images()}
        clash = sorted(set(names) & existing)
        if clash:
            raise ValueError(f"images already in {database}: {clash[:5]}")
        with pycolmap.DatabaseTransaction(db):
            camera_id = rig_id = None
            for info in cameras:
                if camera_id is None or not single_camera:
                    prior = info.focal is not None
                    focal = float(info.focal) if prior else DEFAULT_FOCAL_FACTOR * max(info.width, info.height)
                    camera = pycolmap.Camera.create_from_model_name(
                        0, "SIMPLE_RADIAL", focal, int(info.width), int(info.height)
                    )
                    camera.has_prior_focal_length = prior
                    camera_id = db.write_camera(camera)
                    camera.camera_id = camera_id
                    rig = pycolmap.Rig()
                    rig.add_ref_sensor(camera.sensor_id)
                    rig_id = db.write_rig(rig)
                image = pycolmap.Image(name=info.name, camera_id=camera_id)
                image_id = db.write_image(image)
                image.image_id = image_id
                frame = pycolmap.Frame()
                frame.rig_id = rig_id
                frame.add_data_id(image.data_id)
                db.write_frame(frame)
                ids[info.name] = int(image_id)
    return ids


def read_image_ids(database: str | os.PathLike) -> dict[str, int]:
    """``{name: image_id}`` of all images in a database.

    Raises:
        FileNotFoundError: the database does not exist.
    """
    database = _require_database(database)
    with pycolmap.Database.open(str(database)) as db:
        return {image.name: int(image.image_id) for image in db.read_all_images()}


def write_keypoints(database: str | os.PathLike, keypoints: Mapping[int, np.ndarray]) -> None:
    """Write keypoints of images already in the database, in one transaction.

    Args:
        database: the database file.
        keypoints: ``{image_id: (N, 2) float}`` pixel coordinates in the
            **OpenCV** convention; the +0.5 shift to COLMAP's is applied here.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: an unknown image id, keypoints already written for it, a
            wrong shape or non-finite coordinates.
    """
    database = _require_database(database)
    prepared: dict[int, np.ndarray] = {}
    for image_id, xy in keypoints.items():
        xy = np.asarray(xy)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"image {image_id}: keypoints must be (N, 2), got {xy.shape}")
        if not np.isfinite(xy).all():
            raise ValueError(f"image {image_id}: non-finite keypoint coordinates")
        prepared[int(image_id)] = np.ascontiguousarray(opencv_to_colmap(xy.astype(np.float64)), dtype=np.float32)
    with pycolmap.Database.open(str(database)) as db:
        for image_id in prepared:
            if not db.exists_image(image_id):
                raise ValueError(f"image id {image_id} is not in {database}")
            if db.exists_keypoints(image_id):
                raise ValueError(f"keypoints of image id {image_id} are already in {database}")
        with pycolmap.DatabaseTransaction(db):
            for image_id, xy in prepared.items():
                db.write_keypoints(image_id, xy)


def write_matches(
    database: str | os.PathLike, matches: Mapping[tuple[int, int], np.ndarray]
) -> int:
    """Write putative matches of image pairs, in one transaction.

    Args:
        database: the database file, with the images' keypoints written.
        matches: ``{(image_id0, image_id1): (K, 2) int}`` keypoint indices
            (row ``k`` matches keypoint ``matches[k, 0]`` of image 0 with
            ``matches[k, 1]`` of image 1). Pairs with no match are skipped.

    Returns:
        The number of pairs written.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: a self pair, a pair given twice (in either order) or
            already in the database, unknown image ids, or indices outside
            the image's keypoints.
    """
    database = _require_database(database)
    seen: set[tuple[int, int]] = set()
    prepared: list[tuple[int, int, np.ndarray]] = []
    for (id0, id1), m in matches.items():
        id0, id1 = int(id0), int(id1)
        if id0 == id1:
            raise ValueError(f"self pair ({id0}, {id1}) given for {database}")
        key = (min(id0, id1), max(id0, id1))
        if key in seen:
            raise ValueError(f"pair ({id0}, {id1}) given twice for {database}")
        seen.add(key)
        m = np.asarray(m)
        if m.ndim != 2 or m.shape[1] != 2:
            raise ValueError(f"pair ({id0}, {id1}): matches must be (K, 2), got {m.shape}")
        if len(m) == 0:
            continue
        if (m < 0).any():
            raise ValueError(f"pair ({id0}, {id1}): negative keypoint index")
        prepared.append((id0, id1, np.ascontiguousarray(m, dtype=np.uint32)))
    with pycolmap.Database.open(str(database)) as db:
        for id0, id1, m in prepared:
            for image_id, column in ((id0, 0), (id1, 1)):
                if not db.exists_image(image_id):
                    raise ValueError(f"image id {image_id} is not in {database}")
                n = db.num_keypoints_for_image(image_id)
                if int(m[:, column].max()) >= n:
                    raise ValueError(
                        f"pair ({id0}, {id1}): index {int(m[:, column].max())} out of range "
                        f"for image {image_id} with {n} keypoints in {database}"
                    )
            if db.exists_matches(id0, id1):
                raise ValueError(f"matches of pair ({id0}, {id1}) are already in {database}")
        with pycolmap.DatabaseTransaction(db):
            for id0, id1, m in prepared:
                db.write_matches(id0, id1, m)
    return len(prepared)


@dataclass(frozen=True)
class DatabaseSummary:
    """Counts read from a database (see :func:`database_summary`)."""

    images: int
    keypoints: int
    matched_pairs: int
    matches: int
    verified_pairs: int
    inlier_matches: int


def database_summary(database: str | os.PathLike) -> DatabaseSummary:
    """Count images, keypoints, matched and verified pairs of a database.

    Raises:
        FileNotFoundError: the database does not exist.
    """
    database = _require_database(database)
    with pycolmap.Database.open(str(database)) as db:
        return DatabaseSummary(
            images=int(db.num_images()),
            keypoints=int(db.num_keypoints()),
            matched_pairs=int(db.num_matched_image_pairs()),
            matches=int(db.num_matches()),
            verified_pairs=int(db.num_verified_image_pairs()),
            inlier_matches=int(db.num_inlier_matches()),
        )


def read_keypoints(database: str | os.PathLike, image_id: int) -> np.ndarray:
    """Keypoints of one image, ``(N, 2)`` float32 in the **OpenCV** convention.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: the image has no keypoints in the database.
    """
    database = _require_database(database)
    with pycolmap.Database.open(str(database)) as db:
        if not db.exists_image(int(image_id)) or not db.exists_keypoints(int(image_id)):
            raise ValueError(f"no keypoints for image id {image_id} in {database}")
        xy = np.asarray(db.read_keypoints(int(image_id)))[:, :2]
    return colmap_to_opencv(xy.astype(np.float64)).astype(np.float32)


def read_matches(database: str | os.PathLike, id0: int, id1: int) -> np.ndarray:
    """Putative matches ``(K, 2)`` int64 of a pair (ordered as asked); empty if none.

    Raises:
        FileNotFoundError: the database does not exist.
    """
    database = _require_database(database)
    with pycolmap.Database.open(str(database)) as db:
        if not db.exists_matches(int(id0), int(id1)):
            return np.zeros((0, 2), np.int64)
        return np.asarray(db.read_matches(int(id0), int(id1)), dtype=np.int64)


def read_verified_matches(database: str | os.PathLike, id0: int, id1: int) -> np.ndarray:
    """Inlier matches ``(K, 2)`` int64 of a verified pair (ordered as asked); empty if none.

    Raises:
        FileNotFoundError: the database does not exist.
    """
    database = _require_database(database)
    with pycolmap.Database.open(str(database)) as db:
        if not db.exists_two_view_geometry(int(id0), int(id1)):
            return np.zeros((0, 2), np.int64)
        geometry = db.read_two_view_geometry(int(id0), int(id1))
        return np.asarray(geometry.inlier_matches, dtype=np.int64).reshape(-1, 2)


def verify_matches(
    database: str | os.PathLike, config: VerificationConfig = VerificationConfig()
) -> DatabaseSummary:
    """Geometric verification of every matched pair of the database.

    Runs pycolmap's ``geometric_verification`` (RANSAC on E, F and H), which
    writes a two-view geometry with its inlier matches for each pair.

    Args:
        database: the database file with keypoints and matches.
        config: RANSAC settings.

    Returns:
        The database counts after verification.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: the database holds no keypoints.
    """
    database = _require_database(database)
    summary = database_summary(database)
    if summary.keypoints == 0:
        raise ValueError(f"{database} holds no keypoints: nothing to verify")
    verifier = pycolmap.GeometricVerifierOptions()
    verifier.num_threads = int(config.num_threads)
    pycolmap.geometric_verification(
        str(database),
        verifier_options=verifier,
        two_view_geometry_options=_two_view_options(config),
    )
    return database_summary(database)


# --------------------------------------------------------------------------
# Mapping and models
# --------------------------------------------------------------------------
def degenerate_cameras(
    reconstruction: pycolmap.Reconstruction,
    priors: Mapping[int, float] | None = None,
    max_focal_change: float = 4.0,
    max_radial: float = 1.0,
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
    return [f"camera {cam_id}: {why}" for cam_id, why in _degenerate_by_camera(reconstruction, priors, max_focal_change, max_radial).items()]


def _degenerate_by_camera(
    reconstruction: pycolmap.Reconstruction, priors: Mapping[int, float] | None, max_focal_change: float = 4.0,
    max_radial: float = 1.0,
) -> dict[int, str]:
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


def _map_once(
    database: Path, image_dir: Path, output_dir: Path, config: MapperConfig, input_model: pycolmap.Reconstruction | None = None
) -> pycolmap.Reconstruction | None:
    """One mapper run; with ``input_model`` it continues that model (registers further images)."""
    if output_dir.exists():
        for child in output_dir.iterdir():
            if child.is_dir() and child.name.isdigit():
                shutil.rmtree(child)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.random_seed >= 0:
        pycolmap.set_random_seed(int(config.random_seed))
    with tempfile.TemporaryDirectory() as start:
        if input_model is not None:
            input_model.write(start)
        models = pycolmap.incremental_mapping(
            str(database), str(image_dir), str(output_dir), options=_mapper_options(config),
            input_path=start if input_model is not None else "",
        )  # fmt: skip
    for child in output_dir.iterdir():
        if child.is_dir() and child.name.isdigit():
            shutil.rmtree(child)
    if not models:
        return None
    best = max(models.values(), key=lambda rec: rec.num_reg_images())
    logger.info(
        "COLMAP built %d model(s); the largest registers %d images",
        len(models),
        best.num_reg_images(),
    )
    return best


def _bundle_adjustment(reconstruction: pycolmap.Reconstruction, options: pycolmap.BundleAdjustmentOptions) -> None:
    """``pycolmap.bundle_adjustment`` within the current verbosity: it sets glog's ``minloglevel`` to 0
    (INFO lines on stderr, for it and every later COLMAP call); the level is restored afterwards,
    and its own lines go to /dev/null unless INFO is on."""
    level = pycolmap.logging.minloglevel
    try:
        if level > 0:
            sys.stderr.flush()
            saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, 2)
                pycolmap.bundle_adjustment(reconstruction, options)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                os.close(devnull)
        else:
            pycolmap.bundle_adjustment(reconstruction, options)
    finally:
        pycolmap.logging.minloglevel = level


def _refine_intrinsics(
    reconstruction: pycolmap.Reconstruction, config: MapperConfig, priors: Mapping[int, float]
) -> tuple[pycolmap.Reconstruction, list[str]]:
    """A copy refined by one global bundle adjustment with the intrinsics free, and ``[]``; or the
    input itself and the degenerate cameras of the refined copy when they run away."""
    refined = pycolmap.Reconstruction(reconstruction)
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.refine_focal_length = bool(config.refine_focal_length)
    options.refine_extra_params = bool(config.refine_extra_params)
    _bundle_adjustment(refined, options)
    bad = degenerate_cameras(refined, priors)
    if bad:
        logger.warning("refined intrinsics ran away (%s); keeping the prior intrinsics", "; ".join(bad[:3]))
        return reconstruction, bad
    return refined, []


@dataclass
class MappingAttempt:
    """One run of COLMAP's incremental mapper inside :func:`incremental_mapping`.

    Attributes:
        name: what differed from the configured settings (``"configured"``,
            ``"fixed intrinsics"``, ``"forward motion, init 8°"``, ...).
        registered: images in the largest model (0 when none was built).
        usable: registered images whose camera is not degenerate (their poses mean something).
        degenerate: :func:`degenerate_cameras` of that model.
        seconds: wall time of the run.
        kept: whether its model is the one returned.
        intrinsics: for the kept run, what its cameras' intrinsics are: ``"refined"`` (by the
            mapper), ``"fixed at priors, refined after"`` (one global bundle adjustment on the
            fixed-intrinsics model) or ``"fixed at priors"`` (that refinement ran away and was
            dropped); ``intrinsics_note`` says what went wrong, including a camera that COLMAP
            moved away from its prior during a fixed-intrinsics run.
    """

    name: str
    registered: int
    usable: int
    degenerate: list[str]
    seconds: float
    kept: bool = False
    intrinsics: str = ""
    intrinsics_note: str = ""


#: 2D-3D inliers that register an image in the relaxed fallbacks (COLMAP's default: 30)
RELAXED_ABS_POSE_INLIERS = 15


def _mapping_attempts(config: MapperConfig) -> list[tuple[str, MapperConfig]]:
    """The fallback runs after the configured one, in order (see :class:`MapperConfig`)."""
    refines = config.refine_focal_length or config.refine_extra_params
    # with the intrinsics fixed, unmodelled distortion leaves residuals of a few pixels: COLMAP's 4 px
    # filter at least (lund: 2 of 29 images registered with a 2 px filter, 29 with 4 px)
    fixed = dataclasses.replace(config, refine_focal_length=False, refine_extra_params=False,
                                max_reproj_error=max(config.max_reproj_error, 4.0))
    use_fixed = config.fixed_intrinsics_fallback and refines
    # first the same settings with other seeds: COLMAP's result is chaotic in small changes (castle-P19,
    # one database: seed 0 left two cameras at focal 1e7 px, rotation error 5.8°; seed 2 0.62°), and
    # intrinsics fixed at a guessed prior (no EXIF) cost accuracy (2.8-5.1° there)
    runs = [(f"configured, seed {config.random_seed + k}", dataclasses.replace(config, random_seed=config.random_seed + k))
            for k in range(1, config.retry_seeds + 1)]
    runs += [("fixed intrinsics", fixed)] if use_fixed else []
    if config.forward_motion_fallback:
        # 8° and 4°, or the configured angle where it is lower already: forward motion is the relaxation that matters
        angles = sorted({min(8.0, config.init_min_tri_angle), min(4.0, config.init_min_tri_angle)}, reverse=True)
        for angle in angles:
            for name, base in [("", config)] + ([(", fixed intrinsics", fixed)] if use_fixed else []):
                runs.append((f"forward motion, init {angle:g}°{name}",
                             dataclasses.replace(base, init_max_forward_motion=1.0, init_min_tri_angle=angle)))
        # then images registered from 15 2D-3D inliers instead of 30: the last images of a walk see few
        # points triangulated at a usable angle (lund: 24 → 29 of 29 on two databases at 4°)
        relaxed = min(RELAXED_ABS_POSE_INLIERS, config.abs_pose_min_num_inliers)
        if relaxed < config.abs_pose_min_num_inliers:
            for angle in angles:
                runs.append((f"forward motion, init {angle:g}°, registration from {relaxed} inliers",
                             dataclasses.replace(config, init_max_forward_motion=1.0, init_min_tri_angle=angle,
                                                 abs_pose_min_num_inliers=relaxed)))
    return runs


def incremental_mapping(
    database: str | os.PathLike,
    image_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: MapperConfig = MapperConfig(),
    attempts: list[MappingAttempt] | None = None,
) -> pycolmap.Reconstruction | None:
    """Run COLMAP's incremental mapper and keep the largest model.

    COLMAP writes every model it builds under ``output_dir/<index>``; this
    function keeps only the model with most registered images, written to
    ``output_dir/0`` (COLMAP binary format), and removes the others. When the result
    leaves images unregistered or has a degenerate camera, the fallbacks of ``config``
    (the configured model continued with a relaxed registration threshold, other seeds, fixed
    intrinsics, then forward-motion initialisation; see :class:`MapperConfig`) map again, until one registers every reachable image (one in a two-view geometry with at least
    ``min_num_matches`` inliers) with sane cameras; the model with most
    registered images whose cameras did not run away is kept (on a tie, the one with fewer
    degenerate cameras, then the earlier).

    Args:
        database: the database with verified two-view geometries.
        image_dir: the image folder (COLMAP reads colours from it).
        output_dir: the ``sparse`` folder; created, and emptied of earlier
            numbered models.
        config: mapper settings.
        attempts: if given, a :class:`MappingAttempt` is appended for every mapper run.

    Returns:
        The largest reconstruction, or ``None`` when COLMAP built none.

    Raises:
        FileNotFoundError: the database or the image folder does not exist.
    """
    database = _require_database(database)
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist")
    output_dir = Path(output_dir)
    with pycolmap.Database.open(str(database)) as db:
        num_verified = db.num_verified_image_pairs()
        cameras = db.read_all_cameras()
        num_images = db.num_images()
    if num_verified > 0:
        # images the mapper can reach: those in a two-view geometry with enough inliers (an image
        # without any, e.g. one without keypoints, never registers: no fallback run for it)
        num_images = len({i for pair, inliers in _table_pairs(database, "two_view_geometries").items()
                          if inliers >= config.min_num_matches for i in pair})  # fmt: skip
    priors = {c.camera_id: float(c.mean_focal_length()) for c in cameras}
    database_params = {c.camera_id: np.array(c.params, dtype=np.float64) for c in cameras}
    if 2 <= num_images < config.min_model_size:  # a two-image project still gets its model
        config = dataclasses.replace(config, min_model_size=num_images)
    attempts = [] if attempts is None else attempts
    relaxed = min(RELAXED_ABS_POSE_INLIERS, config.abs_pose_min_num_inliers)
    extend = config.extend_fallback and num_verified > 0 and relaxed < config.abs_pose_min_num_inliers
    extended_name = f"configured, extended (registration from {relaxed} inliers)"
    runs = ([("configured", config)] + ([(extended_name, dataclasses.replace(config, abs_pose_min_num_inliers=relaxed))] if extend else [])
            + (_mapping_attempts(config) if num_verified > 0 else []))  # fmt: skip
    best, best_config, best_attempt = None, config, None
    retries = config.retry_seeds if num_verified > 0 else 0
    i = 0
    while i < len(runs):
        name, run_config = runs[i]
        i += 1
        start = None
        if name == extended_name:  # continues the configured run's model, if that one is incomplete but sane
            if best is None or best_attempt.name != "configured" or best_attempt.degenerate or best.num_reg_images() == num_images:
                continue
            start = best
        if best is not None and best.num_reg_images() == num_images:
            if not best_attempt.degenerate:
                break
            init = (run_config.init_max_forward_motion, run_config.init_min_tri_angle)
            if init != (best_config.init_max_forward_motion, best_config.init_min_tri_angle):
                continue  # complete but degenerate: other seeds or fixed intrinsics can help, another initialisation not
        if i > 1:
            logger.info("%s; mapping again (%s)", "; ".join(best_attempt.degenerate[:3]) if best_attempt.degenerate
                        else f"{best_attempt.registered} of {num_images} reachable images registered", name)
        t0 = time.perf_counter()
        rec = _map_once(database, image_dir, output_dir, run_config, input_model=start)
        bad = _degenerate_by_camera(rec, priors) if rec is not None else {}
        usable = 0 if rec is None else sum(rec.images[im].camera_id not in bad for im in rec.reg_image_ids())
        attempt = MappingAttempt(name, 0 if rec is None else rec.num_reg_images(), usable,
                                 [f"camera {c}: {why}" for c, why in bad.items()], round(time.perf_counter() - t0, 2))
        attempts.append(attempt)
        # most images with sane cameras; then fewest degenerate cameras; then the earlier run
        if rec is not None and (best is None or (attempt.usable, -len(attempt.degenerate))
                                > (best_attempt.usable, -len(best_attempt.degenerate))):
            best, best_config, best_attempt = rec, run_config, attempt
        elif best_attempt is None:
            best_attempt = attempt
        if (i == len(runs) and retries > 0 and best is not None and best.num_reg_images() < num_images
                and best_config.random_seed == config.random_seed and best_config != config
                and best_attempt.name != extended_name):
            # the best fallback's settings with other seeds (the configured ones had theirs first)
            seed = config.random_seed + config.retry_seeds - retries + 1
            retries -= 1
            runs.append((f"{best_attempt.name}, seed {seed}", dataclasses.replace(best_config, random_seed=seed)))
    if best is None:
        logger.warning("COLMAP built no model from %s", database)
        return None
    best_attempt.kept = True
    if len(attempts) > 1:
        logger.info("kept the %s mapping: %d of %d reachable images registered", best_attempt.name, best_attempt.registered, num_images)
    best_attempt.intrinsics = "refined" if best_config.refine_focal_length or best_config.refine_extra_params else "fixed at priors"
    notes = []
    if best_attempt.intrinsics == "fixed at priors":
        # COLMAP can still move a camera without a focal-length prior in a fixed-intrinsics run (seen with
        # no-EXIF images next to EXIF ones): say so rather than claim the priors
        moved = [cid for cid, cam in best.cameras.items()
                 if cid in database_params and not np.allclose(np.array(cam.params), database_params[cid])]
        if moved:
            notes.append(f"COLMAP changed the intrinsics of camera(s) {moved[:5]} during mapping")
    if best_attempt.intrinsics == "fixed at priors" and (config.refine_focal_length or config.refine_extra_params):
        best, bad = _refine_intrinsics(best, config, priors)
        if bad:
            notes.append("refinement in one bundle adjustment ran away: " + "; ".join(bad[:3]))
        else:
            best_attempt.intrinsics = "fixed at priors, refined after"
    best_attempt.intrinsics_note = "; ".join(notes)
    model_dir = output_dir / "0"
    model_dir.mkdir(parents=True, exist_ok=True)
    best.write(str(model_dir))
    return best


def read_reconstruction(path: str | os.PathLike) -> pycolmap.Reconstruction:
    """Read a COLMAP model folder (binary or text).

    Raises:
        FileNotFoundError: the folder lacks ``cameras``/``images``/``points3D`` files.
    """
    path = Path(path)
    if not any((path / f"images{ext}").is_file() for ext in (".bin", ".txt")):
        raise FileNotFoundError(f"{path} is not a COLMAP model folder (no images.bin/.txt)")
    try:
        return pycolmap.Reconstruction(str(path))
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a readable COLMAP model ({exc})") from None


def reconstruction_stats(reconstruction: pycolmap.Reconstruction | None) -> dict:
    """Summary numbers of a model.

    Args:
        reconstruction: a model, or ``None`` (no model: zeros and NaNs).

    Returns:
        ``{"registered": int, "points": int, "observations": int,
        "mean_track_length": float, "mean_reprojection_error": float (px),
        "registered_names": list[str] (sorted)}``.
    """
    if reconstruction is None:
        return {
            "registered": 0,
            "points": 0,
            "observations": 0,
            "mean_track_length": float("nan"),
            "mean_reprojection_error": float("nan"),
            "registered_names": [],
        }
    names = sorted(reconstruction.image(i).name for i in reconstruction.reg_image_ids())
    points = int(reconstruction.num_points3D())
    return {
        "registered": int(reconstruction.num_reg_images()),
        "points": points,
        "observations": int(reconstruction.compute_num_observations()),
        "mean_track_length": float(reconstruction.compute_mean_track_length()) if points else float("nan"),
        "mean_reprojection_error": float(reconstruction.compute_mean_reprojection_error())
        if points
        else float("nan"),
        "registered_names": names,
    }


def reconstruction_poses(
    reconstruction: pycolmap.Reconstruction,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """World-to-camera poses of the registered images.

    Returns:
        ``{name: (R (3, 3) float64, t (3,) float64)}`` with
        ``x_cam = R @ X_world + t``.
    """
    poses = {}
    for image_id in reconstruction.reg_image_ids():
        image = reconstruction.image(image_id)
        matrix = np.asarray(image.cam_from_world().matrix(), dtype=np.float64)
        poses[image.name] = (matrix[:, :3].copy(), matrix[:, 3].copy())
    return poses


def reconstruction_points(reconstruction: pycolmap.Reconstruction) -> np.ndarray:
    """(P, 3) float64 positions of the model's 3D points (world frame)."""
    pts = [p.xyz for p in reconstruction.points3D.values()]
    return np.asarray(pts, dtype=np.float64).reshape(-1, 3)


def reconstruction_cameras(reconstruction: pycolmap.Reconstruction) -> dict[str, dict]:
    """Intrinsics of the registered images: ``{name: {"model", "params", "width", "height"}}``."""
    out = {}
    for image_id in reconstruction.reg_image_ids():
        image = reconstruction.image(image_id)
        camera = reconstruction.camera(image.camera_id)
        out[image.name] = {
            "model": camera.model_name,
            "params": [float(v) for v in camera.params],
            "width": int(camera.width),
            "height": int(camera.height),
        }
    return out


# --------------------------------------------------------------------------
# COLMAP's own SIFT pipeline (baseline)
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class SiftBaselineConfig:
    """COLMAP SIFT extraction and exhaustive matching.

    Attributes:
        max_num_features: keypoints per image.
        max_image_size: longest side the image is resized to (-1 = original).
        max_ratio: Lowe ratio test threshold.
        cross_check: keep mutual nearest neighbours only.
        num_threads: worker threads; -1 = all cores.
    """

    max_num_features: int = 8192
    max_image_size: int = -1
    max_ratio: float = 0.8
    cross_check: bool = True
    num_threads: int = -1


def sift_extract(
    database: str | os.PathLike,
    image_dir: str | os.PathLike,
    image_names: Sequence[str],
    config: SiftBaselineConfig = SiftBaselineConfig(),
    single_camera: bool = False,
    affine_shape: bool = False,
) -> DatabaseSummary:
    """COLMAP's SIFT extraction only: import images (one SIMPLE_RADIAL camera each, or one
    shared) and write keypoints and descriptors, as ``colmap feature_extractor`` does.

    Args:
        database: an empty database file (see :func:`create_database`).
        image_dir: the image folder.
        image_names: images to use, relative to ``image_dir``.
        config: SIFT settings.
        single_camera: one camera shared by all images instead of one each.
        affine_shape: estimate affine keypoint shapes (COLMAP's ``estimate_affine_shape``).

    Raises:
        FileNotFoundError: the database or an image does not exist.
        ValueError: ``image_names`` is empty.
    """
    database = _require_database(database)
    image_dir = Path(image_dir)
    if not image_names:
        raise ValueError("no images given")
    for name in image_names:
        if not (image_dir / name).is_file():
            raise FileNotFoundError(f"image {image_dir / name} does not exist")
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    reader.default_focal_length_factor = DEFAULT_FOCAL_FACTOR
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = int(config.num_threads)
    extraction.max_image_size = int(config.max_image_size)
    extraction.sift.max_num_features = int(config.max_num_features)
    extraction.sift.estimate_affine_shape = bool(affine_shape)
    pycolmap.extract_features(
        str(database),
        str(image_dir),
        image_names=list(image_names),
        camera_mode=pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )
    return database_summary(database)


def sift_features_and_matches(
    database: str | os.PathLike,
    image_dir: str | os.PathLike,
    image_names: Sequence[str],
    config: SiftBaselineConfig = SiftBaselineConfig(),
    verification: VerificationConfig = VerificationConfig(),
    single_camera: bool = False,
) -> DatabaseSummary:
    """COLMAP's SIFT: import images (one SIMPLE_RADIAL camera each), extract,
    match exhaustively and verify, all by pycolmap on the CPU.

    Args:
        database: an empty database file (see :func:`create_database`).
        image_dir: the image folder.
        image_names: images to use, relative to ``image_dir``.
        config: SIFT settings.
        verification: RANSAC settings of the verification.
        single_camera: one camera shared by all images instead of one each.

    Returns:
        The database counts afterwards.

    Raises:
        FileNotFoundError: the database or an image does not exist.
        ValueError: ``image_names`` is empty.
    """
    sift_extract(database, image_dir, image_names, config, single_camera)
    return sift_match_exhaustive(database, config, verification)


def sift_match_exhaustive(
    database: str | os.PathLike,
    config: SiftBaselineConfig = SiftBaselineConfig(),
    verification: VerificationConfig = VerificationConfig(),
) -> DatabaseSummary:
    """COLMAP's exhaustive SIFT matching (ratio test, cross-check) and geometric verification
    of every image pair of a database that holds SIFT features, on the CPU.

    Raises:
        FileNotFoundError: the database does not exist.
    """
    database = _require_database(database)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = int(config.num_threads)
    matching.sift.max_ratio = float(config.max_ratio)
    matching.sift.cross_check = bool(config.cross_check)
    pycolmap.match_exhaustive(
        str(database),
        matching_options=matching,
        verification_options=_two_view_options(verification),
        device=pycolmap.Device.cpu,
    )
    return database_summary(database)


# --------------------------------------------------------------------------
# Existing COLMAP projects (``patchmatch match``)
# --------------------------------------------------------------------------
@dataclass
class DatabaseImage:
    """An image of an existing database with its features.

    Attributes:
        image_id: COLMAP image id.
        name: image name (path relative to the image folder).
        width: camera width in pixels. height: camera height in pixels.
        keypoints: (N, 6) float32 ``[x, y, a11, a12, a21, a22]`` in COLMAP's convention
            (pixel centres at +0.5); (N, 0) when the image has none.
        descriptors: (N, D) uint8 descriptors (SIFT: D = 128, COLMAP's L1-root normalisation).
    """

    image_id: int
    name: str
    width: int
    height: int
    keypoints: np.ndarray
    descriptors: np.ndarray


def _affine_keypoints(raw: np.ndarray, database: Path, name: str) -> np.ndarray:
    """COLMAP keypoint rows → (N, 6) float32 ``[x, y, a11, a12, a21, a22]``."""
    raw = raw.reshape(len(raw), -1) if raw.ndim != 2 else raw
    cols = raw.shape[1] if len(raw) else 6
    if cols == 6:
        return raw.astype(np.float32, copy=False)
    if cols == 4:  # x, y, scale, orientation (radians), as COLMAP's FeatureKeypoint builds its shape
        x, y, scale, angle = raw.T
        c, s = scale * np.cos(angle), scale * np.sin(angle)
        return np.stack([x, y, c, -s, s, c], 1).astype(np.float32)
    if cols == 2:
        raise ValueError(f"{database}: the keypoints of {name} are positions only (2 columns, no scale or orientation): "
                         "patches cannot be cropped from them; extract features with COLMAP's SIFT")  # fmt: skip
    raise ValueError(f"{database}: the keypoints of {name} have {cols} columns (COLMAP stores 2, 4 or 6)")


def read_database_images(database: str | os.PathLike) -> dict[str, DatabaseImage]:
    """Reads every image of a database with its keypoints (affine shapes) and descriptors.

    Keypoints stored with 6 columns (affine shapes), 4 (``x, y, scale, orientation``, e.g. older
    COLMAP versions) or 2 (positions only) are read; the 4-column ones become the similarity
    shapes COLMAP's ``FeatureKeypoint(x, y, scale, orientation)`` builds.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: an image's keypoint and descriptor counts disagree, or its keypoints have no
            shapes (2 columns: patches need a scale and an orientation) or another column count.
    """
    database = _require_database(database)
    out: dict[str, DatabaseImage] = {}
    with pycolmap.Database.open(str(database)) as db:
        cameras = {int(c.camera_id): c for c in db.read_all_cameras()}
        for image in db.read_all_images():
            iid = int(image.image_id)
            kps = np.zeros((0, 6), np.float32)
            desc = np.zeros((0, 128), np.uint8)
            if db.exists_keypoints(iid):
                kps = _affine_keypoints(np.asarray(db.read_keypoints(iid), dtype=np.float32), database, image.name)
            if db.exists_descriptors(iid):
                desc = np.asarray(db.read_descriptors(iid).data)
            if len(kps) != len(desc):
                raise ValueError(f"{database}: image {image.name} has {len(kps)} keypoints but {len(desc)} descriptors")
            cam = cameras[int(image.camera_id)]
            out[image.name] = DatabaseImage(iid, image.name, int(cam.width), int(cam.height), kps, desc)
    return out


def pairs_with_matches(database: str | os.PathLike) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """Image-id pairs (smaller id first) that hold a matches entry (even an empty one: COLMAP's
    matchers record pairs they tried), and those that hold a two-view geometry."""
    database = _require_database(database)
    return set(_table_pairs(database, "matches")), set(_table_pairs(database, "two_view_geometries"))


def _table_pairs(database: Path, table: str) -> dict[tuple[int, int], int]:
    """Image-id pairs (smaller id first) of a ``matches`` or ``two_view_geometries`` table → their
    row count (matches, or inlier matches), empty rows included: pycolmap's ``read_all_matches`` /
    ``read_two_view_geometries`` leave those out (pairs COLMAP tried without a match, or verified
    and rejected) and decode every match. Read-only SQL on COLMAP's schema."""
    import sqlite3

    uri = f"{database.resolve().as_uri()}?mode=ro"
    out = {}
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
        for pid, rows in con.execute(f"SELECT pair_id, rows FROM {table}"):
            a, b = pycolmap.pair_id_to_image_pair(int(pid))
            out[(min(int(a), int(b)), max(int(a), int(b)))] = int(rows)
    return out


def delete_pairs(database: str | os.PathLike, pairs: Sequence[tuple[int, int]]) -> None:
    """Deletes the matches and two-view geometries of image-id pairs, in one transaction."""
    database = _require_database(database)
    with pycolmap.Database.open(str(database)) as db, pycolmap.DatabaseTransaction(db):
        for a, b in pairs:
            if db.exists_matches(int(a), int(b)):
                db.delete_matches(int(a), int(b))
            if db.exists_two_view_geometry(int(a), int(b)):
                db.delete_two_view_geometry(int(a), int(b))


def verify_pairs(
    database: str | os.PathLike,
    pairs: Sequence[tuple[str, str]],
    config: VerificationConfig = VerificationConfig(),
) -> DatabaseSummary:
    """Geometric verification of the given image pairs only (pycolmap's ``verify_matches``
    with a pairs file), leaving the other pairs of the database untouched.

    Args:
        database: the database file.
        pairs: ``(name0, name1)`` pairs holding putative matches.
        config: RANSAC settings.

    Raises:
        FileNotFoundError: the database does not exist.
    """
    database = _require_database(database)
    if pairs:
        with tempfile.TemporaryDirectory(prefix="patchmatch-verify-") as tmp:
            path = Path(tmp) / "pairs.txt"
            path.write_text("".join(f"{a} {b}\n" for a, b in pairs))
            pycolmap.verify_matches(str(database), str(path), options=_two_view_options(config))
    return database_summary(database)


def undistort_reconstruction(
    model: str | os.PathLike, image_dir: str | os.PathLike, out: str | os.PathLike
) -> tuple[Path, Path]:
    """Undistorts a sparse model and its images with COLMAP's image undistorter.

    Every camera becomes ``PINHOLE``; the images are resampled accordingly (a pinhole camera's
    images are copied unchanged in geometry).

    Args:
        model: COLMAP sparse model folder (``cameras.bin``/``.txt``, ``images``, ``points3D``).
        image_dir: the folder the model's image names are relative to.
        out: output folder; ``out/images`` and ``out/sparse`` are written.

    Returns:
        ``(image folder, sparse model folder)`` of the undistorted result.

    Raises:
        FileNotFoundError: ``model`` or ``image_dir`` is missing, or an image of the model is.
    """
    model, image_dir, out = Path(model), Path(image_dir), Path(out)
    reconstruction = read_reconstruction(model)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: image folder not found")
    missing = [reconstruction.image(i).name for i in reconstruction.reg_image_ids()
               if not (image_dir / reconstruction.image(i).name).is_file()]
    if missing:
        raise FileNotFoundError(f"{image_dir}: {len(missing)} image(s) of {model} are missing, e.g. {missing[0]!r}")
    out.mkdir(parents=True, exist_ok=True)
    pycolmap.undistort_images(str(out), str(model), str(image_dir), output_type="COLMAP")
    return out / "images", out / "sparse"


def reconstruction_pinhole_cameras(
    reconstruction: pycolmap.Reconstruction,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int, int]]:
    """Pinhole cameras of the registered images in the OpenCV pixel convention.

    Returns:
        ``{name: (K (3, 3), R (3, 3), t (3,), width, height)}``, float64, ``x ~ K (R X + t)``
        with pixel centres at integer coordinates (COLMAP's principal point minus 0.5).

    Raises:
        ValueError: a camera has distortion parameters (undistort the model first with
            :func:`undistort_reconstruction`).
    """
    poses = reconstruction_poses(reconstruction)
    out = {}
    for image_id in reconstruction.reg_image_ids():
        image = reconstruction.image(image_id)
        camera = reconstruction.camera(image.camera_id)
        if camera.model_name not in ("PINHOLE", "SIMPLE_PINHOLE"):
            raise ValueError(f"camera {image.camera_id} of {image.name!r} is {camera.model_name}, not a pinhole; "
                             "undistort the model first")
        K = np.asarray(camera.calibration_matrix(), dtype=np.float64).copy()
        K[:2, 2] = colmap_to_opencv(K[:2, 2])
        R, t = poses[image.name]
        out[image.name] = (K, R, t, int(camera.width), int(camera.height))
    return out
