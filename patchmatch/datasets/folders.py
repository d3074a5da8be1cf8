"""Output folders written whole or not at all: built under ``<out>.partial`` and renamed into place."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

__all__ = ["partial_folder"]


@contextlib.contextmanager
def partial_folder(out: Path) -> Iterator[Path]:
    """The folder to build ``out`` in: ``out.partial``, emptied first; renamed to ``out`` when the block ends.

    An earlier ``out`` is deleted at the end, so the caller checks first that it may be
    (e.g. :func:`patchmatch.datasets.patchset.check_output`). When the block raises, the partial folder is
    removed and ``out`` is left as it was, so an interrupted build never leaves half an output.

    Args:
        out: the final folder.

    Yields:
        The path of the partial folder (not created: the caller makes it, or what writes into it does).
    """
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
