"""The rendered demo scene: textured planar surfaces seen by pinhole cameras with known poses.

Everything is procedural (nothing is downloaded or read from disk) and deterministic for a
given seed. The scene is a small room corner: a floor, a back wall and two side walls, with
three boxes standing on the floor at different depths. Every surface carries its own
non-repetitive texture (multi-scale noise, random shapes, lines and glyphs), so SIFT finds
many distinctive keypoints and nearby surfaces occlude farther ones.

Cameras follow an arc in front of the room, all looking at its centre. Views are rendered by
inverse mapping each pixel through the plane-induced homography of every surface, keeping the
nearest surface in a depth buffer (z-ordering), on a supersampled grid that is then
area-averaged (anti-aliasing). Each view gets a mild illumination change and sensor noise.

Conventions (those of ``cameras.json`` in ``../shared/data``):

* world coordinates in metres, z up;
* ``x_cam = R @ X_world + t``; ``pixel = K @ x_cam`` with pixel centres at integer
  coordinates (OpenCV's convention; COLMAP's is +0.5);
* camera axes x right, y down, z forward (depth).

Example:
    >>> from patchmatch.synthetic import render_scene
    >>> scene_dir = render_scene("scene", seed=0, num_images=10)
    >>> sorted(p.name for p in scene_dir.iterdir())
    ['cameras.json', 'images']
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .datasets.scenes import Camera  # the cameras.json camera, shared with the real scenes

logger = logging.getLogger(__name__)

CONVENTION = "x_cam = R @ X_world + t; pixel = K @ x_cam (pixel centres at integer coordinates)"

#: Number of texture pyramid levels below full resolution (mip-mapping against aliasing).
_PYRAMID_LEVELS = 3
#: Light direction (world, unit) used for the per-surface Lambert shading.
_LIGHT = np.array([0.35, -0.55, 0.76]) / np.linalg.norm([0.35, -0.55, 0.76])
#: Floor extent of the room (metres): |x| < half width, y in (y0, y1); cameras stay outside it.
_ROOM_HALF_WIDTH = 5.0
_ROOM_Y = (-5.0, 3.5)
#: Gray level of the background (no surface hit) at the top and bottom image rows.
_SKY = (185.0, 150.0)


@dataclass(frozen=True)
class SceneConfig:
    """Settings of the synthetic scene and of its rendering.

    Attributes:
        num_images: Number of cameras on the arc (2..64).
        width: Image width in pixels.
        height: Image height in pixels.
        focal: Focal length in pixels (square pixels, principal point at the image centre).
        arc_degrees: Angle swept by the cameras around the room centre, in degrees.
        radius: Distance of the cameras from the room centre (horizontal), in metres.
        camera_height: Height of the cameras above the floor, in metres.
        pose_jitter: Relative amplitude of the random per-camera perturbation of radius,
            height, arc angle, roll and look-at point (0 = a perfectly regular arc).
        texels_per_meter: Texture resolution on every surface.
        supersample: Supersampling factor per axis (1 = none); images are rendered at
            ``supersample`` times the size and area-averaged down.
        noise_sigma: Standard deviation of the additive Gaussian sensor noise, in gray levels.
        illumination: Largest relative change of the global gain between views (0 = none);
            also scales a mild left-right illumination gradient and offset.
        shading: Whether surfaces are shaded by their orientation to a fixed light.
        light: (3,) world direction towards the light of that shading (normalised; None: the
            demo's fixed light).
        background: Gray levels of the background (no surface hit) at the top and bottom rows.
    """

    num_images: int = 10
    width: int = 640
    height: int = 480
    focal: float = 560.0
    arc_degrees: float = 70.0
    radius: float = 8.0
    camera_height: float = 2.6
    pose_jitter: float = 1.0
    texels_per_meter: float = 200.0
    supersample: int = 2
    noise_sigma: float = 2.0
    illumination: float = 0.12
    shading: bool = True
    light: tuple[float, float, float] | None = None
    background: tuple[float, float] = _SKY

    def __post_init__(self) -> None:
        if self.light is not None and not np.linalg.norm(self.light) > 0:
            raise ValueError(f"SceneConfig.light must be a non-zero direction, got {self.light}")
        if not 2 <= self.num_images <= 64:
            raise ValueError(f"SceneConfig.num_images must be in [2, 64], got {self.num_images}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"SceneConfig image size must be at least 16x16, got {self.width}x{self.height}")
        if self.focal <= 0 or self.radius <= 0 or self.texels_per_meter <= 0:
            raise ValueError("SceneConfig.focal, radius and texels_per_meter must be positive")
        if not 0 < self.arc_degrees <= 120:
            raise ValueError(f"SceneConfig.arc_degrees must be in (0, 120], got {self.arc_degrees}")
        if self.supersample < 1 or self.supersample > 4:
            raise ValueError(f"SceneConfig.supersample must be 1..4, got {self.supersample}")
        if self.noise_sigma < 0 or not 0 <= self.illumination < 0.5 or self.pose_jitter < 0:
            raise ValueError("SceneConfig.noise_sigma, pose_jitter must be >= 0 and illumination in [0, 0.5)")


@dataclass(frozen=True, eq=False)
class Surface:
    """A textured planar rectangle.

    The rectangle is ``origin + s * axis_u + t_ * axis_v`` for ``s`` in ``[0, size[0]]`` and
    ``t_`` in ``[0, size[1]]`` (metres). Texel ``(u, v)`` of the full-resolution texture (its
    centre at integer coordinates) lies at ``s = (u + 0.5) / texels_per_meter[0]``,
    ``t_ = (v + 0.5) / texels_per_meter[1]``, so the texture exactly tiles the rectangle.

    Attributes:
        name: Human-readable name ("floor", "box1-top", ...).
        origin: (3,) float64, world position of the rectangle corner at ``s = t_ = 0``, metres.
        axis_u: (3,) float64 unit vector along texture columns (texture x).
        axis_v: (3,) float64 unit vector along texture rows (texture y), orthogonal to axis_u.
        size: (2,) float64 extent along axis_u and axis_v, metres.
        texture: (Ht, Wt) float32 gray levels 0..255; Ht and Wt are multiples of 8.
    """

    name: str
    origin: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    size: np.ndarray
    texture: np.ndarray
    pyramid: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for key in ("origin", "axis_u", "axis_v", "size"):
            object.__setattr__(self, key, np.asarray(getattr(self, key), dtype=np.float64))
        if abs(float(self.axis_u @ self.axis_v)) > 1e-9:
            raise ValueError(f"Surface {self.name!r}: axis_u and axis_v are not orthogonal")
        tex = np.ascontiguousarray(self.texture, dtype=np.float32)
        if tex.ndim != 2 or tex.shape[0] % 2**_PYRAMID_LEVELS or tex.shape[1] % 2**_PYRAMID_LEVELS:
            raise ValueError(
                f"Surface {self.name!r}: texture must be 2-D with sides divisible by "
                f"{2**_PYRAMID_LEVELS}, got shape {tex.shape}"
            )
        levels = [tex]
        for _ in range(_PYRAMID_LEVELS):
            prev = levels[-1]
            levels.append(cv2.resize(prev, (prev.shape[1] // 2, prev.shape[0] // 2), interpolation=cv2.INTER_AREA))
        object.__setattr__(self, "texture", tex)
        object.__setattr__(self, "pyramid", tuple(levels))

    @property
    def normal(self) -> np.ndarray:
        """(3,) float64 unit normal ``axis_u x axis_v``."""
        return np.cross(self.axis_u, self.axis_v)

    @property
    def texels_per_meter(self) -> np.ndarray:
        """(2,) float64 texture resolution along axis_u and axis_v (texels per metre)."""
        return np.array([self.texture.shape[1], self.texture.shape[0]], dtype=np.float64) / self.size

    @property
    def corners(self) -> np.ndarray:
        """(4, 3) float64 world corners of the rectangle, in order around it."""
        su, sv = self.size[0] * self.axis_u, self.size[1] * self.axis_v
        return np.stack([self.origin, self.origin + su, self.origin + su + sv, self.origin + sv])

    def point_at(self, st: np.ndarray) -> np.ndarray:
        """World points of surface coordinates.

        Args:
            st: (N, 2) surface coordinates ``(s, t_)`` in metres.

        Returns:
            (N, 3) float64 world points.
        """
        st = np.asarray(st, dtype=np.float64).reshape(-1, 2)
        return self.origin + st[:, :1] * self.axis_u + st[:, 1:] * self.axis_v

    def texel_of(self, points: np.ndarray) -> np.ndarray:
        """Full-resolution texel coordinates (centres at integers) of world points on the plane.

        Args:
            points: (N, 3) world points (assumed on the plane; the normal component is ignored).

        Returns:
            (N, 2) float64 texel coordinates ``(u, v)``.
        """
        d = np.asarray(points, dtype=np.float64).reshape(-1, 3) - self.origin
        st = np.stack([d @ self.axis_u, d @ self.axis_v], axis=1)
        return st * self.texels_per_meter - 0.5


@dataclass(frozen=True)
class SyntheticScene:
    """Surfaces and cameras of one synthetic scene.

    Attributes:
        surfaces: The textured rectangles.
        cameras: One camera per image, in image order.
        config: The settings it was made with.
        seed: The random seed it was made with (also seeds each view's noise).
    """

    surfaces: tuple[Surface, ...]
    cameras: tuple[Camera, ...]
    config: SceneConfig
    seed: int

    def cameras_json(self) -> dict:
        """The ground truth in the ``cameras.json`` format of ``../shared/data/README.md``."""
        return {"convention": CONVENTION, "images": {c.name: c.to_json() for c in self.cameras}}


@dataclass(frozen=True)
class RenderedView:
    """One rendered image with its per-pixel ground truth.

    Attributes:
        image: (H, W) uint8 gray image (None when rendered with ``image=False``).
        depth: (H, W) float32 depth in metres of the surface seen at each pixel centre
            (``inf`` where no surface is hit).
        surface: (H, W) int16 index into ``SyntheticScene.surfaces`` of the surface seen at
            each pixel centre (-1 where none).
    """

    image: np.ndarray | None
    depth: np.ndarray
    surface: np.ndarray


# ----------------------------------------------------------------------------- textures


def make_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A rich, non-repetitive procedural texture.

    Multi-scale value noise, then random filled shapes (discs, ellipses, rotated rectangles,
    polygons), line segments and glyphs of random gray levels and sizes (12..160 texels), then
    fine noise on top so that no region is flat.

    Args:
        rng: Random generator (consumed).
        height: Texture height in texels.
        width: Texture width in texels.

    Returns:
        (height, width) float32 gray levels in [0, 255].
    """
    tex = _value_noise(rng, height, width)
    n_shapes = max(8, int(height * width / 55.0**2))
    kinds = rng.integers(0, 6, size=n_shapes)
    # Shapes are drawn in order on a 3-channel uint8 canvas (gray, coverage, unused): OpenCV draws
    # text on 8-bit 1, 3 or 4-channel images only.
    canvas = np.zeros((height, width, 3), np.uint8)
    for kind in kinds:
        _draw_shape(canvas, int(kind), rng)
    covered = canvas[..., 1] > 0
    tex[covered] = canvas[..., 0][covered]
    fine = rng.standard_normal((height // 6 + 3, width // 6 + 3)).astype(np.float32)
    fine = cv2.resize(fine, (fine.shape[1] * 6, fine.shape[0] * 6), interpolation=cv2.INTER_CUBIC)
    tex += 9.0 * fine[:height, :width]
    tex = cv2.GaussianBlur(tex, (0, 0), 0.8)
    return np.clip(tex, 0.0, 255.0)


def _value_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width) float32 multi-scale value noise around grey 128 (cells of 384 to 16 texels, bicubic)."""
    tex = np.zeros((height, width), np.float32)
    for cell, amp in ((384, 38.0), (128, 30.0), (48, 22.0), (16, 12.0)):
        gh, gw = height // cell + 3, width // cell + 3
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        up = cv2.resize(grid, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
        oy, ox = rng.integers(0, cell, size=2)
        tex += amp * up[oy : oy + height, ox : ox + width]
    tex += 128.0
    return tex


def _draw_shape(canvas: np.ndarray, kind: int, rng: np.random.Generator) -> None:
    """Draws one random shape of a random grey level on an (H, W, 3) uint8 canvas (grey, coverage, unused).

    ``kind``: 0 disc, 1 ellipse, 2 rotated rectangle, 3 polygon, 4 line segment, 5 glyphs; its size
    is drawn log-uniformly in 12..160 texels and its centre anywhere within 10% beyond the canvas.
    """
    height, width = canvas.shape[:2]
    size = float(np.exp(rng.uniform(np.log(12.0), np.log(160.0))))
    cx, cy = rng.uniform(-0.1 * width, 1.1 * width), rng.uniform(-0.1 * height, 1.1 * height)
    color = (int(rng.integers(0, 256)), 255, 0)
    center = (int(round(cx)), int(round(cy)))
    if kind == 0:
        cv2.circle(canvas, center, max(2, int(size / 2)), color, -1)
    elif kind == 1:
        axes = (max(2, int(size / 2)), max(2, int(size * rng.uniform(0.15, 0.5))))
        cv2.ellipse(canvas, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
    elif kind == 2:
        box = ((cx, cy), (size, size * rng.uniform(0.2, 1.0)), float(rng.uniform(0, 180)))
        cv2.fillPoly(canvas, [np.round(cv2.boxPoints(box)).astype(np.int32)], color)
    elif kind == 3:
        n = int(rng.integers(3, 7))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = size / 2 * rng.uniform(0.4, 1.0, n)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], color)
    elif kind == 4:
        a = rng.uniform(0, np.pi)
        d = np.array([np.cos(a), np.sin(a)]) * size
        p0 = (int(round(cx - d[0])), int(round(cy - d[1])))
        p1 = (int(round(cx + d[0])), int(round(cy + d[1])))
        cv2.line(canvas, p0, p1, color, int(rng.integers(2, 7)))
    else:
        text = "".join(rng.choice(list("ABCDEFGHKLMNPRSTUVWXYZ0123456789#&%@"), int(rng.integers(1, 4))))
        font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX]))
        scale = size / 30.0
        cv2.putText(canvas, text, center, font, scale, color, max(1, int(round(scale * 2))))


def _texture_shape(size: tuple[float, float], texels_per_meter: float) -> tuple[int, int]:
    """(height, width) in texels for a rectangle of ``size`` (w, h) metres, multiples of 8."""
    m = 2**_PYRAMID_LEVELS
    w = max(m, int(math.ceil(size[0] * texels_per_meter / m)) * m)
    h = max(m, int(math.ceil(size[1] * texels_per_meter / m)) * m)
    return h, w


# ----------------------------------------------------------------------------- geometry


def _rect(name, origin, axis_u, axis_v, size, rng, texels_per_meter) -> Surface:
    h, w = _texture_shape(size, texels_per_meter)
    return Surface(name, origin, axis_u, axis_v, size, make_texture(rng, h, w))


def _box(name, center_xy, size, yaw_deg, rng, texels_per_meter) -> list[Surface]:
    """Top and four side faces of an upright box standing on the floor (z = 0)."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    ex, ey = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
    up = np.array([0.0, 0.0, 1.0])
    sx, sy, sz = size
    base = np.array([center_xy[0], center_xy[1], 0.0]) - ex * sx / 2 - ey * sy / 2
    top = base + up * sz
    faces = [
        _rect(f"{name}-top", base + up * sz, ex, ey, (sx, sy), rng, texels_per_meter),
        _rect(f"{name}-front", top, ex, -up, (sx, sz), rng, texels_per_meter),
        _rect(f"{name}-back", top + ey * sy + ex * sx, -ex, -up, (sx, sz), rng, texels_per_meter),
        _rect(f"{name}-left", top + ey * sy, -ey, -up, (sy, sz), rng, texels_per_meter),
        _rect(f"{name}-right", top + ex * sx, ey, -up, (sy, sz), rng, texels_per_meter),
    ]
    return faces


def _surfaces(rng: np.random.Generator, texels_per_meter: float) -> tuple[Surface, ...]:
    x, y, z = np.eye(3)
    tpm, w = texels_per_meter, _ROOM_HALF_WIDTH
    surfaces = [
        _rect("floor", (-w, _ROOM_Y[0], 0.0), x, y, (2 * w, _ROOM_Y[1] - _ROOM_Y[0]), rng, tpm),
        _rect("back-wall", (-5.0, 3.5, 3.5), x, -z, (10.0, 3.5), rng, tpm),
        _rect("left-wall", (-5.0, -1.0, 3.5), y, -z, (4.5, 3.5), rng, tpm),
        _rect("right-wall", (5.0, 3.5, 3.5), -y, -z, (4.5, 3.5), rng, tpm),
    ]
    surfaces += _box("box1", (-1.7, 0.9), (1.6, 1.4, 1.2), 20.0, rng, tpm)
    surfaces += _box("box2", (1.5, -0.7), (1.2, 1.0, 1.8), -15.0, rng, tpm)
    surfaces += _box("box3", (0.4, 2.4), (1.1, 0.9, 0.7), 5.0, rng, tpm)
    return tuple(surfaces)


def _look_at(center: np.ndarray, target: np.ndarray, roll_rad: float) -> np.ndarray:
    """World-to-camera rotation (rows: right, down, forward) for a camera at ``center``."""
    forward = target - center
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    cr, sr = math.cos(roll_rad), math.sin(roll_rad)
    roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return roll @ R


def _cameras(rng: np.random.Generator, config: SceneConfig) -> tuple[Camera, ...]:
    K = np.array(
        [
            [config.focal, 0.0, (config.width - 1) / 2.0],
            [0.0, config.focal, (config.height - 1) / 2.0],
            [0.0, 0.0, 1.0],
        ]
    )
    room_center = np.array([0.0, 0.8, 0.9])
    angles = np.radians(np.linspace(-config.arc_degrees / 2, config.arc_degrees / 2, config.num_images))
    j = config.pose_jitter
    cams = []
    for i, a in enumerate(angles):
        a = a + math.radians(1.5) * j * rng.uniform(-1, 1)
        r = config.radius * (1.0 + 0.04 * j * rng.uniform(-1, 1))
        height = config.camera_height + 0.25 * j * rng.uniform(-1, 1)
        center = room_center + np.array([r * math.sin(a), -r * math.cos(a), 0.0])
        center[2] = height
        target = room_center + 0.3 * j * rng.uniform(-1, 1, size=3)
        R = _look_at(center, target, math.radians(2.0) * j * rng.uniform(-1, 1))
        cams.append(Camera(f"{i:04d}.png", K.copy(), R, -R @ center, config.width, config.height))
    return tuple(cams)


def make_scene(seed: int = 0, config: SceneConfig | None = None) -> SyntheticScene:
    """Build the scene: surfaces with textures and cameras with poses (no rendering yet).

    Args:
        seed: Random seed; the same seed and config give the same scene, bit for bit.
        config: Scene settings (defaults: ``SceneConfig()``).

    Returns:
        The scene.
    """
    config = config or SceneConfig()
    rng = np.random.default_rng(seed)
    surfaces = _surfaces(rng, config.texels_per_meter)
    cameras = _cameras(rng, config)
    for cam in cameras:
        x, y, z = cam.center
        if (abs(x) < _ROOM_HALF_WIDTH and _ROOM_Y[0] < y < _ROOM_Y[1]) or z <= 0.1:
            raise ValueError(
                f"SceneConfig(radius={config.radius}, camera_height={config.camera_height}) puts camera "
                f"{cam.name} at {np.round(cam.center, 2).tolist()}, inside the room or below its floor"
            )
    return SyntheticScene(surfaces, cameras, config, int(seed))


# ----------------------------------------------------------------------------- rendering


def _pixel_grid(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """(3, N) float64 homogeneous pixel centres of the box [x0, x1) x [y0, y1), row-major."""
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    return np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])


def _surface_homography(surface: Surface, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(3, 3) matrix mapping surface coordinates ``(s, t_, 1)`` to ``depth * (x, y, 1)`` pixels."""
    return K @ np.stack([R @ surface.axis_u, R @ surface.axis_v, R @ surface.origin + t], axis=1)


def _footprint_box(surface: Surface, K, R, t, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Pixel bounding box [x0, x1) x [y0, y1) that can see the surface, or None if it cannot."""
    x = surface.corners @ R.T + t
    if np.all(x[:, 2] <= 1e-6):
        return None
    if np.any(x[:, 2] <= 1e-6):  # straddles the camera plane: the projection is unbounded
        return 0, 0, width, height
    p = (x @ K.T)[:, :2] / x[:, 2:]
    x0, y0 = np.floor(p.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(p.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def _surface_hits(surface: Surface, K, R, t, box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Surface coordinates and depth of the pixel centres in ``box``.

    Returns:
        ``(st, depth, inside)``: (2, N) surface coordinates in metres, (N,) depth in metres
        and (N,) bool, True where the ray hits the rectangle in front of the camera.
    """
    H = _surface_homography(surface, K, R, t)
    if abs(np.linalg.det(H)) < 1e-12 * np.abs(H).max() ** 3:  # camera in the plane: seen edge-on
        n = (box[2] - box[0]) * (box[3] - box[1])
        return np.zeros((2, n)), np.full(n, np.inf), np.zeros(n, bool)
    q = np.linalg.solve(H, _pixel_grid(*box))
    w = q[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        st = q[:2] / w
        depth = 1.0 / w
    inside = (w > 0) & (st[0] >= 0) & (st[0] <= surface.size[0]) & (st[1] >= 0) & (st[1] <= surface.size[1])
    return st, depth, inside


def _visible_maps(scene: SyntheticScene, cam: Camera, K: np.ndarray, width: int, height: int, with_color: bool):
    """Z-buffered depth, surface index and (optionally) shaded texture at the pixel centres."""
    depth = np.full((height, width), np.inf, np.float64)
    label = np.full((height, width), -1, np.int16)
    color = np.zeros((height, width), np.float32) if with_color else None
    for idx, surface in enumerate(scene.surfaces):
        box = _footprint_box(surface, K, cam.R, cam.t, width, height)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        bw, bh = x1 - x0, y1 - y0
        st, d, inside = _surface_hits(surface, K, cam.R, cam.t, box)
        d = d.reshape(bh, bw)
        win = inside.reshape(bh, bw) & (d < depth[y0:y1, x0:x1])
        if not win.any():
            continue
        depth[y0:y1, x0:x1][win] = d[win]
        label[y0:y1, x0:x1][win] = idx
        if with_color:
            color[y0:y1, x0:x1][win] = _sample_texture(surface, st, inside, bh, bw, K[0, 0])[win] * _shade(
                surface, cam, scene.config.shading, scene.config.light
            )
    return depth, label, color


def _sample_texture(surface: Surface, st: np.ndarray, inside: np.ndarray, bh: int, bw: int, focal: float) -> np.ndarray:
    """Bilinear texture lookup at surface coordinates, from the mip level that fits the footprint."""
    tpm = surface.texels_per_meter
    level = 0
    if inside.sum() >= 4:
        # Texels per pixel from the local Jacobian of st over a pixel step, at the median hit.
        grid = st.reshape(2, bh, bw)
        ys, xs = np.nonzero(inside.reshape(bh, bw))
        k = len(ys) // 2
        yy, xx = min(ys[k], bh - 2), min(xs[k], bw - 2)
        j = np.stack([grid[:, yy, xx + 1] - grid[:, yy, xx], grid[:, yy + 1, xx] - grid[:, yy, xx]], axis=1)
        texels = math.sqrt(abs(np.linalg.det(j * tpm[:, None]))) if np.all(np.isfinite(j)) else 1.0
        level = int(np.clip(math.floor(math.log2(max(texels, 1e-6))), 0, _PYRAMID_LEVELS))
    tex = surface.pyramid[level]
    scale = tpm / 2**level
    with np.errstate(invalid="ignore"):
        mx = np.where(inside, st[0] * scale[0] - 0.5, -10.0).astype(np.float32).reshape(bh, bw)
        my = np.where(inside, st[1] * scale[1] - 0.5, -10.0).astype(np.float32).reshape(bh, bw)
    return cv2.remap(tex, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _shade(surface: Surface, cam: Camera, shading: bool, light=None) -> float:
    """Brightness factor of a surface (Lambertian in the direction ``light``, default the fixed
    one, 0.62..1; 1 without ``shading``)."""
    if not shading:
        return 1.0
    direction = _LIGHT if light is None else np.asarray(light, dtype=np.float64) / np.linalg.norm(light)
    return 0.62 + 0.38 * abs(float(surface.normal @ direction))


def render_view(scene: SyntheticScene, index: int, *, image: bool = True) -> RenderedView:
    """Render one view of the scene.

    Args:
        scene: The scene (see :func:`make_scene`).
        index: Camera index in ``scene.cameras``.
        image: Render the image; False computes only the (much cheaper) ground-truth maps.

    Returns:
        The image with its depth and surface-index maps (at the pixel centres).

    Raises:
        IndexError: If ``index`` is not a camera of the scene.
    """
    if not 0 <= index < len(scene.cameras):
        raise IndexError(f"camera index {index} out of range for {len(scene.cameras)} cameras")
    cfg = scene.config
    cam = scene.cameras[index]
    depth, label, _ = _visible_maps(scene, cam, cam.K, cfg.width, cfg.height, with_color=False)
    if not image:
        return RenderedView(image=None, depth=depth.astype(np.float32), surface=label)
    S = cfg.supersample
    # Supersampled pixel x' = S x + (S - 1) / 2 covers the same area as pixel x (centres at integers).
    A = np.array([[S, 0.0, (S - 1) / 2.0], [0.0, S, (S - 1) / 2.0], [0.0, 0.0, 1.0]])
    Wss, Hss = cfg.width * S, cfg.height * S
    _, label_ss, color_ss = _visible_maps(scene, cam, A @ cam.K, Wss, Hss, with_color=True)
    sky = np.linspace(cfg.background[0], cfg.background[1], Hss, dtype=np.float32)[:, None]
    color_ss = np.where(label_ss >= 0, color_ss, sky)
    img = cv2.resize(color_ss, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA) if S > 1 else color_ss

    rng = np.random.default_rng([scene.seed, index])
    if cfg.illumination > 0:
        gain = 1.0 + cfg.illumination * rng.uniform(-1, 1)
        slope = 0.5 * cfg.illumination * rng.uniform(-1, 1)
        offset = 60.0 * cfg.illumination * rng.uniform(-1, 1)
        ramp = np.linspace(-1.0, 1.0, cfg.width, dtype=np.float32)[None, :]
        img = img * (gain * (1.0 + slope * ramp)) + offset
    if cfg.noise_sigma > 0:
        img = img + rng.normal(0.0, cfg.noise_sigma, img.shape).astype(np.float32)
    pixels = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return RenderedView(image=pixels, depth=depth.astype(np.float32), surface=label)


def backproject(scene: SyntheticScene, index: int, view: RenderedView, pixels: np.ndarray) -> np.ndarray:
    """World points seen at (sub-pixel) positions of a rendered view.

    The surface is the one seen at the nearest pixel centre; the point is the exact
    intersection of the pixel's ray with that surface's plane.

    Args:
        scene: The scene.
        index: Camera index of the view.
        view: ``render_view(scene, index)``.
        pixels: (N, 2) pixel coordinates (OpenCV convention, centres at integers).

    Returns:
        (N, 3) float64 world points in metres; NaN rows where no surface is seen or the
        position is outside the image.
    """
    cam = scene.cameras[index]
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    out = np.full((len(pixels), 3), np.nan)
    ij = np.round(pixels).astype(np.int64)
    h, w = view.surface.shape
    ok = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
    label = np.full(len(pixels), -1, np.int64)
    label[ok] = view.surface[ij[ok, 1], ij[ok, 0]]
    rays = np.c_[pixels, np.ones(len(pixels))] @ np.linalg.inv(cam.K).T @ cam.R  # world directions, z_cam = 1
    center = cam.center
    for k in np.unique(label[label >= 0]):
        s = scene.surfaces[k]
        sel = label == k
        lam = ((s.origin - center) @ s.normal) / (rays[sel] @ s.normal)
        out[sel] = center + lam[:, None] * rays[sel]
    return out


def transfer(
    scene: SyntheticScene,
    index0: int,
    view0: RenderedView,
    index1: int,
    view1: RenderedView,
    pixels0: np.ndarray,
    depth_tolerance: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth correspondences: where pixels of view 0 appear in view 1.

    Args:
        scene: The scene.
        index0: Camera index of view 0. view0: ``render_view(scene, index0)``.
        index1: Camera index of view 1. view1: ``render_view(scene, index1)``.
        pixels0: (N, 2) pixel coordinates in view 0 (OpenCV convention).
        depth_tolerance: Relative depth difference under which the transferred point counts
            as the surface seen in view 1 (not occluded).

    Returns:
        ``(pixels1, visible)``: (N, 2) float64 positions in view 1 (NaN where view 0 sees no
        surface) and (N,) bool, True where the point is inside view 1 and not occluded there.
    """
    X = backproject(scene, index0, view0, pixels0)
    p1, d1 = scene.cameras[index1].project(X)
    h, w = view1.depth.shape
    with np.errstate(invalid="ignore"):
        ij = np.round(np.nan_to_num(p1, nan=-1.0)).astype(np.int64)
        inside = np.isfinite(d1) & (d1 > 0) & (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
    visible = np.zeros(len(p1), bool)
    seen = view1.depth[ij[inside, 1], ij[inside, 0]]
    visible[inside] = d1[inside] <= seen * (1.0 + depth_tolerance)
    return p1, visible


def render_scene(
    out_dir: str | Path,
    seed: int = 0,
    num_images: int = 10,
    *,
    config: SceneConfig | None = None,
    overwrite: bool = False,
) -> Path:
    """Render the synthetic scene to ``out_dir/images/*.png`` and ``out_dir/cameras.json``.

    Args:
        out_dir: Output folder (created if missing).
        seed: Random seed (textures, camera jitter, noise); output is deterministic.
        num_images: Number of views; overrides ``config.num_images``.
        config: Other scene settings (defaults: ``SceneConfig()``).
        overwrite: Replace an existing ``out_dir/images`` folder and ``cameras.json``
            (the whole ``images`` folder is deleted first).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        FileExistsError: If ``out_dir/images`` or ``out_dir/cameras.json`` exists and
            ``overwrite`` is False.
        ValueError: If the settings are invalid.
        OSError: If an image cannot be written.
    """
    out_dir = Path(out_dir)
    config = dataclasses.replace(config or SceneConfig(), num_images=num_images)
    images_dir, cameras_path = out_dir / "images", out_dir / "cameras.json"
    existing = [p for p in (images_dir, cameras_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists; pass overwrite=True to replace it")
    if images_dir.exists():
        shutil.rmtree(images_dir)
    cameras_path.unlink(missing_ok=True)
    images_dir.mkdir(parents=True)

    scene = make_scene(seed, config)
    for i, cam in enumerate(scene.cameras):
        view = render_view(scene, i)
        path = images_dir / cam.name
        if not cv2.imwrite(str(path), view.image):
            raise OSError(f"could not write image {path}")
    cameras_path.write_text(json.dumps(scene.cameras_json(), indent=1))
    logger.info("rendered %d views of the synthetic scene (seed %d) to %s", len(scene.cameras), seed, out_dir)
    return out_dir
