"""Siamese models of Zagoruyko & Komodakis (CVPR 2015, Sec. 3.1-3.3): each patch goes through a
branch that yields a descriptor; a decision network on the two concatenated descriptors gives the
score. The branch is usable alone (:meth:`describe`): embed every patch once, then score pairs
with :meth:`compare` (decision network) or compare descriptors by L2 distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import central_surround, conv_relu, decide_fp32, he_init, normalize_patches, run_stream
from .twochannel import stream_2stream


def _branch_siam() -> nn.Sequential:
    """C(96,7,3)-ReLU-P(2,2)-C(192,5,1)-ReLU-P(2,2)-C(256,3,1)-ReLU → 256-D."""
    return nn.Sequential(
        *conv_relu(1, 96, 7, 3), nn.MaxPool2d(2, 2),
        *conv_relu(96, 192, 5), nn.MaxPool2d(2, 2),
        *conv_relu(192, 256, 3), nn.Flatten(1),
    )


@dataclass(frozen=True)
class SiameseConfig:
    """Decision network F(hidden)-ReLU-F(1) on the concatenated descriptors."""

    hidden: int = 512


class _SiameseBase(nn.Module):
    descriptor_dim: int

    def __init__(self, config: SiameseConfig):
        super().__init__()
        self.config = config

    def _branches(self) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def _embed(self, branch: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return branch(x)

    def describe(self, patches: torch.Tensor, which: int = 0) -> torch.Tensor:
        """Descriptors of single patches.

        Args:
            patches: (B, 1, 64, 64) or (B, 64, 64) float pixel values 0..255.
            which: branch to use (0 or 1; the same weights for siamese models).

        Returns:
            (B, D) float32 descriptors.
        """
        if patches.dim() == 3:
            patches = patches[:, None]
        return self._embed(self._branches()[which], normalize_patches(patches))

    def compare(self, d0: torch.Tensor, d1: torch.Tensor) -> torch.Tensor:
        """Scores (B, D) descriptor pairs with the decision network → (B,), higher = more similar."""
        return decide_fp32(self.decision, torch.cat([d0, d1], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, 64, 64) float 0..255 → (B,) float32 scores."""
        return self.compare(self.describe(x[:, :1], 0), self.describe(x[:, 1:], 1))


class Siamese(_SiameseBase):
    """``siam``: two branches with shared weights (256-D descriptor each)."""

    descriptor_dim = 256

    def __init__(self, config: SiameseConfig = SiameseConfig()):
        super().__init__(config)
        self.branch = _branch_siam()
        self.decision = nn.Sequential(nn.Linear(512, config.hidden), nn.ReLU(inplace=True), nn.Linear(config.hidden, 1))
        he_init(self)

    def _branches(self):
        return self.branch, self.branch


class PseudoSiamese(_SiameseBase):
    """``pseudo-siam``: the same two branches as ``siam`` but with weights of their own."""

    descriptor_dim = 256

    def __init__(self, config: SiameseConfig = SiameseConfig()):
        super().__init__(config)
        self.branch0 = _branch_siam()
        self.branch1 = _branch_siam()
        self.decision = nn.Sequential(nn.Linear(512, config.hidden), nn.ReLU(inplace=True), nn.Linear(config.hidden, 1))
        he_init(self)

    def _branches(self):
        return self.branch0, self.branch1


class _TwoStreamBranch(nn.Module):
    """Central-surround branch on one patch: (B, 1, 64, 64) → (B, 1536)."""

    def __init__(self):
        super().__init__()
        self.central = stream_2stream(1)
        self.surround = stream_2stream(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre, surround = central_surround(x)
        return torch.cat([run_stream(self.central, centre).flatten(1), run_stream(self.surround, surround).flatten(1)], dim=1)


class Siamese2Stream(_SiameseBase):
    """``siam-2stream``: a shared central-surround branch (1536-D descriptor) per patch."""

    descriptor_dim = 1536

    def __init__(self, config: SiameseConfig = SiameseConfig()):
        super().__init__(config)
        self.branch = _TwoStreamBranch()
        self.decision = nn.Sequential(
            nn.Linear(2 * 1536, config.hidden), nn.ReLU(inplace=True), nn.Linear(config.hidden, 1)
        )
        he_init(self)

    def _branches(self):
        return self.branch, self.branch
