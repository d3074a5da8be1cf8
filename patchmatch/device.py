"""Device choice, made once at the edge (CLI or PatchScorer.load)."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Returns ``device``, or CUDA when available and CPU otherwise when ``device`` is None.

    Raises:
        ValueError: CUDA was asked for but is not available.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or auto") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA device requested but torch.cuda.is_available() is False (CPU-only torch build?).")
    return device


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AMX-BF16 or AVX512-BF16; Linux /proc/cpuinfo).

    Elsewhere oneDNN emulates bfloat16, which is slower than float32.
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        pass
    return False


def cpu_supports_int8() -> bool:
    """True when PyTorch has the x86 quantised engine (FBGEMM/oneDNN) that the int8 models use."""
    return "x86" in torch.backends.quantized.supported_engines


def int8_activation_bits() -> int:
    """Activation bits the CPU's int8 convolutions take without overflow: 8 where it has AVX512-VNNI
    (so do AMX CPUs), which adds uint8 × int8 products straight into int32; 7 elsewhere, where
    FBGEMM's AVX2 kernels add pairs of products in int16 and 8-bit activations can saturate
    (PyTorch's ``reduce_range``; its oneDNN default asks for VNNI the same way)."""
    try:
        return 8 if torch.cpu._is_vnni_supported() else 7
    except (AttributeError, RuntimeError):  # a private helper of torch.cpu: absent → the safe choice
        return 7


def auto_precision(device: torch.device) -> str:
    """Fastest inference precision of a device: fp16 on CUDA GPUs, bf16 on CPUs with native
    bfloat16, fp32 otherwise.

    On an H200 (`pipelines/gpu_bench.sh`, batch 8192) fp16 autocast scored 517k pairs/s against
    bf16's 390k (torch.compile at batch 32768: 1.26 M against 0.69 M), and closer to fp32 (largest
    score difference 0.01 against 0.09).
    """
    if device.type == "cuda":
        return "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
