"""Which image pairs to match: exhaustive, sequential, or a pairs file.

A pairs file uses hloc's format: one pair per line, two image names separated
by whitespace (names relative to the image folder, posix separators); blank
lines and lines starting with ``#`` are ignored.

The pipeline names a strategy with one string (``SfmConfig.pairs``):

* ``"exhaustive"``: every unordered pair, ``n (n - 1) / 2`` of them;
* ``"sequential:N"``: each image with the ``N`` images after it in sorted
  name order (video or ordered captures);
* ``"file:PATH"``: the pairs listed in ``PATH``;
* ``"retrieval:N"``: each image with its ``N`` most similar images by a global descriptor
  (VLAD of the images' own SIFT descriptors, see :func:`retrieval_pairs`), for collections
  too large to match exhaustively;
* ``"auto"``: exhaustive up to :data:`AUTO_MAX_EXHAUSTIVE` images, else
  ``retrieval:``:data:`AUTO_NEIGHBORS` (logged): the cost then grows linearly with the images.

Pairs are always returned as sorted, deduplicated tuples ``(name0, name1)``
with ``name0 < name1``, so that a pair has one canonical key everywhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

Pair = tuple[str, str]

#: Images up to which ``auto`` matches every pair: 200 images are 19,900 pairs (hours on a
#: laptop); beyond, exhaustive pairs grow quadratically while retrieval's grow linearly.
AUTO_MAX_EXHAUSTIVE = 200
#: Neighbours per image of ``auto``'s retrieval (hloc's SfM examples use 20 to 50): enough
#: overlapping partners per image for the incremental mapper, ~15 pairs an image after deduplication.
AUTO_NEIGHBORS = 20
#: Rows of the image-similarity matrix computed at once by :func:`retrieval_pairs` (the N × N
#: matrix is never held whole).
SIMILARITY_ROWS = 1024


def _canonical(pairs: Iterable[tuple[str, str]]) -> list[Pair]:
    out = {(a, b) if a < b else (b, a) for a, b in pairs if a != b}
    return sorted(out)


def _check_names(names: Sequence[str]) -> list[str]:
    names = list(names)
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate image names: {dupes[:5]}")
    return sorted(names)


def exhaustive_pairs(names: Sequence[str]) -> list[Pair]:
    """All unordered pairs of ``names``.

    Args:
        names: unique image names.

    Returns:
        ``n (n - 1) / 2`` pairs ``(a, b)`` with ``a < b``, sorted.

    Raises:
        ValueError: duplicate names.
    """
    names = _check_names(names)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def sequential_pairs(names: Sequence[str], overlap: int) -> list[Pair]:
    """Each image with the ``overlap`` images that follow it in sorted order.

    Args:
        names: unique image names.
        overlap: number of following images to pair with (>= 1).

    Returns:
        Pairs ``(a, b)`` with ``a < b``, sorted.

    Raises:
        ValueError: duplicate names or ``overlap < 1``.
    """
    if overlap < 1:
        raise ValueError(f"sequential overlap must be >= 1, got {overlap}")
    names = _check_names(names)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 : i + 1 + overlap]]


def read_pairs_file(path: str | os.PathLike, names: Sequence[str] | None = None) -> list[Pair]:
    """Read a pairs file in hloc's format.

    Args:
        path: text file, one ``name0 name1`` pair per line.
        names: the images that exist; when given, a pair naming any other
            image is an error.

    Returns:
        Canonical pairs (``a < b``, sorted, deduplicated, self pairs dropped).

    Raises:
        FileNotFoundError: ``path`` does not exist; IsADirectoryError: it is a folder.
        ValueError: a malformed line, an unknown image name (the line is named), no pair of two
            distinct images in the file, or a file that is not UTF-8 text.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"pairs file {path} is a folder; expected a text file of 'name0 name1' lines")
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} does not exist (a pairs spec is auto, exhaustive, sequential:N, "
                                "retrieval:N or the path of a file of 'name0 name1' lines)")
    known = set(names) if names is not None else None
    raw: list[tuple[str, str]] = []
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (some editors write one) is no name
    except UnicodeDecodeError as error:
        raise ValueError(f"pairs file {path}: not UTF-8 text (byte {error.start}); expected 'name0 name1' lines") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            shown = line if len(line) <= 200 else line[:200] + "..."
            raise ValueError(f"{path}:{lineno}: expected 'name0 name1', got {shown!r}")
        if known is not None:
            unknown = [f for f in fields if f not in known]
            if unknown:
                raise ValueError(f"{path}:{lineno}: unknown image name(s) {unknown}")
        raw.append((fields[0], fields[1]))
    pairs = _canonical(raw)
    if not pairs:
        raise ValueError(f"pairs file {path} lists no pair of distinct images (nothing to match)")
    return pairs


def write_pairs_file(path: str | os.PathLike, pairs: Iterable[tuple[str, str]]) -> Path:
    """Write pairs in hloc's format (one ``name0 name1`` per line).

    Raises:
        ValueError: a name containing whitespace (it could not be read back).
    """
    path = Path(path)
    lines = []
    for a, b in pairs:
        if any(ch.isspace() for ch in a + b):
            raise ValueError(f"image name with whitespace cannot go in a pairs file: {a!r} {b!r}")
        lines.append(f"{a} {b}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


def parse_strategy(spec: str) -> tuple[str, int | str | None]:
    """Validate a pair-strategy string without any image list.

    Args:
        spec: ``"exhaustive"``, ``"sequential:N"``, ``"retrieval:N"`` or ``"file:PATH"``.

    Returns:
        ``("exhaustive", None)``, ``("sequential", N)``, ``("retrieval", N)`` or ``("file", PATH)``.

    Raises:
        ValueError: an unknown strategy or a malformed argument.
    """
    kind, _, arg = spec.partition(":")
    if kind in ("exhaustive", "auto") and not arg:
        return kind, None
    if kind in ("sequential", "retrieval"):
        try:
            num = int(arg)
        except ValueError:
            raise ValueError(f"pairs strategy {spec!r}: expected '{kind}:N' with an integer N") from None
        if num < 1:
            raise ValueError(f"pairs strategy {spec!r}: N must be >= 1")
        return kind, num
    if kind == "file" and arg:
        return "file", arg
    raise ValueError(
        f"unknown pairs strategy {spec!r}; expected 'auto', 'exhaustive', 'sequential:N', 'retrieval:N' or 'file:PATH'"
    )


def resolve_strategy(spec: str, num_images: int) -> str:
    """``spec`` itself, or for ``"auto"`` the strategy it stands for with ``num_images`` images
    (exhaustive up to :data:`AUTO_MAX_EXHAUSTIVE`, else retrieval), said in the log."""
    if parse_strategy(spec)[0] != "auto":
        return spec
    if num_images <= AUTO_MAX_EXHAUSTIVE:
        return "exhaustive"
    logger.info("%d images (more than %d): pairs by retrieval of the %d most similar images (retrieval:%d) instead "
                "of all pairs; pass --pairs exhaustive to match every pair", num_images, AUTO_MAX_EXHAUSTIVE,
                AUTO_NEIGHBORS, AUTO_NEIGHBORS)  # fmt: skip
    return f"retrieval:{AUTO_NEIGHBORS}"


def read_pairs_strategy_file(spec: str, names: Sequence[str]) -> list[Pair] | None:
    """The pairs of a ``file:PATH`` strategy, checked against ``names`` (before any work is
    done); None for the other strategies.

    Raises:
        ValueError, FileNotFoundError, IsADirectoryError: see :func:`parse_strategy` and
            :func:`read_pairs_file`.
    """
    kind, path = parse_strategy(spec)
    return read_pairs_file(str(path), names) if kind == "file" else None


def make_pairs(spec: str, names: Sequence[str], descriptors: Mapping[str, np.ndarray] | None = None) -> list[Pair]:
    """Pairs of ``names`` following a strategy string (see the module doc).

    Args:
        spec: ``"auto"``, ``"exhaustive"``, ``"sequential:N"``, ``"retrieval:N"`` or ``"file:PATH"``.
        names: unique image names.
        descriptors: name -> (N_i, 128) SIFT descriptors of every image (any mapping: one read
            on demand keeps a large collection out of memory); needed by retrieval only.

    Returns:
        Canonical pairs, sorted.

    Raises:
        ValueError: unknown strategy, bad argument, duplicate or unknown names, or
            ``retrieval:N`` without descriptors.
        FileNotFoundError: the pairs file does not exist.
    """
    kind, arg = parse_strategy(resolve_strategy(spec, len(names)))
    if kind == "exhaustive":
        return exhaustive_pairs(names)
    if kind == "sequential":
        assert isinstance(arg, int)
        return sequential_pairs(names, arg)
    if kind == "retrieval":
        assert isinstance(arg, int)
        if descriptors is None:
            raise ValueError(f"pairs strategy {spec!r} needs the images' descriptors")
        return retrieval_pairs(names, descriptors, arg)
    _check_names(names)
    return read_pairs_file(str(arg), names)


def vlad(
    descriptors: Mapping[str, np.ndarray],
    num_words: int = 64,
    max_training: int = 100_000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """VLAD global descriptors (Jégou et al., CVPR 2010) of images from their local descriptors.

    RootSIFT (Arandjelović & Zisserman, CVPR 2012) of the local descriptors; a vocabulary of
    ``num_words`` visual words by k-means (:func:`cv2.kmeans`) on at most ``max_training``
    descriptors sampled from the images themselves (no pretrained model); residuals summed per
    word, intra-normalised, signed square root and L2 normalisation ("All about VLAD",
    Arandjelović & Zisserman, CVPR 2013).

    Args:
        descriptors: name -> (N_i, D) float or uint8 descriptors (N_i may be 0); any mapping
            (each image's are read a few times, one image at a time, never all held).
        num_words: vocabulary size K (fewer when there are fewer descriptors).
        max_training: descriptors used to fit the vocabulary.
        seed: sampling and k-means seed.

    Returns:
        name -> (K * D,) float32 unit vector (all zeros for an image without descriptors).

    Raises:
        ValueError: no descriptors at all.
    """
    import cv2

    names = list(descriptors)
    counts = np.array([len(descriptors[n]) for n in names], np.int64)  # one image in memory at a time
    if counts.sum() == 0:
        raise ValueError("no descriptors to build global image descriptors from")
    train = _training_sample(descriptors, names, counts, max_training, seed)
    k = int(min(num_words, len(train)))
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-4)
    _, _, centers = cv2.kmeans(train, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    out = {}
    for name, count in zip(names, counts):
        v = np.zeros((k, train.shape[1]), np.float32)
        if count:
            d = _root_sift(descriptors[name])
            dist = (d**2).sum(1, keepdims=True) - 2 * d @ centers.T + (centers**2).sum(1)
            word = dist.argmin(1)
            np.add.at(v, word, d - centers[word])
            v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            v = np.sign(v) * np.sqrt(np.abs(v))
            v /= max(float(np.linalg.norm(v)), 1e-12)
        out[name] = v.ravel()
    return out


def _root_sift(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, np.float32)
    d = d / np.maximum(np.abs(d).sum(1, keepdims=True), 1e-12)
    return np.sqrt(np.abs(d))


def _training_sample(descriptors: Mapping[str, np.ndarray], names: list[str], counts: np.ndarray, size: int,
                     seed: int) -> np.ndarray:  # fmt: skip
    """(min(size, total), D) RootSIFT descriptors drawn without replacement from all images, in
    the drawn order, gathered one image at a time (never all descriptors at once)."""
    rng = np.random.default_rng(seed)
    total = int(counts.sum())
    drawn = rng.choice(total, min(total, size), replace=False)
    starts = np.concatenate([[0], np.cumsum(counts)])
    owner = np.searchsorted(starts, drawn, side="right") - 1
    train = None
    for i in np.unique(owner):
        rows = np.nonzero(owner == i)[0]
        d = _root_sift(descriptors[names[i]])
        if train is None:
            train = np.empty((len(drawn), d.shape[1]), np.float32)
        train[rows] = d[drawn[rows] - starts[i]]
    return train


def retrieval_pairs(names: Sequence[str], descriptors: Mapping[str, np.ndarray], num_neighbors: int) -> list[Pair]:
    """Each image paired with its ``num_neighbors`` most similar images by VLAD (:func:`vlad`).

    Args:
        names: unique image names.
        descriptors: name -> (N_i, 128) SIFT descriptors, for every name.
        num_neighbors: N; all other images when there are fewer.

    Returns:
        Canonical pairs (the union over images, so an image can have more than N partners).
        An image without descriptors gets no pairs and is nobody's neighbour; when no image
        has any, all pairs (nothing to rank by).

    Raises:
        ValueError: duplicate names, a name without descriptors, or ``num_neighbors < 1``.
    """
    if num_neighbors < 1:
        raise ValueError(f"retrieval needs N >= 1, got {num_neighbors}")
    names = _check_names(names)
    missing = [n for n in names if n not in descriptors]
    if missing:
        raise ValueError(f"no descriptors for images {missing[:5]}")
    empty = np.array([len(descriptors[n]) == 0 for n in names])  # one image in memory at a time
    if empty.all():
        logger.warning("no image has descriptors: retrieval falls back to exhaustive pairs")
        return exhaustive_pairs(names)
    g = vlad(_Subset(descriptors, names))
    mat = np.stack([g[n] for n in names])
    pairs = []
    for start in range(0, len(names), SIMILARITY_ROWS):
        sim = mat[start : start + SIMILARITY_ROWS] @ mat.T
        sim[:, empty] = -np.inf  # an image without keypoints is nobody's neighbour ...
        sim[np.arange(len(sim)), start + np.arange(len(sim))] = -np.inf
        for r, row in enumerate(sim):
            i = start + r
            if empty[i]:  # ... and has none of its own (it cannot match anything)
                continue
            order = np.argsort(-row, kind="stable")
            for j in order[: min(num_neighbors, int(np.isfinite(row).sum()))]:
                pairs.append((names[i], names[int(j)]))
    return _canonical(pairs)


class _Subset(Mapping):
    """The entries of ``names`` of a mapping, in that order, read through (no copy)."""

    def __init__(self, mapping: Mapping, names: list[str]):
        self._mapping, self._names = mapping, names

    def __getitem__(self, key):
        return self._mapping[key]

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)
