"""Tests of ``patchmatch demo``: ground-truth match checking, output handling, and the run end to end."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from patchmatch.cli import main
from patchmatch.demo import DemoConfig, match_correctness, run_demo
from patchmatch.scoring import shipped_weights_path
from patchmatch.synthetic import make_scene, render_view, transfer


def test_match_correctness_against_known_transfers():
    scene = make_scene(seed=0)
    i, j = 3, 4
    views = {i: render_view(scene, i, image=False), j: render_view(scene, j, image=False)}
    rng = np.random.default_rng(0)
    kp0 = rng.uniform([0, 0], [639, 479], size=(600, 2))
    p1, visible = transfer(scene, i, views[i], j, views[j], kp0)
    assert visible.sum() > 300
    kp1 = np.where(np.isfinite(p1), p1, 0.0)
    # Exact transfers, 2 px off (still correct at 3 px), 5 px off (wrong), and shuffled partners (wrong).
    offsets = np.zeros_like(kp1)
    offsets[100:200] = [2.0 / np.sqrt(2), -2.0 / np.sqrt(2)]
    offsets[200:300] = [0.0, 5.0]
    kp1 = kp1 + offsets
    matches = np.c_[np.arange(600), np.arange(600)]
    matches[300:400, 1] = rng.permutation(np.arange(300, 400))
    correct = match_correctness(views, scene, i, j, kp0, kp1, matches, correct_px=3.0)
    assert correct.dtype == bool and correct.shape == (600,)
    np.testing.assert_array_equal(correct[:200], visible[:200])  # hidden or outside: never correct
    assert not correct[200:300].any()
    moved = np.linalg.norm(kp1[matches[300:400, 1]] - kp1[300:400], axis=1) > 3.0
    assert not correct[300:400][moved].any()
    assert match_correctness(views, scene, i, j, kp0, kp1, np.zeros((0, 2), int), 3.0).shape == (0,)


def test_demo_refuses_existing_outputs(tmp_path):
    (tmp_path / "scene").mkdir()
    with pytest.raises(FileExistsError, match="overwrite"):
        run_demo(tmp_path, DemoConfig())


@pytest.mark.parametrize("kwargs", [{"num_images": 2}, {"pairs": "nearby:3"}, {"k": 0}, {"correct_px": 0.0}, {"threads": 0}])
def test_demo_config_is_validated(kwargs):
    with pytest.raises(ValueError):
        DemoConfig(**kwargs)


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    """`patchmatch demo` with the shipped weights on a smaller scene: all views registered, accurate."""
    try:
        shipped_weights_path()
    except FileNotFoundError as error:
        pytest.skip(f"no shipped weights in this checkout: {error}")
    out = tmp_path / "demo"
    code = main(["demo", str(out), "--num-images", "6", "--max-keypoints", "512", "--device", "cpu", "--threads", "2"])
    table = capsys.readouterr().out
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    report = json.loads((out / "sfm" / "report.json").read_text())
    assert "registered images" in table and "6 / 6" in table
    assert summary["registered"] == report["registered"] == 6
    assert report["config"]["threads"] == 2  # --threads reaches the pipeline
    assert summary["rotation_error_median_deg"] == report["pose"]["rotation_error_median_deg"] < 0.5
    assert summary["putative_matches"] == report["putative_matches"] > 300
    assert summary["match_precision"] > 0.8
    assert sorted(p.name for p in (out / "scene" / "images").iterdir()) == [f"{i:04d}.png" for i in range(6)]
    picture = cv2.imread(str(out / "matches.png"))
    assert picture is not None and picture.shape == (480, 1280, 3)
    # A second run needs --overwrite, and then replaces the outputs.
    with pytest.raises(FileExistsError):
        run_demo(out, DemoConfig(num_images=6, max_keypoints=512))
