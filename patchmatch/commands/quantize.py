"""``patchmatch quantize WEIGHTS --data SET [SET ...]``: int8 model of a 2-channel checkpoint.

Calibrates the activation ranges of the convolution streams on real patch pairs of Brown-format
sets (balanced positives, random and hard negatives; use training sets, never test sets), for
7-bit activations (the default of ``PatchScorer.load``: the same scores on every x86-64 CPU) and
8-bit ones (an opt-in for CPUs with AVX512-VNNI or AMX), and writes both to ``W.int8.pt`` beside
``W.pt``. With
``--eval SET`` the FPR95 of float32 and of each variant on that set's pairs is measured and
stored, with the paired bootstrap interval of the change, the RMS score difference and the
negatives within that difference of the FPR95 threshold (``fpr95_sensitivity``: where it is
large, the change is the reordering of near-equal scores, not a worse ranking).
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
    p.add_argument("--eval", type=Path, nargs="+", default=[], help="patch sets to measure FPR95 on, fp32 vs int8")
    p.add_argument("--eval-pairs", type=int, default=None, help="at most this many pairs per protocol in --eval")
    p.add_argument("--out", type=Path, default=None, help="output (default: WEIGHTS with .int8.pt)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> Path:
    """The int8 file to write; raises for bad options before any work."""
    from ..evaluation.networks import check_set_folder
    from ..models.quantize import int8_path

    out = args.out or int8_path(args.weights)
    if out.resolve() == args.weights.resolve():
        raise ValueError(f"{out}: --out is the float checkpoint itself; the int8 file goes beside it (default {int8_path(args.weights)})")
    if out.is_dir():
        raise IsADirectoryError(f"{out}: a folder; --out takes the int8 file's name (e.g. {out / int8_path(args.weights).name})")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it.")
    if args.pairs < 2 or args.pairs % 2:
        raise ValueError(f"--pairs must be even and >= 2, got {args.pairs}")
    if args.eval_pairs is not None and args.eval_pairs < 2:
        raise ValueError(f"--eval-pairs must be >= 2, got {args.eval_pairs}")
    for s in list(args.data) + list(args.eval):
        check_set_folder(s)  # before the calibration
    return out


def _check_magnification(sets: list[Path], weights: Path, trained_at: float) -> None:
    from ..datasets.patchset import mismatched_magnification

    for s in sets:
        cut_at = mismatched_magnification(s, trained_at)
        if cut_at is not None:
            raise ValueError(f"{s}: patches cut at magnification {cut_at:g}, {weights} was trained at {trained_at:g}; "
                             f"use sets built with make-patches --magnification {trained_at:g}")


def _evaluate(args: argparse.Namespace, model, qmodels: dict) -> dict:
    """The ``evaluation`` and ``fpr95`` metadata of --eval (float32 against each variant this CPU computes
    correctly, :func:`patchmatch.device.int8_activation_bits`), printed as a table."""
    import numpy as np

    from .. import device

    from ..evaluation.fpr95 import fpr95_difference, fpr95_sensitivity
    from ..evaluation.patches import evaluate_set
    from ..scoring import PatchScorer

    names = [Path(s).name for s in args.eval]
    labels = [str(s) if names.count(n) > 1 else n for s, n in zip(args.eval, names)]  # unique row labels
    scorers = {"fp32": PatchScorer(model, device="cpu", precision="fp32")}
    qmodels = {b: q for b, q in qmodels.items() if b <= device.int8_activation_bits()}  # 8 bits overflow without VNNI
    scorers |= {f"int8/{b}": PatchScorer(q, device="cpu", precision="int8") for b, q in qmodels.items()}
    rows = []
    for s, label in zip(args.eval, labels):
        rows += evaluate_set(s, scorers, baselines=False, max_pairs=args.eval_pairs, keep_scores=True, name=label)
    meta = {"evaluation": {"sets": [str(s) for s in args.eval], "max_pairs_per_protocol": args.eval_pairs, "subset_seed": 0,
                           "change_interval": "95% paired bootstrap, 1000 resamples (fpr95_difference)",
                           "activation_bits": list(qmodels), "score_rms": "RMS of int8 - fp32 scores",
                           "sensitivity": "negatives within score_rms of the fp32 FPR95 threshold (fpr95_sensitivity)"},
            "fpr95": {}}  # fmt: skip
    print(f"{'set':<40}{'bits':>5}{'FPR95 fp32 (%)':>16}{'FPR95 int8 (%)':>16}{'change (pp)':>13}  {'95% interval (pp)':<19}"
          f"{'score RMS':>10}{'neg. ±RMS (%)':>15}")  # fmt: skip
    for label, r in rows:
        s32, lab = r["scores"]["fp32"], r["labels"]
        entry = {"fp32": r["methods"]["fp32"]["fpr95"], "int8": {}, "change_interval": {}, "score_rms": {}, "sensitivity": {}}
        for b in qmodels:
            s8 = r["scores"][f"int8/{b}"]
            _, low, high = fpr95_difference(s32, s8, lab)
            rms = float(np.sqrt(np.mean((s8.astype(np.float64) - s32) ** 2)))
            entry["int8"][str(b)] = f8 = r["methods"][f"int8/{b}"]["fpr95"]
            entry["change_interval"][str(b)] = [low, high]
            entry["score_rms"][str(b)] = rms
            entry["sensitivity"][str(b)] = sens = fpr95_sensitivity(s32, lab, rms)
            print(f"{label:<40}{b:>5}{100 * entry['fp32']:>16.2f}{100 * f8:>16.2f}{100 * (f8 - entry['fp32']):>+13.2f}  "
                  f"{f'[{100 * low:+.2f}, {100 * high:+.2f}]':<19}{rms:>10.4f}{100 * sens:>15.2f}")  # fmt: skip
        meta["fpr95"][label] = entry
    return meta


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..models import load_checkpoint, trained_magnification
    from ..models.quantize import ACTIVATION_BITS, quantize_int8, save_int8
    from ..training.data import load_pair_data

    out = _check_args(args)
    model, wmeta = load_checkpoint(args.weights)
    _check_magnification(list(args.data) + list(args.eval), args.weights, trained_magnification(wmeta, args.weights))
    bits = list(ACTIVATION_BITS)
    data = load_pair_data(args.data)
    pairs, _ = data.sample_batch(args.pairs, np.random.default_rng(args.seed), hard_fraction=0.5)
    calib = torch.from_numpy(np.stack([data.patches[pairs[:, 0]], data.patches[pairs[:, 1]]], 1))
    qmodels = {b: quantize_int8(model, calib, activation_bits=b) for b in bits}
    meta = {"calibration": {"sets": [str(d) for d in args.data], "pairs": args.pairs, "seed": args.seed, "activation_bits": bits}}
    if args.eval:
        meta |= _evaluate(args, model, qmodels)
    save_int8(out, list(qmodels.values()), args.weights, meta)
    print(f"wrote {out}")
    return 0
