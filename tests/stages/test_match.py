"""Stage 3: the per-pair matching loop and matches.h5, resumed per pair."""

from __future__ import annotations

import shutil

import h5py
import numpy as np

from patchmatch import storage
from patchmatch.features import Features
from patchmatch.images import ImageReadError
from patchmatch.matching import MatchConfig
from patchmatch.stages import match, select_pairs
from tests.helpers import NCCScorer, shared_descriptor_scene

from .conftest import EXTRACT, MATCH


_scene = shared_descriptor_scene


def test_match_pairs_writes_each_pair_once_and_skips_unreadable_images():
    feats, pairs = _scene()
    patches = np.random.default_rng(0).integers(0, 256, (300, 64, 64), dtype=np.uint8)
    loaded, kept = [], {}

    def load(name, keep=None):
        loaded.append(name)
        kept[name] = keep
        if name == "im2":
            raise ImageReadError(f"/x/{name}: truncated JPEG")
        return patches

    written, scored = {}, {}

    def write(a, b, matches, scores, candidates):
        written.setdefault((a, b), (matches, scores))
        scored[(a, b)] = candidates

    config = MatchConfig(min_overlap=20, strong_overlap=50, min_partners=1, accept_ratio=None)
    summary = match.match_pairs(pairs, pairs, feats, load, NCCScorer(), config, write, workers=2)
    with_im2 = [p for p in pairs if "im2" in p and p in summary.plan.selected]
    assert sorted(summary.failed) == sorted(with_im2) and len(with_im2) >= 2
    assert loaded.count("im2") == 1 and summary.bad_images == {"im2": "/x/im2: truncated JPEG"}
    assert all(why.startswith("im2: ") for why in summary.failed.values())  # the same form for every pair
    assert list(written) == summary.written == [p for p in pairs if p not in summary.failed]
    unselected = [p for p in pairs if p not in summary.plan.selected]
    assert unselected and all(len(written[p][0]) == 0 for p in unselected)  # MatchConfig.unselected = "none"
    assert summary.candidates > 0 and len(written[("im0", "im1")][0]) > 0
    assert sum(scored.values()) == summary.candidates and all(scored[p] == 0 for p in unselected)
    # each image's patches are cut for the keypoints the network compares (match_pairs' plan) only
    assert all(k is not None and k.dtype == bool and k.shape == (len(feats[n]),) and k.any() for n, k in kept.items())


def test_run_matches_resumes_and_reports(chain, tmp_path):
    report = chain["report"]
    assert report["pairs"] == 6 and report["pairs_matched"] == 6 and report["pairs_reused"] == 0
    assert report["pairs_selected"] + report["pairs_not_selected"] + report["pairs_low_overlap"] == 6
    assert report["candidates_scored"] > 0
    h5 = shutil.copy(chain["matches"], tmp_path / "matches.h5")
    with h5py.File(h5, "a") as fd:  # an interrupted run: one pair never written
        del fd[storage.names_to_pair("0001.jpg", "0002.jpg")]
    again: dict = {}
    match.run(chain["images"], chain["features"], chain["pairs"], h5, NCCScorer(), MATCH, EXTRACT.max_image_size,
              report=again)  # fmt: skip
    assert again["pairs_matched"] == 1 and again["pairs_reused"] == 5
    m0, _ = storage.read_matches(chain["matches"], "0001.jpg", "0002.jpg")
    m1, _ = storage.read_matches(h5, "0001.jpg", "0002.jpg")
    np.testing.assert_array_equal(m0, m1)  # the same decision as in the first run
    assert len(select_pairs.read(chain["pairs"])) == 6


def test_features_are_streamed_not_all_held(chain, tmp_path, monkeypatch):
    """With room for no image's features beyond the current pair's, the stage reads them again
    from features.h5 as needed and makes the same matches."""
    held = []
    stream = match.stream_features

    def tiny(path, names):
        cache = stream(path, names)
        cache.budget = 0  # keeps only the two most recent images
        held.append(cache)
        return cache

    monkeypatch.setattr(match, "stream_features", tiny)
    h5 = tmp_path / "matches.h5"
    match.run(chain["images"], chain["features"], chain["pairs"], h5, NCCScorer(), MATCH, EXTRACT.max_image_size)
    assert len(held) == 1 and len(held[0].items) <= 2 and held[0].loaded > 4  # re-read, never all 4 at once
    for a, b in select_pairs.read(chain["pairs"]):
        np.testing.assert_array_equal(storage.read_matches(h5, a, b)[0], storage.read_matches(chain["matches"], a, b)[0])
