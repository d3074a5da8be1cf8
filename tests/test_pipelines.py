"""The end-to-end scripts in ``pipelines/``: argument and data checks that need no long run."""

import importlib.util
from pathlib import Path

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
