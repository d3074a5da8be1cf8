"""Pose accuracy of a reconstruction against ground-truth cameras (``cameras.json``).

The measure is gauge-free: for every pair of ground-truth images ``(i, j)`` the
relative rotation ``R_j R_i^T`` of the reconstruction is compared with that of
the ground truth; the error is the angle of ``R_est^T R_gt`` in degrees. A pair
with an unregistered image counts as a failure (error = infinity), so that a
model that registers fewer images scores lower. Summaries: median error, the
area under the cumulative error curve up to 0.5/1/2 degrees (AUC, as in
SuperGlue and the Image Matching Challenge), and the registered count. The
angle between the relative translation directions is reported too.

``cameras.json`` (see ``shared/data/README.md``)::

    {"convention": "x_cam = R @ X_world + t; ...",
     "images": {"0000.jpg": {"K": 3x3, "R": 3x3, "t": [3], "width": w, "height": h}, ...}}
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: AUC thresholds in degrees.
DEFAULT_THRESHOLDS = (0.5, 1.0, 2.0)
#: A registered image is wrong when its relative rotations to most other registered images are off
#: by more than this (degrees): ten times the median error of a good model of the test scenes.
WRONG_ROTATION_DEG = 5.0

Pose = tuple[np.ndarray, np.ndarray]  # R (3, 3), t (3,): x_cam = R @ X_world + t


@dataclass(frozen=True)
class GroundTruthCamera:
    """One camera of ``cameras.json``: ``K`` (3, 3), ``R`` (3, 3), ``t`` (3,), size in pixels."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int


def load_cameras_json(path: str | os.PathLike) -> dict[str, GroundTruthCamera]:
    """Read a ``cameras.json`` file.

    Returns:
        ``{image name: GroundTruthCamera}`` (float64 arrays).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON or an entry is malformed (name given).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth cameras {path} do not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
        raise ValueError(f"{path}: expected an object with an 'images' mapping")
    cameras = {}
    for name, entry in data["images"].items():
        missing = [key for key in ("K", "R", "t", "width", "height") if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise ValueError(f"{path}: image {name!r} lacks {', '.join(repr(k) for k in missing)}")
        try:
            K = np.asarray(entry["K"], np.float64)
            R = np.asarray(entry["R"], np.float64)
            t = np.asarray(entry["t"], np.float64).reshape(-1)
            width, height = int(entry["width"]), int(entry["height"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: image {name!r} is malformed ({error})") from error
        if K.shape != (3, 3) or R.shape != (3, 3) or t.shape != (3,):
            raise ValueError(f"{path}: image {name!r} has K {K.shape}, R {R.shape}, t {t.shape}")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-4):
            raise ValueError(f"{path}: image {name!r} has a non-orthonormal R")
        # files store R rounded to a few digits: project back onto SO(3)
        cameras[name] = GroundTruthCamera(K, nearest_rotation(R), t, width, height)
    return cameras


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle in degrees of a rotation matrix (3, 3).

    Uses ``atan2(|axis * sin|, cos)`` rather than ``arccos`` of the trace, which
    loses all precision near 0 (a 1e-7 rounding of the trace reads as 0.04 deg).
    """
    cos = (np.trace(R) - 1.0) / 2.0
    sin = 0.5 * np.linalg.norm([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return float(np.degrees(np.arctan2(sin, cos)))


def nearest_rotation(R: np.ndarray) -> np.ndarray:
    """The rotation closest to a (3, 3) matrix in Frobenius norm (SVD projection)."""
    U, _, Vt = np.linalg.svd(R)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def _angle_between_deg(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu < 1e-12 or nv < 1e-12:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))))


def relative_pose_errors(
    ground_truth: Mapping[str, Pose], estimate: Mapping[str, Pose], names: Sequence[str] | None = None
) -> dict[tuple[str, str], tuple[float, float]]:
    """Relative rotation and translation-direction errors of all image pairs.

    Args:
        ground_truth: ``{name: (R, t)}`` world-to-camera poses.
        estimate: ``{name: (R, t)}`` of the registered images (any gauge).
        names: the images to evaluate (default: all of ``ground_truth``).

    Returns:
        ``{(a, b): (rotation error deg, translation angle deg)}`` over pairs
        ``a < b``; ``(inf, inf)`` when either image is not in ``estimate``.

    Raises:
        KeyError: a name in ``names`` has no ground truth.
    """
    names = sorted(ground_truth if names is None else names)
    missing = [n for n in names if n not in ground_truth]
    if missing:
        raise KeyError(f"no ground truth for {missing[:5]}")
    errors = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if a not in estimate or b not in estimate:
                errors[(a, b)] = (float("inf"), float("inf"))
                continue
            Ra, ta = ground_truth[a]
            Rb, tb = ground_truth[b]
            Ea, ea = estimate[a]
            Eb, eb = estimate[b]
            R_gt, R_est = Rb @ Ra.T, Eb @ Ea.T
            t_gt, t_est = tb - R_gt @ ta, eb - R_est @ ea
            errors[(a, b)] = (rotation_angle_deg(R_est.T @ R_gt), _angle_between_deg(t_gt, t_est))
    return errors


def pose_auc(errors: Sequence[float], thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[float]:
    """Area under the cumulative error curve up to each threshold, normalised to [0, 1].

    Args:
        errors: per-pair errors in degrees (``inf`` = failure).
        thresholds: in degrees, > 0.

    Returns:
        One AUC per threshold (0.0 for no errors).
    """
    errors = np.sort(np.asarray(errors, np.float64))
    n = len(errors)
    if n == 0:
        return [0.0 for _ in thresholds]
    recall = np.arange(1, n + 1) / n
    errors = np.r_[0.0, errors]
    recall = np.r_[0.0, recall]
    aucs = []
    for t in thresholds:
        last = int(np.searchsorted(errors, t, side="right"))
        x = np.r_[errors[:last], t]
        y = np.r_[recall[:last], recall[last - 1]]
        aucs.append(float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0) / t))  # trapezoid rule
    return aucs


def wrongly_registered(
    errors: Mapping[tuple[str, str], tuple[float, float]], max_error_deg: float = WRONG_ROTATION_DEG
) -> list[str]:
    """The registered images whose relative rotations to most other registered images are wrong.

    Args:
        errors: :func:`relative_pose_errors` (pairs with an unregistered image, error infinity,
            are ignored).
        max_error_deg: a pair's rotation error above this (degrees) is wrong.

    Returns:
        Sorted names of the images wrong in more than half of their pairs with other registered images.
    """
    wrong: dict[str, int] = {}
    pairs: dict[str, int] = {}
    for (a, b), (rotation, _) in errors.items():
        if not np.isfinite(rotation):
            continue
        for name in (a, b):
            pairs[name] = pairs.get(name, 0) + 1
            wrong[name] = wrong.get(name, 0) + int(rotation > max_error_deg)
    return sorted(name for name, count in pairs.items() if 2 * wrong[name] > count)


def evaluate_poses(
    estimate: Mapping[str, Pose],
    cameras_json: str | os.PathLike,
    names: Sequence[str] | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> dict:
    """Compare estimated poses with a ``cameras.json``.

    Args:
        estimate: ``{name: (R (3, 3), t (3,))}`` world-to-camera poses of the
            registered images, e.g. :func:`patchmatch.colmap.reconstruction_poses`.
        cameras_json: ground-truth file.
        names: images to evaluate (default: all ground-truth images); e.g. the
            images a run was given, when it used a subset of a scene.
        thresholds: AUC thresholds in degrees.

    Returns:
        ``{"images": int, "registered": int, "pairs": int,
        "rotation_error_median_deg": float, "translation_error_median_deg": float,
        "rotation_auc": {"0.5": float, ...}, "wrongly_registered": [names],
        "wrongly_registered_count": int, "pair_errors": {"a|b": [rot, trans]}}``
        (medians include failures as infinity; :func:`wrongly_registered` for the wrong images).

    Raises:
        FileNotFoundError, ValueError: see :func:`load_cameras_json`.
        KeyError: a name has no ground truth.
    """
    cameras = load_cameras_json(cameras_json)
    gt = {name: (cam.R, cam.t) for name, cam in cameras.items()}
    names = sorted(gt if names is None else names)
    errors = relative_pose_errors(gt, estimate, names)
    rot = [e[0] for e in errors.values()]
    trans = [e[1] for e in errors.values()]
    wrong = wrongly_registered(errors)
    return {
        "images": len(names),
        "registered": sum(1 for n in names if n in estimate),
        "pairs": len(errors),
        "rotation_error_median_deg": float(np.median(rot)) if rot else float("nan"),
        "translation_error_median_deg": float(np.nanmedian(trans)) if trans else float("nan"),
        "rotation_auc": {f"{t:g}": auc for t, auc in zip(thresholds, pose_auc(rot, thresholds))},
        "wrongly_registered": wrong,
        "wrongly_registered_count": len(wrong),
        "pair_errors": {f"{a}|{b}": [r, t] for (a, b), (r, t) in errors.items()},
    }
