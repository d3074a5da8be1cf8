"""Stage 1: SIFT keypoints and descriptors of every image → ``features.h5``.

Keypoints are detected at the working size (``max_image_size``) and stored in pixels of the
original image (hloc's layout, :mod:`patchmatch.storage`), each image's group with the
fingerprint of its file (size, modification time, content digest) so that a changed image is never
reused, and one only copied or touched is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import storage
from ..features import CONTRAST_SCHEDULE, Features, axis_scales, detect_to_budget, to_original
from ..images import ImageReadError, file_fingerprint, image_size, read_gray, same_file
from .common import progress_bar, set_aside_if_unreadable

logger = logging.getLogger(__name__)

#: Images detected side by side at most: SIFT needs ~240 bytes per pixel (two 3200-px images
#: take ~5 GB), and OpenCV releases the GIL, so two use a second core where it is idle.
MAX_WORKERS = 2


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of the detection.

    Attributes:
        max_keypoints: SIFT keypoints per image, the strongest by response (COLMAP's 8192).
        max_image_size: longest image side for detection (and patches), pixels; None = original
            size. COLMAP's 3200 by default: SIFT detection needs ~240 bytes per pixel.
        contrast_schedule: SIFT contrast thresholds tried in turn until an image has
            ``max_keypoints`` (:func:`~patchmatch.features.detect_to_budget`).
    """

    max_keypoints: int = 8192
    max_image_size: int | None = 3200
    contrast_schedule: tuple[float, ...] = CONTRAST_SCHEDULE

    def __post_init__(self):
        if self.max_keypoints < 1:
            raise ValueError(f"max_keypoints must be >= 1, got {self.max_keypoints}")
        if self.max_image_size is not None and self.max_image_size < 32:
            raise ValueError(f"max_image_size must be >= 32 or None, got {self.max_image_size}")
        if not self.contrast_schedule or min(self.contrast_schedule) <= 0:
            raise ValueError(f"contrast_schedule needs thresholds > 0, got {self.contrast_schedule}")


def detect_image(image_dir: Path, name: str, config: ExtractConfig) -> tuple[Features, str] | ImageReadError:
    """Keypoints of one image in original-image pixels and the file's fingerprint, or the read
    error (returned, not raised: one bad file does not stop the others)."""
    try:
        image, scale = read_gray(image_dir / name, config.max_image_size)
        # the exact original size (the downscaled one is rounded): a second decode
        original = np.array(image_size(image_dir / name) if scale != 1.0 else image.shape[::-1])
    except ImageReadError as error:
        return error
    feats = detect_to_budget(image, config.max_keypoints, config.contrast_schedule)
    return to_original(feats, axis_scales(image.shape, original), original), file_fingerprint(image_dir / name)


def detect_images(image_dir: Path, names: list[str], config: ExtractConfig, workers: int = 1) -> Iterator[tuple[str, Any]]:
    """``(name, (features, fingerprint) or ImageReadError)`` for each name, in order, ``workers``
    images detected side by side; closing the iterator early starts no further image."""
    if workers <= 1 or len(names) < 2:
        yield from ((n, detect_image(image_dir, n, config)) for n in names)
        return
    executor = ThreadPoolExecutor(workers, thread_name_prefix="sift")
    try:
        futures = [executor.submit(detect_image, image_dir, n, config) for n in names]
        for name, future in zip(names, futures):
            yield name, future.result()
    finally:  # interrupted: do not start the other images
        executor.shutdown(wait=True, cancel_futures=True)


def check_unchanged(features_path: Path, image_dir: Path, names: list[str]) -> None:
    """Refuses to resume when an image changed since its stored features were computed.

    Raises:
        FileExistsError: naming the image and both fingerprints.
    """
    for n in names:
        stored = storage.read_source(features_path, n)
        if stored is not None and (image_dir / n).is_file() and not same_file(stored, image_dir / n):
            raise FileExistsError(
                f"{image_dir / n} changed since its features in {features_path} were computed "
                f"({stored} → {file_fingerprint(image_dir / n)}); rerun with --overwrite"
            )


def run(
    image_dir: str | os.PathLike,
    names: list[str],
    features_path: str | os.PathLike,
    config: ExtractConfig = ExtractConfig(),
    workers: int = 1,
    progress: bool = False,
    report: dict | None = None,
    executor=None,
) -> Path:
    """Detects the images of ``names`` that ``features_path`` does not hold yet.

    Args:
        image_dir: the image folder. names: images relative to it.
        features_path: the features file (created, or completed).
        config: detection settings (those of the stored features: the caller checks that).
        workers: images detected side by side, at most :data:`MAX_WORKERS`.
        progress: draw a progress bar.
        report: gets ``features_computed`` (this call) and ``features_reused`` (stored in the
            file, or in the shards of an earlier run on Ray); unreadable
            images (not stored) are added to its ``skipped`` list as ``{"name", "reason"}``, an
            unreadable features file set aside (and recomputed) to its ``notes``.

    Returns:
        ``features_path``.

    Raises:
        FileExistsError: an image changed since its stored features (see :func:`check_unchanged`).
        StorageError: the file cannot be opened.
    """
    image_dir, features_path = Path(image_dir), Path(features_path)
    note = set_aside_if_unreadable(features_path, storage.list_features)
    todo = storage.missing_features(features_path, names)
    check_unchanged(features_path, image_dir, sorted(set(names) - set(todo)))
    computed, skipped = 0, []
    if executor is not None and executor.distributed:
        from ..shards import SHARDS_DIR

        results = executor.extract(image_dir, todo, config, features_path.parent / SHARDS_DIR)
    else:
        results = detect_images(image_dir, todo, config, min(workers, MAX_WORKERS))
    for name, result in progress_bar(results, progress, "features", total=len(todo)):
        if isinstance(result, ImageReadError):
            logger.warning("skipping image: %s", result)
            skipped.append({"name": name, "reason": str(result)})
            continue
        storage.write_features(features_path, name, *result)
        computed += 1
    from_shards = getattr(executor, "shards_reused", 0)  # read from an earlier Ray run's shards
    if report is not None:
        report.update(features_computed=computed - from_shards, features_reused=len(names) - len(todo) + from_shards)
        report.setdefault("skipped", []).extend(skipped)
        report.setdefault("notes", []).extend([note] if note else [])
    return features_path
