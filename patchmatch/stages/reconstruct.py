"""Stage 6: mapping of the verified database → ``sparse/0``, ``sparse/1``, … (COLMAP binary models)."""

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
    """Maps the database (:func:`patchmatch.colmap.map_database`: the incremental mapper and its
    checked fallbacks, or GLOMAP) and writes every model, largest first.

    ``sparse_dir`` is emptied first (an earlier run's models are never left behind); a database
    without a verified pair gives no model.

    Args:
        database: a verified database. image_dir: the image folder (COLMAP reads colours).
        sparse_dir: the output folder; the models go to ``sparse_dir/0``, ``1``, ….
        config: mapper settings and fallbacks.
        report: gets ``mapping_attempts`` (:class:`~patchmatch.colmap.MappingAttempt` as dicts),
            ``models`` (``[{"path", "registered", "points", "names"}]``, largest first),
            ``registered_in_models`` (the images registered in any of them), ``mapper`` (the
            mapper of the kept runs: ``"incremental"``, ``"global"`` or both, one per part) and
            ``rejected`` (``[{"name", "reason"}]``: images the checks left out of the kept runs: one per part of the scene graph)
            and ``unregistered`` (``[{"name", "reason"}]``: every image of the database in no model, and why).

    Returns:
        ``sparse_dir / "0"``, the largest model (absent when no model was built).
    """
    sparse_dir = Path(sparse_dir)
    shutil.rmtree(sparse_dir, ignore_errors=True)
    attempts: list[colmap.MappingAttempt] = []
    models = []
    if colmap.database_summary(database).verified_pairs:
        models = colmap.map_database(database, image_dir, sparse_dir, config, attempts)
    if report is not None:
        report["mapping_attempts"] = [dataclasses.asdict(a) for a in attempts]
        kept = [a for a in attempts if a.kept]
        report["rejected"] = sorted((item for a in kept for item in a.rejected), key=lambda item: item["name"])
        rejected = {item["name"]: item["reason"] for item in report["rejected"]}
        why = colmap.unregistered_reasons(database, models, config) if colmap.database_summary(database).images else {}
        report["unregistered"] = [{"name": name, "reason": f"rejected by the checks: {rejected[name]}" if name in rejected
                                   else reason} for name, reason in why.items()]  # fmt: skip
        report["mapper"] = ", ".join(sorted({"global" if a.name == "global" else "incremental" for a in kept}))
        unkept = [a for a in attempts if a.name == "global" and not a.kept]
        if unkept:  # asked for, or chosen by auto, and mapped again
            report.setdefault("notes", []).append(
                f"the global mapper's model of {unkept[0].images} images was not kept ({unkept[0].usable} usable after "
                f"the checks, degenerate cameras: {len(unkept[0].degenerate)}); the incremental mapper's was (mapping_attempts)")
        drift = colmap.calibration_drift(models[0]) if models and not config.refine_focal_length else {}
        for camera_id, (given, free) in drift.items():  # held fixed: a calibration the user gave
            note = (f"the given calibration disagrees with the images: with its focal length free, bundle adjustment "
                    f"moves it from {given:.0f} to {free:.0f} px (x{free / given:.2f}, camera {camera_id}); the poses "
                    "of a wrong calibration are wrong: check --camera-params")  # fmt: skip
            logger.warning("%s", note)
            report.setdefault("notes", []).append(note)
        report["models"] = []
        for index, model in enumerate(models):
            stats = colmap.reconstruction_stats(model)
            report["models"].append({"path": f"{sparse_dir.name}/{index}", "registered": stats["registered"],
                                     "points": stats["points"], "names": stats["registered_names"]})  # fmt: skip
        report["registered_in_models"] = len({name for m in report["models"] for name in m["names"]})
    return sparse_dir / "0"
