"""FPR95 of the network and of the baselines on the same patch pairs, with ROC curves."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..scoring import PatchScorer
from .baselines import ncc_scores, sift_scores
from .fpr95 import fpr95, roc_curve
from .roc_plot import plot_roc


def evaluate_pairs(
    patches: np.ndarray,
    pairs: np.ndarray,
    labels: np.ndarray,
    scorers: dict[str, PatchScorer] | None = None,
    baselines: bool = True,
    out_dir: str | os.PathLike | None = None,
    title: str = "",
) -> dict:
    """Scores labelled patch pairs with networks and baselines and computes FPR95.

    Args:
        patches: (N, 64, 64) uint8 (a NumPy array or memmap).
        pairs: (M, 2) int patch indices.
        labels: (M,) bool, True = same 3D point.
        scorers: name → network scorer.
        baselines: also score SIFT and NCC.
        out_dir: if given, writes ``roc.png`` and ``results.json`` there.
        title: plot title.

    Returns:
        ``{"pairs": M, "positives": P, "methods": {name: {"fpr95": fraction, "seconds": s}}}``.
    """
    pairs = np.asarray(pairs, dtype=np.int64)
    labels = np.asarray(labels, dtype=bool)
    used = np.unique(pairs)
    local = np.ascontiguousarray(patches[used])  # only the patches the pairs touch (memmap friendly)
    lp = np.searchsorted(used, pairs)
    methods: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name, scorer in (scorers or {}).items():
        t = time.perf_counter()
        methods[name] = scorer.score_pairs(local, local, lp)
        seconds[name] = time.perf_counter() - t
    if baselines:
        for name, fn in (("SIFT", sift_scores), ("NCC", ncc_scores)):
            t = time.perf_counter()
            methods[name] = fn(local, local, lp)
            seconds[name] = time.perf_counter() - t
    result = {"pairs": int(len(pairs)), "positives": int(labels.sum()), "methods": {}}
    curves = {}
    for name, s in methods.items():
        f = fpr95(s, labels)
        fpr, tpr, _ = roc_curve(s, labels)
        curves[name] = (fpr, tpr, f)
        result["methods"][name] = {"fpr95": f, "seconds": round(seconds[name], 3)}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        plot_roc(curves, out / "roc.png", title)
        (out / "results.json").write_text(json.dumps(result, indent=2))
    return result


def format_table(rows: list[tuple[str, dict]]) -> str:
    """Text table of FPR95 (percent) per evaluation row and method."""
    methods: list[str] = []
    for _, r in rows:
        methods += [m for m in r["methods"] if m not in methods]
    head = f"{'set':<36}{'pairs':>9}" + "".join(f"{m:>14}" for m in methods)
    lines = [head, "-" * len(head)]
    for name, r in rows:
        cells = "".join(f"{100 * r['methods'][m]['fpr95']:>13.2f}%" if m in r["methods"] else f"{'':>14}" for m in methods)
        lines.append(f"{name:<36}{r['pairs']:>9}{cells}")
    return "\n".join(lines)
