"""Checks that a mapped model is right before it is reported.

COLMAP's incremental mapper, and its fallbacks with relaxed settings more so, can register images
at wrong poses on texture-poor or repetitive scenes; a smaller right model is worth more than a
larger wrong one. :func:`check_model` deregisters, in place, every image that

* belongs to a camera whose intrinsics ran away, alone (:func:`~patchmatch.colmap.mapping.degenerate_cameras`)
  or apart from the other cameras of its prior (:func:`~patchmatch.colmap.mapping.prior_group_apart`:
  per-image focal lengths traded against the poses, which every two-view geometry then agrees with);
  the mapping passes these cameras in;
* is not linked to the largest group of registered images by pairs that agree with the model:
  for each verified image pair with both images registered, the model's relative pose and cameras
  give an essential matrix; a two-view inlier *agrees* when its Sampson distance to it is below
  :data:`AGREE_PX` pixels, and a pair agrees when at least :data:`MIN_AGREEING_SHARE` of its
  inliers (and :data:`MIN_AGREEING_INLIERS`) do and, for pairs with :data:`MIN_INLIERS_FOR_ROTATION`
  inliers, the relative rotation of its own two-view geometry is within
  :data:`MAX_ROTATION_ERROR_DEG` of the model's. Repetitive scenes give verified pairs with a
  wrong geometry (a third of castle-P19's courtyard pairs), so an image is not judged by every
  pair: the agreeing pairs link the images, and only the largest linked group stays;
* observes fewer than :data:`MIN_WELL_TRIANGULATED` points triangulated at
  :data:`MIN_TRI_ANGLE_DEG` or more (its depth is unconstrained).

An image yawed along horizontal epipolar lines keeps its Sampson distances small, so rotations of
a few degrees about that axis can pass the Sampson test; the rotation test catches them on pairs
with enough inliers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pycolmap

logger = logging.getLogger(__name__)

#: Sampson distance (pixels) under which a two-view inlier agrees with the model (COLMAP's 4 px verification error).
AGREE_PX = 4.0
#: Share of a pair's inliers that must agree with the model for the pair to agree.
MIN_AGREEING_SHARE = 0.5
#: Agreeing inliers a pair needs to link its two images (COLMAP's 15 inliers of a verified pair).
MIN_AGREEING_INLIERS = 15
#: Relative rotation error (degrees) between the model and a pair's own two-view pose beyond which they disagree.
MAX_ROTATION_ERROR_DEG = 10.0
#: Inliers from which a pair's own relative rotation is reliable enough to compare (fewer: 3-35° of noise seen).
MIN_INLIERS_FOR_ROTATION = 100
#: Triangulation angle (degrees) that makes a 3D point constrain depth (COLMAP's filter: 1.5°).
MIN_TRI_ANGLE_DEG = 1.5
#: Points triangulated at that angle an image must observe (COLMAP registers from 30 2D-3D inliers; half of that).
MIN_WELL_TRIANGULATED = 15


@dataclass
class ModelCheck:
    """What :func:`check_model` decided.

    Attributes:
        rejected: ``{image name: reason}`` of the images deregistered.
        pairs_checked: verified pairs with both images registered.
        pairs_agreeing: of those, the pairs that agree with the model.
    """

    rejected: dict[str, str] = field(default_factory=dict)
    pairs_checked: int = 0
    pairs_agreeing: int = 0


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])


def _relative_pose(rec: pycolmap.Reconstruction, id1: int, id2: int) -> pycolmap.Rigid3d:
    return rec.images[id2].cam_from_world() * rec.images[id1].cam_from_world().inverse()


def sampson_px(rec: pycolmap.Reconstruction, id1: int, id2: int, xy1: np.ndarray, xy2: np.ndarray) -> np.ndarray:
    """Sampson distances of matched keypoints to the model's epipolar geometry of two images.

    Args:
        rec: the model; ``id1``, ``id2`` registered image ids.
        xy1, xy2: (N, 2) keypoint positions in the two images (COLMAP pixel convention).

    Returns:
        (N,) float64 distances in pixels (normalised-plane distance times the mean focal length).
    """
    im1, im2 = rec.images[id1], rec.images[id2]
    cam1, cam2 = rec.cameras[im1.camera_id], rec.cameras[im2.camera_id]
    rel = _relative_pose(rec, id1, id2)
    essential = _skew(np.asarray(rel.translation)) @ np.asarray(rel.rotation.matrix())
    h1 = np.c_[cam1.cam_from_img(xy1.astype(np.float64)), np.ones(len(xy1))]
    h2 = np.c_[cam2.cam_from_img(xy2.astype(np.float64)), np.ones(len(xy2))]
    e1, e2 = h1 @ essential.T, h2 @ essential
    denominator = e1[:, 0] ** 2 + e1[:, 1] ** 2 + e2[:, 0] ** 2 + e2[:, 1] ** 2
    distance = np.abs(np.sum(h2 * e1, axis=1)) / np.sqrt(np.maximum(denominator, 1e-300))
    return distance * 0.5 * (cam1.mean_focal_length() + cam2.mean_focal_length())


def relative_rotation_error(rec: pycolmap.Reconstruction, id1: int, id2: int, geometry: pycolmap.TwoViewGeometry,
                            xy1: np.ndarray, xy2: np.ndarray) -> float:  # fmt: skip
    """Degrees between the model's relative rotation of ``id1``, ``id2`` and the one their two-view
    geometry gives, decomposed with the model's cameras from its inliers ``xy1``, ``xy2`` (N, 2);
    infinity when it cannot be decomposed. ``geometry``'s relative pose is overwritten."""
    im1, im2 = rec.images[id1], rec.images[id2]
    ok = pycolmap.estimate_two_view_geometry_pose(rec.cameras[im1.camera_id], xy1.astype(np.float64),
                                                  rec.cameras[im2.camera_id], xy2.astype(np.float64), geometry)  # fmt: skip
    if not ok:
        return float("inf")
    model = np.asarray(_relative_pose(rec, id1, id2).rotation.matrix())
    cosine = (np.trace(model.T @ np.asarray(geometry.cam2_from_cam1.rotation.matrix())) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def _pair_agrees(rec: pycolmap.Reconstruction, id1: int, id2: int, geometry: pycolmap.TwoViewGeometry,
                 xy1: np.ndarray, xy2: np.ndarray) -> bool:  # fmt: skip
    agree = int(np.sum(sampson_px(rec, id1, id2, xy1, xy2) < AGREE_PX))
    if agree < MIN_AGREEING_INLIERS or agree < MIN_AGREEING_SHARE * len(xy1):
        return False
    return len(xy1) < MIN_INLIERS_FOR_ROTATION or \
        relative_rotation_error(rec, id1, id2, geometry, xy1, xy2) <= MAX_ROTATION_ERROR_DEG


def agreeing_pairs(rec: pycolmap.Reconstruction, db: pycolmap.Database) -> tuple[list[tuple[int, int]], int]:
    """The verified pairs of registered images that agree with the model (module doc), and how
    many pairs had both images registered."""
    registered = set(rec.reg_image_ids())
    pair_ids, geometries = db.read_two_view_geometries()
    keypoints: dict[int, np.ndarray] = {}
    agreeing, checked = [], 0
    for pair_id, geometry in zip(pair_ids, geometries):
        id1, id2 = pycolmap.pair_id_to_image_pair(pair_id)
        inliers = np.asarray(geometry.inlier_matches).reshape(-1, 2)
        if id1 not in registered or id2 not in registered or len(inliers) == 0:
            continue
        checked += 1
        for i in (id1, id2):
            if i not in keypoints:
                keypoints[i] = np.asarray(db.read_keypoints(i))[:, :2]
        if _pair_agrees(rec, id1, id2, geometry, keypoints[id1][inliers[:, 0]], keypoints[id2][inliers[:, 1]]):
            agreeing.append((id1, id2))
    return agreeing, checked


def linked_groups(nodes: set[int], edges: list[tuple[int, int]]) -> list[set[int]]:
    """The connected components of ``nodes`` under ``edges`` (edges to other nodes ignored),
    largest first (on a tie, the one holding the smallest id first)."""
    parent = {n: n for n in nodes}

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in edges:
        if a in parent and b in parent:
            parent[root(a)] = root(b)
    groups: dict[int, set[int]] = {}
    for n in sorted(nodes):
        groups.setdefault(root(n), set()).add(n)
    return sorted(groups.values(), key=lambda g: (-len(g), min(g)))


def largest_linked_group(nodes: set[int], edges: list[tuple[int, int]]) -> set[int]:
    """The largest connected component of ``nodes`` under ``edges`` (on a tie, the one holding the
    smallest id; empty for no nodes)."""
    groups = linked_groups(nodes, edges)
    return groups[0] if groups else set()


def well_triangulated_counts(rec: pycolmap.Reconstruction) -> dict[int, int]:
    """Registered image id → how many of its 3D points another registered image sees at an angle of
    :data:`MIN_TRI_ANGLE_DEG` or more."""
    centers = {i: np.asarray(rec.images[i].projection_center()) for i in rec.reg_image_ids()}
    counts = dict.fromkeys(centers, 0)
    cos_min = np.cos(np.radians(MIN_TRI_ANGLE_DEG))
    for point in rec.points3D.values():
        ids = sorted({el.image_id for el in point.track.elements if el.image_id in centers})
        if len(ids) < 2:
            continue
        rays = np.stack([centers[i] - np.asarray(point.xyz) for i in ids])
        rays /= np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-12)
        cosines = rays @ rays.T
        np.fill_diagonal(cosines, 1.0)
        for i, wide in zip(ids, (cosines < cos_min).any(axis=1)):
            counts[i] += int(wide)
    return counts


def check_model(
    rec: pycolmap.Reconstruction, database: str | os.PathLike, degenerate_cameras: Mapping[int, str] | None = None
) -> ModelCheck:
    """Deregisters, in place, the images of ``rec`` that the checks of the module doc reject.

    Args:
        rec: the mapped model; changed in place (rejected images deregistered, points seen by
            fewer than two registered images deleted).
        database: the COLMAP database it was mapped from (two-view geometries and keypoints).
        degenerate_cameras: camera id → why its intrinsics are implausible (degenerate, or its
            prior group ran apart); every image of such a camera is rejected.

    Returns:
        A :class:`ModelCheck` naming each rejected image with its reason.
    """
    result = ModelCheck()
    degenerate_cameras = degenerate_cameras or {}
    reasons: dict[int, str] = {}
    for i in rec.reg_image_ids():
        camera = rec.images[i].camera_id
        if camera in degenerate_cameras:
            reasons[i] = f"implausible intrinsics ({degenerate_cameras[camera]})"
    with pycolmap.Database.open(str(database)) as db:
        agreeing, result.pairs_checked = agreeing_pairs(rec, db)
    result.pairs_agreeing = len(agreeing)
    candidates = set(rec.reg_image_ids()) - set(reasons)
    kept = largest_linked_group(candidates, agreeing)
    for i in candidates - kept:
        reasons[i] = "pose disagrees with its verified two-view geometries"
    counts = well_triangulated_counts(rec)
    for i in kept:
        if counts.get(i, 0) < MIN_WELL_TRIANGULATED:
            reasons[i] = (f"{counts.get(i, 0)} of its points triangulated at >= {MIN_TRI_ANGLE_DEG:g}° "
                          f"(needs {MIN_WELL_TRIANGULATED})")  # fmt: skip
    for i, why in sorted(reasons.items()):
        result.rejected[rec.images[i].name] = why
        rec.deregister_frame(rec.images[i].frame_id)
    if reasons:
        drop_short_tracks(rec)
    return result


def drop_short_tracks(rec: pycolmap.Reconstruction) -> None:
    """Deletes the 3D points that fewer than two registered images observe (after a deregistration)."""
    registered = set(rec.reg_image_ids())
    for point_id, point in list(rec.points3D.items()):
        if len({el.image_id for el in point.track.elements if el.image_id in registered}) < 2:
            rec.delete_point3D(point_id)
