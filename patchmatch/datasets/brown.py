"""The Brown "Multi-view Stereo Correspondence" patch format (Brown, Hua & Winder, PAMI 2011):
Liberty, Notre Dame and Yosemite, as used by Zagoruyko & Komodakis (CVPR 2015).

A set is a folder holding

- ``patches0000.bmp`` … : 1024×1024 8-bit grayscale, a 16×16 grid of 64×64 patches, row-major,
  files in sorted order; the last file is partly used;
- ``info.txt``: one line per patch, ``<3D point id> <unused>``;
- ``interest.txt``: one line per patch, ``<reference image id> <x> <y> <orientation> <scale>``
  (the interest point the patch was sampled around);
- ``m50_<n>_<n>_0.txt``: evaluation pairs, rows ``patch1 point1 0 patch2 point2 0``; a pair is a
  match when the two 3D point ids agree.

The same layout is read by torchvision's ``PhotoTour`` and by HardNet's loaders. Full sets hold
450k–630k patches (≈ 2 GB of bitmaps): the first read decodes them once into a ``.npy`` cache that
is then memory-mapped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

PATCH = 64
GRID = 16
PER_FILE = GRID * GRID
FILE_SIZE = PATCH * GRID
#: The standard 100k-pair evaluation file of each set.
DEFAULT_PAIRS = "m50_100000_100000_0.txt"


class BrownFormatError(ValueError):
    """A Brown-format folder is missing files or holds inconsistent ones; the message names the file."""


def bitmap_files(root: str | os.PathLike) -> list[Path]:
    """Sorted ``patches*.bmp`` files of a set.

    Raises:
        BrownFormatError: ``root`` is not a folder or holds no patch bitmaps.
    """
    root = Path(root)
    if not root.is_dir():
        raise BrownFormatError(f"{root}: not a directory.")
    files = sorted(root.glob("patches*.bmp"))
    if not files:
        raise BrownFormatError(f"{root}: no patches*.bmp files.")
    return files


def _read_bitmap(path: Path) -> np.ndarray:
    """One (1024, 1024) uint8 bitmap of patches.

    Raises:
        BrownFormatError: unreadable, or not 1024x1024.
    """
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise BrownFormatError(f"{path}: not a readable bitmap.")
    if img.shape != (FILE_SIZE, FILE_SIZE):
        raise BrownFormatError(f"{path}: expected a {FILE_SIZE}×{FILE_SIZE} bitmap, got {img.shape[1]}×{img.shape[0]}.")
    return img


def bitmap_to_patches(img: np.ndarray) -> np.ndarray:
    """(1024, 1024) uint8 bitmap → (256, 64, 64) patches, row-major."""
    return img.reshape(GRID, PATCH, GRID, PATCH).transpose(0, 2, 1, 3).reshape(PER_FILE, PATCH, PATCH)


def patches_to_bitmap(patches: np.ndarray) -> np.ndarray:
    """Up to 256 (K, 64, 64) patches → (1024, 1024) uint8 bitmap, row-major, the rest black."""
    full = np.zeros((PER_FILE, PATCH, PATCH), np.uint8)
    full[: len(patches)] = patches
    return full.reshape(GRID, GRID, PATCH, PATCH).transpose(0, 2, 1, 3).reshape(FILE_SIZE, FILE_SIZE)


def read_patches(root: str | os.PathLike, count: int | None = None) -> np.ndarray:
    """Decodes the patch bitmaps of a set into memory.

    Args:
        root: folder with ``patches*.bmp``.
        count: number of patches to return (from ``info.txt``); None = every cell of every file.

    Returns:
        (count, 64, 64) uint8.

    Raises:
        BrownFormatError: missing, unreadable or wrongly sized bitmaps, or fewer cells than ``count``.
    """
    files = bitmap_files(root)
    capacity = len(files) * PER_FILE
    if count is None:
        count = capacity
    if count > capacity:
        raise BrownFormatError(f"{root}: {count} patches expected but the {len(files)} bitmaps hold only {capacity}.")
    needed = -(-count // PER_FILE)
    out = np.empty((count, PATCH, PATCH), np.uint8)
    for k, path in enumerate(files[:needed]):
        cells = bitmap_to_patches(_read_bitmap(path))
        n = min(PER_FILE, count - k * PER_FILE)
        out[k * PER_FILE : k * PER_FILE + n] = cells[:n]
    return out


def _read_int_table(path: Path, min_cols: int, integer_cols: int | None = None) -> np.ndarray:
    """A whitespace-separated numeric table; the first ``integer_cols`` columns (all when None)
    must hold integers."""
    import warnings

    if not path.is_file():
        raise BrownFormatError(f"{path}: missing.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on empty files; reported below
            table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise BrownFormatError(f"{path}: malformed ({e}).") from e
    if table.size == 0:
        raise BrownFormatError(f"{path}: empty.")
    if table.shape[1] < min_cols:
        raise BrownFormatError(f"{path}: expected at least {min_cols} columns, got {table.shape[1]}.")
    ints = table[:, : integer_cols if integer_cols is not None else table.shape[1]]
    if not np.all(np.isfinite(ints)) or not np.array_equal(ints, np.round(ints)):
        bad = int(np.flatnonzero(~(np.isfinite(ints) & (ints == np.round(ints))).all(1))[0])
        raise BrownFormatError(f"{path}: line {bad + 1} holds a value that is not an integer.")
    return table


@dataclass
class BrownPairs:
    """Evaluation pairs of one ``m50`` file.

    Attributes:
        index: (M, 2) int64 patch indices.
        labels: (M,) bool, True when the two patches show the same 3D point.
    """

    index: np.ndarray
    labels: np.ndarray


class BrownDataset:
    """A Brown-format patch set, memory-mapped.

    Args:
        root: the set's folder (e.g. ``.../liberty``).
        cache_dir: where the decoded ``.npy`` cache goes; default ``root`` if writable, else
            ``~/.cache/patchmatch/brown``.

    Attributes:
        patches: (N, 64, 64) uint8, memory-mapped.
        point_ids: (N,) int64 3D point id of each patch (from ``info.txt``).

    Raises:
        BrownFormatError: missing files, counts that disagree, bitmaps of the wrong size.
    """

    def __init__(self, root: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise BrownFormatError(f"{self.root}: not a directory.")
        info = _read_int_table(self.root / "info.txt", 1)
        self.point_ids = info[:, 0].astype(np.int64)
        n = len(self.point_ids)
        files = bitmap_files(self.root)
        if n > len(files) * PER_FILE:
            raise BrownFormatError(f"{self.root / 'info.txt'}: {n} patches listed but the {len(files)} bitmaps hold only {len(files) * PER_FILE}.")
        if n <= (len(files) - 1) * PER_FILE:
            raise BrownFormatError(f"{self.root}: {len(files)} bitmaps but info.txt lists only {n} patches (extra or stray bitmap files?).")
        interest_path = self.root / "interest.txt"
        self.interest = _read_int_table(interest_path, 1, integer_cols=1) if interest_path.exists() else None
        if self.interest is not None and len(self.interest) != n:
            raise BrownFormatError(f"{interest_path}: {len(self.interest)} lines, info.txt has {n}.")
        self.patches = self._cached_patches(n, files, cache_dir)

    def __len__(self) -> int:
        return len(self.point_ids)

    def _cache_path(self, n: int, files: list[Path], cache_dir) -> Path:
        stamp = "|".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files) + f"|{n}"
        key = hashlib.sha1(stamp.encode()).hexdigest()[:12]
        if cache_dir is None:
            cache_dir = self.root if os.access(self.root, os.W_OK) else Path.home() / ".cache" / "patchmatch" / "brown"
        return Path(cache_dir) / f".patchmatch-{self.root.name}-{key}.npy"

    def _cached_patches(self, n: int, files: list[Path], cache_dir) -> np.ndarray:
        cache = self._cache_path(n, files, cache_dir)
        if not cache.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            logger.info("Decoding %d patches of %s into %s", n, self.root, cache)
            # a file of its own per writer: two processes (e.g. two training runs on one set) may decode
            # the same cache at once; each renames a complete file into place, atomically
            fd, name = tempfile.mkstemp(prefix=cache.name + ".", suffix=".tmp.npy", dir=cache.parent)
            os.close(fd)
            tmp = Path(name)
            try:
                mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, PATCH, PATCH))
                for k, path in enumerate(files):
                    start = k * PER_FILE
                    if start >= n:
                        break
                    cells = bitmap_to_patches(_read_bitmap(path))
                    mm[start : min(n, start + PER_FILE)] = cells[: min(PER_FILE, n - start)]
                mm.flush()
                del mm
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; the cache is as readable as the set
                os.replace(tmp, cache)
            finally:
                tmp.unlink(missing_ok=True)
        return np.load(cache, mmap_mode="r")

    def pairs(self, name: str = DEFAULT_PAIRS) -> BrownPairs:
        """Reads an ``m50`` pair file of this set (a file name in ``root`` or a path).

        Raises:
            BrownFormatError: missing/malformed file, indices out of range, or point ids that
                disagree with ``info.txt``.
        """
        path = Path(name) if os.sep in str(name) else self.root / name
        table = _read_int_table(path, 5)
        idx = table[:, [0, 3]].astype(np.int64)
        pts = table[:, [1, 4]].astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise BrownFormatError(f"{path}: patch index out of range for {len(self)} patches.")
        if idx.size and not np.array_equal(self.point_ids[idx], pts):
            raise BrownFormatError(f"{path}: 3D point ids disagree with info.txt.")
        return BrownPairs(idx, pts[:, 0] == pts[:, 1])


def write_bitmaps(root: str | os.PathLike, patches: np.ndarray) -> None:
    """Writes (N, 64, 64) uint8 patches as ``root/patches0000.bmp`` … (256 per file), replacing earlier bitmaps."""
    root = Path(root)
    for old in root.glob("patches*.bmp"):
        old.unlink()
    for k in range(0, max(1, -(-len(patches) // PER_FILE))):
        cv2.imwrite(str(root / f"patches{k:04d}.bmp"), patches_to_bitmap(patches[k * PER_FILE : (k + 1) * PER_FILE]))


def write_brown(
    root: str | os.PathLike,
    patches: np.ndarray,
    point_ids: np.ndarray,
    interest: np.ndarray | None = None,
    pairs: dict[str, np.ndarray] | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes a patch set in the Brown format, readable by :class:`BrownDataset`, torchvision's
    ``PhotoTour`` and HardNet's loaders.

    Args:
        root: output folder (created).
        patches: (N, 64, 64) uint8.
        point_ids: (N,) int 3D point (track) id of each patch.
        interest: (N, 5) float ``[image id, x, y, orientation, scale]``; zeros when None.
        pairs: file name → (M, 2) int patch index pairs, written as ``m50`` rows.
        overwrite: replace an existing set.

    Returns:
        ``root``.

    Raises:
        FileExistsError: ``root`` already holds a set and ``overwrite`` is False.
        ValueError: shapes disagree.
    """
    root = Path(root)
    patches = np.asarray(patches)
    point_ids = np.asarray(point_ids, dtype=np.int64)
    if patches.ndim != 3 or patches.shape[1:] != (PATCH, PATCH) or patches.dtype != np.uint8:
        raise ValueError(f"patches must be (N, 64, 64) uint8, got {patches.shape} {patches.dtype}.")
    if len(point_ids) != len(patches):
        raise ValueError(f"{len(point_ids)} point ids for {len(patches)} patches.")
    if root.exists() and any(root.glob("patches*.bmp")) and not overwrite:
        raise FileExistsError(f"{root} already holds a Brown-format set; pass overwrite=True to replace it.")
    root.mkdir(parents=True, exist_ok=True)
    write_bitmaps(root, patches)
    np.savetxt(root / "info.txt", np.stack([point_ids, np.zeros_like(point_ids)], 1), fmt="%d")
    if interest is None:
        interest = np.zeros((len(patches), 5))
    np.savetxt(root / "interest.txt", np.asarray(interest, dtype=np.float64), fmt=["%d", "%.3f", "%.3f", "%.5f", "%.5f"])
    for name, idx in (pairs or {}).items():
        idx = np.asarray(idx, dtype=np.int64).reshape(-1, 2)
        zeros = np.zeros(len(idx), np.int64)
        rows = np.stack([idx[:, 0], point_ids[idx[:, 0]], zeros, idx[:, 1], point_ids[idx[:, 1]], zeros], 1)
        np.savetxt(root / name, rows, fmt="%d")
    return root
