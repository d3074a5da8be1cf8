"""Shards: the result of one unit of distributed work (an image's features, a block of image
pairs' matches), one ``.npz`` file each under ``OUT/shards``, written atomically.

A shard's name is a hash of everything its content depends on (the image and its file
fingerprint, or the block's pairs, plus the weights, precision and settings), so a rerun finds
the shards of an interrupted run and a run with other settings never reads them. Workers write
shards; only the driver merges them into ``features.h5`` and ``matches.h5``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: Folder of the shards inside OUT.
SHARDS_DIR = "shards"


def shard_name(kind: str, *parts: Any) -> str:
    """``KIND-<sha256 of the JSON of parts, 24 hex digits>.npz``: the file of one unit of work."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return f"{kind}-{digest}.npz"


def write_shard(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Writes ``arrays`` to ``path`` atomically (a temporary file in the same folder, then
    renamed): a reader sees the whole shard or none, whatever kills the writer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_shard(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a shard (loaded in full: a shard is one image or one block of pairs)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def pack_matches(results: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, int]],
                 failed: dict[tuple[str, str], str]) -> dict[str, np.ndarray]:  # fmt: skip
    """The arrays of a matches shard: ``pairs`` (JSON of ``[[a, b], ...]``), ``offsets`` (P + 1,)
    int64, ``matches`` (K, 2) int64, ``scores`` (K,) float32, ``candidates`` (P,) int64 and
    ``failed`` (JSON of ``{"a\\tb": reason}``)."""
    pairs = list(results)
    counts = [len(results[p][0]) for p in pairs]
    empty = (np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
    return {
        "pairs": np.array(json.dumps([list(p) for p in pairs])),
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "matches": np.concatenate([np.asarray(results[p][0], np.int64).reshape(-1, 2) for p in pairs] + [empty[0]]),
        "scores": np.concatenate([np.asarray(results[p][1], np.float32) for p in pairs] + [empty[1]]),
        "candidates": np.array([results[p][2] for p in pairs], np.int64),
        "failed": np.array(json.dumps({f"{a}\t{b}": why for (a, b), why in failed.items()})),
    }


def unpack_matches(data: dict[str, np.ndarray]) -> tuple[dict[tuple[str, str], tuple[np.ndarray, np.ndarray, int]], dict]:
    """The inverse of :func:`pack_matches`: ``({pair: (matches, scores, candidates)}, {pair: reason})``."""
    pairs = [tuple(p) for p in json.loads(str(data["pairs"]))]
    off = data["offsets"]
    results = {p: (data["matches"][off[i] : off[i + 1]], data["scores"][off[i] : off[i + 1]], int(data["candidates"][i]))
               for i, p in enumerate(pairs)}  # fmt: skip
    failed = {tuple(k.split("\t")): why for k, why in json.loads(str(data["failed"])).items()}
    return results, failed
