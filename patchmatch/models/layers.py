"""Building blocks shared by the patch-comparison models."""

from __future__ import annotations

import torch
from torch import nn


def conv_relu(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    """``C(cout, k, stride)`` followed by ReLU, no padding (the paper's notation)."""
    return [nn.Conv2d(cin, cout, k, stride=stride), nn.ReLU(inplace=True)]


def normalize_patches(x: torch.Tensor) -> torch.Tensor:
    """Input normalisation used by every model.

    Args:
        x: (B, C, 64, 64) float pixel values in [0, 255].

    Returns:
        (B, C, 64, 64) float32 in channels-last memory format: ``x / 255`` with each patch's
        (and channel's) mean subtracted.
    """
    x = x.float() * (1.0 / 255.0)
    x = x - x.mean(dim=(2, 3), keepdim=True)
    # channels-last lets oneDNN pick its fast convolution kernels on CPU (measured 2-3x for
    # 2ch2stream inference and 1.6x for training on 2 cores); numerically the same model.
    return x.contiguous(memory_format=torch.channels_last)


def central_surround(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Splits (B, C, 64, 64) into the central 32×32 crop and the 2×2-average-pooled surround.

    Returns:
        ``(centre, surround)``, each (B, C, 32, 32).
    """
    if x.shape[-2:] != (64, 64):
        raise ValueError(f"central-surround models take 64×64 patches, got {tuple(x.shape[-2:])}.")
    return x[..., 16:48, 16:48], nn.functional.avg_pool2d(x, 2)


def he_init(module: nn.Module) -> None:
    """He (Kaiming) initialisation of convolutions and linear layers, biases zero."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def decide_fp32(decision: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Runs the fully connected decision layers in float32 even under low-precision autocast.

    The convolutions carry almost all the cost; keeping the last layers in float32 keeps the
    scores fine-grained (a bfloat16 output has 8 bits of mantissa, which makes ties among the
    candidates of a keypoint common). Returns (B,) float32.
    """
    with torch.autocast(features.device.type, enabled=False):
        return decision(features.float()).squeeze(1)
