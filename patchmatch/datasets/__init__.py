"""Datasets: scenes with ground-truth cameras and the geometry-only patch pairs built from them.

- :mod:`.scenes`: ``cameras.json`` scenes (cameras, projection, fundamental matrices).
- :mod:`.tracks`: SIFT keypoints tied into tracks by geometry alone; h5 pair sets with random
  and hard negatives (``patchmatch make-patches``).
- :mod:`.brown`: the Brown et al. patch dataset format.
"""

from .scenes import Camera, Scene, SceneError, fundamental_matrix, load_scene
from .tracks import PairSetConfig, TrackConfig, build_pair_set, build_tracks, detect_scene, write_pair_set

__all__ = [
    "Camera",
    "Scene",
    "SceneError",
    "fundamental_matrix",
    "load_scene",
    "PairSetConfig",
    "TrackConfig",
    "build_pair_set",
    "build_tracks",
    "detect_scene",
    "write_pair_set",
]
