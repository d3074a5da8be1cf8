import subprocess
import sys

import numpy as np
import pytest

from patchmatch.cli import build_parser, main

SUBCOMMANDS = ["match-pair", "make-patches", "train", "evaluate-patches", "brown-eval", "bench", "quantize", "export-onnx", "sfm", "match",
               "compare", "demo"]


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert f"patchmatch {name}" in capsys.readouterr().out


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "patchmatch.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "sfm" in out.stdout


def test_match_pair_command(entry_images, tmp_path, capsys):
    from patchmatch.models import build_model, save_checkpoint

    ckpt = save_checkpoint(tmp_path / "net.pt", build_model("2ch2stream"))
    out = tmp_path / "m.npz"
    rc = main(["match-pair", str(entry_images[0]), str(entry_images[1]), "--weights", str(ckpt), "--max-keypoints", "300",
               "--min-score=-1e9", "--out", str(out)])
    assert rc == 0
    data = np.load(out)
    assert data["matches"].shape[1] == 2 and len(data["keypoints0"]) == 300
    assert '"candidates"' in capsys.readouterr().out
    assert main(["match-pair", str(entry_images[0]), str(entry_images[1]), "--weights", str(ckpt), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["match-pair", str(tmp_path / "missing.jpg"), str(entry_images[1]), "--weights", str(ckpt)]) == 2
    assert "missing.jpg" in capsys.readouterr().err


def test_pairs_option_takes_a_bare_path_as_a_pairs_file():
    from patchmatch.commands.options import pairs_spec

    assert pairs_spec("exhaustive") == "exhaustive" and pairs_spec("sequential:3") == "sequential:3"
    assert pairs_spec("retrieval:5") == "retrieval:5" and pairs_spec("file:p.txt") == "file:p.txt"
    assert pairs_spec("p.txt") == "file:p.txt"


def test_network_options_refuse_bad_combinations_before_any_work(tmp_path, capsys):
    """``--precision`` of sfm: an impossible combination fails before anything is written."""
    import cv2
    import numpy as np

    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(images / name), np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["sfm", str(images), str(out), "--precision", "fp16"]) == 2  # no GPU needed to refuse it on the CPU
    assert not out.exists()
    for removed in ("--backend", "--activation-bits"):  # no engine or int8-variant options on the command line
        with pytest.raises(SystemExit):
            main(["sfm", str(images), str(out), removed, "7"])
        assert "unrecognized arguments" in capsys.readouterr().err and not out.exists()


def test_interrupt_during_imports_is_reported_as_an_interrupt(monkeypatch, capsys):
    """Ctrl-C while a library imports can surface later as another error (a half-imported module):
    still the interrupt message, not a traceback."""
    import argparse

    from patchmatch import cli

    def half_imported(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise AttributeError("module 'torch._dynamo' has no attribute 'guards'")

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=half_imported, command="sfm", quiet=False, verbose=False)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: parser.parse_known_args([])[0])
    assert cli.main(["sfm"]) == 130
    assert "Interrupted" in capsys.readouterr().err

    def other_error(args):
        raise AttributeError("a real bug")

    parser.set_defaults(func=other_error)
    with pytest.raises(AttributeError, match="a real bug"):
        cli.main(["sfm"])


def test_commands_parse_without_pycolmap():
    """The parser (every subcommand) builds where pycolmap is missing, e.g. a GPU machine running `bench`."""
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'pycolmap': raise ImportError('no pycolmap here')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from patchmatch.cli import build_parser\n"
            "build_parser().parse_args(['bench', '--precision', 'fp32'])\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
