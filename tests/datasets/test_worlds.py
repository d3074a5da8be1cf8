"""Rendered worlds: exact labels (checked against the rendered depth), texture sources, merged sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from patchmatch.datasets.brown import BrownDataset
from patchmatch.datasets.tracks import PairSetConfig, TrackConfig
from patchmatch.datasets.worlds import WorldConfig, check_texture_photos, load_photos, make_world, write_world_set
from tests.conftest import shared_path

TINY = WorldConfig(num_views=4, width=320, height=240, focal_range=(300.0, 340.0), max_arc_deg=30.0)
PAIRS = PairSetConfig(tracks=TrackConfig(max_keypoints=1000))


@pytest.fixture(scope="module")
def photos():
    return sorted(shared_path("scenes", "castle-P30", "images").glob("*.jpg"))[:3]


@pytest.fixture(scope="module")
def world_set(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("worlds") / "w"
    summary = write_world_set(photos, out, 2, seed=5, config=TINY, pair_config=PAIRS)
    return out, summary


def _centre_in(world, view: str, xy: np.ndarray) -> np.ndarray:
    """(N, 3) world points at pixels ``xy`` of a rendered view, by its exact depth (nearest pixel centre)."""
    cams = json.loads((world / "cameras.json").read_text())["images"][view]
    K, R, t = (np.asarray(cams[k], dtype=np.float64) for k in ("K", "R", "t"))
    depth = np.load(world / "depth" / view.replace(".png", ".npy"))
    ij = np.clip(np.round(xy).astype(int), 0, [depth.shape[1] - 1, depth.shape[0] - 1])
    z = depth[ij[:, 1], ij[:, 0]].astype(np.float64)
    cam = (np.c_[xy, np.ones(len(xy))] @ np.linalg.inv(K).T) * z[:, None]
    return (cam - t) @ R  # R^T (x_cam - t)


def _project(world, view: str, X: np.ndarray) -> np.ndarray:
    cams = json.loads((world / "cameras.json").read_text())["images"][view]
    K, R, t = (np.asarray(cams[k], dtype=np.float64) for k in ("K", "R", "t"))
    x = (X @ R.T + t) @ K.T
    return x[:, :2] / x[:, 2:]


def test_positives_are_one_surface_point_by_the_exact_depth(world_set):
    out, summary = world_set
    assert summary["worlds"] and summary["protocols"]["random"]["positives"] > 20
    ds = BrownDataset(out / "oriented")
    pairs = ds.pairs(summary["protocols"]["random"]["file"])
    names = summary["images"]
    root = out.with_name(out.name + ".worlds")
    err = {True: [], False: []}
    for (a, b), label in zip(pairs.index, pairs.labels):
        ia, ib = int(ds.interest[a, 0]), int(ds.interest[b, 0])
        wa, va = names[ia].split("/images/")
        wb, vb = names[ib].split("/images/")
        if wa != wb:
            assert not label  # two worlds never match
            continue
        X = _centre_in(root / wa, va, ds.interest[a, 1:3][None])
        err[bool(label)].append(float(np.linalg.norm(_project(root / wa, vb, X)[0] - ds.interest[b, 1:3])))
    pos, neg = np.asarray(err[True]), np.asarray(err[False])
    # a positive's centres are one 3D point (the depth's) within a pixel; a negative's are not
    assert np.median(pos) < 0.5 and (pos <= 1.5).mean() > 0.95, np.percentile(pos, [50, 95, 100])
    assert (neg > 3.0).mean() > 0.97


def test_worlds_are_reproducible_and_refuse_test_scene_photos(photos, world_set):
    images = load_photos(photos)
    a, b = make_world(7, images, TINY), make_world(7, images, TINY)
    assert len(a.surfaces) == len(b.surfaces) and np.array_equal(a.cameras[1].R, b.cameras[1].R)
    assert np.array_equal(a.surfaces[0].texture, b.surfaces[0].texture)
    with pytest.raises(ValueError, match="entry-P10, a test scene"):
        check_texture_photos([shared_path("scenes", "entry-P10", "images", "0000.jpg")])


def test_merged_set_round_trips_and_recuts(world_set, tmp_path):
    from patchmatch.datasets.patchset import recut_patch_set

    out, summary = world_set
    parts = [BrownDataset(Path(p) / "oriented") for p in summary["merged_from"]]
    merged = BrownDataset(out / "oriented")
    assert len(merged) == sum(len(p) for p in parts) == summary["num_patches"]
    np.testing.assert_array_equal(np.asarray(merged.patches[: len(parts[0])]), np.asarray(parts[0].patches))
    assert len(set(merged.point_ids[: len(parts[0])]) & set(merged.point_ids[len(parts[0]) :])) == 0
    recut = recut_patch_set(out, tmp_path / "r", 6.0)  # the images are found through the merged names
    assert recut["num_patches"] == summary["num_patches"]
    diff = np.abs(np.asarray(BrownDataset(tmp_path / "r" / "oriented").patches, np.int16) - np.asarray(merged.patches, np.int16))
    assert (diff > 2).mean() < 0.01


def test_make_patches_worlds_refuses_test_scene_photos_before_any_work(tmp_path, capsys):
    from patchmatch.cli import main

    photos = shared_path("scenes", "temple-ring", "images")
    assert main(["-q", "make-patches", str(photos), str(tmp_path / "w"), "--worlds", "1"]) == 2
    assert "temple-ring, a test scene" in capsys.readouterr().err
    assert main(["-q", "make-patches", str(photos), str(tmp_path / "w"), "--worlds", "1", "--reconstruct"]) == 2
    assert "give one" in capsys.readouterr().err
    assert not (tmp_path / "w").exists() and not (tmp_path / "w.worlds").exists()
