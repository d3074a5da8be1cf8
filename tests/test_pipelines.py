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
    printed = capsys.readouterr()
    assert "val: castle-P30-val, Herz-Jesus-P25-val not under" in printed.err
    assert printed.out.startswith("| weights | entry-ori-random FPR95 % | entry-ori-hard FPR95 % |")
    row = json.loads(out.read_text())[f"{ckpt} tta=swap"]
    assert sorted(row) == ["entry-ori-hard", "entry-ori-random", "entry-up-hard", "entry-up-random"]
    patches, pairs, labels = load_eval_pairs(pairset, "random")
    scorer = PatchScorer(load_checkpoint(ckpt)[0], device="cpu", precision="bf16", tta="swap")
    expected = 100 * fpr95(scorer.score_pairs(patches, patches, pairs), labels)
    assert abs(row["entry-ori-random"] - expected) < 1e-6
    assert evaluate.main([str(ckpt), "--sets", str(sets), "--json", str(out)]) == 0  # plain scores, its own key
    assert list(json.loads(out.read_text())) == [str(ckpt)]
    assert 0 <= min(row.values()) and max(row.values()) <= 100 and np.isfinite(list(row.values())).all()


def test_compare_scenes_prints_one_table_of_finished_scenes(tmp_path, capsys):
    import json

    compare_scenes = _script("compare_scenes")
    method = {"registered": 9, "points": 1234, "mean_track_length": 3.456, "mean_reprojection_error": 0.5,
              "seconds": 12.34, "pose": {"rotation_error_median_deg": 0.19312, "rotation_auc": {"0.5": 0.5, "1": 0.75, "2": 0.9}}}
    result = {"images": 10, "methods": {"colmap-sift": {**method, "pose": None}, "patchmatch": method,
                                        "patchmatch-without-network": {**method, "registered": 8}}}
    (tmp_path / "out" / "entry-P10").mkdir(parents=True)
    (tmp_path / "out" / "entry-P10" / "compare.json").write_text(json.dumps(result))
    scenes = tmp_path / "data" / "scenes"
    for scene in ("entry-P10", "temple-ring"):
        (scenes / scene / "images").mkdir(parents=True)
    argv = [str(tmp_path / "out"), "--scenes", "entry-P10", "temple-ring", "--data", str(tmp_path / "data")]
    assert compare_scenes.main([*argv, "--table-only"]) == 0  # temple-ring not compared yet: left out, not run
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| scene | method | registered images |") and "rotation error median (°)" in lines[0]
    assert lines[1].count("|---") == lines[0].count(" | ") + 1
    assert lines[2] == "| entry-P10 | pycolmap SIFT | 9/10 | 1234 | 3.46 | 0.50 | 12.3 | – | – |"
    assert lines[3] == "| entry-P10 | patchmatch | 9/10 | 1234 | 3.46 | 0.50 | 12.3 | 0.1931 | 0.50 / 0.75 / 0.90 |"
    assert lines[4] == "| entry-P10 | patchmatch without the network | 8/10 | 1234 | 3.46 | 0.50 | 12.3 | 0.1931 | 0.50 / 0.75 / 0.90 |"
    assert lines[5] == "" and lines[6].startswith("machine: ") and len(lines) == 7
    assert compare_scenes.main([str(tmp_path / "out"), "--scenes", "lund", "--data", str(tmp_path / "data")]) == 2
    assert "lund" in capsys.readouterr().err


def test_wrong_models_subsets_and_table_row():
    wrong_models = _script("wrong_models")
    names = [f"{i:02d}.png" for i in range(9)]
    subsets = wrong_models.subsets(names, 3)
    assert list(subsets) == ["all", "every-third", "half-seed0", "half-seed1", "half-seed2"]
    assert subsets["every-third"] == ["00.png", "03.png", "06.png"]
    assert all(len(subsets[f"half-seed{k}"]) == 4 and set(subsets[f"half-seed{k}"]) <= set(names) for k in range(3))
    assert subsets == wrong_models.subsets(names, 3)  # the same halves on every run
    run = {"images": 4, "checked": {"registered": 3, "wrong": [], "rejected": [{"name": "a", "reason": "r"}]},
           "unchecked": {"registered": 4, "wrong": ["a"]}}
    row = wrong_models.scene_row("temple-ring", {"x": run, "y": {**run, "images": 5}})
    assert row == "| temple-ring | 2 | 4–5 | 9 | 6 | 0 | 2 | 8 | 2 |"
    assert row.count(" | ") == wrong_models.HEADER.count(" | ")


def test_network_inliers_rows_bin_pairs_by_their_sift_inliers(tmp_path, capsys):
    network_inliers = _script("network_inliers")
    import numpy as np

    rows = np.array([[10, 40, 1, 1], [20, 5, 18, 4], [400, 0, 390, 0]])  # the first pair's geometry is wrong
    lines = network_inliers.scene_lines("x", rows)
    assert lines == ["| x | all pairs | 3 | 1 | 430 | 95 % | 45 | 11 % | 40 |",
                     "| x | SIFT inliers 0–14 | 1 | 1 | 10 | 10 % | 40 | 2 % | 40 |",
                     "| x | SIFT inliers 15–29 | 1 | 0 | 20 | 90 % | 5 | 80 % | 0 |",
                     "| x | SIFT inliers ≥ 300 | 1 | 0 | 400 | 98 % | 0 | – | 0 |"]  # fmt: skip
    assert all(line.count(" | ") == network_inliers.HEADER.count(" | ") for line in lines)
    assert network_inliers.main([str(tmp_path), "--scenes", "castle-P19", "--data", str(tmp_path)]) == 0
    assert "castle-P19: no run at" in capsys.readouterr().err


def test_mapper_compare_rows():
    mapper_compare = _script("mapper_compare")
    report = {"registered": 16, "images_used": 16, "models": [{"registered": 16}], "pose": {"rotation_error_median_deg": 1.1351},
              "seconds": {"mapping": 12.34}, "rejected": []}
    lines = mapper_compare.rows("temple-ring", {"incremental": report, "global": {**report, "pose": None}})
    assert lines == ["| temple-ring | incremental | 16/16 | 1 | 1.135 | 12.3 | 0 |",
                     "| temple-ring | global | 16/16 | 1 | – | 12.3 | 0 |"]
    assert lines[0].count(" | ") == mapper_compare.HEADER.count(" | ")


def test_scale_bench_merged_collection_links_each_scene_and_its_table_has_every_column(tmp_path):
    scale_bench = _script("scale_bench")
    data = tmp_path / "data"
    for scene in scale_bench.MERGED:
        (data / "scenes" / scene / "images").mkdir(parents=True)
    root = scale_bench.merged_collection(tmp_path / "merged", data)
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(scale_bench.MERGED)
    assert all((root / "images" / s).resolve() == (data / "scenes" / s / "images").resolve() for s in scale_bench.MERGED)
    (data / "scenes" / "lund" / "images").rmdir()
    try:
        scale_bench.merged_collection(tmp_path / "other", data)
        raise AssertionError("a missing scene was not named")
    except FileNotFoundError as error:
        assert "lund" in str(error)
    row = {"wall_s": 20.0, "seconds": {"features": 1.0, "matching": 2.0, "verification": 0.5, "mapping": 9.0},
           "images": 50, "registered": 50, "pairs": 277, "peak_rss_mib": 800.0, "rotation_error_median_deg": 0.01,
           "cpu_s": 30.0}
    text = scale_bench.table({"50|retrieval:10|local|global": row, "100|retrieval:10|local|global": {"error": "boom"}})
    lines = text.splitlines()
    assert len({line.count("|") for line in lines}) == 1 and "| 0.40 |" in lines[2] and "| 0.60 |" in lines[2]
    assert "boom" in lines[3]


def test_ray_local_cluster_refuses_the_machines_own_network_namespace():
    """On exit it kills every process of its namespace: outside ``unshare -n`` it must not start."""
    ray_local_cluster = _script("ray_local_cluster")
    interfaces = [line.split(":")[0].strip() for line in Path("/proc/self/net/dev").read_text().splitlines()[2:]]
    if interfaces == ["lo"]:
        pytest.skip("this process is in a namespace with loopback alone: nothing to refuse")
    with pytest.raises(RuntimeError, match="network namespace of its own"):
        with ray_local_cluster.local_cluster(nodes=1):
            raise AssertionError("a cluster was started outside a namespace of its own")
