"""``patchmatch quantize WEIGHTS --data SET [SET ...]``: int8 model of a 2-channel checkpoint.

Calibrates the activation ranges of the convolution streams on real patch pairs of Brown-format
sets (balanced positives, random and hard negatives; use training sets, never test sets) and
writes ``W.int8.pt`` beside ``W.pt``, which ``PatchScorer.load`` then uses on x86 CPUs. With
``--eval SET`` the FPR95 of float32 and int8 on that set's pairs is measured and stored.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="int8 model of a checkpoint, calibrated on patch sets",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("weights", type=Path, help="float32/16 checkpoint (2ch2stream, 2ch, 2chdeep)")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="patch sets for calibration (training sets)")
    p.add_argument("--pairs", type=int, default=4096, help="calibration pairs (default 4096)")
    p.add_argument("--eval", type=Path, nargs="*", default=[], help="patch sets to measure FPR95 on, fp32 vs int8")
    p.add_argument("--eval-pairs", type=int, default=None, help="at most this many pairs per protocol in --eval")
    p.add_argument("--out", type=Path, default=None, help="output (default: WEIGHTS with .int8.pt)")
    p.add_argument("--full-range", action="store_true",
                   help="8-bit activations instead of PyTorch's 7-bit x86 default (CPUs with VNNI or AMX-INT8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..datasets.patchset import mismatched_magnification
    from ..evaluation.fpr95 import fpr95_difference
    from ..evaluation.patches import evaluate_set
    from ..models import load_checkpoint, trained_magnification
    from ..models.quantize import int8_path, quantize_int8, save_int8
    from ..scoring import PatchScorer
    from ..training.data import load_pair_data
    from .evaluate import check_set_folder

    out = args.out or int8_path(args.weights)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it.")
    if args.pairs < 2 or args.pairs % 2:
        raise ValueError(f"--pairs must be even and >= 2, got {args.pairs}")
    if args.eval_pairs is not None and args.eval_pairs < 2:
        raise ValueError(f"--eval-pairs must be >= 2, got {args.eval_pairs}")
    for s in args.eval or []:
        check_set_folder(s)  # before the calibration
    names = [Path(s).name for s in args.eval or []]
    labels = [str(s) if names.count(n) > 1 else n for s, n in zip(args.eval or [], names)]  # unique row labels
    model, wmeta = load_checkpoint(args.weights)
    trained_at = trained_magnification(wmeta, args.weights)
    for s in list(args.data) + list(args.eval or []):
        cut_at = mismatched_magnification(s, trained_at)
        if cut_at is not None:
            raise ValueError(f"{s}: patches cut at magnification {cut_at:g}, {args.weights} was trained at {trained_at:g}; "
                             f"use sets built with make-patches --magnification {trained_at:g}")
    data = load_pair_data(args.data)
    pairs, _ = data.sample_batch(args.pairs, np.random.default_rng(args.seed), hard_fraction=0.5)
    calib = torch.from_numpy(np.stack([data.patches[pairs[:, 0]], data.patches[pairs[:, 1]]], 1))
    qmodel = quantize_int8(model, calib, reduce_range=not args.full_range)
    meta = {"calibration": {"sets": [str(d) for d in args.data], "pairs": args.pairs, "seed": args.seed,
                            "activation_bits": 8 if args.full_range else 7}}  # fmt: skip
    if args.eval:
        fp32 = PatchScorer(model, device="cpu", precision="fp32")
        int8 = PatchScorer(qmodel, device="cpu", precision="int8")
        rows = []
        for s, label in zip(args.eval, labels):
            rows += evaluate_set(s, {"fp32": fp32, "int8": int8}, baselines=False, max_pairs=args.eval_pairs, keep_scores=True,
                                 name=label)  # fmt: skip
        meta["evaluation"] = {"sets": [str(s) for s in args.eval], "max_pairs_per_protocol": args.eval_pairs, "subset_seed": 0,
                              "change_interval": "95% paired bootstrap, 1000 resamples (fpr95_difference)"}  # fmt: skip
        meta["fpr95"] = {}
        for label, r in rows:
            _, low, high = fpr95_difference(r["scores"]["fp32"], r["scores"]["int8"], r["labels"])
            meta["fpr95"][label] = {k: r["methods"][k]["fpr95"] for k in ("fp32", "int8")} | {"change_interval": [low, high]}
        print(f"{'set':<40}{'fp32':>9}{'int8':>9}{'change':>9}   95% interval of the change (paired bootstrap)")
        for label, v in meta["fpr95"].items():
            lo, hi = v["change_interval"]
            print(f"{label:<40}{100 * v['fp32']:>8.2f}%{100 * v['int8']:>8.2f}%{100 * (v['int8'] - v['fp32']):>+8.2f}"
                  f"   [{100 * lo:+.2f}, {100 * hi:+.2f}]")  # fmt: skip
    save_int8(out, qmodel, args.weights, meta)
    print(f"wrote {out}")
    return 0
