import json

import numpy as np
import torch
import pytest

from tests.conftest import shared_path
from patchmatch.cli import main
from patchmatch.datasets.brown import read_patches, write_brown
from patchmatch.evaluation.baselines import ncc_scores, sift_descriptors, sift_scores
from patchmatch.evaluation.patches import evaluate_pairs
from patchmatch.models import build_model, save_checkpoint


def _pairs_from_real_patches():
    """Real Notre Dame patches; a positive pairs a patch with a slightly shifted, brightened copy
    of itself, a negative pairs two different real patches."""
    p = read_patches(shared_path("brown", "notredame-sample"), count=600)
    rng = np.random.default_rng(0)
    copies = np.clip(np.roll(p[:300], 1, axis=2).astype(int) + 20, 0, 255).astype(np.uint8)
    patches = np.concatenate([p, copies])
    pos = np.stack([np.arange(300), 600 + np.arange(300)], 1)
    neg = np.stack([np.arange(300), 300 + rng.permutation(300)], 1)
    return patches, np.concatenate([pos, neg]), np.r_[np.ones(300, bool), np.zeros(300, bool)]


def test_baselines_separate_easy_pairs(tmp_path):
    patches, pairs, labels = _pairs_from_real_patches()
    r = evaluate_pairs(patches, pairs, labels, out_dir=tmp_path)
    assert r["methods"]["NCC"]["fpr95"] < 0.05 and r["methods"]["SIFT"]["fpr95"] < 0.2
    assert (tmp_path / "roc.png").stat().st_size > 1000
    assert json.loads((tmp_path / "results.json").read_text())["pairs"] == 600


def test_sift_and_ncc_known_values():
    rng = np.random.default_rng(1)
    p = rng.integers(0, 256, (3, 64, 64), dtype=np.uint8)
    pairs = np.array([[0, 0], [0, 1]])
    ncc = ncc_scores(p, p, pairs)
    assert ncc[0] == pytest.approx(1.0, abs=1e-5) and abs(ncc[1]) < 0.1
    s = sift_scores(p, p, pairs)
    assert s[0] == 0.0 and s[1] < 0
    d = sift_descriptors(p)
    assert d.shape == (3, 128) and np.linalg.norm(d[0]) > 0


def test_evaluate_patches_command(tmp_path, capsys, monkeypatch):
    patches, pairs, labels = _pairs_from_real_patches()
    ids = np.arange(len(patches))
    ids[600:] = np.arange(300)  # copies share the point id of their source
    write_brown(tmp_path / "mini", patches, ids, pairs={"m50_600_600_0.txt": pairs})
    ckpt = save_checkpoint(tmp_path / "net.pt", build_model("2ch2stream"))
    assert main(["evaluate-patches", str(tmp_path / "mini"), "--weights", str(ckpt), "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "mini/m50_600_600_0.txt" in out and "SIFT FPR95 (%)" in out and "net FPR95 (%)" in out  # metric and unit named
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert set(summary["mini/m50_600_600_0.txt"]["methods"]) == {"net", "SIFT", "NCC"}
    networks = json.loads((tmp_path / "ev" / "networks.json").read_text())
    assert networks["net"]["tta"] == "none" and networks["net"]["path"] == str(ckpt)
    assert main(["evaluate-patches", str(tmp_path / "mini"), "--weights", str(ckpt), "--out", str(tmp_path / "ev2"),
                 "--no-baselines", "--tta", "swap", "--precision", "fp32"]) == 0  # fmt: skip
    assert "net tta=swap" in capsys.readouterr().out
    own = tmp_path / "mine.txt"  # a pair file of one's own, given by its path from here
    own.write_text((tmp_path / "mini" / "m50_600_600_0.txt").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate-patches", "mini", "--weights", str(ckpt), "--out", "ev4", "--pairs", "mine.txt"]) == 0
    assert "mine.txt" in capsys.readouterr().out
    write_brown(tmp_path / "only" / "oriented", patches, ids, pairs={"m50_600_600_0.txt": pairs})  # no summary.json
    assert main(["evaluate-patches", "only", "--weights", str(ckpt), "--out", "ev5", "--no-baselines"]) == 0
    assert "only/oriented/" in capsys.readouterr().out
    summary = json.loads((tmp_path / "ev2" / "summary.json").read_text())
    assert set(summary["mini/m50_600_600_0.txt"]["methods"]) == {"net tta=swap"}
    networks = json.loads((tmp_path / "ev2" / "networks.json").read_text())
    assert networks["net tta=swap"]["tta"] == "swap" and networks["net tta=swap"]["precision"] == "fp32"
    if "x86" in torch.backends.quantized.supported_engines:  # the shipped weights' int8 file, its 7-bit variant
        assert main(["evaluate-patches", str(tmp_path / "mini"), "--out", str(tmp_path / "ev3"), "--no-baselines",
                     "--precision", "int8"]) == 0  # fmt: skip
        assert "int8 (7-bit activations)" in capsys.readouterr().out
        networks = json.loads((tmp_path / "ev3" / "networks.json").read_text())
        assert [n["activation_bits"] for n in networks.values()] == [7]
    (tmp_path / "set" / "liberty").mkdir(parents=True)
    assert main(["brown-eval", str(tmp_path / "set"), "--name", "liberty"]) == 2  # no files: clear error
    assert "liberty" in capsys.readouterr().err


def test_evaluate_patches_on_a_built_set_covers_variants_and_protocols(tmp_path, capsys):
    from patchmatch.datasets.patchset import write_patch_set
    from patchmatch.datasets.tracks import PairSetConfig, TrackConfig

    root = tmp_path / "entry2"
    write_patch_set(shared_path("scenes", "entry-P10"), root, ["0003.jpg", "0004.jpg", "0005.jpg"],
                    PairSetConfig(tracks=TrackConfig(max_keypoints=700)))  # fmt: skip
    ckpt = save_checkpoint(tmp_path / "net.pt", build_model("siam"))
    code = main(["-q", "evaluate-patches", str(root), "--weights", str(ckpt), "--out", str(tmp_path / "ev"),
                 "--max-pairs", "300", "--precision", "fp32"])  # fmt: skip
    assert code == 0
    assert "magnification" not in capsys.readouterr().err  # set and network both at the default
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert set(summary) == {f"entry2/{v}/{k}" for v in ("oriented", "upright") for k in ("random", "hard")}
    assert set(summary["entry2/oriented/random"]["methods"]) == {"net", "SIFT", "NCC", "SIFT keypoint"}
    assert set(summary["entry2/upright/hard"]["methods"]) == {"net", "SIFT", "NCC"}
    r = summary["entry2/oriented/random"]
    assert r["pairs"] == 300 and 0 < r["positives"] < 300
    # Ground truth by geometry: SIFT of the keypoints separates random pairs well, hard pairs worse.
    assert r["methods"]["SIFT keypoint"]["fpr95"] < summary["entry2/oriented/hard"]["methods"]["SIFT keypoint"]["fpr95"]
    assert (tmp_path / "ev" / "upright" / next(iter(sorted((root / "upright").glob("m50_hard_*")))).stem / "roc.png").is_file()


def test_evaluate_patches_guards_its_output_and_subsets(tmp_path, capsys):
    patches, pairs, labels = _pairs_from_real_patches()
    ids = np.arange(len(patches))
    ids[600:] = np.arange(300)
    write_brown(tmp_path / "mini", patches, ids, pairs={"m50_600_600_0.txt": pairs})
    ckpt = save_checkpoint(tmp_path / "net.pt", build_model("2ch2stream"))
    base = ["-q", "evaluate-patches", str(tmp_path / "mini"), "--weights", str(ckpt), "--no-baselines"]
    before = sorted(p.name for p in (tmp_path / "mini").iterdir())
    assert main(base + ["--out", str(tmp_path / "mini")]) == 2  # the set itself: refused, untouched
    assert "patch set" in capsys.readouterr().err and sorted(p.name for p in (tmp_path / "mini").iterdir()) == before
    ev = tmp_path / "ev"
    assert main(base + ["--out", str(ev), "--max-pairs", "2"]) == 0  # a subset keeps a match and a non-match
    r = json.loads((ev / "summary.json").read_text())["mini/m50_600_600_0.txt"]
    assert r["pairs"] == 2 and r["positives"] == 1
    lo, hi = r["methods"]["net"]["fpr95_interval"]
    assert lo <= r["methods"]["net"]["fpr95"] <= hi
    capsys.readouterr()
    assert main(base + ["--out", str(ev)]) == 2  # earlier results: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert json.loads((ev / "summary.json").read_text())["mini/m50_600_600_0.txt"]["pairs"] == 2
    assert main(base + ["--out", str(ev), "--overwrite"]) == 0
    assert json.loads((ev / "summary.json").read_text())["mini/m50_600_600_0.txt"]["pairs"] == len(pairs)


def test_stratified_subset_keeps_both_classes_in_proportion():
    from patchmatch.evaluation.patches import _stratified_subset

    labels = np.r_[np.ones(10), np.zeros(990)].astype(bool)
    for count in (2, 5, 100, 999):
        sel = _stratified_subset(labels, count, seed=0)
        assert len(sel) == count == len(np.unique(sel)) and 1 <= labels[sel].sum() <= 10
        assert (~labels[sel]).sum() >= 1
    assert labels[_stratified_subset(labels, 500, 0)].sum() == 5


def test_evaluate_patches_warns_when_the_set_was_cut_at_another_magnification(pairset, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "wide.pt", build_model("2ch"), {"magnification": 8.0})
    code = main(["-q", "evaluate-patches", str(pairset / "oriented"), "--weights", str(ckpt), "--out", str(tmp_path / "ev"),
                 "--max-pairs", "50", "--no-baselines", "--precision", "fp32"])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert f"{pairset / 'oriented'} was cut at magnification 6, network wide was trained at 8" in err
    assert f"make-patches {pairset} OUT --magnification 8" in err

