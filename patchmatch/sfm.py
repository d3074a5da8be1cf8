"""The structure-from-motion pipeline: images → features → matches → COLMAP model.

:func:`run_sfm` chains the stages of :mod:`patchmatch.stages`, each skipping what an earlier
(interrupted) run already stored::

    images/ ─extract─▶ features.h5 ─select_pairs─▶ pairs.json ─match─▶ matches.h5
      ─to_database─▶ database.db ─verify─▶ two-view geometries (─guided─▶ more verified matches, opt-in)
      ─reconstruct─▶ sparse/0

Output folder ``OUT``:

* ``run.json``: what makes the stored features and matches valid (image folder, detector and
  matching settings, a hash of the network weights). A later run with other settings refuses
  to mix its results with these unless ``overwrite=True``.
* ``features.h5``, ``matches.h5``: hloc's layout (:mod:`patchmatch.storage`); keypoints in
  pixels of the original images. ``pairs.json``: the image pairs.
* ``guided.json``: the pairs geometry-guided matching has done (:mod:`patchmatch.stages.guided`).
* ``database.db``: rebuilt from the h5 files on every run (cheap), then verified;
  ``sparse/0``, ``sparse/1``, …: every model, largest first, COLMAP binary format.
* ``viz/*.png``: matches of the pairs with most verified inliers; ``viz/cameras.png``: a top
  view of the registered cameras and the 3D points.
* ``report.json``: counts, model statistics, seconds per stage, skipped images with reasons
  (and pose errors when ground truth is given).
* ``run.lock``: while a run works in OUT, its process id; a second run there is refused.
* ``shards/``: with a Ray executor, each image's features and each block of pairs' matches as
  a worker wrote them (:mod:`patchmatch.executors`); a rerun merges them instead of recomputing.

Resume: features of an image and matches of a pair are written once complete, so a rerun of
the same command after a crash or kill computes only what is missing; pairs, database,
verification and mapping always rerun.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import colmap, storage
from .features import CONTRAST_SCHEDULE
from .images import (IMAGE_EXTENSIONS, ImageReadError, check_known_camera, check_one_size, duplicate_files,
                     exclude_output_dir, pair_key_collisions, read_gray, scan_images)  # fmt: skip
from .matching import MatchConfig
from .pairs import parse_strategy, read_pairs_strategy_file
from .executors import make_executor, parse_executor
from .report import plain, write_json
from .scoring import PRECISIONS, TTA, PatchScorer, describe_scorer
from .stages import extract, guided, match, reconstruct, select_pairs, to_database, verify

logger = logging.getLogger(__name__)

#: Version of the OUT folder layout, stored in run.json.
RUN_FORMAT = 1
#: Files and folders a run writes in OUT (the ones ``overwrite=True`` removes).
OUTPUTS = ("run.json", "features.h5", "pairs.json", "matches.h5", "guided.json", "database.db", "sparse", "viz",
           "report.json", "shards")
#: Held in OUT while a run works there: ``"PID HOST"`` of its process.
LOCK_FILE = "run.lock"
#: Pictures of the pairs with most verified inliers drawn into OUT/viz: one look tells whether
#: the matches are right; more add seconds, not information.
NUM_VIZ_PAIRS = 2


@dataclass(frozen=True)
class SfmConfig:
    """Settings of :func:`run_sfm`: what a person decides, plus the policy objects ``match``,
    ``verification`` and ``mapper`` for experiments from Python.

    Attributes:
        max_keypoints: SIFT keypoints per image, the strongest by response (COLMAP's 8192).
        max_image_size: longest image side for detection and patches, pixels; None = original
            size. Stored keypoints are always in pixels of the original image. Default 3200,
            COLMAP's: SIFT detection needs ~240 bytes per pixel.
        device: torch device of the network (None = CUDA if available). With a Ray executor,
            where its actors score: None on the cluster's GPUs when it has some (one actor per
            GPU), else its CPUs; ``"cuda"`` on its GPUs (this machine needs none); ``"cpu"``
            on its CPUs (:func:`patchmatch.executors.actor_device`).
        precision: network precision, one of :data:`patchmatch.scoring.PRECISIONS`
            (see :meth:`patchmatch.scoring.PatchScorer.load`).
        tta: test-time augmentation of the network's scores, ``"none"``, ``"swap"``, ``"rot90"``,
            ``"dihedral"`` or ``"orient"`` (multiplies the network time by 1, 2, 4, 8, 4; see
            :class:`patchmatch.scoring.PatchScorer`).
        pairs: image pairs to match: ``"auto"`` (exhaustive up to 200 images, then retrieval),
            ``"exhaustive"``, ``"sequential:N"``, ``"retrieval:N"`` or ``"file:PATH"`` (see
            :mod:`patchmatch.pairs`).
        single_camera: all images share one camera (one size, one zoom); the default gives
            each image its own camera.
        camera: the known intrinsics of every image (:class:`patchmatch.colmap.CameraIntrinsics`:
            a COLMAP camera model and its parameters, held fixed unless its ``refine``), one
            camera shared by all of them (they must be of one size); None
            (default): SIMPLE_RADIAL cameras whose focal length (EXIF, or 1.2 × the longest side)
            and distortion are refined.
        executor: where extraction and matching run: ``"local"`` (this process), ``"ray"`` or
            ``"ray:ADDRESS"`` (a Ray cluster sharing the file system, :mod:`patchmatch.executors`);
            the matches are the same.
        threads: worker threads of the candidate search, of detection (at most
            :data:`~patchmatch.stages.extract.MAX_WORKERS`) and of verification; None: PyTorch's
            thread count (verification: ``verification.num_threads``). The command line's
            ``--threads`` also sets PyTorch's and OpenCV's thread counts.
        match: candidate search and match decision (:class:`~patchmatch.matching.MatchConfig`).
        verification: RANSAC of the geometric verification.
        mapper: COLMAP incremental mapper settings and fallbacks.
        contrast_schedule: SIFT contrast thresholds tried until an image has ``max_keypoints``
            (:data:`~patchmatch.features.CONTRAST_SCHEDULE`).
        guided: geometry-guided matching of the verified pairs
            (:class:`~patchmatch.stages.guided.GuidedConfig`); None (default): none, since with
            its mutual-best decision a good share of its matches are wrong (docs/benchmarks.md).
    """

    max_keypoints: int = 8192
    max_image_size: int | None = 3200
    device: str | None = None
    precision: str = "auto"
    tta: str = "none"
    pairs: str = "auto"
    single_camera: bool = False
    camera: colmap.CameraIntrinsics | None = None
    executor: str = "local"
    threads: int | None = None
    match: MatchConfig = field(default_factory=MatchConfig)
    verification: colmap.VerificationConfig = field(default_factory=colmap.VerificationConfig)
    mapper: colmap.MapperConfig = field(default_factory=colmap.MapperConfig)
    guided: guided.GuidedConfig | None = None
    contrast_schedule: tuple[float, ...] = CONTRAST_SCHEDULE

    def __post_init__(self):
        try:
            self.extract
        except ValueError as error:
            raise ValueError(f"SfmConfig.{error}") from None
        if self.precision not in PRECISIONS:
            raise ValueError(f"SfmConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.tta not in TTA:
            raise ValueError(f"SfmConfig.tta must be one of {tuple(TTA)}, got {self.tta!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"SfmConfig.threads must be >= 1 or None, got {self.threads}")
        parse_strategy(self.pairs)
        parse_executor(self.executor)

    @property
    def extract(self) -> extract.ExtractConfig:
        """The detection settings (:class:`patchmatch.stages.extract.ExtractConfig`)."""
        return extract.ExtractConfig(self.max_keypoints, self.max_image_size, tuple(self.contrast_schedule))

    def with_threads(self) -> SfmConfig:
        """This config with ``threads`` given to verification too (what runs, and what the report says)."""
        if not self.threads:
            return self
        return dataclasses.replace(self, verification=dataclasses.replace(self.verification, num_threads=self.threads))

    @property
    def shared_camera(self) -> bool:
        """One camera for all images: ``single_camera``, or a known ``camera`` (one calibration)."""
        return self.single_camera or self.camera is not None

    @property
    def mapping(self) -> colmap.MapperConfig:
        """The mapper settings that run: ``mapper``, with the intrinsics held fixed where ``camera``
        gives them and does not ask to refine them."""
        if self.camera is None or self.camera.refine:
            return self.mapper
        return dataclasses.replace(self.mapper, refine_focal_length=False, refine_extra_params=False)

    @property
    def workers(self) -> int:
        """Worker threads: ``threads``, or PyTorch's thread count."""
        return self.threads or torch.get_num_threads()


# --------------------------------------------------------------------------
# The output folder: what a run depends on (run.json), and refusing to mix runs
# --------------------------------------------------------------------------
def weights_fingerprint(scorer: PatchScorer) -> str:
    """SHA-256 (first 16 hex digits) of the network's class and weights (an int8 model's
    quantised weights dequantised, so its quantisation is covered)."""
    digest = hashlib.sha256(type(scorer.model).__name__.encode())
    for key, value in sorted(scorer.model.state_dict().items()):
        if not isinstance(value, torch.Tensor):  # e.g. a quantised layer's dtype entry
            digest.update(f"{key}={value}".encode())
            continue
        value = value.dequantize() if value.is_quantized else value
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def run_identity(image_dir: Path, config: SfmConfig, spec: dict) -> dict:
    """What stored features and matches depend on (run.json): the image folder, the detection
    settings, the match decision and the network that scores (``spec``,
    :func:`patchmatch.stages.match.load_scorer`: weights hash, device kind, precision, int8
    activation variant, test-time augmentation)."""
    return {
        "format": RUN_FORMAT,
        "image_dir": str(image_dir.resolve()),
        "features": {"detector": "opencv-sift", "max_keypoints": config.max_keypoints,
                     "max_image_size": config.max_image_size, "contrast_schedule": list(config.contrast_schedule)},
        "matching": {"match": dataclasses.asdict(config.match), "weights_sha256": spec["fingerprint"],
                     "device": spec["device"].partition(":")[0], "precision": spec["precision"],
                     "activation_bits": spec["activation_bits"], "tta": spec["tta"],
                     "guided": None if config.guided is None else dataclasses.asdict(config.guided)},
    }  # fmt: skip


def prepare_output(out_dir: Path, identity: dict, overwrite: bool) -> bool:
    """Checks OUT against its run.json; returns True when resuming an earlier run.

    With ``overwrite``, the outputs of :data:`OUTPUTS` are deleted (other files in OUT are left
    alone) and a new run starts.

    Raises:
        FileExistsError: OUT is a file, or holds another run or unrelated files, and
            ``overwrite`` is false.
    """
    run_json = out_dir / "run.json"
    if overwrite and out_dir.is_dir():
        _remove_outputs(out_dir)
    else:
        check_run_folder(out_dir)
        if out_dir.exists() and any(p.name != LOCK_FILE for p in out_dir.iterdir()):
            _check_same_run(out_dir, _read_run_json(run_json), identity)
            return True
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_json, identity, keep=True)
    return False


def check_run_folder(out_dir: Path) -> None:
    """Refuses an OUT that is a file, or a folder of other files than a patchmatch run's (no
    ``run.json``): a run there would mix its outputs with them.

    Raises:
        FileExistsError: as above.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"output folder {out_dir} is a file, not a folder")
    if out_dir.is_dir() and any(p.name != LOCK_FILE for p in out_dir.iterdir()) and not (out_dir / "run.json").is_file():
        raise FileExistsError(f"output folder {out_dir} is not empty and holds no patchmatch run (no run.json); "
                              "choose another folder or pass --overwrite (Python: overwrite=True)")  # fmt: skip


@contextmanager
def run_lock(out_dir: Path):
    """Holds OUT for one run: :data:`LOCK_FILE` with this process's id, removed on exit. A lock
    left by a process that no longer runs (killed) is taken over with a warning.

    Raises:
        FileExistsError: another live process holds OUT (named with its pid and host).
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"output folder {out_dir} is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    path, mine = out_dir / LOCK_FILE, f"{os.getpid()} {socket.gethostname()}"
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            holder = path.read_text().strip() if path.is_file() else ""
            if _holder_alive(holder):
                raise FileExistsError(f"{out_dir} is in use by another run (pid {holder.replace(' ', ' on ')}, {path}); "
                                      f"wait for it to finish, or delete {path} if that process is gone") from None  # fmt: skip
            logger.warning("%s: taking over the lock of a run that no longer runs (%s)", out_dir, holder or "empty")
            path.unlink(missing_ok=True)
    with os.fdopen(fd, "w") as f:
        f.write(mine + "\n")
    try:
        yield
    finally:
        if path.is_file() and path.read_text().strip() == mine:
            path.unlink()


def _holder_alive(holder: str) -> bool:
    """Whether the ``"PID HOST"`` of a lock names a running process (another host's: assumed so)."""
    pid, _, host = holder.partition(" ")
    if not pid.isdigit():
        return False
    if host and host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_outputs(out_dir: Path) -> None:
    for name in OUTPUTS:
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for extra in out_dir.glob("*.corrupt-*"):
        extra.unlink()


def _read_run_json(path: Path) -> Any:
    """run.json as stored, with the keys of runs made before they existed filled in."""
    try:
        previous = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if isinstance(previous, dict) and isinstance(previous.get("features"), dict):
        previous["features"].setdefault("contrast_schedule", [CONTRAST_SCHEDULE[0]])  # one threshold before
    if isinstance(previous, dict) and isinstance(previous.get("matching"), dict):
        previous["matching"].setdefault("tta", "none")  # before test-time augmentation existed
        previous["matching"].setdefault("activation_bits", None)  # ... or int8 activation variants
        previous["matching"].setdefault("guided", None)  # ... or guided matching
        gpu = previous["matching"].get("precision") == "fp16"  # ... or the device kind: fp16 ran on GPUs only
        previous["matching"].setdefault("device", "cuda" if gpu else "cpu")
        if isinstance(previous["matching"].get("match"), dict):
            previous["matching"]["match"].setdefault("network", True)  # ... or the switch to leave the network out
    return previous


def _check_same_run(out_dir: Path, previous: Any, identity: dict) -> None:
    if previous == plain(identity, keep=True):
        return
    diff = _diff(previous, identity)
    hint = ""
    if "max_image_size: None ->" in diff:  # runs made before the 3200 px default
        hint = "; it was made without a size limit: pass --max-image-size 0 to resume it"
    raise FileExistsError(f"output folder {out_dir} holds a run with other settings ({diff}); "
                          f"choose another folder or pass --overwrite (Python: overwrite=True) to replace it{hint}")  # fmt: skip


def _diff(previous: Any, current: dict, prefix: str = "") -> str:
    """``"key.sub: old -> new; ..."`` of two run.json contents."""
    if not isinstance(previous, dict):
        return "unreadable run.json"
    current = plain(current, keep=True)
    diffs = []
    for key in sorted(set(previous) | set(current)):
        a, b = previous.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            sub = _diff(a, b, f"{prefix}{key}.")
            if sub:
                diffs.append(sub)
        elif a != b:
            diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return "; ".join(diffs)


# --------------------------------------------------------------------------
# Before any work: the images, the network
# --------------------------------------------------------------------------
def check_camera_settings(image_dir: Path, names: list[str], config: SfmConfig) -> None:
    """Refuses, before any work, one camera for images of two sizes (``single_camera``, or a known
    ``camera``: one calibration is one camera), or a known camera whose principal point lies
    outside the images. Files whose size cannot be read are left to the reader.

    Raises:
        ValueError: naming the files and their sizes.
    """
    if config.shared_camera:
        check_one_size(image_dir, names, "--camera-model" if config.camera is not None else "--single-camera")
    if config.camera is not None:
        check_known_camera(image_dir, names, config.camera)


def _vet_images(image_dir: Path, out_dir: Path, config: SfmConfig, ground_truth) -> tuple[list[str], list[dict]]:
    """The images to use and those skipped (name clashes, byte-identical copies), checked
    against the pairs file, the ground truth and a shared camera before any work.

    Raises:
        ValueError: no image, the output folder is the image folder, a bad pairs file, a
            ground truth that names none of the images, or images of two sizes for one camera.
    """
    if out_dir.resolve() == image_dir.resolve():
        raise ValueError(f"{out_dir}: the output folder cannot be the image folder (use a subfolder or another folder)")
    listed, links = scan_images(image_dir)
    names = exclude_output_dir(listed, image_dir, out_dir)
    if not names:
        raise ValueError(f"no images found under {image_dir}")
    names, skipped = pair_key_collisions(names)
    skipped = links + skipped
    known: set[str] = set()
    if ground_truth is not None:
        from .evaluation.pose import load_cameras_json

        known = set(load_cameras_json(ground_truth))
    names, duplicates = duplicate_files(image_dir, names, known)  # a copy never hides a ground-truth name
    # a bad pairs file fails before any work; its pairs that name a skipped image are left out later
    read_pairs_strategy_file(config.pairs, names + [item["name"] for item in skipped + duplicates])
    check_camera_settings(image_dir, names, config)
    if ground_truth is not None and not known & set(names):
        raise ValueError(f"{ground_truth} describes none of the images under {image_dir} (wrong scene?)")
    for item in skipped + duplicates:
        logger.warning("%s", item["reason"])  # each reason ends with "skipped"
    return names, skipped + duplicates


@contextmanager
def _network(config: SfmConfig, scorer: PatchScorer | None, weights):
    """``(executor, scorer, spec, config)``: the run's executor (entered); its network, the scorer
    this process holds and the spec of the one that scores
    (:func:`patchmatch.stages.match.load_scorer`: here, or on the executor's GPUs or CPUs); the
    config with the precision and tta a scorer passed in runs at (it decides; settings it
    overrides are named in a warning)."""
    with make_executor(config.executor) as executor:
        if scorer is None:
            scorer, spec = match.load_scorer(weights, config.device, config.precision, config.tta, executor)
            yield executor, scorer, spec, config
            return
        ran = {"precision": scorer.precision, "tta": getattr(scorer, "tta", "none")}
        ignored = {k: v for k, v in ran.items() if getattr(config, k) not in (v, "auto", "none")}
        if ignored:
            logger.warning("SfmConfig %s ignored: the scorer passed in runs %s", {k: getattr(config, k) for k in ignored}, ignored)
        yield executor, scorer, match.scorer_spec(scorer), dataclasses.replace(config, **ran)


@contextmanager
def _stage(name: str, seconds: dict[str, float], done: Callable[[], None] | None = None):
    """Times a stage into ``seconds[name]``, logs its start and end, and calls ``done`` after it
    finished (the report written: a killed run's report keeps the stages it finished)."""
    start, finished = time.perf_counter(), False
    logger.info("stage %s ...", name)
    try:
        yield
        finished = True
    finally:
        seconds[name] = round(time.perf_counter() - start, 3)
        logger.info("stage %s %s %.1f s", name, "done in" if finished else "stopped after", seconds[name])
    if done is not None:
        done()


# --------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------
def run_sfm(
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: SfmConfig = SfmConfig(),
    scorer: PatchScorer | None = None,
    weights: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
    ground_truth: str | os.PathLike | None = None,
) -> dict:
    """Reconstructs cameras and sparse points from a folder of images.

    Args:
        image_dir: folder searched recursively; images are named by their path relative to it
            (posix separators), as COLMAP names them.
        out_dir: output folder (see the module doc); created if absent.
        config: pipeline settings.
        scorer: the patch network; default: ``PatchScorer.load(weights)`` with the config's
            device, precision and tta. A scorer passed in is used as it is (its precision and
            tta are reported).
        weights: checkpoint to load when ``scorer`` is None (None = shipped weights).
        overwrite: replace the outputs of another run found in ``out_dir``.
        progress: draw a tqdm bar per stage.
        ground_truth: optional ``cameras.json``; the report then holds the pose errors of
            :func:`patchmatch.evaluation.pose.evaluate_poses` over the images of this run it lists.

    Returns:
        The report, also written to ``out_dir/report.json`` (NaN and infinity, e.g. the
        reprojection error of no model, written as null): ``images`` (image files found, used or
        skipped), ``images_used``, ``registered``, ``points``, ``mean_track_length``, ``mean_reprojection_error`` (px), ``pairs``,
        ``seconds`` (per stage, this call), ``seconds_total`` (this call), ``seconds_all_calls``
        (with the earlier calls a resumed run built on), ``skipped`` (``[{"name", "reason"}]``), ``unregistered`` (``[{"name", "reason"}]``:
        in no model, and why), ``models`` (every model written: ``path``, ``registered``, ``points``, ``names``),
        ``rejected`` (``[{"name", "reason"}]``: registered by the mapper, left out by the checks),
        ``scoring`` (where the network scored the pairs: ``executor``, ``device``,
        ``precision``; on Ray ``actors`` and ``nodes``), counts of work done and reused, and
        ``pose`` with ``ground_truth``. The model statistics and ``pose`` are those of
        ``sparse/0``, the largest model.

    Raises:
        FileNotFoundError: ``image_dir`` missing, or no weights shipped and none given.
        FileExistsError: ``out_dir`` holds another run or unrelated files (and ``overwrite``
            is false), or an image changed since its stored features.
        ValueError: fewer than 2 readable images, or a bad pairs strategy; CUDA asked for on a
            Ray cluster without GPUs.
        patchmatch.executors.WorkerSetupError: a Ray actor could not load the network (CUDA
            not usable on its node, other weights there).
    """
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    names, skipped = _vet_images(image_dir, out_dir, config, ground_truth)
    with _network(config, scorer, weights) as (executor, scorer, spec, config), run_lock(out_dir), \
            _failures_reported(out_dir / "report.json") as report:  # fmt: skip
        identity = run_identity(image_dir, config, spec)
        resumed = prepare_output(out_dir, identity, overwrite)  # from here on OUT is this run's
        seconds = _begin(report, image_dir, out_dir, skipped, resumed)
        logger.info("network: %s", describe_scorer(scorer))
        if spec["device"] != str(scorer.device):
            logger.info("the pairs are scored on the Ray cluster's GPUs, at %s", spec["precision"])
        config = config.with_threads()
        verification = config.verification

        def stage(name: str):
            return _stage(name, seconds, lambda: write_json(out_dir / "report.json", report))

        with stage("features"):
            features = extract.run(image_dir, names, out_dir / "features.h5", config.extract, config.workers,
                                   progress, report, executor)  # fmt: skip
        good = _usable(image_dir, out_dir, names, features, report)
        unreadable = [s["name"] for s in report["skipped"]]
        pairs = select_pairs.run(features, good, out_dir / "pairs.json", config.pairs, unreadable, report)
        with stage("matching"):
            matches = match.run(image_dir, features, pairs, out_dir / "matches.h5", scorer, config.match,
                                config.max_image_size, config.workers, progress, report, executor, spec)  # fmt: skip
        with stage("database"):
            database = to_database.run(image_dir, features, pairs, matches, out_dir / "database.db", good,
                                       config.shared_camera, report, config.camera)  # fmt: skip
        with stage("verification"):
            verify.run(database, verification, report=report)
        if config.guided is not None:
            with stage("guided"):
                guided.run(image_dir, features, pairs, matches, database, out_dir / "guided.json", scorer,
                           dataclasses.replace(config.guided, upright=config.match.upright), verification,
                           config.max_image_size, progress, report)  # fmt: skip
        with stage("mapping"):
            model = reconstruct.run(database, image_dir, out_dir / "sparse", config.mapping, report)
        reconstruction = colmap.read_reconstruction(model) if model.is_dir() else None
        if NUM_VIZ_PAIRS:
            with stage("viz"):
                report["viz"] = _draw(database, image_dir, out_dir / "viz", features, pairs, matches,
                                      reconstruction, len(good))  # fmt: skip
        stats = {k: v for k, v in colmap.reconstruction_stats(reconstruction).items() if k != "registered_names"}
        total = round(sum(seconds.values()), 3)
        report.update(status="complete", images=_found(names, report), images_used=len(good), **stats, seconds_total=total,
                      seconds_all_calls=round(report["seconds_earlier"] + total, 3), config=_settings_run(config),
                      weights={"sha256": identity["matching"]["weights_sha256"], **_scorer_meta(scorer, spec)})  # fmt: skip
        if ground_truth is not None:
            report["pose"] = _pose_report(reconstruction, ground_truth, good)
        write_json(out_dir / "report.json", report)
        _log_result(report, len(good))
    return report


def _found(names: list[str], report: dict) -> int:
    """The report's ``images``: the image files found, used or skipped (unreadable ones, copies, name
    clashes, links that lead nowhere); links to folders are not counted."""
    named = set(names)
    skipped = {s["name"] for s in report["skipped"]} - named
    return len(names) + sum(Path(n).suffix.lower() in IMAGE_EXTENSIONS for n in skipped)


def _settings_run(config: SfmConfig) -> dict:
    """The report's ``config``: the settings as they ran (the mapper's as :attr:`SfmConfig.mapping` made them)."""
    return dataclasses.asdict(dataclasses.replace(config, mapper=config.mapping))


def _begin(report: dict, image_dir: Path, out_dir: Path, skipped: list, resumed: bool) -> dict[str, float]:
    """Writes the "running" report and removes an earlier call's ``viz/`` (its pictures show the
    model this call replaces); returns the report's ``seconds``, filled stage by stage (so a
    stopped run's report keeps them), with the earlier calls' ``seconds_earlier`` beside them."""
    shutil.rmtree(out_dir / "viz", ignore_errors=True)
    seconds: dict[str, float] = {}
    report.update({"status": "running", "resumed": resumed, "image_dir": str(image_dir),
                   "out_dir": str(out_dir), "skipped": skipped, "notes": [], "seconds": seconds,
                   "seconds_earlier": _earlier_seconds(out_dir / "report.json") if resumed else 0.0})  # fmt: skip
    write_json(out_dir / "report.json", report)
    return seconds


def _earlier_seconds(report_path: Path) -> float:
    """Seconds the earlier calls of a resumed run spent, from the report they left (0 when unreadable)."""
    try:
        earlier = json.loads(report_path.read_text())
        return round(float(earlier.get("seconds_earlier") or 0) + sum(map(float, (earlier.get("seconds") or {}).values())), 3)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0


@contextmanager
def _failures_reported(path: Path) -> Iterator[dict]:
    """Yields the run's report; if the run raises once it has written ``path`` as "running", the
    file says ``"status": "failed"`` (``"interrupted"`` on Ctrl-C) and why, so an earlier run's
    "complete" report never outlives a failed rerun."""
    report: dict[str, Any] = {}
    try:
        yield report
    except BaseException as error:
        if report.get("status") == "running":
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            write_json(path, {**report, "status": status, "reason": f"{type(error).__name__}: {error}"})
        raise


def _log_result(report: dict, usable: int) -> None:
    """One line: the images registered in every model, points, track length, reprojection error."""
    models = len(report.get("models", []))
    stats = (report["points"], report["mean_track_length"], report["mean_reprojection_error"])
    if models > 1:
        logger.info("registered %d/%d images in %d models; the largest (sparse/0): %d images, %d points, track length "
                    "%.2f, reprojection error %.2f px", report["registered_in_models"], usable, models,
                    report["registered"], *stats)  # fmt: skip
    else:
        logger.info("registered %d/%d images, %d points, track length %.2f, reprojection error %.2f px",
                    report["registered"], usable, *stats)  # fmt: skip


def _usable(image_dir: Path, out_dir: Path, names: list[str], features_path: Path, report: dict) -> list[str]:
    """The images with features (the read ones); warns of those without keypoints.

    Raises:
        ValueError: fewer than two (after writing a failed report.json).
    """
    unreadable = {s["name"] for s in report["skipped"]}
    good = [n for n in names if n not in unreadable]
    report["no_keypoints"] = [n for n in good if len(storage.read_features(features_path, n)) == 0]
    for name in report["no_keypoints"]:
        logger.warning("%s: no keypoints (a blank, uniform or tiny image): it cannot be registered", image_dir / name)
    if len(good) < 2:
        reason = f"{image_dir}: fewer than 2 readable images ({len(good)} of {len(names)})"
        report.update(status="failed", reason=reason, images=_found(names, report), images_used=len(good), registered=0)
        write_json(out_dir / "report.json", report)
        raise ValueError(reason)
    return good


def _scorer_meta(scorer: PatchScorer, spec: dict) -> dict:
    """The network as the report names it: checkpoint path and model, and the precision, backend
    and device it scored the pairs with (``spec``: here, or on Ray's actors)."""
    meta = getattr(scorer, "meta", {}) or {}
    here = spec["device"] == str(scorer.device)  # else GPU actors: PyTorch
    used = {"precision": spec["precision"], "backend": scorer.backend if here else "torch", "device": spec["device"],
            "tta": spec["tta"]}  # fmt: skip
    if spec["activation_bits"]:
        used["activation_bits"] = spec["activation_bits"]
    return {**{k: meta[k] for k in ("path", "model") if k in meta}, **used}


def _pose_report(reconstruction, ground_truth, names: list[str]) -> dict:
    """Pose errors of the model against ``ground_truth`` over the ``names`` it lists."""
    from .evaluation.pose import evaluate_poses, load_cameras_json

    known = set(load_cameras_json(ground_truth))
    poses = colmap.reconstruction_poses(reconstruction) if reconstruction is not None else {}
    pose = evaluate_poses(poses, ground_truth, names=[n for n in names if n in known])
    pose["ground_truth"] = str(ground_truth)
    return pose


def _draw(database, image_dir, viz_dir, features_path, pairs_path, matches_path, reconstruction, num_images) -> list[str]:
    """The PNGs of OUT/viz: the best pairs' matches and, with a model, a top view of the cameras."""
    from . import viz

    written = _draw_best_pairs(database, image_dir, viz_dir, features_path, select_pairs.read(pairs_path),
                               matches_path, NUM_VIZ_PAIRS)  # fmt: skip
    if reconstruction is not None:
        poses = colmap.reconstruction_poses(reconstruction)
        canvas = viz.draw_cameras(poses, colmap.reconstruction_points(reconstruction),
                                  title=f"{len(poses)}/{num_images} registered, top view")  # fmt: skip
        written.append(viz.save_png(viz_dir / "cameras.png", canvas).name)
    return written


def _draw_best_pairs(database, image_dir, viz_dir, features_path, pairs, matches_path, count) -> list[str]:
    """PNGs of the ``count`` pairs with most verified inliers (inliers green, other matches red)."""
    from . import viz

    ids = colmap.read_image_ids(database)
    scored = [(len(inliers), a, b, inliers) for a, b in pairs
              for inliers in [colmap.read_verified_matches(database, ids[a], ids[b])]]  # fmt: skip
    scored.sort(key=lambda item: -item[0])
    written = []
    for _, a, b, inliers in scored[:count]:
        matches, _ = storage.read_matches(matches_path, a, b)
        inlier_set = {tuple(row) for row in inliers.tolist()}
        flags = np.array([tuple(row) in inlier_set for row in matches.tolist()], bool)
        try:
            img_a, _ = read_gray(image_dir / a)
            img_b, _ = read_gray(image_dir / b)
        except ImageReadError as error:  # changed on disk since detection
            logger.warning("no picture of %s / %s: %s", a, b, error)
            continue
        xy_a, xy_b = (storage.read_features(features_path, n).xy for n in (a, b))
        canvas = viz.draw_matches(img_a, img_b, xy_a, xy_b, matches, flags, title=f"{a} - {b}")
        path = viz.save_png(viz_dir / f"{storage.names_to_pair(a, b, separator='__')}.png", canvas)
        written.append(path.name)
    return written
