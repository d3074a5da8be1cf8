"""Stage 5b: geometry-guided matching on 4 real entry-P10 views."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from patchmatch import colmap, storage
from patchmatch.evaluation.epipolar import correct_matches, ground_truth_fundamental
from patchmatch.evaluation.pose import load_cameras_json
from patchmatch.stages import guided, select_pairs
from tests.conftest import shared_path
from tests.helpers import NCCScorer

from .conftest import EXTRACT


class CountingScorer(NCCScorer):
    """NCC, counting the candidate pairs scored."""

    def __init__(self):
        super().__init__()
        self.scored = 0

    def score_pairs(self, p0, p1, pairs):
        self.scored += len(pairs)
        return super().score_pairs(p0, p1, pairs)


@pytest.fixture(scope="module")
def guided_run(chain, verified, tmp_path_factory):
    """A copy of the verified chain, guided once: ``(paths, report, scorer, inliers before)``."""
    out = tmp_path_factory.mktemp("guided")
    db = shutil.copy(verified[0], out / "database.db")
    matches = shutil.copy(chain["matches"], out / "matches.h5")
    paths = dict(chain, database=db, matches=matches, guided=out / "guided.json")
    scorer, report = CountingScorer(), {}
    config = guided.GuidedConfig(min_score=0.5, min_margin=0.05)
    guided.run(chain["images"], chain["features"], chain["pairs"], matches, db, paths["guided"], scorer, config,
               colmap.VerificationConfig(num_threads=2), EXTRACT.max_image_size, report=report)  # fmt: skip
    return paths, report["guided"], scorer, verified[1], config


def test_guided_matching_gains_verified_matches_that_are_correct(guided_run, chain, verified):
    paths, report, scorer, before, _ = guided_run
    chain_matches = chain["matches"]
    before_db = verified[0]
    assert report["pairs_guided"] >= 3 and report["matches_added"] >= 50
    assert scorer.scored == report["candidates_scored"] <= report["pairs_guided"] * guided.MAX_CANDIDATES_PER_PAIR
    assert report["verified_pairs"] == before["verified_pairs"]  # every pair still verified
    assert report["inlier_matches"] > before["inlier_matches"] + 0.5 * report["matches_added"]
    cameras = load_cameras_json(shared_path("scenes", "entry-P10", "cameras.json"))
    done = json.loads(paths["guided"].read_text())
    correct = total = 0
    for a, b in [p for p in select_pairs.read(paths["pairs"]) if storage.names_to_pair(*p) in done]:
        before_rows = {tuple(r) for r in storage.read_matches(chain_matches, a, b)[0].tolist()}
        m, _ = storage.read_matches(paths["matches"], a, b)
        new = np.array([r for r in m.tolist() if tuple(r) not in before_rows], np.int64).reshape(-1, 2)
        xy = [storage.read_features(paths["features"], n).xy for n in (a, b)]
        # 2 px at the 640 px working size: 3072 / 640 × 2 ≈ 10 px in the original pixels
        ok = correct_matches(ground_truth_fundamental(cameras[a], cameras[b]), xy[0], xy[1], new, threshold=10.0)
        correct, total = correct + ok.sum(), total + len(ok)
    ids = colmap.read_image_ids(paths["database"])
    base_ok = base_total = 0
    for a, b in select_pairs.read(paths["pairs"]):
        inl = colmap.read_verified_matches(before_db, ids[a], ids[b])
        xy = [storage.read_features(paths["features"], n).xy for n in (a, b)]
        ok = correct_matches(ground_truth_fundamental(cameras[a], cameras[b]), xy[0], xy[1], inl, threshold=10.0)
        base_ok, base_total = base_ok + ok.sum(), base_total + len(ok)
    # normalised cross-correlation decides here, not the network: most, not all, new matches are right
    assert total and correct / total > 0.75 and base_ok / base_total > 0.9, (correct, total, base_ok, base_total)


def test_a_rerun_scores_nothing_again(guided_run):
    paths, report, _, _, config = guided_run
    stored = paths["guided"].read_text()
    scorer, again = CountingScorer(), {}
    guided.run(paths["images"], paths["features"], paths["pairs"], paths["matches"], paths["database"], paths["guided"],
               scorer, config, colmap.VerificationConfig(num_threads=2), EXTRACT.max_image_size, report=again)  # fmt: skip
    assert scorer.scored == 0 and again["guided"]["pairs_guided"] == 0
    assert again["guided"]["pairs_reused"] == report["pairs_guided"] and paths["guided"].read_text() == stored


def test_merge_keeps_one_match_per_keypoint():
    old = np.array([[0, 0], [1, 5], [2, 2]])
    new = np.array([[1, 1], [3, 2]])
    m, s = guided.merge_matches(old, np.array([np.nan, 0.1, 0.2], np.float32), new, np.array([0.9, 0.8], np.float32))
    assert m.tolist() == [[0, 0], [1, 1], [3, 2]] and np.allclose(s[1:], [0.9, 0.8])
