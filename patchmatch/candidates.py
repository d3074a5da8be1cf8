"""Candidate pairs for the network: each keypoint's nearest neighbours by SIFT descriptor in the
other image, both directions, deduplicated. O(k·N) pairs, never all N×M.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def knn(query: torch.Tensor, ref: torch.Tensor, k: int, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours by Euclidean distance (a reference for the faster searches).

    Args:
        query: (Nq, D) float32. ref: (Nr, D) float32, Nr >= k. chunk: query rows per block.

    Returns:
        ``(distances (Nq, k) float32, indices (Nq, k) int64)``, nearest first.
    """
    dists, index = [], []
    ref_sq = (ref * ref).sum(1)
    for s in range(0, len(query), chunk):
        q = query[s : s + chunk]
        d2 = (q * q).sum(1, keepdim=True) - 2.0 * q @ ref.T + ref_sq[None]
        val, idx = torch.topk(d2, k, dim=1, largest=False)
        dists.append(val.clamp_min(0).sqrt())
        index.append(idx)
    return torch.cat(dists), torch.cat(index)


#: Query rows per block of the distance matrix in :func:`_nearest` (256 × 8192 floats = 8 MiB).
SEARCH_ROWS = 256


def _nearest(q: torch.Tensor, r: torch.Tensor, r_sq: torch.Tensor, kk: int, rows: int = SEARCH_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """(Nq, kk) smallest values of ``||r||² - 2 q·r`` per query row and their (Nq, kk) indices, ascending.

    The (Nq, Nr) matrix is never held whole: blocks of ``rows`` query rows go into one reused
    buffer (a fresh 8192 × 8192 float32 matrix costs more in page faults than its GEMM), and
    for ``kk == 2`` (Lowe's ratio test) two row minima replace ``torch.topk`` (3× faster).
    """
    n = len(q)
    vals = torch.empty(n, kk)
    index = torch.empty(n, kk, dtype=torch.int64)
    buf = torch.empty(min(rows, n), len(r))
    for s in range(0, n, rows):
        e = min(s + rows, n)
        part = torch.addmm(r_sq[None].expand(e - s, -1), q[s:e], r.T, alpha=-2.0, out=buf[: e - s])
        if kk <= 2:
            vals[s:e, 0], index[s:e, 0] = part.min(1)
            if kk == 2:
                part.scatter_(1, index[s:e, :1], float("inf"))
                vals[s:e, 1], index[s:e, 1] = part.min(1)
        else:
            vals[s:e], index[s:e] = torch.topk(part, kk, dim=1, largest=False)
    return vals, index


#: Columns per tile (row search) and rows per group (column search) of :func:`_nearest2_both`.
SEARCH_TILE, SEARCH_GROUP = 128, 32
_FAR = 1e30  # squared distance of the padding rows of :func:`_nearest2_both`


def _distance_factors(x: torch.Tensor, left: bool, multiple: int) -> torch.Tensor:
    """(N, D) → (N', D + 2), N' the next multiple of ``multiple``: ``L @ R.T`` of a left ``[x, |x|², 1]``
    and a right ``[-2x, 1, |x|²]`` factor is the matrix of squared distances; padding rows are ``_FAR``
    from everything."""
    sq, one = (x * x).sum(1, keepdim=True), torch.ones(len(x), 1)
    out = torch.cat([x, sq, one] if left else [-2.0 * x, one, sq], 1)
    pad = (-len(x)) % multiple
    if pad:
        far = torch.zeros(pad, out.shape[1])
        far[:, x.shape[1] if left else x.shape[1] + 1] = _FAR
        out = torch.cat([out, far])
    return out


def _two_smallest(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, T) → smallest value, its column and the second smallest value (``_FAR`` if T = 1) of each row."""
    if x.shape[1] == 1:
        return x[:, 0], torch.zeros(len(x), dtype=torch.int64), torch.full((len(x),), _FAR)
    v, i = torch.topk(x, 2, dim=1, largest=False)
    return v[:, 0], i[:, 0], v[:, 1]


def _nearest2_both(
    d0: torch.Tensor, d1: torch.Tensor, rows: int = SEARCH_ROWS, tile: int = SEARCH_TILE, group: int = SEARCH_GROUP
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Nearest and second-nearest neighbours in both directions from one distance matrix, exactly.

    The (N0, N1) squared-distance matrix is computed in blocks of ``rows`` rows (one GEMM each,
    the norms folded into it, see :func:`_distance_factors`) and reduced with value-only minima,
    which run 3-8× faster in PyTorch than minima with indices: per row, the minimum of each tile
    of ``tile`` columns, then the two smallest tiles and the two smallest entries of the best
    tile; per column, the minimum of each group of ``group`` rows, kept for the whole matrix
    (N0 / group × N1 floats), and afterwards the best group's rows recomputed for that column.
    One matrix instead of one per direction; the same indices and distances as :func:`_nearest`.

    Args:
        d0: (N0, D) float32 descriptors, N0 ≥ 2. d1: (N1, D) float32 descriptors, N1 ≥ 2.

    Returns:
        For each direction, ``(nearest (N,) float32 squared distance, its (N,) int64 index in the
        other image, second-nearest (N,) float32 squared distance)``.
    """
    n0, n1 = len(d0), len(d1)
    left, right = _distance_factors(d0, True, group), _distance_factors(d1, False, tile)
    m0, m1 = len(left), len(right)
    rows = max(group, rows - rows % group)
    best, second, index = torch.empty(m0), torch.empty(m0), torch.empty(m0, dtype=torch.int64)
    group_min = torch.empty(m0 // group, m1)
    buf, offsets = torch.empty(min(rows, m0), m1), torch.arange(tile)
    for s in range(0, m0, rows):
        e = min(s + rows, m0)
        part = torch.mm(left[s:e], right.T, out=buf[: e - s])
        torch.amin(part.view((e - s) // group, group, m1), 1, out=group_min[s // group : e // group])
        t_best, t_arg, t_second = _two_smallest(part.view(e - s, m1 // tile, tile).amin(2))
        w_best, w_arg, w_second = _two_smallest(torch.gather(part, 1, t_arg[:, None] * tile + offsets))
        best[s:e], index[s:e], second[s:e] = w_best, t_arg * tile + w_arg, torch.minimum(w_second, t_second)
    # columns: two smallest group minima, then the best group's rows, exactly
    _, g_arg, g_second = _two_smallest(group_min.T.contiguous())
    cbest, csecond, cindex = torch.empty(m1), torch.empty(m1), torch.empty(m1, dtype=torch.int64)
    order = torch.argsort(g_arg[:n1])
    groups, counts = torch.unique_consecutive(g_arg[:n1][order], return_counts=True)
    start = 0
    for g, c in zip(groups.tolist(), counts.tolist()):
        cols = order[start : start + c]
        start += c
        v, i, v2 = _two_smallest(right[cols] @ left[g * group : (g + 1) * group].T)
        cbest[cols], cindex[cols], csecond[cols] = v, g * group + i, torch.minimum(v2, g_second[cols])
    return (best[:n0], index[:n0], second[:n0]), (cbest[:n1], cindex[:n1], csecond[:n1])


@dataclass
class CandidateSet:
    """Result of :func:`candidate_search`.

    Attributes:
        pairs: (M, 2) int64 unique candidate pairs ``[i0, i1]``, sorted.
        overlap: number of mutual nearest neighbours passing Lowe's ratio test at ``overlap_ratio``.
        accepted: (A, 2) int64 mutual nearest neighbours passing the ratio test at
            ``accept_ratio`` (empty when it is None).
    """

    pairs: np.ndarray
    overlap: int
    accepted: np.ndarray


def candidate_search(
    descriptors0: np.ndarray,
    descriptors1: np.ndarray,
    k: int = 1,
    max_ratio: float = 0.95,
    overlap_ratio: float = 0.8,
    accept_ratio: float | None = None,
) -> CandidateSet:
    """Candidate pairs by RootSIFT nearest neighbours in both directions.

    A neighbour of rank ``r <= k`` of a keypoint is a candidate when its distance is below
    ``max_ratio`` times the distance to the keypoint's ``(k+1)``-th neighbour: with ``k = 1``
    this is Lowe's ratio test, with larger ``k`` the candidates are the neighbours that stand out
    from the clutter, the network deciding among them. With ``k = 1`` both directions come from
    one (N0, N1) float32 distance matrix in blocks of rows (:func:`_nearest2_both`), otherwise
    from one search per direction (:func:`_nearest`, a row-wise top-k); the overlap count and the
    accepted mutual matches come from the same searches.

    Args:
        descriptors0: (N0, D) float SIFT descriptors of image 0.
        descriptors1: (N1, D) float SIFT descriptors of image 1.
        k: neighbours per keypoint, per direction (≥ 1).
        max_ratio: distance ratio to the (k+1)-th neighbour; 1.0 keeps all k neighbours.
        overlap_ratio: ratio test of the overlap count.
        accept_ratio: ratio test of the ``accepted`` mutual nearest neighbours, or None.

    Returns:
        :class:`CandidateSet`.

    Raises:
        ValueError: k < 1 or descriptor dimensions differ.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    n0, n1 = len(descriptors0), len(descriptors1)
    empty = np.zeros((0, 2), np.int64)
    if n0 == 0 or n1 == 0:
        return CandidateSet(empty, 0, empty.copy())
    if descriptors0.shape[1] != descriptors1.shape[1]:
        raise ValueError(f"descriptor dimensions differ: {descriptors0.shape[1]} vs {descriptors1.shape[1]}.")
    d0, d1 = root_sift(descriptors0), root_sift(descriptors1)
    both = _nearest2_both(d0, d1) if k == 1 and n0 >= 2 and n1 >= 2 else None
    pairs, nearest = [], []
    for q, r, flip in ((d0, d1, False), (d1, d0, True)):
        n_other = len(r)
        kk = min(k + 1, n_other)
        if both is not None:  # k = 1: nearest and second-nearest from the one shared matrix
            v1, i1, v2 = both[1 if flip else 0]
            val, idx = torch.stack([v1, v2], 1).clamp_min_(0).sqrt_(), i1[:, None]
        else:  # one row-wise top-k search per direction of ||r||² - 2 q·r; ||q||² does not change a row's order
            val, idx = _nearest(q, r, (r * r).sum(1), kk)
            val = (val + (q * q).sum(1)[:, None]).clamp_min_(0).sqrt_()
        ratio = val[:, 0] / val[:, 1].clamp_min(1e-12) if kk > 1 else torch.zeros(len(val))
        nearest.append((idx[:, 0], ratio))
        kept = min(k, n_other)
        if kk > k:
            keep = val[:, :k] < max_ratio * val[:, k : k + 1]
        else:  # fewer reference keypoints than k + 1: no ratio to test
            keep = torch.ones((len(val), kept), dtype=torch.bool)
        rows = torch.arange(len(val))[:, None].expand(-1, kept)[keep]
        cols = idx[:, :kept][keep]
        pairs.append((torch.stack([cols, rows], 1) if flip else torch.stack([rows, cols], 1)).numpy())
    all_pairs = np.concatenate(pairs).astype(np.int64)
    all_pairs = np.unique(all_pairs, axis=0) if len(all_pairs) else empty
    (nn01, r01), (nn10, r10) = nearest
    mutual = nn10[nn01] == torch.arange(n0)
    overlap = int((mutual & (r01 < overlap_ratio) & (r10[nn01] < overlap_ratio)).sum())
    accepted = empty.copy()
    if accept_ratio is not None:
        rows = torch.nonzero(mutual & (r01 < accept_ratio) & (r10[nn01] < accept_ratio)).flatten()
        accepted = torch.stack([rows, nn01[rows]], 1).numpy().astype(np.int64).reshape(-1, 2)
    return CandidateSet(all_pairs, overlap, accepted)


def knn_candidates(
    descriptors0: np.ndarray,
    descriptors1: np.ndarray,
    k: int = 2,
    max_ratio: float = 0.95,
    return_overlap: bool = False,
    overlap_ratio: float = 0.8,
):
    """Candidate pairs by descriptor nearest neighbours, in both directions (see
    :func:`candidate_search`).

    Returns:
        (M, 2) int64 unique pairs ``[i0, i1]``, sorted, M ≤ k·(N0 + N1); with
        ``return_overlap``, the tuple ``(pairs, overlap)``.

    Raises:
        ValueError: k < 1 or descriptor dimensions differ.
    """
    res = candidate_search(descriptors0, descriptors1, k, max_ratio, overlap_ratio)
    return (res.pairs, res.overlap) if return_overlap else res.pairs


# --------------------------------------------------------------------------
# Geometry-guided candidates: keypoints near the epipolar line (or the transferred point)
# --------------------------------------------------------------------------
#: Query rows per block of :func:`band_candidates` (1024 × 8192 float32 = 32 MiB per matrix).
BAND_ROWS = 1024


def _homogeneous(xy: np.ndarray) -> torch.Tensor:
    xy = torch.as_tensor(np.asarray(xy, np.float64))
    return torch.cat([xy, torch.ones(len(xy), 1, dtype=torch.float64)], 1)


def _line_distances(lines: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(R, C) distances in pixels of C homogeneous points from R lines ``(a, b, c)``."""
    norm = lines[:, :2].norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (lines @ points.T).abs() / norm


def _geometric_mask(
    h0: torch.Tensor, h1: torch.Tensor, F: np.ndarray | None, H: np.ndarray | None, max_distance: float
) -> torch.Tensor:
    """(R, C) bool: image-1 point within ``max_distance`` px of the epipolar line of the image-0
    point and vice versa (``F``, ``x1ᵀ F x0 = 0``), or of its transfer ``H x0`` (``H``)."""
    if F is not None:
        Fm = torch.as_tensor(np.asarray(F, np.float64))
        return (_line_distances(h0 @ Fm.T, h1) <= max_distance) & (_line_distances(h1 @ Fm, h0).T <= max_distance)
    Hm = torch.as_tensor(np.asarray(H, np.float64))
    t = h0 @ Hm.T
    ok = t[:, 2].abs() > 1e-12
    xy = t[:, :2] / torch.where(ok, t[:, 2], torch.ones_like(t[:, 2]))[:, None]
    return (torch.cdist(xy, h1[:, :2]) <= max_distance) & ok[:, None]


def _rank_within(groups: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """(M,) rank of each entry by increasing ``cost`` within its group (0 = lowest)."""
    order = np.lexsort((cost, groups))
    g = groups[order]
    starts = np.r_[0, np.nonzero(g[1:] != g[:-1])[0] + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    rank = np.empty(len(g), np.int64)
    rank[order] = np.arange(len(g)) - first
    return rank


def band_candidates(
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    F: np.ndarray | None = None,
    H: np.ndarray | None = None,
    max_distance: float = 3.0,
    max_scale_ratio: float | None = 2.0,
    max_angle: float | None = 30.0,
    scale_offset: float = 1.0,
    angle_offset: float = 0.0,
    free0: np.ndarray | None = None,
    free1: np.ndarray | None = None,
    descriptors0: np.ndarray | None = None,
    descriptors1: np.ndarray | None = None,
    per_keypoint: int = 4,
    per_pair: int | None = None,
) -> np.ndarray:
    """Candidate pairs of an image pair with a known two-view geometry, never all N0 × N1 at once.

    A pair ``(i, j)`` is a candidate when keypoint ``j`` of image 1 lies within ``max_distance``
    pixels of the epipolar line ``F x_i`` and ``i`` within as much of ``Fᵀ x_j`` (with ``F``), or
    ``j`` within ``max_distance`` of ``H x_i`` (with ``H``, planar scenes and pure rotations);
    their sizes agree up to ``max_scale_ratio`` after dividing by ``scale_offset`` (the pair's
    typical ``size1 / size0``), and their orientations up to ``max_angle`` degrees after
    subtracting ``angle_offset`` (the pair's typical ``angle1 - angle0``). Each keypoint keeps
    its ``per_keypoint`` candidates of smallest RootSIFT distance (the first ones in index
    order when no descriptors are given), in each direction; ``per_pair`` bounds the
    total the same way.

    Args:
        keypoints0: (N0, 4) float ``[x, y, size, angle°]``, pixels (the convention of ``F``/``H``).
        keypoints1: (N1, 4) float, same layout.
        F: (3, 3) fundamental matrix, ``x1ᵀ F x0 = 0``; or None when ``H`` is given.
        H: (3, 3) homography ``x1 ~ H x0``, used when ``F`` is None.
        max_distance: band half-width, pixels.
        max_scale_ratio: bound on ``max(r, 1/r)``, ``r = size1 / (size0 · scale_offset)``; None: no bound.
        max_angle: bound on the orientation difference in degrees; None: no bound (upright patches).
        scale_offset: see above (> 0). angle_offset: see above, degrees.
        free0: (N0,) bool keypoints of image 0 to find candidates for (None: all).
        free1: (N1,) bool keypoints of image 1 that may be candidates (None: all).
        descriptors0: (N0, 128) SIFT descriptors ranking the candidates, or None.
        descriptors1: (N1, 128) SIFT descriptors, or None.
        per_keypoint: candidates kept per keypoint and direction (≥ 1).
        per_pair: candidates kept in all, or None.

    Returns:
        (M, 2) int64 unique pairs ``[i0, i1]``, sorted.

    Raises:
        ValueError: neither ``F`` nor ``H`` given, per_keypoint < 1 or scale_offset <= 0.
    """
    if F is None and H is None:
        raise ValueError("band_candidates needs F or H")
    if per_keypoint < 1 or scale_offset <= 0:
        raise ValueError(f"per_keypoint must be >= 1 and scale_offset > 0, got {per_keypoint}, {scale_offset}")
    k0, k1 = np.asarray(keypoints0, np.float64), np.asarray(keypoints1, np.float64)
    rows = np.nonzero(free0)[0] if free0 is not None else np.arange(len(k0))
    cols = np.nonzero(free1)[0] if free1 is not None else np.arange(len(k1))
    empty = np.zeros((0, 2), np.int64)
    if len(rows) == 0 or len(cols) == 0:
        return empty
    h1 = _homogeneous(k1[cols, :2])
    log_s1 = torch.as_tensor(np.log(np.maximum(k1[cols, 2], 1e-6)) - np.log(scale_offset))
    a1 = torch.as_tensor(k1[cols, 3] - angle_offset)
    found = []
    for s in range(0, len(rows), BAND_ROWS):
        r = rows[s : s + BAND_ROWS]
        mask = _geometric_mask(_homogeneous(k0[r, :2]), h1, F, H, max_distance)
        if max_scale_ratio is not None:
            log_s0 = torch.as_tensor(np.log(np.maximum(k0[r, 2], 1e-6)))
            mask &= (log_s1[None] - log_s0[:, None]).abs() <= float(np.log(max_scale_ratio))
        if max_angle is not None:
            diff = (a1[None] - torch.as_tensor(k0[r, 3])[:, None] + 180.0).remainder(360.0) - 180.0
            mask &= diff.abs() <= max_angle
        i, j = torch.nonzero(mask, as_tuple=True)
        found.append(np.stack([r[i.numpy()], cols[j.numpy()]], 1))
    pairs = np.concatenate(found) if found else empty
    if len(pairs) == 0:
        return empty
    if descriptors0 is not None and descriptors1 is not None:
        d0, d1 = root_sift(descriptors0[pairs[:, 0]]), root_sift(descriptors1[pairs[:, 1]])
        cost = (2.0 - 2.0 * (d0 * d1).sum(1)).numpy()
    else:
        cost = np.zeros(len(pairs))
    keep = (_rank_within(pairs[:, 0], cost) < per_keypoint) | (_rank_within(pairs[:, 1], cost) < per_keypoint)
    pairs, cost = pairs[keep], cost[keep]
    if per_pair is not None and len(pairs) > per_pair:
        best = np.argsort(cost, kind="stable")[:per_pair]
        pairs = pairs[best]
    return np.unique(pairs.astype(np.int64), axis=0)
