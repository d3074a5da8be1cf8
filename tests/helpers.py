"""Test doubles shared by several test modules."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from patchmatch.models import build_model
from patchmatch.scoring import PatchScorer


class NCCScorer(PatchScorer):
    """Normalised cross-correlation in place of the network: tests the matching plumbing with a
    known-good similarity, independently of trained weights."""

    def __init__(self, magnification: float | None = None):
        super().__init__(build_model("2ch"), device="cpu", meta={} if magnification is None else {"magnification": magnification})

    def score_pairs(self, p0, p1, pairs):
        a = p0[pairs[:, 0]].reshape(len(pairs), -1).astype(np.float32)
        b = p1[pairs[:, 1]].reshape(len(pairs), -1).astype(np.float32)
        a -= a.mean(1, keepdims=True)
        b -= b.mean(1, keepdims=True)
        return ((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-6)).astype(np.float32)


def shared_descriptor_scene():
    """Five images of 300 keypoints sharing 300, 200, 120, 60 and 10 descriptors with a base set, and
    their 10 image pairs: ``({name: Features}, [(a, b), ...])``."""
    from patchmatch.features import Features

    rng = np.random.default_rng(7)
    base = rng.random((300, 128)).astype(np.float32)
    kp = np.c_[rng.random((300, 2)) * 100, np.full(300, 10.0), np.zeros(300)].astype(np.float32)
    feats = {}
    for i, shared in enumerate((300, 200, 120, 60, 10)):
        d = rng.random((300, 128)).astype(np.float32)
        d[:shared] = base[:shared] + rng.normal(scale=0.01, size=(shared, 128))
        feats[f"im{i}"] = Features(kp.copy(), d, np.zeros(300, np.float32), np.array([100, 100]))
    names = sorted(feats)
    return feats, [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def make_unwritable(path: Path) -> bool:
    """Makes ``path`` unwritable for this process (chmod; as root, where chmod binds nobody, the
    immutable attribute); False when neither works here."""
    path.chmod(0o555 if path.is_dir() else 0o444)
    if not os.access(path, os.W_OK):
        return True
    path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    except FileNotFoundError:  # no chattr
        return False


def make_writable(path: Path) -> None:
    """Undoes :func:`make_unwritable`."""
    try:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    except FileNotFoundError:
        pass
    path.chmod(0o755 if path.is_dir() else 0o644)
