"""How much COLMAP itself writes to stderr (its glog lines)."""

from __future__ import annotations

import pycolmap


def set_verbosity(verbose: bool) -> None:
    """Let COLMAP's glog write its INFO lines to stderr (``verbose``) or only fatal errors.

    Quiet is meant as the default of a command line: patchmatch checks every COLMAP result
    itself and logs what failed in its own words (e.g. "COLMAP built no model from DB");
    COLMAP's ERROR lines (such as "Failed to create any sparse model" from a mapper run that a
    fallback then repairs) would only mislead. This sets glog's process-wide
    ``pycolmap.logging.minloglevel``: the command line calls it, library code does not.
    """
    pycolmap.logging.minloglevel = 0 if verbose else 3
