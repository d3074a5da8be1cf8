"""Brown-format ground-truth patch sets of real scenes (``patchmatch make-patches``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from patchmatch.cli import main
from patchmatch.datasets.brown import BrownDataset
from patchmatch.datasets.patchset import SIFT_FILE, find_pair_files, pair_file, variant_root
from patchmatch.datasets.scenes import load_scene, scene_from_colmap
from tests.conftest import shared_path

NAMES = ["0003.jpg", "0004.jpg", "0005.jpg"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ps") / "entry3"
    scene = shared_path("scenes", "entry-P10")
    assert main(["-q", "make-patches", str(scene), str(out), "--images", *NAMES, "--max-keypoints", "1000"]) == 0
    return out


def test_pair_file_names():
    assert pair_file("random", 100000) == "m50_100000_100000_0.txt"
    assert pair_file("hard", 12) == "m50_hard_12_12_0.txt"
    with pytest.raises(ValueError, match="protocol"):
        pair_file("easy", 3)


def test_make_patches_writes_two_brown_variants(built):
    summary = json.loads((built / "summary.json").read_text())
    assert summary["images"] == NAMES and summary["num_tracks"] > 20
    assert summary["config"]["tracks"]["max_keypoints"] == 1000
    assert sum(int(k) * v for k, v in summary["track_length_histogram"].items()) == summary["num_observations"]
    sets = {v: BrownDataset(variant_root(built, upright=v == "upright")) for v in ("oriented", "upright")}
    n = summary["num_patches"]
    for v, ds in sets.items():
        assert len(ds) == n and ds.patches.shape == (n, 64, 64) and ds.patches.dtype == np.uint8
        files = find_pair_files(ds.root)
        assert [f.name for f in files["random"]] == [summary["protocols"]["random"]["file"]]
        assert [f.name for f in files["hard"]] == [summary["protocols"]["hard"]["file"]]
        for kind, (f,) in files.items():
            pr = ds.pairs(f.name)
            assert len(pr.index) == summary["protocols"][kind]["pairs"]
            assert 2 * pr.labels.sum() == len(pr.labels)  # balanced, labels from point ids
    ori, upr = sets["oriented"], sets["upright"]
    assert np.array_equal(ori.point_ids, upr.point_ids)
    assert np.abs(upr.interest[:, 3]).max() == 0 and np.abs(ori.interest[:, 3]).max() > 10
    # Same keypoints, different normalisation: patches differ unless the angle is ~0.
    assert not np.array_equal(np.asarray(ori.patches), np.asarray(upr.patches))
    sift = np.load(ori.root / SIFT_FILE)
    assert sift.shape == (n, 128) and sift.dtype == np.uint8
    # Patches outside every track have point ids of their own: they never form a match.
    ids, counts = np.unique(ori.point_ids, return_counts=True)
    assert (counts == 1).sum() == summary["num_patches_outside_tracks"]


def test_hard_negatives_share_the_image_pair_of_their_positive(built):
    ds = BrownDataset(variant_root(built))
    (f,) = find_pair_files(ds.root)["hard"]
    pr = ds.pairs(f.name)
    img = ds.interest[:, 0].astype(int)
    neg = pr.index[~pr.labels]
    assert (img[neg[:, 0]] != img[neg[:, 1]]).all()  # across images, like the matcher's candidates
    pos = pr.index[pr.labels]
    assert (img[pos[:, 0]] != img[pos[:, 1]]).all()


def test_make_patches_refuses_bad_input(built, tmp_path, capsys):
    scene = shared_path("scenes", "entry-P10")
    assert main(["-q", "make-patches", str(scene), str(built)]) == 2  # exists, no --overwrite
    assert "exists" in capsys.readouterr().err
    assert main(["-q", "make-patches", str(scene), str(tmp_path / "x"), "--images", "nope.jpg"]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    assert main(["-q", "make-patches", str(tmp_path), str(tmp_path / "y")]) == 2
    assert "neither cameras.json nor a COLMAP model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def _write_text_model(scene_dir: Path, names: list[str], out: Path) -> None:
    """A COLMAP text model (PINHOLE, COLMAP's +0.5 pixel convention) of ground-truth cameras."""
    import pycolmap

    scene = load_scene(scene_dir)
    out.mkdir(parents=True)
    cams, imgs = [], []
    for i, n in enumerate(names, 1):
        c = scene.cameras[n]
        cams.append(f"{i} PINHOLE {c.width} {c.height} {float(c.K[0, 0])!r} {float(c.K[1, 1])!r} {float(c.K[0, 2]) + 0.5!r} {float(c.K[1, 2]) + 0.5!r}")
        q = pycolmap.Rotation3d(c.R).quat  # x, y, z, w
        imgs.append(f"{i} {float(q[3])!r} {float(q[0])!r} {float(q[1])!r} {float(q[2])!r} {' '.join(repr(float(v)) for v in c.t)} {i} {n}\n\n")  # second line: no 2D points
    (out / "cameras.txt").write_text("\n".join(cams) + "\n")
    (out / "images.txt").write_text("".join(imgs))
    (out / "points3D.txt").write_text("")


def test_scene_from_colmap_model_reproduces_the_cameras(tmp_path):
    src = shared_path("scenes", "entry-P10")
    _write_text_model(src, NAMES, tmp_path / "sparse")
    scene = scene_from_colmap(tmp_path / "sparse", src / "images", tmp_path / "scene")
    truth = load_scene(src)
    assert scene.names == NAMES
    for n in NAMES:
        a, b = scene.cameras[n], truth.cameras[n]
        assert np.allclose(a.K, b.K, atol=1e-6) and np.allclose(a.R, b.R, atol=1e-5) and np.allclose(a.t, b.t, atol=1e-6)
        assert scene.image_path(n).is_file()
    with pytest.raises(FileNotFoundError, match="missing"):
        scene_from_colmap(tmp_path / "sparse", tmp_path, tmp_path / "scene2")


def test_make_patches_from_a_colmap_model(tmp_path):
    src = shared_path("scenes", "entry-P10")
    _write_text_model(src, NAMES[:2] + ["0006.jpg"], tmp_path / "sparse")
    out = tmp_path / "set"
    assert main(["-q", "make-patches", str(tmp_path / "sparse"), str(out)]) == 2  # no --image-dir
    code = main(["-q", "make-patches", str(tmp_path / "sparse"), str(out), "--image-dir", str(src / "images"),
                 "--max-keypoints", "600", "--min-track-length", "2"])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_tracks"] > 10 and summary["source"].endswith("sparse")
    assert summary["scene_folder"].endswith("set.undistorted")


def test_overwrite_never_deletes_what_is_not_a_patch_set(tmp_path, capsys):
    scene = shared_path("scenes", "entry-P10")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("x")
    args = ["--images", *NAMES[:2], "--max-keypoints", "300"]
    assert main(["-q", "make-patches", str(scene), str(precious), "--overwrite", *args]) == 2
    assert "not a patch set" in capsys.readouterr().err and (precious / "keep.txt").is_file()
    # OUT equal to or holding the input scene is refused before any work.
    from patchmatch.datasets.patchset import write_patch_set

    with pytest.raises(ValueError, match="would hold the input"):
        write_patch_set(scene, scene.parent, NAMES, overwrite=True)
    with pytest.raises(ValueError, match="more than once"):
        write_patch_set(scene, tmp_path / "dup", [NAMES[0], NAMES[0], NAMES[1]])
    assert not (tmp_path / "dup").exists()


def test_colmap_model_checks_come_before_any_work_and_stale_copies_are_rebuilt(tmp_path, capsys):
    src = shared_path("scenes", "entry-P10")
    _write_text_model(src, NAMES, tmp_path / "a")
    _write_text_model(src, ["0006.jpg", "0007.jpg"], tmp_path / "b")
    s1 = scene_from_colmap(tmp_path / "a", src / "images", tmp_path / "und")
    assert s1.names == NAMES
    s2 = scene_from_colmap(tmp_path / "b", src / "images", tmp_path / "und")  # other model: rebuilt
    assert s2.names == ["0006.jpg", "0007.jpg"]
    from patchmatch.datasets.scenes import SceneError

    with pytest.raises(SceneError, match="not registered"):
        scene_from_colmap(tmp_path / "a", src / "images", tmp_path / "und2", names=["0009.jpg"])
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    temple = shared_path("scenes", "temple-ring", "images")
    for n in NAMES:  # 640x480 images where the model says 1536x1024
        (wrong / n).symlink_to(next(temple.iterdir()))
    with pytest.raises(SceneError, match="640x480"):
        scene_from_colmap(tmp_path / "a", wrong, tmp_path / "und3")
    assert not (tmp_path / "und2").exists() and not (tmp_path / "und3").exists()
    assert not (tmp_path / "und3.partial").exists()


def test_magnification_is_recorded_and_cuts_the_patches(built, tmp_path, capsys):
    from patchmatch.datasets.patchset import set_magnification
    from patchmatch.images import read_gray
    from patchmatch.patches import extract_patches

    wide = tmp_path / "entry3-m8"
    scene = shared_path("scenes", "entry-P10")
    assert main(["-q", "make-patches", str(scene), str(wide), "--images", *NAMES, "--max-keypoints", "1000", "--magnification", "8"]) == 0
    assert json.loads((built / "summary.json").read_text())["magnification"] == 6.0
    assert set_magnification(wide) == 8.0 and set_magnification(wide / "oriented") == 8.0 and set_magnification(built) == 6.0
    ds6, ds8 = BrownDataset(variant_root(built)), BrownDataset(variant_root(wide))
    assert np.array_equal(ds6.interest, ds8.interest)  # the same keypoints and pairs, cut wider
    first = np.flatnonzero(ds8.interest[:, 0] == 0)[:50]
    image, _ = read_gray(scene / "images" / NAMES[0])
    kp = np.c_[ds8.interest[first, 1:3], ds8.interest[first, 4], ds8.interest[first, 3]]
    p8, p6 = np.asarray(ds8.patches[first], np.float32), np.asarray(ds6.patches[first], np.float32)
    # interest.txt rounds the positions to 1/1000 px: within a grey level or so of a fresh crop
    assert np.abs(p8 - extract_patches(image, kp, magnification=8)).mean() < 0.5
    assert np.abs(p8 - p6).mean() > 5 * np.abs(p6 - extract_patches(image, kp)).mean()
    # a set written before magnifications were recorded is at the default; a plain folder has none
    old = tmp_path / "old"
    old.mkdir()
    summary = json.loads((built / "summary.json").read_text())
    del summary["magnification"]
    (old / "summary.json").write_text(json.dumps(summary))
    assert set_magnification(old) == 6.0 and set_magnification(tmp_path) is None
    for value in (None, -1, "8", True):
        (old / "summary.json").write_text(json.dumps({**summary, "magnification": value}))
        with pytest.raises(ValueError, match=rf"{old / 'summary.json'}: magnification must be a number in \[1, 32\]"):
            set_magnification(old)
    for bad in ("0", "-2", "nan", "0.5", "1e9"):
        assert main(["-q", "make-patches", str(scene), str(tmp_path / "x"), "--magnification", bad]) == 2
        assert "magnification must be a number in [1, 32]" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_build_split_keeps_a_set_only_at_the_asked_magnification(tmp_path):
    from patchmatch.datasets.patchset import FORMAT
    from patchmatch.datasets.split import build_split

    scenes = shared_path("scenes")
    names = {"entry-P10-test", "temple-ring-test", "dtu-scan65-test"}
    for name in names:  # "built" sets, cut at the default
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"format": FORMAT, "magnification": 6.0}))
    assert set(build_split(scenes, tmp_path, ("test",))) == names
    with pytest.raises(FileExistsError, match="entry-P10-test: cut at magnification 6, not 8; pass --overwrite"):
        build_split(scenes, tmp_path, ("test",), magnification=8.0)


def test_a_set_is_recut_at_another_magnification(built, tmp_path, capsys):
    from patchmatch.datasets.patchset import set_magnification

    wide = tmp_path / "wide"
    assert main(["-q", "make-patches", str(built), str(wide), "--magnification", "8"]) == 0
    assert set_magnification(wide) == 8.0
    summary = json.loads((wide / "summary.json").read_text())
    assert summary["recut_from"] == str(built) and summary["num_patches"] == json.loads((built / "summary.json").read_text())["num_patches"]
    for v in ("oriented", "upright"):
        a, b = BrownDataset(variant_root(built, v == "upright")), BrownDataset(variant_root(wide, v == "upright"))
        assert np.array_equal(a.point_ids, b.point_ids) and np.array_equal(a.interest, b.interest)
        assert [f.name for f in sorted(a.root.glob("m50_*"))] == [f.name for f in sorted(b.root.glob("m50_*"))]
        assert np.abs(np.asarray(a.patches, np.float32) - np.asarray(b.patches, np.float32)).mean() > 5
    # re-cut at its own magnification: the same patches up to interest.txt's rounding
    same = tmp_path / "same"
    assert main(["-q", "make-patches", str(built), str(same), "--magnification", "6"]) == 0
    a, b = BrownDataset(variant_root(built)).patches, BrownDataset(variant_root(same)).patches
    assert np.mean(np.asarray(a) != np.asarray(b)) < 0.01
    assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 8
    # without --magnification, or with scene options, a re-cut is refused; an existing OUT is kept
    assert main(["-q", "make-patches", str(built), str(tmp_path / "x")]) == 2
    assert "pass --magnification" in capsys.readouterr().err
    assert main(["-q", "make-patches", str(built), str(tmp_path / "x"), "--magnification", "8", "--images", NAMES[0]]) == 2
    assert "--images" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["-q", "make-patches", str(built), str(wide), "--magnification", "9"]) == 2
    assert set_magnification(wide) == 8.0


def test_recut_refuses_what_it_cannot_redo(built, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    assert main(["-q", "make-patches", str(copy), str(tmp_path / "w"), "--magnification", "8", "--warps", "1"]) == 2
    assert "--warps does not apply" in capsys.readouterr().err
    assert main(["-q", "make-patches", str(copy), str(tmp_path / "w"), "--magnification", "8", "--max-keypoints", "10"]) == 2
    assert "--max-keypoints do(es) not apply" in capsys.readouterr().err
    assert main(["-q", "make-patches", str(copy / "oriented"), str(tmp_path / "w"), "--magnification", "8"]) == 2
    assert "not a set written by make-patches" in capsys.readouterr().err
    rows = (copy / "oriented" / "interest.txt").read_text().splitlines()
    (copy / "oriented" / "interest.txt").write_text("\n".join(rows[:100]) + "\n")
    assert main(["-q", "make-patches", str(copy), str(tmp_path / "w"), "--magnification", "8"]) == 2
    assert "100 keypoints, the summary lists" in capsys.readouterr().err
    assert not (tmp_path / "w").exists() and not (tmp_path / "w.partial").exists()
    summary = json.loads((built / "summary.json").read_text())
    assert Path(summary["scene_folder"]).is_absolute() and Path(summary["source"]).is_absolute()


def test_split_roles_keep_benchmarks_consistent_and_build_as_detected_sets():
    from patchmatch.datasets.split import TEST_SCENES, role_config, split_sets
    from patchmatch.datasets.tracks import PairSetConfig, TrackConfig

    sets = split_sets(shared_path("scenes"), ("detected",))
    assert [s.name for s in sets] == [f"{s}-detected" for s in TEST_SCENES] and "dtu-scan65" in TEST_SCENES
    base = PairSetConfig(tracks=TrackConfig(detected_share=0.25))
    assert role_config(base, "train") == base
    assert role_config(base, "test").tracks.detected_share == 0 and role_config(base, "test").tracks.orientation_tol_deg == 30
    assert role_config(base, "detected").tracks.orientation_tol_deg == 0  # each view's own detection
    assert role_config(base, "val-detected") == role_config(base, "detected")
    val = {s.name: s.images for s in split_sets(shared_path("scenes"), ("val", "val-detected"))}
    assert sorted(val) == ["Herz-Jesus-P25-val", "Herz-Jesus-P25-val-detected", "castle-P30-val", "castle-P30-val-detected"]
    assert val["castle-P30-val"] == val["castle-P30-val-detected"] and len(val["castle-P30-val"]) == 6
