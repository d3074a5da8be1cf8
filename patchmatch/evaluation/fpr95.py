"""False positive rate at 95% recall (FPR95), the standard metric of the Brown patch benchmark
(Brown, Hua & Winder, PAMI 2011; used by Zagoruyko & Komodakis, CVPR 2015).

Computed from ranks, so raw, possibly negative network scores are fine: higher = more similar.
"""

from __future__ import annotations

import numpy as np


def _validated(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float64 scores and (N,) bool labels, checked: same length, both classes, finite."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape} vs {labels.shape}.")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"FPR95 needs positives and negatives, got {n_pos} and {n_neg}.")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values.")
    return scores, labels


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve with ties handled as one threshold step.

    Args:
        scores: (N,) similarity, higher = more similar.
        labels: (N,) bool, True for matching pairs.

    Returns:
        ``(fpr, tpr, thresholds)``, each (T + 1,), starting at (0, 0) with threshold +inf: a pair is
        accepted at threshold ``t`` when ``score >= t``.

    Raises:
        ValueError: shapes differ, or no positives or no negatives.
    """
    scores, labels = _validated(scores, labels)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    order = np.argsort(-scores, kind="stable")
    s, l = scores[order], labels[order]
    # last index of each run of equal scores: all tied pairs are accepted together
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(l)[last]
    fp = np.cumsum(~l)[last]
    tpr = np.r_[0.0, tp / n_pos]
    fpr = np.r_[0.0, fp / n_neg]
    return fpr, tpr, np.r_[np.inf, s[last]]


def fpr95(scores: np.ndarray, labels: np.ndarray, recall: float = 0.95) -> float:
    """False positive rate at the first threshold reaching ``recall`` of the positives.

    Args:
        scores: (N,) float similarity, higher = more similar (raw network outputs are fine).
        labels: (N,) bool, True for matching pairs.
        recall: target true positive rate (0.95 for FPR95).

    Returns:
        FPR as a fraction in [0, 1] (multiply by 100 for the percent figures of the papers).

    Raises:
        ValueError: see :func:`roc_curve`.
    """
    fpr, tpr, _ = roc_curve(scores, labels)
    return fpr_at_recall(fpr, tpr, recall)


def fpr95_sensitivity(scores: np.ndarray, labels: np.ndarray, width: float, recall: float = 0.95) -> float:
    """Fraction of the negatives whose score lies within ``width`` of the FPR95 threshold.

    How far FPR95 can move when the scores near its threshold move by about ``width``: with
    ``width`` the RMS difference of two scorings of the same pairs (int8 against float32), a
    large value says the FPR95 change between them is decided by the order of near-equal scores
    at the threshold, not by one scoring ranking the pairs better.

    Args:
        scores: (N,) float similarity, higher = more similar.
        labels: (N,) bool, True for matching pairs.
        width: score difference, >= 0, in the scores' units.
        recall: as in :func:`fpr95`.

    Returns:
        A fraction in [0, 1], like FPR95.

    Raises:
        ValueError: see :func:`roc_curve`; ``width`` negative or not finite.
    """
    if not np.isfinite(width) or width < 0:
        raise ValueError(f"width must be a finite score difference >= 0, got {width}.")
    _, tpr, thresholds = roc_curve(scores, labels)
    scores, labels = _validated(scores, labels)
    return float(np.mean(np.abs(scores[~labels] - thresholds[_recall_index(tpr, recall)]) <= width))


def fpr_at_recall(fpr: np.ndarray, tpr: np.ndarray, recall: float = 0.95) -> float:
    """FPR of a :func:`roc_curve` at its first threshold reaching ``recall`` (FPR95 for 0.95)."""
    return float(fpr[_recall_index(tpr, recall)])


def _recall_index(tpr: np.ndarray, recall: float) -> int:
    """Index of a :func:`roc_curve`'s first threshold reaching ``recall``."""
    return int(np.searchsorted(tpr, recall - 1e-12, side="left"))


def _fpr95_resampled(scores: np.ndarray, labels: np.ndarray, index: np.ndarray, recall: float) -> np.ndarray:
    """FPR95 of each row of ``index`` (B, N) — a resample of the pairs, positives and negatives
    drawn separately so that their counts stay — as (B,) fractions; equals :func:`fpr95` of the
    resampled pairs (threshold = the k-th largest positive score, k = ⌈recall · P⌉)."""
    pos, neg = scores[labels], scores[~labels]
    p_idx, n_idx = index
    k = max(1, int(np.ceil(recall * len(pos) - 1e-9)))
    pos_b = pos[p_idx]  # (B, P)
    thr = -np.partition(-pos_b, k - 1, axis=1)[:, k - 1]  # k-th largest per row
    return (neg[n_idx] >= thr[:, None]).mean(axis=1)


def _resamples(labels: np.ndarray, n_boot: int, seed: int, chunk: int):
    rng = np.random.default_rng(seed)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        yield rng.integers(0, n_pos, (b, n_pos)), rng.integers(0, n_neg, (b, n_neg))


def fpr95_interval(
    scores: np.ndarray, labels: np.ndarray, level: float = 0.95, n_boot: int = 1000, seed: int = 0, recall: float = 0.95
) -> tuple[float, float]:
    """Bootstrap confidence interval of :func:`fpr95`: pairs resampled with replacement,
    positives and negatives separately (their counts fixed), percentile interval.

    On a set of a few thousand pairs FPR95 is itself uncertain by points: the threshold is the
    score of one positive, the one at the 5th percentile, so a change of a few pairs' scores
    moves it.

    Args:
        scores: (N,) float similarity, higher = more similar.
        labels: (N,) bool, True for matching pairs.
        level: coverage of the interval (0.95: the 2.5th and 97.5th percentiles).
        n_boot: resamples.
        seed: seed of the resampling (results are reproducible).
        recall: as in :func:`fpr95`.

    Returns:
        ``(low, high)`` fractions in [0, 1].

    Raises:
        ValueError: see :func:`roc_curve`; ``level`` outside (0, 1) or ``n_boot`` < 2.
    """
    scores, labels = _checked(scores, labels, level, n_boot)
    vals = np.concatenate([_fpr95_resampled(scores, labels, idx, recall) for idx in _resamples(labels, n_boot, seed, 100)])
    return _percentile_interval(vals, level)


def fpr95_difference(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    labels: np.ndarray,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    recall: float = 0.95,
) -> tuple[float, float, float]:
    """FPR95 of ``scores_b`` minus that of ``scores_a`` on the same pairs, with a paired
    bootstrap interval (each resample scores both on the same pairs), e.g. int8 against float32.

    Args:
        scores_a, scores_b: (N,) scores of the same pairs by two methods.
        labels: (N,) bool.
        level, n_boot, seed, recall: as in :func:`fpr95_interval`.

    Returns:
        ``(difference, low, high)`` as fractions (a difference whose interval holds 0 is within
        what resampling the pairs alone moves).

    Raises:
        ValueError: see :func:`fpr95_interval`; the score arrays differ in length.
    """
    scores_a, labels = _checked(scores_a, labels, level, n_boot)
    scores_b, _ = _checked(scores_b, labels, level, n_boot)
    diffs = np.concatenate([_fpr95_resampled(scores_b, labels, idx, recall) - _fpr95_resampled(scores_a, labels, idx, recall)
                            for idx in _resamples(labels, n_boot, seed, 100)])  # fmt: skip
    d = fpr95(scores_b, labels, recall) - fpr95(scores_a, labels, recall)
    return (float(d), *_percentile_interval(diffs, level))


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.quantile(values, a)), float(np.quantile(values, 1 - a))


def _checked(scores, labels, level: float, n_boot: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}.")
    return _validated(scores, labels)  # the same checks as fpr95, without its sort
