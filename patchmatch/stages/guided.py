"""Stage 5b: geometry-guided matching by the network → more matches in ``matches.h5``, verified again.

Once an image pair has a verified two-view geometry, every keypoint not among its inliers gets as
candidates the free keypoints of the other image near its epipolar line (a homography's
transferred point for planar or rotation-only pairs), of similar size and orientation
(:func:`~patchmatch.candidates.band_candidates`). Geometry removes most distractors; the network
compares what is left and decides (mutual best with a score margin,
:func:`~patchmatch.matching.decide_matches`). The new matches join the pair's matches and the
pair is verified again, so tracks grow where SIFT's descriptor alone left keypoints unmatched.

The pairs guided are recorded in ``guided.json`` (pair key → candidates scored, matches added),
written after each pair's matches: a rerun skips them and scores nothing again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import colmap, storage
from ..cache import LruArrayCache
from ..candidates import band_candidates
from ..features import Features
from ..matching import MatchConfig, decide_matches
from ..pairs import Pair
from ..report import write_json
from ..scoring import PatchScorer
from . import select_pairs
from .common import progress_bar
from .match import PATCH_CACHE_MB, patch_loader

logger = logging.getLogger(__name__)

#: Band half-width around the epipolar line (or the transferred point), pixels: COLMAP's
#: verification accepts 4 px; a narrower band leaves the network fewer distractors.
MAX_DISTANCE = 3.0
#: Sizes of a candidate and its keypoint may differ by this factor (after the pair's typical ratio).
MAX_SCALE_RATIO = 2.0
#: Orientations may differ by this many degrees (after the pair's typical rotation).
MAX_ANGLE = 30.0
#: Candidates per keypoint and direction (smallest descriptor distance first): bounds the network work.
MAX_CANDIDATES_PER_KEYPOINT = 2
#: Candidates per image pair: bounds the network work of the whole stage to pairs × this
#: (about a second of int8 scoring on 2 cores).
MAX_CANDIDATES_PER_PAIR = 2048
#: Pairs with at least this many inliers are not guided: their geometry and tracks are settled,
#: and on well-textured scenes they are most pairs (the network time would double).
MAX_INLIERS = 200
#: Score gap to either keypoint's second-best candidate a guided match needs: along an epipolar
#: line repeated structure is common and verification cannot reject a wrong match on the line.
MIN_MARGIN = 0.0
#: Verified inliers a pair needs to be guided: fewer give an unreliable geometry.
MIN_INLIERS = 15


@dataclass(frozen=True)
class GuidedConfig:
    """Geometry-guided matching (policy: the module's constants).

    Attributes:
        max_distance: band half-width in pixels (:data:`MAX_DISTANCE`).
        max_scale_ratio: size bound (:data:`MAX_SCALE_RATIO`).
        max_angle: orientation bound in degrees (:data:`MAX_ANGLE`); ignored when ``upright``.
        per_keypoint: :data:`MAX_CANDIDATES_PER_KEYPOINT`. per_pair: :data:`MAX_CANDIDATES_PER_PAIR`.
        min_inliers: :data:`MIN_INLIERS`. max_inliers: :data:`MAX_INLIERS`.
        min_margin: :data:`MIN_MARGIN`. min_score: minimum network score.
        upright: patches without orientation (the match stage's ``MatchConfig.upright``).
    """

    max_distance: float = MAX_DISTANCE
    max_scale_ratio: float = MAX_SCALE_RATIO
    max_angle: float = MAX_ANGLE
    per_keypoint: int = MAX_CANDIDATES_PER_KEYPOINT
    per_pair: int = MAX_CANDIDATES_PER_PAIR
    min_inliers: int = MIN_INLIERS
    max_inliers: int = MAX_INLIERS
    min_margin: float = MIN_MARGIN
    min_score: float = 0.0
    upright: bool = False

    def __post_init__(self):
        if self.max_distance <= 0 or self.max_scale_ratio < 1 or self.per_keypoint < 1 or self.per_pair < 1:
            raise ValueError("GuidedConfig: max_distance > 0, max_scale_ratio >= 1, per_keypoint and per_pair >= 1 needed")


@dataclass
class GuidedSummary:
    """What :func:`guide_pairs` did: pairs guided, candidates scored, matches added."""

    pairs: list[Pair] = field(default_factory=list)
    candidates: int = 0
    added: int = 0


def _offsets(f0: Features, f1: Features, inliers: np.ndarray) -> tuple[float, float]:
    """The pair's typical size ratio ``size1 / size0`` (median) and rotation ``angle1 - angle0``
    (circular mean, degrees) over its inliers."""
    k0, k1 = f0.keypoints[inliers[:, 0]].astype(np.float64), f1.keypoints[inliers[:, 1]].astype(np.float64)
    ratio = float(np.exp(np.median(np.log(np.maximum(k1[:, 2], 1e-6) / np.maximum(k0[:, 2], 1e-6)))))
    diff = np.deg2rad(k1[:, 3] - k0[:, 3])
    return ratio, float(np.rad2deg(np.arctan2(np.sin(diff).mean(), np.cos(diff).mean())))


def guided_matches(
    f0: Features,
    f1: Features,
    geometry: colmap.PairGeometry,
    patches: Callable[[], tuple[np.ndarray, np.ndarray]],
    scorer: PatchScorer,
    config: GuidedConfig = GuidedConfig(),
) -> tuple[np.ndarray, np.ndarray, int]:
    """New matches of one verified pair among the keypoints outside its inliers.

    Args:
        f0, f1: features of both images (keypoints in the pixels of ``geometry``).
        geometry: the pair's verified geometry and inliers.
        patches: returns both images' (N, 64, 64) uint8 patches; called only when there are candidates.
        scorer: the network. config: band, bounds and decision.

    Returns:
        ``(matches (K, 2) int64, scores (K,) float32, candidates scored)``.
    """
    free0, free1 = np.ones(len(f0), bool), np.ones(len(f1), bool)
    free0[geometry.inliers[:, 0]] = free1[geometry.inliers[:, 1]] = False
    ratio, rotation = _offsets(f0, f1, geometry.inliers)
    pairs = band_candidates(f0.keypoints, f1.keypoints, geometry.F, geometry.H, config.max_distance,
                            config.max_scale_ratio, None if config.upright else config.max_angle, ratio, rotation,
                            free0, free1, f0.descriptors, f1.descriptors, config.per_keypoint, config.per_pair)  # fmt: skip
    if not len(pairs):
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32), 0
    p0, p1 = patches()
    scores = scorer.score_pairs(p0, p1, pairs)
    decision = MatchConfig(mutual=True, min_score=config.min_score, min_margin=config.min_margin)
    matches, kept = decide_matches(pairs, scores, len(f0), len(f1), decision)
    return matches, kept, len(pairs)


def merge_matches(
    old: np.ndarray, old_scores: np.ndarray, new: np.ndarray, new_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A pair's stored matches with the new ones: old matches sharing a keypoint with a new one
    are dropped (one match per keypoint), the rest kept; sorted by ``[i0, i1]``."""
    clash = np.isin(old[:, 0], new[:, 0]) | np.isin(old[:, 1], new[:, 1])
    matches = np.concatenate([old[~clash], new]).astype(np.int64)
    scores = np.concatenate([old_scores[~clash], new_scores]).astype(np.float32)
    order = np.lexsort((matches[:, 1], matches[:, 0]))
    return matches[order], scores[order]


def guide_pairs(
    database: Path,
    pairs: list[Pair],
    features: dict[str, Features],
    load_patches: Callable[[str], np.ndarray],
    scorer: PatchScorer,
    config: GuidedConfig,
    write: Callable[[str, str, np.ndarray, np.ndarray, int], None],
    progress: bool = False,
) -> GuidedSummary:
    """Guided matching of the verified ``pairs`` of ``database`` with between
    ``config.min_inliers`` and ``config.max_inliers`` inliers.

    Args:
        database: a verified COLMAP database holding the images of ``pairs``.
        features: features per image, keypoints in OpenCV pixels and the database's order.
        load_patches: image name → its (N, 64, 64) uint8 patches (kept in a memory budget).
        write: receives ``(name0, name1, new matches (K, 2), scores (K,), candidates scored)``
            of every pair guided, also those that gained nothing.

    Returns:
        :class:`GuidedSummary`.
    """
    ids = colmap.read_image_ids(database)
    cache = LruArrayCache(load_patches, PATCH_CACHE_MB * 2**20)
    summary = GuidedSummary()
    for a, b in progress_bar(pairs, progress, "guided matching"):
        geometry = colmap.read_pair_geometry(database, ids[a], ids[b])
        if geometry is None or not config.min_inliers <= len(geometry.inliers) < config.max_inliers:
            continue
        matches, scores, scored = guided_matches(features[a], features[b], geometry,
                                                 lambda: (cache.get(a), cache.get(b)), scorer, config)  # fmt: skip
        write(a, b, matches, scores, scored)
        summary.pairs.append((a, b))
        summary.candidates += scored
        summary.added += len(matches)
    return summary


def read_done(guided_path: str | os.PathLike) -> dict[str, dict]:
    """``guided.json``: pair key → ``{"candidates", "added"}`` (empty when absent or unreadable)."""
    try:
        done = json.loads(Path(guided_path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return done if isinstance(done, dict) else {}


def run(
    image_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    pairs_path: str | os.PathLike,
    matches_path: str | os.PathLike,
    database_path: str | os.PathLike,
    guided_path: str | os.PathLike,
    scorer: PatchScorer,
    config: GuidedConfig = GuidedConfig(),
    verification: colmap.VerificationConfig = colmap.VerificationConfig(),
    max_image_size: int | None = 3200,
    progress: bool = False,
    report: dict | None = None,
) -> Path:
    """Guides the verified pairs not guided yet, adds their new matches to ``matches_path`` and
    the database, and verifies those pairs again.

    Args:
        image_dir: the image folder (patches are cut from it at ``max_image_size``).
        features_path, pairs_path, matches_path: the earlier stages' files.
        database_path: the verified database (:func:`verify.run`); updated.
        guided_path: ``guided.json``, the pairs already guided; completed.
        scorer: the network. config: :class:`GuidedConfig`. verification: RANSAC settings.
        report: gets ``guided``: ``pairs_guided``, ``pairs_reused``, ``candidates_scored``,
            ``candidates_reused`` (earlier calls'), ``matches_added`` (this call's), the database's ``verified_pairs`` and
            ``inlier_matches`` after, and ``seconds``.

    Returns:
        ``guided_path``.
    """
    start = time.perf_counter()
    database = Path(database_path)
    done = read_done(guided_path)
    earlier = sum(int(d.get("candidates", 0)) for d in done.values() if isinstance(d, dict))
    pairs = select_pairs.read(pairs_path)
    todo = [p for p in pairs if storage.names_to_pair(*p) not in done]
    names = sorted({n for p in todo for n in p})
    features = {n: storage.read_features(features_path, n) for n in names}
    load = patch_loader(Path(image_dir), features, max_image_size, config.upright, scorer.magnification)
    changed: dict[Pair, np.ndarray] = {}

    def write(a: str, b: str, new: np.ndarray, scores: np.ndarray, scored: int) -> None:
        if len(new):
            merged, merged_scores = merge_matches(*storage.read_matches(matches_path, a, b), new, scores)
            storage.write_matches(matches_path, a, b, merged, merged_scores, len(features[a]))  # count kept
            changed[(a, b)] = merged
        done[storage.names_to_pair(a, b)] = {"candidates": scored, "added": int(len(new))}
        write_json(guided_path, done)

    summary = guide_pairs(database, todo, features, load, scorer, config, write, progress)
    if not Path(guided_path).exists():
        write_json(guided_path, done)
    summary_after = update_database(database, changed, verification)
    if report is not None:
        report["guided"] = {"pairs_guided": len(summary.pairs), "pairs_reused": len(pairs) - len(todo),
                            "candidates_scored": summary.candidates, "candidates_reused": earlier,
                            "matches_added": summary.added,
                            "verified_pairs": summary_after.verified_pairs,
                            "inlier_matches": summary_after.inlier_matches,
                            "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
    return Path(guided_path)


def update_database(database: Path, changed: dict[Pair, np.ndarray], verification: colmap.VerificationConfig):
    """Replaces the matches of the ``changed`` pairs (name pair → (K, 2) matches) and verifies
    them again; returns the database's counts after."""
    if changed:
        ids = colmap.read_image_ids(database)
        keys = {(ids[a], ids[b]): m for (a, b), m in changed.items()}
        colmap.delete_pairs(database, list(keys))
        colmap.write_matches(database, keys)
        return colmap.verify_pairs(database, list(changed), verification)
    return colmap.database_summary(database)
