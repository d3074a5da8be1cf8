"""COLMAP's own SIFT pipeline (extraction, exhaustive matching, verification): the baseline of
``patchmatch compare`` (:mod:`patchmatch.compare`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pycolmap

from .database import DEFAULT_FOCAL_FACTOR, DatabaseSummary, colmap_errors, database_summary, ensure_free_space
from .database import CameraIntrinsics, require_database
from .verify import VerificationConfig, two_view_options

#: Bytes COLMAP stores per SIFT feature: 6 float32 keypoint columns and a 128-byte descriptor.
_BYTES_PER_FEATURE = 6 * 4 + 128


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


def _extraction_options(config: SiftBaselineConfig, affine_shape: bool) -> pycolmap.FeatureExtractionOptions:
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = int(config.num_threads)
    extraction.max_image_size = int(config.max_image_size)
    extraction.sift.max_num_features = int(config.max_num_features)
    extraction.sift.estimate_affine_shape = bool(affine_shape)
    return extraction


def sift_extract(
    database: str | os.PathLike,
    image_dir: str | os.PathLike,
    image_names: Sequence[str],
    config: SiftBaselineConfig = SiftBaselineConfig(),
    single_camera: bool = False,
    affine_shape: bool = False,
    intrinsics: CameraIntrinsics | None = None,
) -> DatabaseSummary:
    """COLMAP's SIFT extraction only: import images (one SIMPLE_RADIAL camera each, or one
    shared) and write keypoints and descriptors, as ``colmap feature_extractor`` does.

    Args:
        database: an empty database file (see :func:`~patchmatch.colmap.create_database`).
        image_dir: the image folder.
        image_names: images to use, relative to ``image_dir``.
        config: SIFT settings.
        single_camera: one camera shared by all images instead of one each.
        affine_shape: estimate affine keypoint shapes (COLMAP's ``estimate_affine_shape``).
        intrinsics: the known camera of every image (COLMAP's ``camera_model`` and
            ``camera_params``); None: SIMPLE_RADIAL, focal length from EXIF or guessed.

    Raises:
        FileNotFoundError: the database or an image does not exist.
        ValueError: ``image_names`` is empty.
        OSError: ``ENOSPC``, too little free space for the features.
    """
    database = require_database(database)
    image_dir = Path(image_dir)
    if not image_names:
        raise ValueError("no images given")
    for name in image_names:
        if not (image_dir / name).is_file():
            raise FileNotFoundError(f"image {image_dir / name} does not exist")
    features = len(image_names) * max(config.max_num_features, 0)  # an upper bound, written once or twice
    ensure_free_space(database, features * _BYTES_PER_FEATURE, factor=1)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL" if intrinsics is None else intrinsics.model
    if intrinsics is not None:
        reader.camera_params = ",".join(repr(v) for v in intrinsics.params)
    reader.default_focal_length_factor = DEFAULT_FOCAL_FACTOR
    with colmap_errors(database):
        pycolmap.extract_features(
            str(database),
            str(image_dir),
            image_names=list(image_names),
            camera_mode=pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE,
            reader_options=reader,
            extraction_options=_extraction_options(config, affine_shape),
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
        database: an empty database file (see :func:`~patchmatch.colmap.create_database`).
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
        OSError: ``ENOSPC``, the disk is full.
    """
    database = require_database(database)
    ensure_free_space(database)  # the matches' size is not known before matching: the margin only
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = int(config.num_threads)
    matching.sift.max_ratio = float(config.max_ratio)
    matching.sift.cross_check = bool(config.cross_check)
    with colmap_errors(database):
        pycolmap.match_exhaustive(
            str(database),
            matching_options=matching,
            verification_options=two_view_options(verification),
            device=pycolmap.Device.cpu,
        )
    return database_summary(database)
