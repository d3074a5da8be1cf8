"""Reading images: the one place that knows image files.

Every image enters patchmatch as an 8-bit grayscale array in the frame COLMAP reads: the stored
pixel grid, EXIF orientation *not* applied (COLMAP's bitmap reader ignores it, so keypoints,
camera sizes and the images that COLMAP's undistorter or MVS read later agree), 16-bit data
scaled to 8 bits, colour and alpha dropped. ``apply_exif=True`` gives the displayed frame.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: File extensions recognised as images (lower case), as COLMAP's image reader accepts them.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and the problem."""


def list_images(root: str | os.PathLike) -> list[str]:
    """Lists the images below ``root``, recursively, named as COLMAP names them.

    Args:
        root: folder to search.

    Returns:
        Sorted POSIX paths relative to ``root`` (e.g. ``"sub/0001.jpg"``), image extensions only.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} does not exist or is not a directory.")
    names = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(names)


def _to_uint8_gray(image: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) uint8 grey image of a decoded file: colour and alpha dropped, 16-bit and float data scaled to 8 bits.

    Raises:
        ImageReadError: an unsupported number of channels or pixel type (``path`` named).
    """
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        elif channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif channels == 1:
            image = image[..., 0]
        else:
            raise ImageReadError(f"{path}: unsupported number of channels {channels}.")
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        finite = image[np.isfinite(image)]
        hi = float(finite.max()) if finite.size else 1.0
        scale = 255.0 if hi <= 1.0 else 255.0 / hi
        return np.clip(np.nan_to_num(image) * scale + 0.5, 0, 255).astype(np.uint8)
    raise ImageReadError(f"{path}: unsupported pixel type {image.dtype}.")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Returns ``(width, height)`` in pixels of an image in COLMAP's frame (full read)."""
    image, _ = read_gray(path)
    return image.shape[1], image.shape[0]


def _check_complete(data: np.ndarray, path: Path) -> None:
    """Rejects JPEG and PNG files cut short (OpenCV decodes them silently, half grey)."""
    head = data[:8].tobytes()
    tail = data[-4096:].tobytes()
    if head[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in tail:
        raise ImageReadError(f"{path}: truncated JPEG (no end-of-image marker).")
    if head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        raise ImageReadError(f"{path}: truncated PNG (no IEND chunk).")


def read_gray(
    path: str | os.PathLike, max_size: int | None = None, apply_exif: bool = False
) -> tuple[np.ndarray, float]:
    """Reads an image as 8-bit grayscale, in COLMAP's frame (EXIF orientation ignored by default).

    Args:
        path: image file (any format OpenCV reads; 8/16-bit, gray, RGB or RGBA).
        max_size: if given, images whose longer side exceeds it are downscaled (area
            interpolation) so the longer side equals ``max_size`` pixels.
        apply_exif: rotate/flip by the EXIF orientation tag (the displayed frame); False (the
            default) reads the stored pixel grid, the frame COLMAP uses.

    Returns:
        ``(image, scale)``: ``image`` is uint8 (H, W); ``scale`` is new size / original size
        (1.0 when not resized). Keypoints found in ``image`` map back to original pixels as
        ``(xy + 0.5) / scale - 0.5`` (OpenCV pixel-centre convention).

    Raises:
        ImageReadError: the file is missing, empty, truncated, not an image, or has no pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: file is empty.")
    data = np.fromfile(path, dtype=np.uint8)
    # IMREAD_ANYDEPTH keeps 16-bit data; IMREAD_ANYCOLOR keeps the channel layout; EXIF orientation
    # is applied unless IMREAD_IGNORE_ORIENTATION is set.
    _check_complete(data, path)
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
    if not apply_exif:
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as e:  # e.g. above OpenCV's 2^30-pixel decoding limit
        detail = str(e).strip().splitlines()[-1]
        raise ImageReadError(f"{path}: OpenCV cannot decode it ({detail}); very large images need "
                             "OPENCV_IO_MAX_IMAGE_PIXELS raised in the environment.") from e  # fmt: skip
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (unknown format or truncated data).")
    if image.size == 0 or min(image.shape[:2]) < 1:
        raise ImageReadError(f"{path}: image has no pixels.")
    image = _to_uint8_gray(image, path)
    scale = 1.0
    if max_size is not None and max(image.shape) > max_size:
        scale = max_size / float(max(image.shape))
        new_wh = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, new_wh, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image), scale
