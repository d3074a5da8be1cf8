"""The +0.5 pixel rule, kept importable here: it lives in :mod:`patchmatch.colmap.convention`."""

from .colmap.convention import colmap_to_opencv, opencv_to_colmap

__all__ = ["colmap_to_opencv", "opencv_to_colmap"]
