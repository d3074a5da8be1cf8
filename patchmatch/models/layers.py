"""Building blocks shared by the patch-comparison models."""

from __future__ import annotations

import torch
from torch import nn


def conv_relu(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    """``C(cout, k, stride)`` followed by ReLU, no padding (the paper's notation)."""
    return [nn.Conv2d(cin, cout, k, stride=stride), nn.ReLU(inplace=True)]


#: Patches per chunk of a stream's first block in CPU inference (:func:`run_stream`).
FIRST_BLOCK_CHUNK = 32


def run_stream(stream: nn.Module, x: torch.Tensor, chunk: int = FIRST_BLOCK_CHUNK) -> torch.Tensor:
    """Runs a convolution stream; in CPU inference its first block is computed in cache-sized chunks.

    A stream that starts with ``Conv2d → ReLU → MaxPool2d`` (every 2-channel and siamese model
    of the paper but 2ch-deep) has its largest activation right after the first convolution
    (2ch2stream: 96×28×28 floats = 301 kB per pair and stream). On the CPU, without autograd,
    that block runs on ``chunk`` patches at a time (the activation stays in cache instead of
    a round trip through memory per operation) and the max pooling comes before the ReLU
    (they commute: ReLU is monotonic, so ``relu(maxpool(z)) == maxpool(relu(z))``), so the
    ReLU touches a quarter of the values. The result equals ``stream(x)`` (up to float
    rounding of the convolution kernels oneDNN picks per batch size; bit-identical here);
    the later layers run on the whole batch. Streams with hooks (calibration, FLOP counting)
    and anything else run as ``stream(x)``.

    Args:
        stream: the stream, usually an ``nn.Sequential``.
        x: (B, C, H, W) float input.
        chunk: patches per chunk of the first block.

    Returns:
        ``stream(x)``.
    """
    if (
        torch.is_grad_enabled()
        or torch.jit.is_tracing()  # ONNX export: one graph for any batch size
        or x.device.type != "cpu"
        or not isinstance(stream, nn.Sequential)
        or len(stream) < 3
        or not (isinstance(stream[0], nn.Conv2d) and isinstance(stream[1], nn.ReLU) and isinstance(stream[2], nn.MaxPool2d))
        or any(m._forward_hooks or m._forward_pre_hooks for m in stream.modules())
        or len(x) <= chunk
    ):
        return stream(x)
    conv, pool = stream[0], stream[2]
    first = torch.cat([torch.relu_(pool(conv(x[s : s + chunk]))) for s in range(0, len(x), chunk)])
    return stream[3:](first)


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
    # channels-last lets oneDNN pick its fast convolution kernels on the CPU; numerically the same model.
    return x.contiguous(memory_format=torch.channels_last)


def central_surround(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Splits (B, C, 64, 64) into the central 32×32 crop and the 2×2-average-pooled surround.

    Returns:
        ``(centre, surround)``, each (B, C, 32, 32).
    """
    if x.shape[-2:] != (64, 64):
        raise ValueError(f"central-surround models take 64×64 patches, got {tuple(x.shape[-2:])}.")
    return x[..., 16:48, 16:48], nn.functional.avg_pool2d(x, 2)


def normalized_central_surround(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``central_surround(normalize_patches(x))`` computed on the raw pixels, then normalised.

    The mean subtraction and the ``1/255`` scale are linear, so they commute with the crop and
    the 2×2 average pooling (equal up to float rounding, ~1e-7); pooling the 2-channel NCHW input
    before going channels-last avoids a slow channels-last pooling over 2 channels and the
    full-size normalised copy (5.0 → 2.8 ms per batch of 128 pairs on one thread).

    Args:
        x: (B, C, 64, 64) pixel values 0..255 (any real dtype).

    Returns:
        ``(centre, surround)``, each (B, C, 32, 32) float32, channels-last, zero-mean per patch
        (the mean of the whole 64×64 patch) and scaled by 1/255.
    """
    if x.shape[-2:] != (64, 64):
        raise ValueError(f"central-surround models take 64×64 patches, got {tuple(x.shape[-2:])}.")
    x = x.float()
    mean = x.mean(dim=(2, 3), keepdim=True)
    centre = (x[..., 16:48, 16:48] - mean).mul_(1.0 / 255.0)
    surround = (nn.functional.avg_pool2d(x, 2) - mean).mul_(1.0 / 255.0)
    return centre.contiguous(memory_format=torch.channels_last), surround.contiguous(memory_format=torch.channels_last)


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
