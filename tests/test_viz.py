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


def test_draw_cameras_top_view_of_a_ring():
    from patchmatch.viz import draw_cameras

    poses = {}
    for k in range(8):  # cameras on a circle in the x-z plane, looking at the origin
        a = 2 * np.pi * k / 8
        c = np.array([3 * np.cos(a), 0.0, 3 * np.sin(a)])
        z = -c / np.linalg.norm(c)
        x = np.cross([0.0, 1.0, 0.0], z)
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(z, x), z])
        poses[f"{k}.jpg"] = (R, -R @ c)
    pts = np.random.default_rng(0).normal(scale=0.5, size=(500, 3))
    canvas = draw_cameras(poses, pts, size=400)
    assert canvas.shape == (400, 400, 3) and canvas.dtype == np.uint8
    red = (canvas[:, :, 2] > 150) & (canvas[:, :, 0] < 80) & (canvas[:, :, 1] < 80)
    ys, xs = np.nonzero(red)
    # the ring is seen from above: camera dots spread over both image axes around the centre
    assert xs.max() - xs.min() > 200 and ys.max() - ys.min() > 200
    assert abs(xs.mean() - 200) < 40 and abs(ys.mean() - 200) < 40
    with pytest.raises(ValueError, match="no camera"):
        draw_cameras({})
