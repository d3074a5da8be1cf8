"""Strict JSON for the files a run writes (``run.json``, ``report.json``, ``compare.json``).

Strict JSON has no NaN or infinity: a missing number (the reprojection error of no model) is
written as null, and a setting that must survive a round trip (``min_score=-inf`` in run.json)
as the string ``"-inf"``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def finite(obj: Any, keep: bool = False) -> Any:
    """``obj`` with NaN and infinities replaced by None, or with ``keep`` by the strings
    ``"nan"``, ``"inf"``, ``"-inf"``; dicts, lists and tuples are walked (tuples become lists)."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj) if keep else None
    if isinstance(obj, dict):
        return {k: finite(v, keep) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v, keep) for v in obj]
    return obj


def plain(data: Any, keep: bool = False) -> Any:
    """JSON-able plain data: numpy scalars and arrays, paths converted; strict (see :func:`finite`).

    Raises:
        TypeError: an object JSON cannot hold (named by its type).
    """
    return finite(json.loads(json.dumps(data, default=_json_default)), keep)


def write_json(path: str | os.PathLike, data: Any, keep: bool = False) -> Path:
    """Writes strict JSON atomically (a temporary file renamed into place, so a reader never sees
    half a file); returns ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(plain(data, keep), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
