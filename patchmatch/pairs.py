"""Which image pairs to match: exhaustive, sequential, or a pairs file.

A pairs file uses hloc's format: one pair per line, two image names separated
by whitespace (names relative to the image folder, posix separators); blank
lines and lines starting with ``#`` are ignored.

The pipeline names a strategy with one string (``SfmConfig.pairs``):

* ``"exhaustive"``: every unordered pair, ``n (n - 1) / 2`` of them;
* ``"sequential:N"``: each image with the ``N`` images after it in sorted
  name order (video or ordered captures);
* ``"file:PATH"``: the pairs listed in ``PATH``.

Pairs are always returned as sorted, deduplicated tuples ``(name0, name1)``
with ``name0 < name1``, so that a pair has one canonical key everywhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

Pair = tuple[str, str]


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
        FileNotFoundError: ``path`` does not exist.
        ValueError: a malformed line, or an unknown image name (the line is named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} does not exist")
    known = set(names) if names is not None else None
    raw: list[tuple[str, str]] = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{lineno}: expected 'name0 name1', got {line!r}")
        if known is not None:
            unknown = [f for f in fields if f not in known]
            if unknown:
                raise ValueError(f"{path}:{lineno}: unknown image name(s) {unknown}")
        raw.append((fields[0], fields[1]))
    pairs = _canonical(raw)
    if not pairs:
        logger.warning("pairs file %s lists no pair of distinct images", path)
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
        spec: ``"exhaustive"``, ``"sequential:N"`` or ``"file:PATH"``.

    Returns:
        ``("exhaustive", None)``, ``("sequential", N)`` or ``("file", PATH)``.

    Raises:
        ValueError: an unknown strategy or a malformed argument.
    """
    kind, _, arg = spec.partition(":")
    if kind == "exhaustive" and not arg:
        return "exhaustive", None
    if kind == "sequential":
        try:
            overlap = int(arg)
        except ValueError:
            raise ValueError(f"pairs strategy {spec!r}: expected 'sequential:N' with an integer N") from None
        if overlap < 1:
            raise ValueError(f"pairs strategy {spec!r}: N must be >= 1")
        return "sequential", overlap
    if kind == "file" and arg:
        return "file", arg
    raise ValueError(
        f"unknown pairs strategy {spec!r}; expected 'exhaustive', 'sequential:N' or 'file:PATH'"
    )


def make_pairs(spec: str, names: Sequence[str]) -> list[Pair]:
    """Pairs of ``names`` following a strategy string (see the module doc).

    Args:
        spec: ``"exhaustive"``, ``"sequential:N"`` or ``"file:PATH"``.
        names: unique image names.

    Returns:
        Canonical pairs, sorted.

    Raises:
        ValueError: unknown strategy, bad argument, duplicate or unknown names.
        FileNotFoundError: the pairs file does not exist.
    """
    kind, arg = parse_strategy(spec)
    if kind == "exhaustive":
        return exhaustive_pairs(names)
    if kind == "sequential":
        assert isinstance(arg, int)
        return sequential_pairs(names, arg)
    _check_names(names)
    return read_pairs_file(str(arg), names)
