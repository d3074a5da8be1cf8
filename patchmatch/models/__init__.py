"""The patch-comparison model family of Zagoruyko & Komodakis (CVPR 2015)."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, trained_magnification
from .registry import DEFAULT_MODEL, MODELS, build_model, model_name

__all__ = ["MODELS", "DEFAULT_MODEL", "build_model", "model_name", "save_checkpoint", "load_checkpoint", "CheckpointError",
           "trained_magnification"]
