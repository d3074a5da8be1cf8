"""Patch pair sets (written by :func:`patchmatch.datasets.tracks.write_pair_set`) held in memory
for training: balanced batches of positives, random negatives and hard negatives."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["PairData", "PairSetError", "load_pair_data", "load_eval_pairs"]


class PairSetError(ValueError):
    """An h5 pair set is missing or lacks a dataset."""


@dataclass
class PairData:
    """Several pair sets concatenated.

    Attributes:
        patches: (N, 64, 64) uint8 patches of all files.
        track: (N,) int64 global track id (unique across files), -1 for no track.
        positives: (P, 2) int64 patch index pairs of one track.
        random_negatives: (R, 2) int64 pairs of different tracks.
        hard_negatives: (H, 2) int64 SIFT-nearest non-partners.
        sources: the files, in order.
    """

    patches: np.ndarray
    track: np.ndarray
    positives: np.ndarray
    random_negatives: np.ndarray
    hard_negatives: np.ndarray
    sources: list[Path]

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
        n_hard = int(round(hard_fraction * half)) if len(self.hard_negatives) else 0
        pos = self.positives[rng.integers(0, len(self.positives), half)]
        hard = self.hard_negatives[rng.integers(0, len(self.hard_negatives), n_hard)] if n_hard else np.zeros((0, 2), np.int64)
        rand = self.draw_random_negatives(half - n_hard, rng)
        pairs = np.concatenate([pos, hard, rand]).astype(np.int64)
        labels = np.r_[np.ones(half, np.int64), np.zeros(half, np.int64)]
        return pairs, labels

    def draw_random_negatives(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 2) int64 pairs of patches of two different tracks (both in a track)."""
        in_track = self._in_track
        out = np.zeros((0, 2), np.int64)
        while len(out) < n:
            cand = in_track[rng.integers(0, len(in_track), size=(2 * (n - len(out)) + 8, 2))]
            cand = cand[self.track[cand[:, 0]] != self.track[cand[:, 1]]]
            out = np.concatenate([out, cand[: n - len(out)]])
        return out

    def __post_init__(self) -> None:
        self._in_track = np.flatnonzero(self.track >= 0)
        if len(self.positives) == 0:
            raise PairSetError(f"no positive pairs in {[str(s) for s in self.sources]}")
        if len(np.unique(self.track[self._in_track])) < 2:
            raise PairSetError(f"fewer than two tracks in {[str(s) for s in self.sources]}")


def load_pair_data(paths: Sequence[str | Path], upright: bool = False) -> PairData:
    """Load h5 pair sets into memory.

    Args:
        paths: h5 files from :func:`patchmatch.datasets.tracks.write_pair_set`.
        upright: use the ``patches_upright`` dataset instead of the oriented ``patches``.

    Returns:
        The concatenated :class:`PairData` (indices offset per file, track ids made unique).

    Raises:
        PairSetError: a file is missing or lacks a dataset.
    """
    import h5py

    if not paths:
        raise PairSetError("no pair set files given")
    patches, tracks, pos, rneg, hneg = [], [], [], [], []
    offset = 0
    track_offset = 0
    key = "patches_upright" if upright else "patches"
    for p in map(Path, paths):
        if not p.is_file():
            raise PairSetError(f"{p}: pair set not found")
        with h5py.File(p, "r") as f:
            for need in (key, "track_id", "pairs/random", "pairs/hard"):
                if need not in f:
                    raise PairSetError(f"{p}: no dataset {need!r} (not a patchmatch pair set?)")
            pt = f[key][...]
            if pt.ndim != 3 or pt.shape[1:] != (64, 64) or pt.dtype != np.uint8:
                raise PairSetError(f"{p}: {key} must be (N, 64, 64) uint8, got {pt.shape} {pt.dtype}")
            tid = f["track_id"][...].astype(np.int64)
            pr = f["pairs/random"][...].astype(np.int64)
            ph = f["pairs/hard"][...].astype(np.int64)
        for arr, name in ((pr, "pairs/random"), (ph, "pairs/hard")):
            if arr.ndim != 2 or arr.shape[1] != 3 or (len(arr) and (arr[:, :2].min() < 0 or arr[:, :2].max() >= len(pt))):
                raise PairSetError(f"{p}: {name} must be (M, 3) [i, j, label] with indices < {len(pt)}")
        patches.append(pt)
        tracks.append(np.where(tid >= 0, tid + track_offset, -1))
        allpos = np.concatenate([pr[pr[:, 2] == 1, :2], ph[ph[:, 2] == 1, :2]])
        allpos = np.unique(np.sort(allpos, axis=1), axis=0)
        pos.append(allpos + offset)
        rneg.append(pr[pr[:, 2] == 0, :2] + offset)
        hneg.append(ph[ph[:, 2] == 0, :2] + offset)
        offset += len(pt)
        track_offset += int(tid.max()) + 1 if len(tid) else 0
        logger.info("%s: %d patches, %d positives, %d hard negatives", p, len(pt), len(allpos), int((ph[:, 2] == 0).sum()))
    return PairData(
        patches=np.concatenate(patches),
        track=np.concatenate(tracks),
        positives=np.concatenate(pos),
        random_negatives=np.concatenate(rneg),
        hard_negatives=np.concatenate(hneg),
        sources=[Path(p) for p in paths],
    )


def load_eval_pairs(path: str | Path, kind: str = "random", upright: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labelled pairs of one set, for evaluation.

    Args:
        path: h5 pair set.
        kind: ``"random"`` or ``"hard"`` (negatives).
        upright: read ``patches_upright``.

    Returns:
        ``(patches, pairs, labels)``: (N, 64, 64) uint8, (M, 2) int64, (M,) bool.

    Raises:
        PairSetError: missing file or dataset.
    """
    import h5py

    if kind not in ("random", "hard"):
        raise ValueError(f"kind must be 'random' or 'hard', got {kind!r}")
    p = Path(path)
    if not p.is_file():
        raise PairSetError(f"{p}: pair set not found")
    key = "patches_upright" if upright else "patches"
    with h5py.File(p, "r") as f:
        for need in (key, f"pairs/{kind}"):
            if need not in f:
                raise PairSetError(f"{p}: no dataset {need!r}")
        patches = f[key][...]
        pr = f[f"pairs/{kind}"][...].astype(np.int64)
    return patches, pr[:, :2], pr[:, 2].astype(bool)
