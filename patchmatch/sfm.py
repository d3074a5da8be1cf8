"""The structure-from-motion pipeline: images → features → matches → COLMAP model.

Stages, each skipping what an earlier (interrupted) run already stored::

    images/ ─read─▶ SIFT (features.h5) ─crop─▶ patches (memory, LRU) ─kNN + network─▶
      matches.h5 ─▶ database.db ─verify─▶ two-view geometries ─map─▶ sparse/0, report.json

Output folder ``OUT``:

* ``run.json``: what makes the stored features and matches valid (image
  folder, detector and matching settings, a hash of the network weights). A
  later run with other settings refuses to mix its results with these unless
  ``overwrite=True``.
* ``features.h5``, ``matches.h5``: hloc's layout (:mod:`patchmatch.storage`);
  keypoints in pixels of the original images.
* ``database.db``: rebuilt from the h5 files on every run (cheap), then
  verified; ``sparse/0``: the largest model, COLMAP binary format.
* ``viz/*.png``: matches of the pairs with most verified inliers; ``viz/cameras.png``: a top
  view of the registered cameras and the 3D points.
* ``report.json``: counts, model statistics, seconds per stage, skipped images
  with reasons (and pose errors when ground truth is given).

Resume: features of an image and matches of a pair are written once complete
(:mod:`patchmatch.storage`), so a rerun of the same command after a crash or
kill computes only what is missing; verification and mapping always rerun.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from . import colmap, storage
from .cache import LruArrayCache
from .evaluation.pose import evaluate_poses
from .features import Features, detect
from .images import ImageReadError, image_size, list_images, read_gray
from .matching import MatchConfig, match_features, needs_network, plan_pairs
from .models.quantize import check_activation_bits
from .pairs import make_pairs, parse_strategy, read_pairs_strategy_file
from .patches import extract_patches
from .scoring import PRECISIONS, TTA, PatchScorer, describe_scorer

logger = logging.getLogger(__name__)

#: Version of the OUT folder layout, stored in run.json.
RUN_FORMAT = 1
#: Files and folders a run writes in OUT (the ones ``overwrite=True`` removes).
OUTPUTS = ("run.json", "features.h5", "matches.h5", "database.db", "sparse", "viz", "report.json")


@dataclass(frozen=True)
class SfmConfig:
    """Settings of :func:`run_sfm`.

    Attributes:
        max_keypoints: SIFT keypoints per image (strongest by response). Default 8192, as
            COLMAP's SIFT: with 8192 instead of 4096 (and ``match.max_ratio`` 0.85 instead of
            0.95) ``python pipelines/sfm_variants.py SCENE kp4096_r95 kp8192_r85`` gave rotation
            error medians entry-P10 0.222° → 0.197°, castle-P19 0.61° → 0.563°, temple-ring
            1.158° → 1.047° (16/16 both), in about the same time (castle-P19 133 s, one thread).
        max_image_size: longest image side for detection and patches, in
            pixels; ``None`` = original size. Stored keypoints are always in
            pixels of the original image. Default 3200, COLMAP's SIFT default: SIFT
            detection needs ~240 bytes per pixel (a 108 MP pair exhausted 23 GB).
        device: torch device of the network (``None`` = CUDA if available).
        batch_size: patch pairs per network forward pass (None: 128 on CPU, 8192 on GPU).
        precision: network precision, ``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"int8"``
            (see :meth:`patchmatch.scoring.PatchScorer.load`).
        backend: ``"auto"``, ``"torch"`` or ``"onnxruntime"`` (see :class:`~patchmatch.scoring.PatchScorer`).
        tta: test-time augmentation of the network's scores, ``"none"``, ``"swap"``, ``"rot90"`` or
            ``"dihedral"`` (see :class:`~patchmatch.scoring.PatchScorer`; multiplies the network time by 1, 2, 4, 8).
        activation_bits: with ``precision="int8"``, the int8 file's activation variant, 8 or 7
            (None: the CPU's; see :mod:`patchmatch.models.quantize`).
        match: candidate search and match decision (:class:`MatchConfig`).
        pairs: image pairs to match: ``"exhaustive"``, ``"sequential:N"``, ``"retrieval:N"``
            or ``"file:PATH"`` (see :mod:`patchmatch.pairs`).
        verification: RANSAC of the geometric verification.
        mapper: COLMAP incremental mapper settings.
        single_camera: all images share one camera (one size, one zoom); the
            default gives each image its own SIMPLE_RADIAL camera.
        patch_cache_mb: memory for patches kept between pairs (MiB); an image
            whose patches were evicted is re-read and re-cropped when needed.
        num_viz_pairs: PNGs of the pairs with most verified inliers to write.
    """

    max_keypoints: int = 8192
    max_image_size: int | None = 3200
    device: str | None = None
    batch_size: int | None = None
    precision: str = "auto"
    backend: str = "auto"
    tta: str = "none"
    activation_bits: int | None = None
    match: MatchConfig = field(default_factory=MatchConfig)
    pairs: str = "exhaustive"
    verification: colmap.VerificationConfig = field(default_factory=colmap.VerificationConfig)
    mapper: colmap.MapperConfig = field(default_factory=colmap.MapperConfig)
    single_camera: bool = False
    patch_cache_mb: int = 2048
    num_viz_pairs: int = 2

    def __post_init__(self):
        if self.max_keypoints < 1:
            raise ValueError(f"SfmConfig.max_keypoints must be >= 1, got {self.max_keypoints}")
        if self.max_image_size is not None and self.max_image_size < 32:
            raise ValueError(f"SfmConfig.max_image_size must be >= 32 or None, got {self.max_image_size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"SfmConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.precision not in PRECISIONS or self.backend not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"SfmConfig.precision must be one of {PRECISIONS} and backend one of ('auto', 'torch', 'onnxruntime'), "
                             f"got {self.precision!r} and {self.backend!r}")  # fmt: skip
        if self.tta not in TTA:
            raise ValueError(f"SfmConfig.tta must be one of {tuple(TTA)}, got {self.tta!r}")
        if self.activation_bits is not None:
            check_activation_bits(self.activation_bits)
            if self.precision != "int8":
                raise ValueError(f"SfmConfig.activation_bits (--activation-bits) is for precision 'int8' (--precision int8), "
                                 f"not {self.precision!r}")  # fmt: skip
        if self.patch_cache_mb < 0 or self.num_viz_pairs < 0:
            raise ValueError("SfmConfig.patch_cache_mb and num_viz_pairs must be >= 0")
        parse_strategy(self.pairs)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
def weights_fingerprint(scorer: PatchScorer) -> str:
    """SHA-256 (first 16 hex digits) of the network's class and weights."""
    digest = hashlib.sha256(type(scorer.model).__name__.encode())
    for key, value in sorted(scorer.model.state_dict().items()):
        if not isinstance(value, torch.Tensor):  # e.g. a quantised layer's dtype entry
            digest.update(f"{key}={value}".encode())
            continue
        value = value.dequantize() if value.is_quantized else value  # int8 models
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _identity(image_dir: Path, config: SfmConfig, scorer_hash: str, precision: str = "fp32", activation_bits: int | None = None) -> dict:
    """What stored features and matches depend on (run.json). ``scorer_hash`` covers an int8
    model's quantisation too; ``activation_bits`` names its variant in a refusal."""
    return {
        "format": RUN_FORMAT,
        "image_dir": str(image_dir.resolve()),
        "features": {"detector": "opencv-sift", "max_keypoints": config.max_keypoints,
                     "max_image_size": config.max_image_size},
        "matching": {"match": dataclasses.asdict(config.match), "weights_sha256": scorer_hash,
                     "precision": precision, "activation_bits": activation_bits, "tta": config.tta},
    }  # fmt: skip


def _finite(obj: Any, keep: bool = False) -> Any:
    """Make data strict-JSON: NaN and infinities become None, or with ``keep``
    the strings ``"nan"``, ``"inf"``, ``"-inf"`` (settings such as
    ``min_score=-inf`` must survive a round trip through run.json)."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj) if keep else None
    if isinstance(obj, dict):
        return {k: _finite(v, keep) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v, keep) for v in obj]
    return obj


def _plain(data: Any, keep: bool = False) -> Any:
    """JSON-able plain data (numpy, paths converted), strict (see :func:`_finite`)."""
    return _finite(json.loads(json.dumps(data, default=_json_default)), keep)


def _write_json(path: Path, data: Any, keep: bool = False) -> None:
    """Write strict JSON atomically (temporary file renamed into place)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_plain(data, keep), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _prepare_output(out_dir: Path, identity: dict, overwrite: bool) -> bool:
    """Check OUT against run.json; returns True when resuming an earlier run.

    With ``overwrite``, the outputs of :data:`OUTPUTS` are deleted (other files
    in OUT are left alone) and a new run starts.

    Raises:
        FileExistsError: OUT holds another run, or unrelated files, and
            ``overwrite`` is false.
    """
    run_json = out_dir / "run.json"
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"output folder {out_dir} is a file, not a folder")
    if overwrite and out_dir.exists():
        for name in OUTPUTS:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        for extra in out_dir.glob("*.corrupt-*"):
            extra.unlink()
    elif out_dir.exists() and any(out_dir.iterdir()):
        if not run_json.is_file():
            raise FileExistsError(
                f"output folder {out_dir} is not empty and holds no patchmatch run (no run.json); "
                "choose another folder or pass overwrite=True (--overwrite)"
            )
        try:
            previous = json.loads(run_json.read_text())
        except json.JSONDecodeError:
            previous = None
        if isinstance(previous, dict) and isinstance(previous.get("matching"), dict):
            previous["matching"].setdefault("tta", "none")  # runs made before test-time augmentation existed
            previous["matching"].setdefault("activation_bits", None)  # ... or int8 activation variants
        if previous != _plain(identity, keep=True):
            diff = _diff(previous, identity)
            hint = ""
            if "max_image_size: None ->" in diff:  # runs made before the 3200 px default
                hint = "; it was made without a size limit: pass --max-image-size 0 to resume it"
            raise FileExistsError(
                f"output folder {out_dir} holds a run with other settings ({diff}); "
                f"choose another folder or pass overwrite=True (--overwrite) to replace it{hint}"
            )
        return True
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_json, identity, keep=True)
    return False


def _diff(previous: Any, current: dict, prefix: str = "") -> str:
    if not isinstance(previous, dict):
        return "unreadable run.json"
    current = _plain(current, keep=True)
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


def _check_storage(path: Path, probe: Callable[[Path], object], notes: list[str]) -> None:
    """Move an unreadable h5 file aside (``*.corrupt``) so that it is recomputed."""
    try:
        probe(path)
    except storage.StorageError as error:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        message = f"{path.name} was unreadable ({error}); moved to {aside.name} and recomputed"
        logger.warning(message)
        notes.append(message)


def _axis_scales(working_shape: tuple[int, ...], original_size: np.ndarray) -> np.ndarray:
    """Per-axis ``[sx, sy]`` = working / original size (rounding makes them differ slightly)."""
    h, w = working_shape[:2]
    return np.array([w / float(original_size[0]), h / float(original_size[1])])


def _to_working(features: Features, scales: np.ndarray, working_shape: tuple[int, ...]) -> Features:
    """Keypoints in pixels of the original image → pixels of the downscaled one.

    ``scales`` is ``[sx, sy]`` (:func:`_axis_scales`); pixel centres sit at
    integer coordinates, so ``x_work = (x + 0.5) * sx - 0.5``.
    """
    if np.all(scales == 1.0):
        return features
    kps = features.keypoints.copy()
    kps[:, :2] = (kps[:, :2] + 0.5) * scales.astype(np.float32) - 0.5
    kps[:, 2] *= float(np.mean(scales))
    size = np.array([working_shape[1], working_shape[0]], np.int64)
    return Features(kps, features.descriptors, features.scores, size)


def _to_original(features: Features, scales: np.ndarray, original_size: np.ndarray) -> Features:
    """Inverse of :func:`_to_working`: downscaled-image pixels → original-image pixels."""
    kps = features.keypoints.copy()
    if not np.all(scales == 1.0):
        kps[:, :2] = (kps[:, :2] + 0.5) / scales.astype(np.float32) - 0.5
        kps[:, 2] /= float(np.mean(scales))
    return Features(kps, features.descriptors, features.scores, np.asarray(original_size, np.int64))


#: Files that mark a folder as the output of ``patchmatch sfm`` (``run.json``) or ``compare`` (``compare.json``).
RUN_MARKERS = ("run.json", "compare.json")


def exclude_output_dir(names: list[str], image_dir: Path, out_dir: Path) -> list[str]:
    """Drops the files of output folders that lie inside the image folder (their PNGs): ``out_dir``
    and any earlier ``sfm`` / ``compare`` output (a subfolder holding ``run.json`` or ``compare.json``)."""
    inner: set[str] = set()
    try:
        inner.add(out_dir.resolve().relative_to(image_dir.resolve()).as_posix().rstrip("/"))
    except ValueError:
        pass
    for parent in {str(Path(n).parent) for n in names if "/" in n}:
        parts = Path(parent).parts
        for k in range(1, len(parts) + 1):
            sub_dir = Path(*parts[:k])
            if any((image_dir / sub_dir / m).is_file() for m in RUN_MARKERS):
                inner.add(sub_dir.as_posix())
                break
    if not inner:
        return names
    kept = [n for n in names if not any((n + "/").startswith(i + "/") for i in inner)]
    if len(kept) < len(names):
        logger.info("%s: %d file(s) inside output folders (%s) are not used as images", image_dir,
                    len(names) - len(kept), ", ".join(sorted(inner)))  # fmt: skip
    return kept


def _pair_key_collisions(names: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """hloc names a pair by the image names with '/' replaced by '-', so ``a/b-c.jpg`` and
    ``a-b/c.jpg`` would share their matches: the later of two such names is skipped."""
    seen: dict[str, str] = {}
    kept, skipped = [], []
    for n in names:
        key = n.replace("/", "-")
        if key in seen:
            skipped.append({"name": n, "reason": f"{n}: its hloc pair name {key!r} is the same as that of {seen[key]} "
                                                 "(a '/' and '-' clash); rename one of them"})  # fmt: skip
        else:
            seen[key] = n
            kept.append(n)
    return kept, skipped


def _duplicate_files(
    image_dir: Path, names: list[str], prefer: set[str] | frozenset[str] = frozenset()
) -> tuple[list[str], list[dict[str, str]]]:
    """Byte-identical image files: the later of two is skipped (two cameras at one pose would share
    every keypoint exactly and distort the model), unless only the later is in ``prefer`` (e.g. the
    names a ground-truth ``cameras.json`` knows). Files of different sizes are never read; empty
    files are left to the reader (which names them as empty, not as copies of each other)."""
    by_size: dict[int, list[str]] = {}
    for n in names:
        size = (image_dir / n).stat().st_size
        if size:
            by_size.setdefault(size, []).append(n)
    first: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        for n in sorted(group, key=lambda m: m not in prefer):  # stable: preferred names first
            digest = hashlib.sha256((image_dir / n).read_bytes()).hexdigest()
            if digest in first:
                dropped[n] = first[digest]
            else:
                first[digest] = n
    kept = [n for n in names if n not in dropped]
    return kept, [{"name": n, "reason": f"{n}: the same file (bytes) as {other}; skipped"} for n, other in dropped.items()]


def _fingerprint(path: Path) -> str:
    """Size and modification time of an image file: features computed from it are stale when it changes."""
    st = path.stat()
    return f"size={st.st_size};mtime_ns={st.st_mtime_ns}"


def _check_unchanged(features_path: Path, image_dir: Path, names: list[str]) -> None:
    """Refuses to resume when an image changed since its stored features were computed."""
    for n in names:
        stored = storage.read_source(features_path, n)
        if stored is not None and (image_dir / n).is_file() and stored != _fingerprint(image_dir / n):
            raise FileExistsError(
                f"{image_dir / n} changed since its features in {features_path} were computed "
                f"({stored} → {_fingerprint(image_dir / n)}); rerun with --overwrite"
            )


def _patch_loader(image_dir: Path, config: SfmConfig, features: dict[str, Features], magnification: float) -> Callable[[str], np.ndarray]:
    """Re-reads an image at its working size and crops the patches of its stored keypoints at the network's magnification."""

    def load(name: str) -> np.ndarray:
        image, _ = read_gray(image_dir / name, config.max_image_size)
        feats = features[name]
        working = _to_working(feats, _axis_scales(image.shape, feats.image_size), image.shape)
        return extract_patches(image, working.keypoints, upright=config.match.upright, magnification=magnification)

    return load


#: Images whose keypoints are detected side by side (each OpenCV SIFT on one thread): castle-P19,
#: 10 images, 0.81 s per image with one image at a time (OpenCV's own 2 threads) → 0.58-0.69 s.
FEATURE_WORKERS = 2


def _detect_one(image_dir: Path, name: str, config: SfmConfig) -> tuple[Features, str] | ImageReadError:
    """Keypoints of one image in original-image pixels and the file's fingerprint, or the read error."""
    try:
        image, scale = read_gray(image_dir / name, config.max_image_size)
        # the exact original size (the downscaled one is rounded): a second decode
        original = np.array(image_size(image_dir / name) if scale != 1.0 else image.shape[::-1])
    except ImageReadError as error:
        return error
    feats = detect(image, max_keypoints=config.max_keypoints)
    return _to_original(feats, _axis_scales(image.shape, original), original), _fingerprint(image_dir / name)


def _extract_features(image_dir: Path, names: list[str], config: SfmConfig) -> Iterator[tuple[str, Any]]:
    """``(name, (features, fingerprint) or ImageReadError)`` for each name, in order; images are
    detected :data:`FEATURE_WORKERS` at a time (OpenCV releases the GIL), each on one OpenCV thread."""
    if len(names) < 2:
        yield from ((n, _detect_one(image_dir, n, config)) for n in names)
        return
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    executor = ThreadPoolExecutor(FEATURE_WORKERS, thread_name_prefix="sift")
    try:
        futures = [executor.submit(_detect_one, image_dir, n, config) for n in names]
        for name, future in zip(names, futures):
            yield name, future.result()
    finally:  # interrupted: do not start the other images
        executor.shutdown(wait=True, cancel_futures=True)
        cv2.setNumThreads(threads)


@contextmanager
def _stage(name: str, seconds: dict[str, float]):
    start, finished = time.perf_counter(), False
    logger.info("stage %s ...", name)
    try:
        yield
        finished = True
    finally:
        seconds[name] = round(time.perf_counter() - start, 3)
        logger.info("stage %s %s %.1f s", name, "done in" if finished else "stopped after", seconds[name])


def _progress(iterable: Iterable, enabled: bool, desc: str, total: int | None = None):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="it", dynamic_ncols=True)


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
    """Reconstruct cameras and sparse points from a folder of images.

    Args:
        image_dir: folder searched recursively; images are named by their path
            relative to it (posix separators), as COLMAP names them.
        out_dir: output folder (see the module doc); created if absent.
        config: pipeline settings.
        scorer: the patch network; default: ``PatchScorer.load(weights)`` with the config's device, batch size,
            precision, backend and tta. A scorer passed in is used as it is (its precision and tta are reported).
        weights: checkpoint to load when ``scorer`` is None (None = shipped weights).
        overwrite: replace the outputs of another run found in ``out_dir``.
        progress: draw a tqdm bar per stage.
        ground_truth: optional ``cameras.json``; the report then holds the
            pose errors of :func:`patchmatch.evaluation.pose.evaluate_poses`
            over the images of this run that it lists.

    Returns:
        The report, also written to ``out_dir/report.json`` (where NaN and
        infinity, e.g. the reprojection error of no model or the median error
        of mostly failed pairs, are written as null): ``images``,
        ``registered``, ``points``, ``mean_track_length``,
        ``mean_reprojection_error`` (px), ``pairs``, ``seconds`` (per stage),
        ``skipped`` (``[{"name", "reason"}]``), ``unregistered``, counts of
        work done and reused, and ``pose`` with ``ground_truth``.

    Raises:
        FileNotFoundError: ``image_dir`` missing, or no weights shipped and none given.
        FileExistsError: ``out_dir`` holds another run or unrelated files
            (and ``overwrite`` is false).
        ValueError: fewer than 2 readable images, or a bad pairs strategy.
    """
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    if out_dir.resolve() == image_dir.resolve():
        raise ValueError(f"{out_dir}: the output folder cannot be the image folder (use a subfolder or another folder)")
    names = exclude_output_dir(list_images(image_dir), image_dir, out_dir)
    if not names:
        raise ValueError(f"no images found under {image_dir}")
    names, collisions = _pair_key_collisions(names)
    known: set[str] = set()
    if ground_truth is not None:
        from .evaluation.pose import load_cameras_json

        known = set(load_cameras_json(ground_truth))
    names, duplicates = _duplicate_files(image_dir, names, known)  # a copy never hides a ground-truth name
    collisions += duplicates
    listed_pairs = read_pairs_strategy_file(config.pairs, names)  # a bad pairs file fails before any work
    if ground_truth is not None:
        if not known & set(names):
            raise ValueError(f"{ground_truth} describes none of the images under {image_dir} (wrong scene?)")
    if scorer is None:
        scorer = PatchScorer.load(weights, device=config.device, batch_size=config.batch_size, precision=config.precision,
                                  tta=config.tta, activation_bits=config.activation_bits)  # fmt: skip
    else:  # a scorer passed in decides; the report's config records what ran
        ran = {"precision": scorer.precision, "backend": scorer.backend, "tta": getattr(scorer, "tta", "none"),
               "activation_bits": getattr(scorer, "activation_bits", None)}  # fmt: skip
        ignored = {k: v for k, v in ran.items() if getattr(config, k) not in (v, "auto", "none", None)}
        if ignored:
            logger.warning("SfmConfig %s ignored: the scorer passed in runs %s", {k: getattr(config, k) for k in ignored}, ignored)
        config = dataclasses.replace(config, **ran)
    identity = _identity(image_dir, config, weights_fingerprint(scorer), scorer.precision, getattr(scorer, "activation_bits", None))
    resumed = _prepare_output(out_dir, identity, overwrite)
    logger.info("network: %s", describe_scorer(scorer))
    features_path, matches_path = out_dir / "features.h5", out_dir / "matches.h5"
    notes: list[str] = []
    _check_storage(features_path, storage.list_features, notes)
    _check_storage(matches_path, lambda p: storage.missing_pairs(p, []), notes)
    seconds: dict[str, float] = {}
    skipped: list[dict[str, str]] = list(collisions)
    for item in collisions:
        logger.warning("skipping image: %s", item["reason"])
    report: dict[str, Any] = {"status": "running", "resumed": resumed, "image_dir": str(image_dir),
                              "out_dir": str(out_dir)}  # fmt: skip

    # 1. features -----------------------------------------------------------------
    with _stage("features", seconds):
        todo = storage.missing_features(features_path, names)
        _check_unchanged(features_path, image_dir, [n for n in names if n not in set(todo)])
        computed = 0
        for name, result in _progress(_extract_features(image_dir, todo, config), progress, "features", total=len(todo)):
            if isinstance(result, ImageReadError):
                logger.warning("skipping image: %s", result)
                skipped.append({"name": name, "reason": str(result)})
                continue
            storage.write_features(features_path, name, *result)
            computed += 1
        good = [n for n in names if n not in {s["name"] for s in skipped}]
        features = {n: storage.read_features(features_path, n) for n in good}
    report["features_computed"] = computed
    report["features_reused"] = len(good) - report["features_computed"]
    report["no_keypoints"] = [n for n in good if len(features[n]) == 0]
    for name in report["no_keypoints"]:
        logger.warning("%s: no keypoints (a blank, uniform or tiny image): it cannot be registered", image_dir / name)
    if len(good) < 2:
        reason = f"{image_dir}: fewer than 2 readable images ({len(good)} of {len(names)})"
        _write_json(out_dir / "report.json", {**report, "status": "failed", "reason": reason, "images": len(names),
                                               "images_used": len(good), "skipped": skipped, "registered": 0})  # fmt: skip
        raise ValueError(reason)

    # 2. matches ------------------------------------------------------------------
    if listed_pairs is None:
        pairs = make_pairs(config.pairs, good, {n: f.descriptors for n, f in features.items()})
    else:  # a pairs file: pairs naming a skipped image are left out
        usable = set(good)
        pairs = [p for p in listed_pairs if p[0] in usable and p[1] in usable]
        if len(pairs) < len(listed_pairs):
            logger.warning("%d of the %d pairs of %s name a skipped image: left out",
                           len(listed_pairs) - len(pairs), len(listed_pairs), config.pairs)  # fmt: skip
    with _stage("matching", seconds):
        todo_pairs = storage.missing_pairs(matches_path, pairs)
        cache = LruArrayCache(_patch_loader(image_dir, config, features, scorer.magnification), config.patch_cache_mb * 2**20)
        # image-pair selection from the descriptor overlap of every pair (no network)
        plan = plan_pairs(_progress(pairs, progress, "pair selection"), features, todo_pairs, config.match)
        candidates = 0
        for a, b in _progress(todo_pairs, progress, "matching"):
            if (a, b) in plan.selected:
                found = plan.searches.pop((a, b))
                pa, pb = (cache.get(a), cache.get(b)) if needs_network(found, config.match) else (None, None)
                result = match_features(features[a], pa, features[b], pb, scorer, config.match, found)
                candidates += result.num_candidates
                matches, scores = result.matches, result.scores
            else:  # SIFT's own matches or none (MatchConfig.unselected)
                matches, scores = plan.unselected_matches((a, b))
            storage.write_matches(matches_path, a, b, matches, scores, len(features[a]))
    report["pairs"] = len(pairs)
    report["pairs_matched"] = len(todo_pairs)
    report["pairs_reused"] = len(pairs) - len(todo_pairs)
    report["candidates_scored"] = candidates
    report["pairs_low_overlap"] = sum(o < config.match.min_overlap for o in plan.overlaps.values())
    report["pairs_selected"] = len(plan.selected)  # scored by the network (MatchConfig.strong_overlap, min_partners)
    report["pairs_not_selected"] = len(plan.overlaps) - report["pairs_low_overlap"] - len(plan.selected)
    report["pairs_descriptor_only"] = len(plan.descriptor_matches)  # of the pairs matched in this run

    # 3. database -----------------------------------------------------------------
    database = out_dir / "database.db"
    with _stage("database", seconds):
        colmap.create_database(database, overwrite=True)
        infos = []
        for n in good:
            w, h = (int(v) for v in features[n].image_size)
            infos.append(colmap.CameraInfo(n, w, h, colmap.exif_focal(image_dir / n)))
        ids = colmap.add_images(database, infos, single_camera=config.single_camera)
        colmap.write_keypoints(database, {ids[n]: features[n].xy for n in good})
        putative = {}
        num_matches = 0
        for a, b in pairs:
            m, _ = storage.read_matches(matches_path, a, b)
            num_matches += len(m)
            if len(m):
                putative[(ids[a], ids[b])] = m
        colmap.write_matches(database, putative)
    report["putative_matches"] = num_matches

    # 4. verification ---------------------------------------------------------------
    reconstruction = None
    report["verified_pairs"] = report["inlier_matches"] = 0
    report["mapping_attempts"] = []
    if putative:
        with _stage("verification", seconds):
            summary = colmap.verify_matches(database, config.verification)
        report["verified_pairs"] = summary.verified_pairs
        report["inlier_matches"] = summary.inlier_matches
    else:
        logger.warning("no putative match in any pair: nothing to verify or map")

    # 5. mapping ------------------------------------------------------------------
    shutil.rmtree(out_dir / "sparse", ignore_errors=True)  # never leave an earlier run's model
    if report["verified_pairs"]:
        with _stage("mapping", seconds):
            attempts: list[colmap.MappingAttempt] = []
            reconstruction = colmap.incremental_mapping(database, image_dir, out_dir / "sparse", config.mapper, attempts)
            report["mapping_attempts"] = [dataclasses.asdict(a) for a in attempts]
    stats = colmap.reconstruction_stats(reconstruction)
    registered = stats.pop("registered_names")

    # 6. pictures and report -----------------------------------------------------------
    if config.num_viz_pairs:
        with _stage("viz", seconds):
            report["viz"] = _draw_best_pairs(database, image_dir, out_dir / "viz", features, ids, pairs,
                                             matches_path, config.num_viz_pairs)  # fmt: skip
            if reconstruction is not None:
                from . import viz

                poses = colmap.reconstruction_poses(reconstruction)
                canvas = viz.draw_cameras(poses, colmap.reconstruction_points(reconstruction),
                                          title=f"{len(poses)}/{len(good)} registered, top view")  # fmt: skip
                report["viz"].append(viz.save_png(out_dir / "viz" / "cameras.png", canvas).name)
    report.update(
        {
            "status": "complete",
            "images": len(names),
            "images_used": len(good),
            **stats,
            "unregistered": sorted(set(good) - set(registered)),
            "skipped": skipped,
            "seconds": seconds,
            "seconds_total": round(sum(seconds.values()), 3),
            "config": dataclasses.asdict(config),
            "weights": {"sha256": identity["matching"]["weights_sha256"], **_scorer_meta(scorer)},
            "notes": notes,
        }
    )
    if ground_truth is not None:
        report["pose"] = _pose_report(reconstruction, ground_truth, good)
    _write_json(out_dir / "report.json", report)
    logger.info(
        "registered %d/%d images, %d points, track length %.2f, reprojection error %.2f px",
        report["registered"], len(good), report["points"], report["mean_track_length"],
        report["mean_reprojection_error"],
    )  # fmt: skip
    return report


def _scorer_meta(scorer: PatchScorer) -> dict:
    meta = getattr(scorer, "meta", {}) or {}
    used = {"precision": scorer.precision, "backend": scorer.backend, "device": str(scorer.device),
            "tta": getattr(scorer, "tta", "none")}
    if getattr(scorer, "activation_bits", None):
        used["activation_bits"] = scorer.activation_bits
    return {**{k: meta[k] for k in ("path", "model") if k in meta}, **used}


def _pose_report(reconstruction, ground_truth, names: list[str]) -> dict:
    from .evaluation.pose import load_cameras_json

    known = set(load_cameras_json(ground_truth))
    evaluated = [n for n in names if n in known]
    poses = colmap.reconstruction_poses(reconstruction) if reconstruction is not None else {}
    pose = evaluate_poses(poses, ground_truth, names=evaluated)
    pose["ground_truth"] = str(ground_truth)
    return pose


def _draw_best_pairs(database, image_dir, viz_dir, features, ids, pairs, matches_path, count) -> list[str]:
    """PNGs of the ``count`` pairs with most verified inliers (inliers green, other matches red)."""
    from . import viz

    scored = []
    for a, b in pairs:
        inliers = colmap.read_verified_matches(database, ids[a], ids[b])
        scored.append((len(inliers), a, b, inliers))
    scored.sort(key=lambda item: -item[0])
    written = []
    for n_inl, a, b, inliers in scored[:count]:
        matches, _ = storage.read_matches(matches_path, a, b)
        inlier_set = {tuple(row) for row in inliers.tolist()}
        flags = np.array([tuple(row) in inlier_set for row in matches.tolist()], bool)
        try:
            img_a, _ = read_gray(image_dir / a)
            img_b, _ = read_gray(image_dir / b)
        except ImageReadError as error:  # changed on disk since detection
            logger.warning("no picture of %s / %s: %s", a, b, error)
            continue
        canvas = viz.draw_matches(img_a, img_b, features[a].xy, features[b].xy, matches, flags,
                                  title=f"{a} - {b}")  # fmt: skip
        path = viz.save_png(viz_dir / f"{storage.names_to_pair(a, b, separator='__')}.png", canvas)
        written.append(path.name)
    return written
