"""patchmatch: structure-from-motion with learned patch comparison.

The central-surround two-stream 2-channel network ("2ch-2stream") of Zagoruyko & Komodakis,
"Learning to Compare Image Patches via Convolutional Neural Networks", CVPR 2015, scores candidate
keypoint matches; pycolmap verifies and reconstructs. Importing this package changes no global
state and downloads nothing.
"""

from .features import Features, detect
from .images import ImageReadError, list_images, read_gray
from .matching import MatchConfig, MatchResult, match_features, match_images
from .patches import MAGNIFICATION, PATCH_SIZE, extract_patches, extract_patches_colmap
from .scoring import PatchScorer

__version__ = "0.1.0"
__all__ = [
    "Features", "detect", "ImageReadError", "list_images", "read_gray", "MatchConfig", "MatchResult",
    "match_features", "match_images", "MAGNIFICATION", "PATCH_SIZE", "extract_patches",
    "extract_patches_colmap", "PatchScorer",
]
