"""Ground-truth patch pairs from image pairs related by a known homography (planar scenes).

For a folder of pairs ``<pair>/a.png``, ``<pair>/b.png``, ``<pair>/H.txt`` (3×3, maps pixels of
``a`` to pixels of ``b``), e.g. the Oxford affine-covariant sequences (Mikolajczyk et al., IJCV
2005: graf, wall, ...), SIFT keypoints of the two images are tied by the homography alone, never
by a descriptor:

1. each keypoint location of ``a`` is carried into ``b`` by ``H`` (its size scaled by
   ``sqrt|det J|``, ``J`` the Jacobian of ``H`` there) and matches the location of ``b`` within
   ``max_px`` whose size agrees within a factor ``size_ratio`` (defaults: those of the scene
   sets, 1 px and 1.4) — when there is exactly one such
   location and the test from ``b`` to ``a`` (with ``H⁻¹``) gives the same pair back;
2. of the orientations SIFT gives the two locations, the pair that agrees best through ``J``
   (within ``orientation_tol_deg``) is kept.

Each match is a track of two observations; pairs are then drawn as for scenes with cameras
(:func:`patchmatch.datasets.tracks.build_pair_set`: random negatives from two tracks, hard
negatives = the keypoint of ``b`` nearest by SIFT descriptor that is not the partner nor within
``hard_exclusion_px`` of it) and written in the Brown format with
:func:`patchmatch.datasets.patchset.write_pair_set`, so ``patchmatch evaluate-patches`` and
``patchmatch train --val`` read the set. Keypoints and homographies are in the OpenCV pixel
convention (pixel centres at integer coordinates).
"""

from __future__ import annotations

import logging
import os
import warnings
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..patches import MAGNIFICATION, check_magnification
from .tracks import ImageFeatures, PairSetConfig, TrackConfig, Tracks, angle_diff, build_pair_set, detect_features

logger = logging.getLogger(__name__)

__all__ = ["HomographyError", "HomographyPairConfig", "homography_matches", "pair_folders", "write_homography_set"]


class HomographyError(ValueError):
    """A homography pair folder is missing a file or holds a bad one; the message names the file."""


@dataclass(frozen=True)
class HomographyPairConfig:
    """Thresholds of :func:`write_homography_set`.

    Attributes:
        max_keypoints: SIFT keypoints per image (the strongest).
        max_px: largest distance, in pixels, between a carried keypoint and its partner.
        size_ratio: largest ratio between a keypoint's carried size and its partner's.
        orientation_tol_deg: largest difference, in degrees, between a carried orientation and
            the partner's.
        hard_exclusion_px: a hard negative lies further than this from the partner, in pixels.
        seed: seed of every random draw.
        magnification: patch side / keypoint size the patches are cut at
            (:func:`patchmatch.patches.extract_patches`).
    """

    max_keypoints: int = 4096
    max_px: float = 1.0
    size_ratio: float = 1.4
    orientation_tol_deg: float = 20.0
    hard_exclusion_px: float = 8.0
    seed: int = 0
    magnification: float = MAGNIFICATION

    def __post_init__(self) -> None:
        check_magnification(self.magnification)
        if self.max_keypoints < 1:
            raise ValueError(f"max_keypoints must be >= 1, got {self.max_keypoints}")
        if not self.max_px > 0 or not self.size_ratio > 1 or not 0 < self.orientation_tol_deg <= 180:
            raise ValueError(f"need max_px (--reprojection-px) > 0, size_ratio (--size-ratio) > 1 and orientation_tol_deg "
                             f"in (0, 180], got {self.max_px}, {self.size_ratio}, {self.orientation_tol_deg}")
        if not self.hard_exclusion_px > self.max_px:
            raise ValueError(f"max_px ({self.max_px} px, --reprojection-px) must be below hard_exclusion_px "
                             f"({self.hard_exclusion_px} px: hard negatives lie further than that from the partner)")


class _PlaneView:
    """A view of the plane of image ``a``: "world" points are ``(x, y, 1)`` pixels of ``a``."""

    def __init__(self, H: np.ndarray) -> None:
        self.H = H

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.asarray(X, np.float64) @ self.H.T
        return p[:, :2] / p[:, 2:3], p[:, 2]


class _PlanarScene:
    """What :func:`build_pair_set` needs of a scene: ``root`` and ``cameras[name].project``."""

    def __init__(self, root: Path, cameras: dict[str, _PlaneView]) -> None:
        self.root = root
        self.name = root.name
        self.cameras = cameras


PAIR_FILES = ("a.png", "b.png", "H.txt")


def pair_folders(root: str | os.PathLike) -> list[Path]:
    """``root`` itself when it holds any of a.png, b.png, H.txt, else its subfolders that do (sorted).

    A folder with only some of the three files is listed (reading it names the missing one).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    if any((root / f).exists() for f in PAIR_FILES):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and any((p / f).exists() for f in PAIR_FILES))


def _read_pair(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, H)`` of a pair folder: two (H, W) uint8 grey images and the (3, 3) float64 homography, H[2, 2] = 1
    (when not 0).

    Raises:
        HomographyError: a missing file, an unreadable or downscaled image, or an H that is not a finite,
            invertible 3x3 matrix (the file named).
    """
    from ..images import ImageReadError, read_gray

    files = {k: folder / k for k in ("a.png", "b.png", "H.txt")}
    for f in files.values():
        if not f.is_file():
            raise HomographyError(f"{f}: missing (a pair folder holds a.png, b.png and H.txt).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on an empty file; the shape check names it
            H = np.loadtxt(files["H.txt"], dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise HomographyError(f"{files['H.txt']}: not a 3x3 matrix of numbers ({e}).") from e
    if H.shape != (3, 3):
        raise HomographyError(f"{files['H.txt']}: not a 3x3 matrix (read {H.shape[0]} rows of {H.shape[1]}).")
    if not np.isfinite(H).all():
        raise HomographyError(f"{files['H.txt']}: non-finite entries (nan or inf).")
    H = H / np.linalg.norm(H)  # defined up to scale
    if abs(np.linalg.det(H)) < 1e-12:
        raise HomographyError(f"{files['H.txt']}: singular matrix (not invertible).")
    images = []
    for k in ("a.png", "b.png"):
        try:
            img, scale = read_gray(files[k])
        except ImageReadError as e:
            raise HomographyError(str(e)) from e
        if scale != 1.0:
            raise HomographyError(f"{files[k]}: downscaled on reading (scale {scale}); the homography would not fit.")
        images.append(img)
    return images[0], images[1], H / H[2, 2] if abs(H[2, 2]) > 1e-12 else H


def _carry(H: np.ndarray, kps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 2) points, (N,) sizes and (N,) orientations (deg) of (N, 4) keypoints carried by H."""
    x, y = kps[:, 0].astype(np.float64), kps[:, 1].astype(np.float64)
    w = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    u = (H[0, 0] * x + H[0, 1] * y + H[0, 2]) / w
    v = (H[1, 0] * x + H[1, 1] * y + H[1, 2]) / w
    J = np.empty((len(kps), 2, 2))
    J[:, 0, 0] = (H[0, 0] - u * H[2, 0]) / w
    J[:, 0, 1] = (H[0, 1] - u * H[2, 1]) / w
    J[:, 1, 0] = (H[1, 0] - v * H[2, 0]) / w
    J[:, 1, 1] = (H[1, 1] - v * H[2, 1]) / w
    size = kps[:, 2] * np.sqrt(np.abs(np.linalg.det(J)))
    # OpenCV's keypoint angle is the direction (cos t, sin t) in pixel coordinates (y down)
    t = np.deg2rad(kps[:, 3].astype(np.float64))
    d = np.einsum("nij,nj->ni", J, np.stack([np.cos(t), np.sin(t)], 1))
    return np.stack([u, v], 1), size, np.rad2deg(np.arctan2(d[:, 1], d[:, 0])) % 360.0


def _unique_partner(p: np.ndarray, s: np.ndarray, dst: np.ndarray, config: HomographyPairConfig) -> np.ndarray:
    """For each carried (location) keypoint, (N, 2) points ``p`` and (N,) sizes ``s``, the only
    keypoint of ``dst`` that fits, else -1."""
    out = np.full(len(p), -1, np.int64)
    for lo in range(0, len(p), 1024):
        d = np.linalg.norm(p[lo : lo + 1024, None, :] - dst[None, :, :2], axis=2)
        r = s[lo : lo + 1024, None] / np.maximum(dst[None, :, 2], 1e-6)
        ok = (d <= config.max_px) & (r <= config.size_ratio) & (r >= 1.0 / config.size_ratio)
        one = ok.sum(1) == 1
        out[lo : lo + 1024][one] = ok[one].argmax(1)
    return out


def homography_matches(
    a: ImageFeatures, b: ImageFeatures, H: np.ndarray, config: HomographyPairConfig = HomographyPairConfig()
) -> np.ndarray:
    """Keypoint matches of two images related by a homography, by geometry alone.

    Args:
        a: features of image a (keypoints (Na, 4) ``[x, y, size, angle_deg]``, OpenCV convention).
        b: features of image b.
        H: (3, 3) homography mapping pixels of a to pixels of b.
        config: thresholds.

    Returns:
        (M, 2) int64 ``[keypoint index in a, keypoint index in b]``, one-to-one, locations
        mutual and unique, orientations consistent.
    """
    ua, ub = a.locations(), b.locations()
    if len(ua.keypoints) == 0 or len(ub.keypoints) == 0:
        return np.zeros((0, 2), np.int64)
    pa, sa, carried = _carry(H, a.keypoints)  # every keypoint once; locations are a subset (a.unique)
    ab = _unique_partner(pa[a.unique], sa[a.unique], ub.keypoints, config)
    ba = _unique_partner(*_carry(np.linalg.inv(H), ub.keypoints)[:2], ua.keypoints, config)
    la = np.flatnonzero(ab >= 0)
    la = la[ba[ab[la]] == la]
    out = []
    for loc_a, loc_b in zip(la, ab[la]):
        ia = np.flatnonzero(a.location == loc_a)
        jb = np.flatnonzero(b.location == loc_b)
        diff = angle_diff(carried[ia][:, None], b.keypoints[jb, 3][None, :])
        u, v = np.unravel_index(diff.argmin(), diff.shape)
        if diff[u, v] <= config.orientation_tol_deg:
            out.append((ia[u], jb[v]))
    return np.asarray(out, np.int64).reshape(-1, 2)


def write_homography_set(
    root: str | os.PathLike,
    out: str | os.PathLike,
    config: HomographyPairConfig = HomographyPairConfig(),
    overwrite: bool = False,
    summary_extra: dict | None = None,
) -> dict:
    """Builds a Brown-format patch set from the homography pairs under ``root``.

    Args:
        root: a folder of pair folders (``<pair>/a.png``, ``b.png``, ``H.txt``), or one pair folder.
        out: the set folder to write (``oriented/``, ``upright/``, ``summary.json``); written to
            ``out.partial`` and renamed.
        config: matching thresholds and seed.
        overwrite: replace an existing ``out`` that is an earlier patch set.
        summary_extra: more JSON-like entries for ``summary.json`` (e.g. how the pairs were made).

    Returns:
        The summary (also in ``out/summary.json``).

    Raises:
        HomographyError: no pair folder under ``root``, or a pair folder with a missing or bad
            file (named).
        FileExistsError: ``out`` exists and ``overwrite`` is False, or it is not a patch set.
        ValueError: no matches in any pair.
    """
    from .patchset import check_output, write_pair_set

    t0 = time.perf_counter()
    root = Path(root)
    folders = pair_folders(root)
    if not folders:
        raise HomographyError(f"{root}: no pair folders (<pair>/a.png, b.png, H.txt).")
    for folder in folders:  # every missing file named before any work
        for f in PAIR_FILES:
            if not (folder / f).is_file():
                raise HomographyError(f"{folder / f}: missing (a pair folder holds a.png, b.png and H.txt).")
    out = check_output(out, overwrite, [root])
    pairs = _PairTracks()
    for folder in folders:
        pairs.add(folder, config)
    if not pairs.points:
        raise ValueError(f"{root}: no keypoint matches in any pair; nothing to write")
    tracks = pairs.tracks()
    pconf = PairSetConfig(TrackConfig(reprojection_px=config.max_px), max_positives_per_track=1,
                          hard_exclusion_px=config.hard_exclusion_px, seed=config.seed)  # fmt: skip
    ps = build_pair_set(_PlanarScene(root, pairs.cameras), pairs.feats, tracks, pconf)
    return write_pair_set(out, ps, pairs.images, tracks, {
        "scene": root.name,
        "source": str(root.resolve()),
        "scene_folder": str(root.resolve()),
        "config": asdict(config),
        "matches_per_pair": pairs.per_pair,
        "keypoints_per_image": {nm: int(len(pairs.feats[nm].keypoints)) for nm in tracks.names},
        **(summary_extra or {}),
    }, t0, config.magnification)  # fmt: skip


class _PairTracks:
    """The features, images, plane views and two-observation tracks of homography pairs, gathered pair by pair.

    Images are named ``<pair folder>/a.png`` and ``<pair folder>/b.png``; the "world" point of a
    track is ``(x, y, 1)`` of its keypoint in ``a`` (:class:`_PlaneView`).
    """

    def __init__(self) -> None:
        self.feats: dict[str, ImageFeatures] = {}
        self.images: dict[str, np.ndarray] = {}
        self.cameras: dict[str, _PlaneView] = {}
        self.names: list[str] = []
        self.per_pair: dict[str, int] = {}
        self.points: list[np.ndarray] = []
        self._img: list[np.ndarray] = []
        self._kp: list[np.ndarray] = []
        self._track: list[np.ndarray] = []

    def add(self, folder: Path, config: HomographyPairConfig) -> None:
        """Reads one pair folder, detects SIFT in both images and adds a track per :func:`homography_matches` match.

        Raises:
            HomographyError: a missing or bad file in ``folder``.
        """
        a, b, H = _read_pair(folder)
        pair_names = [f"{folder.name}/a.png", f"{folder.name}/b.png"]
        for nm, im, M in zip(pair_names, (a, b), (np.eye(3), H)):
            self.feats[nm] = detect_features(nm, im, config.max_keypoints)
            self.images[nm] = im
            self.cameras[nm] = _PlaneView(M)
        m = homography_matches(self.feats[pair_names[0]], self.feats[pair_names[1]], H, config)
        self.per_pair[folder.name] = int(len(m))
        ia = len(self.names)
        self.names += pair_names
        self._img.append(np.repeat([[ia, ia + 1]], len(m), 0).ravel())
        self._kp.append(m.ravel())
        self._track.append(np.repeat(len(self.points) + np.arange(len(m)), 2))
        xy = self.feats[pair_names[0]].keypoints[m[:, 0], :2].astype(np.float64)
        self.points += list(np.c_[xy, np.ones(len(m))])
        logger.info("%s: %d matches", folder, len(m))

    def tracks(self) -> Tracks:
        """The :class:`Tracks` of every pair added (at least one match overall)."""
        return Tracks(
            image_index=np.concatenate(self._img).astype(np.int32),
            keypoint_index=np.concatenate(self._kp).astype(np.int32),
            track_id=np.concatenate(self._track).astype(np.int32),
            points3d=np.asarray(self.points, np.float64),
            names=self.names,
        )
