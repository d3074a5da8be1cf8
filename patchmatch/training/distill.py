"""Self-distillation of test-time augmentation: a frozen teacher's scores averaged over transformed copies of
each pair (:class:`patchmatch.scoring.PatchScorer`'s ``tta``), as a regression target for the network being trained.

Averaging a network's scores over transformed copies of a pair (8 forward passes for the dihedral group) tends to
score better than one pass (the model card says by how much for the shipped weights). Training toward that average
(knowledge distillation: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015) aims to keep
the gain at the cost of one pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["tta_views", "tta_mean_scores", "distillation_loss"]


def tta_views(x: torch.Tensor, tta: str) -> Iterator[torch.Tensor]:
    """The transformed copies of a batch of pairs that ``tta`` averages over, the identity first.

    Args:
        x: (B, 2, 64, 64) pairs (any dtype).
        tta: ``"none"``, ``"swap"`` (the two patches exchanged), ``"rot90"`` (both patches rotated together by
            0, 90, 180, 270 degrees) or ``"dihedral"`` (those rotations and their left-right mirror images).

    Yields:
        (B, 2, 64, 64) tensors: 1, 2, 4 or 8 of them.

    Raises:
        ValueError: an unknown ``tta``.
    """
    from ..scoring import tta_forms

    for swap, turns, mirror in tta_forms(tta):  # the forms PatchScorer(tta=...) averages over
        v = x.flip(1) if swap else x
        v = torch.rot90(v, turns, dims=(2, 3)) if turns else v
        yield v.flip(3) if mirror else v


@torch.no_grad()
def tta_mean_scores(model: torch.nn.Module, x: torch.Tensor, tta: str) -> torch.Tensor:
    """(B,) float32 mean of ``model``'s scores over :func:`tta_views` of ``x`` (no gradient; the caller sets eval mode
    and autocast)."""
    views = list(tta_views(x, tta))
    return torch.stack([model(v).float() for v in views]).mean(0)


def distillation_loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the student's (B,) scores and the teacher's (B,) target scores."""
    return torch.mean((scores.float() - target.float()) ** 2)
