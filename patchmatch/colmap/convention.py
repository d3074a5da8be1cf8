"""The pixel-origin rule between OpenCV/kornia and COLMAP, in one place.

OpenCV and kornia put pixel centres at integer coordinates (the top-left pixel's centre is
(0, 0)); COLMAP puts them at +0.5 (the top-left pixel's centre is (0.5, 0.5)). Every coordinate
written to or read from COLMAP goes through these two functions.
"""

from __future__ import annotations

import numpy as np


def opencv_to_colmap(xy: np.ndarray) -> np.ndarray:
    """(N, 2) pixel coordinates, OpenCV convention → COLMAP convention (adds 0.5). Same dtype."""
    xy = np.asarray(xy)
    return xy + np.asarray(0.5, dtype=xy.dtype if np.issubdtype(xy.dtype, np.floating) else np.float64)


def colmap_to_opencv(xy: np.ndarray) -> np.ndarray:
    """(N, 2) pixel coordinates, COLMAP convention → OpenCV convention (subtracts 0.5). Same dtype."""
    xy = np.asarray(xy)
    return xy - np.asarray(0.5, dtype=xy.dtype if np.issubdtype(xy.dtype, np.floating) else np.float64)
