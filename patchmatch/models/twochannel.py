"""2-channel models of Zagoruyko & Komodakis, "Learning to Compare Image Patches via
Convolutional Neural Networks", CVPR 2015: the two patches are stacked as one 2-channel image.

Notation of the paper (Sec. 4): C(n, k, s) a convolution with n filters of k×k and stride s,
P(k, s) max pooling, F(n) a fully connected layer, every C and F but the last followed by ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import conv_relu, decide_fp32, he_init, normalize_patches, normalized_central_surround, run_stream


@dataclass(frozen=True)
class TwoChannelConfig:
    """2ch: C(96,7,3)-ReLU-P(2,2)-C(192,5,1)-ReLU-P(2,2)-C(256,3,1)-ReLU-F(256)-ReLU-F(1)."""

    hidden: int = 256  # width of the penultimate fully connected layer


class TwoChannel(nn.Module):
    """``2ch`` (CVPR 2015, Sec. 3.1): 64×64 → 2×2 → 1 score.

    Input: (B, 2, 64, 64) float pixel values 0..255. Output: (B,) float32, higher = more similar.
    """

    def __init__(self, config: TwoChannelConfig = TwoChannelConfig()):
        super().__init__()
        self.config = config
        self.features = nn.Sequential(
            *conv_relu(2, 96, 7, 3), nn.MaxPool2d(2, 2),  # 64 → 20 → 10
            *conv_relu(96, 192, 5), nn.MaxPool2d(2, 2),  # 10 → 6 → 3
            *conv_relu(192, 256, 3),  # 3 → 1
        )
        self.decision = nn.Sequential(nn.Linear(256, config.hidden), nn.ReLU(inplace=True), nn.Linear(config.hidden, 1))
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = normalize_patches(x)
        return decide_fp32(self.decision, run_stream(self.features, x).flatten(1))


@dataclass(frozen=True)
class TwoChannelDeepConfig:
    """2ch-deep: C(96,4,3)-Stack(96)-P(2,2)-Stack(192)-F(1), Stack(n) = 3 × C(n,3,1)-ReLU."""

    width: int = 96  # filters of the first stack (the second has twice as many)


class TwoChannelDeep(nn.Module):
    """``2chdeep`` (CVPR 2015, Sec. 3.4): many small 3×3 convolutions.

    Input: (B, 2, 64, 64) float 0..255. Output: (B,) float32.
    """

    def __init__(self, config: TwoChannelDeepConfig = TwoChannelDeepConfig()):
        super().__init__()
        self.config = config
        w = config.width

        def stack(cin: int, n: int) -> list[nn.Module]:
            return [*conv_relu(cin, n, 3), *conv_relu(n, n, 3), *conv_relu(n, n, 3)]

        self.features = nn.Sequential(
            *conv_relu(2, w, 4, 3),  # 64 → 21
            *stack(w, w),  # 21 → 15
            nn.MaxPool2d(2, 2),  # 15 → 7
            *stack(w, 2 * w),  # 7 → 1
        )
        self.decision = nn.Linear(2 * w, 1)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = normalize_patches(x)
        return decide_fp32(self.decision, run_stream(self.features, x).flatten(1))


def stream_2stream(cin: int) -> nn.Sequential:
    """One stream of the central-surround models, on a 32×32 input:
    C(96,5,1)-ReLU-P(2,2)-C(96,3,1)-ReLU-P(2,2)-C(192,3,1)-ReLU-C(192,3,1)-ReLU → (B, 192, 2, 2)."""
    return nn.Sequential(
        *conv_relu(cin, 96, 5), nn.MaxPool2d(2, 2),  # 32 → 28 → 14
        *conv_relu(96, 96, 3), nn.MaxPool2d(2, 2),  # 14 → 12 → 6
        *conv_relu(96, 192, 3),  # 6 → 4
        *conv_relu(192, 192, 3),  # 4 → 2
    )


@dataclass(frozen=True)
class TwoChannel2StreamConfig:
    """2ch-2stream: two streams (centre, surround) of :func:`stream_2stream`, concatenated
    (2 × 768 = 1536) → F(768)-ReLU-F(1). 2,353,153 parameters."""

    hidden: int = 768  # width of the fully connected layer after concatenation


class TwoChannel2Stream(nn.Module):
    """``2ch2stream``, the central-surround two-stream 2-channel network (CVPR 2015, Sec. 3.3),
    the best model of the paper (mean FPR95 4.19% on Brown).

    The surround stream sees the whole patch 2×2-average-pooled (2×32×32), the central stream the
    central 32×32 crop at full resolution; each has its own weights.

    Input: (B, 2, 64, 64) float pixel values 0..255 (channel 0 = first patch, 1 = second).
    Output: (B,) float32 unnormalised similarity, higher = more similar.
    """

    def __init__(self, config: TwoChannel2StreamConfig = TwoChannel2StreamConfig()):
        super().__init__()
        self.config = config
        self.central = stream_2stream(2)
        self.surround = stream_2stream(2)
        self.decision = nn.Sequential(nn.Linear(2 * 768, config.hidden), nn.ReLU(inplace=True), nn.Linear(config.hidden, 1))
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre, surround = normalized_central_surround(x)
        feats = torch.cat([run_stream(self.central, centre).flatten(1), run_stream(self.surround, surround).flatten(1)], dim=1)
        return decide_fp32(self.decision, feats)
