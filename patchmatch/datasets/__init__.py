"""Datasets: scenes with ground-truth cameras and the geometry-only patch pairs built from them."""

from .scenes import Camera, Scene, SceneError, fundamental_matrix, load_scene

__all__ = ["Camera", "Scene", "SceneError", "fundamental_matrix", "load_scene"]
