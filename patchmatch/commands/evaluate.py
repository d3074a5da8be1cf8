"""``patchmatch evaluate-patches`` and ``patchmatch brown-eval``: FPR95 (false positive rate at 95%
recall, from ranks) of networks and baselines (SIFT on the patches, NCC, and SIFT keypoint
descriptors where a set stores them) on Brown-format patch sets, ROC curves as PNG, JSON results.

evaluate-patches ROOT takes a set from ``patchmatch make-patches`` (both variants, oriented and
upright, and both protocols, random and hard negatives) or any Brown-format folder (every
``m50_*.txt``); brown-eval ROOT --name liberty evaluates the standard 100k pairs of one Brown set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .options import add_network_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    for name, help_ in (("evaluate-patches", "FPR95 on a patch set (make-patches output or Brown folder)"),
                        ("brown-eval", "FPR95 on a Brown dataset set (ROOT/<name>), the standard 100k pairs")):
        p = sub.add_parser(name, help=help_, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("root", type=Path, help="patch set or Brown-format folder" if name == "evaluate-patches" else "folder holding liberty/, notredame/, yosemite/")
        if name == "brown-eval":
            p.add_argument("--name", required=True, help="set name, e.g. liberty, notredame, yosemite")
        p.add_argument("--pairs", action="append", help="m50 pair file (repeatable); default: every m50_*.txt" if name == "evaluate-patches" else "m50 pair file (default m50_100000_100000_0.txt)")
        p.add_argument("--weights", type=Path, action="append", help="checkpoint(s) to evaluate (repeatable; default: shipped weights)")
        p.add_argument("--no-baselines", action="store_true", help="skip SIFT and NCC")
        p.add_argument("--max-pairs", type=int, help="evaluate a random subset of at most this many pairs per file")
        p.add_argument("--device", default=None)
        add_network_arguments(p)
        p.add_argument("--batch-size", type=int, default=None, help="patch pairs per forward pass (default: 128 on CPU, 8192 on GPU)")
        p.add_argument("--out", type=Path, default=None, help="folder for ROC PNGs and JSON (default: outputs/eval/<set>)")
        p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier evaluation in --out")
        p.set_defaults(func=run)


def load_scorers(weights: list[Path] | None, device: str | None = None, precision: str = "auto", batch_size: int | None = None,
                 backend: str = "auto", tta: str = "none", activation_bits: int | None = None) -> dict:  # fmt: skip
    """name → :class:`PatchScorer` of each checkpoint (default: the shipped weights, if present).

    Names are the checkpoint stems, made unique with their folder when two stems agree, with " tta=T" appended under
    test-time augmentation.
    """
    from ..scoring import PatchScorer, shipped_weights_path

    paths = list(weights or [])
    if not paths:
        try:
            paths = [shipped_weights_path()]
        except FileNotFoundError:
            paths = []
    stems = [Path(w).stem for w in paths]
    names = [f"{Path(w).parent.name}/{s}" if stems.count(s) > 1 else s for w, s in zip(paths, stems)]
    names = [n if tta == "none" else f"{n} tta={tta}" for n in names]  # the table, ROC and JSON say how it scored
    return {n: PatchScorer.load(w, device=device, batch_size=batch_size, precision=precision, backend=backend, tta=tta,
                                activation_bits=activation_bits)
            for n, w in zip(names, paths)}  # fmt: skip


def check_set_folder(root: Path) -> None:
    """Raises FileNotFoundError unless ``root`` is a patch set of ours or a Brown folder."""
    from ..datasets.patchset import is_patch_set

    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (a patch set from make-patches or a Brown folder)")
    if not (is_patch_set(root) or (root / "info.txt").is_file()):
        hint = f" (did you mean {root.with_suffix('')}?)" if root.suffix == ".pairs" else ""
        raise FileNotFoundError(f"{root}: neither a patch set from make-patches (summary.json) nor a Brown folder "
                                f"(info.txt){hint}")  # fmt: skip


def _check_out_folder(out: Path, root: Path, overwrite: bool) -> None:
    """Raises unless ``out`` can take the results: a folder (or none yet), not a patch set or Brown
    folder (the set being evaluated above all), no earlier results unless ``overwrite``."""
    from ..datasets.patchset import is_patch_set

    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: --out must be a folder, not a file.")
    if out.resolve() == root.resolve() or is_patch_set(out) or (out / "info.txt").is_file():
        raise FileExistsError(f"{out}: --out is a patch set; results go to a folder of their own (e.g. outputs/eval/{root.name}).")
    summary = out / "summary.json"
    if summary.exists() and not overwrite:
        raise FileExistsError(f"{out}: holds the results of an earlier evaluation (summary.json); pass --overwrite to replace them.")
    if summary.exists() and not summary.is_file():
        raise IsADirectoryError(f"{summary}: not a file, cannot write the results there.")


def run(args: argparse.Namespace) -> int:
    from ..datasets.brown import DEFAULT_PAIRS
    from ..datasets.patchset import is_patch_set, mismatched_magnification
    from ..evaluation.patches import evaluate_set, format_table
    from ..scoring import describe_scorer

    root = args.root / args.name if args.command == "brown-eval" else args.root
    if args.max_pairs is not None and args.max_pairs < 2:
        raise ValueError(f"--max-pairs must be >= 2, got {args.max_pairs}")
    files = args.pairs or ([DEFAULT_PAIRS] if args.command == "brown-eval" else None)
    check_set_folder(root)  # before the networks load
    scorers = load_scorers(args.weights, args.device, args.precision, args.batch_size, args.backend, args.tta, args.activation_bits)
    for name, sc in scorers.items():
        print(f"network {name}: {describe_scorer(sc)}")
        cut_at = mismatched_magnification(root, sc.magnification)
        if cut_at is not None:
            print(f"warning: {root} was cut at magnification {cut_at:g}, network {name} was trained at {sc.magnification:g}: "
                  f"re-cut the set (make-patches {root if is_patch_set(root) else root.parent} OUT --magnification {sc.magnification:g}) "
                  "to evaluate it as it is used", file=sys.stderr)
    out_root = args.out or Path("outputs") / "eval" / root.name
    _check_out_folder(out_root, root, args.overwrite)
    rows = evaluate_set(root, scorers, not args.no_baselines, out_root, files, args.max_pairs)
    print(format_table(rows))
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "summary.json").write_text(json.dumps(dict(rows), indent=2))
    networks = {name: {"description": describe_scorer(sc), "path": sc.meta.get("path"), "precision": sc.precision,
                       "backend": sc.backend, "tta": sc.tta, "magnification": sc.magnification,
                       "activation_bits": sc.activation_bits}
                for name, sc in scorers.items()}  # fmt: skip
    (out_root / "networks.json").write_text(json.dumps(networks, indent=2))
    print(f"ROC curves and JSON (with each FPR95's 95% bootstrap interval) in {out_root}")
    return 0
