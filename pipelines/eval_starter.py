"""FPR95 of a checkpoint beside the SIFT descriptor distance on held-out ground-truth pairs.

Reads a pair set made by ``patchmatch make-patches`` / ``pipelines/build_pairs.py`` (default:
entry-P10, a scene never trained on), scores its random-negative and hard-negative pairs with
the network and with the (negated) L2 distance of the SIFT descriptors of the same keypoints,
and prints a Markdown table; ``--json`` also writes the numbers.

Usage::

    python pipelines/eval_starter.py [--weights patchmatch/weights/2ch2stream.pt]
        [--pairs outputs/pairs/entry-P10-test.h5] [--json outputs/starter/eval.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np


def evaluate(weights: Path | None, pairs_h5: Path, max_pairs: int | None = None, seed: int = 0,
             device: str | None = None, precisions: tuple[str, ...] = ("fp32",)) -> dict:
    """FPR95 (fractions) of the network and of SIFT on the random and hard pairs of one set.

    Args:
        weights: checkpoint (None: the shipped weights).
        pairs_h5: pair set.
        max_pairs: evaluate at most this many pairs per kind (random subset), None = all.
        seed: seed of that subset.
        device: torch device (default: auto).
        precisions: scorer precisions to evaluate (``"fp32"``, ``"bf16"``, ...).

    Returns:
        ``{kind: {"pairs": M, "positives": P, "network": fpr, "sift": fpr, "network_upright": fpr?}}``.

    Raises:
        FileNotFoundError: missing pair set.
    """
    from patchmatch.evaluation.baselines import ncc_scores, sift_scores
    from patchmatch.evaluation.fpr95 import fpr95
    from patchmatch.scoring import PatchScorer

    if not pairs_h5.is_file():
        raise FileNotFoundError(f"{pairs_h5}: pair set not found (run pipelines/build_pairs.py)")
    scorers = {p: PatchScorer.load(weights, device=device, precision=p) for p in precisions}
    rng = np.random.default_rng(seed)
    out: dict = {}
    with h5py.File(pairs_h5, "r") as f:
        patches = f["patches"][...]
        desc = f["descriptors"][...]
        out["_scene"] = str(f.attrs["scene"])
        for kind in ("random", "hard"):
            pr = f[f"pairs/{kind}"][...].astype(np.int64)
            if max_pairs is not None and len(pr) > max_pairs:
                pr = pr[np.sort(rng.choice(len(pr), max_pairs, replace=False))]
            labels = pr[:, 2].astype(bool)
            sift = -np.linalg.norm(desc[pr[:, 0]] - desc[pr[:, 1]], axis=1)
            idx = pr[:, :2]
            out[kind] = {
                "pairs": int(len(pr)),
                "positives": int(labels.sum()),
                "sift": fpr95(sift, labels),
                "sift_on_patches": fpr95(sift_scores(patches, patches, idx), labels),
                "ncc": fpr95(ncc_scores(patches, patches, idx), labels),
            }
            for prec, scorer in scorers.items():
                t0 = time.time()
                net = scorer.score_pairs(patches, patches, idx)
                dt = time.time() - t0
                key = "network" if prec == precisions[0] else f"network_{prec}"
                out[kind][key] = fpr95(net, labels)
                out[kind][f"{key}_pairs_per_s"] = len(pr) / max(dt, 1e-9)
    return out


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the shipped weights)")
    ap.add_argument("--pairs", type=Path, default=root / "outputs" / "pairs" / "entry-P10-test.h5")
    ap.add_argument("--max-pairs", type=int, default=None, help="pairs per kind (default: all)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--precision", action="append", help="scorer precision(s): fp32 (default), bf16, ...")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    try:
        precisions = tuple(args.precision or ["fp32"])
        res = evaluate(args.weights, args.pairs, args.max_pairs, device=args.device, precisions=precisions)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"FPR95 on {res['_scene']} ({args.pairs.name}), lower is better:\n")
    extra = [f"network_{p}" for p in precisions[1:]]
    head = ["2ch2stream " + precisions[0]] + [f"2ch2stream {p}" for p in precisions[1:]]
    print("| negatives | pairs (pos/neg) | " + " | ".join(head) + " | SIFT (keypoint descriptors) | SIFT on patches | NCC |")
    print("|---" * (len(head) + 5) + "|")
    for kind in ("random", "hard"):
        r = res[kind]
        nets = " | ".join(f"{100 * r[k]:.2f}%" for k in ["network", *extra])
        print(f"| {kind} | {r['positives']}/{r['pairs'] - r['positives']} | {nets} | {100 * r['sift']:.2f}% | "
              f"{100 * r['sift_on_patches']:.2f}% | {100 * r['ncc']:.2f}% |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
