"""Command-line options shared by the commands that match images (``sfm``, ``compare``, ``match``, ``match-pair``)
and score patches (``evaluate-patches``), and the checks of output files that commands make before any work."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ..scoring import PRECISIONS, TTA


def add_network_arguments(p: argparse.ArgumentParser) -> None:
    """Adds ``--precision`` and ``--tta`` (see :class:`patchmatch.scoring.PatchScorer`)."""
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="network precision (default auto: int8 on x86 CPUs where the weights have an int8 file, "
                        "else fp32; fp16 on a GPU)")
    p.add_argument("--tta", default="none", choices=list(TTA),
                   help="test-time augmentation: score each pair as the mean over swap (2 passes), rot90 (4) or dihedral "
                        "(8: rotations and mirror images) transforms of both patches, or as the best over the second patch "
                        "turned by quarter turns (orient, 4); costs that many times the network time")


def add_scorer_arguments(p: argparse.ArgumentParser) -> None:
    """Adds ``--weights``, ``--device``, ``--precision``, ``--tta`` and ``--threads`` (the network and
    the machine: see :meth:`patchmatch.scoring.PatchScorer.load`)."""
    p.add_argument("--weights", type=Path, default=None, metavar="PT", help="checkpoint (default: the shipped one)")
    p.add_argument("--device", default=None, metavar="DEV", help="cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, metavar="P",
                   help=f"{'|'.join(PRECISIONS)} (auto: int8 CPU, fp16 GPU)")
    p.add_argument("--tta", default="none", choices=list(TTA), metavar="T",
                   help=f"{'|'.join(TTA)} ({', '.join(str(n) for n in TTA.values())} passes)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help="CPU threads (default: all cores)")


def add_executor_argument(p: argparse.ArgumentParser) -> None:
    """Adds ``--executor`` (see :mod:`patchmatch.executors`)."""
    p.add_argument("--executor", default="local", metavar="E",
                   help="local (default) | ray | ray:ADDRESS: run the work on a Ray cluster")


def add_camera_arguments(p: argparse.ArgumentParser, who: str = "") -> None:
    """Adds ``--single-camera``, ``--camera-model``, ``--camera-params`` and ``--refine-intrinsics``
    (see :func:`camera_intrinsics`); ``who`` ends their help (e.g. ``", all methods"``)."""
    p.add_argument("--single-camera", action="store_true", help=f"all images share one camera (same size and zoom){who}")
    p.add_argument("--camera-model", default=None, metavar="M", help=f"known intrinsics: COLMAP camera model, e.g. PINHOLE{who}")
    p.add_argument("--camera-params", default=None, metavar="P",
                   help="COLMAP's order, pixels (PINHOLE: fx,fy,cx,cy); held fixed")
    p.add_argument("--refine-intrinsics", action="store_true", help="refine the given focal length and distortion")


def camera_intrinsics(args: argparse.Namespace):
    """The known camera the command line gives (:class:`patchmatch.colmap.CameraIntrinsics`), or None.

    Raises:
        ValueError: only one of ``--camera-model`` and ``--camera-params``; ``--refine-intrinsics``
            without them; parameters that do not fit the model.
    """
    from ..colmap import CameraIntrinsics

    if (args.camera_model is None) != (args.camera_params is None):
        raise ValueError("--camera-model and --camera-params go together (e.g. --camera-model PINHOLE "
                         "--camera-params 1520.4,1525.9,302.8,247.4)")  # fmt: skip
    if args.camera_model is None:
        if args.refine_intrinsics:
            raise ValueError("--refine-intrinsics refines the intrinsics given by --camera-model and --camera-params")
        return None
    try:
        return CameraIntrinsics.parse(args.camera_model, args.camera_params, refine=args.refine_intrinsics)
    except ValueError as error:
        raise ValueError(f"--camera-model/--camera-params: {error}") from None


def positive_int(value: str) -> int:
    """argparse type of a count that must be >= 1 (keypoints, threads): the error names the option."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def set_threads(threads: int | None) -> None:
    """The process's thread counts (PyTorch's and OpenCV's) from ``--threads``: the command line is
    the one place that sets them; library code takes a worker count instead.

    Raises:
        ValueError: ``threads`` < 1.
    """
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def max_image_size(value: int) -> int | None:
    """``--max-image-size``'s value as the library takes it: 0 = original size (None).

    Raises:
        ValueError: a size below 32 pixels.
    """
    if value and value < 32:
        raise ValueError(f"--max-image-size must be >= 32 (or 0 = original size), got {value}")
    return value or None


def pairs_spec(value: str) -> str:
    """A ``--pairs`` value as :func:`patchmatch.pairs.make_pairs` takes it: a bare path is a pairs file."""
    if value in ("auto", "exhaustive") or value.startswith(("sequential:", "retrieval:", "file:")):
        return value
    return f"file:{value}"


def check_output_file(path: Path, option: str, inputs: Sequence[Path] = (),
                      replaceable: Callable[[Path], bool] | None = None, what: str = "") -> None:  # fmt: skip
    """Refuses, before any work, an output file that the run could not write or must not replace.

    Args:
        path: the file to be written.
        option: the option that named it, for the messages (``"--report"``).
        inputs: the run's input files and folders: ``path`` must be none of them (nor a link to one).
        replaceable: whether an existing file at ``path`` may be replaced (this command's own
            earlier output); None: any existing file may.
        what: what ``replaceable`` accepts, for the message (``"a patchmatch report"``).

    Raises:
        ValueError: ``path`` is one of ``inputs``.
        IsADirectoryError: ``path`` is a folder.
        FileExistsError: ``path`` exists and is not ``replaceable``.
        FileNotFoundError, NotADirectoryError: its folder does not exist, or is a file.
        PermissionError: its folder cannot be written (read-only, or not ours).
    """
    label = f"{option} {path}"
    target = path.resolve()
    for given in inputs:
        if given.exists() and target == Path(given).resolve():
            raise ValueError(f"{label}: that is the input {given}; write the output elsewhere")
    if path.is_dir():
        raise IsADirectoryError(f"{label}: a folder; give the path of a file")
    if path.exists() and replaceable is not None and not replaceable(path):
        raise FileExistsError(f"{label} exists and is not {what or 'an earlier output'}; remove it or choose another path")
    folder = target.parent
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{label}: {path.parent} is a file, not a folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"{label}: folder {path.parent} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise PermissionError(f"{label}: cannot write in {path.parent} ({error.strerror})") from None


def is_report(path: Path) -> bool:
    """Whether ``path`` holds a JSON report of a patchmatch command (an object with its ``status``)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(report, dict) and "status" in report
