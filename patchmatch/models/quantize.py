"""int8 post-training quantisation of the 2-channel models' convolution streams (CPU).

The convolutions (all but ~3% of a pair's 81 MFLOP in 2ch2stream) run in int8 with PyTorch's
FX graph-mode static quantisation (oneDNN's kernels, :data:`QUANTIZED_ENGINE`): weights
per output channel, activations per tensor with ranges calibrated on real patch pairs. The input
normalisation stays float32 and the fully connected decision layers run in float64.

Activations come in two variants, both calibrated by ``patchmatch quantize`` and stored in one
file:

- **7 bits** (the default, :data:`DEFAULT_ACTIVATION_BITS`), ranges that minimise the squared
  quantisation error (PyTorch's ``HistogramObserver``). Products of 7-bit activations and int8
  weights never saturate the int16 pair sums of AVX2 int8 kernels, so every x86-64 CPU computes
  the same integers. The scores are the same on every x86-64 CPU because the model runs on one
  engine everywhere (oneDNN; PyTorch's ``x86`` engine would pick FBGEMM on CPUs without VNNI, whose
  requantisation rounds a few values differently) and its decision layers run in float64.
- **8 bits**, ranges from min/max over the calibration pairs: closer to float32, an opt-in for
  CPUs with AVX512-VNNI or AMX only (:func:`patchmatch.device.int8_activation_bits`); elsewhere
  the int16 sums saturate.

The model card gives the score difference to float32 of each variant.

An int8 file is tied to the float32 checkpoint it was made from (its SHA-256 is stored and
checked on load) and holds each variant's quantised streams' state::

    {"format": "patchmatch-int8", "version": 2, "model": "2ch2stream", "source_sha256": "...",
     "streams": ["central", "surround"], "variants": {"8": {...}, "7": {...}}, "meta": {...}}

(version 1: one ``"state_dict"``, its bits in ``meta["calibration"]["activation_bits"]``.)
Build one with ``patchmatch quantize WEIGHTS --data SET`` (:func:`quantize_int8`,
:func:`save_int8`); :class:`patchmatch.scoring.PatchScorer` loads it with ``precision="int8"``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import numbers
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import device
from .checkpoint import CheckpointError, atomic_save, load_checkpoint, unreadable
from .registry import model_name

__all__ = ["INT8_FORMAT", "ACTIVATION_BITS", "int8_path", "quantizable_streams", "quantize_int8", "save_int8", "load_int8",
           "int8_variants", "check_activation_bits", "file_sha256", "DEFAULT_ACTIVATION_BITS"]  # fmt: skip

INT8_FORMAT = "patchmatch-int8"
INT8_VERSION = 2
#: The activation variants, most precise first (see the module docstring).
ACTIVATION_BITS = (8, 7)
#: The variant loaded unless another is asked for: the one every x86-64 CPU computes identically.
DEFAULT_ACTIVATION_BITS = 7
#: PyTorch quantised engine the int8 models are packed for on every CPU: one engine, the same scores.
QUANTIZED_ENGINE = "onednn"
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


def check_activation_bits(bits: Any) -> int:
    """``bits`` if it names an activation variant (an integer in :data:`ACTIVATION_BITS`), else ValueError."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or int(bits) not in ACTIVATION_BITS:
        raise ValueError(f"activation_bits must be one of {ACTIVATION_BITS}, got {bits!r}")
    return int(bits)


def _activation_observer(bits: int):
    from torch.ao.quantization import HistogramObserver, MinMaxObserver

    # The histogram observer clips rare large activations: on 7 bits that costs less than coarser
    # steps would, on 8 bits more (each the closer to float32 on the validation sets; model card).
    if check_activation_bits(bits) == 8:
        return MinMaxObserver.with_args(reduce_range=False)
    return HistogramObserver.with_args(reduce_range=True)


@contextlib.contextmanager
def _engine():
    """Packs quantised weights for :data:`QUANTIZED_ENGINE` while it lasts: PyTorch packs them for
    its global engine, which is restored afterwards (the packed weights keep their engine)."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = QUANTIZED_ENGINE
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


class Float64Decision(nn.Sequential):
    """The decision layers of an int8 model, computed in float64 and returned as float32.

    float32 matrix products differ in their last bit between CPUs (the BLAS kernels sum in an order
    that depends on the vector width); rounded from float64, the scores are the same on every CPU.
    Input (B, F) float, output (B, 1) float32.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.double()).float()


def _float64_decision(decision: nn.Module) -> Float64Decision:
    layers = list(decision) if isinstance(decision, nn.Sequential) else [decision]
    return Float64Decision(*layers).double()


def _convert(model: nn.Module, inputs: dict[str, torch.Tensor], bits: int = 8) -> nn.Module:
    """A copy of ``model`` whose streams are quantised with observers run over ``inputs`` (call under :func:`_engine`)."""
    from torch.ao.quantization import PerChannelMinMaxObserver, QConfig, QConfigMapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    qconfig = QConfig(
        activation=_activation_observer(bits),
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
    out.decision = _float64_decision(out.decision)
    out.activation_bits = bits
    return out.eval()


def quantize_int8(model: nn.Module, calibration: torch.Tensor, activation_bits: int = DEFAULT_ACTIVATION_BITS) -> nn.Module:
    """Quantises the model's convolution streams to int8, calibrated on real patch pairs.

    Args:
        model: a float32 ``2ch2stream``, ``2ch`` or ``2chdeep`` (not modified).
        calibration: (B, 2, 64, 64) pixel values 0..255 (uint8 or float) of representative
            pairs, positives and negatives (a few thousand).
        activation_bits: 7 (default; L2-optimal ranges, the same scores on every x86-64 CPU) or 8
            (min/max ranges; runs correctly on CPUs with AVX512-VNNI or AMX only), see the module docstring.

    Returns:
        A CPU copy of the model whose streams compute in int8 (its ``activation_bits`` attribute
        says which variant); same input and output.

    Raises:
        ValueError: the model has no int8 path, ``calibration`` is not (B, 2, 64, 64), or
            ``activation_bits`` is not 8 or 7.
    """
    if calibration.ndim != 4 or calibration.shape[1:] != (2, 64, 64) or len(calibration) < 2:
        raise ValueError(f"calibration must be (B >= 2, 2, 64, 64), got {tuple(calibration.shape)}")
    quantizable_streams(model)
    check_activation_bits(activation_bits)
    fp32 = copy.deepcopy(model).cpu().float().eval()
    with _engine():
        return _convert(fp32, _stream_inputs(fp32, calibration.float().cpu()), activation_bits)


def _stream_state(qmodel: nn.Module) -> dict[str, Any]:
    """The entries of a quantised model's state that belong to its int8 streams (what an int8 file holds)."""
    streams = quantizable_streams(qmodel)
    return {k: v for k, v in qmodel.state_dict().items() if k.split(".")[0] in streams}


def save_int8(
    path: str | os.PathLike, qmodels: nn.Module | Sequence[nn.Module], source: str | os.PathLike, meta: dict[str, Any] | None = None
) -> Path:
    """Writes quantised models (:func:`quantize_int8`; one per activation variant) atomically, tied
    to their float32 checkpoint ``source``.

    Raises:
        ValueError: no model, two of one variant, or models of different networks.
    """
    path = Path(path)
    qmodels = [qmodels] if isinstance(qmodels, nn.Module) else list(qmodels)
    bits = [getattr(q, "activation_bits", None) for q in qmodels]
    if not qmodels or None in bits or len(set(bits)) != len(bits):
        raise ValueError(f"save_int8 takes quantize_int8's models, one per activation variant; got bits {bits}")
    names = {model_name(q) for q in qmodels}
    if len(names) != 1:
        raise ValueError(f"the int8 models are of different networks: {sorted(names)}")
    payload = {
        "format": INT8_FORMAT,
        "version": INT8_VERSION,
        "model": names.pop(),
        "source_sha256": file_sha256(source),
        "streams": list(quantizable_streams(qmodels[0])),
        "variants": {str(b): _stream_state(q) for b, q in zip(bits, qmodels)},
        "meta": dict(meta or {}),
    }
    return atomic_save(payload, path)


def _read_int8(path: str | os.PathLike, weights: str | os.PathLike) -> tuple[dict, dict, dict[int, dict]]:
    """``(payload, meta, {activation bits: state})`` of an int8 file, checked (see :func:`load_int8`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no int8 weights; make them with `patchmatch quantize {weights} --data SET`.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notices of quantised tensor storage
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise unreadable(path, e, "int8 file") from e
    if not isinstance(payload, dict) or payload.get("format") != INT8_FORMAT:
        raise CheckpointError(f"{path}: not a patchmatch int8 file (no '{INT8_FORMAT}' header).")
    if payload.get("source_sha256") != file_sha256(weights):
        raise CheckpointError(f"{path}: made from other weights than {weights}; run `patchmatch quantize {weights} --data SET` again.")
    meta = dict(payload.get("meta") or {})
    if "variants" in payload:
        variants = {int(b): state for b, state in payload["variants"].items()}
    else:  # version 1: one variant
        variants = {int(meta.get("calibration", {}).get("activation_bits", 7)): payload.get("state_dict", {})}
    return payload, meta, variants


def int8_variants(path: str | os.PathLike, weights: str | os.PathLike) -> tuple[int, ...]:
    """The activation variants (bits, most precise first) of the int8 file ``path`` of ``weights``.

    Raises:
        CheckpointError: as :func:`load_int8`.
    """
    return tuple(sorted(_read_int8(path, weights)[2], reverse=True))


def _choose_variant(path: Path, weights: str | os.PathLike, variants: dict[int, dict], asked: int | None) -> int:
    """The activation variant :func:`load_int8` loads (see there for the errors)."""
    if not variants:
        raise CheckpointError(f"{path}: holds no int8 variant; run `patchmatch quantize {weights} --data SET` again.")
    bits = DEFAULT_ACTIVATION_BITS if asked is None else asked
    if bits not in variants:
        raise CheckpointError(f"{path}: no {bits}-bit activation variant (it has {sorted(variants, reverse=True)}); "
                              f"`patchmatch quantize {weights} --data SET` writes both.")  # fmt: skip
    if bits > device.int8_activation_bits():
        raise ValueError(f"activation_bits={bits}: this CPU's int8 kernels take at most {device.int8_activation_bits()}-bit activations "
                         f"(8 needs AVX512-VNNI or AMX; without them int16 sums can overflow); use the default, 7.")  # fmt: skip
    return bits


def load_int8(
    path: str | os.PathLike, weights: str | os.PathLike, model: nn.Module | None = None, activation_bits: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Loads the int8 model of the float32 checkpoint ``weights`` from ``path``.

    ``model``: the checkpoint already loaded by :func:`load_checkpoint` (it is not modified);
    read from ``weights`` when None. ``activation_bits``: the variant to load, 7 or 8; None: 7
    (:data:`DEFAULT_ACTIVATION_BITS`, the same scores on every x86-64 CPU).

    Returns:
        ``(model, meta)``: the model (CPU, eval) with int8 streams and float64 decision layers
        (float32 output), and the int8 file's metadata with ``"activation_bits"``, the variant loaded.

    Raises:
        CheckpointError: missing or unreadable file, not an int8 file, made from other weights,
            without the variant asked for, or with a variant that lacks entries.
        ValueError: ``activation_bits`` is not None, 8 or 7, or is 8 on a CPU without AVX512-VNNI
            (:func:`patchmatch.device.int8_activation_bits`).
    """
    asked = None if activation_bits is None else check_activation_bits(activation_bits)
    payload, meta, variants = _read_int8(path, weights)
    bits = _choose_variant(Path(path), weights, variants, asked)
    if model is None:
        model, _ = load_checkpoint(weights)
    state = variants[bits]
    with _engine():
        # The quantised graph's structure does not depend on the calibration: build it from any
        # input, then load the stored scales, zero points and int8 weights (packed for the engine).
        skeleton = _convert(model, _stream_inputs(model, torch.full((2, 2, 64, 64), 128.0)), 8)
        missing = [k for k in _stream_state(skeleton) if k not in state]
        if missing:  # the skeleton's placeholder scales would score silently wrong
            raise CheckpointError(f"{path}: the {bits}-bit variant lacks {len(missing)} entries (e.g. {missing[0]!r}); run "
                                  f"`patchmatch quantize {weights} --data SET` again.")  # fmt: skip
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                skeleton.load_state_dict({**skeleton.state_dict(), **state}, strict=True)
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"{path}: int8 state does not fit {payload.get('model')!r}: {e}") from e
    skeleton.activation_bits = bits
    return skeleton.eval(), {**meta, "activation_bits": bits}
