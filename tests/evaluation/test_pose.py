"""Tests of patchmatch.evaluation.pose: relative errors, AUC, cameras.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from patchmatch.evaluation.pose import (
    evaluate_poses,
    load_cameras_json,
    pose_auc,
    relative_pose_errors,
    rotation_angle_deg,
    wrongly_registered,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(deg)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def test_rotation_angle():
    assert rotation_angle_deg(np.eye(3)) == 0.0
    assert rotation_angle_deg(_rot([0, 0, 1], 30)) == pytest.approx(30)
    assert rotation_angle_deg(_rot([1, 2, 3], 179.9)) == pytest.approx(179.9)
    assert rotation_angle_deg(_rot([1, 0, 0], 1e-4)) == pytest.approx(1e-4, rel=1e-6)  # arccos would give ~0.0012


def test_errors_are_gauge_free_and_count_failures():
    rng = np.random.default_rng(0)
    gt = {f"{i}.jpg": (_rot(rng.normal(size=3), rng.uniform(5, 60)), rng.normal(size=3)) for i in range(4)}
    # the same cameras in another world frame (rotation, scale, translation): zero error
    G, s, c = _rot([0.3, -1, 0.2], 40), 3.7, np.array([1.0, -2.0, 0.5])
    est = {n: (R @ G.T, s * t - s * (R @ G.T) @ c) for n, (R, t) in gt.items()}
    errors = relative_pose_errors(gt, est)
    assert len(errors) == 6
    for rot, trans in errors.values():
        assert rot < 1e-6 and trans < 1e-5
    # perturb one camera by 2 degrees: its 3 pairs show 2 degrees
    R, t = est["2.jpg"]
    est["2.jpg"] = (_rot([0, 1, 0], 2.0) @ R, t)
    rot = {k: v[0] for k, v in relative_pose_errors(gt, est).items()}
    assert rot[("0.jpg", "2.jpg")] == pytest.approx(2.0, abs=1e-6)
    assert rot[("0.jpg", "1.jpg")] < 1e-6
    # unregistered image: its pairs are failures
    del est["3.jpg"]
    rot = {k: v[0] for k, v in relative_pose_errors(gt, est).items()}
    assert math.isinf(rot[("1.jpg", "3.jpg")])
    with pytest.raises(KeyError, match="no ground truth"):
        relative_pose_errors(gt, est, ["0.jpg", "9.jpg"])


def test_an_image_turned_6_degrees_is_wrongly_registered():
    path = DATA / "scenes" / "entry-P10" / "cameras.json"
    if not path.is_file():
        pytest.skip(f"real data not found at {path} (see shared/data/README.md)")
    est = {n: (c.R, c.t) for n, c in load_cameras_json(path).items()}
    R, t = est["0004.jpg"]
    est["0004.jpg"] = (_rot([0, 1, 0], 6.0) @ R, t)  # turned 6 degrees about its centre
    report = evaluate_poses(est, path)
    assert report["wrongly_registered"] == ["0004.jpg"] and report["wrongly_registered_count"] == 1


def test_wrongly_registered_images_are_those_wrong_against_most_others():
    rng = np.random.default_rng(1)
    gt = {f"{i}.jpg": (_rot(rng.normal(size=3), rng.uniform(5, 60)), rng.normal(size=3)) for i in range(5)}
    est = dict(gt)
    assert wrongly_registered(relative_pose_errors(gt, est)) == []
    R, t = est["1.jpg"]
    est["1.jpg"] = (_rot([1, 0, 0], 5.5) @ R, t)
    assert wrongly_registered(relative_pose_errors(gt, est)) == ["1.jpg"]
    est["1.jpg"] = (_rot([1, 0, 0], 4.5) @ R, t)  # within 5 degrees: not wrong
    assert wrongly_registered(relative_pose_errors(gt, est)) == []
    # two wrong of five: each wrong against 4 of 4 others, the right ones against 2 of 4 (not most)
    est["1.jpg"] = (_rot([1, 0, 0], 30) @ R, t)
    R3, t3 = est["3.jpg"]
    est["3.jpg"] = (_rot([0, 0, 1], 30) @ R3, t3)
    del est["4.jpg"]  # unregistered: ignored; the right ones now wrong against 2 of 3 others
    assert wrongly_registered(relative_pose_errors(gt, est)) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert wrongly_registered(relative_pose_errors(gt, est), max_error_deg=90) == []


def test_auc_hand_computed():
    # errors 0.25 and inf: recall 0.5 reached at 0.25 deg
    # AUC@0.5 = (area of triangle 0..0.25 up to 0.5 = 0.0625 + rectangle 0.25*0.5 = 0.125) / 0.5
    assert pose_auc([0.25, math.inf], [0.5]) == [pytest.approx((0.0625 + 0.125) / 0.5)]
    assert pose_auc([0.0, 0.0], [1.0]) == [pytest.approx(1.0)]
    assert pose_auc([math.inf] * 3, [0.5, 1, 2]) == [0.0, 0.0, 0.0]
    assert pose_auc([], [1.0]) == [0.0]
    assert pose_auc([0.5], [1.0]) == [pytest.approx(0.75)]


def test_evaluate_against_real_cameras_json(tmp_path):
    path = DATA / "scenes" / "entry-P10" / "cameras.json"
    if not path.is_file():
        pytest.skip(f"real data not found at {path} (see shared/data/README.md)")
    cams = load_cameras_json(path)
    assert len(cams) == 10 and cams["0000.jpg"].width == 1536
    est = {n: (c.R, c.t) for n, c in cams.items() if n != "0009.jpg"}
    report = evaluate_poses(est, path)
    assert report["images"] == 10 and report["registered"] == 9 and report["pairs"] == 45
    assert report["rotation_error_median_deg"] < 1e-6
    assert report["wrongly_registered"] == [] and report["wrongly_registered_count"] == 0
    # 9 of 45 pairs involve the missing image: AUC = 36/45 at every threshold
    for auc in report["rotation_auc"].values():
        assert auc == pytest.approx(36 / 45)
    sub = evaluate_poses(est, path, names=["0000.jpg", "0001.jpg", "0002.jpg"])
    assert sub["pairs"] == 3 and sub["rotation_auc"]["1"] == pytest.approx(1.0)


def test_cameras_json_errors(tmp_path):
    bad = tmp_path / "cameras.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cameras.json: not valid JSON"):
        load_cameras_json(bad)
    bad.write_text(json.dumps({"images": {"a.jpg": {"K": np.eye(3).tolist(), "R": [[1, 0], [0, 1]], "t": [0, 0, 0], "width": 1, "height": 1}}}))
    with pytest.raises(ValueError, match="'a.jpg' has K"):
        load_cameras_json(bad)
    bad.write_text(json.dumps({"images": {"a.jpg": {"R": np.eye(3).tolist(), "t": [0, 0, 0], "width": 1}}}))
    with pytest.raises(ValueError, match="image 'a.jpg' lacks 'K', 'height'$"):
        load_cameras_json(bad)
    with pytest.raises(FileNotFoundError):
        load_cameras_json(tmp_path / "none.json")
