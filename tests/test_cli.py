import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from patchmatch.cli import build_parser, main
from tests.helpers import make_unwritable, make_writable

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
               "--precision", "fp32", "--threads", "1", "--out", str(out)])
    assert rc == 0
    data = np.load(out)
    assert data["matches"].shape[1] == 2 and len(data["keypoints0"]) == 300
    assert '"candidates"' in capsys.readouterr().out
    assert main(["match-pair", str(entry_images[0]), str(entry_images[1]), "--weights", str(ckpt), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["match-pair", str(tmp_path / "missing.jpg"), str(entry_images[1]), "--weights", str(ckpt)]) == 2
    assert "missing.jpg" in capsys.readouterr().err
    # a strong pair (SIFT's ratio test accepts 300 matches or more): kept without the network, and said so
    assert main(["match-pair", str(entry_images[0]), str(entry_images[1]), "--weights", str(ckpt), "--precision", "fp32",
                 "--threads", "1", "--out", str(out), "--overwrite"]) == 0
    assert "a strong pair: SIFT's ratio test accepted" in capsys.readouterr().out
    assert len(np.load(out)["scores"]) >= 300 and np.isnan(np.load(out)["scores"]).all()


def test_pairs_option_takes_a_bare_path_as_a_pairs_file():
    from patchmatch.commands.options import pairs_spec

    assert pairs_spec("exhaustive") == "exhaustive" and pairs_spec("sequential:3") == "sequential:3"
    assert pairs_spec("retrieval:5") == "retrieval:5" and pairs_spec("file:p.txt") == "file:p.txt"
    assert pairs_spec("p.txt") == "file:p.txt"


def test_network_options_refuse_bad_values_before_any_work(tmp_path, capsys):
    """sfm's ``--precision``/``--threads``: an impossible value fails before anything is written."""
    import cv2
    import numpy as np

    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(images / name), np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["sfm", str(images), str(out), "--precision", "fp16"]) == 2  # no GPU needed to refuse it on the CPU
    assert not out.exists()
    for option in ("--threads", "--max-keypoints"):
        with pytest.raises(SystemExit) as exit_:
            main(["sfm", str(images), str(out), option, "0"])
        assert exit_.value.code == 2
        assert f"{option}: must be >= 1, got 0" in capsys.readouterr().err and not out.exists()
    assert main(["sfm", str(images), str(out), "--max-image-size", "8"]) == 2
    assert "--max-image-size must be >= 32" in capsys.readouterr().err and not out.exists()
    for options, message in [
        (["--camera-model", "PINHOLE"], "--camera-model and --camera-params go together"),
        (["--refine-intrinsics"], "--refine-intrinsics refines the intrinsics given by --camera-model"),
        (["--camera-model", "PINHOLE", "--camera-params", "50,50,32"], "PINHOLE takes 4 parameters"),
        (["--camera-model", "SIMPLE_PINHOLE", "--camera-params", "50,32,99"], "a.png is 64×64 px: the principal point"),
    ]:
        assert main(["sfm", str(images), str(out), *options]) == 2
        assert message in capsys.readouterr().err and not out.exists()


def test_sfm_help_fits_one_screen(capsys):
    """The settings a person decides, no policy flags (they are MatchConfig fields)."""
    with pytest.raises(SystemExit):
        main(["sfm", "--help"])
    text = capsys.readouterr().out
    assert len(text.splitlines()) <= 38
    for flag in ("--max-keypoints", "--max-image-size", "--pairs", "--device", "--precision", "--weights", "--tta",
                 "--single-camera", "--camera-model", "--camera-params", "--refine-intrinsics", "--ground-truth",
                 "--overwrite", "--threads"):
        assert flag in text
    for gone in ("--backend", "--activation-bits", "--batch-size", "--min-score", "--max-ratio", "--accept-ratio"):
        assert gone not in text


def test_threads_option_sets_the_process_thread_counts(monkeypatch):
    import cv2
    import torch

    from patchmatch.commands.options import set_threads

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(("torch", n)))
    monkeypatch.setattr(cv2, "setNumThreads", lambda n: calls.append(("cv2", n)))
    set_threads(None)
    assert calls == []
    set_threads(3)
    assert calls == [("torch", 3), ("cv2", 3)]


def test_sigterm_stops_a_run_like_ctrl_c(tmp_path):
    """SIGTERM (kill, timeout, a job scheduler): exit 143 with one line, the report says
    "interrupted", the lock is released and no library prints a stack trace."""
    import json
    import os
    import signal
    import subprocess
    import time

    from patchmatch.synthetic import render_scene

    render_scene(tmp_path / "scene", seed=0, num_images=6)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "patchmatch.cli", "sfm", str(tmp_path / "scene" / "images"), str(out),
                             "--max-keypoints", "512", "--threads", "1"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "report.json").is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert "Terminated; rerun the same command to resume." in err and "stack trace" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted" and report["seconds_earlier"] == 0
    assert all(s >= 0 for s in report["seconds"].values())  # the stages run so far: a resumed run adds them up
    assert not (out / "run.lock").exists()


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
    parse = parser.parse_known_args
    monkeypatch.setattr(parser, "parse_known_args", lambda argv=None: (parse([])[0], []))
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


def test_output_files_are_checked_before_any_work(tmp_path):
    from patchmatch.commands.options import check_output_file, is_report

    database = tmp_path / "database.db"
    database.write_bytes(b"SQLite format 3\x00")
    link = tmp_path / "r.json"
    link.symlink_to(database)
    for path in (database, link):  # the input itself, or a link to it
        with pytest.raises(ValueError, match="that is the input"):
            check_output_file(path, "--report", inputs=[database])
    with pytest.raises(NotADirectoryError, match=r"database.db is a file, not a folder"):
        check_output_file(database / "r.json", "--report")
    with pytest.raises(FileNotFoundError, match="folder .*nowhere does not exist"):
        check_output_file(tmp_path / "nowhere" / "r.json", "--report")
    with pytest.raises(IsADirectoryError, match="a folder"):
        check_output_file(tmp_path, "--out")
    script = tmp_path / "notes.py"
    script.write_text("print('mine')\n")
    with pytest.raises(FileExistsError, match="exists and is not a patchmatch report"):
        check_output_file(script, "--report", replaceable=is_report, what="a patchmatch report")
    earlier = tmp_path / "earlier.json"
    earlier.write_text('{"status": "complete"}')
    check_output_file(earlier, "--report", replaceable=is_report)  # an earlier report is replaced
    check_output_file(tmp_path / "new.json", "--report")
    locked = tmp_path / "locked"
    locked.mkdir()
    if not make_unwritable(locked):
        pytest.skip("no way to make a folder unwritable for this process here")
    try:
        with pytest.raises(PermissionError, match=r"cannot write in .*locked"):
            check_output_file(locked / "r.json", "--report")
    finally:
        make_writable(locked)


def test_an_unknown_option_is_named_with_its_commands_usage(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["match", "db.db", "images", "--bogus"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "usage: patchmatch match" in err and "patchmatch match: error: unrecognized arguments: --bogus" in err


def test_a_ctrl_c_swallowed_by_a_library_is_still_reported_as_an_interrupt(monkeypatch, capsys):
    """A KeyboardInterrupt that a library's import swallowed (torch's, seen in a user's run)
    surfaces later as another error: the Ctrl-C is remembered, and the run reports an interrupt."""
    import os
    import signal
    import time

    from patchmatch import cli

    def swallowed(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here
        except KeyboardInterrupt:
            pass  # what the half-finished import did
        raise AttributeError("module 'torch._dynamo' has no attribute 'guards'")

    previous = signal.getsignal(signal.SIGINT)
    parser = cli.build_parser()
    parse = parser.parse_known_args
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_known_args", lambda argv=None: (_with(parse(["bench"])[0], swallowed), []))
    try:
        assert cli.main(["bench"]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "Interrupted" in capsys.readouterr().err


def _with(args, func):
    args.func = func
    return args
