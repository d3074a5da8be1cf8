"""Brown-format patch sets held in memory for training: balanced batches of positives, random
negatives and hard negatives.

Reads the sets of ``patchmatch make-patches`` (:mod:`patchmatch.datasets.patchset`, oriented or
upright variant) and plain Brown folders (liberty, notredame, yosemite)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["PairData", "PairSetError", "load_pair_data", "load_eval_pairs"]


class PairSetError(ValueError):
    """A patch set is missing, malformed, or holds no usable pairs; the message names the folder."""


@dataclass
class PairData:
    """Several pair sets concatenated.

    Attributes:
        patches: (N, 64, 64) uint8 patches of all files.
        track: (N,) int64 global 3D point (track) id, unique across sets; -1 for a patch whose
            point has no other patch (never drawn as a random negative).
        positives: (P, 2) int64 patch index pairs of one track.
        random_negatives: (R, 2) int64 pairs of different tracks (the stored ones; training
            draws fresh ones).
        hard_negatives: (H, 2) int64 SIFT-nearest non-partners (empty for plain Brown sets).
        sources: the set folders, in order.
        source: (N,) int64 index into ``sources`` of each patch (None: one source).
        weights: (S,) float64 share of each source in a batch, summing to 1 (None: every pair
            of every source equally likely, the sources' sizes decide their shares).
    """

    patches: np.ndarray
    track: np.ndarray
    positives: np.ndarray
    random_negatives: np.ndarray
    hard_negatives: np.ndarray
    sources: list[Path]
    source: np.ndarray | None = None
    weights: np.ndarray | None = None

    def sample_batch(
        self, batch_size: int, rng: np.random.Generator, hard_fraction: float = 0.5
    ) -> tuple[np.ndarray, np.ndarray]:
        """A balanced batch: half positives, half negatives (``hard_fraction`` of them hard).

        Random negatives are drawn fresh (two patches of different tracks, any files), so that
        every step sees new ones; hard negatives and positives come from the stored lists.

        Args:
            batch_size: B, even.
            rng: the generator all draws come from.
            hard_fraction: share of the negatives that are hard negatives (0..1).

        Returns:
            ``(pairs, labels)``: (B, 2) int64 patch indices and (B,) int64 labels (1 = match),
            positives first.

        Raises:
            ValueError: odd batch size or hard_fraction outside [0, 1].
        """
        if batch_size < 2 or batch_size % 2:
            raise ValueError(f"batch size must be even and >= 2, got {batch_size}")
        if not 0.0 <= hard_fraction <= 1.0:
            raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
        half = batch_size // 2
        n_hard = self.num_hard(batch_size, hard_fraction)
        pos = self._draw(self.positives, self._pos_groups, half, rng)
        hard = self._draw(self.hard_negatives, self._hard_groups, n_hard, rng) if n_hard else np.zeros((0, 2), np.int64)
        rand = self.draw_random_negatives(half - n_hard, rng)
        pairs = np.concatenate([pos, hard, rand]).astype(np.int64)
        labels = np.r_[np.ones(half, np.int64), np.zeros(half, np.int64)]
        return pairs, labels

    def num_hard(self, batch_size: int, hard_fraction: float) -> int:
        """How many of a batch's ``batch_size // 2`` negatives :meth:`sample_batch` takes from the
        stored hard negatives (0 when there are none); the rest are random."""
        return int(round(hard_fraction * (batch_size // 2))) if len(self.hard_negatives) else 0

    def draw_random_negatives(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 2) int64 pairs of patches of two different tracks (both in a track); with source
        weights, both patches of a pair come from one source, drawn by weight."""
        out = np.zeros((0, 2), np.int64)
        while len(out) < n:
            m = 2 * (n - len(out)) + 8
            if self._track_groups is None:
                cand = self._in_track[rng.integers(0, len(self._in_track), size=(m, 2))]
            else:
                order, starts, counts, p = self._track_groups
                src = rng.choice(len(p), size=m, p=p)
                cand = order[starts[src, None] + (rng.random((m, 2)) * counts[src, None]).astype(np.int64)]
            cand = cand[self.track[cand[:, 0]] != self.track[cand[:, 1]]]
            out = np.concatenate([out, cand[: n - len(out)]])
        return out

    def _draw(self, pairs: np.ndarray, groups, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 2) rows of ``pairs`` drawn uniformly, or by source weight when ``groups`` are set."""
        if groups is None:
            return pairs[rng.integers(0, len(pairs), n)]
        order, starts, counts, p = groups
        src = rng.choice(len(p), size=n, p=p)
        return pairs[order[starts[src] + (rng.random(n) * counts[src]).astype(np.int64)]]

    def __post_init__(self) -> None:
        self._in_track = np.flatnonzero(self.track >= 0)
        if len(self.positives) == 0:
            raise PairSetError(f"no positive pairs in {[str(s) for s in self.sources]}")
        if len(np.unique(self.track[self._in_track])) < 2:
            raise PairSetError(f"fewer than two tracks in {[str(s) for s in self.sources]}")
        self._pos_groups = self._hard_groups = self._track_groups = None
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)
            if self.source is None or len(w) != len(self.sources) or not (w >= 0).all() or not w.sum() > 0:
                raise PairSetError(f"need one weight >= 0 per set ({len(self.sources)}), not all 0; got {list(w)}")
            self.weights = w / w.sum()
            self._pos_groups = _groups(self.source[self.positives[:, 0]], self.weights, "positives", self.sources)
            if len(self.hard_negatives):
                self._hard_groups = _groups(self.source[self.hard_negatives[:, 0]], self.weights, None, self.sources)
            self._track_groups = _groups(self.source[self._in_track], self.weights, "tracked patches", self.sources)
            self._track_groups = (self._in_track[self._track_groups[0]],) + self._track_groups[1:]


def _groups(source_of_row: np.ndarray, weights: np.ndarray, what: str | None, sources: Sequence[Path]):
    """``(order, starts, counts, p)``: rows sorted by source, each source's first row and row count
    (indexed by source), and the draw probability of each source (its weight, renormalised over
    the sources that have rows).

    Raises:
        PairSetError: a source with a positive weight has no rows (``what`` names them; None = allowed).
    """
    counts = np.bincount(source_of_row, minlength=len(weights)).astype(np.int64)
    missing = [str(sources[i]) for i in np.flatnonzero((counts == 0) & (weights > 0))]
    if missing and what is not None:
        raise PairSetError(f"{', '.join(missing)}: no {what} to draw, but a weight > 0")
    p = np.where(counts > 0, weights, 0.0)
    if not p.sum() > 0:  # only sets of weight 0 have such rows (e.g. hard negatives): draw them by size
        p = counts.astype(np.float64)
    order = np.argsort(source_of_row, kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    return order, starts, counts, p / p.sum()


def _read_set(root: Path, upright: bool):
    """``(folder, dataset, pairs)`` of a set: its variant folder, :class:`~patchmatch.datasets.brown.BrownDataset`
    and labelled pairs per protocol (``"random"``, ``"hard"``).

    Raises:
        PairSetError: missing folder or variant, or a malformed Brown file.
    """
    from ..datasets.brown import BrownDataset, BrownFormatError
    from ..datasets.patchset import find_pair_files, variant_root

    try:
        folder = variant_root(root, upright)
        ds = BrownDataset(folder)
        files = find_pair_files(folder)
        pairs = {k: [ds.pairs(f) for f in v] for k, v in files.items()}
    except (FileNotFoundError, BrownFormatError) as exc:
        raise PairSetError(str(exc)) from None
    return folder, ds, pairs


def _group_pairs(point_ids: np.ndarray) -> np.ndarray:
    """Consecutive pairs of the patches of each point: (P, 2) int64."""
    order = np.argsort(point_ids, kind="stable")
    same = point_ids[order[1:]] == point_ids[order[:-1]]
    return np.stack([order[:-1][same], order[1:][same]], 1).astype(np.int64)


def load_pair_data(paths: Sequence[str | Path], upright: bool = False, weights: Sequence[float] | None = None) -> PairData:
    """Load Brown-format patch sets into memory.

    Positives are the matching rows of the set's ``m50`` pair files (for a set without pair
    files: consecutive patches of each 3D point); hard negatives are the non-matching rows of
    ``m50_hard_*`` files; random negatives are drawn fresh during training.

    Args:
        paths: set folders from ``patchmatch make-patches`` or plain Brown folders.
        upright: use the ``upright`` variant of patchmatch sets.
        weights: one share per set (any positive scale, normalised): each batch's positives, hard
            negatives and random negatives come from the sets in these proportions, whatever their
            sizes (None: in proportion to their sizes, random negatives across sets).

    Returns:
        The concatenated :class:`PairData` (indices offset per set, point ids made unique).

    Raises:
        PairSetError: a folder is missing, malformed, or has no positives; weights not one per set.
    """
    if weights is not None and len(weights) != len(paths):
        raise PairSetError(f"{len(weights)} weights for {len(paths)} training sets: give one per set")
    if not paths:
        raise PairSetError("no patch sets given")
    patches, tracks, pos, rneg, hneg, source = [], [], [], [], [], []
    offset = 0
    track_offset = 0
    for p in map(Path, paths):
        folder, ds, pairs = _read_set(p, upright)
        pid = ds.point_ids
        _, inverse, counts = np.unique(pid, return_inverse=True, return_counts=True)
        tid = np.where(counts[inverse] >= 2, inverse, -1).astype(np.int64)
        every = pairs["random"] + pairs["hard"]
        if every:
            idx = np.concatenate([b.index for b in every])
            lab = np.concatenate([b.labels for b in every])
            allpos = np.unique(np.sort(idx[lab], axis=1), axis=0)
        else:
            allpos = _group_pairs(pid)
        r = [b.index[~b.labels] for b in pairs["random"]]
        h = [b.index[~b.labels] for b in pairs["hard"]]
        patches.append(np.asarray(ds.patches))
        tracks.append(np.where(tid >= 0, tid + track_offset, -1))
        pos.append(allpos + offset)
        rneg.append((np.concatenate(r) if r else np.zeros((0, 2), np.int64)) + offset)
        hneg.append((np.concatenate(h) if h else np.zeros((0, 2), np.int64)) + offset)
        source.append(np.full(len(ds), len(source), np.int64))
        offset += len(ds)
        track_offset += int(tid.max()) + 1 if len(tid) else 0
        logger.info("%s: %d patches, %d positives, %d hard negatives", folder, len(ds), len(allpos), len(hneg[-1]))
    return PairData(
        patches=np.concatenate(patches),
        track=np.concatenate(tracks),
        positives=np.concatenate(pos),
        random_negatives=np.concatenate(rneg),
        hard_negatives=np.concatenate(hneg),
        sources=[Path(p) for p in paths],
        source=np.concatenate(source),
        weights=None if weights is None else np.asarray(weights, dtype=np.float64),
    )


def load_eval_pairs(path: str | Path, kind: str = "random", upright: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labelled pairs of one protocol of a set, for evaluation.

    Args:
        path: set folder (``patchmatch make-patches``) or plain Brown folder.
        kind: ``"random"`` (``m50_<M>_<M>_0.txt``, the largest if several) or ``"hard"``
            (``m50_hard_*``).
        upright: the upright variant.

    Returns:
        ``(patches, pairs, labels)``: (N, 64, 64) uint8 (memory-mapped), (M, 2) int64, (M,) bool.

    Raises:
        PairSetError: missing folder or no pair file of that protocol.
    """
    if kind not in ("random", "hard"):
        raise ValueError(f"kind must be 'random' or 'hard', got {kind!r}")
    folder, ds, pairs = _read_set(Path(path), upright)
    if not pairs[kind]:
        raise PairSetError(f"{folder}: no {kind} pair file (m50_{'hard_' if kind == 'hard' else ''}*.txt)")
    best = max(pairs[kind], key=lambda b: len(b.index))
    return ds.patches, best.index, best.labels
