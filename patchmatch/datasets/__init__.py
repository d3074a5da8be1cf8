"""Datasets: scenes with ground-truth cameras and the geometry-only patch sets built from them.

- :mod:`.scenes`: ``cameras.json`` scenes (cameras, projection, fundamental matrices), and
  scenes from COLMAP sparse models.
- :mod:`.tracks`: SIFT keypoints tied into tracks by geometry alone; positives, random and hard
  negatives drawn from them.
- :mod:`.patchset`: those pairs written as Brown-format patch sets (``patchmatch make-patches``).
- :mod:`.brown`: the Brown et al. patch dataset format, read and written.
"""

from .brown import BrownDataset, BrownFormatError, write_brown
from .patchset import write_patch_set
from .scenes import Camera, Scene, SceneError, fundamental_matrix, load_scene, scene_from_colmap
from .tracks import PairSetConfig, TrackConfig, build_pair_set, build_tracks, detect_scene

__all__ = [
    "BrownDataset",
    "BrownFormatError",
    "write_brown",
    "write_patch_set",
    "Camera",
    "Scene",
    "SceneError",
    "fundamental_matrix",
    "load_scene",
    "scene_from_colmap",
    "PairSetConfig",
    "TrackConfig",
    "build_pair_set",
    "build_tracks",
    "detect_scene",
]
