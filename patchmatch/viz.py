"""Pictures: matches of two images side by side (one line per match), grids of patches and of
patch pairs (OpenCV drawing)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: BGR colours: verified inliers, other matches.
INLIER_COLOR = (60, 200, 60)
OUTLIER_COLOR = (40, 40, 230)


def _to_bgr(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR copy of an (H, W) grey or (H, W, 3) BGR uint8 image.

    Raises:
        ValueError: another dtype or shape.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise ValueError(f"images must be (H, W) or (H, W, 3), got {image.shape}")


def draw_matches(
    image0: np.ndarray,
    image1: np.ndarray,
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    matches: np.ndarray,
    inliers: np.ndarray | None = None,
    max_lines: int = 300,
    max_height: int = 800,
    title: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Draw the matches of an image pair side by side.

    Args:
        image0: (H0, W0) or (H0, W0, 3) uint8 (BGR).
        image1: (H1, W1) or (H1, W1, 3) uint8.
        keypoints0: (N0, 2) float pixel positions in ``image0`` (OpenCV convention).
        keypoints1: (N1, 2) float pixel positions in ``image1``.
        matches: (K, 2) int indices ``[i0, i1]``.
        inliers: (K,) bool, True for verified matches (green; others red);
            ``None`` draws every match green.
        max_lines: at most this many lines (a random, seeded subset; inliers
            drawn last, on top).
        max_height: both images are scaled to this height at most.
        title: text written at the top-left corner.
        seed: seed of the subset choice.

    Returns:
        (H, W0' + W1', 3) uint8 BGR canvas.

    Raises:
        ValueError: bad image types, shapes, or indices out of range.
    """
    img0, img1 = _to_bgr(image0), _to_bgr(image1)
    kp0 = np.asarray(keypoints0, np.float64).reshape(-1, 2)
    kp1 = np.asarray(keypoints1, np.float64).reshape(-1, 2)
    matches = np.asarray(matches, np.int64).reshape(-1, 2)
    if len(matches) and (
        matches.min() < 0 or matches[:, 0].max() >= len(kp0) or matches[:, 1].max() >= len(kp1)
    ):
        raise ValueError(f"match indices out of range for {len(kp0)} and {len(kp1)} keypoints")
    inl = np.ones(len(matches), bool) if inliers is None else np.asarray(inliers, bool).reshape(-1)
    if len(inl) != len(matches):
        raise ValueError(f"{len(matches)} matches but {len(inl)} inlier flags")

    canvas, s0, s1, offset = _side_by_side(img0, img1, max_height)
    height = canvas.shape[0]
    rows = np.arange(len(matches))
    if len(rows) > max_lines:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_lines, replace=False))
    rows = np.r_[rows[~inl[rows]], rows[inl[rows]]]
    thickness = max(1, height // 500)
    for r in rows:
        # pixel centre at integer coordinates: scale the (x + 0.5) edge distance
        x0, y0 = (kp0[matches[r, 0]] + 0.5) * s0 - 0.5
        x1, y1 = (kp1[matches[r, 1]] + 0.5) * s1 - 0.5
        _draw_match(canvas, (int(round(x0)), int(round(y0))), (int(round(x1)) + offset, int(round(y1))),
                    INLIER_COLOR if inl[r] else OUTLIER_COLOR, thickness)  # fmt: skip
    text = title if title is not None else ""
    _put_title(canvas, f"{text}  {int(inl.sum())}/{len(matches)} inliers".strip())
    return canvas


def _draw_match(canvas: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], color: tuple[int, int, int], thickness: int) -> None:
    """One match: a line between the two canvas pixels and a dot at each end."""
    cv2.line(canvas, p0, p1, color, thickness, cv2.LINE_AA)
    cv2.circle(canvas, p0, 2 * thickness, color, -1, cv2.LINE_AA)
    cv2.circle(canvas, p1, 2 * thickness, color, -1, cv2.LINE_AA)


def _side_by_side(img0: np.ndarray, img1: np.ndarray, max_height: int) -> tuple[np.ndarray, float, float, int]:
    """Two (H, W, 3) uint8 images scaled to one height (at most ``max_height``) and put side by side.

    Returns:
        ``(canvas, s0, s1, offset)``: the (H', W0' + W1', 3) uint8 canvas, each image's scale
        factor, and the x offset of the second image in pixels.
    """
    height = min(max_height, max(img0.shape[0], img1.shape[0]))
    s0, s1 = height / img0.shape[0], height / img1.shape[0]
    img0 = cv2.resize(img0, (max(1, round(img0.shape[1] * s0)), height), interpolation=cv2.INTER_AREA)
    img1 = cv2.resize(img1, (max(1, round(img1.shape[1] * s1)), height), interpolation=cv2.INTER_AREA)
    return np.concatenate([img0, img1], axis=1), s0, s1, img0.shape[1]


def _put_title(canvas: np.ndarray, text: str) -> None:
    """Writes ``text`` at the top-left corner of a BGR canvas, white on a black box (an outline drawn
    thicker would advance wider than the text)."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.7, 1)
    cv2.rectangle(canvas, (4, 4), (16 + tw, 14 + th + base), (0, 0, 0), -1)
    cv2.putText(canvas, text, (10, 10 + th), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)


def save_png(path: str | os.PathLike, canvas: np.ndarray) -> Path:
    """Write a canvas as PNG (parent folders created).

    Raises:
        OSError: OpenCV could not write the file (the path is named).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"could not write PNG {path}")
    return path


def patch_pair_grid(
    patches: np.ndarray,
    pairs: np.ndarray | None = None,
    cols: int = 8,
    captions: list[str] | None = None,
    scale: int = 2,
) -> np.ndarray:
    """A grid of patches, or of patch pairs shown side by side, for inspection by eye.

    Args:
        patches: (N, 64, 64) uint8.
        pairs: (M, 2) int indices; None shows the patches themselves, one per cell.
        cols: cells per row.
        captions: one short text per cell (drawn under it), or None.
        scale: pixel magnification (nearest neighbour, so the pixels stay visible).

    Returns:
        (H, W, 3) uint8 BGR canvas.

    Raises:
        ValueError: wrong shapes or captions of another length than the cells.
    """
    patches = np.asarray(patches)
    if patches.ndim != 3 or patches.dtype != np.uint8:
        raise ValueError(f"patches must be (N, h, w) uint8, got {patches.shape} {patches.dtype}")
    cells = [patches[i] for i in range(len(patches))] if pairs is None else [
        np.concatenate([patches[a], np.full((patches.shape[1], 2), 255, np.uint8), patches[b]], axis=1)
        for a, b in np.asarray(pairs).reshape(-1, 2)
    ]
    if not cells:
        raise ValueError("nothing to draw")
    if captions is not None and len(captions) != len(cells):
        raise ValueError(f"{len(captions)} captions for {len(cells)} cells")
    ch, cw = cells[0].shape[0] * scale, cells[0].shape[1] * scale
    text_h = 16 if captions else 0
    rows = -(-len(cells) // cols)
    canvas = np.full((rows * (ch + text_h + 6), min(cols, len(cells)) * (cw + 6), 3), 40, np.uint8)
    for k, cell in enumerate(cells):
        r, c = divmod(k, cols)
        y, x = r * (ch + text_h + 6) + 3, c * (cw + 6) + 3
        big = cv2.resize(cell, (cw, ch), interpolation=cv2.INTER_NEAREST)
        canvas[y : y + ch, x : x + cw] = big[:, :, None]
        if captions:
            cv2.putText(canvas, captions[k], (x + 2, y + ch + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                        cv2.LINE_AA)  # fmt: skip
    return canvas


def draw_cameras(
    poses: dict[str, tuple[np.ndarray, np.ndarray]],
    points: np.ndarray | None = None,
    size: int = 900,
    title: str = "",
) -> np.ndarray:
    """A top view of a reconstruction: camera centres (labelled with the image names' stems, or
    indices into the sorted names beyond 40 cameras) with viewing directions, and 3D points.

    The view looks along the axis in which the camera centres vary least (a ring or a row of
    cameras is seen from above), scaled to the central 96% of the points and cameras.

    Args:
        poses: image name → ``(R (3, 3), t (3,))`` world-to-camera (``cam_from_world``).
        points: (P, 3) float 3D points, or None.
        size: canvas side in pixels.
        title: text drawn in the corner.

    Returns:
        (size, size, 3) uint8 BGR canvas.

    Raises:
        ValueError: no poses.
    """
    if not poses:
        raise ValueError("no camera poses to draw")
    names = sorted(poses)
    centres = np.array([-poses[n][0].T @ poses[n][1] for n in names])
    dirs = np.array([poses[n][0][2] for n in names])  # third row of R: the optical axis in world
    pts = np.zeros((0, 3)) if points is None or len(points) == 0 else np.asarray(points, np.float64)
    axes, c_px, p_px = _top_view(centres, pts, size)
    canvas = np.full((size, size, 3), 255, np.uint8)
    for x, y in p_px:
        if 0 <= x < size and 0 <= y < size:
            canvas[y, x] = (150, 150, 150)
    arrow = 0.06 * size
    for k, (c, d) in enumerate(zip(c_px, dirs @ axes.T)):
        d = d / max(float(np.linalg.norm(d)), 1e-9)
        tip = (c + arrow * d).astype(int)
        cv2.arrowedLine(canvas, tuple(int(v) for v in c), tuple(int(v) for v in tip), (200, 80, 30), 2, cv2.LINE_AA, tipLength=0.3)
        cv2.circle(canvas, tuple(int(v) for v in c), 5, (30, 30, 200), -1, cv2.LINE_AA)
        label = Path(names[k]).stem if len(names) <= 40 else str(k)  # image names while they stay legible
        cv2.putText(canvas, label, (int(c[0]) + 6, int(c[1]) - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    text = title or f"{len(names)} cameras, {len(pts)} points (top view)"
    cv2.putText(canvas, text, (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def _top_view(centres: np.ndarray, pts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plane a top view of cameras and points is drawn in, and their pixels on a ``size`` square.

    The plane is the one the (C, 3) camera centres spread in most (the axis in which they vary
    least is the viewing direction); fewer than 3 cameras are seen along the world y axis. The
    scale fits the central 96% of centres and (P, 3) points, and every camera.

    Returns:
        ``(axes, c_px, p_px)``: (2, 3) float64 plane axes, (C, 2) and (P, 2) int pixel positions.
    """
    mean = centres.mean(0)
    spread = centres - mean
    if len(centres) >= 3:
        _, _, vt = np.linalg.svd(spread, full_matrices=False)
        axes = vt[:2]  # the plane the cameras spread in
    else:
        axes = np.eye(3)[[0, 2]]
    c2, p2 = spread @ axes.T, (pts - mean) @ axes.T
    both = np.r_[c2, p2] if len(p2) else c2
    lo, hi = np.percentile(both, 2, axis=0), np.percentile(both, 98, axis=0)
    lo, hi = np.minimum(lo, c2.min(0)), np.maximum(hi, c2.max(0))
    scale = 0.85 * size / max(float((hi - lo).max()), 1e-9)
    centre2 = (lo + hi) / 2
    return axes, *(np.round((xy - centre2) * scale + size / 2).astype(int) for xy in (c2, p2))
