"""ROC curves as a PNG (drawn with OpenCV: no plotting dependency)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

_COLOURS = [(200, 60, 20), (30, 30, 220), (30, 160, 30), (160, 30, 160), (0, 140, 200), (90, 90, 90)]


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: str | os.PathLike, title: str = "") -> Path:
    """Draws ROC curves (false positive rate on a log axis from 0.1% to 100%, true positive rate).

    Args:
        curves: label → ``(fpr (T,), tpr (T,), fpr95 fraction)``.
        path: output PNG.
        title: text at the top.
    """
    w, h, m = 720, 560, 60
    img = np.full((h, w, 3), 255, np.uint8)
    x0, x1, y0, y1 = m, w - 20, h - m, 40
    lo = -3.0

    def to_px(fpr, tpr):
        lx = (np.log10(np.clip(fpr, 10**lo, 1.0)) - lo) / -lo
        return np.stack([x0 + lx * (x1 - x0), y0 + tpr * (y1 - y0)], 1).astype(np.int32)

    cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)
    for e in range(int(lo), 1):
        x = int(x0 + (e - lo) / -lo * (x1 - x0))
        cv2.line(img, (x, y0), (x, y0 + 5), (0, 0, 0), 1)
        cv2.putText(img, f"{100 * 10**e:g}%", (x - 18, y0 + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    y95 = int(y0 + 0.95 * (y1 - y0))
    cv2.line(img, (x0, y95), (x1, y95), (180, 180, 180), 1)
    cv2.putText(img, "95% recall", (x0 + 4, y95 - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (120, 120, 120), 1)
    cv2.putText(img, "false positive rate (log)", (w // 2 - 90, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "TPR", (10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(img, title, (x0, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
    for k, (label, (fpr, tpr, f95)) in enumerate(curves.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        cv2.polylines(img, [to_px(np.asarray(fpr), np.asarray(tpr))], False, colour, 2, cv2.LINE_AA)
        cv2.putText(img, f"{label}: FPR95 {100 * f95:.2f}%", (x0 + 10, y0 - 15 - 20 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not write PNG.")
    return path
