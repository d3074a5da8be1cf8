"""Tests of patchmatch.storage: hloc layout, round trips, resume and crash safety."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from patchmatch.features import Features, detect
from patchmatch.images import read_gray
from patchmatch.storage import (
    StorageError,
    has_features,
    has_matches,
    list_features,
    matches0_to_matches,
    matches_to_matches0,
    missing_features,
    missing_pairs,
    names_to_pair,
    names_to_pair_old,
    read_features,
    read_matches,
    write_features,
    write_matches,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ENTRY = DATA / "scenes" / "entry-P10" / "images"


def _features(n: int, seed: int = 0, width: int = 4000, height: int = 3000) -> Features:
    rng = np.random.default_rng(seed)
    kps = np.stack(
        [
            rng.uniform(0, width - 1, n),
            rng.uniform(0, height - 1, n),
            rng.uniform(1, 40, n),
            rng.uniform(0, 360, n),
        ],
        axis=1,
    ).astype(np.float32)
    desc = rng.uniform(0, 255, (n, 128)).astype(np.float32)
    scores = np.sort(rng.uniform(0, 0.1, n)).astype(np.float32)[::-1].copy()
    return Features(kps, desc, scores, np.array([width, height], np.int64))


def test_hloc_pair_names():
    assert names_to_pair("a.jpg", "b.jpg") == "a.jpg/b.jpg"
    assert names_to_pair("sub/a.jpg", "x/y/b.jpg") == "sub-a.jpg/x-y-b.jpg"
    assert names_to_pair_old("a.jpg", "b.jpg") == "a.jpg_b.jpg"


def test_features_round_trip_hloc_layout(tmp_path):
    path = tmp_path / "features.h5"
    feats = _features(300)
    write_features(path, "sub/dir/0001.jpg", feats)
    back = read_features(path, "sub/dir/0001.jpg")
    # float32 end to end: sub-pixel positions survive far above 1024 px
    np.testing.assert_array_equal(back.keypoints, feats.keypoints)
    np.testing.assert_array_equal(back.descriptors, feats.descriptors)
    np.testing.assert_array_equal(back.scores, feats.scores)
    np.testing.assert_array_equal(back.image_size, [4000, 3000])
    with h5py.File(path, "r") as fd:  # the layout hloc's readers expect
        grp = fd["sub"]["dir"]["0001.jpg"]
        assert grp["keypoints"].shape == (300, 2) and grp["keypoints"].dtype == np.float32
        assert grp["descriptors"].shape == (128, 300)
        assert grp["scales"].shape == grp["orientations"].shape == grp["scores"].shape == (300,)
        assert list(grp["image_size"][()]) == [4000, 3000]
    assert list_features(path) == ["sub/dir/0001.jpg"]
    assert has_features(path, "sub/dir/0001.jpg") and not has_features(path, "other.jpg")


def test_features_real_sift_and_empty(tmp_path):
    if not ENTRY.is_dir():
        pytest.skip(f"real data not found at {ENTRY} (see shared/data/README.md)")
    image, _ = read_gray(ENTRY / "0000.jpg", max_size=640)
    feats = detect(image, max_keypoints=500)
    path = tmp_path / "f.h5"
    write_features(path, "0000.jpg", feats)
    empty = Features(np.zeros((0, 4), np.float32), np.zeros((0, 128), np.float32), np.zeros(0, np.float32), feats.image_size)
    write_features(path, "blank.png", empty)
    back = read_features(path, "0000.jpg")
    np.testing.assert_array_equal(back.keypoints, feats.keypoints)
    np.testing.assert_array_equal(back.descriptors, feats.descriptors)
    assert len(read_features(path, "blank.png")) == 0
    assert missing_features(path, ["0000.jpg", "blank.png", "0001.jpg"]) == ["0001.jpg"]


def test_features_rewrite_replaces(tmp_path):
    path = tmp_path / "f.h5"
    write_features(path, "a.jpg", _features(50, seed=1))
    write_features(path, "a.jpg", _features(20, seed=2))
    assert len(read_features(path, "a.jpg")) == 20


def test_features_shape_errors(tmp_path):
    bad = _features(10)
    bad.scores = bad.scores[:5]
    with pytest.raises(ValueError, match="a.jpg: inconsistent"):
        write_features(tmp_path / "f.h5", "a.jpg", bad)
    write_features(tmp_path / "f.h5", "b.jpg", _features(3))
    with pytest.raises(KeyError, match="no complete features for 'c.jpg'"):
        read_features(tmp_path / "f.h5", "c.jpg")


def test_incomplete_group_is_absent(tmp_path):
    """A group without the completion flag, as a kill mid-write leaves it, counts as missing."""
    path = tmp_path / "f.h5"
    write_features(path, "done.jpg", _features(10))
    with h5py.File(path, "a") as fd:  # half-written: datasets but no flag
        grp = fd.create_group("half.jpg")
        grp.create_dataset("keypoints", data=np.zeros((5, 2), np.float32))
    assert list_features(path) == ["done.jpg"]
    assert missing_features(path, ["done.jpg", "half.jpg"]) == ["half.jpg"]
    with pytest.raises(KeyError):
        read_features(path, "half.jpg")
    write_features(path, "half.jpg", _features(7))  # redo replaces the debris
    assert len(read_features(path, "half.jpg")) == 7

    mpath = tmp_path / "m.h5"
    with h5py.File(mpath, "a") as fd:
        fd.create_group(names_to_pair("a.jpg", "b.jpg")).create_dataset("matches0", data=np.zeros(3, np.int32))
    assert not has_matches(mpath, "a.jpg", "b.jpg")


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "features.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(StorageError, match="features.h5: cannot open as HDF5"):
        list_features(path)
    with pytest.raises(StorageError, match="features.h5"):
        write_features(path, "a.jpg", _features(3))


def test_matches_round_trip_both_orders(tmp_path):
    path = tmp_path / "matches.h5"
    n0 = 40000  # beyond int16: hloc's old files could not index this
    matches = np.array([[5, 7], [39999, 0], [100, 35000]], np.int64)
    scores = np.array([0.5, -1.25, 3.0], np.float32)
    write_matches(path, "sub/a.jpg", "b.jpg", matches, scores, num_keypoints0=n0)
    with h5py.File(path, "r") as fd:
        grp = fd["sub-a.jpg"]["b.jpg"]
        assert grp["matches0"].shape == (n0,) and grp["matches0"].dtype == np.int32
        assert grp["matching_scores0"].dtype == np.float32
        assert (grp["matches0"][()] >= 0).sum() == 3
    m, s = read_matches(path, "sub/a.jpg", "b.jpg")
    np.testing.assert_array_equal(m, matches[np.argsort(matches[:, 0])])
    np.testing.assert_array_equal(s, scores[np.argsort(matches[:, 0])])
    m_rev, s_rev = read_matches(path, "b.jpg", "sub/a.jpg")  # asked the other way round
    order = np.argsort(matches[:, 1])
    np.testing.assert_array_equal(m_rev, matches[order][:, ::-1])
    np.testing.assert_array_equal(s_rev, scores[order])
    assert has_matches(path, "b.jpg", "sub/a.jpg")
    assert missing_pairs(path, [("b.jpg", "sub/a.jpg"), ("b.jpg", "c.jpg")]) == [("b.jpg", "c.jpg")]
    # rewriting in the other order replaces, never duplicates
    write_matches(path, "b.jpg", "sub/a.jpg", np.array([[1, 2]]), np.array([9.0]), num_keypoints0=10)
    with h5py.File(path, "r") as fd:
        assert "sub-a.jpg/b.jpg" not in fd and "b.jpg/sub-a.jpg" in fd
    np.testing.assert_array_equal(read_matches(path, "sub/a.jpg", "b.jpg")[0], [[2, 1]])


def test_matches_empty_and_errors(tmp_path):
    path = tmp_path / "m.h5"
    write_matches(path, "a.jpg", "b.jpg", np.zeros((0, 2), np.int64), np.zeros(0), num_keypoints0=0)
    m, s = read_matches(path, "a.jpg", "b.jpg")
    assert m.shape == (0, 2) and s.shape == (0,)
    with pytest.raises(ValueError, match="matched twice"):
        matches_to_matches0(np.array([[1, 2], [1, 3]]), np.zeros(2), 5)
    with pytest.raises(ValueError, match="out of range"):
        matches_to_matches0(np.array([[5, 2]]), np.zeros(1), 5)
    with pytest.raises(ValueError, match="self pair"):
        write_matches(path, "a.jpg", "a.jpg", np.zeros((0, 2)), np.zeros(0), 0)
    with pytest.raises(KeyError, match="no complete matches"):
        read_matches(path, "a.jpg", "c.jpg")
    m0, s0 = matches_to_matches0(np.array([[3, 1], [0, 4]]), np.array([1.0, 2.0]), 5)
    np.testing.assert_array_equal(m0, [4, -1, -1, 1, -1])
    np.testing.assert_array_equal(matches0_to_matches(m0, s0)[0], [[0, 4], [3, 1]])


def test_a_pairs_candidate_count_is_kept_when_its_matches_are_rewritten_without_one(tmp_path):
    from patchmatch import storage

    path = tmp_path / "m.h5"
    m, s = np.array([[0, 1], [2, 3]]), np.array([0.5, 0.7], np.float32)
    storage.write_matches(path, "a", "b", m, s, 5, candidates=40)
    storage.write_matches(path, "b", "c", m, s, 5, candidates=7)
    assert storage.stored_candidates(path, [("a", "b"), ("c", "b"), ("a", "c")]) == 47
    storage.write_matches(path, "b", "a", m[:, ::-1], s, 5)  # merged matches (guided): the count stays
    assert storage.stored_candidates(path, [("a", "b")]) == 40
    storage.write_matches(path, "a", "b", m, s, 5, candidates=3)
    assert storage.stored_candidates(path, [("a", "b")]) == 3
    storage.write_matches(path, "a", "d", m, s, 5)
    assert storage.stored_candidates(path, [("a", "d")]) == 0 and storage.stored_candidates(tmp_path / "no.h5", [("a", "b")]) == 0
