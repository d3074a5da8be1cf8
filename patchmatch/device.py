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
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA device requested but torch.cuda.is_available() is False (CPU-only torch build?).")
    return device
