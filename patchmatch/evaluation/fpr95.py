"""False positive rate at 95% recall (FPR95), the standard metric of the Brown patch benchmark
(Brown, Hua & Winder, PAMI 2011; used by Zagoruyko & Komodakis, CVPR 2015).

Computed from ranks, so raw, possibly negative network scores are fine: higher = more similar.
"""

from __future__ import annotations

import numpy as np


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
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape} vs {labels.shape}.")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"FPR95 needs positives and negatives, got {n_pos} and {n_neg}.")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values.")
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
    k = int(np.searchsorted(tpr, recall - 1e-12, side="left"))
    return float(fpr[k])
