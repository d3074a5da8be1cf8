"""Rendered multi-view worlds with exact cameras and depth: training scenes made from photographs.

Each world is a random arrangement of textured planar pieces: a ground of tiles (flat, or
terrain of tilted tiles), boxes, cylinders (vertical facets) and free-standing tilted panels, a few of them
texture-poor. The textures are crops of real photographs (the training scenes' images, never a
test scene's). Cameras stand on an arc around the world looking at its centre, at varied
distances and heights, spanning up to ``max_arc_deg`` (wide baselines; nearer objects occlude
farther ones). Views differ by light direction (per world), exposure and illumination gradient
(per view), blur, sensor noise and JPEG compression; the background is light or dark.

A world is written as a scene folder (``images/*.png`` + ``cameras.json`` in the format of
``../shared/data``, plus ``depth/*.npy``: (H, W) float32 depth in world units of the surface seen
at each pixel centre, inf where none). Fresh SIFT detections of the views are tied into tracks by
the exact cameras (:mod:`patchmatch.datasets.tracks`, as for a real scene), then every
observation is checked against the exact depth: the track's point must lie on the surface seen at
the keypoint (within ``DEPTH_TOL``), else the observation is dropped.
Rendering uses :mod:`patchmatch.synthetic`'s renderer (z-buffer, supersampled, mip-mapped).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..synthetic import SceneConfig, Surface, SyntheticScene, render_view
from .scenes import Camera

logger = logging.getLogger(__name__)

__all__ = ["WorldConfig", "load_photos", "make_world", "render_world", "write_world_set", "write_world_pairs", "depth_checked", "check_texture_photos", "WORLD_FORMAT"]

WORLD_FORMAT = "patchmatch rendered world"
#: texture photographs are read at most this large (pixels, longer side): crops stay sharp, memory small
PHOTO_MAX_SIDE = 1024
#: a texture-poor surface: its photo crop blurred by this sigma (texels) and its contrast cut to this share
POOR_BLUR, POOR_CONTRAST = 12.0, 0.15
#: the renderer's textures need sides divisible by this (its mip-map levels)
TEXTURE_MULTIPLE = 8
#: an observation is kept when its track's point lies this close (relative depth) to the rendered
#: surface at the keypoint (3 %: about three times the depth error of 1 px triangulations at these
#: baselines): drops points that float between surfaces (e.g. occlusion T-junctions)
DEPTH_TOL = 0.03


@dataclass(frozen=True)
class WorldConfig:
    """How worlds are drawn and rendered (lengths in metres, angles in degrees, sizes in pixels).

    Attributes:
        num_views: cameras per world (2..64).
        width, height: image size.
        focal_range: focal lengths drawn per camera in this range (pixels).
        max_arc_deg: the cameras span an arc drawn up to this angle around the world centre.
        radius: mean camera distance from the centre; each camera varies it by ±``radius_jitter``.
        radius_jitter: relative variation of the distance (scale changes between views).
        texels_per_meter: texture resolution on the surfaces.
        poor_share: share of the surfaces that are texture-poor.
        dark_share: share of the worlds whose background is dark (else light).
        terrain_share: share of the worlds whose ground is terrain (tilted tiles) rather than flat.
        blur_max: largest Gaussian blur sigma of a view (pixels; half the views are sharp).
        jpeg_quality: JPEG quality drawn per view in this range (inclusive).
        noise_max: largest sensor noise sigma of a view (gray levels).
        illumination: largest relative exposure change between views (< 0.5).
    """

    num_views: int = 8
    width: int = 640
    height: int = 480
    focal_range: tuple[float, float] = (420.0, 720.0)
    max_arc_deg: float = 80.0
    radius: float = 9.0
    radius_jitter: float = 0.25
    texels_per_meter: float = 110.0
    poor_share: float = 0.2
    dark_share: float = 0.4
    terrain_share: float = 0.5
    blur_max: float = 1.5
    jpeg_quality: tuple[int, int] = (40, 95)
    noise_max: float = 4.0
    illumination: float = 0.3

    def __post_init__(self) -> None:
        if not 2 <= self.num_views <= 64:
            raise ValueError(f"num_views must be in [2, 64], got {self.num_views}")
        if not 0 < self.max_arc_deg <= 180 or not 0 <= self.radius_jitter < 0.5 or not 0 <= self.illumination < 0.5:
            raise ValueError("need max_arc_deg in (0, 180], radius_jitter and illumination in [0, 0.5)")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality must be a range within [1, 100], got {self.jpeg_quality}")


def load_photos(paths: Sequence[str | os.PathLike], max_side: int = PHOTO_MAX_SIDE) -> list[np.ndarray]:
    """The photographs textures are cut from, as (H, W) float32 gray levels, at most ``max_side`` pixels.

    Raises:
        ValueError: no path given, or a file that is not a readable image (named).
    """
    from ..images import read_gray

    if not paths:
        raise ValueError("no photographs given for the textures")
    photos = []
    for p in paths:
        img, _ = read_gray(p)
        scale = max_side / max(img.shape)
        if scale < 1:
            img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        photos.append(img.astype(np.float32))
    return photos


def _texture(rng: np.random.Generator, photos: Sequence[np.ndarray], h: int, w: int, poor: bool) -> np.ndarray:
    """(h, w) float32 texture: a random crop of a random photo (flipped, rotated, contrast-changed)."""
    photo = photos[rng.integers(len(photos))]
    if rng.random() < 0.5:
        photo = photo.T
    ph, pw = photo.shape
    aspect = w / h
    ch = int(min(ph, pw / aspect) * rng.uniform(0.3, 1.0))
    cw = max(8, int(ch * aspect))
    ch = max(8, min(ch, ph))
    cw = min(cw, pw)
    y0, x0 = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    crop = cv2.resize(photo[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    contrast, mean = rng.uniform(0.7, 1.3), float(crop.mean())
    if poor:
        crop = cv2.GaussianBlur(crop, (0, 0), POOR_BLUR)
        contrast = POOR_CONTRAST
    return np.ascontiguousarray(np.clip(mean + contrast * (crop - mean) + rng.uniform(-30, 30), 0, 255), np.float32)


def _texture_size(size: tuple[float, float], tpm: float) -> tuple[int, int]:
    """(height, width) in texels of a rectangle of ``size`` (w, h) metres, multiples of 8."""
    m = TEXTURE_MULTIPLE
    return max(m, math.ceil(size[1] * tpm / m) * m), max(m, math.ceil(size[0] * tpm / m) * m)


class _Painter:
    """Textured rectangles of one world (photo crops, a ``poor_share`` of them texture-poor)."""

    def __init__(self, rng: np.random.Generator, photos: Sequence[np.ndarray], config: WorldConfig) -> None:
        self.rng, self.photos, self.config = rng, photos, config

    def rect(self, name: str, origin, axis_u, axis_v, size) -> Surface:
        h, w = _texture_size(size, self.config.texels_per_meter)
        poor = bool(self.rng.random() < self.config.poor_share)
        return Surface(name, origin, axis_u, axis_v, size, _texture(self.rng, self.photos, h, w, poor))


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about the unit ``axis`` (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _ground(paint: _Painter, terrain: bool, half: float = 7.0, n: int = 6) -> list[Surface]:
    """The ground: n×n tiles, each its own photo crop (sharp at close range), flat at z = 0, or
    terrain: tilted up to 15° at heights ±0.3."""
    x, y = np.eye(3)[0], np.eye(3)[1]
    tiles, side = [], 2 * half / n
    for i in range(n):
        for j in range(n):
            axis = np.r_[paint.rng.normal(size=2), 0.0]
            tilt = math.radians(paint.rng.uniform(0, 15)) if terrain else 0.0
            R = _rotation(axis / np.linalg.norm(axis), tilt)
            height = paint.rng.uniform(-0.3, 0.3) if terrain else 0.0
            centre = np.array([-half + (i + 0.5) * side, -half + (j + 0.5) * side, height])
            u, v = R @ x, R @ y
            tiles.append(paint.rect(f"tile{i}-{j}", centre - (u + v) * side / 2, u, v, (side, side)))
    return tiles


def _box(paint: _Painter, name: str, centre_xy, size, yaw: float) -> list[Surface]:
    """Top and four sides of an upright box on the ground (``yaw`` in radians)."""
    ex, ey, up = np.array([math.cos(yaw), math.sin(yaw), 0.0]), np.array([-math.sin(yaw), math.cos(yaw), 0.0]), np.eye(3)[2]
    sx, sy, sz = size
    base = np.array([centre_xy[0], centre_xy[1], 0.0]) - ex * sx / 2 - ey * sy / 2
    top = base + up * sz
    return [paint.rect(f"{name}-top", top, ex, ey, (sx, sy)),
            paint.rect(f"{name}-front", top, ex, -up, (sx, sz)),
            paint.rect(f"{name}-back", top + ey * sy + ex * sx, -ex, -up, (sx, sz)),
            paint.rect(f"{name}-left", top + ey * sy, -ey, -up, (sy, sz)),
            paint.rect(f"{name}-right", top + ex * sx, ey, -up, (sy, sz))]  # fmt: skip


def _cylinder(paint: _Painter, name: str, centre_xy, radius: float, height: float, facets: int = 12) -> list[Surface]:
    """An upright cylinder of ``facets`` vertical facets (each its own photo crop)."""
    up, out = np.eye(3)[2], []
    width = 2 * radius * math.sin(math.pi / facets)
    for k in range(facets):
        a0, a1 = 2 * math.pi * k / facets, 2 * math.pi * (k + 1) / facets
        p0 = np.array([centre_xy[0] + radius * math.cos(a0), centre_xy[1] + radius * math.sin(a0), height])
        p1 = np.array([centre_xy[0] + radius * math.cos(a1), centre_xy[1] + radius * math.sin(a1), height])
        out.append(paint.rect(f"{name}-{k}", p0, (p1 - p0) / np.linalg.norm(p1 - p0), -up, (width, height)))
    return out


def _panel(paint: _Painter, name: str) -> Surface:
    """A free-standing rectangle, tilted at random, above the ground near the centre."""
    rng = paint.rng
    R = _rotation(np.eye(3)[2], rng.uniform(0, 2 * math.pi)) @ _rotation(np.eye(3)[0], rng.uniform(-0.6, 0.6))
    size = (rng.uniform(1.0, 3.0), rng.uniform(0.8, 2.0))
    centre = np.r_[rng.uniform(-3, 3, 2), rng.uniform(1.0, 2.0)]
    u, v = R @ np.eye(3)[0], R @ -np.eye(3)[2]
    return paint.rect(name, centre - u * size[0] / 2 - v * size[1] / 2, u, v, size)


def _objects(paint: _Painter) -> list[Surface]:
    """2-4 boxes, 1-2 cylinders and 1-2 panels at random places within 4 m of the centre."""
    rng, out = paint.rng, []
    for k in range(rng.integers(2, 5)):
        size = rng.uniform([0.5, 0.5, 0.4], [2.0, 2.0, 2.2])
        out += _box(paint, f"box{k}", rng.uniform(-4, 4, 2), size, rng.uniform(0, math.pi))
    for k in range(rng.integers(1, 3)):
        out += _cylinder(paint, f"cylinder{k}", rng.uniform(-4, 4, 2), rng.uniform(0.3, 0.9), rng.uniform(0.8, 2.5))
    return out + [_panel(paint, f"panel{k}") for k in range(rng.integers(1, 3))]


def _look_at(centre: np.ndarray, target: np.ndarray, roll: float) -> np.ndarray:
    """World-to-camera rotation (rows: right, down, forward) of a camera at ``centre`` (``roll`` in radians)."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, np.eye(3)[2])
    right /= np.linalg.norm(right)
    R = np.stack([right, np.cross(forward, right), forward])
    c, s = math.cos(roll), math.sin(roll)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R


def _cameras(rng: np.random.Generator, config: WorldConfig) -> tuple[Camera, ...]:
    """Cameras on an arc of up to ``max_arc_deg`` around the centre, varied in distance, height, focal and roll."""
    arc = math.radians(rng.uniform(0.4, 1.0) * config.max_arc_deg)
    start = rng.uniform(0, 2 * math.pi)
    cams = []
    for i, a in enumerate(start + np.sort(rng.uniform(0, arc, config.num_views))):
        r = config.radius * (1 + config.radius_jitter * rng.uniform(-1, 1))
        centre = np.array([r * math.cos(a), r * math.sin(a), rng.uniform(1.5, 5.0)])
        R = _look_at(centre, np.r_[rng.uniform(-1.5, 1.5, 2), rng.uniform(0.3, 1.2)], math.radians(rng.uniform(-8, 8)))
        f = rng.uniform(*config.focal_range)
        K = np.array([[f, 0, (config.width - 1) / 2], [0, f, (config.height - 1) / 2], [0, 0, 1.0]])
        cams.append(Camera(f"{i:04d}.png", K, R, -R @ centre, config.width, config.height))
    return tuple(cams)


def make_world(seed: int, photos: Sequence[np.ndarray], config: WorldConfig = WorldConfig()) -> SyntheticScene:
    """One random world (surfaces and cameras), the same for the same seed, photos and config.

    Args:
        seed: random seed of everything drawn (geometry, crops, cameras, degradations).
        photos: texture photographs (:func:`load_photos`).
        config: the world's settings.

    Returns:
        The scene, ready for :func:`patchmatch.synthetic.render_view` (its config carries the
        light direction, background and per-view illumination and noise of this world).
    """
    rng = np.random.default_rng([seed, 21])
    paint = _Painter(rng, photos, config)
    surfaces = _ground(paint, bool(rng.random() < config.terrain_share)) + _objects(paint)
    cameras = _cameras(rng, config)
    dark = rng.random() < config.dark_share
    background = tuple(rng.uniform(0, 30, 2)) if dark else tuple(rng.uniform(140, 220, 2))
    light = tuple(np.r_[rng.normal(size=2), rng.uniform(0.3, 1.0)])
    render = SceneConfig(num_images=config.num_views, width=config.width, height=config.height, supersample=2,
                         noise_sigma=float(rng.uniform(0.5, config.noise_max)), illumination=config.illumination,
                         shading=True, light=light, background=background)  # fmt: skip
    return SyntheticScene(tuple(surfaces), cameras, render, int(seed))


def _degrade(image: np.ndarray, rng: np.random.Generator, config: WorldConfig) -> np.ndarray:
    """A view blurred (half the views, sigma up to ``blur_max``) and JPEG-compressed, (H, W) uint8."""
    if rng.random() < 0.5 and config.blur_max > 0:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, config.blur_max))
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def render_world(out: str | os.PathLike, seed: int, photos: Sequence[np.ndarray], config: WorldConfig = WorldConfig(),
                 sources: Sequence[str] = ()) -> Path:  # fmt: skip
    """Renders one world into the scene folder ``out`` (module docstring: images, cameras, depth).

    Args:
        out: the folder (created; an existing world there is replaced).
        seed: the world's seed (:func:`make_world`).
        photos: texture photographs.
        config: the world's settings.
        sources: names of the photographs' files, recorded in ``world.json``.

    Returns:
        ``out`` as a Path.

    Raises:
        OSError: an image cannot be written.
    """
    out = Path(out)
    scene = make_world(seed, photos, config)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(exist_ok=True)
    rng = np.random.default_rng([seed, 22])
    for i, cam in enumerate(scene.cameras):
        view = render_view(scene, i)
        path = out / "images" / cam.name
        if not cv2.imwrite(str(path), _degrade(view.image, rng, config)):
            raise OSError(f"could not write image {path}")
        np.save(out / "depth" / f"{Path(cam.name).stem}.npy", view.depth)
    (out / "cameras.json").write_text(json.dumps(scene.cameras_json(), indent=1))
    (out / "world.json").write_text(json.dumps({"format": WORLD_FORMAT, "seed": int(seed), "surfaces": len(scene.surfaces),
                                                "texture_photos": list(sources)}, indent=1))  # fmt: skip
    return out


def check_texture_photos(paths: Sequence[str | os.PathLike]) -> None:
    """Refuses texture photographs of a test scene or of a twin of a training scene.

    Raises:
        ValueError: a path lies in a folder named after a scene of
            :data:`~patchmatch.datasets.split.TEST_SCENES` or :data:`~patchmatch.datasets.split.TWIN_SCENES` (named).
    """
    from .split import TEST_SCENES, TWIN_SCENES

    banned = set(TEST_SCENES) | set(TWIN_SCENES)
    for p in paths:
        hit = banned & set(Path(p).resolve().parts)
        if hit:
            raise ValueError(f"{p}: a photograph of {sorted(hit)[0]}, a test scene (or a twin of a training scene); "
                             "textures come from training photographs only")  # fmt: skip


def write_world_set(photos: Sequence[str | os.PathLike], out: str | os.PathLike, num_worlds: int, seed: int = 0,
                    config: WorldConfig = WorldConfig(), pair_config=None, magnification: float | None = None,
                    overwrite: bool = False) -> dict:  # fmt: skip
    """Renders ``num_worlds`` worlds textured with ``photos`` and writes their labelled pairs as one patch set.

    Worlds go to ``OUT.worlds/world-<seed>/`` (scene folders) and each one's set to
    ``OUT.worlds/world-<seed>.set``; both are kept, so a rerun renders and labels only what is
    missing. A world that yields fewer than two tracks is left out (logged). The sets are then
    merged into ``out`` (:func:`~patchmatch.datasets.patchset.merge_patch_sets`).

    Args:
        photos: texture photographs (training scenes only: :func:`check_texture_photos`).
        out: the set folder to write.
        num_worlds: worlds to render (seeds ``seed .. seed + num_worlds - 1``).
        seed: the first world's seed.
        config: world settings.
        pair_config: :class:`~patchmatch.datasets.tracks.PairSetConfig` of the labels (default its defaults).
        magnification: patch side / keypoint size (default :data:`patchmatch.patches.MAGNIFICATION`).
        overwrite: replace an existing ``out`` that is a patch set.

    Returns:
        The merged summary (``worlds``: the seeds kept).

    Raises:
        ValueError: a test scene's photograph, ``num_worlds`` < 1, or no world gave a set.
        FileExistsError: as :func:`~patchmatch.datasets.patchset.check_output`.
    """
    from dataclasses import asdict

    from ..patches import MAGNIFICATION
    from .patchset import check_output, is_patch_set, merge_patch_sets
    from .tracks import PairSetConfig

    check_texture_photos(photos)
    if num_worlds < 1:
        raise ValueError(f"num_worlds must be >= 1, got {num_worlds}")
    pair_config = pair_config or PairSetConfig()
    magnification = MAGNIFICATION if magnification is None else magnification
    out = check_output(out, overwrite, [Path(p).parent for p in photos])
    root = out.with_name(out.name + ".worlds")
    images = load_photos(photos)
    sets, prefixes = [], []
    for s in range(seed, seed + num_worlds):
        world, wset = root / f"world-{s:04d}", root / f"world-{s:04d}.set"
        if not (world / "cameras.json").is_file():
            render_world(world, s, images, config, [str(p) for p in photos])
        if not is_patch_set(wset):
            try:
                write_world_pairs(world, wset, pair_config, magnification)
            except ValueError as e:
                logger.warning("world %d left out: %s", s, e)
                continue
        sets.append(wset)
        prefixes.append(f"{world.name}/images/")
    if not sets:
        raise ValueError(f"{root}: no world gave a patch set")
    info = {"scene": "rendered worlds", "source": str(root), "scene_folder": str(root), "config": asdict(pair_config),
            "world_config": asdict(config), "worlds": [int(p.name[6:10]) for p in sets]}  # fmt: skip
    return merge_patch_sets(sets, out, info, overwrite=True, image_prefixes=prefixes)


def depth_checked(tracks, feats: dict, world: str | os.PathLike):
    """The observations of ``tracks`` whose point lies on the rendered surface seen at the keypoint.

    Args:
        tracks: :class:`~patchmatch.datasets.tracks.Tracks` of a rendered world.
        feats: the world's :class:`~patchmatch.datasets.tracks.ImageFeatures` by image name.
        world: the world's folder (``cameras.json``, ``depth/``).

    Returns:
        The tracks keeping only depth-consistent observations, tracks left with fewer than 2 views
        dropped and the rest renumbered.
    """
    from .scenes import load_scene
    from .tracks import Tracks

    scene = load_scene(world)
    keep = np.zeros(len(tracks), bool)
    for i, name in enumerate(tracks.names):
        sel = np.flatnonzero(tracks.image_index == i)
        depth = np.load(Path(world) / "depth" / f"{Path(name).stem}.npy")
        kp = feats[name].keypoints[tracks.keypoint_index[sel], :2]
        _, d = scene.cameras[name].project(tracks.points3d[tracks.track_id[sel]])
        ij = np.clip(np.round(kp).astype(np.int64), 0, [depth.shape[1] - 1, depth.shape[0] - 1])
        seen = depth[ij[:, 1], ij[:, 0]].astype(np.float64)
        keep[sel] = np.isfinite(seen) & (np.abs(d - seen) <= DEPTH_TOL * seen)
    counts = np.bincount(tracks.track_id[keep], minlength=tracks.num_tracks)
    keep &= counts[tracks.track_id] >= 2
    kept = counts >= 2
    logger.info("%s: depth check keeps %d of %d observations, %d of %d tracks", world, int(keep.sum()), len(tracks),
                int(kept.sum()), tracks.num_tracks)  # fmt: skip
    remap = np.cumsum(kept) - 1
    return Tracks(tracks.image_index[keep], tracks.keypoint_index[keep], remap[tracks.track_id[keep]].astype(np.int32),
                  tracks.points3d[kept], list(tracks.names))  # fmt: skip


def write_world_pairs(world: str | os.PathLike, out: str | os.PathLike, pair_config, magnification: float) -> dict:
    """The labelled pairs of one rendered world (tracks by the exact cameras, then :func:`depth_checked`) as a set.

    Raises:
        ValueError: fewer than two tracks survive.
    """
    import time
    from dataclasses import asdict

    from .patchset import check_output, write_pair_set
    from .scenes import load_scene
    from .tracks import build_pair_set, build_tracks, detect_scene

    t0 = time.perf_counter()
    scene = load_scene(world)
    out = check_output(out, True, [scene.root])
    feats, images = detect_scene(scene, scene.names, pair_config.tracks.max_keypoints)
    tracks = depth_checked(build_tracks(scene, feats, scene.names, pair_config.tracks), feats, world)
    ps = build_pair_set(scene, feats, tracks, pair_config)
    info = {"scene": scene.name, "source": str(Path(world).resolve()), "scene_folder": str(Path(world).resolve()),
            "config": asdict(pair_config), "keypoints_per_image": {n: int(len(feats[n].keypoints)) for n in ps.names}}  # fmt: skip
    return write_pair_set(out, ps, images, tracks, info, t0, magnification)
