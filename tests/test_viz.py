"""Tests of patchmatch.viz: canvas geometry, line colours, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from patchmatch.viz import INLIER_COLOR, OUTLIER_COLOR, draw_matches, save_png


def test_canvas_and_lines(tmp_path):
    im0 = np.full((100, 200), 128, np.uint8)
    im1 = np.full((50, 80), 128, np.uint8)  # scaled to height 100: 160 wide
    kp0 = np.array([[150.0, 80.0], [10.0, 90.0]])
    kp1 = np.array([[40.0, 40.0], [70.0, 10.0]])
    canvas = draw_matches(im0, im1, kp0, kp1, np.array([[0, 0], [1, 1]]), np.array([True, False]), title="t")
    assert canvas.shape == (100, 360, 3) and canvas.dtype == np.uint8
    # line ends at the keypoints; image 1 is scaled by 2 ((x + 0.5) * 2 - 0.5) and shifted by 200
    assert tuple(canvas[80, 150]) == INLIER_COLOR
    assert tuple(canvas[round(40.5 * 2 - 0.5), 200 + round(40.5 * 2 - 0.5)]) == INLIER_COLOR
    assert tuple(canvas[90, 10]) == OUTLIER_COLOR
    path = save_png(tmp_path / "sub" / "m.png", canvas)
    assert cv2.imread(str(path)).shape == canvas.shape


def test_subset_and_errors():
    im = np.zeros((40, 40), np.uint8)
    kp = np.random.default_rng(0).uniform(0, 39, (500, 2))
    matches = np.stack([np.arange(500), np.arange(500)], 1)
    canvas = draw_matches(im, im, kp, kp, matches, max_lines=10)
    assert canvas.shape == (40, 80, 3)
    with pytest.raises(ValueError, match="out of range"):
        draw_matches(im, im, kp[:3], kp[:3], np.array([[0, 3]]))
    with pytest.raises(ValueError, match="inlier flags"):
        draw_matches(im, im, kp, kp, matches[:2], np.array([True]))
    with pytest.raises(ValueError, match="uint8"):
        draw_matches(im.astype(np.float32), im, kp, kp, matches)
