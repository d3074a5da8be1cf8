"""``patchmatch compare``: pycolmap's SIFT pipeline and patchmatch on the same real images."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from patchmatch.cli import main
from patchmatch.compare import find_ground_truth, format_table
from tests.conftest import shared_path

NAMES = ["0003.jpg", "0004.jpg", "0005.jpg"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    src = shared_path("scenes", "entry-P10")
    root = tmp_path_factory.mktemp("cmp") / "entry3"
    (root / "images").mkdir(parents=True)
    for n in NAMES:
        (root / "images" / n).symlink_to(src / "images" / n)
    shutil.copy(src / "cameras.json", root / "cameras.json")
    return root


def test_compare_runs_both_pipelines_and_resumes(scene, tmp_path, capsys, monkeypatch):
    from patchmatch import compare as compare_module

    mapper_configs = []
    real_mapping = compare_module.colmap.incremental_mapping

    def recording(database, images, out, config, *args, **kwargs):
        mapper_configs.append(config)
        return real_mapping(database, images, out, config, *args, **kwargs)

    monkeypatch.setattr(compare_module.colmap, "incremental_mapping", recording)
    out = tmp_path / "out"
    shutil.copytree(scene, tmp_path / "s", symlinks=True)
    images = tmp_path / "s" / "images"
    (images / "notes.jpg").write_text("not an image")  # unreadable: neither pipeline counts it
    (images / "00.jpg").symlink_to((scene / "images" / NAMES[0]).resolve())  # the same bytes as 0003.jpg, sorts first
    args = ["-q", "compare", str(images), str(out), "--max-keypoints", "1024", "--single-camera"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| colmap-sift | 3/3 |" in table and "AUC@0.5°" in table
    # the baseline is COLMAP's plain mapper: none of patchmatch's fallbacks (they help SIFT too: on
    # temple-ring continuing the model registers 16 instead of 13 of SIFT's 16 images)
    sift_mapper = mapper_configs[0]
    assert not (sift_mapper.extend_fallback or sift_mapper.fixed_intrinsics_fallback or sift_mapper.forward_motion_fallback
                or sift_mapper.retry_seeds or sift_mapper.check) and sift_mapper.max_reproj_error == 4.0
    result = json.loads((out / "compare.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in compare.json"))
    assert not (out / "colmap-sift" / "sift.started").exists()  # the marker of an unfinished SIFT run
    assert result["ground_truth"] == str(tmp_path / "s" / "cameras.json")
    # the copy is skipped, not 0003.jpg that cameras.json knows
    assert {x["name"] for x in result["skipped"]} == {"notes.jpg", "00.jpg"} and result["images"] == 3
    assert result["camera"] is None  # no calibration given
    sift, pm = result["methods"]["colmap-sift"], result["methods"]["patchmatch"]
    assert sift["registered"] == 3 and set(sift["seconds_per_stage"]) == {"extraction", "matching", "mapping"}
    assert pm["registered"] == 3 and pm["points"] > 100
    assert pm["network"]["tta"] == "none" and pm["network"]["precision"] in ("fp32", "bf16", "int8")
    # the third row: the same pipeline, the network never asked (SIFT's ratio-test matches)
    without = result["methods"]["patchmatch-without-network"]
    assert set(without) == set(pm) and without["candidates_scored"] == 0 and without["registered"] == 3
    assert without["network"] is None  # no network scored its pairs
    assert pm["rejected"] == [] and pm["models"] == [3] and pm["pose"]["wrongly_registered_count"] == 0
    assert "| patchmatch-without-network | 3/3 |" in table
    run = json.loads((out / "patchmatch-without-network" / "run.json").read_text())
    assert run["matching"]["match"]["network"] is False
    for row in (sift, pm, without):  # three views of a facade, one camera: both recover the rotations
        assert row["pose"]["rotation_error_median_deg"] < 1.0, row["pose"]
    first = sift["seconds"]
    assert main(args) == 0  # rerun: the finished SIFT run is reused, patchmatch resumes
    again = json.loads((out / "compare.json").read_text())
    assert again["methods"]["colmap-sift"]["seconds"] == first
    assert "| patchmatch | 3/3 |" in format_table(again)


def test_compare_bad_input(tmp_path, capsys):
    assert main(["-q", "compare", str(tmp_path / "nope"), str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err
    (tmp_path / "one").mkdir()
    assert main(["-q", "compare", str(tmp_path / "one"), str(tmp_path / "o")]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["-q", "compare", str(tmp_path / "one"), str(tmp_path / "o"), "--ground-truth", str(tmp_path / "x.json")]) == 2
    assert "x.json" in capsys.readouterr().err
    assert find_ground_truth(tmp_path / "one") is None
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "compare.json").write_text('{"mine": "precious"}')
    (tmp_path / "two").mkdir()
    for n in ("a.png", "b.png"):
        (tmp_path / "two" / n).write_bytes(b"not checked before the output")
    assert main(["-q", "compare", str(tmp_path / "two"), str(tmp_path / "mine")]) == 2
    assert "not written by `patchmatch compare`" in capsys.readouterr().err
    assert (tmp_path / "mine" / "compare.json").read_text() == '{"mine": "precious"}'
    # a method's folder holding other files is refused before any method runs, and left as it is
    for folder, message in (("colmap-sift", "holds no SIFT run"), ("patchmatch", "holds no patchmatch run"),
                            ("patchmatch-without-network", "holds no patchmatch run")):  # fmt: skip
        theirs = tmp_path / f"theirs-{folder}"
        (theirs / folder).mkdir(parents=True)
        (theirs / folder / "notes.txt").write_text("precious")
        assert main(["-q", "compare", str(tmp_path / "two"), str(theirs)]) == 2
        assert message in capsys.readouterr().err
        assert (theirs / folder / "notes.txt").read_text() == "precious" and len(list(theirs.iterdir())) == 1
    # a link where a method's folder goes is refused, --overwrite or not: the run would write elsewhere
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "patchmatch").symlink_to(tmp_path / "mine")
    for extra in ([], ["--overwrite"]):
        assert main(["-q", "compare", str(tmp_path / "two"), str(linked), *extra]) == 2
        assert "a file or a link where `patchmatch compare` writes a folder" in capsys.readouterr().err
    # another comparison running in OUT
    import os
    import socket

    import cv2

    real = tmp_path / "real"
    real.mkdir()
    for i in range(2):
        cv2.imwrite(str(real / f"{i}.png"), np.full((48, 64), 60 + i, np.uint8))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "run.lock").write_text(f"{os.getpid()} {socket.gethostname()}\n")
    assert main(["-q", "compare", str(real), str(busy)]) == 2
    assert "in use by another run" in capsys.readouterr().err


def test_compare_refuses_changed_settings_and_checks_inputs_first(scene, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["-q", "compare", str(scene / "images"), str(out), "--single-camera"]
    assert main(base + ["--max-keypoints", "400"]) == 0
    assert main(base + ["--max-keypoints", "300"]) == 2  # the finished SIFT run has other settings
    assert "other settings (max_keypoints)" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["-q", "compare", str(scene / "images"), str(tmp_path / "file")]) == 2
    assert "must be a folder" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert main(["-q", "compare", str(scene / "images"), str(tmp_path / "o2"), "--ground-truth", str(bad)]) == 2
    assert "bad.json: not valid JSON" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    assert main(["-q", "compare", str(scene / "images"), str(tmp_path / "o3"), "--weights", str(tmp_path / "no.pt")]) == 2
    assert "no.pt" in capsys.readouterr().err and not (tmp_path / "o3").exists()
    # an impossible network setting fails before SIFT's run, leaving nothing behind
    for flags, error in ((["--precision", "fp16"], "fp16"), (["--threads", "0"], "--threads")):
        try:
            code = main(["-q", "compare", str(scene / "images"), str(tmp_path / "o4"), *flags])
        except SystemExit as exit_:  # argparse refuses a count below 1 itself
            code = exit_.code
        assert code == 2
        assert error in capsys.readouterr().err
        assert not (tmp_path / "o4").exists()
    # a known camera that does not fit the images fails before SIFT's run too
    assert main(["-q", "compare", str(scene / "images"), str(tmp_path / "o5"), "--camera-model", "SIMPLE_PINHOLE",
                 "--camera-params", "1000,5000,300"]) == 2  # fmt: skip
    assert "the principal point of the given camera" in capsys.readouterr().err and not (tmp_path / "o5").exists()
