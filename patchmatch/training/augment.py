"""Pair-consistent augmentation: the same flip / 90° rotation on both patches, random order; and
independent small jitter of each patch (:func:`jitter_patches`).

As in Zagoruyko & Komodakis (CVPR 2015, Sec. 5), the training pairs are augmented by flipping
and rotating by multiples of 90°. Both patches of a pair get the same one of the 8 transforms of
the square's symmetry group (so a match stays a match), and the two patches are swapped at
random (the 2-channel models are not symmetric in their input).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["dihedral", "augment_pairs", "jitter_patches"]


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


def jitter_patches(
    x: torch.Tensor,
    generator: torch.Generator,
    max_rotation_deg: float = 8.0,
    max_log_scale: float = 0.1,
    max_shift_px: float = 2.0,
    max_log_contrast: float = 0.35,
    max_log_gamma: float = 0.25,
    noise_std: float = 3.0,
) -> torch.Tensor:
    """Independent small geometric and photometric jitter of every patch (each channel alone).

    Beyond the paper: a detector's keypoints of one 3D point differ by a few pixels, degrees and
    percent of scale between views, and the views differ in exposure and noise; jittering the two
    patches of a pair independently (a match stays a match) trains the network for that.
    Geometric: rotation about the centre, isotropic scale and shift, drawn uniformly in
    ±``max_*`` (scale and contrast in log space), resampled bilinearly with reflected borders
    (:func:`kornia.geometry.transform.warp_affine`). Photometric: contrast gain and gamma about
    the patch mean, additive Gaussian noise.

    Args:
        x: (B, C, H, W) float pixel values 0..255 (C patches per pair, e.g. 2).
        generator: torch generator all draws come from (reproducible training).
        max_rotation_deg: degrees.
        max_log_scale: natural-log scale range (0.1 → ×0.90..×1.11).
        max_shift_px: pixels.
        max_log_contrast: natural-log contrast gain range.
        max_log_gamma: natural-log gamma range.
        noise_std: standard deviation of the added noise, grey levels.

    Returns:
        (B, C, H, W) float32 pixel values clipped to 0..255.
    """
    import kornia

    b, c, h, w = x.shape
    n = b * c
    flat = x.reshape(n, 1, h, w).float()

    def u(lim: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * lim

    angle = u(max_rotation_deg)
    scale = torch.exp(u(max_log_scale))
    center = torch.tensor([[(w - 1) / 2.0, (h - 1) / 2.0]]).expand(n, 2)
    mat = kornia.geometry.transform.get_rotation_matrix2d(center, angle, torch.stack([scale, scale], 1))
    mat[:, :, 2] += torch.stack([u(max_shift_px), u(max_shift_px)], 1)
    out = kornia.geometry.transform.warp_affine(flat, mat.to(flat.device), (h, w), padding_mode="reflection", align_corners=True)
    # photometric: gamma on 0..1, then contrast about the mean, then noise
    gamma = torch.exp(u(max_log_gamma)).to(flat.device).view(n, 1, 1, 1)
    out = 255.0 * (out.clamp(0, 255) / 255.0) ** gamma
    mean = out.mean(dim=(2, 3), keepdim=True)
    gain = torch.exp(u(max_log_contrast)).to(flat.device).view(n, 1, 1, 1)
    out = mean + gain * (out - mean)
    if noise_std > 0:
        out = out + noise_std * torch.randn(out.shape, generator=generator).to(flat.device)
    return out.clamp_(0, 255).reshape(b, c, h, w)
