"""Scale- and orientation-normalised 64×64 patches around keypoints.

A patch covers a square of side ``MAGNIFICATION × size`` pixels centred on the keypoint, where
``size`` is OpenCV's keypoint diameter (2σ for SIFT): with ``MAGNIFICATION = 6`` this is the
12σ support of the SIFT descriptor (4 × 4 cells of 3σ). Oriented patches are rotated so that
the keypoint's orientation points along the patch's +x axis; upright patches ignore it.
Sampling follows kornia's pyramid extraction (``extract_patches_from_pyramid``: each patch read
from the pyramid level matching its scale, so large keypoints are not aliased), with OpenCV's
``warpAffine`` doing the bilinear sampling; cells outside the image read the nearest border
pixel, so keypoints at the border give padded patches, never an error.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from kornia.geometry.transform import pyrdown

from .features import keypoints_to_array

#: Side of a patch in pixels, as in the Brown dataset and Zagoruyko & Komodakis (CVPR 2015).
PATCH_SIZE = 64
#: Patch side / keypoint size (OpenCV diameter): the default, at which patch sets are cut and
#: networks trained unless told otherwise; a checkpoint records its own (``PatchScorer.magnification``).
MAGNIFICATION = 6.0


#: the magnifications accepted: below 1 the patch is smaller than the keypoint, above 32 it is mostly border
MIN_MAGNIFICATION, MAX_MAGNIFICATION = 1.0, 32.0


def check_magnification(magnification: float) -> float:
    """``magnification`` as a float.

    Raises:
        ValueError: not a number in [1, 32] (a patch side of 1 to 32 keypoint sizes; SIFT's support is 6).
    """
    try:
        if isinstance(magnification, (bool, str)):
            raise TypeError
        value = float(magnification)
    except (TypeError, ValueError):
        raise ValueError(f"magnification must be a number in [{MIN_MAGNIFICATION:g}, {MAX_MAGNIFICATION:g}] "
                         f"(patch side / keypoint size; SIFT's support is 6), got {magnification!r}.") from None
    if not MIN_MAGNIFICATION <= value <= MAX_MAGNIFICATION:  # NaN fails too
        raise ValueError(f"magnification must be a number in [{MIN_MAGNIFICATION:g}, {MAX_MAGNIFICATION:g}] "
                         f"(patch side / keypoint size; SIFT's support is 6), got {magnification!r}.")
    return value



def _check_image(image: np.ndarray) -> None:
    """Raises ValueError unless ``image`` is an (H, W) uint8 array."""
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        what = f"shape {image.shape}, dtype {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be a (H, W) uint8 array, got {what}.")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape}).")


def _pyramid_levels(image: np.ndarray, max_level: int) -> list[np.ndarray]:
    """Levels 0..max_level of kornia's image pyramid (``pyrdown``: 5×5 Gaussian, then half size),
    float32, built while the shorter side stays at least ``PATCH_SIZE`` (as kornia's
    ``extract_patches_from_pyramid`` does)."""
    levels = [image.astype(np.float32)]
    h, w = image.shape
    current = torch.from_numpy(levels[0])[None, None]
    for _ in range(max_level):
        if min(h, w) <= 2 or min(h // 2, w // 2) < PATCH_SIZE:
            break
        current = pyrdown(current)
        h, w = current.shape[-2:]
        levels.append(current[0, 0].numpy())
    return levels


def _sample(image: np.ndarray, centers: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Samples patches ``image[c + A u]`` for ``u`` in [-1, 1]^2.

    Cell ``(i, j)`` samples ``c + A (u_j, u_i)`` with ``u_k = (2k + 1) / 64 - 1``, bilinearly, from
    the pyramid level ``floor(log2(2 s / 64))`` for the scale ``s = sqrt|det A|`` (clamped to the
    levels that exist), cells outside the image reading the nearest border pixel: kornia's
    ``extract_patches_from_pyramid`` convention, on the same pyramid, with one OpenCV
    ``warpAffine`` per patch (much faster on a CPU; the same patches within OpenCV's 1/32 px
    interpolation grid, checked in the tests).

    Args:
        image: (H, W) uint8.
        centers: (N, 2) float, pixel centres at integers.
        affine: (N, 2, 2) float, columns = image vectors of the patch's half x and y axes, in pixels.

    Returns:
        (N, 64, 64) uint8; all zero for a keypoint with a non-finite value.
    """
    n = len(centers)
    out = np.zeros((n, PATCH_SIZE, PATCH_SIZE), np.uint8)
    if n == 0:
        return out
    centers = np.asarray(centers, np.float64)
    affine = np.asarray(affine, np.float64)
    good = np.isfinite(centers).all(1) & np.isfinite(affine).all((1, 2))
    scale = np.sqrt(np.abs(np.linalg.det(np.where(good[:, None, None], affine, 0.0))))
    with np.errstate(divide="ignore", invalid="ignore"):
        wanted = np.floor(np.log2(np.maximum(2.0 * scale / PATCH_SIZE, 1e-12)))
    h, w = image.shape
    levels = _pyramid_levels(image, int(np.clip(wanted[good].max(initial=0), 0, 64)))
    level = np.clip(wanted, 0, len(levels) - 1).astype(np.int64)
    # patch cell (j, i) -> level-0 pixel c + A ((2j+1)/PS - 1, (2i+1)/PS - 1): an affine map of (j, i)
    step = 2.0 / PATCH_SIZE
    offset = 1.0 / PATCH_SIZE - 1.0
    maps = np.concatenate([affine * step, (centers + offset * affine.sum(2))[:, :, None]], axis=2)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for lvl, pixels in enumerate(levels):
        # level pixel of a level-0 position: (x + 0.5) * w_l / w - 0.5 (align_corners=False frames)
        s = np.array([pixels.shape[1] / w, pixels.shape[0] / h])
        for k in np.flatnonzero(good & (level == lvl)):
            m = maps[k] * s[:, None]
            m[:, 2] += 0.5 * s - 0.5
            patch = cv2.warpAffine(pixels, m, (PATCH_SIZE, PATCH_SIZE), flags=flags, borderMode=cv2.BORDER_REPLICATE)
            out[k] = np.clip(np.rint(patch), 0, 255)
    return out


def _sample_kept(image: np.ndarray, centers: np.ndarray, affine: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """:func:`_sample` of the keypoints in ``keep``, an (N,) bool mask (all where None); the other patches are zero."""
    if keep is None:
        return _sample(image, centers, affine)
    keep = np.asarray(keep)
    if keep.shape != (len(centers),) or keep.dtype != bool:
        raise ValueError(f"keep must be a ({len(centers)},) bool mask, got {keep.dtype} of shape {keep.shape}.")
    out = np.zeros((len(centers), PATCH_SIZE, PATCH_SIZE), np.uint8)
    out[keep] = _sample(image, centers[keep], affine[keep])
    return out


def extract_patches(
    image: np.ndarray, keypoints, upright: bool = False, magnification: float = MAGNIFICATION,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """Crops scale- and orientation-normalised patches around OpenCV keypoints.

    Args:
        image: (H, W) uint8 grayscale image.
        keypoints: (N, 4) ``[x, y, size, angle]`` (pixels, OpenCV convention: pixel centres at
            integer coordinates; ``size`` = diameter; ``angle`` in degrees as OpenCV's SIFT gives
            it), or a list of ``cv2.KeyPoint``.
        upright: ignore the orientation (patch axes = image axes), as COLMAP's upright SIFT.
        magnification: patch side in units of the keypoint size.
        keep: (N,) bool: cut only these keypoints' patches, the others are left zero (the
            patches cut are the same as without it); None: all.

    Returns:
        (N, 64, 64) uint8 patches; patch row 0 is on the patch's -y side (the top when upright).

    Raises:
        ValueError: bad image (not 2-D uint8, or empty), keypoint array (wrong shape), magnification or
            ``keep`` mask. Degenerate keypoints never raise: a size <= 0 counts as 0.001 px, a non-finite
            one gives a zero patch.
    """
    _check_image(image)
    magnification = check_magnification(magnification)
    kps = keypoints_to_array(keypoints)
    half = 0.5 * magnification * np.maximum(kps[:, 2], 1e-3)
    # OpenCV's SIFT angle is measured in pixel coordinates (y down), i.e. clockwise on screen: the
    # orientation vector is (cos a, sin a); the patch +x axis is laid along it.
    theta = np.zeros(len(kps)) if upright else np.deg2rad(kps[:, 3].astype(np.float64))
    c, s = np.cos(theta), np.sin(theta)
    affine = np.empty((len(kps), 2, 2))
    affine[:, 0, 0], affine[:, 1, 0] = c * half, s * half  # patch x axis
    affine[:, 0, 1], affine[:, 1, 1] = -s * half, c * half  # patch y axis
    return _sample_kept(image, kps[:, :2].astype(np.float64), affine, keep)


def extract_patches_colmap(
    image: np.ndarray, keypoints: np.ndarray, magnification: float = MAGNIFICATION, keep: np.ndarray | None = None
) -> np.ndarray:
    """Crops patches around COLMAP keypoints, following their affine shape.

    Args:
        image: (H, W) uint8 grayscale image.
        keypoints: (N, 6) float ``[x, y, a11, a12, a21, a22]`` as stored in a COLMAP database
            (pixel centres at +0.5); the 2×2 affine shape maps the unit circle to the keypoint's
            σ-ellipse (``a11 = σ cos θ, a21 = σ sin θ``). (N, 4) ``[x, y, scale, orientation(rad)]``
            and (N, 2) (scale 1 px... upright) are accepted too, as COLMAP's other formats.
        magnification: patch side in units of 2σ (the OpenCV size), as :func:`extract_patches`.
        keep: (N,) bool: cut only these keypoints' patches, the others are left zero; None: all.

    Returns:
        (N, 64, 64) uint8 patches.

    Raises:
        ValueError: bad image, keypoint array, magnification or ``keep`` mask.
    """
    _check_image(image)
    magnification = check_magnification(magnification)
    kps = np.asarray(keypoints, dtype=np.float64)
    if kps.ndim != 2 or kps.shape[1] not in (2, 4, 6):
        if kps.size == 0:
            return np.zeros((0, PATCH_SIZE, PATCH_SIZE), np.uint8)
        raise ValueError(f"COLMAP keypoints must be (N, 2|4|6), got shape {kps.shape}.")
    from .colmap.convention import colmap_to_opencv

    centers = colmap_to_opencv(kps[:, :2])
    if kps.shape[1] == 6:
        shape = kps[:, 2:6].reshape(-1, 2, 2)
    elif kps.shape[1] == 4:
        sc, ori = kps[:, 2], kps[:, 3]
        shape = np.stack([np.stack([sc * np.cos(ori), -sc * np.sin(ori)], -1),
                          np.stack([sc * np.sin(ori), sc * np.cos(ori)], -1)], 1)
    else:
        shape = np.repeat(np.eye(2)[None], len(kps), 0)
    return _sample_kept(image, centers, shape * magnification, keep)
