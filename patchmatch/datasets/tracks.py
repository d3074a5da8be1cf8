"""Ground-truth patch pairs from scenes with known cameras, tied by geometry alone.

SIFT keypoints (:func:`patchmatch.features.detect`) of the images of a :class:`~.scenes.Scene`
are tied into tracks without ever looking at a descriptor:

1. **Candidates** for every pair of neighbouring views (optical axes within
   ``max_view_angle_deg``): keypoint pairs within ``epipolar_px`` of each other's epipolar line
   (in both images), triangulating in front of both cameras, reprojecting within
   ``reprojection_px``, and whose keypoint *physical* sizes agree (``size * depth / focal``
   within a factor ``size_ratio``).
2. **Verification** in third views: the candidate's 3D point must project within
   ``reprojection_px`` of exactly one scale-consistent keypoint in at least ``min_support``
   other views (two or more such keypoints = ambiguous, no support).
3. **Uniqueness**: within a view pair, a keypoint with two or more verified partners is
   ambiguous and all its candidates are dropped (mutual, one-to-one).
4. **Tracks**: connected components of the verified matches; a component holding two keypoints
   of one image is dropped; the rest are triangulated from all their views and observations
   reprojecting further than ``reprojection_px`` (or with an inconsistent physical size) are
   removed, worst first, re-triangulating each time.
5. **Orientations**: SIFT gives a location one keypoint per dominant orientation; each
   observation takes the orientation that agrees with the other views (transferred through
   the 3D point, ``orientation_tol_deg``), so that the oriented patches of a positive pair
   show the same content the same way up. A share of the tracks (``detected_share``) skips
   this step: their observations keep each view's own detection (position, scale and the
   location's strongest orientation, as SIFT found them in that view), so that positives also
   show the disagreement between views that the matcher meets. ``orientation_tol_deg = 0``
   does so for every track (the "as detected" protocol of the benchmark).

From the tracks a *pair set* is drawn (:func:`build_pair_set`; written by
:func:`patchmatch.datasets.patchset.write_patch_set`): positives are two views of one
track; random negatives are observations of two different tracks; hard negatives pair an
observation with the keypoint of the partner image that is nearest to it by SIFT descriptor but
is not its partner (nor within ``hard_exclusion_px`` of where the track projects).

Keypoints are in the OpenCV pixel convention, the same as the cameras of ``cameras.json``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .scenes import Camera, Scene, fundamental_matrix, load_scene

logger = logging.getLogger(__name__)

__all__ = [
    "TrackConfig",
    "ImageFeatures",
    "Tracks",
    "PairSetConfig",
    "detect_features",
    "detect_scene",
    "neighbour_pairs",
    "build_tracks",
    "build_pair_set",
    "triangulate",
]


@dataclass(frozen=True)
class TrackConfig:
    """How keypoints are tied into tracks (all distances in pixels of the full-size images).

    Attributes:
        max_keypoints: SIFT keypoints per image (strongest first, before removing duplicates).
        epipolar_px: maximum distance of a candidate from the epipolar line, in both images.
        reprojection_px: maximum reprojection error of a track's 3D point, in every view.
        size_ratio: maximum ratio between two estimates of a keypoint's physical size
            (``size * depth / focal``), >= 1.
        min_support: third views in which a candidate must be confirmed.
        min_track_length: views a track must keep after the geometric cleaning (the
            orientation step may then remove views, down to 2).
        max_view_angle_deg: two views are searched for candidates when their optical axes
            differ by at most this angle.
        max_neighbours: at most this many neighbour views per image (smallest angle first).
        min_triangulation_deg: minimum angle between the two rays of a candidate.
        orientation_tol_deg: after the geometry, each observation takes the one of its
            location's SIFT orientations that agrees (within this angle, transferred through
            the 3D point) with the other views; views without one are removed and tracks
            left with fewer than 2 views dropped. 0 keeps the first orientation of each
            location (positives may then show rotated content).
        detected_share: fraction in [0, 1] of the tracks (drawn at random, seeded) that skip
            the orientation choice and keep each view's first (strongest) orientation as
            detected; the rest are oriented consistently. 0 = every track consistent (the
            benchmark's val/test sets).
    """

    max_keypoints: int = 4096
    epipolar_px: float = 1.0
    reprojection_px: float = 1.0
    size_ratio: float = 1.4
    min_support: int = 1
    min_track_length: int = 3
    max_view_angle_deg: float = 40.0
    max_neighbours: int = 8
    min_triangulation_deg: float = 1.0
    orientation_tol_deg: float = 30.0
    detected_share: float = 0.25  # new sets: a quarter of the positives show the views' own disagreement

    def __post_init__(self) -> None:
        if not 0.0 <= self.detected_share <= 1.0:
            raise ValueError(f"detected_share must be in [0, 1], got {self.detected_share}")
        if self.max_keypoints <= 0:
            raise ValueError(f"max_keypoints must be > 0, got {self.max_keypoints}")
        if self.epipolar_px <= 0 or self.reprojection_px <= 0:
            raise ValueError(f"epipolar_px (--epipolar-px) and reprojection_px (--reprojection-px) must be > 0, "
                             f"got {self.epipolar_px} and {self.reprojection_px}")
        if self.size_ratio < 1:
            raise ValueError(f"size_ratio (--size-ratio) must be >= 1, got {self.size_ratio}")
        if self.min_support < 0 or self.min_track_length < 2:
            raise ValueError(f"min_support must be >= 0 and min_track_length (--min-track-length) >= 2, "
                             f"got {self.min_support} and {self.min_track_length}")
        if self.max_neighbours < 1:
            raise ValueError(f"max_neighbours must be >= 1, got {self.max_neighbours}")


@dataclass
class ImageFeatures:
    """SIFT keypoints of one image, as detected, grouped by location.

    OpenCV's SIFT repeats a location once per dominant orientation; tracks are built on
    locations (one representative each) and the orientation of each observation is chosen
    afterwards, consistently across the views of a track.

    Attributes:
        name: image name in the scene.
        keypoints: (N, 4) float32 ``[x, y, size, angle_deg]``, OpenCV pixel convention.
        descriptors: (N, 128) float32 SIFT descriptors.
        location: (N,) int64 location id of each keypoint, 0..U-1.
        unique: (U,) int64 index of the first (strongest) keypoint of each location.
    """

    name: str
    keypoints: np.ndarray
    descriptors: np.ndarray
    location: np.ndarray = None  # type: ignore[assignment]
    unique: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.location is None or self.unique is None:
            self.location, self.unique = _group_locations(self.keypoints)

    def locations(self) -> "ImageFeatures":
        """One keypoint per location (the first), as its own :class:`ImageFeatures`."""
        u = self.unique
        return ImageFeatures(self.name, self.keypoints[u], self.descriptors[u], np.arange(len(u)), np.arange(len(u)))


@dataclass
class Tracks:
    """Observations of 3D points, flattened.

    Attributes:
        image_index: (N,) int32 index into ``names`` of each observation.
        keypoint_index: (N,) int32 index of the keypoint (with its chosen orientation) in its
            image's :class:`ImageFeatures` ``keypoints``.
        track_id: (N,) int32 track of each observation, 0..T-1, observations grouped by track.
        points3d: (T, 3) float64 triangulated points, world coordinates.
        names: image names, the order ``image_index`` refers to.
    """

    image_index: np.ndarray
    keypoint_index: np.ndarray
    track_id: np.ndarray
    points3d: np.ndarray
    names: list[str] = field(default_factory=list)

    @property
    def num_tracks(self) -> int:
        """Number of tracks T."""
        return len(self.points3d)

    def __len__(self) -> int:
        return len(self.track_id)


def _group_locations(kps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Location id of each keypoint (same x, y, size to 1e-3 px) and the first index of each."""
    if len(kps) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = np.round(np.asarray(kps)[:, :3].astype(np.float64) * 1000.0).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    # Renumber locations in order of first appearance (detector order = strongest first).
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)].astype(np.int64), first[order].astype(np.int64)


def detect_features(name: str, image: np.ndarray, max_keypoints: int = 4096) -> ImageFeatures:
    """SIFT keypoints of one (H, W) uint8 image (:func:`patchmatch.features.detect`), grouped by location.

    Args:
        name: the image's name (kept in the result).
        image: (H, W) uint8 grey image.
        max_keypoints: keypoints kept, strongest first.

    Returns:
        The :class:`ImageFeatures`: float32 keypoints and descriptors.
    """
    from ..features import detect

    f = detect(image, max_keypoints=max_keypoints)
    return ImageFeatures(name=name, keypoints=np.asarray(f.keypoints, dtype=np.float32),
                         descriptors=np.asarray(f.descriptors, dtype=np.float32))  # fmt: skip


def detect_scene(
    scene: Scene, names: Sequence[str], max_keypoints: int = 4096, progress: bool = False
) -> tuple[dict[str, ImageFeatures], dict[str, np.ndarray]]:
    """Read and detect SIFT in the given images of a scene.

    Args:
        scene: the scene.
        names: image names to process.
        max_keypoints: keypoints per image.
        progress: show a tqdm bar.

    Returns:
        ``(features, images)``: per name the :class:`ImageFeatures` (all detected keypoints,
        grouped by location) and the (H, W) uint8 grey image.

    Raises:
        ValueError: if an image's size differs from its camera's ``width``/``height``.
    """
    from ..images import read_gray

    feats: dict[str, ImageFeatures] = {}
    images: dict[str, np.ndarray] = {}
    it = names
    if progress:
        from tqdm import tqdm

        it = tqdm(names, desc=f"SIFT {scene.name}", unit="img")
    for name in it:
        cam = scene.cameras[name]
        img, scale = read_gray(scene.image_path(name))
        if img.shape != (cam.height, cam.width) or scale != 1.0:
            raise ValueError(
                f"{scene.image_path(name)}: image is {img.shape[1]}x{img.shape[0]} but "
                f"{scene.root / 'cameras.json'} says {cam.width}x{cam.height}"
            )
        feats[name] = detect_features(name, img, max_keypoints)
        images[name] = img
    return feats, images


def neighbour_pairs(scene: Scene, names: Sequence[str], config: TrackConfig) -> list[tuple[int, int]]:
    """View pairs searched for candidates: optical axes within ``max_view_angle_deg``.

    Each view keeps at most ``max_neighbours`` partners (smallest angle first); a pair is kept
    when either view keeps the other.

    Args:
        scene: the scene.
        names: the images considered.
        config: track configuration.

    Returns:
        Sorted list of index pairs ``(i, j)`` into ``names`` with ``i < j``.
    """
    axes = np.stack([scene.cameras[n].R[2] for n in names])
    centers = np.stack([scene.cameras[n].center for n in names])
    cos = np.clip(axes @ axes.T, -1.0, 1.0)
    ang = np.degrees(np.arccos(cos))
    n = len(names)
    dist = np.linalg.norm(centers[:, None] - centers[None], axis=2)
    scale = float(np.median(dist[np.triu_indices(n, 1)])) if n > 1 else 1.0
    same = dist <= 1e-6 * max(scale, 1e-12)
    np.fill_diagonal(same, False)
    for i, j in zip(*np.nonzero(np.triu(same))):
        logger.warning("%s: %s and %s share their camera centre; not paired", scene.name, names[i], names[j])
    pairs: set[tuple[int, int]] = set()
    for i in range(n):
        order = [j for j in np.argsort(ang[i], kind="stable") if j != i and ang[i, j] <= config.max_view_angle_deg]
        order = [j for j in order if not same[i, j]]
        for j in order[: config.max_neighbours]:
            pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)


def triangulate(Ps: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation of many points, each seen in the same number of views.

    Args:
        Ps: (M, V, 3, 4) projection matrices of each point's views.
        uv: (M, V, 2) pixel observations.

    Returns:
        (M, 3) float64 world points (inhomogeneous; points at infinity give huge values).
    """
    Ps = np.asarray(Ps, dtype=np.float64)
    uv = np.asarray(uv, dtype=np.float64)
    a = uv[..., 0:1] * Ps[..., 2, :] - Ps[..., 0, :]
    b = uv[..., 1:2] * Ps[..., 2, :] - Ps[..., 1, :]
    A = np.concatenate([a, b], axis=1)  # (M, 2V, 4)
    # Row scaling for conditioning.
    A = A / np.maximum(np.linalg.norm(A, axis=2, keepdims=True), 1e-12)
    _, _, vt = np.linalg.svd(A)
    X = vt[:, -1, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return X[:, :3] / X[:, 3:4]


class _Grid:
    """Fixed-radius neighbour lookup over 2D points (a hashed grid; no scipy needed)."""

    def __init__(self, xy: np.ndarray, cell: float) -> None:
        self.xy = np.asarray(xy, dtype=np.float64)
        self.cell = float(cell)
        ij = np.floor(self.xy / self.cell).astype(np.int64)
        self.key = self._key(ij[:, 0], ij[:, 1])
        self.order = np.argsort(self.key, kind="stable")
        self.sorted_key = self.key[self.order]

    @staticmethod
    def _key(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (i + (1 << 20)) * (1 << 22) + (j + (1 << 20))

    def query(self, q: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """All (query, point) index pairs closer than ``radius`` (``radius <= cell``).

        Args:
            q: (M, 2) query points (finite).
            radius: search radius.

        Returns:
            ``(qi, pi)`` int64 arrays of equal length.
        """
        q = np.asarray(q, dtype=np.float64)
        ij = np.floor(q / self.cell).astype(np.int64)
        qis, pis = [], []
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                k = self._key(ij[:, 0] + di, ij[:, 1] + dj)
                lo = np.searchsorted(self.sorted_key, k, "left")
                hi = np.searchsorted(self.sorted_key, k, "right")
                cnt = hi - lo
                if cnt.sum() == 0:
                    continue
                qi = np.repeat(np.arange(len(q)), cnt)
                offs = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
                pi = self.order[np.repeat(lo, cnt) + offs]
                qis.append(qi)
                pis.append(pi)
        if not qis:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        qi = np.concatenate(qis)
        pi = np.concatenate(pis)
        d = np.linalg.norm(q[qi] - self.xy[pi], axis=1)
        keep = d <= radius
        return qi[keep], pi[keep]


def _epipolar_candidates(
    x0: np.ndarray, x1: np.ndarray, F: np.ndarray, thr: float, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs with both symmetric epipolar distances <= thr (brute force, chunked)."""
    h0 = np.hstack([x0, np.ones((len(x0), 1))]).astype(np.float64)
    h1 = np.hstack([x1, np.ones((len(x1), 1))]).astype(np.float64)
    l1 = h0 @ F.T  # lines in image 1 for points of image 0
    l1 /= np.maximum(np.linalg.norm(l1[:, :2], axis=1, keepdims=True), 1e-12)
    l0 = h1 @ F  # lines in image 0 for points of image 1
    l0 /= np.maximum(np.linalg.norm(l0[:, :2], axis=1, keepdims=True), 1e-12)
    l1 = l1.astype(np.float32)
    h1t = h1.T.astype(np.float32)
    ia, ib = [], []
    for s in range(0, len(x0), chunk):
        a, b = np.nonzero(np.abs(l1[s : s + chunk] @ h1t) <= thr)
        ia.append(a + s)
        ib.append(b)
    ia_arr = np.concatenate(ia).astype(np.int64)
    ib_arr = np.concatenate(ib).astype(np.int64)
    # Symmetric check, on the few survivors only.
    d0 = np.abs(np.sum(h0[ia_arr] * l0[ib_arr], axis=1))
    ok = d0 <= thr
    return ia_arr[ok], ib_arr[ok]


def _physical_size(size: np.ndarray, depth: np.ndarray, cam: Camera) -> np.ndarray:
    """Physical size (world units) of keypoints of pixel ``size`` at ``depth`` in ``cam``: ``size * depth / focal``."""
    return size * depth / cam.focal


def _reproj_err(cam: Camera, X: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) reprojection errors (pixels; inf behind the camera or not finite) of (N, 3) points seen at (N, 2) ``uv``,
    and their (N,) depths."""
    p, depth = cam.project(X)
    err = np.linalg.norm(p - uv, axis=1)
    err[~(depth > 0) | ~np.isfinite(err)] = np.inf
    return err, depth


def _third_view_support(
    X: np.ndarray, phys: np.ndarray, views: Sequence[int], cams: Sequence[Camera], feats: Sequence[ImageFeatures],
    grids: Sequence[_Grid], config: TrackConfig,
) -> np.ndarray:
    """In how many of ``views`` each candidate point is confirmed: it projects in front of the
    camera, inside the image, within ``reprojection_px`` of exactly one keypoint whose physical
    size agrees within ``size_ratio``.

    Args:
        X: (M, 3) candidate points.
        phys: (M,) their physical sizes (world units).
        views: indices of the views to look in.
        cams, feats, grids: cameras, features and keypoint grids by view index.
        config: thresholds.

    Returns:
        (M,) int32 number of confirming views.
    """
    support = np.zeros(len(X), np.int32)
    logr = math.log(config.size_ratio)
    for k in views:
        ck = cams[k]
        if len(feats[k].keypoints) == 0:
            continue
        p, depth = ck.project(X)
        idx = np.nonzero((depth > 0) & ck.contains(p))[0]
        if len(idx) == 0:
            continue
        qi, pi = grids[k].query(p[idx], config.reprojection_px)
        if len(qi) == 0:
            continue
        sk = _physical_size(feats[k].keypoints[pi, 2].astype(np.float64), depth[idx][qi], ck)
        good = np.abs(np.log(sk / phys[idx][qi])) <= logr
        cnt = np.bincount(qi[good], minlength=len(idx))
        support[idx[cnt == 1]] += 1
    return support


def _pair_matches(
    i: int,
    j: int,
    names: Sequence[str],
    cams: Sequence[Camera],
    feats: Sequence[ImageFeatures],
    grids: Sequence[_Grid],
    verify_views: Sequence[int],
    config: TrackConfig,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Verified, unique keypoint matches between views i and j (see module docstring)."""
    c0, c1 = cams[i], cams[j]
    k0, k1 = feats[i].keypoints, feats[j].keypoints
    stats = {"epipolar": 0, "geometric": 0, "verified": 0, "unique": 0}
    if len(k0) == 0 or len(k1) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), stats
    F = fundamental_matrix(c0, c1)
    ia, ib = _epipolar_candidates(k0[:, :2], k1[:, :2], F, config.epipolar_px)
    stats["epipolar"] = len(ia)
    if len(ia) == 0:
        return ia, ib, stats
    uv0 = k0[ia, :2].astype(np.float64)
    uv1 = k1[ib, :2].astype(np.float64)
    P = np.stack([c0.P, c1.P])
    X = triangulate(np.broadcast_to(P, (len(ia), 2, 3, 4)), np.stack([uv0, uv1], axis=1))
    e0, d0 = _reproj_err(c0, X, uv0)
    e1, d1 = _reproj_err(c1, X, uv1)
    s0 = _physical_size(k0[ia, 2].astype(np.float64), d0, c0)
    s1 = _physical_size(k1[ib, 2].astype(np.float64), d1, c1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ray0 = X - c0.center
        ray1 = X - c1.center
        cosang = np.sum(ray0 * ray1, axis=1) / (np.linalg.norm(ray0, axis=1) * np.linalg.norm(ray1, axis=1))
        size_ok = np.abs(np.log(s0 / s1)) <= math.log(config.size_ratio)
    ok = (
        np.isfinite(X).all(axis=1)
        & (e0 <= config.reprojection_px)
        & (e1 <= config.reprojection_px)
        & size_ok
        & (cosang <= math.cos(math.radians(config.min_triangulation_deg)))
    )
    ia, ib, X = ia[ok], ib[ok], X[ok]
    phys = np.sqrt(s0[ok] * s1[ok])
    stats["geometric"] = len(ia)
    if len(ia) == 0:
        return ia, ib, stats
    support = _third_view_support(X, phys, [k for k in verify_views if k not in (i, j)], cams, feats, grids, config)
    ok = support >= config.min_support
    ia, ib = ia[ok], ib[ok]
    stats["verified"] = len(ia)
    # Uniqueness: a keypoint with several verified partners is ambiguous.
    ca = np.bincount(ia, minlength=len(k0))
    cb = np.bincount(ib, minlength=len(k1))
    ok = (ca[ia] == 1) & (cb[ib] == 1)
    ia, ib = ia[ok], ib[ok]
    stats["unique"] = len(ia)
    return ia, ib, stats


def _verified_edges(
    scene: Scene, names: Sequence[str], cams: Sequence[Camera], fl: Sequence[ImageFeatures], config: TrackConfig,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Verified, unique keypoint matches of every neighbouring view pair (steps 1-3 of the module docstring).

    Args:
        scene: the scene (for its name and the neighbour search).
        names: the images, in the order of ``cams`` and ``fl``.
        cams: camera of each image.
        fl: features of each image, one keypoint per location.
        config: thresholds.
        progress: show a tqdm bar over view pairs.

    Returns:
        ``(edges, offsets)``: (E, 2) int64 matches as global keypoint numbers (keypoint ``k`` of
        image ``i`` is ``offsets[i] + k``) and the (len(names) + 1,) int64 offsets.
    """
    cell = max(config.reprojection_px, 1e-3)
    grids = [_Grid(f.keypoints[:, :2], cell) for f in fl]
    pairs = neighbour_pairs(scene, names, config)
    neigh: dict[int, set[int]] = {i: set() for i in range(len(names))}
    for i, j in pairs:
        neigh[i].add(j)
        neigh[j].add(i)
    offsets = np.concatenate([[0], np.cumsum([len(f.keypoints) for f in fl])]).astype(np.int64)
    edges = []
    totals = {"epipolar": 0, "geometric": 0, "verified": 0, "unique": 0}
    it = pairs
    if progress:
        from tqdm import tqdm

        it = tqdm(pairs, desc=f"tracks {scene.name}", unit="pair")
    for i, j in it:
        verify = sorted((neigh[i] | neigh[j]) - {i, j})
        ia, ib, st = _pair_matches(i, j, names, cams, fl, grids, verify, config)
        for key in totals:
            totals[key] += st[key]
        edges.append(np.stack([ia + offsets[i], ib + offsets[j]], axis=1))
    logger.info("%s: %d view pairs, candidates %s", scene.name, len(pairs), totals)
    return (np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)), offsets


def _connected_roots(edges: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of a graph by union-find (the smaller number is the root).

    Args:
        edges: (E, 2) int node pairs, nodes ``0..n_nodes-1``.
        n_nodes: number of nodes.

    Returns:
        ``(nodes, roots)``: (M,) int64 sorted nodes that have an edge and (M,) int64 root of each.
    """
    parent = np.arange(n_nodes)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in edges:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    nodes = np.unique(edges.reshape(-1))
    return nodes, np.array([find(int(x)) for x in nodes], dtype=np.int64)


def _track_candidates(edges: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Observations of the connected components of the matches, without the ambiguous components
    (step 4 of the module docstring: two keypoints of one image in a component drop it whole).

    Args:
        edges: (E, 2) int64 matches as global keypoint numbers (see :func:`_verified_edges`).
        offsets: (V + 1,) int64 first global number of each image's keypoints.

    Returns:
        ``(comp, img, kp, n_conflict)``: (N,) int64 component of each observation (sorted, 0..C-1
        with gaps), (N,) image index, (N,) keypoint index in that image's locations, and the
        number of components dropped.
    """
    nodes, roots = _connected_roots(edges, int(offsets[-1]))
    node_img = np.searchsorted(offsets, nodes, side="right") - 1
    node_kp = nodes - offsets[node_img]
    order = np.lexsort((node_img, roots))
    roots, node_img, node_kp = roots[order], node_img[order], node_kp[order]
    comp = np.cumsum(np.r_[False, roots[1:] != roots[:-1]])  # component of each node, 0..C-1
    dup = np.r_[False, (comp[1:] == comp[:-1]) & (node_img[1:] == node_img[:-1])]
    conflict = np.zeros(int(comp[-1]) + 1 if len(comp) else 0, bool)
    conflict[comp[dup]] = True
    sel = ~conflict[comp]
    return comp[sel], node_img[sel], node_kp[sel], int(conflict.sum())


def _cleaned_tracks(
    scene: Scene, cams: Sequence[Camera], full: Sequence[ImageFeatures], fl: Sequence[ImageFeatures],
    edges: np.ndarray, offsets: np.ndarray, config: TrackConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tracks from the verified matches, triangulated and cleaned (step 4 of the module docstring).

    Returns:
        ``(img, raw, tid, points)``: (N,) image index, (N,) int64 keypoint index in the image's full
        features (the location's first keypoint), (N,) track id 0..T-1 (grouped) of each
        observation, and (T, 3) float64 points.
    """
    obs_comp, obs_img, obs_kp, n_conflict = _track_candidates(edges, offsets)
    X, keep = _clean_tracks(obs_comp, obs_img, obs_kp, cams, fl, config)
    counts = np.bincount(obs_comp[keep], minlength=len(X))
    good = (counts >= config.min_track_length) & np.isfinite(X).all(axis=1)
    n_short = int(len(np.unique(obs_comp)) - good.sum())
    keep &= good[obs_comp]
    new_id = np.cumsum(good) - 1
    logger.info(
        "%s: %d tracks kept, %d dropped (two keypoints in one image), %d dropped (too short after cleaning)",
        scene.name,
        int(good.sum()),
        n_conflict,
        n_short,
    )
    img_k = obs_img[keep]
    raw = np.array([full[i].unique[k] for i, k in zip(img_k, obs_kp[keep])], dtype=np.int64)
    return img_k, raw, new_id[obs_comp[keep]], X[good].reshape(-1, 3)


def _oriented_tracks(
    scene: Scene, cams: Sequence[Camera], full: Sequence[ImageFeatures], img_k: np.ndarray, raw: np.ndarray,
    tid_k: np.ndarray, points: np.ndarray, config: TrackConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The observations with their track-consistent orientation (step 5 of the module docstring):
    inconsistent ones removed, tracks left with fewer than 2 views dropped and the rest renumbered.

    Args and returns: as :func:`_cleaned_tracks` returns them.
    """
    raw, ok = _orient_tracks(cams, full, img_k, raw, tid_k, points, config.orientation_tol_deg)
    counts = np.bincount(tid_k[ok], minlength=len(points))
    ok &= counts[tid_k] >= 2
    kept = counts >= 2
    logger.info(
        "%s: orientations: %d of %d observations consistent, %d of %d tracks keep >= 2 views",
        scene.name,
        int(ok.sum()),
        len(ok),
        int(kept.sum()),
        len(points),
    )
    remap = np.cumsum(kept) - 1
    return img_k[ok], raw[ok], remap[tid_k[ok]], points[kept]


#: seed of the draw of the tracks that keep their detections as they are (``detected_share``)
DETECTED_SEED = 0


def _share_oriented(
    scene: Scene, cams: Sequence[Camera], full: Sequence[ImageFeatures], img_k: np.ndarray, raw: np.ndarray,
    tid_k: np.ndarray, points: np.ndarray, config: TrackConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Orients all tracks but a ``detected_share`` of them, which keep each view's first orientation.

    Args and returns: as :func:`_oriented_tracks`; the oriented tracks come first, renumbered
    0..K-1, the as-detected ones follow (grouped, in their order).
    """
    as_detected = np.random.default_rng(DETECTED_SEED).random(len(points)) < config.detected_share
    if not as_detected.any():
        return _oriented_tracks(scene, cams, full, img_k, raw, tid_k, points, config)
    sel = ~as_detected[tid_k]
    remap = np.cumsum(~as_detected) - 1
    img_o, raw_o, tid_o, pts_o = _oriented_tracks(scene, cams, full, img_k[sel], raw[sel], remap[tid_k[sel]],
                                                  points[~as_detected], config)  # fmt: skip
    remap_d = np.cumsum(as_detected) - 1 + len(pts_o)
    logger.info("%s: %d of %d tracks keep their detections as they are", scene.name, int(as_detected.sum()), len(points))
    return (np.concatenate([img_o, img_k[~sel]]), np.concatenate([raw_o, raw[~sel]]),
            np.concatenate([tid_o, remap_d[tid_k[~sel]]]), np.concatenate([pts_o, points[as_detected]]))  # fmt: skip


def build_tracks(
    scene: Scene,
    feats: dict[str, ImageFeatures],
    names: Sequence[str] | None = None,
    config: TrackConfig = TrackConfig(),
    progress: bool = False,
) -> Tracks:
    """Tie keypoints of a scene into tracks by geometry alone (see module docstring).

    Args:
        scene: scene with ground-truth cameras.
        feats: features per image name (:func:`detect_scene`).
        names: images to use (default: all of ``feats``, sorted).
        config: thresholds.
        progress: show a tqdm bar over view pairs.

    Returns:
        :class:`Tracks`; every track was geometrically verified in at least
        ``config.min_track_length`` views and keeps at least 2 orientation-consistent ones, at
        most one per image, all reprojecting within ``config.reprojection_px``.

    Raises:
        KeyError: if a name has no features or no camera.
        ValueError: fewer than 2 names.
    """
    names = sorted(feats) if names is None else list(names)
    if len(names) < 2:
        raise ValueError(f"need at least 2 images to build tracks, got {len(names)}")
    cams = [scene.cameras[n] for n in names]
    full = [feats[n] for n in names]
    fl = [f.locations() for f in full]  # geometry: one keypoint per location
    edges, offsets = _verified_edges(scene, names, cams, fl, config, progress)
    if len(edges) == 0:
        logger.warning("%s: no verified matches between %d images", scene.name, len(names))
        z = np.zeros(0, np.int32)
        return Tracks(z, z.copy(), z.copy(), np.zeros((0, 3)), list(names))
    img_k, raw, tid_k, points = _cleaned_tracks(scene, cams, full, fl, edges, offsets, config)
    if config.orientation_tol_deg > 0 and len(raw):
        img_k, raw, tid_k, points = _share_oriented(scene, cams, full, img_k, raw, tid_k, points, config)
    return Tracks(
        image_index=img_k.astype(np.int32),
        keypoint_index=raw.astype(np.int32),
        track_id=tid_k.astype(np.int32),
        points3d=points,
        names=list(names),
    )


def angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute difference of angles in degrees, in [0, 180]."""
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def _orientation_candidates(
    cams: Sequence[Camera], full: Sequence[ImageFeatures], img: np.ndarray, raw: np.ndarray, tid: np.ndarray,
    points: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every keypoint at the location of every observation, with its orientation lifted to 3D.

    Args: as :func:`_orient_tracks`.

    Returns:
        ``(c_obs, c_raw, c_img, kps, X, D)`` per candidate: (C,) observation it belongs to (sorted),
        (C,) keypoint index, (C,) image index, (C, 4) float64 keypoint, (C, 3) track point and
        (C, 3) 3D direction of its orientation (see :func:`_orient_tracks`).
    """
    c_obs, c_raw = [], []
    for o, (i, r) in enumerate(zip(img, raw)):
        f = full[i]
        same = np.flatnonzero(f.location == f.location[r])
        c_obs.append(np.full(len(same), o))
        c_raw.append(same)
    c_obs_a = np.concatenate(c_obs)
    c_raw_a = np.concatenate(c_raw)
    c_img = img[c_obs_a]
    kps = np.stack([full[i].keypoints[r] for i, r in zip(c_img, c_raw_a)]).astype(np.float64)
    X = points[tid[c_obs_a]]
    D = np.empty((len(kps), 3))
    for i in np.unique(c_img):
        sel = np.flatnonzero(c_img == i)
        cam = cams[i]
        _, depth = cam.project(X[sel])
        ang = np.radians(kps[sel, 3])
        q = kps[sel, :2] + kps[sel, 2:3] * np.stack([np.cos(ang), np.sin(ang)], axis=1)
        D[sel] = cam.backproject(q, depth) - cam.backproject(kps[sel, :2], depth)
    return c_obs_a, c_raw_a, c_img, kps, X, D


def _agreeing_members(
    cams: Sequence[Camera], c_img: np.ndarray, kps: np.ndarray, X: np.ndarray, D: np.ndarray, obs_of: np.ndarray,
    first: int, last: int, tol_deg: float,
) -> list[int]:
    """The candidates one track keeps: one per observation, all pairwise orientation-consistent.

    Args:
        cams: cameras by image index.
        c_img, kps, X, D: image, keypoint, point and 3D direction of the track's candidates.
        obs_of: (n,) observation of each of the track's candidates.
        first, last: the track's observations are ``first..last-1``.
        tol_deg: angular tolerance in degrees.

    Returns:
        Indices into the track's candidates (empty or at least 2 of them).
    """
    n = len(obs_of)
    # pred[a, b]: angle of candidate a's direction seen in candidate b's view.
    pred = np.empty((n, n))
    for b in range(n):
        cam = cams[c_img[b]]
        p0, _ = cam.project(X)
        p1, _ = cam.project(X + D)
        w = p1 - p0
        pred[:, b] = np.degrees(np.arctan2(w[:, 1], w[:, 0]))
    diff = angle_diff(pred, kps[:, 3][None, :])
    agree = (diff <= tol_deg) & (diff.T <= tol_deg) & (obs_of[:, None] != obs_of[None, :])
    # Seed: the candidate agreeing with candidates in the most other observations.
    support = np.array([len(np.unique(obs_of[agree[a]])) for a in range(n)])
    seed = int(np.argmax(support))
    chosen = {int(obs_of[seed]): seed}
    for o in range(first, last):
        if o in chosen:
            continue
        cand = np.flatnonzero((obs_of == o) & agree[seed])
        if len(cand):
            chosen[o] = int(cand[np.argmin(diff[seed, cand])])
    members = list(chosen.values())
    while len(members) > 1:
        sub = agree[np.ix_(members, members)] | np.eye(len(members), dtype=bool)
        bad = (~sub).sum(axis=1)
        if bad.max() == 0:
            break
        members.pop(int(np.argmax(bad)))
    return members if len(members) >= 2 else []


def _orient_tracks(
    cams: Sequence[Camera],
    full: Sequence[ImageFeatures],
    img: np.ndarray,
    raw: np.ndarray,
    tid: np.ndarray,
    points: np.ndarray,
    tol_deg: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Choose, per observation, the detected orientation that agrees across the track's views.

    Each orientation ``a`` of a keypoint at ``p`` (size ``s``) in view ``v`` is lifted to a 3D
    direction ``D`` (``p + s (cos a, sin a)`` back-projected at the point's depth, assuming a
    surface facing the camera); two orientations in views ``v``, ``w`` agree when ``D_v``
    projects into ``w`` within ``tol_deg`` of ``w``'s angle, and vice versa. Per track, the
    candidate agreeing with most views is the seed; each view takes its candidate closest to
    the seed's prediction; views then disagreeing with any other chosen view are removed, worst
    first.

    Args:
        cams: cameras by image index.
        full: features (all orientations) by image index.
        img: (N,) image index of each observation.
        raw: (N,) keypoint index (a representative of the location) of each observation.
        tid: (N,) track id, grouped.
        points: (T, 3) track points.
        tol_deg: angular tolerance in degrees.

    Returns:
        ``(raw, ok)``: (N,) the chosen keypoint per observation and (N,) bool whether the
        observation is orientation-consistent with its track.
    """
    c_obs, c_raw, c_img, kps, X, D = _orientation_candidates(cams, full, img, raw, tid, points)
    new_raw = raw.copy()
    ok = np.zeros(len(raw), bool)
    starts = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1]])
    ends = np.r_[starts[1:], len(tid)]
    for s, e, cs, ce in zip(starts, ends, np.searchsorted(c_obs, starts), np.searchsorted(c_obs, ends)):
        t = slice(cs, ce)
        for m in _agreeing_members(cams, c_img[t], kps[t], X[t], D[t], c_obs[t], s, e, tol_deg):
            o = int(c_obs[cs + m])
            new_raw[o] = c_raw[cs + m]
            ok[o] = True
    return new_raw, ok


def _clean_tracks(
    comp: np.ndarray,
    img: np.ndarray,
    kp: np.ndarray,
    cams: Sequence[Camera],
    fl: Sequence[ImageFeatures],
    config: TrackConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate every component from all its views; drop the worst observation until all agree.

    Args:
        comp: (N,) component id of each observation, sorted, 0..C-1 (gaps allowed).
        img: (N,) image index of each observation.
        kp: (N,) keypoint index of each observation.
        cams: cameras by image index.
        fl: features by image index.
        config: thresholds (``reprojection_px``, ``size_ratio``, ``min_track_length``).

    Returns:
        ``(X, keep)``: (C, 3) float64 points (NaN where the component failed) and (N,) bool
        observations kept.
    """
    n_comp = int(comp.max()) + 1 if len(comp) else 0
    X = np.full((n_comp, 3), np.nan)
    keep = np.ones(len(comp), bool)
    done = np.zeros(n_comp, bool)
    P = np.stack([c.P for c in cams])
    uv_all = np.stack([fl[a].keypoints[b, :2] for a, b in zip(img, kp)]).astype(np.float64) if len(comp) else np.zeros((0, 2))
    size_all = np.array([fl[a].keypoints[b, 2] for a, b in zip(img, kp)], dtype=np.float64)
    focal = np.array([c.focal for c in cams])
    Z = np.stack([np.r_[c.R[2], c.t[2]] for c in cams])  # depth row of [R | t]
    logr = math.log(config.size_ratio)
    while True:
        counts = np.bincount(comp[keep], minlength=n_comp)
        active = (~done) & (counts >= config.min_track_length)
        if not active.any():
            break
        for L in np.unique(counts[active]):
            tids = np.flatnonzero(active & (counts == L))
            obs = np.flatnonzero(keep & np.isin(comp, tids))
            obs = obs[np.argsort(comp[obs], kind="stable")].reshape(len(tids), L)
            Xt = triangulate(P[img[obs]], uv_all[obs])  # (T, 3)
            Xh = np.concatenate([Xt, np.ones((len(Xt), 1))], axis=1)
            proj = np.einsum("tlij,tj->tli", P[img[obs]], Xh)
            depth = np.einsum("tlj,tj->tl", Z[img[obs]], Xh)
            with np.errstate(divide="ignore", invalid="ignore"):
                err = np.linalg.norm(proj[..., :2] / proj[..., 2:3] - uv_all[obs], axis=2)
                phys = size_all[obs] * depth / focal[img[obs]]
                med = np.median(phys, axis=1, keepdims=True)
                size_bad = ~(np.abs(np.log(phys / med)) <= logr)
            err[~(depth > 0) | ~np.isfinite(err) | size_bad] = np.inf
            ok_all = (err <= config.reprojection_px).all(axis=1) & np.isfinite(Xt).all(axis=1)
            X[tids[ok_all]] = Xt[ok_all]
            done[tids[ok_all]] = True
            bad = np.flatnonzero(~ok_all)
            if len(bad):
                e = np.where(np.isfinite(err[bad]), err[bad], 1e30)
                keep[obs[bad, np.argmax(e, axis=1)]] = False
    return X, keep


@dataclass(frozen=True)
class PairSetConfig:
    """How pairs are drawn from tracks.

    Attributes:
        tracks: track-building thresholds.
        max_positives_per_track: at most this many view pairs of one track become positives
            (drawn at random when the track has more).
        hard_exclusion_px: a hard-negative keypoint must lie further than this from where the
            positive's 3D point projects in the partner image.
        seed: seed of every random draw.
    """

    tracks: TrackConfig = TrackConfig()
    max_positives_per_track: int = 6
    hard_exclusion_px: float = 8.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_positives_per_track < 1:
            raise ValueError(f"max_positives_per_track (--positives-per-track) must be >= 1, got {self.max_positives_per_track}")
        if self.hard_exclusion_px <= self.tracks.reprojection_px:
            raise ValueError(f"reprojection_px ({self.tracks.reprojection_px} px, --reprojection-px) must be below "
                             f"hard_exclusion_px ({self.hard_exclusion_px} px: hard negatives lie further than that)")


@dataclass
class PairSet:
    """Observations (one per patch) and labelled pairs of them.

    Attributes:
        image_index: (N,) int32 image of each observation (index into ``names``).
        keypoint_index: (N,) int32 keypoint index in that image's features.
        track_id: (N,) int32 track, -1 for hard-negative keypoints outside every track.
        keypoints: (N, 4) float32 ``[x, y, size, angle_deg]``.
        descriptors: (N, 128) float32 SIFT descriptors.
        pairs_random: (M, 3) int64 ``[i, j, label]``, half positive, negatives from two tracks.
        pairs_hard: (M', 3) int64 ``[i, j, label]``, half positive, hard negatives.
        points3d: (T, 3) float64 track points.
        names: image names.
    """

    image_index: np.ndarray
    keypoint_index: np.ndarray
    track_id: np.ndarray
    keypoints: np.ndarray
    descriptors: np.ndarray
    pairs_random: np.ndarray
    pairs_hard: np.ndarray
    points3d: np.ndarray
    names: list[str]


def _positive_pairs(tid: np.ndarray, max_per_track: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``max_per_track`` view pairs of each track (drawn when it has more), each in random order.

    Args:
        tid: (N,) track id of each observation, grouped.
        max_per_track: positives per track at most.
        rng: the generator of the draws.

    Returns:
        (P, 2) int64 observation pairs.
    """
    starts = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1]])
    ends = np.r_[starts[1:], len(tid)]
    pos = []
    for s, e in zip(starts, ends):
        a, b = np.triu_indices(e - s, 1)
        if len(a) > max_per_track:
            sel = rng.choice(len(a), max_per_track, replace=False)
            a, b = a[np.sort(sel)], b[np.sort(sel)]
        pos.append(np.stack([a + s, b + s], axis=1))
    pos_arr = np.concatenate(pos).astype(np.int64)
    flip = rng.random(len(pos_arr)) < 0.5  # which view is first carries no information
    pos_arr[flip] = pos_arr[flip][:, ::-1]
    return pos_arr


def _random_negative_pairs(tid: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) int64 pairs of observations of two different tracks, drawn uniformly (``tid``: (N,) track ids)."""
    neg = np.zeros((0, 2), np.int64)
    while len(neg) < n:
        need = n - len(neg)
        cand = rng.integers(0, len(tid), size=(need * 2, 2))
        cand = cand[tid[cand[:, 0]] != tid[cand[:, 1]]]
        neg = np.concatenate([neg, cand[:need]])
    return neg


def _hard_negative_pairs(
    scene: Scene, fl: Sequence[ImageFeatures], tracks: Tracks, pos: np.ndarray, config: PairSetConfig,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """For each positive ``(a, b)``, the keypoint of ``b``'s image nearest to ``a`` by SIFT
    descriptor that is neither ``b`` nor within ``hard_exclusion_px`` of the projected track point.

    Args:
        scene: the scene (cameras).
        fl: features by image index.
        tracks: the tracks (observations ``0..len(tracks)-1``).
        pos: (P, 2) int64 positive observation pairs.
        config: ``hard_exclusion_px``.

    Returns:
        ``(hard_pos, hard_neg, extra)``: (H, 2) int64 positives that have a hard negative, (H, 2)
        int64 ``(a, h)`` hard negatives, and the ``(image, keypoint)`` of the new observations
        ``h >= len(tracks)`` (keypoints outside every track), in their order.
    """
    img, kpi, tid = tracks.image_index, tracks.keypoint_index, tracks.track_id
    lookup = {(int(a), int(b)): o for o, (a, b) in enumerate(zip(img, kpi))}
    extra: list[tuple[int, int]] = []
    hard_pos, hard_neg = [], []
    by_pair: dict[tuple[int, int], list[int]] = {}
    for p, (a, b) in enumerate(pos):
        by_pair.setdefault((int(img[a]), int(img[b])), []).append(p)
    for (ia, ib), plist in sorted(by_pair.items()):
        plist = np.asarray(plist)
        a_obs = pos[plist, 0]
        b_obs = pos[plist, 1]
        da = fl[ia].descriptors[kpi[a_obs]]
        db = fl[ib].descriptors
        d2 = (da**2).sum(1)[:, None] + (db**2).sum(1)[None] - 2.0 * da @ db.T
        proj, _ = scene.cameras[tracks.names[ib]].project(tracks.points3d[tid[a_obs]])
        near = np.linalg.norm(fl[ib].keypoints[None, :, :2] - proj[:, None, :], axis=2)
        d2[near <= config.hard_exclusion_px] = np.inf
        d2[np.arange(len(plist)), kpi[b_obs]] = np.inf
        best = np.argmin(d2, axis=1)
        valid = np.isfinite(d2[np.arange(len(plist)), best])
        for p, a, h, v in zip(plist, a_obs, best, valid):
            if not v:
                continue
            key = (ib, int(h))
            o = lookup.get(key)
            if o is None:
                o = len(tid) + len(extra)
                lookup[key] = o
                extra.append(key)
            hard_pos.append(pos[p])
            hard_neg.append((a, o))
    return np.asarray(hard_pos, np.int64).reshape(-1, 2), np.asarray(hard_neg, np.int64).reshape(-1, 2), extra


def _labelled(pos: np.ndarray, neg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(P + N, 3) int64 ``[i, j, label]`` rows of positives (label 1) and negatives (0), shuffled."""
    arr = np.concatenate([np.c_[pos, np.ones(len(pos), np.int64)], np.c_[neg, np.zeros(len(neg), np.int64)]]).astype(np.int64)
    return arr[rng.permutation(len(arr))]


def build_pair_set(
    scene: Scene, feats: dict[str, ImageFeatures], tracks: Tracks, config: PairSetConfig = PairSetConfig()
) -> PairSet:
    """Draw balanced positive / negative pairs from tracks.

    Positives: up to ``max_positives_per_track`` pairs of views of one track. ``pairs_random``
    has as many negatives as positives, each pairing observations of two different tracks.
    ``pairs_hard`` keeps the positives ``(a, b)`` that have a hard negative and adds, for each,
    ``(a, h)`` where ``h`` is the keypoint of ``b``'s image nearest to ``a`` by SIFT descriptor
    that is neither ``b`` nor within ``hard_exclusion_px`` of the projected track point.

    Args:
        scene: the scene (cameras).
        feats: features per image name.
        tracks: tracks from :func:`build_tracks`.
        config: sampling configuration.

    Returns:
        The :class:`PairSet`; observations ``0..len(tracks)-1`` are the track observations in
        order, the hard-negative keypoints that belong to no track follow with ``track_id == -1``.

    Raises:
        ValueError: if there are fewer than two tracks (no random negative can be drawn).
    """
    if tracks.num_tracks < 2:
        raise ValueError(f"{scene.root}: {tracks.num_tracks} track(s); random negatives need at least 2 tracks")
    rng = np.random.default_rng(config.seed)
    fl = [feats[n] for n in tracks.names]
    pos = _positive_pairs(tracks.track_id, config.max_positives_per_track, rng)
    neg = _random_negative_pairs(tracks.track_id, len(pos), rng)
    hard_pos, hard_neg, extra = _hard_negative_pairs(scene, fl, tracks, pos, config)
    img, kpi, tid = tracks.image_index.copy(), tracks.keypoint_index.copy(), tracks.track_id.copy()
    if extra:
        ex = np.asarray(extra, dtype=np.int64)
        img = np.concatenate([img, ex[:, 0]]).astype(np.int32)
        kpi = np.concatenate([kpi, ex[:, 1]]).astype(np.int32)
        tid = np.concatenate([tid, np.full(len(ex), -1)]).astype(np.int32)
    # The anchor of a hard negative is the one from the positive: put it first or second at random,
    # so that order carries no label information.
    swap = rng.random(len(hard_neg)) < 0.5
    hard_neg[swap] = hard_neg[swap][:, ::-1]
    return PairSet(
        image_index=img,
        keypoint_index=kpi,
        track_id=tid,
        keypoints=np.stack([fl[a].keypoints[b] for a, b in zip(img, kpi)]).astype(np.float32),
        descriptors=np.stack([fl[a].descriptors[b] for a, b in zip(img, kpi)]).astype(np.float32),
        pairs_random=_labelled(pos, neg, rng),
        pairs_hard=_labelled(hard_pos, hard_neg, rng),
        points3d=tracks.points3d,
        names=list(tracks.names),
    )
