"""Scenes with cameras.json: loading, projection, fundamental matrix, malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from patchmatch.datasets.scenes import Camera, SceneError, fundamental_matrix, load_scene, skew

from tests.conftest import shared_path


def _camera(name="a.jpg", R=np.eye(3), t=(0.0, 0.0, 0.0), f=1000.0, w=640, h=480) -> Camera:
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
    return Camera(name=name, K=K, R=np.asarray(R, float), t=np.asarray(t, float), width=w, height=h)


def _rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def test_projection_hand_computed():
    cam = _camera(f=100.0, w=101, h=81)  # principal point (50, 40)
    uv, depth = cam.project(np.array([[1.0, -2.0, 10.0], [0.0, 0.0, 5.0]]))
    np.testing.assert_allclose(uv, [[60.0, 20.0], [50.0, 40.0]])
    np.testing.assert_allclose(depth, [10.0, 5.0])
    np.testing.assert_allclose(cam.center, [0, 0, 0])
    X = cam.backproject(uv, depth)
    np.testing.assert_allclose(X, [[1.0, -2.0, 10.0], [0.0, 0.0, 5.0]])
    assert cam.contains(np.array([[-0.5, -0.5], [100.5, 80.5], [100.6, 3.0], [np.nan, 1.0]])).tolist() == [
        True,
        True,
        False,
        False,
    ]


def test_skew_is_cross_product():
    v, w = np.array([1.0, -2.0, 3.0]), np.array([0.5, 4.0, -1.0])
    np.testing.assert_allclose(skew(v) @ w, np.cross(v, w))


def test_fundamental_matrix_epipolar_constraint():
    c0 = _camera("0", R=np.eye(3), t=[0, 0, 0])
    c1 = _camera("1", R=_rot_y(15.0), t=[-1.0, 0.1, 0.2])
    rng = np.random.default_rng(0)
    uv0 = rng.uniform([0, 0], [640, 480], size=(50, 2))
    X = c0.backproject(uv0, rng.uniform(4, 20, 50))
    uv1, d1 = c1.project(X)
    assert (d1 > 0).all()
    F = fundamental_matrix(c0, c1)
    h0 = np.c_[uv0, np.ones(50)]
    h1 = np.c_[uv1, np.ones(50)]
    lines = h0 @ F.T
    dist = np.abs(np.sum(lines * h1, axis=1)) / np.linalg.norm(lines[:, :2], axis=1)
    assert dist.max() < 1e-6
    with pytest.raises(SceneError, match="share their centre"):
        fundamental_matrix(c0, _camera("2", R=_rot_y(10.0)))


def test_real_scene_loads_and_sift_matches_obey_epipolar_geometry():
    """The cameras use OpenCV pixel centres, like our keypoints: no 0.5 px shift is needed."""
    import cv2

    from patchmatch.features import detect
    from patchmatch.images import read_gray

    scene = load_scene(shared_path("scenes", "entry-P10"))
    assert len(scene) == 10 and scene.names[0] == "0000.jpg"
    cam0, cam1 = scene.cameras["0000.jpg"], scene.cameras["0001.jpg"]
    assert (cam0.width, cam0.height) == (1536, 1024)
    np.testing.assert_allclose(cam0.R @ cam0.R.T, np.eye(3), atol=1e-5)
    f0 = detect(read_gray(scene.image_path("0000.jpg"))[0], max_keypoints=1500)
    f1 = detect(read_gray(scene.image_path("0001.jpg"))[0], max_keypoints=1500)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(f0.descriptors, f1.descriptors, k=2)
    m = np.array([(a.queryIdx, a.trainIdx) for a, b in knn if a.distance < 0.7 * b.distance])
    assert len(m) > 100
    F = fundamental_matrix(cam0, cam1)
    h0 = np.c_[f0.xy[m[:, 0]], np.ones(len(m))]
    h1 = np.c_[f1.xy[m[:, 1]], np.ones(len(m))]
    lines = h0 @ F.T
    dist = np.abs(np.sum(lines * h1, axis=1)) / np.linalg.norm(lines[:, :2], axis=1)
    assert np.median(dist) < 0.3, np.median(dist)
    # Shifting one image by half a pixel (the COLMAP convention) must make it clearly worse.
    h1s = h1 + [0.5, 0.5, 0.0]
    dist_s = np.abs(np.sum(lines * h1s, axis=1)) / np.linalg.norm(lines[:, :2], axis=1)
    assert np.median(dist_s) > np.median(dist)


def _write(tmp_path: Path, data) -> Path:
    scene = tmp_path / "scene"
    (scene / "images").mkdir(parents=True)
    (scene / "cameras.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return scene


GOOD = {"K": [[100, 0, 50], [0, 100, 40], [0, 0, 1]], "R": np.eye(3).tolist(), "t": [0, 0, 1], "width": 101, "height": 81}


@pytest.mark.parametrize(
    "data, message",
    [
        ("{not json", "not valid JSON"),
        ({"cameras": {}}, "'images' object"),
        ({"images": {}}, "'images' is empty"),
        ({"images": {"a.jpg": {**GOOD, "t": [0, 1]}}}, r"t has shape \(2,\)"),
        ({"images": {"a.jpg": {k: v for k, v in GOOD.items() if k != "K"}}}, r"lacks \['K'\]"),
        ({"images": {"a.jpg": {**GOOD, "R": (2 * np.eye(3)).tolist()}}}, "not a rotation"),
        ({"images": {"a.jpg": {**GOOD, "K": [[0, 0, 50], [0, 100, 40], [0, 0, 1]]}}}, "not an intrinsics"),
        ({"images": {"a.jpg": {**GOOD, "width": -3}}}, "non-positive size"),
        ({"images": {"a.jpg": {**GOOD, "t": ["x", 0, 1]}}}, "not numeric"),
    ],
)
def test_malformed_cameras_json_names_the_file(tmp_path, data, message):
    scene = _write(tmp_path, data)
    with pytest.raises(SceneError, match=message) as err:
        load_scene(scene, check_images=False)
    assert str(scene / "cameras.json") in str(err.value)


def test_missing_file_and_missing_image(tmp_path):
    with pytest.raises(SceneError, match="cameras.json: not found"):
        load_scene(tmp_path)
    scene = _write(tmp_path, {"images": {"a.jpg": GOOD}})
    with pytest.raises(SceneError, match="does not exist"):
        load_scene(scene)
    assert load_scene(scene, check_images=False).names == ["a.jpg"]
