"""Losses on hand-computed values."""

from __future__ import annotations

import pytest
import torch

from patchmatch.training.losses import contrastive_loss, hinge_loss, to_targets


def test_hinge_hand_computed():
    scores = torch.tensor([2.0, 0.5, -0.5, -3.0, 0.0])
    labels = torch.tensor([1, 1, 1, 0, 0])
    # y*s = 2, 0.5, -0.5, 3, 0 -> max(0, 1 - ys) = 0, 0.5, 1.5, 0, 1 -> mean 0.6
    assert hinge_loss(scores, labels).item() == pytest.approx(0.6)
    assert hinge_loss(scores, labels.bool(), margin=2.0).item() == pytest.approx((0 + 1.5 + 2.5 + 0 + 2) / 5)


def test_hinge_gradient_only_inside_margin():
    scores = torch.tensor([2.0, 0.5, -3.0, 0.5], requires_grad=True)
    hinge_loss(scores, torch.tensor([1, 1, 0, 0])).backward()
    assert scores.grad.tolist() == pytest.approx([0.0, -0.25, 0.0, 0.25])


def test_contrastive_hand_computed():
    d0 = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    d1 = torch.tensor([[3.0, 4.0], [0.3, 0.4], [3.0, 4.0]])  # distances 5, 0.5, 5
    labels = torch.tensor([1, 0, 0])
    # match: d^2 = 25; non-match at 0.5: (1 - 0.5)^2 = 0.25; non-match at 5 > margin: 0
    assert contrastive_loss(d0, d1, labels).item() == pytest.approx((25 + 0.25 + 0) / 3)
    assert contrastive_loss(d0, d1, labels, margin=6.0).item() == pytest.approx((25 + 5.5**2 + 1) / 3)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="0/1"):
        to_targets(torch.tensor([1, -1]))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        hinge_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="labels"):
        contrastive_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2))
