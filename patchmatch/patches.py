"""Scale- and orientation-normalised 64×64 patches around keypoints.

A patch covers a square of side ``MAGNIFICATION × size`` pixels centred on the keypoint, where
``size`` is OpenCV's keypoint diameter (2σ for SIFT): with ``MAGNIFICATION = 6`` this is the
12σ support of the SIFT descriptor (4 × 4 cells of 3σ). Oriented patches are rotated so that
the keypoint's orientation points along the patch's +x axis; upright patches ignore it.
Sampling uses kornia's pyramid extraction (each patch read from the pyramid level matching its
scale, so large keypoints are not aliased); cells outside the image read the nearest border
pixel, so keypoints at the border give padded patches, never an error.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from kornia.feature import extract_patches_from_pyramid

from .features import keypoints_to_array

#: Side of a patch in pixels, as in the Brown dataset and Zagoruyko & Komodakis (CVPR 2015).
PATCH_SIZE = 64
#: Patch side / keypoint size (OpenCV diameter).
MAGNIFICATION = 6.0

_CHUNK = 8192  # patches per extraction call: bounds the memory of the sampling grid


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"image must be a (H, W) uint8 array, got {getattr(image, 'shape', type(image))}.")


def _sample(image: np.ndarray, centers: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Samples patches ``image[c + A u]`` for ``u`` in [-1, 1]^2.

    Args:
        image: (H, W) uint8.
        centers: (N, 2) float, pixel centres at integers.
        affine: (N, 2, 2) float, columns = image vectors of the patch's half x and y axes, in pixels.

    Returns:
        (N, 64, 64) uint8.
    """
    n = len(centers)
    out = np.empty((n, PATCH_SIZE, PATCH_SIZE), np.uint8)
    if n == 0:
        return out
    img = torch.from_numpy(image).float()[None, None]
    laf = np.concatenate([affine, centers[:, :, None]], axis=2).astype(np.float32)
    bad = ~np.isfinite(laf).all(axis=(1, 2))
    laf[bad] = 0.0
    with torch.inference_mode():
        for start in range(0, n, _CHUNK):
            chunk = torch.from_numpy(laf[start : start + _CHUNK])[None]
            patches = extract_patches_from_pyramid(img, chunk, PS=PATCH_SIZE)[0, :, 0]
            out[start : start + _CHUNK] = patches.round().clamp_(0, 255).to(torch.uint8).numpy()
    out[bad] = 0
    return out


def extract_patches(
    image: np.ndarray, keypoints, upright: bool = False, magnification: float = MAGNIFICATION
) -> np.ndarray:
    """Crops scale- and orientation-normalised patches around OpenCV keypoints.

    Args:
        image: (H, W) uint8 grayscale image.
        keypoints: (N, 4) ``[x, y, size, angle]`` (pixels, OpenCV convention: pixel centres at
            integer coordinates; ``size`` = diameter; ``angle`` in degrees as OpenCV's SIFT gives
            it), or a list of ``cv2.KeyPoint``.
        upright: ignore the orientation (patch axes = image axes), as COLMAP's upright SIFT.
        magnification: patch side in units of the keypoint size.

    Returns:
        (N, 64, 64) uint8 patches; patch row 0 is on the patch's -y side (the top when upright).

    Raises:
        ValueError: bad image or keypoint array.
    """
    _check_image(image)
    kps = keypoints_to_array(keypoints)
    half = 0.5 * magnification * np.maximum(kps[:, 2], 1e-3)
    # OpenCV's SIFT angle is measured in pixel coordinates (y down), i.e. clockwise on screen: the
    # orientation vector is (cos a, sin a); the patch +x axis is laid along it.
    theta = np.zeros(len(kps)) if upright else np.deg2rad(kps[:, 3].astype(np.float64))
    c, s = np.cos(theta), np.sin(theta)
    affine = np.empty((len(kps), 2, 2))
    affine[:, 0, 0], affine[:, 1, 0] = c * half, s * half  # patch x axis
    affine[:, 0, 1], affine[:, 1, 1] = -s * half, c * half  # patch y axis
    return _sample(image, kps[:, :2].astype(np.float64), affine)


def extract_patches_colmap(
    image: np.ndarray, keypoints: np.ndarray, magnification: float = MAGNIFICATION
) -> np.ndarray:
    """Crops patches around COLMAP keypoints, following their affine shape.

    Args:
        image: (H, W) uint8 grayscale image.
        keypoints: (N, 6) float ``[x, y, a11, a12, a21, a22]`` as stored in a COLMAP database
            (pixel centres at +0.5); the 2×2 affine shape maps the unit circle to the keypoint's
            σ-ellipse (``a11 = σ cos θ, a21 = σ sin θ``). (N, 4) ``[x, y, scale, orientation(rad)]``
            and (N, 2) (scale 1 px... upright) are accepted too, as COLMAP's other formats.
        magnification: patch side in units of 2σ (the OpenCV size), as :func:`extract_patches`.

    Returns:
        (N, 64, 64) uint8 patches.

    Raises:
        ValueError: bad image or keypoint array.
    """
    _check_image(image)
    kps = np.asarray(keypoints, dtype=np.float64)
    if kps.ndim != 2 or kps.shape[1] not in (2, 4, 6):
        if kps.size == 0:
            return np.zeros((0, PATCH_SIZE, PATCH_SIZE), np.uint8)
        raise ValueError(f"COLMAP keypoints must be (N, 2|4|6), got shape {kps.shape}.")
    from .colmap_convention import colmap_to_opencv

    centers = colmap_to_opencv(kps[:, :2])
    if kps.shape[1] == 6:
        shape = kps[:, 2:6].reshape(-1, 2, 2)
    elif kps.shape[1] == 4:
        sc, ori = kps[:, 2], kps[:, 3]
        shape = np.stack([np.stack([sc * np.cos(ori), -sc * np.sin(ori)], -1),
                          np.stack([sc * np.sin(ori), sc * np.cos(ori)], -1)], 1)
    else:
        shape = np.repeat(np.eye(2)[None], len(kps), 0)
    return _sample(image, centers, shape * magnification)
