"""Device choice, made once at the edge (CLI or PatchScorer.load), and the CPU features it depends on."""

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
    """True on an x86-64 CPU whose PyTorch has the oneDNN quantised engine that the int8 models use."""
    engines = torch.backends.quantized.supported_engines
    return "x86" in engines and "onednn" in engines  # "x86" exists on x86 builds only


def int8_activation_bits() -> int:
    """The most activation bits this CPU's int8 convolutions take without overflow.

    8 where the CPU has AVX512-VNNI (so do AMX CPUs), which adds uint8 × int8 products straight
    into int32; 7 elsewhere, where the AVX2 int8 kernels add pairs of products in int16 and 8-bit
    activations can saturate. Only the opt-in 8-bit variant depends on it (the default, 7 bits,
    runs everywhere); tests inject a CPU by monkeypatching this function.
    """
    try:
        return 8 if torch.cpu._is_vnni_supported() else 7
    except (AttributeError, RuntimeError):  # a private helper of torch.cpu: absent → the safe choice
        return 7


def auto_precision(device: torch.device) -> str:
    """The float precision ``"auto"`` means on a device: fp16 autocast on CUDA GPUs, fp32 on the CPU.

    On the CPU ``PatchScorer.load`` prefers int8 when the weights have an int8 file (see
    :meth:`patchmatch.scoring.PatchScorer.load`); this is the precision without one.
    """
    return "fp16" if device.type == "cuda" else "fp32"
