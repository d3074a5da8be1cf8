"""Side by side: COLMAP's own SIFT pipeline and patchmatch on the same images.

Three reconstructions of the same images, written into one output folder:

* ``OUT/colmap-sift``: pycolmap's SIFT extraction (the same keypoint budget and image size),
  exhaustive matching with the ratio test and cross-check, geometric verification, incremental
  mapping (``sift.json`` holds its numbers once it has finished);
* ``OUT/patchmatch``: :func:`patchmatch.sfm.run_sfm` (exhaustive pairs unless configured
  otherwise), with the same verification and mapper settings;
* ``OUT/patchmatch-without-network``: the same pipeline with the network never asked
  (``MatchConfig(network=False)``: SIFT's ratio-test matches through the same stages and mapper),
  so that the table says what the learned comparison gave on these images.

With ground-truth cameras (a ``cameras.json`` as in ``shared/data``) all get the relative
rotation error of every image pair (median, AUC at 0.5°, 1°, 2°; an unregistered image makes
all its pairs failures). A rerun resumes: a finished SIFT run is reused and patchmatch resumes
from its own files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

from . import colmap
from .evaluation.pose import evaluate_poses, load_cameras_json
from .images import ImageReadError, duplicate_files, exclude_output_dir, list_images, pair_key_collisions, read_gray
from .pairs import read_pairs_strategy_file
from .scoring import PatchScorer
from .report import write_json
from .sfm import SfmConfig, check_camera_settings, check_run_folder, run_lock, run_sfm

logger = logging.getLogger(__name__)

__all__ = ["run_colmap_sift", "compare", "format_table", "find_ground_truth"]

SIFT_DIR = "colmap-sift"
PATCHMATCH_DIR = "patchmatch"
WITHOUT_NETWORK_DIR = "patchmatch-without-network"
#: Written first into a SIFT run's folder, removed when ``sift.json`` marks the run finished: the folder is a run's.
SIFT_STARTED = "sift.started"


def find_ground_truth(images: str | os.PathLike) -> Path | None:
    """``cameras.json`` of an image folder: ``IMAGES/cameras.json`` or, for ``SCENE/images``,
    ``SCENE/cameras.json``; None when there is none."""
    images = Path(images)
    for candidate in (images / "cameras.json", images.parent / "cameras.json"):
        if candidate.is_file():
            return candidate
    return None


def run_colmap_sift(
    images: str | os.PathLike,
    out: str | os.PathLike,
    names: list[str],
    config: SfmConfig = SfmConfig(),
    ground_truth: str | os.PathLike | None = None,
) -> dict:
    """COLMAP's SIFT pipeline (extraction, exhaustive matching + verification, mapping).

    Args:
        images: image folder.
        out: its own folder (``database.db``, ``sparse/``, ``sift.json``); a finished run there
            (``sift.json``) is returned as is, an unfinished one is redone.
        names: images to use, relative to ``images``.
        config: the keypoint budget, image size, camera, verification and mapper settings are
            taken from it (the same as patchmatch's).
        ground_truth: ``cameras.json`` for pose errors.

    Returns:
        Model statistics, ``seconds`` (total) and ``seconds_per_stage`` (extraction, matching,
        mapping), ``verified_pairs`` and, with ground truth, ``pose``.
    """
    images, out = Path(images), Path(out)
    done = out / "sift.json"
    settings = _sift_settings(images, names, config)
    if done.is_file():
        return _with_pose(_finished_run(done, settings), out, names, ground_truth)
    _check_sift_folder(out)
    if out.exists():
        logger.info("%s: unfinished SIFT run, redone", out)
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / SIFT_STARTED).write_text(json.dumps(settings, indent=2))  # this folder is a run's, finished or not
    sift = colmap.SiftBaselineConfig(max_num_features=config.max_keypoints, max_image_size=config.max_image_size or -1,
                                     num_threads=config.threads or -1)  # the same CPU threads as patchmatch's runs
    stages: dict[str, float] = {}
    t = time.perf_counter()
    database = colmap.create_database(out / "database.db")
    colmap.sift_extract(database, images, names, sift, config.shared_camera, intrinsics=config.camera)
    stages["extraction"] = time.perf_counter() - t
    t = time.perf_counter()
    summary = colmap.sift_match_exhaustive(database, sift, config.with_threads().verification)
    stages["matching"] = time.perf_counter() - t
    t = time.perf_counter()
    # pycolmap's own mapper, as `colmap mapper` runs it: COLMAP's 4 px reprojection filter and no
    # fallbacks (continuing the model, fixed intrinsics, forward-motion initialisation), whatever
    # patchmatch's own mapper settings are
    # and none of its checks (pycolmap's result as it is)
    plain = dataclasses.replace(config.mapping, extend_fallback=False, fixed_intrinsics_fallback=False,
                                forward_motion_fallback=False, shared_cameras_fallback=False, retry_seeds=0, max_reproj_error=4.0,
                                method="incremental", check=False)
    reconstruction = colmap.incremental_mapping(database, images, out / "sparse", plain)
    stages["mapping"] = time.perf_counter() - t
    stats = colmap.reconstruction_stats(reconstruction)
    stats.pop("registered_names")
    result = {**stats, "verified_pairs": summary.verified_pairs, "seconds": round(sum(stages.values()), 2),
              "seconds_per_stage": {k: round(v, 2) for k, v in stages.items()}, "settings": settings}  # fmt: skip
    done.write_text(json.dumps(result, indent=2))
    (out / SIFT_STARTED).unlink()  # sift.json marks a finished run
    return _with_pose(result, out, names, ground_truth)


def _refuse_file_or_link(out: Path) -> None:
    """Refuses a file or a link where a method's folder goes (a run there would write elsewhere).

    Raises:
        FileExistsError: as above.
    """
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FileExistsError(f"{out}: a file or a link where `patchmatch compare` writes a folder; remove it or "
                              "choose another OUT")  # fmt: skip


def _check_sift_folder(out: Path) -> None:
    """Refuses a SIFT run's folder that is a file or a link, or holds anything but a run of
    :func:`run_colmap_sift` (finished or not): it would be deleted.

    Raises:
        FileExistsError: as above.
    """
    _refuse_file_or_link(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "sift.json").is_file() and not (out / SIFT_STARTED).is_file():
        raise FileExistsError(f"{out} is not empty and holds no SIFT run of `patchmatch compare`; choose another OUT "
                              "or pass --overwrite to replace it")  # fmt: skip


def _camera(config: SfmConfig) -> dict | None:
    """The known calibration as the JSON files record it (None: none given)."""
    return None if config.camera is None else dataclasses.asdict(config.camera)


def _finished_run(done: Path, settings: dict) -> dict:
    """A finished SIFT run's numbers (``sift.json``), if it was made with ``settings``.

    Raises:
        FileExistsError: it was made with other settings (named).
    """
    previous = json.loads(done.read_text())
    if previous.get("settings") != settings:
        changed = sorted(k for k in settings if settings[k] != previous.get("settings", {}).get(k))
        raise FileExistsError(f"{done.parent} holds a SIFT run with other settings ({', '.join(changed)}); "
                              "pass --overwrite to redo it or choose another OUT")  # fmt: skip
    logger.info("%s: finished SIFT run reused", done)
    return previous


def _sift_settings(images: Path, names: list[str], config: SfmConfig) -> dict:
    """What a finished SIFT run must share with the current call to be reused, as ``sift.json``
    stores it (JSON: tuples are lists)."""
    settings = {"images": str(images.resolve()), "names": list(names), "max_keypoints": config.max_keypoints,
            "max_image_size": config.max_image_size, "single_camera": config.single_camera,
            "camera": _camera(config),
            "verification": dataclasses.asdict(config.verification),
            "mapper": {k: v for k, v in dataclasses.asdict(config.mapping).items()
                       if k not in ("extend_fallback", "fixed_intrinsics_fallback", "forward_motion_fallback",
                                    "shared_cameras_fallback", "retry_seeds", "max_reproj_error", "method",
                                    "check")}}  # fmt: skip
    return json.loads(json.dumps(settings))


def _with_pose(result: dict, out: Path, names: list[str], ground_truth) -> dict:
    """The SIFT run's numbers, with pose errors against ``ground_truth`` from its model (if any)."""
    result = {k: v for k, v in result.items() if k != "pose"}
    if ground_truth is not None:
        model = out / "sparse" / "0"
        rec = colmap.read_reconstruction(model) if (model / "images.bin").is_file() or (model / "images.txt").is_file() else None
        poses = colmap.reconstruction_poses(rec) if rec is not None else {}
        result["pose"] = _pose(poses, ground_truth, names)
    return result


def _pose(poses: dict, ground_truth: str | os.PathLike, names: list[str]) -> dict:
    known = set(load_cameras_json(ground_truth))
    pose = evaluate_poses(poses, ground_truth, names=[n for n in names if n in known])
    pose.pop("pair_errors", None)
    return pose


def _check_foreign_output(out: Path, overwrite: bool) -> None:
    """Refuses an OUT whose ``compare.json`` was not written by :func:`compare` (unless
    ``overwrite``): it would be replaced. Other files in OUT are never touched.

    Raises:
        FileExistsError: ``OUT/compare.json`` exists and is not a compare result.
    """
    result = out / "compare.json"
    if overwrite or not result.exists():
        return
    try:
        data = json.loads(result.read_text())
        ours = (isinstance(data, dict) and "images_dir" in data and isinstance(data.get("methods"), dict)
                and set(data["methods"]) <= {SIFT_DIR, PATCHMATCH_DIR, WITHOUT_NETWORK_DIR})  # fmt: skip
    except (OSError, UnicodeDecodeError, ValueError):
        ours = False
    if not ours:
        raise FileExistsError(f"{result}: exists and was not written by `patchmatch compare`; "
                              "choose another OUT or pass --overwrite to replace it")  # fmt: skip


def compare(
    images: str | os.PathLike,
    out: str | os.PathLike,
    config: SfmConfig = SfmConfig(),
    weights: str | os.PathLike | None = None,
    ground_truth: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Runs the three pipelines on the images of ``images`` and returns their numbers.

    Args:
        images: image folder (searched recursively, as ``patchmatch sfm`` does).
        out: output folder (``colmap-sift/``, ``patchmatch/``, ``patchmatch-without-network/``,
            ``compare.json``).
        config: patchmatch's settings; keypoints, image size, camera, verification and mapper
            settings are shared with the SIFT run.
        weights: network checkpoint (None: shipped weights).
        ground_truth: ``cameras.json`` (None: looked for with :func:`find_ground_truth`).
        overwrite: redo all runs.
        progress: progress bars.

    Returns:
        ``{"images": N, "ground_truth": path|None, "methods": {"colmap-sift": {...}, "patchmatch": {...},
        "patchmatch-without-network": {...}}}``.

    Raises:
        FileNotFoundError: no image folder; ValueError: fewer than two images;
        FileExistsError: ``OUT/compare.json`` exists and is not a compare result (without ``overwrite``).
    """
    images, out = Path(images), Path(out)
    ground_truth = Path(ground_truth) if ground_truth is not None else find_ground_truth(images)
    names, skipped = _check_inputs(images, out, config, weights, ground_truth, overwrite)
    t_load = time.perf_counter()  # the network too: a bad precision or device fails before any work
    scorer = PatchScorer.load(weights, device=config.device, precision=config.precision, tta=config.tta)
    load_seconds = time.perf_counter() - t_load
    with run_lock(out):  # one comparison at a time in OUT (its SIFT folder has no lock of its own)
        return _compare(images, out, names, skipped, config, scorer, load_seconds, ground_truth, overwrite, progress)


def _compare(images: Path, out: Path, names: list[str], skipped: list[dict[str, str]], config: SfmConfig,
             scorer: PatchScorer, load_seconds: float, ground_truth: Path | None, overwrite: bool,
             progress: bool) -> dict:  # fmt: skip
    """:func:`compare` once its inputs are checked, the network loaded and OUT held."""
    if overwrite and (out / SIFT_DIR).exists():
        shutil.rmtree(out / SIFT_DIR)
    logger.info("COLMAP SIFT on %d images of %s", len(names), images)
    sift = run_colmap_sift(images, out / SIFT_DIR, names, config, ground_truth)
    logger.info("patchmatch on the same images")
    t = time.perf_counter()
    report = run_sfm(images, out / PATCHMATCH_DIR, config, scorer=scorer, overwrite=overwrite, progress=progress,
                     ground_truth=ground_truth)  # fmt: skip
    pm = _patchmatch_row(report, round(time.perf_counter() - t + load_seconds, 2))  # loading the network included
    logger.info("the same pipeline without the network")
    t = time.perf_counter()
    plain = dataclasses.replace(config, match=dataclasses.replace(config.match, network=False))
    report = run_sfm(images, out / WITHOUT_NETWORK_DIR, plain, scorer=scorer, overwrite=overwrite, progress=progress,
                     ground_truth=ground_truth)  # fmt: skip
    without = {**_patchmatch_row(report, round(time.perf_counter() - t, 2)), "network": None}  # never asked
    result = {"images_dir": str(images), "images": len(names), "ground_truth": str(ground_truth) if ground_truth else None,
              "max_keypoints": config.max_keypoints, "max_image_size": config.max_image_size,
              "camera": _camera(config), "skipped": skipped,
              "methods": {"colmap-sift": sift, "patchmatch": pm, WITHOUT_NETWORK_DIR: without}}  # fmt: skip
    write_json(out / "compare.json", result)  # strict JSON: NaN as null
    return result


def _check_inputs(images: Path, out: Path, config: SfmConfig, weights, ground_truth: Path | None,
                  overwrite: bool) -> tuple[list[str], list[dict[str, str]]]:  # fmt: skip
    """Every input checked before either pipeline runs; returns the images all get and the skipped ones.

    Raises:
        FileNotFoundError, NotADirectoryError, FileExistsError, ValueError: see :func:`compare`.
    """
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: not an image folder" if images.exists() else f"{images}: image folder not found")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: OUT must be a folder, not a file")
    _check_foreign_output(out, overwrite)
    for name in (SIFT_DIR, PATCHMATCH_DIR, WITHOUT_NETWORK_DIR):  # --overwrite replaces none of these
        _refuse_file_or_link(out / name)
    if (out / "compare.json").is_symlink() or (out / "compare.json").is_dir():
        raise FileExistsError(f"{out / 'compare.json'}: a link or a folder where `patchmatch compare` writes its "
                              "result; remove it or choose another OUT")  # fmt: skip
    if not overwrite:  # each method's folder: refused before any method runs, not when its turn comes
        _check_sift_folder(out / SIFT_DIR)
        for folder in (out / PATCHMATCH_DIR, out / WITHOUT_NETWORK_DIR):
            check_run_folder(folder)
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: no such checkpoint file")
    if out.resolve() == images.resolve():
        raise ValueError(f"{out}: the output folder cannot be the image folder (use a subfolder or another folder)")
    known = set(load_cameras_json(ground_truth)) if ground_truth is not None else set()  # readable, checked first
    listed = exclude_output_dir(list_images(images), images, out)
    names, skipped = _usable_images(images, listed, known)
    if len(names) < 2:
        raise ValueError(f"{images}: {len(names)} image(s); need at least two")
    if ground_truth is not None and not known & set(names):  # about these images
        raise ValueError(f"{ground_truth} describes none of the images under {images} (wrong scene?)")
    read_pairs_strategy_file(config.pairs, listed)  # checked before SIFT's run (patchmatch's would find it only afterwards)
    check_camera_settings(images, names, config)  # likewise
    return names, skipped


def _patchmatch_row(report: dict, seconds: float) -> dict:
    """patchmatch's numbers in the comparison, from its report.json."""
    keys = ("registered", "points", "observations", "mean_track_length", "mean_reprojection_error", "verified_pairs")
    pm = {k: report[k] for k in keys}
    pm["seconds"] = seconds
    pm["seconds_per_stage"] = report["seconds"]
    pm["resumed"] = bool(report.get("resumed"))
    pm["network"] = report["weights"]  # path, precision, backend, tta: what scored the pairs
    pm["candidates_scored"] = report.get("candidates_scored", 0)  # 0: the network was never asked
    pm["models"] = [m["registered"] for m in report.get("models", [])]
    pm["rejected"] = report.get("rejected", [])
    if "pose" in report:
        pm["pose"] = {k: v for k, v in report["pose"].items() if k != "pair_errors"}
    return pm


def _usable_images(images: Path, names: list[str], prefer: set[str] = frozenset()) -> tuple[list[str], list[dict[str, str]]]:
    """The images every pipeline gets: readable, one per file content (``prefer``'s name kept, e.g. the
    ground truth's), no hloc pair-name collision.

    Returns ``(names, skipped)``, ``skipped`` as in ``report.json`` (``name``, ``reason``), so
    that "registered N/M" counts the same M images for every method.
    """
    usable, skipped = [], []
    for n in names:
        try:
            read_gray(images / n)
            usable.append(n)
        except ImageReadError as e:
            skipped.append({"name": n, "reason": str(e)})
    usable, collisions = pair_key_collisions(usable)
    usable, duplicates = duplicate_files(images, usable, prefer)
    for s in skipped + collisions + duplicates:
        logger.warning("skipped %s: %s", s["name"], s["reason"])
    return usable, skipped + collisions + duplicates


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def format_table(result: dict) -> str:
    """Markdown table of :func:`compare`'s result: one row per method."""
    head = ["method", "registered", "points", "track len", "reproj px", "time s", "time per stage s"]
    gt = result.get("ground_truth") is not None
    if gt:
        head += ["rot. err. median °", "AUC@0.5°", "AUC@1°", "AUC@2°"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for method, row in result["methods"].items():
        stages = ", ".join(f"{k} {v:.1f}" for k, v in row.get("seconds_per_stage", {}).items())
        time_s = _fmt(float(row["seconds"]), 1) + (" (resumed: this call only)" if row.get("resumed") else "")
        cells = [method, f"{row['registered']}/{result['images']}", str(row["points"]), _fmt(row["mean_track_length"]),
                 _fmt(row["mean_reprojection_error"]), time_s, stages]  # fmt: skip
        if gt:
            pose = row.get("pose", {})
            auc = pose.get("rotation_auc", {})
            cells += [_fmt(pose.get("rotation_error_median_deg"), 3), *(_fmt(auc.get(t)) for t in ("0.5", "1", "2"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
