"""Candidate pairs for the network: each keypoint's nearest neighbours by SIFT descriptor in the
other image, both directions, deduplicated. O(k·N) pairs, never all N×M.
"""

from __future__ import annotations

import numpy as np
import torch


def root_sift(descriptors: np.ndarray) -> torch.Tensor:
    """RootSIFT (Arandjelović & Zisserman, CVPR 2012): L1-normalise, square root → unit L2 norm.

    Args:
        descriptors: (N, 128) float SIFT descriptors.

    Returns:
        (N, 128) float32 tensor.
    """
    d = torch.from_numpy(np.asarray(descriptors, dtype=np.float32)).clamp_min(0)
    return torch.sqrt(d / d.sum(1, keepdim=True).clamp_min(1e-8))


def _knn(query: torch.Tensor, ref: torch.Tensor, k: int, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(Nq, k) Euclidean distances and indices of the k nearest ``ref`` rows for each ``query`` row."""
    dists, index = [], []
    ref_sq = (ref * ref).sum(1)
    for s in range(0, len(query), chunk):
        q = query[s : s + chunk]
        d2 = (q * q).sum(1, keepdim=True) - 2.0 * q @ ref.T + ref_sq[None]
        val, idx = torch.topk(d2, k, dim=1, largest=False)
        dists.append(val.clamp_min(0).sqrt())
        index.append(idx)
    return torch.cat(dists), torch.cat(index)


def knn_candidates(
    descriptors0: np.ndarray,
    descriptors1: np.ndarray,
    k: int = 2,
    max_ratio: float = 0.95,
    return_overlap: bool = False,
    overlap_ratio: float = 0.8,
    return_mutual: bool = False,
):
    """Candidate pairs by descriptor nearest neighbours, in both directions.

    A neighbour of rank ``r <= k`` of a keypoint is kept when its distance is below
    ``max_ratio`` times the distance to the keypoint's ``(k+1)``-th neighbour: with ``k = 1``
    this is Lowe's ratio test, with larger ``k`` the candidates are the neighbours that stand out
    from the clutter, the network deciding among them.

    Args:
        descriptors0: (N0, 128) float SIFT descriptors of image 0.
        descriptors1: (N1, 128) float SIFT descriptors of image 1.
        k: neighbours per keypoint, per direction (≥ 1).
        max_ratio: distance ratio to the (k+1)-th neighbour; 1.0 keeps all k neighbours.

        return_overlap: also return the number of mutual nearest neighbours passing Lowe's ratio
            test at ``overlap_ratio`` (a cheap estimate of how much the two images overlap, from
            the same neighbour search).
        overlap_ratio: ratio of that test.
        return_mutual: with ``return_overlap``, return those mutual ratio-test nearest
            neighbours themselves, (O, 2) int64 (SIFT's own matches at ``overlap_ratio``),
            instead of their number.

    Returns:
        (M, 2) int64 unique pairs ``[i0, i1]``, sorted, M ≤ k·(N0 + N1); with
        ``return_overlap``, the tuple ``(pairs, overlap)`` (``overlap`` an int, or the
        (O, 2) pairs with ``return_mutual``).

    Raises:
        ValueError: k < 1 or descriptor dimensions differ.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    n0, n1 = len(descriptors0), len(descriptors1)
    if n0 == 0 or n1 == 0:
        empty = np.zeros((0, 2), np.int64)
        return (empty, empty.copy() if return_mutual else 0) if return_overlap else empty
    if descriptors0.shape[1] != descriptors1.shape[1]:
        raise ValueError(f"descriptor dimensions differ: {descriptors0.shape[1]} vs {descriptors1.shape[1]}.")
    d0, d1 = root_sift(descriptors0), root_sift(descriptors1)
    pairs = []
    nearest = []  # per direction: (nearest index, passes the ratio test)
    for q, r, flip in ((d0, d1, False), (d1, d0, True)):
        kk = min(max(k, 1) + 1, len(r))
        dist, idx = _knn(q, r, kk)
        lowe = dist[:, 0] < overlap_ratio * dist[:, 1] if kk > 1 else torch.ones(len(q), dtype=torch.bool)
        nearest.append((idx[:, 0], lowe))
        kept = min(k, len(r))
        if kk > k:
            keep = dist[:, :k] < max_ratio * dist[:, k : k + 1]
        else:  # fewer reference keypoints than k + 1: no ratio to test
            keep = torch.ones((len(q), kept), dtype=torch.bool)
        rows = torch.arange(len(q))[:, None].expand(-1, kept)[keep]
        cols = idx[:, :kept][keep]
        p = torch.stack([cols, rows], 1) if flip else torch.stack([rows, cols], 1)
        pairs.append(p.numpy())
    pairs = np.concatenate(pairs).astype(np.int64)
    pairs = np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)
    if not return_overlap:
        return pairs
    (nn01, ok01), (nn10, ok10) = nearest
    mutual = (nn10[nn01] == torch.arange(n0)) & ok01 & ok10[nn01]
    if return_mutual:
        rows = torch.nonzero(mutual).flatten()
        return pairs, torch.stack([rows, nn01[rows]], 1).numpy().astype(np.int64).reshape(-1, 2)
    return pairs, int(mutual.sum())
