"""Hand-crafted baselines scored on the same patches as the network.

- SIFT (Lowe, IJCV 2004): OpenCV's SIFT descriptor computed on each 64×64 patch with the
  keypoint at the patch centre and the size that makes the descriptor cover the whole patch
  (patch side = :data:`~patchmatch.patches.MAGNIFICATION` × size; for patches cut at that
  magnification this is the keypoint's own SIFT support, for others it sees the same pixels as the
  network), orientation 0 (the patches are already normalised). Score = −L2 distance.
- NCC: normalised cross-correlation of the raw pixels. Score in [−1, 1].

All scores: higher = more similar.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..patches import MAGNIFICATION, PATCH_SIZE


def sift_descriptors(patches: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """SIFT descriptors of patches.

    Args:
        patches: (N, 64, 64) uint8.

    Returns:
        (N, 128) float32 OpenCV SIFT descriptors.
    """
    sift = cv2.SIFT_create()
    n = len(patches)
    out = np.zeros((n, 128), np.float32)
    c = (PATCH_SIZE - 1) / 2.0
    size = PATCH_SIZE / MAGNIFICATION
    for s in range(0, n, chunk):
        # tile the chunk into one tall image: one keypoint per patch, computed in a single call
        tile = np.ascontiguousarray(patches[s : s + chunk]).reshape(-1, PATCH_SIZE)
        kps = [cv2.KeyPoint(c, c + PATCH_SIZE * i, size, 0.0) for i in range(min(chunk, n - s))]
        kps_out, desc = sift.compute(tile, kps)
        if len(kps_out) != len(kps):  # OpenCV drops nothing for interior points; guard anyway
            raise RuntimeError("OpenCV SIFT dropped keypoints on patches.")
        out[s : s + len(kps)] = desc
    return out


def sift_scores(patches0: np.ndarray, patches1: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """−L2 distance of SIFT descriptors for (M, 2) index pairs → (M,) float32."""
    d0 = sift_descriptors(patches0)
    d1 = d0 if patches1 is patches0 else sift_descriptors(patches1)
    return -np.linalg.norm(d0[pairs[:, 0]] - d1[pairs[:, 1]], axis=1).astype(np.float32)


def ncc_scores(patches0: np.ndarray, patches1: np.ndarray, pairs: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Normalised cross-correlation of raw pixels for (M, 2) index pairs → (M,) float32 in [−1, 1]."""

    def norm(p):
        x = p.reshape(len(p), -1).astype(np.float32)
        x -= x.mean(1, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)

    n0 = norm(patches0)
    n1 = n0 if patches1 is patches0 else norm(patches1)
    out = np.empty(len(pairs), np.float32)
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        out[s : s + len(p)] = np.einsum("ij,ij->i", n0[p[:, 0]], n1[p[:, 1]])
    return out
