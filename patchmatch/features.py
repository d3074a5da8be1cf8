"""SIFT keypoints and descriptors (OpenCV), the input of patch extraction and candidate search;
conversions between the pixels of an original image and of its downscaled working copy."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Features:
    """Keypoints and descriptors of one image.

    Attributes:
        keypoints: (N, 4) float32 ``[x, y, size, angle]`` in OpenCV's convention: pixel centres at
            integer coordinates, ``size`` the keypoint diameter in pixels (``cv2.KeyPoint.size``,
            2σ for SIFT), ``angle`` the orientation in degrees as OpenCV's SIFT reports it.
        descriptors: (N, 128) float32 SIFT descriptors (OpenCV's, unnormalised 0..255 range).
        scores: (N,) float32 detector response, sorted in decreasing order.
        image_size: (2,) int64 ``[width, height]`` of the image the keypoints were detected in.
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    scores: np.ndarray
    image_size: np.ndarray

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def xy(self) -> np.ndarray:
        """(N, 2) float32 keypoint positions in pixels (OpenCV convention)."""
        return self.keypoints[:, :2]

    def subset(self, index: np.ndarray) -> "Features":
        """Returns the features selected by ``index`` (bool mask or int indices)."""
        return Features(self.keypoints[index], self.descriptors[index], self.scores[index], self.image_size)


def keypoints_to_array(keypoints) -> np.ndarray:
    """Converts a list of ``cv2.KeyPoint`` (or an (N, ≥4) array) to (N, 4) float32 ``[x, y, size, angle]``.

    Raises:
        ValueError: the input is neither a keypoint list nor an array with at least 4 columns.
    """
    if isinstance(keypoints, np.ndarray) or hasattr(keypoints, "shape"):
        arr = np.asarray(keypoints, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] < 4:
            if arr.size == 0:
                return np.zeros((0, 4), np.float32)
            raise ValueError(f"keypoints must be (N, 4) [x, y, size, angle], got shape {arr.shape}.")
        return np.ascontiguousarray(arr[:, :4])
    kps = list(keypoints)
    if not kps:
        return np.zeros((0, 4), np.float32)
    if not all(isinstance(k, cv2.KeyPoint) for k in kps):
        raise ValueError("keypoints must be an (N, 4) array or a list of cv2.KeyPoint.")
    return np.array([[k.pt[0], k.pt[1], k.size, k.angle] for k in kps], dtype=np.float32)


def detect(
    image: np.ndarray,
    max_keypoints: int = 4096,
    contrast_threshold: float = 0.02,
    edge_threshold: float = 10.0,
) -> Features:
    """Detects SIFT keypoints and computes their descriptors (Lowe, IJCV 2004; OpenCV).

    Args:
        image: (H, W) uint8 grayscale image.
        max_keypoints: keep at most this many keypoints, the strongest by response.
        contrast_threshold: OpenCV SIFT contrast threshold (0.04 in Lowe's paper; lower finds more).
        edge_threshold: OpenCV SIFT edge threshold.

    Returns:
        :class:`Features`, sorted by decreasing response; N = 0 for a blank image.

    Raises:
        ValueError: ``image`` is not a 2-D uint8 array or ``max_keypoints`` < 1.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"image must be a (H, W) uint8 array, got {getattr(image, 'shape', type(image))}.")
    if max_keypoints < 1:
        raise ValueError(f"max_keypoints must be >= 1, got {max_keypoints}.")
    sift = cv2.SIFT_create(
        nfeatures=max_keypoints, contrastThreshold=contrast_threshold, edgeThreshold=edge_threshold
    )
    kps, desc = sift.detectAndCompute(image, None)
    size = np.array([image.shape[1], image.shape[0]], dtype=np.int64)
    if not kps:
        return Features(np.zeros((0, 4), np.float32), np.zeros((0, 128), np.float32), np.zeros(0, np.float32), size)
    keypoints = keypoints_to_array(kps)
    scores = np.array([k.response for k in kps], dtype=np.float32)
    order = np.argsort(-scores, kind="stable")[:max_keypoints]
    return Features(keypoints[order], desc[order].astype(np.float32), scores[order], size)


#: OpenCV SIFT contrast thresholds tried in turn until an image reaches its keypoint budget: 0.02
#: is COLMAP's default (its 0.0067 per scale layer); each step halves it, down to a floor below
#: which the extra keypoints are mostly sensor and JPEG noise.
CONTRAST_SCHEDULE = (0.02, 0.01, 0.005)


def detect_to_budget(
    image: np.ndarray, max_keypoints: int = 4096, schedule: tuple[float, ...] = CONTRAST_SCHEDULE
) -> Features:
    """:func:`detect` at the thresholds of ``schedule`` in turn, stopping at the first that yields
    ``max_keypoints``: where texture is poor (weak contrast, dark or blank backgrounds) an image
    still gets its budget, the strongest keypoints by response; a well-textured image costs one
    detection, as with :func:`detect` at ``schedule[0]``.

    Args:
        image: (H, W) uint8 grayscale image. max_keypoints: the budget.
        schedule: decreasing contrast thresholds; the last one is the floor.

    Returns:
        :class:`Features` of the last detection run, sorted by decreasing response.

    Raises:
        ValueError: see :func:`detect`; an empty ``schedule``.
    """
    if not schedule:
        raise ValueError("schedule needs at least one contrast threshold")
    for threshold in schedule:
        features = detect(image, max_keypoints, contrast_threshold=threshold)
        if len(features) >= max_keypoints:
            break
    return features


def axis_scales(working_shape: tuple[int, ...], original_size: np.ndarray) -> np.ndarray:
    """Per-axis ``[sx, sy]`` = working / original size (float64; rounding of the downscaled size
    makes them differ slightly).

    Args:
        working_shape: ``(H, W)`` of the downscaled image. original_size: ``[width, height]``.
    """
    h, w = working_shape[:2]
    return np.array([w / float(original_size[0]), h / float(original_size[1])])


def to_working(features: Features, scales: np.ndarray, working_shape: tuple[int, ...]) -> Features:
    """Keypoints in pixels of the original image → pixels of the downscaled one.

    ``scales`` is ``[sx, sy]`` (:func:`axis_scales`); pixel centres sit at integer coordinates,
    so ``x_work = (x + 0.5) * sx - 0.5``; sizes scale by the mean of ``sx`` and ``sy``.
    """
    if np.all(scales == 1.0):
        return features
    kps = features.keypoints.copy()
    kps[:, :2] = (kps[:, :2] + 0.5) * scales.astype(np.float32) - 0.5
    kps[:, 2] *= float(np.mean(scales))
    size = np.array([working_shape[1], working_shape[0]], np.int64)
    return Features(kps, features.descriptors, features.scores, size)


def to_original(features: Features, scales: np.ndarray, original_size: np.ndarray) -> Features:
    """Inverse of :func:`to_working`: downscaled-image pixels → original-image pixels."""
    kps = features.keypoints.copy()
    if not np.all(scales == 1.0):
        kps[:, :2] = (kps[:, :2] + 0.5) / scales.astype(np.float32) - 0.5
        kps[:, 2] /= float(np.mean(scales))
    return Features(kps, features.descriptors, features.scores, np.asarray(original_size, np.int64))
