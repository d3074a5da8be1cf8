"""Labelled patch pairs from photo collections without cameras, by Brown's recipe.

Brown, Hua & Winder labelled their sets from reconstructions of photo collections. Here:

1. reconstruct the collection with :func:`patchmatch.sfm.run_sfm` (pycolmap's mapper on the
   package's matches) into ``OUT.sfm/`` (resumable: a rerun reuses its features and matches);
2. undistort the model (:func:`~patchmatch.datasets.scenes.scene_from_colmap`) into ``OUT.undistorted/``;
3. detect SIFT afresh in every registered view and tie the detections by the model's cameras
   alone (:mod:`patchmatch.datasets.tracks`: epipolar distance, triangulation reprojecting
   within a pixel in every view, physical size, confirmation in a third view), never by the
   reconstruction's own tracks, so positives include views the reconstruction's matcher never
   paired; written as a Brown-format set (:func:`~patchmatch.datasets.patchset.write_patch_set`).

The labels are as good as the model's cameras: a collection whose model registers fewer than
two images raises.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

logger = logging.getLogger(__name__)

__all__ = ["write_collection_set"]


def write_collection_set(image_dir: str | os.PathLike, out: str | os.PathLike, names: Sequence[str] | None = None,
                         pair_config=None, magnification: float | None = None, overwrite: bool = False,
                         sfm_config=None, progress: bool = False) -> dict:  # fmt: skip
    """Reconstructs a photo collection and writes the labelled pairs of its registered views (module docstring).

    Args:
        image_dir: the photographs.
        out: the set folder to write; the reconstruction goes to ``OUT.sfm/``, the undistorted
            scene to ``OUT.undistorted/``.
        names: images of the set (default: every image the model registers).
        pair_config: :class:`~patchmatch.datasets.tracks.PairSetConfig` (default its defaults).
        magnification: patch side / keypoint size (default :data:`patchmatch.patches.MAGNIFICATION`).
        overwrite: replace an existing ``out`` that is a patch set (the reconstruction is reused).
        sfm_config: :class:`~patchmatch.sfm.SfmConfig` of the reconstruction (default its defaults).
        progress: tqdm bars.

    Returns:
        The set's summary (``source``: the model folder).

    Raises:
        FileNotFoundError: ``image_dir`` missing.
        SceneError: the model registers fewer than two images.
        ValueError, FileExistsError: as :func:`~patchmatch.datasets.patchset.write_patch_set`.
    """
    from ..patches import MAGNIFICATION
    from ..sfm import SfmConfig, run_sfm
    from .patchset import check_output, write_patch_set
    from .scenes import SceneError, scene_from_colmap
    from .tracks import PairSetConfig

    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: not a directory of photographs")
    out = check_output(out, overwrite, [image_dir])
    work = out.with_name(out.name + ".sfm")
    model = work / "sparse" / "0"
    if not (model / "images.bin").is_file():
        report = run_sfm(image_dir, work, sfm_config or SfmConfig(), progress=progress)
        logger.info("%s: %s of %s images registered", image_dir, report.get("registered"), report.get("images"))
    if not (model / "images.bin").is_file():
        raise SceneError(f"{image_dir}: the reconstruction in {work} built no model")
    scene = scene_from_colmap(model, image_dir, out.with_name(out.name + ".undistorted"), names=names)
    return write_patch_set(scene, out, names, pair_config or PairSetConfig(), overwrite=overwrite, progress=progress,
                           source=model, magnification=MAGNIFICATION if magnification is None else magnification)  # fmt: skip
