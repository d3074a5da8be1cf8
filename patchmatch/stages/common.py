"""What every stage shares: progress bars and the check of an h5 file before it is resumed."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .. import storage

logger = logging.getLogger(__name__)


def progress_bar(iterable: Iterable, enabled: bool, desc: str, total: int | None = None) -> Iterable:
    """``iterable`` itself, or wrapped in a tqdm bar when ``enabled`` (the command line's choice)."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="it", dynamic_ncols=True)


def set_aside_if_unreadable(path: str | os.PathLike, probe: Callable[[Path], object]) -> str | None:
    """Makes an h5 file that ``probe`` cannot read usable again: a file left marked "open for
    write" by a killed writer has the mark cleared (:func:`storage.clear_open_mark`) and is kept
    when ``probe`` then reads it; any other unreadable file (a process killed while HDF5 wrote its
    metadata leaves such a file) is moved to ``NAME.corrupt-DATE`` so that it is recomputed.

    Returns:
        A note saying what was cleared or moved where, or None when the file is readable or absent.

    Raises:
        StorageLockedError: another process has the file open (from ``probe``; nothing is changed).
    """
    path = Path(path)
    try:
        probe(path)
    except storage.StorageError as error:
        if storage.clear_open_mark(path):
            try:
                probe(path)
            except storage.StorageError as again:
                error = again
            else:
                message = (f"{path.name} was marked open for writing by a stopped run; the mark was cleared "
                           "(as h5clear -s does) and its complete entries reused")  # fmt: skip
                logger.warning(message)
                return message
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        cause = error.__cause__ or error  # HDF5's words, without the error's advice to move the file
        message = f"{path.name} was unreadable ({cause}); moved to {aside.name} and recomputed"
        logger.warning(message)
        return message
    return None
