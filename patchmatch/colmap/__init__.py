"""Everything that talks to COLMAP (pycolmap 4.x), split by job.

Every ``pycolmap`` call of the package lives in this package, so that the churn of pycolmap's
API between versions is absorbed in one place:

* :mod:`~patchmatch.colmap.convention`: the +0.5 pixel rule between OpenCV/kornia and COLMAP
  (:func:`opencv_to_colmap`, :func:`colmap_to_opencv`), applied by every function that writes
  or reads keypoints;
* :mod:`~patchmatch.colmap.database`: a database file: :func:`create_database`,
  :func:`add_images` (one SIMPLE_RADIAL camera, rig and frame per image), :func:`write_keypoints`,
  :func:`write_matches` (transactional), reading it back, a user's existing database
  (:func:`read_database_images`, :func:`pairs_with_matches`, :func:`delete_pairs`), a copy whose
  images share cameras (:func:`copy_with_shared_cameras`), and the errors a file or a full disk cause;
* :mod:`~patchmatch.colmap.verify`: geometric verification (:func:`verify_matches`,
  :func:`verify_pairs`);
* :mod:`~patchmatch.colmap.mapping`: mapping (incremental or global) with its checked fallbacks
  (:func:`map_database`, :func:`incremental_mapping`, :class:`MapperConfig`);
* :mod:`~patchmatch.colmap.check`: is a model right (:func:`check_model`: poses against the
  verified two-view geometries, triangulation angles, intrinsics);
* :mod:`~patchmatch.colmap.model`: a sparse model (:func:`read_reconstruction`,
  :func:`reconstruction_stats`, :func:`reconstruction_poses`, undistortion);
* :mod:`~patchmatch.colmap.baseline`: COLMAP's own SIFT pipeline, the baseline of
  ``patchmatch compare``.
"""

from .baseline import SiftBaselineConfig, sift_extract, sift_features_and_matches, sift_match_exhaustive
from .check import ModelCheck, check_model
from .convention import colmap_to_opencv, opencv_to_colmap
from .database import (
    DEFAULT_FOCAL_FACTOR,
    CameraInfo,
    CameraIntrinsics,
    DatabaseImage,
    DatabaseInUseError,
    DatabaseSummary,
    MatchesExistError,
    NotADatabaseError,
    PairGeometry,
    add_images,
    copy_with_shared_cameras,
    create_database,
    database_summary,
    delete_pairs,
    exif_focal,
    open_database,
    pairs_with_matches,
    peek_keypoint_columns,
    positions_only_message,
    read_database_images,
    read_image_ids,
    read_keypoints,
    read_matches,
    read_pair_geometry,
    read_verified_matches,
    require_database,
    write_keypoints,
    write_matches,
)
from .mapping import (
    RELAXED_ABS_POSE_INLIERS,
    MapperConfig,
    MappingAttempt,
    calibration_drift,
    degenerate_cameras,
    global_bundle_adjustment,
    incremental_mapping,
    map_database,
    mapping_attempts,
    prior_group_apart,
    unregistered_reasons,
)
from .model import (
    read_reconstruction,
    reconstruction_cameras,
    reconstruction_pinhole_cameras,
    reconstruction_points,
    reconstruction_poses,
    reconstruction_stats,
    undistort_reconstruction,
    write_reconstruction,
)
from .verbosity import set_verbosity
from .verify import VerificationConfig, verify_matches, verify_pairs

__all__ = [
    "CameraInfo",
    "CameraIntrinsics",
    "DEFAULT_FOCAL_FACTOR",
    "DatabaseImage",
    "DatabaseSummary",
    "MapperConfig",
    "MappingAttempt",
    "ModelCheck",
    "DatabaseInUseError",
    "MatchesExistError",
    "NotADatabaseError",
    "PairGeometry",
    "RELAXED_ABS_POSE_INLIERS",
    "SiftBaselineConfig",
    "VerificationConfig",
    "add_images",
    "calibration_drift",
    "check_model",
    "colmap_to_opencv",
    "copy_with_shared_cameras",
    "create_database",
    "database_summary",
    "degenerate_cameras",
    "delete_pairs",
    "exif_focal",
    "global_bundle_adjustment",
    "incremental_mapping",
    "map_database",
    "mapping_attempts",
    "open_database",
    "opencv_to_colmap",
    "pairs_with_matches",
    "peek_keypoint_columns",
    "positions_only_message",
    "prior_group_apart",
    "unregistered_reasons",
    "read_database_images",
    "read_image_ids",
    "read_keypoints",
    "read_matches",
    "read_pair_geometry",
    "read_reconstruction",
    "read_verified_matches",
    "reconstruction_cameras",
    "reconstruction_pinhole_cameras",
    "reconstruction_points",
    "reconstruction_poses",
    "reconstruction_stats",
    "require_database",
    "set_verbosity",
    "sift_extract",
    "sift_features_and_matches",
    "sift_match_exhaustive",
    "undistort_reconstruction",
    "verify_matches",
    "verify_pairs",
    "write_keypoints",
    "write_matches",
    "write_reconstruction",
]
