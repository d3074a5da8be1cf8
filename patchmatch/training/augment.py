"""Pair-consistent augmentation: the same flip / 90° rotation on both patches, random order.

As in Zagoruyko & Komodakis (CVPR 2015, Sec. 5), the training pairs are augmented by flipping
and rotating by multiples of 90°. Both patches of a pair get the same one of the 8 transforms of
the square's symmetry group (so a match stays a match), and the two patches are swapped at
random (the 2-channel models are not symmetric in their input).
"""

from __future__ import annotations

import numpy as np

__all__ = ["dihedral", "augment_pairs"]


def dihedral(patches: np.ndarray, k: int) -> np.ndarray:
    """Apply one of the 8 symmetries of the square.

    Args:
        patches: (..., H, W) array (the last two axes are transformed).
        k: 0..7; ``k % 4`` quarter turns counter-clockwise (``np.rot90``), then a left-right
            flip when ``k >= 4``.

    Returns:
        Array of the same shape (for square patches), a copy.

    Raises:
        ValueError: ``k`` outside 0..7.
    """
    if not 0 <= k < 8:
        raise ValueError(f"dihedral transform index must be in 0..7, got {k}")
    out = np.rot90(patches, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def augment_pairs(
    p0: np.ndarray, p1: np.ndarray, rng: np.random.Generator, swap: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Randomly transform pairs of patches, identically within each pair.

    Args:
        p0: (B, H, W) first patches (any dtype), H == W.
        p1: (B, H, W) second patches.
        rng: random generator (all randomness comes from it, for reproducible training).
        swap: also swap the two patches of a pair with probability 1/2.

    Returns:
        ``(q0, q1, k)``: the transformed (B, H, W) patches and the (B,) int transform index of
        each pair (0..7, plus 8 when swapped).

    Raises:
        ValueError: shapes differ or patches are not square.
    """
    if p0.shape != p1.shape or p0.ndim != 3 or p0.shape[1] != p0.shape[2]:
        raise ValueError(f"need two (B, S, S) arrays of equal shape, got {p0.shape} and {p1.shape}")
    b = len(p0)
    k = rng.integers(0, 8, size=b)
    sw = rng.random(b) < 0.5 if swap else np.zeros(b, bool)
    q0 = np.empty_like(p0)
    q1 = np.empty_like(p1)
    for t in range(8):
        sel = np.flatnonzero(k == t)
        if len(sel):
            q0[sel] = dihedral(p0[sel], t)
            q1[sel] = dihedral(p1[sel], t)
    q0[sw], q1[sw] = q1[sw].copy(), q0[sw].copy()
    return q0, q1, k + 8 * sw
