"""Training losses of Zagoruyko & Komodakis (CVPR 2015) and the contrastive alternative.

The paper trains every model with a hinge loss on the network output ``o`` and targets
``y = +1`` (match) / ``-1`` (non-match): ``max(0, 1 - y o)``, plus weight decay (given to the
optimiser here). Descriptors of siamese branches compared by L2 distance are trained with the
contrastive loss (Chopra, Hadsell & LeCun, CVPR 2005; Hadsell, Chopra & LeCun, CVPR 2006).
"""

from __future__ import annotations

import torch

__all__ = ["hinge_loss", "contrastive_loss", "to_targets"]


def to_targets(labels: torch.Tensor) -> torch.Tensor:
    """0/1 or bool labels (1 = match) → float ±1 targets.

    Args:
        labels: (B,) bool or integer 0/1 tensor.

    Returns:
        (B,) float32, +1 for matches and -1 otherwise.

    Raises:
        ValueError: labels other than 0/1 (a ±1 tensor passed by mistake is refused).
    """
    lab = labels.to(torch.float32)
    if not bool(((lab == 0) | (lab == 1)).all()):
        raise ValueError("labels must be 0/1 or bool (1 = match)")
    return 2.0 * lab - 1.0


def hinge_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Mean hinge loss ``max(0, margin - y * score)`` with ``y = ±1``.

    Args:
        scores: (B,) float network outputs, higher = more similar.
        labels: (B,) bool or 0/1 (1 = match).
        margin: the hinge margin (1 in the paper).

    Returns:
        Scalar float tensor.

    Raises:
        ValueError: shape mismatch or labels not 0/1.
    """
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores and labels must both be (B,), got {tuple(scores.shape)} and {tuple(labels.shape)}")
    y = to_targets(labels).to(scores.device)
    return torch.clamp(margin - y * scores, min=0).mean()


def contrastive_loss(d0: torch.Tensor, d1: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Mean contrastive loss ``y d^2 + (1 - y) max(0, margin - d)^2``, ``d = ||d0 - d1||_2``.

    Args:
        d0: (B, D) descriptors of the first patches.
        d1: (B, D) descriptors of the second patches.
        labels: (B,) bool or 0/1 (1 = match).
        margin: distance beyond which non-matches cost nothing.

    Returns:
        Scalar float tensor.

    Raises:
        ValueError: shape mismatch or labels not 0/1.
    """
    if d0.shape != d1.shape or d0.ndim != 2 or labels.shape != d0.shape[:1]:
        raise ValueError(
            f"need d0, d1 (B, D) and labels (B,), got {tuple(d0.shape)}, {tuple(d1.shape)}, {tuple(labels.shape)}"
        )
    y = (to_targets(labels) > 0).to(d0.dtype).to(d0.device)
    d = torch.linalg.vector_norm(d0 - d1, dim=1)
    return (y * d.pow(2) + (1 - y) * torch.clamp(margin - d, min=0).pow(2)).mean()
