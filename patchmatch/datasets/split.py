"""The fixed benchmark split of the ground-truth scenes in ``../shared/data/scenes``.

Train on castle-P30 and Herz-Jesus-P25 (their last images held out, image-disjoint, for
validation); test on entry-P10, temple-ring and dtu-scan65. castle-P19 and Herz-Jesus-P8 show
the same places as the training scenes and are never used to test (nor, being twins, to train).

Roles: ``train`` and ``val`` (training scenes), ``test`` (orientation-consistent positives, as
Brown's sets) and ``detected`` (the test scenes "as detected": every observation keeps its own
view's detection, the location's strongest orientation, no choice among orientations that agree);
``val-detected``: the validation images as detected, to choose what acts on that protocol.
Only the training sets keep a share of as-detected positives (``TrackConfig.detected_share``);
validation and test sets have none, so their protocols stay comparable across builds.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from ..patches import MAGNIFICATION
from .patchset import SUMMARY, set_magnification, write_patch_set
from .scenes import load_scene
from .tracks import PairSetConfig

logger = logging.getLogger(__name__)

__all__ = ["SplitSet", "TRAIN_SCENES", "TEST_SCENES", "TWIN_SCENES", "ROLES", "split_sets", "build_split", "role_config"]

#: training scene → number of trailing images held out for validation.
TRAIN_SCENES = {"castle-P30": 6, "Herz-Jesus-P25": 5}
TEST_SCENES = ("entry-P10", "temple-ring", "dtu-scan65")
ROLES = ("train", "val", "val-detected", "test", "detected")
#: twins of the training scenes: never test on them.
TWIN_SCENES = ("castle-P19", "Herz-Jesus-P8")


@dataclass(frozen=True)
class SplitSet:
    """One patch set of the split: ``<scene>-<role>`` built from ``images`` of ``scene``."""

    scene: str
    role: str  # one of ROLES
    images: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.scene}-{self.role}"


def split_sets(scenes_root: str | os.PathLike, roles: tuple[str, ...] = ("train", "val", "test")) -> list[SplitSet]:
    """The sets of the split whose role is in ``roles``.

    Raises:
        SceneError: a scene folder or its cameras.json is missing.
    """
    assert not (set(TRAIN_SCENES) & (set(TEST_SCENES) | set(TWIN_SCENES))), "a test scene is listed for training"
    root = Path(scenes_root)
    out = []
    for scene, n_val in TRAIN_SCENES.items() if {"train", "val", "val-detected"} & set(roles) else ():
        names = load_scene(root / scene).names
        if "train" in roles:
            out.append(SplitSet(scene, "train", tuple(names[: len(names) - n_val])))
        for role in ("val", "val-detected"):
            if role in roles:
                out.append(SplitSet(scene, role, tuple(names[len(names) - n_val :])))
    for role in ("test", "detected"):
        if role in roles:
            out += [SplitSet(s, role, tuple(load_scene(root / s).names)) for s in TEST_SCENES]
    return out


def role_config(config: PairSetConfig, role: str) -> PairSetConfig:
    """The pair-set configuration of a role: ``config`` for training; no as-detected share for
    validation and test; every observation as detected (``orientation_tol_deg = 0``) for
    ``detected`` and ``val-detected``."""
    if role == "train":
        return config
    tracks = replace(config.tracks, detected_share=0.0)
    if role in ("detected", "val-detected"):
        tracks = replace(tracks, orientation_tol_deg=0.0)
    return replace(config, tracks=tracks)


def build_split(
    scenes_root: str | os.PathLike,
    out: str | os.PathLike,
    roles: tuple[str, ...] = ("train", "val", "test"),
    config: PairSetConfig = PairSetConfig(),
    overwrite: bool = False,
    progress: bool = False,
    magnification: float = MAGNIFICATION,
) -> dict[str, Path]:
    """Builds the split's Brown-format patch sets into ``out/<scene>-<role>`` (existing complete
    sets are kept unless ``overwrite``), patches cut at ``magnification`` (patch side / keypoint size).

    Returns:
        set name → folder.

    Raises:
        FileExistsError: a kept set was cut at another magnification.
    """
    root, out = Path(scenes_root), Path(out)
    result = {}
    for s in split_sets(root, roles):
        path = out / s.name
        if (path / SUMMARY).is_file() and not overwrite:
            kept = set_magnification(path)
            if kept is not None and kept != magnification:
                raise FileExistsError(f"{path}: cut at magnification {kept:g}, not {magnification:g}; pass --overwrite to rebuild it")
            logger.info("%s exists, kept", path)
        else:
            write_patch_set(root / s.scene, path, list(s.images), role_config(config, s.role), overwrite=True, progress=progress,
                            magnification=magnification)
        result[s.name] = path
    return result
