"""Test doubles shared by several test modules."""

from __future__ import annotations

import numpy as np

from patchmatch.models import build_model
from patchmatch.scoring import PatchScorer


class NCCScorer(PatchScorer):
    """Normalised cross-correlation in place of the network: tests the matching plumbing with a
    known-good similarity, independently of trained weights."""

    def __init__(self, magnification: float | None = None):
        super().__init__(build_model("2ch"), device="cpu", meta={} if magnification is None else {"magnification": magnification})

    def score_pairs(self, p0, p1, pairs):
        a = p0[pairs[:, 0]].reshape(len(pairs), -1).astype(np.float32)
        b = p1[pairs[:, 1]].reshape(len(pairs), -1).astype(np.float32)
        a -= a.mean(1, keepdims=True)
        b -= b.mean(1, keepdims=True)
        return ((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-6)).astype(np.float32)
