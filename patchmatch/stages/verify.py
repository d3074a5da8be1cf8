"""Stage 5: geometric verification of the database's matches (COLMAP's two-view geometries)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .. import colmap

logger = logging.getLogger(__name__)


def run(
    database: str | os.PathLike,
    config: colmap.VerificationConfig = colmap.VerificationConfig(),
    pairs: list[tuple[str, str]] | None = None,
    report: dict | None = None,
) -> Path:
    """RANSAC on every matched pair (or only ``pairs``), writing each pair's two-view geometry
    and inlier matches into the database; a database without any match is left as it is.

    Args:
        database: a database with keypoints and matches.
        config: RANSAC settings.
        pairs: ``(name0, name1)`` pairs to verify, the others left untouched (a user's
            database); None: every pair.
        report: gets ``verified_pairs`` and ``inlier_matches`` (the database's, after).

    Returns:
        ``database``.
    """
    database = Path(database)
    if pairs is not None:
        summary = colmap.verify_pairs(database, pairs, config)
    elif colmap.database_summary(database).matches == 0:
        logger.warning("no putative match in any pair: nothing to verify or map")
        summary = colmap.database_summary(database)
    else:
        summary = colmap.verify_matches(database, config)
    if report is not None:
        report.update(verified_pairs=summary.verified_pairs, inlier_matches=summary.inlier_matches)
    return database
