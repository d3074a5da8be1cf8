"""A COLMAP sparse model: read, write, summarise, poses, points, cameras, undistortion."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pycolmap

from .convention import colmap_to_opencv
from .database import ensure_free_space

#: Upper bounds of the bytes COLMAP's binary model format spends per item (images.bin stores
#: every 2D point with its 3D point id; points3D.bin every point with its track).
_BYTES_PER_POINT2D = 24
_BYTES_PER_POINT3D = 64
_BYTES_PER_OBSERVATION = 8
_BYTES_PER_IMAGE = 1024


def read_reconstruction(path: str | os.PathLike) -> pycolmap.Reconstruction:
    """Read a COLMAP model folder (binary or text).

    Raises:
        FileNotFoundError: the folder lacks ``cameras``/``images``/``points3D`` files.
        ValueError: COLMAP cannot read the files.
    """
    path = Path(path)
    if not any((path / f"images{ext}").is_file() for ext in (".bin", ".txt")):
        raise FileNotFoundError(f"{path} is not a COLMAP model folder (no images.bin/.txt)")
    try:
        return pycolmap.Reconstruction(str(path))
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a readable COLMAP model ({exc})") from None


def _model_bytes(reconstruction: pycolmap.Reconstruction) -> int:
    """An upper bound of the size of ``reconstruction`` in COLMAP's binary format."""
    points2d = sum(image.num_points2D() for image in reconstruction.images.values())
    return (_BYTES_PER_POINT2D * points2d + _BYTES_PER_POINT3D * reconstruction.num_points3D()
            + _BYTES_PER_OBSERVATION * reconstruction.compute_num_observations()
            + _BYTES_PER_IMAGE * (reconstruction.num_images() + reconstruction.num_cameras()))  # fmt: skip


def write_reconstruction(reconstruction: pycolmap.Reconstruction, path: str | os.PathLike) -> Path:
    """Writes a model in COLMAP's binary format into the folder ``path`` (created).

    pycolmap writes truncated files without an error when the disk fills up: the free space is
    checked first, against an upper bound of the model's size.

    Raises:
        OSError: ``ENOSPC``, the disk is full.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    ensure_free_space(path, _model_bytes(reconstruction), factor=1)  # plain files: written once
    reconstruction.write(str(path))
    return path


def reconstruction_stats(reconstruction: pycolmap.Reconstruction | None) -> dict:
    """Summary numbers of a model.

    Args:
        reconstruction: a model, or ``None`` (no model: zeros and NaNs).

    Returns:
        ``{"registered": int, "points": int, "observations": int,
        "mean_track_length": float, "mean_reprojection_error": float (px),
        "registered_names": list[str] (sorted)}``.
    """
    if reconstruction is None:
        return {
            "registered": 0,
            "points": 0,
            "observations": 0,
            "mean_track_length": float("nan"),
            "mean_reprojection_error": float("nan"),
            "registered_names": [],
        }
    names = sorted(reconstruction.image(i).name for i in reconstruction.reg_image_ids())
    points = int(reconstruction.num_points3D())
    nan = float("nan")
    return {
        "registered": int(reconstruction.num_reg_images()),
        "points": points,
        "observations": int(reconstruction.compute_num_observations()),
        "mean_track_length": float(reconstruction.compute_mean_track_length()) if points else nan,
        "mean_reprojection_error": float(reconstruction.compute_mean_reprojection_error()) if points else nan,
        "registered_names": names,
    }


def reconstruction_poses(
    reconstruction: pycolmap.Reconstruction,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """World-to-camera poses of the registered images.

    Returns:
        ``{name: (R (3, 3) float64, t (3,) float64)}`` with
        ``x_cam = R @ X_world + t``.
    """
    poses = {}
    for image_id in reconstruction.reg_image_ids():
        image = reconstruction.image(image_id)
        matrix = np.asarray(image.cam_from_world().matrix(), dtype=np.float64)
        poses[image.name] = (matrix[:, :3].copy(), matrix[:, 3].copy())
    return poses


def reconstruction_points(reconstruction: pycolmap.Reconstruction) -> np.ndarray:
    """(P, 3) float64 positions of the model's 3D points (world frame)."""
    pts = [p.xyz for p in reconstruction.points3D.values()]
    return np.asarray(pts, dtype=np.float64).reshape(-1, 3)


def reconstruction_cameras(reconstruction: pycolmap.Reconstruction) -> dict[str, dict]:
    """Intrinsics of the registered images: ``{name: {"model", "params", "width", "height"}}``."""
    out = {}
    for image_id in reconstruction.reg_image_ids():
        image = reconstruction.image(image_id)
        camera = reconstruction.camera(image.camera_id)
        out[image.name] = {
            "model": camera.model_name,
            "params": [float(v) for v in camera.params],
            "width": int(camera.width),
            "height": int(camera.height),
        }
    return out


def undistort_reconstruction(
    model: str | os.PathLike, image_dir: str | os.PathLike, out: str | os.PathLike
) -> tuple[Path, Path]:
    """Undistorts a sparse model and its images with COLMAP's image undistorter.

    Every camera becomes ``PINHOLE``; the images are resampled accordingly (a pinhole camera's
    images are copied unchanged in geometry).

    Args:
        model: COLMAP sparse model folder (``cameras.bin``/``.txt``, ``images``, ``points3D``).
        image_dir: the folder the model's image names are relative to.
        out: output folder; ``out/images`` and ``out/sparse`` are written.

    Returns:
        ``(image folder, sparse model folder)`` of the undistorted result.

    Raises:
        FileNotFoundError: ``model`` or ``image_dir`` is missing, or an image of the model is.
    """
    model, image_dir, out = Path(model), Path(image_dir), Path(out)
    reconstruction = read_reconstruction(model)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: image folder not found")
    missing = [reconstruction.image(i).name for i in reconstruction.reg_image_ids()
               if not (image_dir / reconstruction.image(i).name).is_file()]  # fmt: skip
    if missing:
        raise FileNotFoundError(f"{image_dir}: {len(missing)} image(s) of {model} are missing, e.g. {missing[0]!r}")
    out.mkdir(parents=True, exist_ok=True)
    pycolmap.undistort_images(str(out), str(model), str(image_dir), output_type="COLMAP")
    return out / "images", out / "sparse"


def reconstruction_pinhole_cameras(
    reconstruction: pycolmap.Reconstruction,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int, int]]:
    """Pinhole cameras of the registered images in the OpenCV pixel convention.

    Returns:
        ``{name: (K (3, 3), R (3, 3), t (3,), width, height)}``, float64, ``x ~ K (R X + t)``
        with pixel centres at integer coordinates (COLMAP's principal point minus 0.5).

    Raises:
        ValueError: a camera has distortion parameters (undistort the model first with
            :func:`undistort_reconstruction`).
    """
    poses = reconstruction_poses(reconstruction)
    out = {}
    for image_id in reconstruction.reg_image_ids():
        image = reconstruction.image(image_id)
        camera = reconstruction.camera(image.camera_id)
        if camera.model_name not in ("PINHOLE", "SIMPLE_PINHOLE"):
            raise ValueError(f"camera {image.camera_id} of {image.name!r} is {camera.model_name}, not a pinhole; "
                             "undistort the model first")  # fmt: skip
        K = np.asarray(camera.calibration_matrix(), dtype=np.float64).copy()
        K[:2, 2] = colmap_to_opencv(K[:2, 2])
        R, t = poses[image.name]
        out[image.name] = (K, R, t, int(camera.width), int(camera.height))
    return out
