"""Homography pairs made from single images: training data from any photographs.

Each source image ``a`` is warped by a random homography ``H`` (in-plane rotation, zoom,
perspective foreshortening) and degraded photometrically (gamma, contrast, blur, noise) into
``b``; the pair is written as a homography pair folder (``a.png``, ``b.png``, ``H.txt``, ``H``
mapping pixels of ``a`` to pixels of ``b``, OpenCV convention) that
:func:`patchmatch.datasets.homography.write_homography_set` (``patchmatch make-patches``) turns
into a Brown-format patch set. The keypoints of ``a`` and ``b`` are detected separately, so the
positives carry the detector's real localisation, scale and orientation noise, as in the
homographic training data of DeTone et al. ("SuperPoint", CVPRW 2018) and the HPatches
benchmark (Balntas et al., CVPR 2017).

Planar warps cannot show parallax or occlusion: they add variety of content, scale, blur and
contrast to the scene sets built from cameras, not a substitute for them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from .homography import HomographyPairConfig

__all__ = ["WarpConfig", "WarpFolderError", "random_homography", "degrade", "write_warped_pairs", "write_warped_set"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarpConfig:
    """Random warps of :func:`write_warped_pairs`.

    Attributes:
        per_image: warped pairs made from each source image.
        max_size: source images whose longer side exceeds this are downscaled first (pixels).
        rotation_deg: in-plane rotation drawn uniformly in ±rotation_deg (degrees).
        zoom: scale factor drawn log-uniformly in [1/zoom, zoom].
        perspective: each image corner moves by up to this fraction of the image size
            (foreshortening of a plane seen from another viewpoint).
        gamma: gamma drawn log-uniformly in [1/gamma, gamma] (per image of the pair).
        contrast: contrast factor drawn log-uniformly in [1/contrast, contrast].
        blur_sigma: Gaussian blur σ drawn uniformly in [0, blur_sigma] pixels, applied with
            probability ``blur_probability`` (per image).
        blur_probability: see ``blur_sigma``.
        noise_sigma: Gaussian pixel noise σ drawn uniformly in [0, noise_sigma] grey levels.
        min_overlap: a warp keeps at least this fraction of ``b``'s pixels inside ``a`` (redrawn
            otherwise).
        seed: seed of every draw.
    """

    per_image: int = 2
    max_size: int = 1024
    rotation_deg: float = 30.0
    zoom: float = 1.6
    perspective: float = 0.15
    gamma: float = 1.6
    contrast: float = 1.5
    blur_sigma: float = 1.5
    blur_probability: float = 0.5
    noise_sigma: float = 4.0
    min_overlap: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.per_image < 1 or self.max_size < 64:
            raise ValueError(f"need per_image >= 1 and max_size >= 64, got {self.per_image}, {self.max_size}")
        if min(self.zoom, self.gamma, self.contrast) < 1:
            raise ValueError(f"zoom, gamma and contrast are ranges [1/x, x]: need x >= 1, got "
                             f"{self.zoom}, {self.gamma}, {self.contrast}")  # fmt: skip
        if not 0 <= self.perspective < 0.5 or not 0 <= self.min_overlap < 1 or not 0 <= self.blur_probability <= 1:
            raise ValueError("need perspective in [0, 0.5), min_overlap in [0, 1) and blur_probability in [0, 1]")
        if self.rotation_deg < 0 or self.blur_sigma < 0 or self.noise_sigma < 0:
            raise ValueError("rotation_deg, blur_sigma and noise_sigma must be >= 0")


def random_homography(width: int, height: int, config: WarpConfig, rng: np.random.Generator) -> np.ndarray:
    """A random homography of an image onto an image of the same size.

    Rotation and zoom about the image centre, then each corner of the result moved by up to
    ``config.perspective`` of the image size; redrawn until at least ``config.min_overlap`` of
    the target image comes from inside the source.

    Args:
        width, height: image size in pixels.
        config: ranges of the draw.
        rng: generator.

    Returns:
        (3, 3) float64 H mapping source pixels to target pixels (OpenCV convention), H[2, 2] = 1.
    """
    import cv2

    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    centre = corners.mean(0)
    size = np.array([width, height], np.float64)
    H = np.eye(3)
    for _ in range(100):
        angle = np.deg2rad(rng.uniform(-config.rotation_deg, config.rotation_deg))
        zoom = float(np.exp(rng.uniform(-np.log(config.zoom), np.log(config.zoom))))
        c, s = np.cos(angle) * zoom, np.sin(angle) * zoom
        moved = (corners - centre) @ np.array([[c, s], [-s, c]]) + centre
        moved += rng.uniform(-config.perspective, config.perspective, (4, 2)) * size
        H = cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32)).astype(np.float64)
        if _overlap(H, width, height) >= config.min_overlap:
            break
    return H / H[2, 2]


def _overlap(H: np.ndarray, width: int, height: int, step: int = 16) -> float:
    """Share of the target image's pixels (on a grid) whose source lies inside the source image."""
    ys, xs = np.mgrid[0:height:step, 0:width:step]
    p = np.linalg.solve(H, np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)]))
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = p[0] / p[2], p[1] / p[2]
    return float(np.mean((p[2] > 0) & (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)))


def degrade(image: np.ndarray, config: WarpConfig, rng: np.random.Generator) -> np.ndarray:
    """Random gamma, contrast, blur and noise of a uint8 (H, W) image → uint8 (H, W)."""
    import cv2

    x = image.astype(np.float32) / 255.0
    x = x ** float(np.exp(rng.uniform(-np.log(config.gamma), np.log(config.gamma))))
    k = float(np.exp(rng.uniform(-np.log(config.contrast), np.log(config.contrast))))
    x = (x - x.mean()) * k + x.mean()
    sigma = rng.uniform(0.0, config.blur_sigma)
    if rng.random() < config.blur_probability and sigma > 0.1:
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    x = x * 255.0 + rng.normal(0.0, rng.uniform(0.0, config.noise_sigma), x.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


#: the manifest of a pairs folder: the sources and settings its pair folders were drawn with
MANIFEST = "warps.json"
#: sources smaller than this on either side (pixels) are skipped: no homography is well defined
MIN_SIDE = 32


class WarpFolderError(ValueError):
    """The pairs folder holds something other than this run's warps; the message says what."""


def _prepare(out: Path, manifest: dict, overwrite: bool) -> None:
    """Creates ``out`` or checks that it holds the warps of ``manifest`` (replaced with ``overwrite``)."""
    import shutil

    if out.exists() and not out.is_dir():
        raise WarpFolderError(f"{out} is a file; the pairs need a folder there")
    if out.is_dir() and any(out.iterdir()):
        found = None
        if (out / MANIFEST).is_file():
            try:
                found = json.loads((out / MANIFEST).read_text())
            except ValueError:
                found = None
        if not isinstance(found, dict) or set(found) != set(manifest):
            raise WarpFolderError(f"{out} exists and holds no {MANIFEST} of ours; refusing to add pairs to it or delete it")
        if found != manifest:
            if not overwrite:
                raise WarpFolderError(f"{out} holds warps of other images or settings ({MANIFEST}); pass overwrite "
                                      f"(--overwrite) to replace them")  # fmt: skip
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob("*.partial"):  # a pair an interrupted run did not finish
        shutil.rmtree(leftover)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))


def write_warped_pairs(
    images: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    config: WarpConfig = WarpConfig(),
    overwrite: bool = False,
) -> list[Path]:
    """Writes ``config.per_image`` warped pairs per source image as homography pair folders.

    Folder ``out/<position>_<image stem>_<k>/`` holds ``a.png`` (the source, downscaled to ``max_size`` and
    degraded), ``b.png`` (the source warped by ``H`` and degraded independently) and ``H.txt``.
    Pixels of ``b`` from outside the source are black. ``out/warps.json`` records the sources and
    the settings: a rerun with the same ones keeps the finished pairs (an interrupted run resumes;
    the draws depend only on the seed and the image's position), other ones are refused unless
    ``overwrite`` (then every earlier pair is deleted first).

    Args:
        images: source image files (any format :func:`patchmatch.images.read_gray` reads).
        out: folder of pair folders (created).
        config: warp ranges and seed.
        overwrite: replace warps of other sources or settings.

    Returns:
        The pair folders written or found, in order. An image that cannot be read, or is smaller
        than 32 pixels on a side, is skipped with a warning naming it and the problem; the others
        are still warped.

    Raises:
        WarpFolderError: ``out`` is a file, a folder that is not ours, or holds warps of other
            sources or settings (without ``overwrite``).
        ValueError: none of the images could be used.
    """
    from .homography import PAIR_FILES

    out = Path(out)
    images = [Path(p) for p in images]
    _prepare(out, {"images": [_stamp(p) for p in images], "config": asdict(config)}, overwrite)
    folders = []
    for index, path in enumerate(images):
        rng = np.random.default_rng([config.seed, index])
        todo = [out / f"{index:05d}_{path.stem}_{k}" for k in range(config.per_image)]
        if all((f / name).is_file() for f in todo for name in PAIR_FILES):
            folders += todo
            continue
        image = _warpable_image(path, config.max_size)
        if image is None:
            continue
        folders += todo
        for folder in todo:
            _write_pair(folder, image, config, rng)
        logger.info("%s: %d pairs", path, config.per_image)
    if not folders:
        (out / MANIFEST).unlink(missing_ok=True)
        if not any(out.iterdir()):
            out.rmdir()
        raise ValueError(f"{out}: none of the {len(images)} source images could be used; no pairs written")
    return folders


def _stamp(path: Path) -> list:
    """What the manifest records of a source: resolved path, size and modification time (a photo
    replaced under the same name must not reuse its old pairs)."""
    st = path.stat() if path.is_file() else None
    return [str(path.resolve()), st.st_size if st else None, st.st_mtime_ns if st else None]


def _warpable_image(path: Path, max_size: int) -> np.ndarray | None:
    """The (H, W) uint8 grey source image, downscaled to ``max_size``; None (with a warning naming it)
    when it cannot be read or is smaller than :data:`MIN_SIDE` pixels on a side."""
    from ..images import ImageReadError, read_gray

    try:
        image, _ = read_gray(path, max_size=max_size)
    except ImageReadError as e:
        logger.warning("skipped: %s", e)
        return None
    h, w = image.shape
    if min(h, w) < MIN_SIDE:
        logger.warning("skipped: %s: %d×%d pixels, too small to warp (at least %d on each side)", path, w, h, MIN_SIDE)
        return None
    return image


def _write_pair(folder: Path, image: np.ndarray, config: WarpConfig, rng: np.random.Generator) -> None:
    """Draws one warp of ``image`` and writes the pair folder (``a.png``, ``b.png``, ``H.txt``) through
    ``folder.partial``. The draws are made even when a complete folder from an earlier run is kept,
    so that the following pairs of the image get the same draws as in an uninterrupted run.

    Raises:
        OSError: an image could not be written.
    """
    import shutil

    import cv2

    from .homography import PAIR_FILES

    h, w = image.shape
    H = random_homography(w, h, config, rng)
    b = cv2.warpPerspective(image, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    a_img, b_img = degrade(image, config, rng), degrade(b, config, rng)
    if folder.exists():  # written by an earlier run (renamed into place only when complete)
        if all((folder / name).is_file() for name in PAIR_FILES):
            return
        shutil.rmtree(folder)  # damaged since: drawn again
    tmp = folder.with_name(folder.name + ".partial")
    tmp.mkdir(exist_ok=True)
    for name, im in (("a.png", a_img), ("b.png", b_img)):
        if not cv2.imwrite(str(tmp / name), im):
            raise OSError(f"{tmp / name}: could not be written")
    np.savetxt(tmp / "H.txt", H)
    tmp.replace(folder)


def write_warped_set(
    images: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    config: WarpConfig = WarpConfig(),
    pair_config: HomographyPairConfig | None = None,
    overwrite: bool = False,
    photos: str | None = None,
) -> dict:
    """Warped pairs of ``images`` in ``OUT.pairs/`` (:func:`write_warped_pairs`), then the Brown-format
    patch set ``out`` built from them (:func:`~patchmatch.datasets.homography.write_homography_set`).

    Args:
        images: source photographs.
        out: the patch set folder; the pairs go to the folder beside it named ``<out>.pairs``.
        config: warp ranges and seed.
        pair_config: matching thresholds of the set (default: ``HomographyPairConfig(seed=config.seed)``).
        overwrite: replace an earlier set, and pairs of other sources or settings.
        photos: how to name the sources in ``summary.json`` (default: the image list).

    Returns:
        The set's summary (also in ``out/summary.json``), with the photographs and warp settings.

    Raises:
        WarpFolderError, ValueError, FileExistsError: see the two functions.
    """
    from .homography import HomographyPairConfig, write_homography_set

    out = Path(out).resolve()
    pair_config = pair_config or HomographyPairConfig(seed=config.seed)
    pairs = out.with_name(out.name + ".pairs")
    write_warped_pairs(images, pairs, config, overwrite=overwrite)
    extra = {"photos": photos if photos is not None else [str(p) for p in images], "warps": asdict(config)}
    return write_homography_set(pairs, out, pair_config, overwrite=overwrite, summary_extra=extra)
