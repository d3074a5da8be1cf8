"""Stage 6: incremental mapping of the verified database → ``sparse/0`` (COLMAP binary model)."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path

from .. import colmap

logger = logging.getLogger(__name__)


def run(
    database: str | os.PathLike,
    image_dir: str | os.PathLike,
    sparse_dir: str | os.PathLike,
    config: colmap.MapperConfig = colmap.MapperConfig(),
    report: dict | None = None,
) -> Path:
    """Maps the database with COLMAP's incremental mapper and its checked fallbacks
    (:func:`patchmatch.colmap.incremental_mapping`), keeping the largest model.

    ``sparse_dir`` is emptied first (an earlier run's model is never left behind); a database
    without a verified pair gives no model.

    Args:
        database: a verified database. image_dir: the image folder (COLMAP reads colours).
        sparse_dir: the output folder; the model goes to ``sparse_dir/0``.
        config: mapper settings and fallbacks.
        report: gets ``mapping_attempts`` (:class:`~patchmatch.colmap.MappingAttempt` as dicts).

    Returns:
        ``sparse_dir / "0"`` (absent when no model was built).
    """
    sparse_dir = Path(sparse_dir)
    shutil.rmtree(sparse_dir, ignore_errors=True)
    attempts: list[colmap.MappingAttempt] = []
    if colmap.database_summary(database).verified_pairs:
        colmap.incremental_mapping(database, image_dir, sparse_dir, config, attempts)
    if report is not None:
        report["mapping_attempts"] = [dataclasses.asdict(a) for a in attempts]
    return sparse_dir / "0"
