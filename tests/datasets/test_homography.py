"""Patch sets from homography pairs: matches obey the homography, the Brown-format set reads back,
bad pair folders are named."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from patchmatch.datasets.brown import BrownDataset
from patchmatch.datasets.homography import (
    HomographyError,
    HomographyPairConfig,
    _carry,
    homography_matches,
    write_homography_set,
)
from patchmatch.datasets.tracks import ImageFeatures
from patchmatch.features import detect
from tests.conftest import shared_path

# a rotation by 30°, a zoom by 1.25 and a perspective term: orientations and sizes must follow
H_SYN = np.array([[1.25 * np.cos(0.52), -1.25 * np.sin(0.52), 140.0], [1.25 * np.sin(0.52), 1.25 * np.cos(0.52), -60.0],
                  [1e-5, 2e-5, 1.0]])  # fmt: skip


def _pair(tmp_path, name="p0", source="graf_1_2"):
    img = cv2.imread(str(shared_path("homography", "graf", source, "b.png" if source != "graf_1_2" else "a.png")),
                     cv2.IMREAD_GRAYSCALE)  # fmt: skip
    warped = cv2.warpPerspective(img, H_SYN, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR)
    d = tmp_path / "pairs" / name
    d.mkdir(parents=True)
    cv2.imwrite(str(d / "a.png"), img)
    cv2.imwrite(str(d / "b.png"), warped)
    np.savetxt(d / "H.txt", H_SYN)
    return img, warped, d


def _feats(name, img):
    f = detect(img)
    return ImageFeatures(name, np.asarray(f.keypoints, np.float32), np.asarray(f.descriptors, np.float32))


def test_matches_follow_the_homography_in_position_size_and_orientation(tmp_path):
    img, warped, _ = _pair(tmp_path)
    fa, fb = _feats("a", img), _feats("b", warped)
    m = homography_matches(fa, fb, H_SYN)
    assert len(m) > 300
    assert len(np.unique(m[:, 0])) == len(m) and len(np.unique(m[:, 1])) == len(m)  # one-to-one
    p, size, angle = _carry(H_SYN, fa.keypoints[m[:, 0]])
    kb = fb.keypoints[m[:, 1]].astype(np.float64)
    assert np.linalg.norm(p - kb[:, :2], axis=1).max() <= 1.0
    assert np.abs(np.log(size / kb[:, 2])).max() <= np.log(1.4)
    diff = np.abs((angle - kb[:, 3] + 180) % 360 - 180)
    assert diff.max() <= 20.0 and np.median(diff) < 5.0
    # the identity on the same image matches every location with itself, the wrong homography almost nothing
    same = homography_matches(fa, fa, np.eye(3))
    assert (same[:, 0] == same[:, 1]).all() and len(same) > 0.8 * len(fa.locations().keypoints)
    assert len(homography_matches(fa, fb, np.eye(3))) < 0.05 * len(m)


def test_set_reads_back_with_matching_patches(tmp_path):
    _pair(tmp_path, "p0")
    _pair(tmp_path, "p1", "graf_1_6")  # another image: negatives across the two pairs are other places
    s = write_homography_set(tmp_path / "pairs", tmp_path / "set")
    assert s["num_tracks"] > 600 and set(s["matches_per_pair"]) == {"p0", "p1"}
    ds = BrownDataset(tmp_path / "set" / "oriented")
    pairs = ds.pairs(s["protocols"]["random"]["file"])
    assert pairs.labels.sum() == s["num_tracks"] == len(pairs.labels) // 2
    P = np.asarray(ds.patches).astype(np.float32)
    pos = pairs.index[pairs.labels.astype(bool)]
    neg = pairs.index[~pairs.labels.astype(bool)]

    def ncc(ix):
        a = P[ix[:, 0]].reshape(len(ix), -1)
        b = P[ix[:, 1]].reshape(len(ix), -1)
        a = (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-6)
        b = (b - b.mean(1, keepdims=True)) / (b.std(1, keepdims=True) + 1e-6)
        return (a * b).mean(1)

    assert np.median(ncc(pos)) > 0.8 and np.median(ncc(neg)) < 0.3  # the two patches of a positive show one place
    with pytest.raises(FileExistsError):
        write_homography_set(tmp_path / "pairs", tmp_path / "set")


def test_bad_pair_folders_are_named(tmp_path):
    _, _, d = _pair(tmp_path)
    with pytest.raises(HomographyError, match="no pair folders"):
        write_homography_set(tmp_path / "empty_missing", tmp_path / "o1")
    for text, message, out in (
        ("1 0 0\n0 1 0\n", r"H\.txt: not a 3x3 matrix \(read 2 rows of 3\)", "o2"),
        ("1 0 0\n0 1 0\n0 0 nan\n", r"H\.txt: non-finite", "o2"),
        ("1 2 0\n2 4 0\n0 0 1\n", r"H\.txt: singular", "o2"),
        ("1 0 x\n0 1 0\n0 0 1\n", r"H\.txt: not a 3x3 matrix of numbers", "o3"),
    ):
        (d / "H.txt").write_text(text)
        with pytest.raises(HomographyError, match=message):
            write_homography_set(tmp_path / "pairs", tmp_path / out)
    np.savetxt(d / "H.txt", H_SYN)
    (d / "b.png").write_bytes(b"not a png")
    with pytest.raises(HomographyError, match=r"b\.png"):
        write_homography_set(tmp_path / "pairs", tmp_path / "o4")
    (d / "b.png").unlink()
    with pytest.raises(HomographyError, match=r"b\.png: missing"):
        write_homography_set(tmp_path / "pairs", tmp_path / "o5")
    shutil.copy(d / "a.png", d / "b.png")
    (d / "H.txt").unlink()  # a pair folder without its homography is named, not skipped
    with pytest.raises(HomographyError, match=r"p0/H\.txt: missing"):
        write_homography_set(tmp_path / "pairs", tmp_path / "o5")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))
    with pytest.raises(ValueError, match="must be below hard_exclusion_px"):
        HomographyPairConfig(max_px=9.0)


def test_homography_is_defined_up_to_scale_and_one_match_is_an_error(tmp_path):
    _, _, d = _pair(tmp_path)
    np.savetxt(d / "H.txt", H_SYN * 1e-5)  # the same homography at another scale
    s = write_homography_set(tmp_path / "pairs", tmp_path / "set")
    assert s["num_tracks"] > 300
    img = cv2.imread(str(d / "a.png"), cv2.IMREAD_GRAYSCALE)
    one = tmp_path / "one" / "p"
    one.mkdir(parents=True)
    cv2.imwrite(str(one / "a.png"), img[:40, :40])  # tiny images: at most a track or two, never a hang
    cv2.imwrite(str(one / "b.png"), img[:40, :40])
    np.savetxt(one / "H.txt", np.eye(3))
    with pytest.raises(ValueError, match="at least 2 tracks|no keypoint matches"):
        write_homography_set(tmp_path / "one", tmp_path / "set1")


def test_make_patches_cli_builds_a_homography_set(tmp_path):
    from patchmatch.cli import main

    graf = shared_path("homography", "graf")
    pairs = tmp_path / "graf"
    shutil.copytree(graf / "graf_1_3", pairs / "graf_1_3")  # one pair keeps the test short
    assert main(["-q", "make-patches", str(pairs), str(tmp_path / "set")]) == 0
    assert (tmp_path / "set" / "upright").is_dir() and (tmp_path / "set" / "summary.json").is_file()
    assert main(["-q", "make-patches", str(pairs), str(tmp_path / "set"), "--images", "x"]) == 2
    assert main(["-q", "make-patches", str(pairs), str(tmp_path / "set2"), "--epipolar-px", "0.5"]) == 2
    assert main(["-q", "make-patches", str(pairs), str(tmp_path / "set2"), "--min-track-length", "3"]) == 2  # even at its default
    assert not (tmp_path / "set2").exists()


def test_a_single_track_is_an_error_not_a_hang(tmp_path):
    from patchmatch.datasets.homography import _PlanarScene, _PlaneView
    from patchmatch.datasets.tracks import Tracks, build_pair_set

    kp = np.array([[10, 10, 3, 0]], np.float32)
    feats = {n: ImageFeatures(n, kp, np.ones((1, 128), np.float32)) for n in ("a", "b")}
    tracks = Tracks(np.array([0, 1], np.int32), np.array([0, 0], np.int32), np.array([0, 0], np.int32),
                    np.array([[10.0, 10.0, 1.0]]), ["a", "b"])  # fmt: skip
    scene = _PlanarScene(tmp_path, {"a": _PlaneView(np.eye(3)), "b": _PlaneView(np.eye(3))})
    with pytest.raises(ValueError, match="1 track\\(s\\); random negatives need at least 2"):
        build_pair_set(scene, feats, tracks)
