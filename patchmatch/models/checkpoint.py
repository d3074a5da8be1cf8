"""Checkpoints: one file with the model name, its config, the input normalisation and the weights.

Loaded with ``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .registry import MODELS, build_model, model_name

FORMAT = "patchmatch-checkpoint"
VERSION = 1
#: Description of the input normalisation every model applies inside ``forward``.
NORMALIZATION = {"input": "uint8 pixel values as float 0..255", "scale": 1.0 / 255.0, "subtract": "per-patch mean"}


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not fit its model; the message names the file."""


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Writes a model checkpoint (atomically: a temporary file renamed into place).

    Args:
        path: output file (``.pt``).
        model: a registered model.
        meta: JSON-like metadata (training data, command, FPR95, ...).
        half: store floating-point weights as float16 (half the size; loaded back as float32).

    Returns:
        The path written.
    """
    path = Path(path)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_name(model),
        "config": dataclasses.asdict(model.config),
        "normalization": dict(NORMALIZATION),
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    return atomic_save(payload, path)


def atomic_save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file renamed into place (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write or rename leaves nothing behind
    return path


def unreadable(path: Path, error: Exception, what: str) -> CheckpointError:
    """The one-line error for a file ``torch.load`` could not read (``what``: "checkpoint", "int8 file")."""
    if type(error).__name__ in ("UnpicklingError", "KeyError"):  # torch's text advises weights_only=False: never for us
        return CheckpointError(f"{path}: not a patchmatch {what} (not a torch file of plain tensors).")
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    first = first if len(first) <= 120 else first[:117] + "..."
    return CheckpointError(f"{path}: not a readable {what} ({type(error).__name__}: {first}).")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Loads a checkpoint written by :func:`save_checkpoint`.

    Returns:
        ``(model, meta)``: the model in eval mode with float32 weights, and the metadata.

    Raises:
        CheckpointError: missing or unreadable file, not a patchmatch checkpoint, unknown model,
            or weights that do not fit the model (names or shapes).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a checkpoint file.")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notices about quantised tensors in int8 files
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise unreadable(path, e, "checkpoint") from e
    if isinstance(payload, dict) and payload.get("format") == "patchmatch-int8":
        raise CheckpointError(f"{path}: an int8 inference model (made by `patchmatch quantize`), not a checkpoint; "
                              "use the float checkpoint it was made from (W.pt beside W.int8.pt)")  # fmt: skip
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a patchmatch checkpoint (no '{FORMAT}' header).")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']} is newer than supported ({VERSION}).")
    name = payload.get("model")
    if name not in MODELS:
        raise CheckpointError(f"{path}: unknown model {name!r}; available: {', '.join(MODELS)}.")
    try:
        model = build_model(name, **payload.get("config", {}))
    except TypeError as e:
        raise CheckpointError(f"{path}: config does not fit model {name!r}: {e}") from e
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit model {name!r}: {e}") from e
    return model.to(map_location).eval(), payload.get("meta", {})


def trained_magnification(meta: dict[str, Any], where: str | os.PathLike = "the checkpoint") -> float:
    """The patch magnification (patch side / keypoint size, :mod:`patchmatch.patches`) weights were trained at.

    Args:
        meta: the checkpoint's metadata (:func:`load_checkpoint`); ``meta["magnification"]`` is written
            by ``patchmatch train``. Checkpoints without it are at :data:`patchmatch.patches.MAGNIFICATION`.
        where: the checkpoint's path, for the error message.

    Raises:
        ValueError: the recorded value is not a number in [1, 32] (``where`` named).
    """
    from ..patches import MAGNIFICATION, check_magnification

    value = meta.get("magnification")
    try:
        return MAGNIFICATION if value is None else check_magnification(value)
    except ValueError as e:
        raise ValueError(f"{where}: metadata: {e}") from None
