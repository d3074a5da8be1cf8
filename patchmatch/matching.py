"""Match decision: candidate pairs scored by the network → matches of an image pair."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping

import numpy as np

from .candidates import CandidateSet, candidate_search
from .features import Features, detect
from .patches import extract_patches
from .scoring import PatchScorer


#: Descriptor neighbours per keypoint and direction offered to the network: with 2 it too often
#: prefers a near-duplicate keypoint a few pixels away (worse poses, twice the network time).
K = 1
#: Candidate when its descriptor distance is below this times the (k+1)-th neighbour's: below
#: 0.85 weak images lose matches they need, above it the network scores more pairs for no gain.
MAX_RATIO = 0.85
#: Mutual descriptor neighbours passing Lowe's test at 0.8 an image pair needs to be scored at all:
#: fewer do not verify, and scoring them is the pipeline's main cost.
MIN_OVERLAP = 20
#: SIFT's own matches (mutual, Lowe's ratio) kept without the network: COLMAP's ratio.
ACCEPT_RATIO = 0.8
#: Descriptor overlap from which an image pair is always scored (weaker ones only as an image's best).
STRONG_OVERLAP = 50
#: Each image's best pairs scored whatever their overlap (above MIN_OVERLAP): enough to keep the
#: weakly connected images of a ring of views attached.
MIN_PARTNERS = 6
#: Accepted matches from which a pair keeps them alone: the network's matches are less precise than
#: SIFT's accepted ones, and help only where the ratio test leaves too few.
STRONG_PAIR_ACCEPTED = 300


@dataclass(frozen=True)
class MatchConfig:
    """How candidates are chosen and matches decided (policy: the defaults are the module's
    constants; change them here for experiments).

    Attributes:
        k: nearest neighbours by SIFT descriptor per keypoint and direction (:data:`K`).
        max_ratio: a neighbour is a candidate when its descriptor distance is below ``max_ratio``
            times the distance to the (k+1)-th neighbour (:data:`MAX_RATIO`, see
            :func:`~patchmatch.candidates.knn_candidates`).
        mutual: keep a pair only when each keypoint is the other's best-scoring candidate.
        min_score: minimum network score (raw output, higher = more similar).
        min_margin: minimum score gap to the second-best candidate of either keypoint (a ratio
            test on scores); None disables it.
        upright: extract patches without orientation normalisation.
        min_overlap: skip the image pair (no network pass) when fewer keypoints than this are
            mutual nearest neighbours by descriptor passing Lowe's ratio test at 0.8
            (:data:`MIN_OVERLAP`); 0 scores every pair.
        accept_ratio: mutual descriptor nearest neighbours passing Lowe's ratio test at this
            ratio (SIFT's own matches) are kept without a network pass, and the network decides
            among the candidates of the other keypoints only (score NaN for the kept ones); None:
            the network decides every match (:data:`ACCEPT_RATIO`).
        strong_overlap: across the image pairs of a scene (:func:`select_pairs`), a pair with
            at least ``min_overlap`` is scored when its overlap reaches ``strong_overlap``
            (:data:`STRONG_OVERLAP`) or it is among the ``min_partners`` (:data:`MIN_PARTNERS`)
            pairs of largest overlap of either image.
        min_partners: see ``strong_overlap``.
        unselected: what the image pairs without a network pass (overlap below ``min_overlap``
            or not selected) get: ``"descriptor"`` their mutual descriptor nearest neighbours
            passing the ratio test at ``accept_ratio`` (SIFT's own matches, score NaN;
            geometric verification then decides as for every pair), ``"none"`` (default: the
            gain is within noise and costs verification and mapping time) no matches.
        strong_pair_accepted: a strong image pair, one with at least this many accepted
            matches (``accept_ratio``), keeps them alone, without a network pass
            (:data:`STRONG_PAIR_ACCEPTED`); None scores every selected pair.
        network: ask the network at all. False: every image pair gets SIFT's own matches
            (mutual descriptor nearest neighbours passing the ratio test at ``accept_ratio``) and
            nothing else, through the same stages and mapper: the pipeline without the network,
            what ``patchmatch compare`` measures the network against.
    """

    k: int = K
    max_ratio: float = MAX_RATIO
    mutual: bool = True
    min_score: float = 0.0
    min_margin: float | None = None
    upright: bool = False
    min_overlap: int = MIN_OVERLAP
    accept_ratio: float | None = ACCEPT_RATIO
    strong_overlap: int = STRONG_OVERLAP
    min_partners: int = MIN_PARTNERS
    unselected: str = "none"
    strong_pair_accepted: int | None = STRONG_PAIR_ACCEPTED
    network: bool = True

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"MatchConfig.k must be >= 1, got {self.k}.")
        if not 0 < self.max_ratio <= 1.0:
            raise ValueError(f"MatchConfig.max_ratio must be in (0, 1], got {self.max_ratio}.")
        if self.accept_ratio is not None and not 0 < self.accept_ratio <= 1.0:
            raise ValueError(f"MatchConfig.accept_ratio must be in (0, 1] or None, got {self.accept_ratio}.")
        if self.min_partners < 0 or self.strong_overlap < 0 or self.min_overlap < 0:
            raise ValueError("MatchConfig.min_overlap, strong_overlap and min_partners must be >= 0.")
        if self.strong_pair_accepted is not None and self.strong_pair_accepted < 1:
            raise ValueError(f"MatchConfig.strong_pair_accepted must be >= 1 or None, got {self.strong_pair_accepted}.")
        if not self.network and self.accept_ratio is None:
            raise ValueError("MatchConfig.network=False needs accept_ratio (SIFT's own matches are all there is).")
        if self.unselected not in ("descriptor", "none"):
            raise ValueError(f"MatchConfig.unselected must be 'descriptor' or 'none', got {self.unselected!r}.")


@dataclass
class MatchResult:
    """Matches of one image pair.

    Attributes:
        keypoints0: (N0, 2) float32 keypoint positions of image 0, pixels (OpenCV convention).
        keypoints1: (N1, 2) float32 keypoint positions of image 1.
        matches: (K, 2) int64 indices ``[i0, i1]``.
        scores: (K,) float32 network scores of the matches (higher = more similar); NaN for SIFT's
            ratio-test matches kept without the network (a strong pair, or ``unselected="descriptor"``).
        num_candidates: number of candidate pairs scored by the network.
        overlap: mutual descriptor nearest neighbours passing the ratio test (see
            :attr:`MatchConfig.min_overlap`).
    """

    keypoints0: np.ndarray
    keypoints1: np.ndarray
    matches: np.ndarray
    scores: np.ndarray
    num_candidates: int = 0
    overlap: int = 0

    def matches0(self) -> tuple[np.ndarray, np.ndarray]:
        """hloc's layout: ``(matches0 (N0,) int32 with -1 for unmatched, matching_scores0 (N0,) float32)``."""
        m0 = np.full(len(self.keypoints0), -1, np.int32)
        s0 = np.zeros(len(self.keypoints0), np.float32)
        m0[self.matches[:, 0]] = self.matches[:, 1]
        s0[self.matches[:, 0]] = self.scores
        return m0, s0


def _best_per_group(group: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group id in [0, n): (argmax row or -1, best score, second-best score (-inf if none))."""
    best = np.full(n, -np.inf, np.float64)
    second = np.full(n, -np.inf, np.float64)
    arg = np.full(n, -1, np.int64)
    order = np.lexsort((-scores, group))  # by group, then decreasing score
    g, s = group[order], scores[order]
    first = np.r_[True, g[1:] != g[:-1]]
    best[g[first]] = s[first]
    arg[g[first]] = order[first]
    nxt = np.r_[first[1:], True]  # row after the first of its group exists?
    sec_rows = np.nonzero(first & ~nxt)[0] + 1
    second[g[sec_rows]] = s[sec_rows]
    return arg, best, second


def decide_matches(pairs: np.ndarray, scores: np.ndarray, n0: int, n1: int, config: MatchConfig) -> tuple[np.ndarray, np.ndarray]:
    """Applies the match decision to scored candidates.

    Args:
        pairs: (M, 2) int candidate pairs.
        scores: (M,) float network scores.
        n0: keypoints in image 0. n1: keypoints in image 1.
        config: the decision rules (mutual, min_score, min_margin).

    Returns:
        ``(matches (K, 2) int64, scores (K,) float32)``.
    """
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    scores = np.asarray(scores, np.float64)
    arg0, best0, second0 = _best_per_group(pairs[:, 0], scores, n0)
    arg1, best1, second1 = _best_per_group(pairs[:, 1], scores, n1)
    if config.mutual:
        rows = arg0[arg0 >= 0]
        rows = rows[arg1[pairs[rows, 1]] == rows]
    else:
        rows = np.unique(np.r_[arg0[arg0 >= 0], arg1[arg1 >= 0]])
    rows = rows[scores[rows] >= config.min_score]
    if config.min_margin is not None:
        i, j = pairs[rows, 0], pairs[rows, 1]
        margin = np.minimum(best0[i] - second0[i], best1[j] - second1[j])
        rows = rows[margin >= config.min_margin]
    rows = np.sort(rows)
    return pairs[rows].astype(np.int64), scores[rows].astype(np.float32)


def search_pair(features0: Features, features1: Features, config: MatchConfig = MatchConfig()) -> CandidateSet:
    """The candidate search of one image pair with ``config``'s settings (no network)."""
    return candidate_search(features0.descriptors, features1.descriptors, config.k, config.max_ratio,
                            accept_ratio=config.accept_ratio)  # fmt: skip


def select_pairs(overlaps: dict[tuple[str, str], int], config: MatchConfig = MatchConfig()) -> set[tuple[str, str]]:
    """The image pairs worth a network pass, from their descriptor overlap.

    A pair is selected when its overlap (mutual ratio-test nearest neighbours, see
    :class:`CandidateSet`) is at least ``config.min_overlap`` and either reaches
    ``config.strong_overlap`` or is among the ``config.min_partners`` largest of one of its two
    images, so that weakly connected images keep their best pairs.

    Args:
        overlaps: image pair → overlap.
        config: the thresholds.

    Returns:
        The selected pairs (keys of ``overlaps``); none without the network (``config.network``).
    """
    if not config.network:
        return set()
    eligible = {p: o for p, o in overlaps.items() if o >= config.min_overlap}
    selected = {p for p, o in eligible.items() if o >= config.strong_overlap}
    by_image: dict[str, list[tuple[int, tuple[str, str]]]] = {}
    for p, o in eligible.items():
        for name in p:
            by_image.setdefault(name, []).append((o, p))
    for ranked in by_image.values():
        ranked.sort(key=lambda item: (-item[0], item[1]))
        selected.update(p for _, p in ranked[: config.min_partners])
    return selected


@dataclass
class PairPlan:
    """Which image pairs the network will score (:func:`plan_pairs`).

    Attributes:
        overlaps: image pair → descriptor overlap (pairs whose two images have features).
        selected: the pairs worth a network pass (:func:`select_pairs`).
        searches: candidate searches of the selected pairs still to match, for
            :func:`match_features` (each computed once).
        descriptor_matches: (A, 2) int64 matches of the unselected pairs still to match under
            ``MatchConfig.unselected == "descriptor"`` (empty dict otherwise).
    """

    overlaps: dict[tuple[str, str], int]
    selected: set[tuple[str, str]]
    searches: dict[tuple[str, str], CandidateSet]
    descriptor_matches: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def unselected_matches(self, pair: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """``(matches (A, 2) int64, scores (A,) float32 NaN)`` of a pair without a network pass."""
        m = self.descriptor_matches.get(pair, np.zeros((0, 2), np.int64))
        return m, np.full(len(m), np.nan, np.float32)


def _search_pairs(
    pairs: Iterable[tuple[str, str]], features: dict[str, Features], config: MatchConfig, workers: int = 1
) -> Iterator[tuple[tuple[str, str], CandidateSet]]:
    """``(pair, search_pair(...))`` in the order of ``pairs``, ``workers`` searches side by side.

    A search's value-only minima and top-k run on one core whatever PyTorch's thread count, so
    searches run in a thread pool (PyTorch releases the GIL inside its kernels). Pairs are
    consumed lazily, at most ``2 * workers`` ahead of the results (a progress bar on ``pairs``
    stays in step).
    """
    if workers <= 1:
        for a, b in pairs:
            yield (a, b), search_pair(features[a], features[b], config)
        return
    pending: deque = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="search") as pool:
        for a, b in pairs:
            pending.append(((a, b), pool.submit(search_pair, features[a], features[b], config)))
            if len(pending) >= 2 * workers:
                pair, future = pending.popleft()
                yield pair, future.result()
        while pending:
            pair, future = pending.popleft()
            yield pair, future.result()


def plan_pairs(
    pairs: Iterable[tuple[str, str]],
    features: dict[str, Features],
    todo: Iterable[tuple[str, str]],
    config: MatchConfig = MatchConfig(),
    workers: int = 1,
) -> PairPlan:
    """Searches candidates of every pair (no network) and selects the pairs to score.

    Args:
        pairs: all image pairs of the run (done ones too: selection ranks each image's pairs);
            pairs with an image missing from ``features`` are left out.
        features: features per image name.
        todo: the pairs still to match; their searches are kept when selected.
        config: candidate search and selection settings.
        workers: searches run side by side (threads); the result does not depend on it.
    """
    todo = set(todo)
    overlaps, searches = {}, {}
    usable = ((a, b) for a, b in pairs if a in features and b in features)
    for (a, b), found in _search_pairs(usable, features, config, workers):
        overlaps[(a, b)] = found.overlap
        if (a, b) in todo:
            searches[(a, b)] = found
    selected = select_pairs(overlaps, config)
    descriptor = {}
    if config.unselected == "descriptor" or not config.network:
        descriptor = {p: f.accepted for p, f in searches.items() if p not in selected and len(f.accepted)}
    return PairPlan(overlaps, selected, {p: f for p, f in searches.items() if p in selected}, descriptor)


def needs_network(candidates: CandidateSet, config: MatchConfig = MatchConfig()) -> bool:
    """Whether :func:`match_features` scores an image pair with the network: its descriptor
    overlap reaches ``config.min_overlap`` and it has fewer accepted matches than
    ``config.strong_pair_accepted`` (never without the network, ``config.network``). Callers skip
    cropping patches for the other pairs."""
    if not config.network or candidates.overlap < config.min_overlap:
        return False
    return config.strong_pair_accepted is None or len(candidates.accepted) < config.strong_pair_accepted


def scored_pairs(candidates: CandidateSet, n0: int, n1: int) -> np.ndarray:
    """The (M, 2) int64 candidate pairs the network scores: those of ``candidates`` whose
    keypoints (of ``n0`` and ``n1``) are in no accepted descriptor match."""
    pairs, accepted = candidates.pairs, candidates.accepted
    if not len(accepted):
        return pairs
    taken0, taken1 = np.zeros(n0, bool), np.zeros(n1, bool)
    taken0[accepted[:, 0]] = taken1[accepted[:, 1]] = True
    return pairs[~taken0[pairs[:, 0]] & ~taken1[pairs[:, 1]]]


def scored_keypoints(searches: Mapping[tuple[str, str], CandidateSet], sizes: Mapping[str, int],
                     config: MatchConfig = MatchConfig()) -> dict[str, np.ndarray]:  # fmt: skip
    """Image name → (N,) bool mask of its keypoints that :func:`match_features` would compare with
    the network in the pairs of ``searches`` (candidate sets by image pair; ``sizes``: keypoints
    per image): the only patches those pairs need. Images without such a keypoint are absent."""
    masks: dict[str, np.ndarray] = {}
    for (a, b), found in searches.items():
        if not needs_network(found, config):
            continue
        pairs = scored_pairs(found, sizes[a], sizes[b])
        for name, column in ((a, 0), (b, 1)):
            masks.setdefault(name, np.zeros(sizes[name], bool))[pairs[:, column]] = True
    return masks


def match_features(
    features0: Features,
    patches0: np.ndarray | None,
    features1: Features,
    patches1: np.ndarray | None,
    scorer: PatchScorer,
    config: MatchConfig = MatchConfig(),
    candidates: CandidateSet | None = None,
) -> MatchResult:
    """Matches two images whose features and patches are already computed.

    Args:
        features0: features of image 0 (N0 keypoints). patches0: (N0, 64, 64) uint8 patches
            (None is accepted where :func:`needs_network` is False; only those of
            :func:`scored_keypoints` are read).
        features1: features of image 1. patches1: (N1, 64, 64) uint8 patches (or None).
        scorer: the patch-comparison network.
        config: candidate and decision settings.
        candidates: the pair's :func:`~patchmatch.candidates.candidate_search` result when
            already computed (same ``k``, ``max_ratio``, ``accept_ratio``).

    Returns:
        :class:`MatchResult`; pairs without a network pass (:func:`needs_network`) get the
        accepted matches (strong pairs; below ``min_overlap`` only with ``unselected =
        "descriptor"``) with NaN scores.

    Raises:
        ValueError: the network is needed and a patch array is missing or does not have one
            patch per keypoint.
    """
    found = candidates or search_pair(features0, features1, config)
    overlap, accepted = found.overlap, found.accepted
    if not needs_network(found, config):  # SIFT's own matches (strong pair, or MatchConfig.unselected) or none
        strong = overlap >= config.min_overlap
        kept = accepted if strong or config.unselected == "descriptor" or not config.network else np.zeros((0, 2), np.int64)
        return MatchResult(features0.xy.copy(), features1.xy.copy(), kept, np.full(len(kept), np.nan, np.float32), 0, overlap)
    if patches0 is None or patches1 is None or len(patches0) != len(features0) or len(patches1) != len(features1):
        raise ValueError("each image needs one patch per keypoint.")
    pairs = scored_pairs(found, len(features0), len(features1))
    scores = scorer.score_pairs(patches0, patches1, pairs) if len(pairs) else np.zeros(0, np.float32)
    matches, mscores = decide_matches(pairs, scores, len(features0), len(features1), config)
    if len(accepted):
        matches = np.concatenate([accepted, matches])
        mscores = np.concatenate([np.full(len(accepted), np.nan, np.float32), mscores])
        order = np.lexsort((matches[:, 1], matches[:, 0]))
        matches, mscores = matches[order], mscores[order]
    return MatchResult(features0.xy.copy(), features1.xy.copy(), matches, mscores, len(pairs), overlap)


def match_images(
    image0: np.ndarray,
    image1: np.ndarray,
    scorer: PatchScorer | None = None,
    config: MatchConfig = MatchConfig(),
    max_keypoints: int = 4096,
) -> MatchResult:
    """Detects, crops, scores and matches two grayscale images.

    Args:
        image0: (H0, W0) uint8. image1: (H1, W1) uint8.
        scorer: defaults to the shipped 2ch2stream weights.
        config: see :class:`MatchConfig`.
        max_keypoints: SIFT keypoints per image.

    Returns:
        :class:`MatchResult` with keypoints in pixels (OpenCV convention).
    """
    scorer = scorer or PatchScorer.load()
    f0, f1 = detect(image0, max_keypoints), detect(image1, max_keypoints)
    p0 = extract_patches(image0, f0.keypoints, upright=config.upright, magnification=scorer.magnification)
    p1 = extract_patches(image1, f1.keypoints, upright=config.upright, magnification=scorer.magnification)
    return match_features(f0, p0, f1, p1, scorer, config)
