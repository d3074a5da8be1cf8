"""Throughput measurement: the machine's dense matrix-multiply FLOP/s and the scorer's pairs/s.

The ratio ``pairs/s × FLOP per pair ÷ GEMM FLOP/s`` says how close scoring runs to the
hardware's dense-compute bound (1.0 = as fast as a large fp32 GEMM).
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .scoring import PatchScorer


def flops_per_pair(model: nn.Module) -> int:
    """Floating-point operations (2 × multiply-adds) of one forward pass of a pair model,
    counted over its convolutions and linear layers (pooling, ReLU and normalisation excluded).
    2ch2stream: 81.2 MFLOP."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2 * out.numel() * k
        elif isinstance(mod, nn.Linear):
            total += 2 * out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 2, 64, 64, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return total


def gemm_flops(device: torch.device, n: int = 2048, dtype: torch.dtype = torch.float32, seconds: float = 1.0) -> float:
    """Measured dense matrix-multiply throughput (FLOP/s) of ``n × n`` products."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    _sync(device)
    return reps * 2 * n**3 / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_inputs(num_pairs: int = 2048, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The random inputs :func:`time_scorer` scores: (1024, 64, 64) uint8 patches, (num_pairs, 2) int64 pairs."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (1024, 64, 64), dtype=np.uint8), rng.integers(0, 1024, (num_pairs, 2))


def time_scorer(scorer: PatchScorer, num_pairs: int = 2048, seconds: float = 2.0, seed: int = 0) -> tuple[float, np.ndarray]:
    """Pairs per second of ``scorer.score_pairs`` on random patches (throughput does not depend on content).

    Returns:
        ``(pairs_per_second, scores of the first pass)``.
    """
    patches, pairs = bench_inputs(num_pairs, seed)
    scores = scorer.score_pairs(patches, patches, pairs)  # warm-up and reference
    done, t0 = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - t0 < seconds:
        scorer.score_pairs(patches, patches, pairs)
        done += num_pairs
    return done / (time.perf_counter() - t0), scores


def machine() -> str:
    """The machine a benchmark ran on, for the line under its table: CPU model, core count, torch and
    pycolmap versions."""
    import pycolmap

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores; torch {torch.__version__}, pycolmap {pycolmap.__version__}"
