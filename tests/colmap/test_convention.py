"""The +0.5 pixel rule between OpenCV and COLMAP."""

from __future__ import annotations

import numpy as np

from patchmatch import colmap


def test_pixel_rule_round_trip():
    xy = np.array([[0.0, 0.0], [10.25, 3.5], [639.0, 479.0]], np.float32)
    np.testing.assert_array_equal(colmap.opencv_to_colmap(xy), xy + 0.5)
    np.testing.assert_array_equal(colmap.colmap_to_opencv(colmap.opencv_to_colmap(xy)), xy)
    assert colmap.opencv_to_colmap(xy).dtype == np.float32
    assert colmap.opencv_to_colmap(np.array([[1, 2]])).dtype == np.float64  # integers become float

