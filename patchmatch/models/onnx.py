"""ONNX export of the 2-channel models and ONNX Runtime inference on the CPU.

The exported graph takes what :class:`patchmatch.scoring.PatchScorer` feeds the model, stacked
pairs ``(B, 2, 64, 64)`` uint8 pixel values, and returns ``(B,)`` float32 scores: the input
normalisation is part of it, so the file scores patches on its own (any ONNX runtime, opset 17,
dynamic batch size). ONNX Runtime and the ``onnx`` package are optional
(``pip install 'patchmatch[onnx]'``); nothing else in patchmatch needs them.

ONNX Runtime's own convolution kernels (MLAS) score 2ch2stream in float32 faster than PyTorch's
eager path (``patchmatch bench``), so :class:`patchmatch.scoring.PatchScorer` uses it for fp32 on
the CPU whenever it is installed.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .registry import model_name

#: Models with a 2-channel input (the siamese models compute descriptors per patch instead).
ONNX_MODELS = ("2ch2stream", "2ch", "2chdeep")
OPSET = 17


class _PairsToScores(nn.Module):
    """uint8 (B, 2, 64, 64) → float32 (B,): the model with its input conversion."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.model(pairs).float()


def available() -> bool:
    """Whether onnxruntime and onnx are installed (without importing them)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def _quantized(model: nn.Module) -> bool:
    return any("_packed_params" in k or (isinstance(v, torch.Tensor) and v.is_quantized) for k, v in model.state_dict().items())


def _check_exportable(model: nn.Module) -> None:
    try:
        name = model_name(model)
    except KeyError as e:
        raise ValueError(f"ONNX export is implemented for {', '.join(ONNX_MODELS)}; {e.args[0]}") from None
    if name not in ONNX_MODELS:
        raise ValueError(f"ONNX export is implemented for {', '.join(ONNX_MODELS)}, not {name!r}.")
    if _quantized(model):
        raise ValueError("ONNX export takes the float model, not its int8 (quantised) version.")


def exportable(model: nn.Module) -> bool:
    """Whether :func:`export_onnx` takes this model (a float, not quantised, 2-channel model)."""
    try:
        _check_exportable(model)
    except ValueError:
        return False
    return True


def import_onnxruntime(purpose: str = "the ONNX Runtime backend"):
    try:
        import onnxruntime
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name in ("onnxruntime", "onnx"):
            raise ImportError(f"{purpose} needs onnxruntime and onnx: pip install 'patchmatch[onnx]'") from e
        # a broken install (missing shared library, ...)
        raise ImportError(f"onnxruntime is installed but fails to import ({e}); reinstall it") from e
    return onnxruntime


def export_onnx(model: nn.Module, out: str | os.PathLike | io.BytesIO, magnification: float | None = None) -> Path | io.BytesIO:
    """Exports a float 2-channel model (``2ch2stream``, ``2ch``, ``2chdeep``) to ONNX.

    Args:
        model: the model (any device; exported from a CPU float32 copy, not modified).
        out: file path (written atomically) or a binary buffer.
        magnification: the patch magnification the weights were trained at, written to the file's
            metadata (``metadata_props["patchmatch.magnification"]``) for whoever crops its patches.

    Returns:
        ``out`` (as a Path when a path was given).

    Raises:
        ValueError: a siamese, quantised or unregistered model.
        ImportError: the ``onnx`` package is missing (torch's exporter needs it).
    """
    _check_exportable(model)
    try:
        import onnx  # noqa: F401  (torch's exporter imports it)
    except ImportError as e:
        raise ImportError("ONNX export needs the onnx package: pip install 'patchmatch[onnx]'") from e
    import copy

    wrapped = _PairsToScores(copy.deepcopy(model).cpu().float().eval())
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(wrapped, (torch.zeros(2, 2, 64, 64, dtype=torch.uint8),), buffer, input_names=["pairs"],
                          output_names=["scores"], dynamic_axes={"pairs": {0: "batch"}, "scores": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)  # fmt: skip
    if magnification is not None:
        import onnx

        proto = onnx.load_from_string(buffer.getvalue())
        onnx.helper.set_model_props(proto, {"patchmatch.magnification": f"{magnification:g}"})
        buffer = io.BytesIO(proto.SerializeToString())
    if isinstance(out, io.BytesIO):
        out.write(buffer.getvalue())
        return out
    return write_atomic(out, buffer.getvalue())


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` through a temporary file beside it (never a partial file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_pairs() -> np.ndarray:
    """(8, 2, 64, 64) uint8 smooth patch pairs (half of them near-duplicates), fixed: the
    inputs on which an ONNX session is checked against PyTorch."""
    rng = np.random.default_rng(0)
    low = torch.from_numpy(rng.normal(size=(8, 2, 9, 9)).astype(np.float32))
    x = nn.functional.interpolate(low, size=(64, 64), mode="bicubic", align_corners=False)
    x[:4, 1] = x[:4, 0] + 0.05 * torch.from_numpy(rng.normal(size=(4, 64, 64)).astype(np.float32))
    return (x * 60 + 128).clamp(0, 255).to(torch.uint8).numpy()


def check_against_pytorch(model: nn.Module, run) -> float:
    """Scores :func:`check_pairs` with ``model`` (PyTorch, CPU) and ``run`` (pairs → scores, e.g.
    an ONNX Runtime session) and returns the largest absolute difference.

    Raises:
        ValueError: PyTorch's scores are NaN or infinite (e.g. weights of a diverged training run).
        RuntimeError: the scores differ by more than 1e-3 (relative to the largest score).
    """
    x = check_pairs()
    with torch.inference_mode():
        ref = model.eval()(torch.from_numpy(x)).float().numpy()
    if not np.isfinite(ref).all():
        raise ValueError("the model's scores are NaN or infinite on the check pairs (weights of a diverged training run?)")
    err = float(np.abs(np.asarray(run(x), dtype=np.float32) - ref).max())
    if not err <= 1e-3 * max(1.0, float(np.abs(ref).max())):
        raise RuntimeError(f"ONNX Runtime's scores differ from PyTorch's by {err:.2e} on the check pairs")
    return err


class OnnxRuntimeScorer:
    """ONNX Runtime sessions of a 2-channel model, checked against PyTorch when built.

    One single-threaded session per thread, each scoring its share of a batch at the same time
    (ONNX Runtime releases the GIL): faster than one multi-threaded session, because the first
    convolution (2 input channels) and the max pooling parallelise poorly inside one call.

    Args:
        model: float 2-channel model on the CPU (exported in memory; see :func:`export_onnx`).
        threads: sessions, one thread each (None: ``torch.get_num_threads()``). Threads do not
            spin between calls, so other work (keypoint search, patch cropping) keeps the cores.

    Call with (B, 2, 64, 64) uint8 numpy pairs → (B,) float32 numpy scores (batches of fewer
    than 16 pairs per session go to one session). Each session runs its share in calls of at most
    32 pairs, so that the first block's activations (2 × 96 × 28 × 28 floats per pair) stay in the
    core's cache.

    Raises:
        ImportError: onnxruntime or onnx missing, or onnxruntime failing to import.
        ValueError: not a float 2-channel model, or its PyTorch scores on :func:`check_pairs`
            are NaN or infinite (e.g. weights of a diverged training run).
        RuntimeError: the session's scores on :func:`check_pairs` differ from PyTorch's by more
            than 1e-3 (relative to the largest score).
    """

    #: fewest pairs per session for a batch to be split
    MIN_SHARE = 16
    #: most pairs per session call
    CHUNK = 32

    def __init__(self, model: nn.Module, threads: int | None = None):
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        data = export_onnx(model, io.BytesIO()).getvalue()
        count = max(1, int(threads or torch.get_num_threads()))
        self.sessions = [ort.InferenceSession(data, options, providers=["CPUExecutionProvider"]) for _ in range(count)]
        self._pool = None
        if count > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(count, thread_name_prefix="onnxruntime")
        self.check_error = check_against_pytorch(model, self)

    def __call__(self, pairs: np.ndarray) -> np.ndarray:
        pairs = np.ascontiguousarray(pairs, dtype=np.uint8)
        shares = min(len(self.sessions), len(pairs) // self.MIN_SHARE)
        if shares <= 1:
            return self._run(self.sessions[0], pairs)
        parts = np.array_split(pairs, shares)
        return np.concatenate(list(self._pool.map(self._run, self.sessions[:shares], parts)))

    def _run(self, session, pairs: np.ndarray) -> np.ndarray:
        parts = [session.run(None, {"pairs": pairs[i : i + self.CHUNK]})[0] for i in range(0, max(len(pairs), 1), self.CHUNK)]
        return np.concatenate(parts).astype(np.float32, copy=False)
