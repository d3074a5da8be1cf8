"""patchmatch: structure-from-motion with learned patch comparison.

The central-surround two-stream 2-channel network ("2ch-2stream") of Zagoruyko & Komodakis,
"Learning to Compare Image Patches via Convolutional Neural Networks", CVPR 2015, scores candidate
keypoint matches; pycolmap verifies and reconstructs. Importing this package changes no global
state and downloads nothing; its public names are imported on first use (PEP 562), so the
command line starts without importing PyTorch.
"""

from __future__ import annotations

import importlib
import zlib  # noqa: F401  (first: see below)
from typing import TYPE_CHECKING, Any

# The system zlib is loaded before pycolmap can be: pycolmap's extension links its own copy of
# zlib and exports it, and a libz.so.1 first loaded as that extension's dependency binds its
# internal calls (deflateReset) to the copy. OpenCV's PNG writer then corrupts the heap ("double
# free or corruption" in cv2.imwrite). Loaded here first, libz binds to itself
# (tests/test_native_libraries.py).

__version__ = "0.1.0"
#: public name → the submodule that defines it
_EXPORTS = {
    "Features": "features", "detect": "features",
    "ImageReadError": "images", "list_images": "images", "read_gray": "images",
    "MatchConfig": "matching", "MatchResult": "matching", "match_features": "matching", "match_images": "matching",
    "MAGNIFICATION": "patches", "PATCH_SIZE": "patches", "extract_patches": "patches", "extract_patches_colmap": "patches",
    "PatchScorer": "scoring",
}  # fmt: skip
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .features import Features, detect
    from .images import ImageReadError, list_images, read_gray
    from .matching import MatchConfig, MatchResult, match_features, match_images
    from .patches import MAGNIFICATION, PATCH_SIZE, extract_patches, extract_patches_colmap
    from .scoring import PatchScorer


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
