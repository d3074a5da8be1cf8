"""``patchmatch evaluate-patches`` and ``patchmatch brown-eval``: FPR95 of networks and baselines
(SIFT, NCC) on Brown-format patch sets, ROC curves as PNG, results as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    for name, help_ in (("evaluate-patches", "FPR95 on a Brown-format patch set (all m50 pair files, or --pairs)"),
                        ("brown-eval", "FPR95 on a Brown dataset set (ROOT/<name>), the standard 100k pairs")):
        p = sub.add_parser(name, help=help_, description=__doc__)
        p.add_argument("root", type=Path, help="Brown-format folder" if name == "evaluate-patches" else "folder holding liberty/, notredame/, yosemite/")
        if name == "brown-eval":
            p.add_argument("--name", required=True, help="set name, e.g. liberty, notredame, yosemite")
        p.add_argument("--pairs", action="append", help="m50 pair file (repeatable); default: every m50_*.txt" if name == "evaluate-patches" else "m50 pair file (default m50_100000_100000_0.txt)")
        p.add_argument("--weights", type=Path, action="append", help="checkpoint(s) to evaluate (repeatable; default: shipped weights)")
        p.add_argument("--no-baselines", action="store_true", help="skip SIFT and NCC")
        p.add_argument("--device", default=None)
        p.add_argument("--batch-size", type=int, default=512)
        p.add_argument("--out", type=Path, default=None, help="folder for roc.png and results.json (default: outputs/eval/<set>)")
        p.set_defaults(func=run)


def _scorers(args) -> dict:
    from ..scoring import PatchScorer, shipped_weights_path

    paths = args.weights
    if not paths:
        try:
            paths = [shipped_weights_path()]
        except FileNotFoundError:
            paths = []
    return {Path(w).stem: PatchScorer.load(w, device=args.device, batch_size=args.batch_size) for w in paths}


def run(args: argparse.Namespace) -> int:
    from ..datasets.brown import DEFAULT_PAIRS, BrownDataset
    from ..evaluation.patches import evaluate_pairs, format_table

    root = args.root / args.name if args.command == "brown-eval" else args.root
    ds = BrownDataset(root)
    if args.pairs:
        files = args.pairs
    elif args.command == "brown-eval":
        files = [DEFAULT_PAIRS]
    else:
        files = sorted(p.name for p in root.glob("m50_*.txt"))
        if not files:
            raise FileNotFoundError(f"{root}: no m50_*.txt pair files; pass --pairs.")
    scorers = _scorers(args)
    rows = []
    out_root = args.out or Path("outputs") / "eval" / root.name
    for f in files:
        pr = ds.pairs(f)
        r = evaluate_pairs(ds.patches, pr.index, pr.labels, scorers, not args.no_baselines,
                           out_root / Path(f).stem, title=f"{root.name} {Path(f).name}")
        rows.append((f"{root.name}/{Path(f).name}", r))
    print(format_table(rows))
    (out_root).mkdir(parents=True, exist_ok=True)
    (out_root / "summary.json").write_text(json.dumps(dict(rows), indent=2))
    print(f"ROC curves and JSON in {out_root}")
    return 0
