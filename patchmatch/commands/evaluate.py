"""``patchmatch evaluate-patches`` and ``patchmatch brown-eval``: FPR95 (false positive rate at 95%
recall, from ranks) of networks and baselines (SIFT on the patches, NCC, and SIFT keypoint
descriptors where a set stores them) on Brown-format patch sets, ROC curves as PNG, JSON results.

evaluate-patches ROOT takes a set from ``patchmatch make-patches`` (both variants, oriented and
upright, and both protocols, random and hard negatives) or any Brown-format folder (every
``m50_*.txt``); brown-eval ROOT --name liberty evaluates the standard 100k pairs of one Brown set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..evaluation.networks import check_out_folder, check_set_folder, load_scorers, magnification_warnings, write_results
from .options import add_network_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    for name, help_ in (("evaluate-patches", "FPR95 on a patch set (make-patches output or Brown folder)"),
                        ("brown-eval", "FPR95 on a Brown dataset set (ROOT/<name>), the standard 100k pairs")):
        p = sub.add_parser(name, help=help_, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("root", type=Path, help="patch set or Brown-format folder" if name == "evaluate-patches" else "folder holding liberty/, notredame/, yosemite/")
        if name == "brown-eval":
            p.add_argument("--name", required=True, help="set name, e.g. liberty, notredame, yosemite")
        p.add_argument("--pairs", action="append", help="m50 pair file: a name in the set folder or a path (repeatable); default: every m50_*.txt" if name == "evaluate-patches" else "m50 pair file (default m50_100000_100000_0.txt)")
        p.add_argument("--weights", type=Path, action="append", help="checkpoint(s) to evaluate (repeatable; default: shipped weights)")
        p.add_argument("--no-baselines", action="store_true", help="skip SIFT and NCC")
        p.add_argument("--max-pairs", type=int, help="evaluate a random subset of at most this many pairs per file")
        p.add_argument("--device", default=None)
        add_network_arguments(p)
        p.add_argument("--batch-size", type=int, default=None, help="patch pairs per forward pass (default: 128 on CPU, 8192 on GPU)")
        p.add_argument("--out", type=Path, default=None, help="folder for ROC PNGs and JSON (default: outputs/eval/<set>)")
        p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier evaluation in --out")
        p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..datasets.brown import DEFAULT_PAIRS
    from ..evaluation.patches import evaluate_set, format_table
    from ..scoring import describe_scorer

    root = args.root / args.name if args.command == "brown-eval" else args.root
    if args.max_pairs is not None and args.max_pairs < 2:
        raise ValueError(f"--max-pairs must be >= 2, got {args.max_pairs}")
    files = args.pairs or ([DEFAULT_PAIRS] if args.command == "brown-eval" else None)
    files = files and [_pair_file(root, f) for f in files]
    check_set_folder(root)  # before the networks load
    scorers = load_scorers(args.weights, args.device, args.precision, args.batch_size, args.tta)
    for name, sc in scorers.items():
        print(f"network {name}: {describe_scorer(sc)}")
    for line in magnification_warnings(root, scorers):
        print(f"warning: {line}", file=sys.stderr)
    out_root = args.out or Path("outputs") / "eval" / root.name
    check_out_folder(out_root, root, args.overwrite)
    rows = evaluate_set(root, scorers, not args.no_baselines, out_root, files, args.max_pairs)
    print(format_table(rows))
    write_results(out_root, rows, scorers)
    print(f"ROC curves and JSON (with each FPR95's 95% bootstrap interval) in {out_root}")
    return 0


def _pair_file(root: Path, name: str) -> str:
    """A ``--pairs`` value as the evaluation takes it: a name in the set's folder (Brown's
    ``m50_*.txt``, found first), else a path from the working folder (made absolute)."""
    from ..datasets.patchset import VARIANTS

    if any((root / v / name).is_file() for v in ("", *VARIANTS)) or not Path(name).is_file():
        return name
    return str(Path(name).resolve())
