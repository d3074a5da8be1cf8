"""Drop-in matching for an existing COLMAP project: its database, its keypoints.

For a database that already holds keypoints and descriptors (``colmap feature_extractor``,
SIFT with or without affine shapes), patches are cropped from the database's own keypoint
shapes (:func:`~patchmatch.patches.extract_patches_colmap`), candidates come from the stored
descriptors, the network decides the matches, and they are written into that database and
verified geometrically, so that ``colmap mapper`` (or pycolmap) continues from it.

Pairs that already hold matches or a two-view geometry are left alone unless ``overwrite``;
each pair's matches are written in their own transaction, so an interrupted run resumes by
running the same command again.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import colmap
from .cache import LruArrayCache
from .colmap_convention import colmap_to_opencv
from .features import Features
from .images import ImageReadError, read_gray
from .matching import MatchConfig, match_features, needs_network, plan_pairs
from .pairs import make_pairs
from .patches import extract_patches_colmap
from .scoring import PatchScorer, describe_scorer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseMatchConfig:
    """Settings of :func:`match_database`.

    Attributes:
        match: candidate search and match decision.
        pairs: ``"exhaustive"``, ``"sequential:N"``, ``"retrieval:N"`` or ``"file:PATH"`` (hloc's pairs format).
        verification: RANSAC settings of the geometric verification.
        patch_cache_mb: memory for patches kept between pairs (MiB).
    """

    match: MatchConfig = field(default_factory=MatchConfig)
    pairs: str = "exhaustive"
    verification: colmap.VerificationConfig = field(default_factory=colmap.VerificationConfig)
    patch_cache_mb: int = 1024


def database_features(image: colmap.DatabaseImage) -> Features:
    """COLMAP keypoints and descriptors → :class:`Features` (OpenCV convention).

    ``size`` = 2σ with σ = sqrt|det A| of the affine shape, ``angle`` = atan2(a21, a11) in
    degrees; COLMAP's L1-root uint8 descriptors are squared back to SIFT's (L1-normalised)
    layout, so the candidate search's RootSIFT recovers them exactly up to scale.
    """
    k = image.keypoints.astype(np.float64)
    xy = colmap_to_opencv(k[:, :2])
    a = k[:, 2:6].reshape(-1, 2, 2)
    size = 2.0 * np.sqrt(np.abs(np.linalg.det(a)))
    angle = np.degrees(np.arctan2(a[:, 1, 0], a[:, 0, 0]))
    keypoints = np.column_stack([xy, size, angle]).astype(np.float32)
    descriptors = image.descriptors.astype(np.float32) ** 2
    return Features(keypoints, descriptors, np.zeros(len(k), np.float32), np.array([image.width, image.height], np.int64))


def _read_matching_frame(path: Path, width: int, height: int) -> np.ndarray:
    """Reads an image in COLMAP's frame and checks it against the database's camera size."""
    image, _ = read_gray(path)
    if image.shape != (height, width):
        raise ImageReadError(
            f"{path}: image is {image.shape[1]}×{image.shape[0]} px but its camera in the database is "
            f"{width}×{height} px (resized or a different file?)"
        )
    return image


def match_database(
    database: str | os.PathLike,
    image_dir: str | os.PathLike,
    config: DatabaseMatchConfig = DatabaseMatchConfig(),
    scorer: PatchScorer | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Matches the images of an existing COLMAP database with the patch network.

    Args:
        database: COLMAP database holding images, cameras, keypoints and descriptors.
        image_dir: the folder the database's image names are relative to.
        config: see :class:`DatabaseMatchConfig`.
        scorer: defaults to the shipped weights.
        overwrite: replace the matches and two-view geometries of pairs that already hold some,
            where this run finds new matches (the others keep theirs, noted in ``skipped_pairs``).
            Without it such pairs are left alone, except that pairs holding matches but no
            two-view geometry (an interrupted run: verification comes last) are verified.
        progress: show a progress bar.

    Returns:
        A report: ``images``, ``pairs``, ``matched_pairs``, ``verified_existing_pairs``,
        ``matches``, ``skipped_pairs``
        (``[name0, name1, reason]``), ``bad_images`` (``[name, reason]``), database counts after
        verification, ``network`` (weights, precision, device and backend of this run's matches;
        a rerun keeps the pairs an earlier run matched, whatever its settings), ``seconds`` per stage.

    Raises:
        FileNotFoundError: the database or the image folder does not exist.
        ValueError: bad pairs specification or unknown names in a pairs file.
    """
    database = Path(database)
    image_dir = Path(image_dir)
    if not database.is_file():
        raise FileNotFoundError(f"COLMAP database {database} does not exist.")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"Image folder {image_dir} does not exist.")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    images = colmap.read_database_images(database)
    if not images:
        raise ValueError(f"{database} holds no images: run COLMAP's feature extraction first")
    if not any((image_dir / n).is_file() for n in images):
        raise FileNotFoundError(f"none of the {len(images)} images of {database} is in {image_dir}: wrong image folder?")
    bad: dict[str, str] = {n: "no keypoints in the database" for n, im in images.items() if len(im.keypoints) == 0}
    names = sorted(images)
    all_pairs = make_pairs(config.pairs, names, {n: im.descriptors for n, im in images.items()})
    matched, geometries = colmap.pairs_with_matches(database)
    todo, skipped, replace, unverified = [], [], set(), []

    def key(a: str, b: str) -> tuple[int, int]:
        return tuple(sorted((images[a].image_id, images[b].image_id)))

    def bad_reason(a: str, b: str) -> str:
        return f"{a if a in bad else b}: {bad.get(a) or bad.get(b)}"

    def kept_note(a: str, b: str) -> str:
        return "; its existing matches and two-view geometry were kept" if key(a, b) in replace else ""

    for a, b in all_pairs:
        if a in bad or b in bad:
            skipped.append([a, b, bad_reason(a, b)])
        elif key(a, b) in matched or key(a, b) in geometries:
            if overwrite:  # replaced only once new matches are there to write (write_pair)
                replace.add(key(a, b))
                todo.append((a, b))
            elif key(a, b) not in geometries:
                # matches without a two-view geometry (an interrupted run: verification comes last):
                # kept as they are and verified in this run
                unverified.append((a, b))
            else:
                what = "matches" if key(a, b) in matched else "a two-view geometry"
                skipped.append([a, b, f"already holds {what} (pass --overwrite / overwrite=True to replace)"])
        else:
            todo.append((a, b))
    if unverified:
        logger.info("%s: %d pairs hold matches but no two-view geometry (an interrupted run?): verifying them",
                    database, len(unverified))  # fmt: skip
    seconds["read"] = round(time.perf_counter() - t0, 3)

    def write_pair(a: str, b: str, matches: np.ndarray) -> None:
        """Writes a pair's new matches, replacing (under ``overwrite``) what it held."""
        if key(a, b) in replace:
            colmap.delete_pairs(database, [key(a, b)])
        colmap.write_matches(database, {(images[a].image_id, images[b].image_id): matches})
    logger.info("%s: %d images, %d pairs to match, %d skipped", database, len(images), len(todo), len(skipped))

    scorer = scorer or PatchScorer.load()
    logger.info("network: %s", describe_scorer(scorer))
    features = {n: database_features(images[n]) for n in names if n not in bad}

    def load_patches(name: str) -> np.ndarray:
        im = images[name]
        pixels = _read_matching_frame(image_dir / name, im.width, im.height)
        return extract_patches_colmap(pixels, im.keypoints, magnification=scorer.magnification)

    cache = LruArrayCache(load_patches, config.patch_cache_mb * 2**20)
    t0 = time.perf_counter()
    # image-pair selection from the descriptor overlap of every usable pair (no network)
    plan = plan_pairs(all_pairs, features, todo, config.match)
    done: list[tuple[str, str]] = []
    total_matches = 0
    descriptor_only = {}
    for a, b in todo:
        if (a, b) in plan.selected:
            continue
        matches, _ = plan.unselected_matches((a, b))  # SIFT's own matches (MatchConfig.unselected)
        if len(matches):
            descriptor_only[(a, b)] = matches
            done.append((a, b))
            total_matches += len(matches)
        else:
            skipped.append([a, b, f"descriptor overlap {plan.overlaps.get((a, b), 0)}: not selected for matching"
                            + kept_note(a, b)])  # fmt: skip
    for (a, b), matches in descriptor_only.items():
        write_pair(a, b, matches)
    descriptor_pairs = len(descriptor_only)
    todo = [p for p in todo if p in plan.selected]
    iterator = todo
    if progress:
        from tqdm import tqdm

        iterator = tqdm(todo, desc="match", unit="pair")
    for a, b in iterator:
        found = plan.searches.pop((a, b))
        if a in bad or b in bad:  # an image found unreadable at an earlier pair: not read (or warned about) again
            skipped.append([a, b, bad_reason(a, b) + kept_note(a, b)])
            continue
        try:
            pa, pb = (cache.get(a), cache.get(b)) if needs_network(found, config.match) else (None, None)
        except ImageReadError as e:
            culprit = a if str(image_dir / a) in str(e) else b
            bad[culprit] = str(e)
            skipped.append([a, b, str(e) + kept_note(a, b)])
            logger.warning("%s", e)
            continue
        result = match_features(features[a], pa, features[b], pb, scorer, config.match, found)
        if len(result.matches):
            write_pair(a, b, result.matches)
            done.append((a, b))
            total_matches += len(result.matches)
        elif key(a, b) in replace:
            skipped.append([a, b, "no new matches" + kept_note(a, b)])
    seconds["match"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    summary = colmap.verify_pairs(database, done + unverified, config.verification)
    seconds["verify"] = round(time.perf_counter() - t0, 3)
    return {
        "database": str(database),
        "images": len(images),
        "pairs": len(all_pairs),
        "matched_pairs": len(done),
        "verified_existing_pairs": len(unverified),
        "descriptor_only_pairs": descriptor_pairs,
        "matches": total_matches,
        "skipped_pairs": skipped,
        "bad_images": sorted([n, r] for n, r in bad.items()),
        "database_after": vars(summary),
        "network": describe_scorer(scorer),  # the pairs matched in this run (earlier runs' matches are kept as they are)
        "precision": getattr(scorer, "precision", None),
        "backend": getattr(scorer, "backend", None),
        "tta": getattr(scorer, "tta", "none"),
        "seconds": seconds,
    }
