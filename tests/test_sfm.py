"""End-to-end tests of patchmatch.sfm on a small real subset of entry-P10.

One run on 5 real views (640 px, 512 keypoints) plus a truncated JPEG is shared
by the tests; each test that modifies a run works on a copy of its output.

The network is an untrained, seeded ``2ch`` model with ``k = 1`` candidates
(each keypoint's SIFT ratio-test neighbour): these tests check the pipeline's
structure (stages, storage, resume, errors) and that COLMAP recovers the
ground-truth geometry from what the pipeline writes, not the network's quality
(that is ``patchmatch compare``'s job, with the shipped weights).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from patchmatch import colmap, storage
from patchmatch.colmap import MapperConfig, VerificationConfig, read_reconstruction
from patchmatch.matching import MatchConfig
from patchmatch.models import build_model, save_checkpoint
from patchmatch.scoring import PatchScorer
from patchmatch import sfm
from patchmatch.sfm import SfmConfig, run_sfm, weights_fingerprint
from tests.conftest import shared_path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SCENE = DATA / "scenes" / "entry-P10"
NAMES = ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg"]

CONFIG = SfmConfig(
    max_keypoints=512,
    max_image_size=640,
    device="cpu",
    match=MatchConfig(k=1, max_ratio=0.8, min_score=float("-inf")),
    single_camera=True,
    verification=VerificationConfig(num_threads=2),
    mapper=MapperConfig(num_threads=2),
)


def _scorer(seed: int = 0) -> PatchScorer:
    torch.manual_seed(seed)
    return PatchScorer(build_model("2ch"), device="cpu")


def _image_dir(root: Path, names=NAMES, broken: bool = True) -> Path:
    if not SCENE.is_dir():
        pytest.skip(f"real data not found at {SCENE} (see shared/data/README.md)")
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    for name in names:  # links, the data is never copied
        (images / name).symlink_to(SCENE / "images" / name)
    if broken:  # a JPEG cut short, in a subfolder
        (images / "sub" / "broken.jpg").write_bytes((SCENE / "images" / "0009.jpg").read_bytes()[:4000])
    (images / "notes.txt").write_text("not an image")
    return images


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sfm")
    images = _image_dir(root)
    out = root / "out"
    report = run_sfm(images, out, CONFIG, scorer=_scorer(), ground_truth=SCENE / "cameras.json")
    return images, out, report


def _copy(out: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(out, dst)
    return dst


@pytest.mark.slow
def test_end_to_end_poses_match_ground_truth(run):
    images, out, report = run
    assert report["status"] == "complete"
    assert report["images"] == 6 and report["images_used"] == 5
    assert report["registered"] == 5 and report["unregistered"] == []
    assert report["points"] > 100 and report["mean_track_length"] > 2.0
    assert 0 < report["mean_reprojection_error"] < 1.5
    assert report["pairs"] == 10 and report["verified_pairs"] >= 8
    assert set(report["seconds"]) >= {"features", "matching", "database", "verification", "mapping"}
    # the relative rotations agree with the ground truth to about a degree
    pose = report["pose"]
    assert pose["registered"] == 5 and pose["pairs"] == 10
    assert pose["rotation_error_median_deg"] < 3.0
    assert pose["rotation_auc"]["2"] > 0.2
    # files
    assert json.loads((out / "report.json").read_text())["registered"] == 5
    model = read_reconstruction(out / "sparse" / "0")
    assert sorted(model.image(i).name for i in model.reg_image_ids()) == NAMES
    assert storage.list_features(out / "features.h5") == NAMES
    assert storage.missing_pairs(out / "matches.h5", [(a, b) for a in NAMES for b in NAMES if a < b]) == []
    assert len(report["viz"]) == 3 and all((out / "viz" / p).is_file() for p in report["viz"])
    assert "cameras.png" in report["viz"]


@pytest.mark.slow
def test_features_stored_in_original_pixels(run):
    images, out, _ = run
    feats = storage.read_features(out / "features.h5", "0000.jpg")
    assert list(feats.image_size) == [1536, 1024]  # detected at 640 px, stored at full size
    assert 0 < len(feats) <= 512
    assert feats.keypoints[:, 0].max() > 1000 and feats.keypoints[:, 1].max() > 640


@pytest.mark.slow
def test_bad_image_listed_and_others_processed(run):
    _, _, report = run
    assert [s["name"] for s in report["skipped"]] == ["sub/broken.jpg"]
    assert "truncated JPEG" in report["skipped"][0]["reason"]
    assert report["registered"] == 5


@pytest.mark.slow
def test_the_report_keeps_each_stage_as_it_finishes(run, tmp_path, monkeypatch):
    """A run killed mid-way (SIGKILL: no handler runs) leaves a report with the stages it finished,
    so the next call adds their seconds up."""
    import patchmatch.sfm as sfm_module

    images, out, _ = run
    out = _copy(out, tmp_path)
    seen = {}
    real = sfm_module.match.run

    seen_viz = []

    def matching(*args, **kwargs):
        seen.update(json.loads((out / "report.json").read_text()))
        seen_viz.extend((out / "viz").glob("*"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sfm_module.match, "run", matching)
    run_sfm(images, out, CONFIG, scorer=_scorer())
    assert seen["status"] == "running" and list(seen["seconds"]) == ["features"]
    assert not seen_viz  # the earlier call's pictures went with its model
    assert seen["features_reused"] == 5


@pytest.mark.slow
def test_resume_skips_done_work(run, tmp_path):
    images, out, first = run
    out = _copy(out, tmp_path)
    again = run_sfm(images, out, CONFIG, scorer=_scorer())
    assert again["resumed"] is True
    assert again["features_computed"] == 0 and again["features_reused"] == 5
    assert again["pairs_matched"] == 0 and again["pairs_reused"] == 10
    assert again["registered"] == 5
    # the network's work and the time are counted over every call that built the output
    assert first["candidates_scored"] > 0 and first["candidates_reused"] == 0
    assert again["candidates_scored"] == 0 and again["candidates_reused"] == first["candidates_scored"]
    assert again["seconds_earlier"] == pytest.approx(first["seconds_all_calls"], abs=0.01)
    assert again["seconds_all_calls"] == pytest.approx(first["seconds_all_calls"] + again["seconds_total"], abs=0.01)
    assert [s["name"] for s in again["skipped"]] == ["sub/broken.jpg"]  # still reported

    # an interrupted run: one image's features half-written, one pair never written
    with h5py.File(out / "features.h5", "a") as fd:
        del fd["0003.jpg"].attrs[storage.COMPLETE]
    with h5py.File(out / "matches.h5", "a") as fd:
        del fd[storage.names_to_pair("0001.jpg", "0002.jpg")]
    resumed = run_sfm(images, out, CONFIG, scorer=_scorer())
    assert resumed["features_computed"] == 1 and resumed["pairs_matched"] == 1
    assert resumed["registered"] == 5
    assert resumed["candidates_scored"] + resumed["candidates_reused"] == first["candidates_scored"]
    # detection is deterministic: the redone image's features are those of the first run
    np.testing.assert_array_equal(
        storage.read_features(out / "features.h5", "0003.jpg").keypoints,
        storage.read_features(run[1] / "features.h5", "0003.jpg").keypoints,
    )


@pytest.mark.slow
def test_corrupt_h5_is_moved_aside_and_recomputed(run, tmp_path):
    images, out, _ = run
    out = _copy(out, tmp_path)
    (out / "features.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # killed mid-metadata
    report = run_sfm(images, out, CONFIG, scorer=_scorer())
    assert report["features_computed"] == 5
    assert report["pairs_matched"] == 0  # the matches did not depend on the lost file's bytes
    assert report["notes"] and "features.h5 was unreadable" in report["notes"][0]
    assert len(list(out.glob("features.h5.corrupt-*"))) == 1
    assert report["registered"] == 5


@pytest.fixture
def no_viz(monkeypatch):
    monkeypatch.setattr(sfm, "NUM_VIZ_PAIRS", 0)


def test_refuses_to_overwrite_another_run(tmp_path, no_viz):
    images = _image_dir(tmp_path, NAMES[:3], broken=False)
    out = tmp_path / "out"
    small = SfmConfig(max_keypoints=128, max_image_size=320, match=CONFIG.match,
                      verification=CONFIG.verification, mapper=CONFIG.mapper)  # fmt: skip
    first = run_sfm(images, out, small, scorer=_scorer())
    assert first["pairs_matched"] == 3
    other = SfmConfig(**{**small.__dict__, "max_keypoints": 100})
    with pytest.raises(FileExistsError, match=r"other settings \(features.max_keypoints: 128 -> 100\)"):
        run_sfm(images, out, other, scorer=_scorer())
    with pytest.raises(FileExistsError, match="weights_sha256"):  # other weights, other matches
        run_sfm(images, out, small, scorer=_scorer(seed=1))
    with pytest.raises(FileExistsError, match="matching.tta: 'none' -> 'swap'"):  # other scores: test-time augmentation
        run_sfm(images, out, small, scorer=PatchScorer(_scorer().model, device="cpu", tta="swap"))
    if "x86" in torch.backends.quantized.supported_engines:  # an int8 variant is named in the refusal
        with pytest.raises(FileExistsError, match="matching.activation_bits: None -> 7"):
            run_sfm(images, out, small, scorer=PatchScorer.load(precision="int8", activation_bits=7))
    run = json.loads((out / "run.json").read_text())
    assert run["matching"]["tta"] == "none" and run["matching"]["activation_bits"] is None
    assert run["matching"]["device"] == "cpu" and run["matching"]["precision"] == "fp32"
    del run["matching"]["tta"], run["matching"]["activation_bits"]  # a run made before these existed resumes
    del run["matching"]["device"]  # ... or before the device was recorded (fp32: the CPU)
    (out / "run.json").write_text(json.dumps(run))
    again = run_sfm(images, out, dataclasses.replace(small, tta="dihedral"), scorer=_scorer())  # the scorer decides
    assert again["resumed"] is True and again["pairs_matched"] == 0
    assert again["scoring"] == {"executor": "local", "device": "cpu", "precision": "fp32", "tta": "none"}
    assert again["config"]["tta"] == "none" and again["weights"]["tta"] == "none"
    assert again["config"]["precision"] == again["weights"]["precision"] and "viz" not in again
    replaced = run_sfm(images, out, other, scorer=_scorer(), overwrite=True)
    assert replaced["resumed"] is False and replaced["features_computed"] == 3
    assert all(len(storage.read_features(out / "features.h5", n)) <= 100 for n in NAMES[:3])
    # a folder holding something else is never written into
    alien = tmp_path / "alien"
    alien.mkdir()
    (alien / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="holds no patchmatch run"):
        run_sfm(images, alien, small, scorer=_scorer())
    assert sorted(p.name for p in alien.iterdir()) == ["thesis.tex"]
    run_sfm(images, alien, small, scorer=_scorer(), overwrite=True)  # asked for: writes beside, deletes nothing else
    assert (alien / "thesis.tex").read_text() == "precious" and (alien / "report.json").is_file()


def test_cli_sfm_with_checkpoint(tmp_path, capsys):
    from patchmatch.cli import main

    images = _image_dir(tmp_path, NAMES[:3], broken=False)
    scorer = _scorer()
    ckpt = save_checkpoint(tmp_path / "w.pt", scorer.model, {"note": "untrained, for the test"})
    args = ["sfm", str(images), str(tmp_path / "out"), "--weights", str(ckpt), "--device", "cpu",
            "--max-keypoints", "128", "--max-image-size", "320", "--pairs", "sequential:1"]  # fmt: skip
    code = main(args)
    assert code in (0, 1)  # 1 = nothing registered (possible with 128 keypoints)
    out = capsys.readouterr().out
    summary = json.loads(out[: out.rindex("}") + 1])
    assert summary["images"] == 3 and summary["pairs"] == 2
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["weights"]["sha256"] == weights_fingerprint(scorer)
    assert main(args[:-2] + ["--max-keypoints", "64"]) == 2  # refuses: other settings, clear message
    assert "other settings" in capsys.readouterr().err


def test_config_validation():
    with pytest.raises(ValueError, match="unknown pairs strategy"):
        SfmConfig(pairs="vocabtree")
    with pytest.raises(ValueError, match="expected 'retrieval:N'"):
        SfmConfig(pairs="retrieval")
    with pytest.raises(ValueError, match="max_keypoints"):
        SfmConfig(max_keypoints=0)
    with pytest.raises(ValueError, match="max_image_size"):
        SfmConfig(max_image_size=8)
    with pytest.raises(ValueError, match="precision"):
        SfmConfig(precision="int4")
    with pytest.raises(ValueError, match="tta"):
        SfmConfig(tta="rot45")
    with pytest.raises(ValueError, match="threads"):
        SfmConfig(threads=0)
    with pytest.raises(TypeError):  # the network's backend and int8 variant are the scorer's business
        SfmConfig(backend="torch")
    assert SfmConfig(threads=3).workers == 3 and SfmConfig().workers == torch.get_num_threads()


def test_featureless_images_give_an_empty_report(tmp_path, caplog, no_viz):
    """Images without any keypoint: no crash, nothing registered, the reason visible in the counts."""
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"flat{i}.png"), np.full((120, 160), 90 + i, np.uint8))
    small = SfmConfig(max_keypoints=64, match=CONFIG.match)
    report = run_sfm(images, tmp_path / "out", small, scorer=_scorer())
    assert report["images_used"] == 3 and report["skipped"] == []
    assert report["putative_matches"] == 0 and report["verified_pairs"] == 0
    assert report["registered"] == 0 and [u["name"] for u in report["unregistered"]] == ["flat0.png", "flat1.png", "flat2.png"]
    assert all(u["reason"].startswith("no verified image pair with 15 or more inliers") for u in report["unregistered"])
    assert report["no_keypoints"] == ["flat0.png", "flat1.png", "flat2.png"]
    assert not (tmp_path / "out" / "sparse" / "0").exists()
    strict = json.loads((tmp_path / "out" / "report.json").read_text(), parse_constant=pytest.fail)
    assert strict["mean_reprojection_error"] is None  # NaN written as null: strict JSON
    assert "flat1.png: no keypoints" in caplog.text


@pytest.mark.slow
def test_shipped_weights_default_matching(tmp_path, no_viz):
    """The shipped network with the default match decision: most putative matches verify."""
    try:
        scorer = PatchScorer.load(device="cpu")
    except FileNotFoundError as error:
        pytest.skip(f"no shipped weights: {error}")
    images = _image_dir(tmp_path, NAMES[:3], broken=False)
    config = SfmConfig(max_keypoints=512, max_image_size=640, pairs="sequential:1", single_camera=True,
                       verification=CONFIG.verification, mapper=CONFIG.mapper)  # fmt: skip
    report = run_sfm(images, tmp_path / "out", config, scorer=scorer, ground_truth=SCENE / "cameras.json")
    assert report["pairs"] == 2 and report["verified_pairs"] == 2
    assert report["inlier_matches"] > 0.5 * report["putative_matches"] > 100
    assert report["registered"] == 3
    # 3 views at 640 px: the per-run focal length limits the accuracy to a few degrees
    assert report["pose"]["rotation_error_median_deg"] < 6.0


def test_report_counts_with_a_duplicate_image(tmp_path):
    """A byte-identical copy is skipped before detection: it counts neither as computed nor as reused,
    but as an image found. A pairs file may name it, or a dangling link: those pairs are left out, with
    a note."""
    images = _image_dir(tmp_path, NAMES[:3], broken=False)
    (images / "zcopy.jpg").symlink_to(SCENE / "images" / NAMES[0])
    (images / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{NAMES[0]} {NAMES[1]}\n{NAMES[1]} {NAMES[2]}\n{NAMES[0]} zcopy.jpg\n{NAMES[1]} gone.jpg\n")
    report = run_sfm(images, tmp_path / "out", dataclasses.replace(CONFIG, pairs=f"file:{pairs}"), scorer=_scorer())
    assert report["features_computed"] == 3 and report["features_reused"] == 0
    assert sorted(s["name"] for s in report["skipped"]) == ["gone.jpg", "zcopy.jpg"]
    assert report["images"] == 5 and report["images_used"] == 3 and report["pairs"] == 2
    assert any("2 of the 4 pairs" in note and "gone.jpg, zcopy.jpg" in note for note in report["notes"])


def test_changed_image_is_not_silently_reused(tmp_path):
    images = _image_dir(tmp_path, NAMES[:3], broken=False)
    out = tmp_path / "out"
    run_sfm(images, out, CONFIG, scorer=_scorer())
    (images / NAMES[0]).unlink()
    shutil.copyfile(SCENE / "images" / NAMES[0], images / NAMES[0])  # the same bytes, a new modification time
    assert run_sfm(images, out, CONFIG, scorer=_scorer())["features_reused"] == 3
    (images / NAMES[1]).unlink()
    (images / NAMES[1]).symlink_to(SCENE / "images" / "0009.jpg")  # another photo, same name
    with pytest.raises(FileExistsError, match="0001.jpg changed since its features"):
        run_sfm(images, out, CONFIG, scorer=_scorer())
    failed = json.loads((out / "report.json").read_text())  # the first run's "complete" report is not left
    assert failed["status"] == "failed" and "0001.jpg changed since its features" in failed["reason"]
    report = run_sfm(images, out, CONFIG, scorer=_scorer(), overwrite=True)
    assert report["features_computed"] == 3
    assert report["weights"]["precision"] == "fp32" and report["weights"]["backend"] in ("torch", "onnxruntime")


def test_output_path_is_a_file(tmp_path):
    images = _image_dir(tmp_path, NAMES[:2], broken=False)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        run_sfm(images, tmp_path / "afile", CONFIG, scorer=_scorer())
    with pytest.raises(ValueError, match="cannot be the image folder"):
        run_sfm(images, images / ".", CONFIG, scorer=_scorer(), overwrite=True)


def test_pairs_file_is_checked_before_any_work(tmp_path):
    images = _image_dir(tmp_path, NAMES[:2], broken=False)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{NAMES[0]} nope.jpg\n")
    config = dataclasses.replace(CONFIG, pairs=f"file:{pairs}")
    with pytest.raises(ValueError, match="nope.jpg"):
        run_sfm(images, tmp_path / "out", config, scorer=_scorer())
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        run_sfm(images, tmp_path / "out", dataclasses.replace(CONFIG, pairs=f"file:{tmp_path / 'missing.txt'}"), scorer=_scorer())
    assert not (tmp_path / "out" / "features.h5").exists()


def test_ground_truth_of_another_scene_is_refused(tmp_path):
    images = _image_dir(tmp_path, NAMES[:2], broken=False)
    other = DATA / "scenes" / "temple-ring" / "cameras.json"
    with pytest.raises(ValueError, match="none of the images"):
        run_sfm(images, tmp_path / "out", CONFIG, scorer=_scorer(), ground_truth=other)


@pytest.mark.slow
def test_temple_ring_end_to_end_registers_every_image(tmp_path):
    """The whole temple-ring (16 views around a plaster temple on black) with the shipped weights
    and default settings: pycolmap's SIFT pipeline registers 13 of 16 here; patchmatch all 16,
    with relative rotations within a few degrees of the ground truth."""
    scene = DATA / "scenes" / "temple-ring"
    if not scene.is_dir():
        pytest.skip(f"{scene} not found (../shared/data)")
    report = run_sfm(scene / "images", tmp_path / "out", SfmConfig(), ground_truth=scene / "cameras.json")
    assert report["registered"] == 16, report["unregistered"]
    assert report["pose"]["rotation_error_median_deg"] < 2.0
    assert report["pose"]["rotation_auc"]["2"] > 0.3


def _flat_images(root: Path, sizes=((120, 160),) * 3) -> Path:
    import cv2

    images = root / "images"
    images.mkdir()
    for i, shape in enumerate(sizes):
        cv2.imwrite(str(images / f"flat{i}.png"), np.full(shape, 90 + i, np.uint8))
    return images


def test_one_run_at_a_time_per_output_folder(tmp_path, caplog, no_viz):
    """A second run in the same OUT is refused, naming the first one's process; the lock of a
    killed run is taken over; a finished run leaves no lock."""
    import subprocess
    import sys

    images = _flat_images(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    config = SfmConfig(max_keypoints=64, match=CONFIG.match)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / sfm.LOCK_FILE).write_text(f"{other.pid} {sfm.socket.gethostname()}\n")
        with pytest.raises(FileExistsError, match=f"in use by another run \\(pid {other.pid} on "):
            run_sfm(images, out, config, scorer=_scorer())
        assert sorted(p.name for p in out.iterdir()) == [sfm.LOCK_FILE]  # nothing written, the lock kept
    finally:
        other.kill()
        other.wait()
    report = run_sfm(images, out, config, scorer=_scorer())  # that process is gone: its lock is taken over
    assert report["status"] == "complete" and "taking over the lock" in caplog.text
    assert not (out / sfm.LOCK_FILE).exists()


@pytest.mark.slow
def test_known_intrinsics_are_held_fixed(run, tmp_path):
    """A calibrated camera (the ground truth's, in COLMAP's convention) is every camera of the model,
    unchanged by bundle adjustment; the stored features and matches are reused."""
    images, out, _ = run
    out = _copy(out, tmp_path)
    K = json.loads((SCENE / "cameras.json").read_text())["images"]["0000.jpg"]["K"]
    known = colmap.CameraIntrinsics("PINHOLE", (K[0][0], K[1][1], K[0][2] + 0.5, K[1][2] + 0.5))
    config = dataclasses.replace(CONFIG, single_camera=False, camera=known)
    report = run_sfm(images, out, config, scorer=_scorer(), ground_truth=SCENE / "cameras.json")
    assert report["registered"] == 5 and report["features_computed"] == 0 and report["candidates_scored"] == 0
    written = json.loads((out / "report.json").read_text())["config"]
    assert written["camera"] == {"model": "PINHOLE", "params": list(known.params), "refine": False}
    assert not written["mapper"]["refine_focal_length"] and not written["mapper"]["refine_extra_params"]
    model = read_reconstruction(out / "sparse" / "0")
    assert len(model.cameras) == 1  # one calibration, one camera
    for camera in model.cameras.values():
        assert camera.model.name == "PINHOLE"
        np.testing.assert_array_equal(camera.params, known.params)
    assert report["pose"]["rotation_error_median_deg"] < 3.0


@pytest.mark.slow
def test_a_telephoto_calibration_registers(tmp_path):
    """vesta's lens (focal length 10.5 x the image side, beyond COLMAP's default bound of 10 for a
    plausible camera) given as the calibration: every image registers, at the right poses."""
    scene = shared_path("scenes", "vesta")
    K = json.loads((scene / "cameras.json").read_text())["images"]["00000000.png"]["K"]
    known = colmap.CameraIntrinsics("PINHOLE", (K[0][0], K[1][1], K[0][2] + 0.5, K[1][2] + 0.5))
    config = dataclasses.replace(CONFIG, max_keypoints=1024, max_image_size=512, single_camera=False, camera=known,
                                 match=MatchConfig(network=False))  # fmt: skip
    report = run_sfm(scene / "images", tmp_path / "out", config, scorer=_scorer(), ground_truth=scene / "cameras.json")
    assert report["registered"] == 4
    assert report["pose"]["rotation_error_median_deg"] < 0.5 and not report["pose"]["wrongly_registered"]
    assert not any("disagrees" in note for note in report["notes"])
    # the focal length given 10 times too small: a model still comes out, and the report says so
    wrong = colmap.CameraIntrinsics("PINHOLE", (K[0][0] / 10, K[1][1] / 10, K[0][2] + 0.5, K[1][2] + 0.5))
    report = run_sfm(scene / "images", tmp_path / "wrong", dataclasses.replace(config, camera=wrong), scorer=_scorer())
    assert any("the given calibration disagrees with the images" in note for note in report["notes"]), report["notes"]


@pytest.mark.slow
def test_a_focal_length_far_from_its_guess_is_refined_with_the_distortion_held(tmp_path):
    """Six consecutive temple-ring views, no EXIF: the guessed prior (768 px) is half the true focal
    length (1520 px); refined with the distortion, every run's distortion runs away and the checks
    reject it; with the distortion held, three views register right."""
    scene = shared_path("scenes", "temple-ring")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(1, 7):
        (images / f"templeSR000{i}.png").symlink_to(scene / "images" / f"templeSR000{i}.png")
    config = dataclasses.replace(CONFIG, max_keypoints=2048, single_camera=False, match=MatchConfig(network=False))
    report = run_sfm(images, tmp_path / "out", config, scorer=_scorer(), ground_truth=scene / "cameras.json")
    assert report["registered"] == 3 and not report["pose"]["wrongly_registered"]
    assert [a["name"] for a in report["mapping_attempts"] if a["kept"]] == ["focal length only"]


def test_single_camera_needs_one_image_size(tmp_path):
    images = _flat_images(tmp_path, [(120, 160), (120, 160), (100, 160)])
    config = SfmConfig(max_keypoints=64, match=CONFIG.match, single_camera=True)
    with pytest.raises(ValueError, match=r"flat0.png is 160×120 px, flat2.png is 160×100 px"):
        run_sfm(images, tmp_path / "out", config, scorer=_scorer())
    assert not (tmp_path / "out").exists()  # refused before any work
    known = colmap.CameraIntrinsics("SIMPLE_PINHOLE", (200.0, 80.0, 60.0))  # one calibration is one camera
    with pytest.raises(ValueError, match=r"one shared camera \(--camera-model\) needs images of one size"):
        run_sfm(images, tmp_path / "out", SfmConfig(max_keypoints=64, camera=known), scorer=_scorer())
    assert not (tmp_path / "out").exists()
    (tmp_path / "same").mkdir()
    same = _flat_images(tmp_path / "same", [(120, 160), (120, 160)])
    beyond = colmap.CameraIntrinsics("SIMPLE_PINHOLE", (1e308, 80.0, 60.0))  # finite, but no camera's
    with pytest.raises(ValueError, match=r"flat0.png is 160×120 px: the focal length .* more than 1000 times"):
        run_sfm(same, tmp_path / "out", SfmConfig(max_keypoints=64, camera=beyond), scorer=_scorer())
    assert not (tmp_path / "out").exists()
