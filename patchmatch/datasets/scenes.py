"""Scenes with ground-truth cameras: ``<scene>/images/*`` plus ``<scene>/cameras.json``.

The file format (see ``shared/data/README.md``)::

    {"convention": "x_cam = R @ X_world + t; pixel = K @ x_cam (pixel centres at integer coordinates)",
     "images": {"0000.jpg": {"K": 3x3, "R": 3x3, "t": [3], "width": w, "height": h}, ...}}

Pixel coordinates here follow the OpenCV convention (the centre of the top-left pixel is
``(0, 0)``), the same as :mod:`patchmatch.features` keypoints, so no shift is needed between
the two. COLMAP's ``+0.5`` lives in :mod:`patchmatch.colmap` only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .folders import partial_folder

logger = logging.getLogger(__name__)

__all__ = [
    "SceneError",
    "Camera",
    "Scene",
    "load_scene",
    "scene_from_colmap",
    "fundamental_matrix",
    "skew",
]


class SceneError(ValueError):
    """A scene folder or its ``cameras.json`` is missing or malformed."""


def skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrix ``[v]_x`` such that ``[v]_x @ w == np.cross(v, w)``.

    Args:
        v: (3,) vector.

    Returns:
        (3, 3) float64 skew-symmetric matrix.
    """
    x, y, z = np.asarray(v, dtype=np.float64).reshape(3)
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


@dataclass(frozen=True, eq=False)
class Camera:
    """A calibrated pinhole camera: ``pixel ~ K @ (R @ X + t)`` (OpenCV pixel centres).

    Attributes:
        name: image file name relative to ``<scene>/images``.
        K: (3, 3) float64 intrinsics, pixels.
        R: (3, 3) float64 world-to-camera rotation.
        t: (3,) float64 world-to-camera translation, scene units.
        width: image width in pixels.
        height: image height in pixels.
    """

    name: str
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int

    @property
    def P(self) -> np.ndarray:
        """(3, 4) float64 projection matrix ``K @ [R | t]``."""
        return self.K @ np.hstack([self.R, self.t[:, None]])

    @property
    def center(self) -> np.ndarray:
        """(3,) float64 camera centre in world coordinates, ``-R^T t``."""
        return -self.R.T @ self.t

    @property
    def focal(self) -> float:
        """Mean focal length in pixels, ``(fx + fy) / 2``."""
        return float(0.5 * (self.K[0, 0] + self.K[1, 1]))

    def to_camera(self, X: np.ndarray) -> np.ndarray:
        """World points to camera coordinates.

        Args:
            X: (N, 3) world points.

        Returns:
            (N, 3) float64 points in the camera frame (z = depth along the optical axis).
        """
        X = np.asarray(X, dtype=np.float64).reshape(-1, 3)
        return X @ self.R.T + self.t

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points to pixels.

        Args:
            X: (N, 3) world points.

        Returns:
            ``(uv, depth)``: (N, 2) float64 pixel coordinates (OpenCV convention) and (N,)
            float64 depths. Points with depth <= 0 get non-finite or meaningless ``uv``; check
            ``depth > 0`` before using them.
        """
        Xc = self.to_camera(X)
        depth = Xc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            h = Xc @ self.K.T
            uv = h[:, :2] / h[:, 2:3]
        return uv, depth

    def to_json(self) -> dict:
        """The camera as one ``cameras.json`` image entry (plain lists and numbers)."""
        return {"K": self.K.tolist(), "R": self.R.tolist(), "t": self.t.tolist(),
                "width": int(self.width), "height": int(self.height)}  # fmt: skip

    def backproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Lift pixels with known depths to world points.

        Args:
            uv: (N, 2) pixel coordinates.
            depth: (N,) depths along the optical axis.

        Returns:
            (N, 3) float64 world points.
        """
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        rays = np.hstack([uv, np.ones((len(uv), 1))]) @ np.linalg.inv(self.K).T
        Xc = rays * np.asarray(depth, dtype=np.float64).reshape(-1, 1)
        return (Xc - self.t) @ self.R

    def contains(self, uv: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether pixels lie inside the image, at least ``margin`` px from the border.

        Args:
            uv: (N, 2) pixel coordinates (OpenCV convention).
            margin: distance in pixels from the border of the valid area.

        Returns:
            (N,) bool.
        """
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        ok = np.isfinite(uv).all(axis=1)
        return (
            ok
            & (uv[:, 0] >= -0.5 + margin)
            & (uv[:, 1] >= -0.5 + margin)
            & (uv[:, 0] <= self.width - 0.5 - margin)
            & (uv[:, 1] <= self.height - 0.5 - margin)
        )


def fundamental_matrix(cam0: Camera, cam1: Camera) -> np.ndarray:
    """Fundamental matrix from view 0 to view 1: ``x1^T F x0 = 0`` for homogeneous pixels.

    ``F @ x0`` is the epipolar line ``(a, b, c)`` in image 1; the distance of ``x1`` from it is
    ``|x1 . l| / hypot(a, b)``. Normalised so that ``||F||_F = 1``.

    Args:
        cam0: first camera.
        cam1: second camera.

    Returns:
        (3, 3) float64 fundamental matrix.

    Raises:
        SceneError: if the two cameras share their centre (no epipolar geometry).
    """
    R = cam1.R @ cam0.R.T
    t = cam1.t - R @ cam0.t
    if np.linalg.norm(t) < 1e-12 * max(1.0, np.linalg.norm(cam0.t)):
        raise SceneError(f"cameras {cam0.name!r} and {cam1.name!r} share their centre: no fundamental matrix")
    E = skew(t) @ R
    F = np.linalg.inv(cam1.K).T @ E @ np.linalg.inv(cam0.K)
    return F / np.linalg.norm(F)


@dataclass(frozen=True, eq=False)
class Scene:
    """A folder of images with ground-truth cameras.

    Attributes:
        root: the scene folder (holds ``images/`` and ``cameras.json``).
        cameras: camera per image name, sorted by name.
    """

    root: Path
    cameras: dict[str, Camera] = field(repr=False)

    @property
    def name(self) -> str:
        """The folder name, e.g. ``"castle-P30"``."""
        return self.root.name

    @property
    def names(self) -> list[str]:
        """Image names, sorted."""
        return list(self.cameras)

    def image_path(self, name: str) -> Path:
        """Path of one image, ``<root>/images/<name>``.

        Raises:
            KeyError: if ``name`` is not an image of this scene.
        """
        if name not in self.cameras:
            raise KeyError(f"{name!r} is not an image of scene {self.root}")
        return self.root / "images" / name

    def __len__(self) -> int:
        return len(self.cameras)


def _matrix(value: object, shape: tuple[int, ...], what: str, path: Path) -> np.ndarray:
    """``value`` of ``cameras.json`` as a float64 array of ``shape``.

    Raises:
        SceneError: not numeric, the wrong shape or not finite (``what`` and ``path`` named).
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SceneError(f"{path}: {what} is not numeric ({exc})") from None
    if arr.shape != shape:
        raise SceneError(f"{path}: {what} has shape {arr.shape}, expected {shape}")
    if not np.isfinite(arr).all():
        raise SceneError(f"{path}: {what} contains non-finite values")
    return arr


def load_scene(root: str | Path, check_images: bool = True) -> Scene:
    """Load a scene folder with ``cameras.json``.

    Args:
        root: scene folder holding ``images/`` and ``cameras.json``.
        check_images: raise if an image listed in ``cameras.json`` is missing on disk.

    Returns:
        The :class:`Scene`, cameras sorted by image name.

    Raises:
        SceneError: if ``cameras.json`` is missing, not JSON, or malformed (wrong keys, shapes,
            non-finite values, a rotation that is not orthonormal, non-positive sizes or focal
            lengths), or if a listed image is missing. The message names the file.
    """
    root = Path(root)
    path = root / "cameras.json"
    if not path.is_file():
        raise SceneError(f"{path}: not found (a scene needs images/ and cameras.json)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SceneError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
        raise SceneError(f"{path}: expected an object with an 'images' object")
    if not data["images"]:
        raise SceneError(f"{path}: 'images' is empty")
    cameras: dict[str, Camera] = {}
    for name in sorted(data["images"]):
        entry = data["images"][name]
        where = f"images[{name!r}]"
        if not isinstance(entry, dict):
            raise SceneError(f"{path}: {where} is not an object")
        missing = {"K", "R", "t", "width", "height"} - set(entry)
        if missing:
            raise SceneError(f"{path}: {where} lacks {sorted(missing)}")
        K = _matrix(entry["K"], (3, 3), f"{where}.K", path)
        R = _matrix(entry["R"], (3, 3), f"{where}.R", path)
        t = _matrix(entry["t"], (3,), f"{where}.t", path)
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
            raise SceneError(f"{path}: {where}.R is not a rotation matrix")
        if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
            raise SceneError(f"{path}: {where}.K is not an intrinsics matrix (fx, fy > 0, last row 0 0 1)")
        try:
            width, height = int(entry["width"]), int(entry["height"])
        except (TypeError, ValueError):
            raise SceneError(f"{path}: {where} width/height are not integers") from None
        if width <= 0 or height <= 0:
            raise SceneError(f"{path}: {where} has non-positive size {width}x{height}")
        if check_images and not (root / "images" / name).is_file():
            raise SceneError(f"{path}: image {name!r} is listed but {root / 'images' / name} does not exist")
        cameras[name] = Camera(name=name, K=K, R=R, t=t, width=width, height=height)
    logger.debug("loaded %d cameras from %s", len(cameras), path)
    return Scene(root=root, cameras=cameras)


def _model_fingerprint(model: Path, image_dir: Path) -> str:
    """SHA-256 of the image folder's path and every file of the model: what a scene made from it depends on."""
    import hashlib

    h = hashlib.sha256(str(image_dir.resolve()).encode())
    for f in sorted(model.iterdir()):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def scene_from_colmap(
    model: str | Path,
    image_dir: str | Path,
    out: str | Path,
    overwrite: bool = False,
    names: Sequence[str] | None = None,
) -> Scene:
    """A :class:`Scene` from a COLMAP sparse model and its images, so that ground-truth patch
    sets can be built from a user's own reconstruction.

    The model and images are undistorted with COLMAP's undistorter (every camera becomes a
    pinhole) into ``out``, and ``out/cameras.json`` is written from the registered images'
    ``cam_from_world`` poses and intrinsics (OpenCV pixel convention). ``out`` is a derived
    cache: reused when it was made from the same model files and image folder, rebuilt otherwise.

    Args:
        model: sparse model folder (``cameras``, ``images``, ``points3D`` in .bin or .txt).
        image_dir: folder the model's image names are relative to.
        out: the scene folder to write (``images/``, ``sparse/``, ``cameras.json``).
        overwrite: rebuild ``out`` even when it matches.
        names: images that must be registered in the model (checked before any work).

    Returns:
        The scene (the model's scale: a reconstruction's units are arbitrary; all the pair
        builder's thresholds are in pixels and ratios, so they do not depend on it).

    Raises:
        FileNotFoundError: missing model, image folder or image.
        ValueError: unreadable model.
        SceneError: fewer than two registered images, ``names`` not registered, or an image
            whose size differs from its camera's.
    """
    from .. import colmap

    model, image_dir, out = Path(model), Path(image_dir), Path(out)
    reconstruction = colmap.read_reconstruction(model)
    registered = {reconstruction.image(i).name: reconstruction.image(i) for i in reconstruction.reg_image_ids()}
    if len(registered) < 2:
        raise SceneError(f"{model}: {len(registered)} registered image(s); a scene needs at least two")
    missing = sorted(set(names or []) - set(registered))
    if missing:
        raise SceneError(f"{model}: image(s) {missing} are not registered in the model")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: image folder not found")
    fingerprint = _model_fingerprint(model, image_dir)
    if not overwrite and _made_from(out, fingerprint):
        logger.info("%s made from the same model, reused", out)
        return load_scene(out)
    _check_image_sizes(model, reconstruction, registered, image_dir)
    if out.exists() and not (out / "cameras.json").is_file():
        raise FileExistsError(f"{out} exists and is not a scene made from a COLMAP model; refusing to replace it")
    with partial_folder(out) as tmp:
        _, sparse = colmap.undistort_reconstruction(model, image_dir, tmp)
        cams = colmap.reconstruction_pinhole_cameras(colmap.read_reconstruction(sparse))
        entries = {n: Camera(name=n, K=K, R=R, t=t, width=w, height=h).to_json() for n, (K, R, t, w, h) in cams.items()}
        doc = {"source": str(model.resolve()), "fingerprint": fingerprint, "images": entries}
        (tmp / "cameras.json").write_text(json.dumps(doc, indent=1))
    return load_scene(out)


def _made_from(out: Path, fingerprint: str) -> bool:
    """True when ``out`` is a scene made by :func:`scene_from_colmap` from the model of ``fingerprint``
    (logs when it was made from another one)."""
    if not (out / "cameras.json").is_file():
        return False
    try:
        if json.loads((out / "cameras.json").read_text()).get("fingerprint") == fingerprint:
            return True
    except (OSError, ValueError):
        pass
    logger.info("%s was made from another model; rebuilding it", out)
    return False


def _check_image_sizes(model: Path, reconstruction, registered: dict, image_dir: Path) -> None:
    """Checks that every registered image is in ``image_dir`` with its camera's size.

    Raises:
        FileNotFoundError: an image is missing.
        SceneError: an image's size differs from its camera's.
    """
    from ..images import image_size

    for name, image in registered.items():
        path = image_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image of {model} is missing")
        camera = reconstruction.camera(image.camera_id)
        size = image_size(path)
        if size != (camera.width, camera.height):
            raise SceneError(f"{path}: image is {size[0]}x{size[1]} but its camera in {model} is "
                             f"{camera.width}x{camera.height}")  # fmt: skip
