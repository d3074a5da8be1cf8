"""Geometric verification of putative matches: COLMAP's two-view geometry (RANSAC on E, F and H)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pycolmap

from .database import DatabaseSummary, colmap_errors, database_summary, ensure_free_space, require_database

#: Bytes a verified pair writes besides its inlier matches (8 bytes each): E, F, H and the pose.
GEOMETRY_BYTES_PER_PAIR = 512


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


def two_view_options(config: VerificationConfig) -> pycolmap.TwoViewGeometryOptions:
    """pycolmap's options for a :class:`VerificationConfig`."""
    options = pycolmap.TwoViewGeometryOptions()
    options.min_num_inliers = int(config.min_num_inliers)
    options.ransac.max_error = float(config.max_error)
    options.ransac.confidence = float(config.confidence)
    options.ransac.max_num_trials = int(config.max_num_trials)
    options.ransac.random_seed = int(config.random_seed)
    return options


def _ensure_space_for_geometries(database: os.PathLike, summary: DatabaseSummary) -> None:
    # COLMAP writes the geometries from its worker threads: a full disk there aborts the process
    ensure_free_space(database, 8 * summary.matches + GEOMETRY_BYTES_PER_PAIR * summary.matched_pairs)


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
        OSError: ``ENOSPC``, too little free space for the geometries.
    """
    database = require_database(database)
    summary = database_summary(database)
    if summary.keypoints == 0:
        raise ValueError(f"{database} holds no keypoints: nothing to verify")
    _ensure_space_for_geometries(database, summary)
    verifier = pycolmap.GeometricVerifierOptions()
    verifier.num_threads = int(config.num_threads)
    with colmap_errors(database):
        pycolmap.geometric_verification(
            str(database),
            verifier_options=verifier,
            two_view_geometry_options=two_view_options(config),
        )
    return database_summary(database)


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
        OSError: ``ENOSPC``, too little free space for the geometries.
    """
    database = require_database(database)
    if pairs:
        _ensure_space_for_geometries(database, database_summary(database))
        with tempfile.TemporaryDirectory(prefix="patchmatch-verify-") as tmp, colmap_errors(database):
            path = Path(tmp) / "pairs.txt"
            path.write_text("".join(f"{a} {b}\n" for a, b in pairs))
            pycolmap.verify_matches(str(database), str(path), options=two_view_options(config))
    return database_summary(database)
