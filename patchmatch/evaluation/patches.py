"""FPR95 of networks and baselines on the same patch pairs, with ROC curves, per pair file and per
patch set (both variants, both protocols)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..scoring import PatchScorer
from .baselines import ncc_scores, sift_scores
from .fpr95 import fpr95_interval, fpr_at_recall, roc_curve
from .roc_plot import plot_roc

logger = logging.getLogger(__name__)


def evaluate_pairs(
    patches: np.ndarray,
    pairs: np.ndarray,
    labels: np.ndarray,
    scorers: dict[str, PatchScorer] | None = None,
    baselines: bool = True,
    out_dir: str | os.PathLike | None = None,
    title: str = "",
    extra_scores: dict[str, np.ndarray] | None = None,
    keep_scores: bool = False,
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
        extra_scores: method name → (M,) precomputed scores of the same pairs (e.g. SIFT
            descriptors of the keypoints), higher = more similar.
        keep_scores: also return every method's (M,) scores and the labels, under ``"scores"``
            and ``"labels"`` (not written to the JSON).

    Returns:
        ``{"pairs": M, "positives": P, "methods": {name: {"fpr95": fraction, "fpr95_interval":
        [low, high], "seconds": s}}}``, the interval a 95% bootstrap interval
        (:func:`~patchmatch.evaluation.fpr95.fpr95_interval`).
    """
    pairs = np.asarray(pairs, dtype=np.int64)
    labels = np.asarray(labels, dtype=bool)
    methods, seconds = _score_methods(patches, pairs, scorers, baselines, extra_scores)
    result = {"pairs": int(len(pairs)), "positives": int(labels.sum()), "methods": {}}
    curves = {}
    for name, s in methods.items():
        fpr, tpr, _ = roc_curve(s, labels)
        f = fpr_at_recall(fpr, tpr)
        curves[name] = (fpr, tpr, f)
        result["methods"][name] = {"fpr95": f, "fpr95_interval": list(fpr95_interval(s, labels)), "seconds": round(seconds[name], 3)}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        plot_roc(curves, out / "roc.png", title)
        (out / "results.json").write_text(json.dumps(result, indent=2))
    if keep_scores:
        result.update(scores=methods, labels=labels)
    return result


def _score_methods(patches: np.ndarray, pairs: np.ndarray, scorers: dict[str, PatchScorer] | None, baselines: bool,
                   extra_scores: dict[str, np.ndarray] | None) -> tuple[dict[str, np.ndarray], dict[str, float]]:  # fmt: skip
    """``(name → (M,) scores, name → seconds)`` of each network, baseline and precomputed method on ``pairs``."""
    used = np.unique(pairs)
    local = np.ascontiguousarray(patches[used])  # only the patches the pairs touch (memmap friendly)
    lp = np.searchsorted(used, pairs)
    methods: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    functions = {name: scorer.score_pairs for name, scorer in (scorers or {}).items()}
    if baselines:
        functions |= {"SIFT": sift_scores, "NCC": ncc_scores}
    for name, fn in functions.items():
        t = time.perf_counter()
        methods[name] = fn(local, local, lp)
        seconds[name] = time.perf_counter() - t
    for name, sc in (extra_scores or {}).items():
        methods[name] = np.asarray(sc, dtype=np.float64)
        seconds[name] = 0.0
    return methods, seconds


def _pair_files(folder: Path, pair_files: list[str] | None) -> list[tuple[str, str]]:
    """``(protocol, file name)`` of the pair files to evaluate in ``folder`` (FileNotFoundError: none)."""
    from ..datasets.patchset import find_pair_files

    found = find_pair_files(folder)
    files = [(k, f.name) for k in ("random", "hard") for f in found[k]]
    if pair_files:
        files = [("hard" if Path(f).name.startswith("m50_hard_") else "random", f) for f in pair_files]
    if not files:
        raise FileNotFoundError(f"{folder}: no m50_*.txt pair files; pass --pairs.")
    return files


def _keypoint_descriptors(folder: Path, count: int) -> np.ndarray | None:
    """The (count, 128) SIFT descriptors of the keypoints a patch set stores, or None (BrownFormatError: malformed)."""
    from ..datasets.brown import BrownFormatError
    from ..datasets.patchset import SIFT_FILE

    path = folder / SIFT_FILE
    if not path.is_file():
        return None
    try:
        desc = np.load(path, allow_pickle=False).astype(np.float32)
    except (ValueError, OSError) as e:
        raise BrownFormatError(f"{path}: not a descriptor array ({e}).") from None
    if desc.ndim != 2 or len(desc) != count:
        raise BrownFormatError(f"{path}: shape {desc.shape}, expected ({count}, 128).")
    return desc


def evaluate_set(
    root: str | os.PathLike,
    scorers: dict[str, PatchScorer] | None = None,
    baselines: bool = True,
    out_dir: str | os.PathLike | None = None,
    pair_files: list[str] | None = None,
    max_pairs: int | None = None,
    seed: int = 0,
    keep_scores: bool = False,
    name: str | None = None,
) -> list[tuple[str, dict]]:
    """FPR95 on every variant and pair file of a patch set.

    Args:
        root: a set from ``patchmatch make-patches`` (``oriented/`` and ``upright/`` evaluated,
            with the SIFT keypoint-descriptor baseline where ``sift_descriptors.npy`` exists)
            or a plain Brown folder.
        scorers: name → network scorer.
        baselines: SIFT on the patches and NCC (and SIFT keypoint descriptors where stored).
        out_dir: ROC PNGs and JSON go to ``out_dir/<variant>/<pair file stem>/``.
        pair_files: file names to evaluate (default: every ``m50_*.txt``).
        max_pairs: evaluate a random subset of at most this many pairs per file (matches and
            non-matches in the file's proportion, at least one of each).
        seed: seed of that subset.
        keep_scores: see :func:`evaluate_pairs`.
        name: the set's name in the labels (default: the folder's name).

    Returns:
        ``[(label, result)]`` with label ``<set>/<variant>/<protocol>`` and result as
        :func:`evaluate_pairs` returns it plus ``"variant"`` and ``"protocol"``.

    Raises:
        BrownFormatError, FileNotFoundError: malformed set or missing pair file.
    """
    from ..datasets.brown import BrownDataset, BrownFormatError
    from ..datasets.patchset import VARIANTS

    root = Path(root)
    subs = [(v, root / v) for v in VARIANTS if (root / v).is_dir()] or [("", root)]
    rows = []
    for variant, folder in subs:
        ds = BrownDataset(folder)
        files = _pair_files(folder, pair_files)
        kp_desc = _keypoint_descriptors(folder, len(ds)) if baselines else None
        per_protocol = {k: sum(1 for kk, _ in files if kk == k) for k in ("random", "hard")}
        for protocol, fname in files:
            index, labels = _subset(ds.pairs(fname), max_pairs, seed, folder / fname)
            extra = {}
            if kp_desc is not None:
                extra["SIFT keypoint"] = -np.linalg.norm(kp_desc[index[:, 0]] - kp_desc[index[:, 1]], axis=1)
            tag = protocol if per_protocol[protocol] == 1 else Path(fname).stem  # unique per file
            set_name = name or root.name
            label = f"{set_name}/{variant}/{tag}" if variant else f"{set_name}/{Path(fname).name}"
            sub = None if out_dir is None else Path(out_dir) / (variant or ".") / Path(fname).stem
            try:
                r = evaluate_pairs(ds.patches, index, labels, scorers, baselines, sub, title=label, extra_scores=extra,
                                   keep_scores=keep_scores)
            except ValueError as e:
                raise BrownFormatError(f"{folder / fname}: {e}") from None
            r.update(variant=variant or "brown", protocol=protocol, file=fname)
            rows.append((label, r))
    return rows


def _subset(pairs, max_pairs: int | None, seed: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(index, labels)`` of a pair file, cut to a stratified subset of ``max_pairs``; warns when the positives are few."""
    index, labels = pairs.index, pairs.labels
    if max_pairs is not None and len(index) > max_pairs:
        sel = _stratified_subset(labels, max_pairs, seed)
        index, labels = index[sel], labels[sel]
    if 0 < labels.sum() < 20:
        logger.warning("%s: FPR95 from %d positives only (threshold in steps of %.0f%% recall)",
                       path, labels.sum(), 100 / labels.sum())  # fmt: skip
    return index, labels


def _stratified_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of ``count`` pairs (``count`` >= 2): matches and non-matches in their
    proportion, at least one of each where the file has both."""
    rng = np.random.default_rng(seed)
    pos, neg = np.nonzero(labels)[0], np.nonzero(~labels)[0]
    n_pos = int(round(count * len(pos) / len(labels)))
    n_pos = min(len(pos), max(n_pos, 1 if len(pos) else 0, count - len(neg)))
    n_pos = min(n_pos, count - (1 if len(neg) else 0))
    take = [rng.choice(pos, n_pos, replace=False), rng.choice(neg, count - n_pos, replace=False)]
    return np.sort(np.concatenate(take))


def format_table(rows: list[tuple[str, dict]]) -> str:
    """Text table of the FPR95 (%, lower is better) of each method per evaluation row."""
    methods: list[str] = []
    for _, r in rows:
        methods += [m for m in r["methods"] if m not in methods]
    titles = [f"{m} FPR95 (%)" for m in methods]
    widths = [max(15, len(t) + 2) for t in titles]
    head = f"{'set':<36}{'pairs':>9}" + "".join(f"{t:>{w}}" for t, w in zip(titles, widths))
    lines = [head, "-" * len(head)]
    for name, r in rows:
        cells = "".join(f"{100 * r['methods'][m]['fpr95']:>{w}.2f}" if m in r["methods"] else f"{'':>{w}}"
                        for m, w in zip(methods, widths))  # fmt: skip
        lines.append(f"{name:<36}{r['pairs']:>9}{cells}")
    return "\n".join(lines)
