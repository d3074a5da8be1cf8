"""The end-to-end scripts in ``pipelines/``: argument and data checks that need no long run."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "pipelines" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_build_pairs_names_a_missing_scene_in_one_line(tmp_path, capsys):
    (tmp_path / "scenes").mkdir()
    build_pairs = _script("build_pairs")
    assert build_pairs.main(["--data", str(tmp_path), "--out", str(tmp_path / "pairs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "castle-P30" in err and "--roles train val" in err and "Traceback" not in err
    assert not (tmp_path / "pairs").exists()


def test_average_checkpoints_writes_the_mean_and_refuses_mixed_models(tmp_path, capsys):
    import torch

    from patchmatch.models import build_model, load_checkpoint, save_checkpoint

    average = _script("average_checkpoints")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(save_checkpoint(tmp_path / f"{seed}.pt", build_model("2ch")))
    out = tmp_path / "soup.pt"
    assert average.main([str(p) for p in paths] + ["--out", str(out)]) == 0
    soup, meta = load_checkpoint(out)
    a, b = (load_checkpoint(p)[0].state_dict() for p in paths)
    for k, v in soup.state_dict().items():
        torch.testing.assert_close(v, ((a[k] + b[k]) / 2).half().float(), msg=k)  # written in float16
    assert meta["averaged_from"] == [str(p.resolve()) for p in paths] and len(meta["ingredients"]) == 2
    assert meta["magnification"] == 6.0
    wide = save_checkpoint(tmp_path / "wide.pt", build_model("2ch"), {"magnification": 8.0})
    assert average.main([str(paths[0]), str(wide), "--out", str(tmp_path / "w.pt")]) == 2
    assert f"{wide} (8)" in capsys.readouterr().err and not (tmp_path / "w.pt").exists()
    assert average.main([str(p) for p in paths] + ["--out", str(out)]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    other = save_checkpoint(tmp_path / "deep.pt", build_model("2chdeep"))
    assert average.main([str(paths[0]), str(other), "--out", str(tmp_path / "mixed.pt")]) == 2
    assert "different models" in capsys.readouterr().err and not (tmp_path / "mixed.pt").exists()
    assert average.main([str(paths[0]), "--out", str(tmp_path / "one.pt")]) == 2
    assert average.main([str(paths[0]), str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert average.main([str(paths[0]), str(tmp_path / "." / "0.pt"), "--out", str(tmp_path / "twice.pt")]) == 2
    assert "given twice" in capsys.readouterr().err
    assert average.main([str(p) for p in paths] + ["--out", str(tmp_path), "--overwrite"]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert average.main([str(p) for p in paths] + ["--out", str(paths[0] / "x.pt")]) == 2  # a file where a folder should be
    assert "cannot write" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("**/*.tmp"))
    from patchmatch.models.twochannel import TwoChannel2Stream, TwoChannel2StreamConfig

    small = save_checkpoint(tmp_path / "h512.pt", TwoChannel2Stream(TwoChannel2StreamConfig(hidden=512)))
    full = save_checkpoint(tmp_path / "h768.pt", build_model("2ch2stream"))
    assert average.main([str(full), str(small), "--out", str(tmp_path / "cfg.pt")]) == 2
    err = capsys.readouterr().err
    assert "h768.pt holds 2ch2stream" in err and "hidden=512" in err


def test_confusions_reports_false_positives_of_a_real_set(pairset, tmp_path, capsys):
    import cv2

    confusions = _script("confusions")
    picture = tmp_path / "c.png"
    assert confusions.main([str(pairset), "--picture", str(picture), "--sample", "50"]) == 0
    out = capsys.readouterr().out
    assert "threshold at 95 % recall" in out and "within 3 px of the epipolar line" in out and "false positives" in out
    image = cv2.imread(str(picture), cv2.IMREAD_GRAYSCALE)
    assert image is not None and image.shape == (4 * 64 * 2, 8 * 144 * 2)
    assert confusions.main([str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_eval_checkpoints_with_and_without_test_time_augmentation(pairset, tmp_path, capsys):
    import json

    import numpy as np
    import torch

    from patchmatch.evaluation.fpr95 import fpr95
    from patchmatch.models import build_model, load_checkpoint, save_checkpoint
    from patchmatch.scoring import PatchScorer
    from patchmatch.training.data import load_eval_pairs

    evaluate = _script("eval_checkpoints")
    sets = tmp_path / "sets"
    sets.mkdir()
    (sets / "entry-P10-test").symlink_to(pairset)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "w.pt", build_model("2ch"))
    out = tmp_path / "e.json"
    assert evaluate.main([str(ckpt), "--sets", str(sets), "--tta", "swap", "--json", str(out)]) == 0
    assert "val: castle-P30-val, Herz-Jesus-P25-val not under" in capsys.readouterr().err
    row = json.loads(out.read_text())[f"{ckpt} tta=swap"]
    assert sorted(row) == ["entry-ori-hard", "entry-ori-random", "entry-up-hard", "entry-up-random"]
    patches, pairs, labels = load_eval_pairs(pairset, "random")
    scorer = PatchScorer(load_checkpoint(ckpt)[0], device="cpu", precision="bf16", tta="swap")
    expected = 100 * fpr95(scorer.score_pairs(patches, patches, pairs), labels)
    assert abs(row["entry-ori-random"] - expected) < 1e-6
    assert evaluate.main([str(ckpt), "--sets", str(sets), "--json", str(out)]) == 0  # plain scores, its own key
    assert list(json.loads(out.read_text())) == [str(ckpt)]
    assert 0 <= min(row.values()) and max(row.values()) <= 100 and np.isfinite(list(row.values())).all()


def test_fpr95_resolution_reports_noise_sensitivity_and_int8(pairset, tmp_path, capsys):
    import json

    from patchmatch.device import int8_activation_bits
    from patchmatch.evaluation.fpr95 import fpr95
    from patchmatch.scoring import PatchScorer
    from patchmatch.training.data import load_eval_pairs

    resolution = _script("fpr95_resolution")
    sets = tmp_path / "sets"
    sets.mkdir()
    (sets / "entry-P10-test").symlink_to(pairset)
    out = tmp_path / "r.json"
    for argv, says in ((["entry-P10-test", "nope", "--sets", str(sets)], "not under"),
                       (["entry-P10-test", "--sets", str(sets), "--draws", "1"], "--draws must be at least 2"),
                       (["--sets", str(tmp_path)], "none of"),
                       (["--sets", str(tmp_path / "nowhere")], "no such folder"),
                       (["sets", "--sets", str(tmp_path)], "neither a patch set")):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            resolution.main([*argv, "--json", str(out)])
        assert e.value.code == 2 and says in capsys.readouterr().err
    assert not out.exists()
    assert resolution.main(["entry-P10-test", "--sets", str(sets), "--draws", "3", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert sorted(rows) == [f"entry-P10-test/{v}/{k}" for v in ("oriented", "upright") for k in ("hard", "random")]
    row = rows["entry-P10-test/oriented/random"]
    sens = [row["sensitivity"][w] for w in ("0.001", "0.01", "0.03")]
    assert -1 <= row["float16_rounding_change"] <= 1
    assert sens == sorted(sens) and all(v >= 0 for v in row["noise_sd"].values())
    assert sorted(row["int8_change"]) == sorted(f"int8/{b}" for b in (8, 7) if b <= int8_activation_bits())
    patches, pairs, labels = load_eval_pairs(pairset, "random")
    s32 = PatchScorer.load(device="cpu", precision="fp32").score_pairs(patches, patches, pairs)
    s7 = PatchScorer.load(device="cpu", precision="int8", activation_bits=7).score_pairs(patches, patches, pairs)
    assert abs(row["int8_change"]["int8/7"] - (fpr95(s7, labels) - fpr95(s32, labels))) < 1e-9
