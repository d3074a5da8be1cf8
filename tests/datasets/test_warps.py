"""Homography pairs from single photographs: the warp is what H.txt says, draws are seeded, a rerun
resumes, unreadable images are skipped by name, and make-patches --warps builds a trainable set."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from patchmatch.cli import main
from patchmatch.datasets.homography import homography_matches, pair_folders
from patchmatch.datasets.tracks import ImageFeatures
from patchmatch.datasets.warps import WarpConfig, WarpFolderError, _overlap, random_homography, write_warped_pairs
from patchmatch.features import detect
from patchmatch.training.data import load_pair_data
from tests.conftest import shared_path

NO_DEGRADATION = dict(gamma=1.0, contrast=1.0, blur_sigma=0.0, noise_sigma=0.0)


def _photos(tmp_path, n=2):
    src = sorted(shared_path("scenes", "lund", "images").glob("*.jpg"))[:n]
    d = tmp_path / "photos"
    d.mkdir()
    for p in src:  # smaller copies keep the test fast
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(d / (p.stem + ".png")), cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    return d


def _feats(name, img):
    f = detect(img, max_keypoints=2048)
    return ImageFeatures(name, np.asarray(f.keypoints, np.float32), np.asarray(f.descriptors, np.float32))


def test_random_homography_is_seeded_and_keeps_the_overlap():
    config = WarpConfig(min_overlap=0.6)
    Hs = [random_homography(640, 480, config, np.random.default_rng(s)) for s in range(20)]
    again = random_homography(640, 480, config, np.random.default_rng(3))
    np.testing.assert_array_equal(Hs[3], again)
    assert all(H[2, 2] == 1.0 and _overlap(H, 640, 480) >= 0.6 for H in Hs)
    assert len({round(float(H[0, 1]), 6) for H in Hs}) == 20  # different draws
    with pytest.raises(ValueError, match="zoom"):
        WarpConfig(zoom=0.5)


def test_pairs_follow_their_homography_and_a_rerun_resumes(tmp_path):
    photos = _photos(tmp_path)
    images = sorted(photos.iterdir())
    config = WarpConfig(per_image=2, seed=1, **NO_DEGRADATION)
    folders = write_warped_pairs(images, tmp_path / "pairs", config)
    assert len(folders) == 4 and pair_folders(tmp_path / "pairs") == folders
    a = cv2.imread(str(folders[0] / "a.png"), cv2.IMREAD_GRAYSCALE)
    b = cv2.imread(str(folders[0] / "b.png"), cv2.IMREAD_GRAYSCALE)
    H = np.loadtxt(folders[0] / "H.txt")
    expected = cv2.warpPerspective(a, H, (a.shape[1], a.shape[0]), flags=cv2.INTER_LINEAR)
    assert np.abs(expected.astype(int) - b.astype(int)).max() <= 1  # H.txt maps pixels of a to pixels of b
    m = homography_matches(_feats("a", a), _feats("b", b), H)
    assert len(m) > 100
    # a rerun keeps what is there; a lost pair is redrawn identically
    mtime = (folders[1] / "b.png").stat().st_mtime_ns
    H3 = np.loadtxt(folders[3] / "H.txt")
    for f in folders[3].iterdir():
        f.unlink()
    folders[3].rmdir()
    assert write_warped_pairs(images, tmp_path / "pairs", config) == folders
    assert (folders[1] / "b.png").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(np.loadtxt(folders[3] / "H.txt"), H3)


def test_degradation_changes_the_pixels_not_the_geometry(tmp_path):
    photos = _photos(tmp_path, n=1)
    image = sorted(photos.iterdir())[0]
    plain = write_warped_pairs([image], tmp_path / "plain", WarpConfig(per_image=1, **NO_DEGRADATION))[0]
    degraded = write_warped_pairs([image], tmp_path / "degraded", WarpConfig(per_image=1, blur_probability=1.0))[0]
    np.testing.assert_array_equal(np.loadtxt(plain / "H.txt"), np.loadtxt(degraded / "H.txt"))
    pa, da = (cv2.imread(str(f / "b.png"), cv2.IMREAD_GRAYSCALE).astype(int) for f in (plain, degraded))
    assert np.abs(pa - da).mean() > 1.0


def test_unreadable_image_is_skipped_by_name(tmp_path, caplog):
    photos = _photos(tmp_path, n=1)
    bad = photos / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with caplog.at_level(logging.WARNING):
        folders = write_warped_pairs(sorted(photos.iterdir()), tmp_path / "pairs", WarpConfig(per_image=1))
    assert len(folders) == 1 and "broken.jpg" in caplog.text
    with pytest.raises(ValueError, match="none of the 1 source images could be used"):
        write_warped_pairs([bad], tmp_path / "none", WarpConfig(per_image=1))


def test_make_patches_warps_builds_a_training_set(tmp_path, capsys):
    photos = _photos(tmp_path)
    out = tmp_path / "warped-set"
    assert main(["make-patches", str(photos), str(out), "--warps", "1", "--max-keypoints", "1024"]) == 0
    assert "tracks" in capsys.readouterr().out
    assert (tmp_path / "warped-set.pairs").is_dir() and len(pair_folders(tmp_path / "warped-set.pairs")) == 2
    data = load_pair_data([out])
    assert len(data.positives) > 100 and len(data.hard_negatives) > 0
    # options of camera scenes are refused, naming them; an existing set is not overwritten
    assert main(["make-patches", str(photos), str(tmp_path / "x"), "--warps", "1", "--epipolar-px", "2"]) == 2
    assert "--epipolar-px" in capsys.readouterr().err
    assert main(["make-patches", str(photos), str(out), "--warps", "1"]) != 0
    assert main(["make-patches", str(photos), str(tmp_path / "y"), "--warps", "1", "--images", "nope.png"]) == 2
    assert "nope.png" in capsys.readouterr().err


def test_pairs_folder_is_tied_to_its_sources_and_settings(tmp_path):
    photos = _photos(tmp_path)
    images = sorted(photos.iterdir())
    out = tmp_path / "pairs"
    first = write_warped_pairs(images, out, WarpConfig(per_image=1, seed=0))
    H0 = np.loadtxt(first[0] / "H.txt")
    (out / "00001_x_0.partial").mkdir()  # an interrupted run's unfinished pair
    (out / "00001_x_0.partial" / "a.png").write_bytes(b"")
    assert write_warped_pairs(images, out, WarpConfig(per_image=1, seed=0)) == first
    assert not list(out.glob("*.partial"))
    for other in (WarpConfig(per_image=1, seed=5), WarpConfig(per_image=2, seed=0)):
        with pytest.raises(WarpFolderError, match="other images or settings"):
            write_warped_pairs(images, out, other)
    with pytest.raises(WarpFolderError, match="other images or settings"):
        write_warped_pairs(images[:1], out, WarpConfig(per_image=1, seed=0))
    again = write_warped_pairs(images[:1], out, WarpConfig(per_image=1, seed=5), overwrite=True)
    assert pair_folders(out) == again and len(again) == 1  # the earlier pairs are gone
    assert not np.array_equal(np.loadtxt(again[0] / "H.txt"), H0)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(WarpFolderError, match="no warps.json"):
        write_warped_pairs(images, foreign, WarpConfig(per_image=1), overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_too_small_images_are_skipped(tmp_path, caplog):
    photos = _photos(tmp_path, n=1)
    cv2.imwrite(str(photos / "line.png"), np.full((1, 300), 128, np.uint8))
    with caplog.at_level(logging.WARNING):
        folders = write_warped_pairs(sorted(photos.iterdir()), tmp_path / "pairs", WarpConfig(per_image=1))
    assert len(folders) == 1 and "line.png" in caplog.text and "too small" in caplog.text


def test_make_patches_warps_checks_before_any_work(tmp_path, capsys):
    photos = _photos(tmp_path, n=1)
    for extra, needle in ((["--warps", "0"], "--warps must be >= 1"), (["--warps", "1", "--size-ratio", "1"], "size_ratio"),
                          (["--warps", "1", "--seed", "-1"], "--seed")):  # fmt: skip
        assert main(["make-patches", str(photos), str(tmp_path / "s"), *extra]) == 2
        assert needle in capsys.readouterr().err
        assert not (tmp_path / "s.pairs").exists()
    assert main(["make-patches", str(photos), str(photos / "set"), "--warps", "1"]) == 2
    assert "inside the photographs' folder" in capsys.readouterr().err
    assert main(["make-patches", str(tmp_path / "missing"), str(tmp_path / "s"), "--warps", "1"]) == 2
    assert "folder of photographs" in capsys.readouterr().err


def test_changed_photo_damaged_pair_and_failed_run(tmp_path):
    photos = _photos(tmp_path)
    images = sorted(photos.iterdir())
    out = tmp_path / "pairs"
    folders = write_warped_pairs(images, out, WarpConfig(per_image=1))
    (folders[0] / "a.png").unlink()  # damaged since: drawn again on the rerun
    assert write_warped_pairs(images, out, WarpConfig(per_image=1)) == folders
    assert (folders[0] / "a.png").is_file()
    img = cv2.imread(str(images[1]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(images[1]), 255 - img)  # another picture under the same name
    with pytest.raises(WarpFolderError, match="other images or settings"):
        write_warped_pairs(images, out, WarpConfig(per_image=1))
    b_before = cv2.imread(str(folders[1] / "a.png"), cv2.IMREAD_GRAYSCALE)
    write_warped_pairs(images, out, WarpConfig(per_image=1), overwrite=True)
    assert not np.array_equal(cv2.imread(str(folders[1] / "a.png"), cv2.IMREAD_GRAYSCALE), b_before)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "warps.json").write_text('{"mine": 1}')  # not our manifest
    with pytest.raises(WarpFolderError, match="no warps.json of ours"):
        write_warped_pairs(images, odd, WarpConfig(per_image=1), overwrite=True)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match="could be used"):
        write_warped_pairs([bad], tmp_path / "none", WarpConfig(per_image=1))
    assert not (tmp_path / "none").exists()


def test_training_and_evaluation_name_a_misused_set(tmp_path, capsys, caplog, monkeypatch):
    photos = _photos(tmp_path, n=1)
    out = tmp_path / "w"
    assert main(["make-patches", str(photos), str(out), "--warps", "1", "--max-keypoints", "512"]) == 0
    import patchmatch.commands.evaluate as evaluate

    monkeypatch.setattr(evaluate, "load_scorers", lambda *a, **k: pytest.fail("the network loaded before the folder was checked"))
    assert main(["evaluate-patches", str(tmp_path / "w.pairs")]) == 2
    assert "did you mean" in capsys.readouterr().err
    with caplog.at_level(logging.WARNING):
        assert main(["-q", "train", "--data", str(out), "--val", str(out), "--out", str(tmp_path / "n.pt"), "--epochs", "1",
                     "--steps-per-epoch", "1", "--batch", "8", "--val-pairs", "16", "--threads", "1"]) == 0  # fmt: skip
    assert "also training sets" in caplog.text
