"""Stage 2: which image pairs to match → ``pairs.json``.

A strategy string (:mod:`patchmatch.pairs`: ``exhaustive``, ``sequential:N``, ``retrieval:N``,
``file:PATH``) applied to the images with features. The pairs are written as a JSON list of
``[name0, name1]`` (any image name, whitespace included, survives it) and recomputed on every
run: it is cheap, and a resumed run may have gained or lost images.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .. import storage
from ..cache import LruMapping
from ..pairs import Pair, make_pairs, parse_strategy, read_pairs_strategy_file, resolve_strategy
from ..report import write_json

logger = logging.getLogger(__name__)

#: Memory for descriptors kept while ranking images by retrieval (MiB); beyond it they are read
#: again from features.h5 (8192 descriptors are 4 MiB an image).
FEATURE_CACHE_MB = 1024


def read(pairs_path: str | os.PathLike) -> list[Pair]:
    """The pairs :func:`run` wrote, as ``(name0, name1)`` tuples in their stored order."""
    return [(a, b) for a, b in json.loads(Path(pairs_path).read_text())]


def run(
    features_path: str | os.PathLike,
    names: list[str],
    pairs_path: str | os.PathLike,
    strategy: str = "exhaustive",
    left_out: list[str] = (),
    report: dict | None = None,
) -> Path:
    """Writes the pairs of ``names`` chosen by ``strategy``.

    Args:
        features_path: the features of ``names`` (``retrieval:N`` reads their descriptors).
        names: the images to pair (those with features).
        pairs_path: the file to write.
        strategy: see :mod:`patchmatch.pairs` (``auto``: exhaustive or retrieval by the number of images).
        left_out: images of the folder that are not in ``names`` (unreadable, duplicates): a
            pairs file may name them; such pairs are dropped with a warning.
        report: gets ``pairs_strategy``, the strategy used (what ``auto`` chose, or the file), and
            in ``notes`` the pairs of a pairs file left out.

    Returns:
        ``pairs_path``.

    Raises:
        ValueError, FileNotFoundError: a bad strategy or pairs file (see :mod:`patchmatch.pairs`).
    """
    listed = read_pairs_strategy_file(strategy, list(names) + list(left_out))
    if listed is None:
        strategy = resolve_strategy(strategy, len(names))
        descriptors = None
        if parse_strategy(strategy)[0] == "retrieval":  # streamed from the file, not all held
            descriptors = LruMapping(names, lambda n: storage.read_features(features_path, n).descriptors,
                                     FEATURE_CACHE_MB * 2**20, lambda d: d.nbytes)  # fmt: skip
        pairs = make_pairs(strategy, names, descriptors)
    else:
        usable = set(names)
        pairs = [p for p in listed if p[0] in usable and p[1] in usable]
        if len(pairs) < len(listed):
            named = sorted({n for p in listed for n in p} - usable)
            note = (f"{len(listed) - len(pairs)} of the {len(listed)} pairs of {strategy} name a skipped image "
                    f"({', '.join(named[:5])}{', …' if len(named) > 5 else ''}): left out")  # fmt: skip
            logger.warning("%s", note)
            if report is not None:
                report.setdefault("notes", []).append(note)
    if report is not None:
        report["pairs_strategy"] = str(strategy)
    return write_json(pairs_path, [list(p) for p in pairs])
