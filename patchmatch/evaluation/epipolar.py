"""Correct matches against ground-truth cameras: both keypoints within a few pixels of each
other's epipolar line (``cameras.json``, pixel centres at integer coordinates as in OpenCV)."""

from __future__ import annotations

import numpy as np

from .pose import GroundTruthCamera

#: A match is correct when each keypoint is within this many pixels of the other's epipolar line.
CORRECT_PX = 2.0


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def ground_truth_fundamental(cam0: GroundTruthCamera, cam1: GroundTruthCamera) -> np.ndarray:
    """(3, 3) float64 ``F`` with ``x1ᵀ F x0 = 0`` for pixels of camera 0 and 1 (world → camera
    ``x = R X + t``).

    Raises:
        ValueError: the two cameras share their centre (no epipolar geometry).
    """
    R = cam1.R @ cam0.R.T
    t = cam1.t - R @ cam0.t
    if np.linalg.norm(t) < 1e-12 * max(1.0, float(np.linalg.norm(cam0.t))):
        raise ValueError("the two cameras share their centre: no epipolar geometry")
    F = np.linalg.inv(cam1.K).T @ _skew(t) @ R @ np.linalg.inv(cam0.K)
    return F / np.linalg.norm(F)


def epipolar_distances(F: np.ndarray, xy0: np.ndarray, xy1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances in pixels of ``xy1`` from the lines ``F x0`` and of ``xy0`` from ``Fᵀ x1``.

    Args:
        F: (3, 3) fundamental matrix. xy0, xy1: (K, 2) matched pixel positions.

    Returns:
        ``(d1 (K,), d0 (K,))`` float64: in image 1 and in image 0.
    """
    h0 = np.c_[np.asarray(xy0, np.float64), np.ones(len(xy0))]
    h1 = np.c_[np.asarray(xy1, np.float64), np.ones(len(xy1))]
    l1, l0 = h0 @ F.T, h1 @ F
    d1 = np.abs((l1 * h1).sum(1)) / np.maximum(np.hypot(l1[:, 0], l1[:, 1]), 1e-12)
    d0 = np.abs((l0 * h0).sum(1)) / np.maximum(np.hypot(l0[:, 0], l0[:, 1]), 1e-12)
    return d1, d0


def correct_matches(
    F: np.ndarray, xy0: np.ndarray, xy1: np.ndarray, matches: np.ndarray, threshold: float = CORRECT_PX
) -> np.ndarray:
    """(K,) bool: the matches ``[i0, i1]`` whose keypoints lie within ``threshold`` pixels of each
    other's ground-truth epipolar line, in both images.

    Args:
        F: ground-truth fundamental matrix (:func:`ground_truth_fundamental`).
        xy0: (N0, 2) keypoints of image 0. xy1: (N1, 2) keypoints of image 1. matches: (K, 2) int.
    """
    matches = np.asarray(matches, np.int64).reshape(-1, 2)
    d1, d0 = epipolar_distances(F, xy0[matches[:, 0]], xy1[matches[:, 1]])
    return (d1 <= threshold) & (d0 <= threshold)
