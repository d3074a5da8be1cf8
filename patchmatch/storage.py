"""features.h5 and matches.h5 in hloc's layout, safe to resume.

Layout (that of cvg/Hierarchical-Localization, so hloc's tools read our files):

features file, one group per image, named by the image name (a ``/`` in the
name makes nested groups, as in hloc)::

    <name>/keypoints     (N, 2) float32  x, y in pixels of the original image,
                                         OpenCV convention (pixel centres at
                                         integer coordinates; COLMAP adds 0.5)
    <name>/scales        (N,)   float32  OpenCV keypoint size (diameter, px)
    <name>/orientations  (N,)   float32  OpenCV keypoint angle (degrees)
    <name>/descriptors   (D, N) float32  transposed as hloc stores them
    <name>/scores        (N,)   float32  detector response
    <name>/image_size    (2,)   int64    [width, height] of the original image

matches file, one group per pair named by :func:`names_to_pair`
(``"a.jpg/b.jpg"``, i.e. nested groups; ``/`` inside names becomes ``-``)::

    <pair>/matches0          (N0,) int32    index into image 1, -1 = unmatched
    <pair>/matching_scores0  (N0,) float32  score of the match (0 where none; NaN where kept by
                                              the descriptor ratio test without a network pass)

Keypoints are float32 and indices int32 (hloc's float16/int16 lose a pixel
above 1024 px and cap at 32767 keypoints).

Crash safety: a group is written in full, then flagged with the attribute
``complete = True``; readers treat an unflagged group as absent and writers
replace it. A process killed mid-write therefore leaves at worst one group to
redo. A writer killed with the file open leaves HDF5's "open for write" mark in
the superblock: :func:`clear_open_mark` clears it (as ``h5clear -s`` does) and the
file's complete groups are reused. HDF5 itself is not journaled: if the kill hits the
file's own metadata, opening fails with :class:`StorageError` naming the file, and the
caller (:mod:`patchmatch.stages`) moves it aside and recomputes. A file another process holds (HDF5's
file lock, or, with locking turned off, open in that process) raises :class:`StorageLockedError`
instead: it is busy, not damaged, and is never moved.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np

from .features import Features

logger = logging.getLogger(__name__)

#: Attribute set on a group once all its datasets are written.
COMPLETE = "complete"


class StorageError(RuntimeError):
    """An h5 file or group is unreadable or inconsistent; the message names both."""


class StorageLockedError(OSError):
    """An h5 file is locked by another process (HDF5's file lock): busy, not damaged."""


def names_to_pair(name0: str, name1: str, separator: str = "/") -> str:
    """hloc's key of an image pair in matches.h5: ``"a.jpg/b.jpg"``.

    A ``/`` inside an image name is replaced by ``-``, so the key has exactly
    two levels.
    """
    return separator.join((name0.replace("/", "-"), name1.replace("/", "-")))


def names_to_pair_old(name0: str, name1: str) -> str:
    """hloc's older pair key, ``"a.jpg_b.jpg"`` (read only, for old files)."""
    return names_to_pair(name0, name1, separator="_")


def _open(path: Path, mode: str) -> h5py.File:
    """Opens an h5 file.

    Raises:
        StorageLockedError: another process holds the file open for writing.
        StorageError: the file is not readable HDF5.
    """
    try:
        return h5py.File(str(path), mode, libver="latest")
    except OSError as error:
        words = str(error).lower()
        if "unable to lock file" in words or _locked_elsewhere(path) or ("already open for write" in words
                                                                        and _open_elsewhere(path)):  # fmt: skip
            raise StorageLockedError(f"{path}: in use by another process ({error}); "
                                     "is another run writing to this folder?") from error  # fmt: skip
        raise StorageError(f"{path}: cannot open as HDF5 ({error}); delete or move the file to recompute it") from error


def _open_elsewhere(path: Path) -> bool:
    """Whether another process of this machine has ``path`` open (``/proc/*/fd``): a writer that
    turned HDF5's file locking off leaves no lock, only the file's "open for write" mark, which a
    writer killed mid-write leaves too."""
    target, mine = os.path.realpath(path), str(os.getpid())
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        if fd_dir.parent.name == mine:
            continue
        try:
            if any(os.path.realpath(fd) == target for fd in fd_dir.iterdir()):
                return True
        except OSError:  # gone, or another user's
            continue
    return False


def _locked_elsewhere(path: Path) -> bool:
    """Whether another process holds HDF5's lock (``flock``) on ``path``: a live writer's file
    refuses to open like the file of a killed one ("already open for write"), but only the
    killed one's lock is gone."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): HDF5's own message is all there is
        return False
    try:
        with open(path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


#: HDF5's file signature, which starts the superblock
_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _lookup3(data: bytes) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` with initial value 0: HDF5's metadata checksum."""
    mask = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & mask

    v = [(0xDEADBEEF + len(data)) & mask] * 3  # a, b, c
    tail = len(data) % 12 or (12 if data else 0)
    body, rest = data[: len(data) - tail], data[len(data) - tail:] + bytes(12 - tail)
    for i in range(0, len(body), 12):  # mix()
        v = [(v[j] + int.from_bytes(body[i + 4 * j:i + 4 * j + 4], "little")) & mask for j in range(3)]
        for step, k in enumerate((4, 6, 8, 16, 19, 4)):
            x, y, z = step % 3, (step + 1) % 3, (step + 2) % 3
            v[x] = ((v[x] - v[z]) & mask) ^ rot(v[z], k)
            v[z] = (v[z] + v[y]) & mask
    if not data:
        return v[2]
    v = [(v[j] + int.from_bytes(rest[4 * j:4 * j + 4], "little")) & mask for j in range(3)]
    for step, k in enumerate((14, 11, 25, 16, 4, 14, 24)):  # final()
        x = (2 + step) % 3
        y = (x + 2) % 3
        v[x] = ((v[x] ^ v[y]) - rot(v[y], k)) & mask
    return v[2]


def clear_open_mark(path: str | os.PathLike) -> bool:
    """Clears the "open for write" mark a killed writer leaves in an h5 file's superblock, as
    ``h5clear -s`` does: the file consistency flags are zeroed and the superblock's checksum
    rewritten. Only for a file no process has open (the caller checks: :class:`StorageLockedError`
    from opening it says it is in use).

    Returns:
        True when a mark was cleared; False when the file has none, has a superblock without flags
        (version 0 or 1, at offset 0), or its superblock's checksum does not match (left unchanged).

    Raises:
        OSError: the file cannot be read or written.
    """
    with open(path, "r+b") as f:
        head = f.read(12)
        if len(head) < 12 or head[:8] != _SIGNATURE or head[8] not in (2, 3) or head[11] == 0:
            return False
        size = 12 + 4 * head[9]  # signature, versions, sizes, flags, then four addresses
        block = head + f.read(size + 4 - 12)
        if len(block) < size + 4 or _lookup3(block[:size]) != int.from_bytes(block[size:], "little"):
            return False
        cleared = block[:11] + b"\x00" + block[12:size]
        f.seek(0)
        f.write(cleared + _lookup3(cleared).to_bytes(4, "little"))
    return True


def _is_complete(group) -> bool:
    return isinstance(group, h5py.Group) and bool(group.attrs.get(COMPLETE, False))


def _replace_group(fd: h5py.File, key: str) -> h5py.Group:
    if key in fd:
        del fd[key]
    return fd.create_group(key)


# --------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------
def write_features(path: str | os.PathLike, name: str, features: Features, source: str | None = None) -> None:
    """Write (or replace) the features of one image.

    Args:
        path: the features file (created if absent).
        name: the image name (relative path, posix separators).
        features: keypoints in pixels of the original image (see the module doc).
        source: fingerprint of the image file they were computed from (see :func:`read_source`).

    Raises:
        ValueError: inconsistent array shapes.
        StorageError: the file cannot be opened.
    """
    kps = np.asarray(features.keypoints, dtype=np.float32)
    desc = np.asarray(features.descriptors, dtype=np.float32)
    scores = np.asarray(features.scores, dtype=np.float32)
    size = np.asarray(features.image_size, dtype=np.int64)
    n = len(kps)
    if kps.ndim != 2 or kps.shape[1] != 4:
        raise ValueError(f"{name}: keypoints must be (N, 4) [x, y, size, angle], got {kps.shape}")
    if desc.ndim != 2 or len(desc) != n or scores.shape != (n,) or size.shape != (2,):
        raise ValueError(
            f"{name}: inconsistent features (keypoints {kps.shape}, descriptors {desc.shape}, "
            f"scores {scores.shape}, image_size {size.shape})"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open(path, "a") as fd:
        grp = _replace_group(fd, name)
        grp.create_dataset("keypoints", data=np.ascontiguousarray(kps[:, :2]))
        grp.create_dataset("scales", data=np.ascontiguousarray(kps[:, 2]))
        grp.create_dataset("orientations", data=np.ascontiguousarray(kps[:, 3]))
        grp.create_dataset("descriptors", data=np.ascontiguousarray(desc.T))
        grp.create_dataset("scores", data=scores)
        grp.create_dataset("image_size", data=size)
        if source is not None:
            grp.attrs["source"] = source
        fd.flush()
        grp.attrs[COMPLETE] = True


def read_source(path: str | os.PathLike, name: str) -> str | None:
    """The image fingerprint stored with an image's features (None when absent or not recorded)."""
    path = Path(path)
    if not path.is_file():
        return None
    with _open(path, "r") as fd:
        if name not in fd:
            return None
        value = fd[name].attrs.get("source")
    return None if value is None else str(value)


def read_features(path: str | os.PathLike, name: str) -> Features:
    """Read the features of one image.

    Returns:
        :class:`~patchmatch.features.Features` with ``keypoints`` (N, 4)
        ``[x, y, size, angle]`` float32 in pixels of the original image.

    Raises:
        KeyError: the file holds no complete entry for ``name``.
        StorageError: the file cannot be opened or the entry is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise KeyError(f"{path} does not exist (no features for {name!r})")
    with _open(path, "r") as fd:
        grp = fd.get(name)
        if not _is_complete(grp):
            raise KeyError(f"{path} holds no complete features for {name!r}")
        try:
            xy = grp["keypoints"][()]
            n = len(xy)
            scales = grp["scales"][()] if "scales" in grp else np.ones(n, np.float32)
            oris = grp["orientations"][()] if "orientations" in grp else np.zeros(n, np.float32)
            desc = grp["descriptors"][()].T
            scores = grp["scores"][()]
            size = grp["image_size"][()]
        except KeyError as error:
            raise StorageError(f"{path}: features of {name!r} lack a dataset ({error})") from error
    kps = np.concatenate([xy, scales[:, None], oris[:, None]], axis=1).astype(np.float32)
    return Features(
        np.ascontiguousarray(kps),
        np.ascontiguousarray(desc, dtype=np.float32),
        scores.astype(np.float32),
        size.astype(np.int64),
    )


def list_features(path: str | os.PathLike) -> list[str]:
    """Names of the images with complete features in a file (``[]`` if no file).

    Raises:
        StorageError: the file exists but cannot be opened.
    """
    path = Path(path)
    if not path.is_file():
        return []
    names: list[str] = []
    with _open(path, "r") as fd:

        def visit(key, obj):
            if _is_complete(obj) and "keypoints" in obj:
                names.append(key)

        fd.visititems(visit)
    return sorted(names)


def has_features(path: str | os.PathLike, name: str) -> bool:
    """Whether the file holds complete features of ``name``.

    Raises:
        StorageError: the file exists but cannot be opened.
    """
    path = Path(path)
    if not path.is_file():
        return False
    with _open(path, "r") as fd:
        return _is_complete(fd.get(name))


# --------------------------------------------------------------------------
# Matches
# --------------------------------------------------------------------------
def matches_to_matches0(matches: np.ndarray, scores: np.ndarray, num_keypoints0: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) index pairs → hloc's ``matches0`` (N0,) int32 and ``matching_scores0`` (N0,) float32.

    Raises:
        ValueError: bad shapes, indices out of range, or a keypoint of image 0
            matched twice (``matches0`` holds one match per keypoint).
    """
    matches = np.asarray(matches, dtype=np.int64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(scores) != len(matches):
        raise ValueError(f"{len(matches)} matches but {len(scores)} scores")
    if len(matches) and (matches.min() < 0 or matches[:, 0].max() >= num_keypoints0):
        raise ValueError(f"match indices out of range for {num_keypoints0} keypoints in image 0")
    if len(np.unique(matches[:, 0])) != len(matches):
        raise ValueError("a keypoint of image 0 is matched twice; matches0 holds one match per keypoint")
    matches0 = np.full(num_keypoints0, -1, np.int32)
    scores0 = np.zeros(num_keypoints0, np.float32)
    matches0[matches[:, 0]] = matches[:, 1]
    scores0[matches[:, 0]] = scores
    return matches0, scores0


def matches0_to_matches(matches0: np.ndarray, scores0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """hloc's ``matches0`` → ``(matches (K, 2) int64, scores (K,) float32)``, in image-0 order."""
    matches0 = np.asarray(matches0).reshape(-1)
    idx = np.nonzero(matches0 >= 0)[0]
    matches = np.stack([idx, matches0[idx]], axis=1).astype(np.int64)
    scores = (
        np.asarray(scores0, dtype=np.float32)[idx] if scores0 is not None else np.ones(len(idx), np.float32)
    )
    return matches, scores


def _find_pair(fd: h5py.File, name0: str, name1: str) -> tuple[str, bool] | None:
    """Key of a complete pair group and whether it is stored reversed (hloc's find_pair)."""
    for key, reverse in (
        (names_to_pair(name0, name1), False),
        (names_to_pair(name1, name0), True),
        (names_to_pair_old(name0, name1), False),
        (names_to_pair_old(name1, name0), True),
    ):
        if _is_complete(fd.get(key)):
            return key, reverse
    return None


def write_matches(
    path: str | os.PathLike,
    name0: str,
    name1: str,
    matches: np.ndarray,
    scores: np.ndarray,
    num_keypoints0: int,
    candidates: int | None = None,
) -> None:
    """Write (or replace) the matches of one pair as ``names_to_pair(name0, name1)``.

    Args:
        path: the matches file (created if absent).
        name0: image 0. name1: image 1.
        matches: (K, 2) int keypoint indices ``[i0, i1]``.
        scores: (K,) float match scores (higher = more similar).
        num_keypoints0: N0, the number of keypoints of image 0.
        candidates: candidate keypoint pairs the network compared to decide them, kept as the
            group's ``candidates`` attribute (:func:`stored_candidates`); None: the count stored
            with the pair's earlier matches is kept (none when there were none).

    Raises:
        ValueError: see :func:`matches_to_matches0`; ``name0 == name1``.
        StorageError: the file cannot be opened.
    """
    if name0 == name1:
        raise ValueError(f"self pair {name0!r}")
    matches0, scores0 = matches_to_matches0(matches, scores, num_keypoints0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open(path, "a") as fd:
        if candidates is None:  # matches merged into the pair's (guided matching): its count stays
            found = _find_pair(fd, name0, name1)
            candidates = None if found is None else fd[found[0]].attrs.get("candidates")
        for key in (names_to_pair(name1, name0), names_to_pair_old(name0, name1), names_to_pair_old(name1, name0)):
            if key in fd:  # a stale copy in another key would shadow or duplicate this one
                del fd[key]
        grp = _replace_group(fd, names_to_pair(name0, name1))
        grp.create_dataset("matches0", data=matches0)
        grp.create_dataset("matching_scores0", data=scores0)
        if candidates is not None:
            grp.attrs["candidates"] = int(candidates)
        fd.flush()
        grp.attrs[COMPLETE] = True


def read_matches(path: str | os.PathLike, name0: str, name1: str) -> tuple[np.ndarray, np.ndarray]:
    """Matches of a pair, in the order asked, whichever order they were stored in.

    Returns:
        ``(matches (K, 2) int64 [i0, i1], scores (K,) float32)``.

    Raises:
        KeyError: the file holds no complete entry for the pair.
        StorageError: the file cannot be opened or the entry is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise KeyError(f"{path} does not exist (no matches for {name0!r}, {name1!r})")
    with _open(path, "r") as fd:
        found = _find_pair(fd, name0, name1)
        if found is None:
            raise KeyError(f"{path} holds no complete matches for {name0!r}, {name1!r}")
        key, reverse = found
        grp = fd[key]
        if "matches0" not in grp:
            raise StorageError(f"{path}: pair {key!r} lacks 'matches0'")
        matches0 = grp["matches0"][()]
        scores0 = grp["matching_scores0"][()] if "matching_scores0" in grp else None
    matches, scores = matches0_to_matches(matches0, scores0)
    if reverse:
        matches = matches[:, ::-1].copy()
        order = np.argsort(matches[:, 0], kind="stable")
        matches, scores = matches[order], scores[order]
    return matches, scores


def has_matches(path: str | os.PathLike, name0: str, name1: str) -> bool:
    """Whether the file holds complete matches of the pair, in either order.

    Raises:
        StorageError: the file exists but cannot be opened.
    """
    return not missing_pairs(path, [(name0, name1)])


def stored_candidates(path: str | os.PathLike, pairs: Sequence[tuple[str, str]]) -> int:
    """Candidate keypoint pairs the network compared for the pairs of ``pairs`` stored in the
    file (their ``candidates`` attributes, :func:`write_matches`; 0 for pairs without one or absent).

    Raises:
        StorageError: the file exists but cannot be opened.
    """
    path = Path(path)
    if not path.is_file() or not pairs:
        return 0
    with _open(path, "r") as fd:
        found = (_find_pair(fd, a, b) for a, b in pairs)
        return sum(int(fd[f[0]].attrs.get("candidates", 0)) for f in found if f is not None)


def missing_pairs(path: str | os.PathLike, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs of ``pairs`` without complete matches in the file (all if no file).

    Raises:
        StorageError: the file exists but cannot be opened.
    """
    path = Path(path)
    if not path.is_file():
        return list(pairs)
    with _open(path, "r") as fd:
        return [(a, b) for a, b in pairs if _find_pair(fd, a, b) is None]


def missing_features(path: str | os.PathLike, names: Iterable[str]) -> list[str]:
    """The names without complete features in the file (all if no file).

    Raises:
        StorageError: the file exists but cannot be opened.
    """
    path = Path(path)
    names = list(names)
    if not path.is_file():
        return names
    with _open(path, "r") as fd:
        return [n for n in names if not _is_complete(fd.get(n))]
