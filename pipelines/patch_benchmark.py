"""The patch benchmark on our scenes, in one command: builds the test sets of the fixed split
(entry-P10, temple-ring, dtu-scan65; see :mod:`patchmatch.datasets.split`) if they are missing,
and prints FPR95 per test scene and protocol (oriented/upright patches × random/hard negatives)
for each network and for the baselines (SIFT descriptors of the keypoints, SIFT computed on the
patches, NCC of the pixels), as a Markdown table; ``--json`` also writes the numbers.

Two keypoint protocols: "consistent" (the ``-test`` sets: each observation takes the detected
orientation that agrees with the other views, as Brown's sets) and "as detected" (the
``-detected`` sets: each view's own detection, its strongest orientation, no choice among
orientations that agree — what the matcher meets).

Usage::

    python pipelines/patch_benchmark.py [--weights A.pt --weights B.pt] [--max-pairs N]
        [--tta none orient] [--data ../shared/data] [--sets DIR] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from patchmatch.evaluation.networks import load_scorers
from patchmatch.datasets.split import build_split
from patchmatch.evaluation.patches import evaluate_set
from patchmatch.patches import MAGNIFICATION
from patchmatch.scoring import TTA

BASELINES = ("SIFT keypoint", "SIFT", "NCC")


def markdown_table(rows: list[tuple[str, dict]]) -> str:
    """One row per set/variant/protocol, one column per method (FPR95 in %, best in bold)."""
    nets = []
    for _, r in rows:
        nets += [m for m in r["methods"] if m not in BASELINES and m not in nets]
    cols = nets + [b for b in BASELINES if any(b in r["methods"] for _, r in rows)]
    head = {"SIFT keypoint": "SIFT (keypoint descr.)", "SIFT": "SIFT on patches"}
    methods = " | ".join(f"{head.get(c, c)} FPR95 %" for c in cols)
    lines = [f"| scene | keypoints | patches | negatives | pairs pos/neg | {methods} |", "|---" * (5 + len(cols)) + "|"]
    for label, r in rows:
        set_name = label.split("/")[0]
        keypoints = "as detected" if set_name.endswith("-detected") else "consistent"
        scene = set_name.removesuffix("-test").removesuffix("-detected")
        vals = {c: r["methods"][c]["fpr95"] for c in cols if c in r["methods"]}
        best = min(vals.values())
        cells = [("**{:.2f}%**" if v == best else "{:.2f}%").format(100 * v) if (v := vals.get(c)) is not None else "–"
                 for c in cols]  # fmt: skip
        lines.append(f"| {scene} | {keypoints} | {r['variant']} | {r['protocol']} | {r['positives']}/{r['pairs'] - r['positives']} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data", help="shared data folder")
    ap.add_argument("--sets", type=Path, default=None,
                    help="where the patch sets are (built; default outputs/pairs, outputs/pairs-m<M> for weights trained at "
                         "another magnification M)")
    ap.add_argument("--weights", type=Path, action="append", help="checkpoint(s) (repeatable; default: shipped weights)")
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "fp16"])
    ap.add_argument("--tta", nargs="+", default=["none"], choices=list(TTA), metavar="T",
                    help=f"test-time augmentation(s), each network once per value: {', '.join(TTA)} (default none)")
    ap.add_argument("--max-pairs", type=int, help="random subset of at most this many pairs per protocol")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", type=Path, default=root / "outputs" / "patch_benchmark", help="ROC curves")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--overwrite", action="store_true", help="rebuild the test sets (e.g. ones cut at another magnification than the weights')")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    scenes = args.data / "scenes"
    if not scenes.is_dir():
        print(f"error: {scenes} not found (see shared/data/README.md)", file=sys.stderr)
        return 2
    scorers = {name: sc for tta in dict.fromkeys(args.tta)
               for name, sc in load_scorers(args.weights, args.device, args.precision, tta=tta).items()}  # fmt: skip
    try:
        mags = {sc.magnification for sc in scorers.values()}
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(mags) > 1:
        listed = ", ".join(f"{n} ({sc.magnification:g})" for n, sc in scorers.items())
        print(f"error: the weights were trained at different patch magnifications ({listed}): benchmark them separately",
              file=sys.stderr)
        return 2
    magnification = mags.pop()
    if args.sets is None:
        args.sets = root / "outputs" / ("pairs" if magnification == MAGNIFICATION else f"pairs-m{magnification:g}")
    try:
        sets = build_split(scenes, args.sets, ("test", "detected"), magnification=magnification, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = []
    for name, path in sets.items():
        rows += evaluate_set(path, scorers, True, args.out / name, max_pairs=args.max_pairs)
    print("FPR95 (%, lower is better) on the test scenes, never trained on:\n")
    print(markdown_table(rows))
    print(f"\nROC curves in {args.out}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
