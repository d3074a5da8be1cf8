"""Geometry-only tracks and pair sets on real images with ground-truth cameras."""

from __future__ import annotations

import numpy as np
import pytest

from patchmatch.datasets.scenes import fundamental_matrix, load_scene
from patchmatch.datasets.tracks import (
    PairSetConfig,
    TrackConfig,
    _Grid,
    build_pair_set,
    build_tracks,
    detect_scene,
    neighbour_pairs,
    triangulate,
)
from patchmatch.evaluation.fpr95 import fpr95
from tests.conftest import shared_path

NAMES = ["0000.jpg", "0001.jpg", "0002.jpg"]
CONFIG = TrackConfig(max_keypoints=2048, detected_share=0.0)  # every track oriented consistently


@pytest.fixture(scope="module")
def built():
    scene = load_scene(shared_path("scenes", "entry-P10"))
    feats, _ = detect_scene(scene, NAMES, CONFIG.max_keypoints)
    tracks = build_tracks(scene, feats, NAMES, CONFIG)
    pairs = build_pair_set(scene, feats, tracks, PairSetConfig(tracks=CONFIG, seed=3))
    return scene, feats, tracks, pairs


def test_grid_matches_brute_force():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 50, size=(400, 2))
    q = rng.uniform(-2, 52, size=(300, 2))
    qi, pi = _Grid(pts, 1.5).query(q, 1.5)
    d = np.linalg.norm(q[:, None] - pts[None], axis=2)
    want = set(zip(*np.nonzero(d <= 1.5)))
    assert set(zip(qi.tolist(), pi.tolist())) == want and len(want) > 10


def test_triangulate_exact_points():
    scene = load_scene(shared_path("scenes", "entry-P10"))
    cams = [scene.cameras[n] for n in NAMES]
    rng = np.random.default_rng(1)
    X = cams[0].backproject(rng.uniform([0, 0], [1536, 1024], (20, 2)), rng.uniform(5, 15, 20))
    uv = np.stack([c.project(X)[0] for c in cams], axis=1)
    P = np.broadcast_to(np.stack([c.P for c in cams]), (20, 3, 3, 4))
    np.testing.assert_allclose(triangulate(P, uv), X, atol=1e-6)


def test_neighbour_pairs_follow_viewing_angle():
    scene = load_scene(shared_path("scenes", "entry-P10"))
    pairs = neighbour_pairs(scene, scene.names, TrackConfig(max_view_angle_deg=40.0, max_neighbours=2))
    assert (0, 1) in pairs and all(i < j for i, j in pairs)
    assert all(len([p for p in pairs if i in p]) >= 1 for i in range(len(scene.names)))


def test_tracks_are_geometrically_consistent(built):
    scene, feats, tracks, _ = built
    assert tracks.num_tracks > 150, tracks.num_tracks
    tid = tracks.track_id
    # Grouped, at least min_track_length views, never two keypoints of one image.
    assert (np.diff(tid) >= 0).all()
    lengths = np.bincount(tid)
    # Geometry keeps >= min_track_length views; the orientation step may drop some, to >= 2.
    assert lengths.min() >= 2 and np.median(lengths) >= CONFIG.min_track_length
    per_image = {(int(t), int(i)) for t, i in zip(tid, tracks.image_index)}
    assert len(per_image) == len(tid)
    # A keypoint location belongs to at most one track.
    locs = {(int(i), int(feats[tracks.names[i]].location[k])) for i, k in zip(tracks.image_index, tracks.keypoint_index)}
    assert len(locs) == len(tid)
    # The 3D point reprojects within the threshold in every view, in front of the camera, and
    # keypoint physical sizes agree.
    phys = np.empty(len(tid))
    for o in range(len(tid)):
        name = tracks.names[tracks.image_index[o]]
        cam = scene.cameras[name]
        kp = feats[name].keypoints[tracks.keypoint_index[o]]
        uv, depth = cam.project(tracks.points3d[tid[o]][None])
        assert depth[0] > 0
        assert np.linalg.norm(uv[0] - kp[:2]) <= CONFIG.reprojection_px + 1e-6
        phys[o] = kp[2] * depth[0] / cam.focal
    for t in range(tracks.num_tracks):
        p = phys[tid == t]
        assert p.max() / p.min() <= CONFIG.size_ratio**2 + 1e-9


def test_positives_satisfy_epipolar_constraint(built):
    scene, feats, tracks, ps = built
    pos = ps.pairs_random[ps.pairs_random[:, 2] == 1]
    assert (ps.track_id[pos[:, 0]] == ps.track_id[pos[:, 1]]).all()
    d = []
    for a, b, _ in pos:
        na, nb = ps.names[ps.image_index[a]], ps.names[ps.image_index[b]]
        assert na != nb
        F = fundamental_matrix(scene.cameras[na], scene.cameras[nb])
        line = F @ np.r_[ps.keypoints[a, :2], 1.0]
        d.append(abs(line @ np.r_[ps.keypoints[b, :2], 1.0]) / np.hypot(line[0], line[1]))
    d = np.asarray(d)
    # Both keypoints reproject within 1 px of one 3D point, so they are within 2 px of each
    # other's epipolar line; most are far closer.
    assert d.max() <= 2 * CONFIG.reprojection_px and np.median(d) < 0.5


def test_positive_orientations_agree(built):
    """entry-P10 is shot upright: the chosen SIFT orientations of a track's views agree, so the
    oriented patches of a positive show the same content the same way up."""
    _, _, _, ps = built
    pos = ps.pairs_random[ps.pairs_random[:, 2] == 1]
    diff = np.abs((ps.keypoints[pos[:, 0], 3] - ps.keypoints[pos[:, 1], 3] + 180) % 360 - 180)
    assert np.median(diff) < 8 and np.percentile(diff, 99) <= 2 * CONFIG.orientation_tol_deg


def test_location_grouping_keeps_every_orientation(built):
    _, feats, _, _ = built
    f = feats[NAMES[0]]
    assert len(f.unique) < len(f.keypoints)  # SIFT repeats some locations with another angle
    np.testing.assert_array_equal(f.location[f.unique], np.arange(len(f.unique)))
    same = f.keypoints[f.unique[f.location], :3]
    np.testing.assert_allclose(same, f.keypoints[:, :3], atol=1e-3)


def test_pairs_are_balanced_and_labelled_right(built):
    _, feats, _, ps = built
    for key in ("pairs_random", "pairs_hard"):
        arr = getattr(ps, key)
        assert arr.shape[1] == 3 and len(arr) > 200
        assert arr[:, 2].sum() * 2 == len(arr)
        assert arr[:, :2].min() >= 0 and arr[:, :2].max() < len(ps.track_id)
    neg = ps.pairs_random[ps.pairs_random[:, 2] == 0]
    assert (ps.track_id[neg[:, 0]] != ps.track_id[neg[:, 1]]).all()
    assert (ps.track_id[neg] >= 0).all()
    hneg = ps.pairs_hard[ps.pairs_hard[:, 2] == 0]
    t0, t1 = ps.track_id[hneg[:, 0]], ps.track_id[hneg[:, 1]]
    assert not ((t0 == t1) & (t0 >= 0)).any()
    assert (ps.image_index[hneg[:, 0]] != ps.image_index[hneg[:, 1]]).all()
    # Keypoints and descriptors are copies of the detected ones.
    for o in range(0, len(ps.track_id), 97):
        f = feats[ps.names[ps.image_index[o]]]
        np.testing.assert_array_equal(ps.keypoints[o], f.keypoints[ps.keypoint_index[o]])
        np.testing.assert_array_equal(ps.descriptors[o], f.descriptors[ps.keypoint_index[o]])


def test_sift_fpr95_is_sane_and_hard_negatives_are_harder(built):
    _, _, _, ps = built
    res = {}
    for key in ("pairs_random", "pairs_hard"):
        arr = getattr(ps, key)
        s = -np.linalg.norm(ps.descriptors[arr[:, 0]] - ps.descriptors[arr[:, 1]], axis=1)
        res[key] = fpr95(s, arr[:, 2] == 1)
    # SIFT separates true correspondences from random patches far better than chance,
    # and the SIFT-nearest non-partners are, by construction, harder.
    assert 0.0 < res["pairs_random"] < 0.2, res
    assert res["pairs_hard"] > res["pairs_random"], res


def test_views_with_one_camera_centre_are_not_paired(caplog):
    """temple-ring lists templeSR0001 and templeSR0011 with the same pose: no epipolar geometry."""
    scene = load_scene(shared_path("scenes", "temple-ring"))
    names = scene.names
    pairs = neighbour_pairs(scene, names, TrackConfig())
    i, j = names.index("templeSR0001.png"), names.index("templeSR0011.png")
    assert (i, j) not in pairs and len(pairs) > 10
    assert "share their camera centre" in caplog.text


def test_a_share_of_tracks_keeps_each_views_own_detection(built):
    """detected_share: those tracks keep every view's strongest orientation (no choice, no view
    removed for disagreeing); the others are as before; 1.0 is the benchmark's "as detected"."""
    from dataclasses import replace

    scene, feats, consistent, _ = built
    share = build_tracks(scene, feats, NAMES, replace(CONFIG, detected_share=0.5))
    every = build_tracks(scene, feats, NAMES, replace(CONFIG, orientation_tol_deg=0.0))

    def first_orientation(tr):  # is each observation its location's first (strongest) keypoint?
        return np.array([feats[tr.names[i]].unique[feats[tr.names[i]].location[k]] == k
                         for i, k in zip(tr.image_index, tr.keypoint_index)])  # fmt: skip

    assert first_orientation(every).all() and every.num_tracks >= consistent.num_tracks
    # as many tracks, more or less, as the two builds it mixes; every track still geometric
    assert consistent.num_tracks <= share.num_tracks <= every.num_tracks
    assert (np.diff(share.track_id) >= 0).all() and np.bincount(share.track_id).min() >= 2
    # orientations disagree within tracks kept as detected: wider spread than the consistent build
    def spread(tr):
        ang = np.array([feats[tr.names[i]].keypoints[k, 3] for i, k in zip(tr.image_index, tr.keypoint_index)])
        first = np.r_[True, tr.track_id[1:] != tr.track_id[:-1]]
        ref = ang[np.flatnonzero(first)][tr.track_id]
        return np.abs((ang - ref + 180) % 360 - 180)

    assert np.percentile(spread(share), 99) > np.percentile(spread(consistent), 99)
    with pytest.raises(ValueError, match="detected_share"):
        TrackConfig(detected_share=1.5)
