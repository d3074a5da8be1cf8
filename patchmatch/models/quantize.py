"""int8 post-training quantisation of the 2-channel models' convolution streams (CPU).

The convolutions (all but ~3% of a pair's 81 MFLOP in 2ch2stream) run in int8 with PyTorch's
FX graph-mode static quantisation (x86 backend: FBGEMM/oneDNN, VNNI or AMX-INT8 where the CPU
has them): weights per output channel, activations per tensor with ranges calibrated on real
patch pairs. The input normalisation and the fully connected decision layers stay float32.

An int8 file is tied to the float32 checkpoint it was made from (its SHA-256 is stored and
checked on load) and holds the quantised streams' state::

    {"format": "patchmatch-int8", "version": 1, "model": "2ch2stream", "source_sha256": "...",
     "streams": ["central", "surround"], "input_shapes": {...}, "state_dict": {...}, "meta": {...}}

Build one with ``patchmatch quantize WEIGHTS --data SET`` (:func:`quantize_int8`,
:func:`save_int8`); :class:`patchmatch.scoring.PatchScorer` loads it with ``precision="int8"``.
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import CheckpointError, atomic_save, load_checkpoint
from .registry import model_name

__all__ = ["INT8_FORMAT", "int8_path", "quantizable_streams", "quantize_int8", "save_int8", "load_int8", "file_sha256"]

INT8_FORMAT = "patchmatch-int8"
INT8_VERSION = 1
#: The conv streams of each quantisable model (attribute names; each is an nn.Sequential).
STREAMS = {"2ch2stream": ("central", "surround"), "2ch": ("features",), "2chdeep": ("features",)}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def int8_path(weights: str | os.PathLike) -> Path:
    """Where the int8 file of a checkpoint lives: ``W.pt`` → ``W.int8.pt`` beside it."""
    weights = Path(weights)
    return weights.with_name(weights.stem + ".int8.pt")


def quantizable_streams(model: nn.Module) -> tuple[str, ...]:
    """Names of the model's convolution streams that int8 quantisation replaces.

    Raises:
        ValueError: the model has no int8 path (the siamese models: their descriptors are
            computed once per patch, so their per-pair cost is the small decision network).
    """
    name = model_name(model)
    if name not in STREAMS:
        raise ValueError(f"int8 quantisation is implemented for {', '.join(STREAMS)}, not {name!r}")
    return STREAMS[name]


def _stream_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The inputs each stream receives when the model scores ``x`` (forward hooks)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [getattr(model, s).register_forward_pre_hook(lambda m, a, s=s: seen.__setitem__(s, a[0].detach()))
             for s in quantizable_streams(model)]  # fmt: skip
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _convert(model: nn.Module, inputs: dict[str, torch.Tensor], reduce_range: bool = True) -> nn.Module:
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver, QConfig, QConfigMapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    # Activation ranges from min/max over the calibration pairs, not the x86 default's histogram
    # (which clips rare large activations): on temple-ring, a scene unlike the calibration
    # data, the histogram observer cost +3.5 FPR95 points against float32, min/max -1.8; on
    # entry-P10 both are within 0.15 points. Weights per output channel, symmetric.
    qconfig = QConfig(
        activation=MinMaxObserver.with_args(reduce_range=reduce_range),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
    )
    mapping = QConfigMapping().set_global(qconfig)
    out = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantisation's deprecation notices
        for s, inp in inputs.items():
            prepared = prepare_fx(getattr(out, s), mapping, (inp[:2],))
            with torch.inference_mode():
                for chunk in inp.split(256):
                    prepared(chunk)
            setattr(out, s, convert_fx(prepared))
    return out.eval()


def quantize_int8(model: nn.Module, calibration: torch.Tensor, reduce_range: bool = True) -> nn.Module:
    """Quantises the model's convolution streams to int8, calibrated on real patch pairs.

    Args:
        model: a float32 ``2ch2stream``, ``2ch`` or ``2chdeep`` (not modified).
        calibration: (B, 2, 64, 64) pixel values 0..255 (uint8 or float) of representative
            pairs, positives and negatives (a few thousand).
        reduce_range: activations on 7 bits (PyTorch's x86 default, safe from the int16
            overflow of CPUs without VNNI); False uses all 8 bits (CPUs with VNNI / AMX-INT8).

    Returns:
        A CPU copy of the model whose streams compute in int8; same input and output.

    Raises:
        ValueError: the model has no int8 path, or ``calibration`` is not (B, 2, 64, 64).
    """
    if calibration.ndim != 4 or calibration.shape[1:] != (2, 64, 64) or len(calibration) < 2:
        raise ValueError(f"calibration must be (B >= 2, 2, 64, 64), got {tuple(calibration.shape)}")
    quantizable_streams(model)
    fp32 = copy.deepcopy(model).cpu().float().eval()
    return _convert(fp32, _stream_inputs(fp32, calibration.float().cpu()), reduce_range)


def save_int8(path: str | os.PathLike, qmodel: nn.Module, source: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Writes a quantised model (atomically) tied to its float32 checkpoint ``source``."""
    path = Path(path)
    name = model_name(qmodel)
    streams = quantizable_streams(qmodel)
    state = {k: v for k, v in qmodel.state_dict().items() if k.split(".")[0] in streams}
    payload = {
        "format": INT8_FORMAT,
        "version": INT8_VERSION,
        "model": name,
        "source_sha256": file_sha256(source),
        "streams": list(streams),
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    return atomic_save(payload, path)


def load_int8(
    path: str | os.PathLike, weights: str | os.PathLike, model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Loads the int8 model of the float32 checkpoint ``weights`` from ``path``.

    ``model``: the checkpoint already loaded by :func:`load_checkpoint` (it is not modified);
    read from ``weights`` when None.

    Returns:
        ``(model, meta)``: the model (CPU, eval) with int8 streams and float32 decision layers,
        and the int8 file's metadata.

    Raises:
        CheckpointError: missing or unreadable file, not an int8 file, or made from other weights.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no int8 weights; make them with `patchmatch quantize {weights} --data SET`.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notices of quantised tensor storage
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: not a readable int8 file ({type(e).__name__}: {e}).") from e
    if not isinstance(payload, dict) or payload.get("format") != INT8_FORMAT:
        raise CheckpointError(f"{path}: not a patchmatch int8 file (no '{INT8_FORMAT}' header).")
    if payload.get("source_sha256") != file_sha256(weights):
        raise CheckpointError(f"{path}: made from other weights than {weights}; run `patchmatch quantize` again.")
    if model is None:
        model, _ = load_checkpoint(weights)
    # The quantised graph's structure does not depend on the calibration: build it from any input,
    # then load the stored scales, zero points and int8 weights.
    skeleton = _convert(model, _stream_inputs(model, torch.full((2, 2, 64, 64), 128.0)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            skeleton.load_state_dict({**skeleton.state_dict(), **payload["state_dict"]}, strict=True)
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{path}: int8 state does not fit {payload.get('model')!r}: {e}") from e
    return skeleton.eval(), payload.get("meta", {})
