"""PatchScorer: batched similarity scores of patch pairs with a patch-comparison network."""

from __future__ import annotations

import logging
import os
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .device import auto_precision, cpu_supports_int8, int8_activation_bits, resolve_device
from .models import CheckpointError, load_checkpoint

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
BACKENDS = ("auto", "torch", "onnxruntime")


def tta_forms(tta: str) -> list[tuple[bool, int, bool]]:
    """The forms of a pair a test-time augmentation averages the network over, the identity first.

    Args:
        tta: ``"none"``, ``"swap"`` (the pair in both orders), ``"rot90"`` (both patches turned together by 0, 90,
            180, 270 degrees) or ``"dihedral"`` (those turns and their left-right mirror images).

    Returns:
        ``(swap the two patches, quarter turns counter-clockwise, mirror left-right)`` per form: 1, 2, 4 or 8.

    Raises:
        ValueError: an unknown ``tta``.
    """
    if tta == "swap":
        return [(False, 0, False), (True, 0, False)]
    if tta not in ("none", "rot90", "dihedral"):
        raise ValueError(f"tta must be one of ('none', 'swap', 'rot90', 'dihedral'), got {tta!r}.")
    turns = range(4) if tta != "none" else range(1)
    return [(False, k, mirror) for k in turns for mirror in ((False, True) if tta == "dihedral" else (False,))]


#: Test-time augmentations (``PatchScorer(tta=...)``) and the forward passes each costs per pair.
TTA = {name: len(tta_forms(name)) for name in ("none", "swap", "rot90", "dihedral")}
#: Default pairs per forward pass: on 2 CPU cores 128 is the fastest measured (int8: 11,138
#: pairs/s at 128, 7,260 at 512; fp32 2,681 and 2,246; ``patchmatch bench``); GPUs need large batches.
CPU_BATCH = 128
GPU_BATCH = 8192
#: File name of the weights shipped inside the package (``patchmatch/weights/``).
SHIPPED_WEIGHTS = "2ch2stream.pt"


def shipped_weights_path() -> Path:
    """Path of the checkpoint shipped with the package.

    Raises:
        FileNotFoundError: the package was installed without its weights.
    """
    path = Path(str(resources.files("patchmatch") / "weights" / SHIPPED_WEIGHTS))
    if not path.is_file():
        raise FileNotFoundError(f"Shipped weights {path} are missing; reinstall patchmatch or pass weights=PATH.")
    return path


def winograd_applies(model: nn.Module, device: torch.device) -> bool:
    """Whether :mod:`patchmatch.models.winograd` can score ``model`` in fp32 on ``device`` (a 2ch2stream on the CPU)."""
    from .models.twochannel import TwoChannel2Stream

    return device.type == "cpu" and isinstance(model, TwoChannel2Stream)


def describe_scorer(scorer: "PatchScorer") -> str:
    """One line naming how a scorer computes: e.g. ``"2ch2stream.pt, int8 on cpu (torch)"``."""
    name = Path(scorer.meta.get("path", "")).name or type(scorer.model).__name__
    how = scorer.backend + (", Winograd" if scorer.winograd else "") + (", compiled" if scorer.compiled else "")
    how += f", test-time augmentation {scorer.tta} ({TTA[scorer.tta]} passes)" if scorer.tta != "none" else ""
    bits = scorer.activation_bits
    precision = f"{scorer.precision} ({bits}-bit activations)" if bits else scorer.precision
    return f"{name}, {precision} on {scorer.device.type} ({how}), patches at magnification {scorer.magnification:g}"


def _check_patches(p: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(p)
    if p.ndim != 3 or p.shape[1:] != (64, 64):
        raise ValueError(f"{name} must be (N, 64, 64) patches, got shape {p.shape}.")
    if p.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 pixel values, got {p.dtype}.")
    return p


def _tta_variants(p0: np.ndarray, p1: np.ndarray, pairs: np.ndarray, tta: str):
    """The transformed copies of ``(p0, p1, pairs)`` that :class:`PatchScorer` averages over, the identity excluded:
    yields ``(patches0, patches1, pairs)``; ``swap`` exchanges the two sides, the others rotate (counter-clockwise,
    by 90° steps) and mirror (left-right) every patch of both sides alike."""
    for swap, turns, mirror in tta_forms(tta)[1:]:
        a, b, ab = (p1, p0, pairs[:, ::-1]) if swap else (p0, p1, pairs)
        a, b = np.rot90(a, turns, axes=(1, 2)), np.rot90(b, turns, axes=(1, 2))
        if mirror:
            a, b = a[:, :, ::-1], b[:, :, ::-1]
        yield np.ascontiguousarray(a), np.ascontiguousarray(b), np.ascontiguousarray(ab)


class PatchScorer:
    """Scores pairs of 64×64 grayscale patches with a patch-comparison network.

    Scores are the network's raw outputs (unbounded float32), higher = more similar.

    Args:
        model: a patchmatch model (see :mod:`patchmatch.models`).
        device: torch device; None = CUDA when available, else CPU. On CUDA the scorer turns on
            ``torch.backends.cudnn.benchmark`` (process-wide; batches have one shape).
        batch_size: pairs per forward pass (None: 128 on CPU, 8192 on GPU).
        meta: checkpoint metadata, kept for reporting.
        precision: ``"fp32"``, ``"bf16"`` (autocast; fast on CPUs with AMX/AVX512-BF16 and on
            GPUs), ``"fp16"`` (autocast, GPU only), ``"int8"`` (CPU; ``model`` must already be
            quantised, see :meth:`load` and :mod:`patchmatch.models.quantize`) or ``"auto"`` (the
            fastest float precision the device computes natively, see
            :func:`patchmatch.device.auto_precision`). Lower precision changes scores slightly;
            the FPR95 change is measured in the model card.
        compile: run the float 2-channel model through ``torch.compile`` (inductor, weights
            frozen; one static batch shape, the last batch padded): measured fp32 at batch 128
            3,117 pairs/s against 2,681 eager on 2 cores (bf16: 10,623 against 5,780), after a few seconds of compilation on
            the first call. Needs a C++ compiler on CPU.
        winograd: score 2ch2stream in fp32 on the CPU with its 3×3 convolutions computed by
            Winograd's minimal filtering (:mod:`patchmatch.models.winograd`; 2.4× fewer
            multiply-adds, scores equal up to float32 rounding, ~1e-5). ``None`` (default): on
            wherever it applies (CPU, fp32, a 2ch2stream, the torch backend, not compiled);
            ``False``: the plain model.
            The scorer then holds transformed copies of the 3×3 filters: after changing the
            model's weights, build a new scorer.
        backend: ``"onnxruntime"``: the float 2-channel model exported to ONNX and run by ONNX
            Runtime on the CPU in float32 (:mod:`patchmatch.models.onnx`; checked against
            PyTorch when built; needs ``pip install 'patchmatch[onnx]'``); ``"torch"``: PyTorch;
            ``"auto"`` (default): ONNX Runtime where it applies (fp32 on the CPU, a float
            2-channel model, not compiled, no ``winograd=True``) and is installed, else PyTorch
            (also, with a warning, when ONNX Runtime fails to import or its check; measured
            on 2 cores for 2ch2stream: ONNX Runtime ~3,000-3,800 pairs/s, PyTorch with Winograd
            ~2,600-3,300, plain ~2,200-2,700; ``patchmatch bench``). Like Winograd, the ONNX
            session holds a copy of the weights: after changing the model's weights, build a
            new scorer.
        tta: test-time augmentation; the score is the mean of the network's scores over
            transformed copies of each pair (the transforms of training's augmentation, so the
            network has seen them): ``"none"`` (default, one pass), ``"swap"`` (the pair and
            the pair in the other order, 2 passes), ``"rot90"`` (both patches rotated together by
            0, 90, 180 and 270 degrees, 4 passes), ``"dihedral"`` (those rotations and their mirror
            images, 8 passes). Measured with the shipped weights (bf16, every pair of the
            benchmark's sets; model card, "Test-time augmentation"): FPR95 on oriented patches and
            random negatives, none / dihedral, entry-P10 0.65 / 0.55 %, temple-ring 64.6 /
            36.1 %, validation 1.06 / 0.97 %; the cost is the number of passes.

    Raises:
        ValueError: a bad batch size, precision, test-time augmentation or device/precision combination, or
            ``winograd=True`` where it does not apply, or ``backend="onnxruntime"`` with another
            device, precision or model than a float 2-channel model in fp32 on the CPU.
        ImportError: ``backend="onnxruntime"`` without onnxruntime and onnx installed (or with
            an onnxruntime that fails to import).
        RuntimeError: ``backend="onnxruntime"`` and the session's scores differ from PyTorch's
            (see :class:`patchmatch.models.onnx.OnnxRuntimeScorer`).

    Example:
        >>> scorer = PatchScorer.load()  # shipped 2ch2stream weights
        >>> s = scorer.score_pairs(patches0, patches1, pairs)  # (M,) float32
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        meta: dict | None = None,
        precision: str = "fp32",
        compile: bool = False,
        winograd: bool | None = None,
        backend: str = "auto",
        tta: str = "none",
    ):
        if not isinstance(tta, str) or tta not in TTA:
            raise ValueError(f"tta must be one of {tuple(TTA)}, got {tta!r}.")
        self.tta = tta
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
        if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        if winograd not in (None, True, False):
            raise ValueError(f"winograd must be None, True or False, got {winograd!r}.")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cuda":
            # every batch has the same shape: let cuDNN time its convolution algorithms once per shape
            torch.backends.cudnn.benchmark = True
        self.batch_size = batch_size or (CPU_BATCH if self.device.type == "cpu" else GPU_BATCH)
        self.meta = meta or {}
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 autocast needs a CUDA device; use bf16 on CPU.")
        if precision == "int8" and self.device.type != "cpu":
            raise ValueError("int8 inference runs on the CPU; use fp16/bf16 on a GPU.")
        if precision == "auto":
            precision = "fp32" if backend == "onnxruntime" else auto_precision(self.device)
        self.precision = precision
        self.compiled = bool(compile)
        self._forward = self.model
        if compile:
            if self.is_siamese or self.precision == "int8":
                raise ValueError("compile=True is for the float 2-channel models (int8 and siamese models are not compiled).")
            import torch._inductor.config as inductor

            inductor.freezing = True  # constant weights folded and prepacked for oneDNN (inference only)
            self._forward = torch.compile(self.model, dynamic=False)
        from .models import onnx as onnx_backend
        from .models.winograd import WinogradTwoChannel2Stream

        float_cpu = self.device.type == "cpu" and self.precision == "fp32" and not compile
        self._onnx = None
        if backend == "onnxruntime":
            if not float_cpu or winograd:
                raise ValueError(f"backend='onnxruntime' runs fp32 on the CPU without compile or winograd; got precision "
                                 f"{self.precision!r} on {self.device.type}, compile={bool(compile)}, winograd={winograd}.")
            self._onnx = onnx_backend.OnnxRuntimeScorer(self.model)  # ValueError for other models
        elif backend == "auto" and float_cpu and not winograd and onnx_backend.exportable(self.model) and onnx_backend.available():
            try:
                self._onnx = onnx_backend.OnnxRuntimeScorer(self.model)
            except (ImportError, RuntimeError, ValueError) as e:  # a broken install, a failed check: PyTorch instead
                logger.warning("ONNX Runtime not used (%s); scoring with PyTorch", e)
        backend = "onnxruntime" if self._onnx is not None else "torch"
        self.backend = backend
        applies = float_cpu and backend == "torch" and winograd_applies(self.model, self.device)
        if winograd and not applies:
            raise ValueError("winograd=True is for a 2ch2stream model in fp32 on the CPU (torch backend, not compiled).")
        self.winograd = applies if winograd is None else bool(winograd)
        if self.winograd:
            self._forward = WinogradTwoChannel2Stream(self.model)

    @classmethod
    def load(
        cls,
        weights: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        precision: str = "auto",
        winograd: bool | None = None,
        backend: str = "auto",
        tta: str = "none",
        activation_bits: int | None = None,
    ) -> "PatchScorer":
        """Loads a checkpoint; ``weights=None`` loads the weights shipped in the package.

        ``precision="auto"`` (default) picks the fastest measured path of the device: on an x86
        CPU the int8 model when the checkpoint has one beside it (``W.int8.pt``, made by
        ``patchmatch quantize``; shipped for the default weights), else bfloat16 where the CPU
        computes it natively, else float32; bf16 (or fp16) autocast on GPUs.
        ``precision="int8"`` requires the int8 file; with ``"auto"`` an int8 file that cannot be
        used (unreadable, made from other weights, no variant this CPU runs) is logged as a warning
        and a float precision is used. ``activation_bits`` (with ``precision="int8"``): the int8
        activation variant, 8 or 7 (at most what the CPU takes; None: the CPU's, see
        :mod:`patchmatch.models.quantize`), e.g. 7 for the scores a CPU without AVX512-VNNI gives.
        ``winograd``, ``backend``, ``tta``: see the class (``backend="onnxruntime"`` makes ``"auto"``
        mean fp32).

        Raises:
            patchmatch.models.CheckpointError: the file is not a valid checkpoint, or int8 was
                asked for and its file is missing, unreadable, made from other weights or without
                the variant.
            FileNotFoundError: no weights given and none shipped.
            ValueError: a bad precision, backend, test-time augmentation, batch size or device
                combination (see the class).
        """
        from .models.quantize import check_activation_bits, int8_path, load_int8

        if activation_bits is not None:
            if precision != "int8":
                raise ValueError(f"activation_bits is for precision='int8', not {precision!r}.")
            if check_activation_bits(activation_bits) > int8_activation_bits():
                raise ValueError(f"activation_bits={activation_bits}: this CPU's int8 kernels take at most "
                                 f"{int8_activation_bits()} (8 needs AVX512-VNNI or AMX).")  # fmt: skip
        path = shipped_weights_path() if weights is None else Path(weights)
        dev = resolve_device(device)
        if backend == "onnxruntime" and precision == "auto":
            precision = "fp32"
        model, meta = load_checkpoint(path, map_location="cpu")
        if precision == "int8" or (precision == "auto" and dev.type == "cpu" and cpu_supports_int8() and int8_path(path).is_file()):
            try:
                model, qmeta = load_int8(int8_path(path), path, model, activation_bits)
            except CheckpointError as e:
                if precision == "int8":
                    raise
                logger.warning("%s Scoring in %s instead (precision auto).", e, auto_precision(dev))
            else:
                precision, meta = "int8", {**meta, "int8": qmeta}
        return cls(model, device=dev, batch_size=batch_size, meta={**meta, "path": str(path)}, precision=precision, winograd=winograd, backend=backend,
                   tta=tta)  # fmt: skip

    @property
    def activation_bits(self) -> int | None:
        """int8 scoring: the activation variant of the int8 model (8 or 7 bits, see
        :mod:`patchmatch.models.quantize`); None for the other precisions."""
        return getattr(self.model, "activation_bits", None) if self.precision == "int8" else None

    @property
    def magnification(self) -> float:
        """Patch side / keypoint size the network was trained at (``meta["magnification"]``; checkpoints
        without one: :data:`patchmatch.patches.MAGNIFICATION`): crop the patches it scores at this one."""
        from .models.checkpoint import trained_magnification

        return trained_magnification(self.meta, self.meta.get("path", "the checkpoint"))

    @property
    def is_siamese(self) -> bool:
        return hasattr(self.model, "describe") and hasattr(self.model, "compare")

    def _to_device(self, patches: np.ndarray) -> torch.Tensor:
        with warnings.catch_warnings():  # read-only (memory-mapped) patches: only read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(np.ascontiguousarray(patches))
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t

    def score(self, patches0: np.ndarray, patches1: np.ndarray) -> np.ndarray:
        """Scores aligned pairs ``(patches0[i], patches1[i])``.

        Args:
            patches0: (N, 64, 64) uint8.
            patches1: (N, 64, 64) uint8.

        Returns:
            (N,) float32 scores.

        Raises:
            ValueError: shapes or dtypes are wrong, or the two counts differ.
        """
        p0 = _check_patches(patches0, "patches0")
        p1 = _check_patches(patches1, "patches1")
        if len(p0) != len(p1):
            raise ValueError(f"patches0 and patches1 must have the same length, got {len(p0)} and {len(p1)}.")
        idx = np.arange(len(p0), dtype=np.int64)
        return self._score_index(p0, p1, np.stack([idx, idx], 1))

    def score_pairs(self, patches0: np.ndarray, patches1: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """Scores index pairs ``(patches0[pairs[m, 0]], patches1[pairs[m, 1]])`` without building M copies.

        Args:
            patches0: (N0, 64, 64) uint8.
            patches1: (N1, 64, 64) uint8.
            pairs: (M, 2) integer indices into patches0 and patches1.

        Returns:
            (M,) float32 scores.

        Raises:
            ValueError: bad shapes/dtypes or indices out of range.
        """
        p0 = _check_patches(patches0, "patches0")
        p1 = _check_patches(patches1, "patches1")
        pairs = np.asarray(pairs)
        if pairs.size == 0 and pairs.shape in ((0,), (0, 2)):
            return np.zeros(0, np.float32)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
            raise ValueError(f"pairs must be an (M, 2) integer array, got {pairs.shape} {pairs.dtype}.")
        if pairs.min() < 0 or pairs[:, 0].max() >= len(p0) or pairs[:, 1].max() >= len(p1):
            raise ValueError(f"pair indices out of range for {len(p0)} and {len(p1)} patches.")
        return self._score_index(p0, p1, pairs.astype(np.int64))

    def _autocast(self):
        if self.precision in ("fp32", "int8"):
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    @torch.inference_mode()
    def _score_index(self, p0: np.ndarray, p1: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        out = np.empty(len(pairs), np.float32)
        if len(pairs) == 0:
            return out
        with self._autocast():
            self._score_batches(p0, p1, pairs, out)
            if self.tta == "none":
                return out
            part = np.empty_like(out)
            used0, pairs0 = np.unique(pairs[:, 0], return_inverse=True)  # transform only the patches scored
            used1, pairs1 = np.unique(pairs[:, 1], return_inverse=True)
            p0, p1, pairs = p0[used0], p1[used1], np.stack([pairs0.ravel(), pairs1.ravel()], 1)
            for a, b, ab in _tta_variants(p0, p1, pairs, self.tta):
                self._score_batches(a, b, ab, part)
                out += part
        out /= TTA[self.tta]
        return out

    def _score_batches(self, p0: np.ndarray, p1: np.ndarray, pairs: np.ndarray, out: np.ndarray) -> None:
        if self._onnx is not None:
            for start in range(0, len(pairs), self.batch_size):
                i, j = pairs[start : start + self.batch_size].T
                out[start : start + len(i)] = self._onnx(np.stack([p0[i], p1[j]], axis=1))
            return
        if self.is_siamese:  # embed every patch once, then run only the decision network per pair
            d0 = self._describe(p0, 0)
            d1 = self._describe(p1, 1)
        else:
            t0, t1 = self._to_device(p0), self._to_device(p1)
        idx = torch.from_numpy(pairs).to(self.device)
        for start in range(0, len(pairs), self.batch_size):
            i, j = idx[start : start + self.batch_size].unbind(1)
            if self.is_siamese:
                s = self.model.compare(d0[i], d1[j])
            else:
                x = torch.stack([t0[i], t1[j]], dim=1)  # uint8: the model normalises (and converts) itself
                if self.compiled and len(x) < self.batch_size:  # one static shape: no recompilation
                    x = torch.cat([x, x.new_zeros((self.batch_size - len(x), *x.shape[1:]))])
                s = self._forward(x)[: len(i)]
            out[start : start + len(i)] = s.float().cpu().numpy()

    def _describe(self, patches: np.ndarray, which: int) -> torch.Tensor:
        t = self._to_device(patches)
        chunks = [self.model.describe(t[s : s + self.batch_size].float(), which) for s in range(0, len(t), self.batch_size)]
        if not chunks:
            return torch.zeros((0, self.model.descriptor_dim), device=self.device)
        return torch.cat(chunks)
