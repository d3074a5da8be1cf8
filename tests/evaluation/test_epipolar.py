"""Correct matches against ground-truth epipolar geometry."""

from __future__ import annotations

import numpy as np
import pytest

from patchmatch.evaluation.epipolar import correct_matches, ground_truth_fundamental
from patchmatch.evaluation.pose import GroundTruthCamera


def _camera(t):
    K = np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
    return GroundTruthCamera(K, np.eye(3), np.asarray(t, float), 100, 80)


def test_a_match_is_correct_within_the_threshold_of_the_epipolar_line_in_both_images():
    c0, c1 = _camera([0, 0, 0]), _camera([-1, 0, 0])  # camera 1 one unit to the right: rows stay rows
    F = ground_truth_fundamental(c0, c1)
    xy0 = np.array([[60.0, 30], [60, 30], [60, 30]])
    xy1 = np.array([[20.0, 30], [20, 31.5], [20, 33]])  # on the line, 1.5 px and 3 px off
    matches = np.array([[0, 0], [1, 1], [2, 2]])
    assert correct_matches(F, xy0, xy1, matches).tolist() == [True, True, False]
    assert correct_matches(F, xy0, xy1, matches, threshold=1.0).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="centre"):
        ground_truth_fundamental(c0, c0)


def test_ground_truth_fundamental_agrees_with_a_projected_point():
    rng = np.random.default_rng(0)
    from patchmatch.evaluation.pose import nearest_rotation

    c0 = _camera([0.1, 0, 0])
    c1 = GroundTruthCamera(c0.K, nearest_rotation(np.eye(3) + 0.1 * rng.normal(size=(3, 3))), np.array([-1.0, 0.2, 0.1]), 100, 80)
    X = rng.normal(size=(20, 3)) + [0, 0, 6]
    project = lambda c: (lambda p: p[:, :2] / p[:, 2:])((X @ c.R.T + c.t) @ c.K.T)  # noqa: E731
    xy0, xy1 = project(c0), project(c1)
    assert correct_matches(ground_truth_fundamental(c0, c1), xy0, xy1, np.c_[np.arange(20), np.arange(20)], 1e-6).all()
    shuffled = np.c_[np.arange(20), np.roll(np.arange(20), 1)]
    assert correct_matches(ground_truth_fundamental(c0, c1), xy0, xy1, shuffled).mean() < 0.3
