"""Tests of the procedural demo scene: determinism, cameras.json, geometry and reconstructability."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from patchmatch.synthetic import (
    CONVENTION,
    SceneConfig,
    Surface,
    SyntheticScene,
    backproject,
    make_scene,
    render_scene,
    render_view,
    transfer,
)

SHARED_SCENES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "scenes"

# A clean rendering: no noise, no illumination change, no shading, so that gray levels are exact.
CLEAN = SceneConfig(num_images=10, noise_sigma=0.0, illumination=0.0, shading=False)


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return make_scene(seed=0)


def _with_textures(scene: SyntheticScene, textures: list[np.ndarray], config: SceneConfig) -> SyntheticScene:
    """The same geometry and cameras with other textures and rendering settings."""
    surfaces = tuple(
        Surface(s.name, s.origin, s.axis_u, s.axis_v, s.size, tex) for s, tex in zip(scene.surfaces, textures)
    )
    return SyntheticScene(surfaces, scene.cameras, config, scene.seed)


def _relative_rotation_error_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    cos = (np.trace(Ra.T @ Rb) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def test_render_scene_is_deterministic_and_seed_dependent(tmp_path):
    cfg = SceneConfig(width=160, height=120, focal=140.0, texels_per_meter=60.0)
    a = render_scene(tmp_path / "a", seed=3, num_images=3, config=cfg)
    b = render_scene(tmp_path / "b", seed=3, num_images=3, config=cfg)
    c = render_scene(tmp_path / "c", seed=4, num_images=3, config=cfg)
    names = sorted(p.name for p in (a / "images").iterdir())
    assert names == ["0000.png", "0001.png", "0002.png"]
    assert (a / "cameras.json").read_bytes() == (b / "cameras.json").read_bytes()
    for name in names:
        ia, ib, ic = (cv2.imread(str(d / "images" / name), cv2.IMREAD_UNCHANGED) for d in (a, b, c))
        assert ia.shape == (120, 160) and ia.dtype == np.uint8
        np.testing.assert_array_equal(ia, ib)
        assert np.abs(ia.astype(int) - ic.astype(int)).mean() > 10  # another seed: other textures
    # Each view has its own illumination and noise: no two images have the same mean.
    means = [cv2.imread(str(a / "images" / n), cv2.IMREAD_GRAYSCALE).mean() for n in names]
    assert len(set(np.round(means, 3))) == 3


def test_render_scene_refuses_to_overwrite_unless_asked(tmp_path):
    cfg = SceneConfig(width=64, height=48, focal=56.0, texels_per_meter=30.0)
    render_scene(tmp_path, num_images=3, config=cfg)
    with pytest.raises(FileExistsError, match="images"):
        render_scene(tmp_path, num_images=2, config=cfg)
    (tmp_path / "images" / "stale.png").write_bytes(b"")
    render_scene(tmp_path, num_images=2, config=cfg, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["0000.png", "0001.png"]
    assert list(json.loads((tmp_path / "cameras.json").read_text())["images"]) == ["0000.png", "0001.png"]


@pytest.mark.parametrize(
    "kwargs",
    [{"num_images": 1}, {"supersample": 0}, {"focal": -1.0}, {"illumination": 0.7}, {"arc_degrees": 200.0}],
)
def test_invalid_config_is_rejected(kwargs):
    with pytest.raises(ValueError, match="SceneConfig"):
        SceneConfig(**kwargs)


def test_cameras_inside_the_room_are_rejected():
    with pytest.raises(ValueError, match="inside the room"):
        make_scene(0, SceneConfig(radius=4.0))


def test_render_view_rejects_bad_index(scene):
    with pytest.raises(IndexError, match="camera index 10"):
        render_view(scene, 10)


def test_cameras_json_format_and_consistency(scene, tmp_path):
    data = scene.cameras_json()
    assert data["convention"] == CONVENTION
    assert list(data["images"]) == [f"{i:04d}.png" for i in range(10)]
    centers = []
    for cam, (name, entry) in zip(scene.cameras, data["images"].items()):
        assert set(entry) == {"K", "R", "t", "width", "height"} and name == cam.name
        K, R, t = (np.array(entry[k]) for k in ("K", "R", "t"))
        assert K.shape == (3, 3) and R.shape == (3, 3) and t.shape == (3,)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        assert (entry["width"], entry["height"]) == (640, 480)
        np.testing.assert_allclose(K, [[560, 0, 319.5], [0, 560, 239.5], [0, 0, 1]])
        center = -R.T @ t
        centers.append(center)
        # Camera y axis points down (world z up); the room centre is in front and in the image.
        assert R[1] @ [0, 0, 1] < -0.9
        p, depth = cam.project(np.array([[0.0, 0.8, 0.9]]))
        assert depth[0] > 5 and 0 < p[0, 0] < 640 and 0 < p[0, 1] < 480
    centers = np.array(centers)
    steps = np.linalg.norm(np.diff(centers, axis=0), axis=1)
    assert np.all((steps > 0.5) & (steps < 1.6))  # an arc of moderate baselines
    # The file written is the same JSON, and it has the layout of the real scenes' files.
    render_scene(tmp_path, num_images=2, config=SceneConfig(width=64, height=48, focal=56.0, texels_per_meter=30.0))
    written = json.loads((tmp_path / "cameras.json").read_text())
    assert set(written) == {"convention", "images"}
    real = SHARED_SCENES / "temple-ring" / "cameras.json"
    if not real.exists():
        pytest.skip(f"real data absent ({real}): cannot compare with a real cameras.json")
    real_data = json.loads(real.read_text())
    assert set(real_data) == set(written) and real_data["convention"] == written["convention"]
    assert set(next(iter(real_data["images"].values()))) == set(next(iter(written["images"].values())))


def _ray_cast(scene: SyntheticScene, cam, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest surface hit by the ray of each pixel: index (-1 none), depth, and depth gap to the next hit."""
    rays = (np.linalg.inv(cam.K) @ np.c_[pixels, np.ones(len(pixels))].T).T @ cam.R  # world, z_cam = 1
    C = cam.center
    depths = np.full((len(pixels), len(scene.surfaces)), np.inf)
    for k, s in enumerate(scene.surfaces):
        n = s.normal
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = ((s.origin - C) @ n) / (rays @ n)
        X = C + lam[:, None] * rays
        u, v = (X - s.origin) @ s.axis_u, (X - s.origin) @ s.axis_v
        hit = (lam > 0) & (u >= 0) & (u <= s.size[0]) & (v >= 0) & (v <= s.size[1])
        depths[hit, k] = lam[hit]
    order = np.sort(depths, axis=1)
    idx = np.where(np.isfinite(order[:, 0]), np.argmin(depths, axis=1), -1)
    with np.errstate(invalid="ignore"):  # inf - inf where no surface is hit
        gap = np.nan_to_num(order[:, 1] - order[:, 0], nan=np.inf)
    return idx, order[:, 0], gap


def test_z_buffer_agrees_with_ray_casting(scene):
    levels = [30.0 + 11.0 * k for k in range(len(scene.surfaces))]
    assert max(levels) < 255
    textures = [np.full(s.texture.shape, g, np.float32) for s, g in zip(scene.surfaces, levels)]
    flat = _with_textures(scene, textures, dataclasses.replace(CLEAN))
    rng = np.random.default_rng(0)
    for index in (0, 4, 9):
        view = render_view(flat, index)
        cam = flat.cameras[index]
        px = np.c_[rng.integers(0, 640, 3000), rng.integers(0, 480, 3000)]
        idx, depth, gap = _ray_cast(flat, cam, px.astype(float))
        got_idx = view.surface[px[:, 1], px[:, 0]]
        got_depth = view.depth[px[:, 1], px[:, 0]]
        clear = gap > 1e-6  # not on a seam where two surfaces touch
        np.testing.assert_array_equal(got_idx[clear], idx[clear])
        seen = idx >= 0
        np.testing.assert_allclose(got_depth[seen], depth[seen], rtol=1e-5)
        assert seen.mean() > 0.7 and len(np.unique(idx[seen])) >= 8  # the room fills the views
        # Away from surface boundaries the image shows exactly the gray level of the surface hit.
        labels = view.surface.astype(np.int32)
        edge = cv2.dilate((cv2.Laplacian(labels.astype(np.float32), cv2.CV_32F) != 0).astype(np.uint8), np.ones((5, 5)))
        interior = (labels >= 0) & (edge == 0)
        expected = np.take(np.array(levels), labels[interior])
        np.testing.assert_allclose(view.image[interior], expected, atol=0.51)


def test_projected_points_land_on_rendered_markers(scene):
    """Paint discs at known 3D points into the textures, render, find them, compare with projection."""
    rng = np.random.default_rng(1)
    radius_m = 0.05
    textures, points, owner = [], [], []
    for k, s in enumerate(scene.surfaces):
        tex = np.full(s.texture.shape, 50, np.uint8)
        n = 6 if max(s.size) > 3 else 2
        st = rng.uniform(0.15, 0.85, size=(n, 2)) * s.size
        X = s.point_at(st)
        for uv in s.texel_of(X):
            r = radius_m * s.texels_per_meter[0]
            c = tuple(int(round(v * 256)) for v in uv)  # 8 fractional bits: sub-texel centres
            cv2.circle(tex, c, int(round(r * 256)), 250, -1, cv2.LINE_AA, shift=8)
        textures.append(tex.astype(np.float32))
        points.append(X)
        owner += [k] * n
    points, owner = np.concatenate(points), np.array(owner)
    marked = _with_textures(scene, textures, CLEAN)
    checked = 0
    for index in (1, 5, 8):
        cam = marked.cameras[index]
        view = render_view(marked, index)
        img = view.image.astype(np.float64) - 50.0
        proj, depth = cam.project(points)
        for p, d, k in zip(proj, depth, owner):
            x, y = np.round(p).astype(int)
            w = 9
            if d <= 0 or not (w <= x < 640 - w and w <= y < 480 - w):
                continue
            win_labels = view.surface[y - w : y + w + 1, x - w : x + w + 1]
            if np.any(win_labels != k):
                continue  # partly occluded or near an edge of the surface
            win = img[y - w : y + w + 1, x - w : x + w + 1]
            if win.max() < 150:
                continue  # too small to see (far and oblique)
            others = np.linalg.norm(proj - p, axis=1)
            if np.sum(others < 2 * w) > 1:
                continue  # another marker in the window
            yy, xx = np.mgrid[y - w : y + w + 1, x - w : x + w + 1]
            centroid = np.array([(win * xx).sum(), (win * yy).sum()]) / win.sum()
            assert np.linalg.norm(centroid - p) < 0.1, (index, k, centroid, p)
            # The depth map at the marker equals the projected depth.
            assert view.depth[y, x] == pytest.approx(d, rel=0.02)
            checked += 1
    assert checked >= 25


def test_transfer_round_trip_and_occlusion(scene):
    i, j = 2, 6
    v0, v1 = render_view(scene, i, image=False), render_view(scene, j, image=False)
    full = render_view(scene, i)
    np.testing.assert_array_equal(full.surface, v0.surface)
    np.testing.assert_array_equal(full.depth, v0.depth)
    assert v0.image is None
    rng = np.random.default_rng(2)
    px = rng.uniform([0, 0], [639, 479], size=(4000, 2))
    X = backproject(scene, i, v0, px)
    seen = np.isfinite(X[:, 0])
    assert seen.mean() > 0.7
    p, d = scene.cameras[i].project(X[seen])
    np.testing.assert_allclose(p, px[seen], atol=1e-6)  # back-projection lands on the ray
    p1, visible = transfer(scene, i, v0, j, v1, px)
    assert 0.3 < visible.mean() < 1.0
    back, visible_back = transfer(scene, j, v1, i, v0, p1[visible])
    # Visible in both views: the round trip returns to the start, except at sub-pixel seams.
    close = np.linalg.norm(back - px[visible], axis=1) < 1e-6
    assert visible_back.mean() > 0.97 and close.mean() > 0.97
    # Points hidden in view j: the surface seen there is nearer than the transferred point.
    X1 = backproject(scene, j, v1, p1[seen & ~visible & np.isfinite(p1[:, 0])])
    inside = np.isfinite(X1[:, 0])
    c1 = scene.cameras[j].center
    hidden = X[seen & ~visible & np.isfinite(p1[:, 0])][inside]
    assert len(hidden) > 20  # the boxes do occlude parts of the room between these views
    assert np.all(np.linalg.norm(X1[inside] - c1, axis=1) < np.linalg.norm(hidden - c1, axis=1))


@pytest.mark.slow
def test_pycolmap_sift_pipeline_reconstructs_the_scene(tmp_path):
    """COLMAP's own SIFT extraction, exhaustive matching and mapping recover the ground-truth poses."""
    pycolmap = pytest.importorskip("pycolmap")
    root = render_scene(tmp_path / "scene", seed=0, num_images=6)
    db = tmp_path / "database.db"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = 2
    extraction.sift.max_num_features = 1500
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    pycolmap.extract_features(
        db,
        root / "images",
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = 2
    pycolmap.match_exhaustive(db, matching_options=matching, device=pycolmap.Device.cpu)
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = 2
    models = pycolmap.incremental_mapping(db, root / "images", tmp_path / "sparse", options=mapping)
    assert models, "COLMAP reconstructed nothing"
    rec = max(models.values(), key=lambda r: r.num_reg_images())
    assert rec.num_reg_images() == 6
    gt = json.loads((root / "cameras.json").read_text())["images"]
    est = {im.name: im.cam_from_world().rotation.matrix() for im in rec.images.values() if im.has_pose}
    names = sorted(est)
    errors = [
        _relative_rotation_error_deg(
            np.array(gt[b]["R"]) @ np.array(gt[a]["R"]).T, est[b] @ est[a].T
        )
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    assert np.median(errors) < 0.2 and max(errors) < 1.0
    # Pixel-accurate ground truth: the focal length COLMAP refines is the rendered one.
    assert rec.cameras[next(iter(rec.cameras))].focal_length_x == pytest.approx(560.0, rel=0.01)
