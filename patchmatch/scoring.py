"""PatchScorer: batched similarity scores of patch pairs with a patch-comparison network."""

from __future__ import annotations

import logging
import os
import warnings
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .device import auto_precision, cpu_supports_int8, resolve_device
from .models import CheckpointError, load_checkpoint

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


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


#: The test-time augmentations that average the network over forms of a pair (:func:`tta_forms`).
AVERAGED_TTA = ("none", "swap", "rot90", "dihedral")
#: ``tta="orient"``: the second patch turned by these angles (degrees, counter-clockwise), the highest
#: score kept. The strongest SIFT orientation of one point seen in two views often differs by a
#: quarter or a half turn (symmetric structure: windows, mouldings), which the network, shown the
#: patches at the detected angles, takes for a non-match. Chosen on the validation scenes among
#: 3-9 angles from ±20° to the full circle (the model card); finer steps gained nothing there.
ORIENT_DEGREES = (0.0, 90.0, 180.0, 270.0)
#: Test-time augmentations (``PatchScorer(tta=...)``) and the forward passes each costs per pair.
TTA = {**{name: len(tta_forms(name)) for name in AVERAGED_TTA}, "orient": len(ORIENT_DEGREES)}
#: Default pairs per forward pass: 128 is the fastest on the CPU (``patchmatch bench``); GPUs need large batches.
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


def describe_scorer(scorer: "PatchScorer") -> str:
    """One line naming how a scorer computes, e.g.
    ``"2ch2stream.pt, int8 (7-bit activations) on cpu (torch), patches at magnification 6"``."""
    name = Path(scorer.meta.get("path", "")).name or type(scorer.model).__name__
    how = scorer.backend
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


def turn_patches(patches: np.ndarray, degrees: float) -> np.ndarray:
    """(N, 64, 64) uint8 patches turned about their centre by ``degrees`` counter-clockwise
    (bilinear; the corners filled by reflection, so the surround stream sees texture, not black)."""
    if degrees % 90 == 0:  # exact: no resampling
        return np.ascontiguousarray(np.rot90(patches, int(degrees // 90) % 4, axes=(1, 2))) if degrees % 360 else patches
    size = patches.shape[-1]
    turn = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), degrees, 1.0)
    out = np.empty_like(patches)
    for k, patch in enumerate(patches):
        cv2.warpAffine(patch, turn, (size, size), dst=out[k], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return out


def _check_arguments(batch_size, precision: str, tta: str) -> None:
    """Raises ValueError for a bad batch size, precision or test-time augmentation."""
    if not isinstance(tta, str) or tta not in TTA:
        raise ValueError(f"tta must be one of {tuple(TTA)}, got {tta!r}.")
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")


def _load_int8(path: Path, model: nn.Module, meta: dict, precision: str, activation_bits: int | None, device: torch.device):
    """``(model, precision, meta)`` of :meth:`PatchScorer.load` for int8: the int8 model, or with
    ``precision="auto"`` the float model when its int8 file cannot be used (logged)."""
    from .models.quantize import int8_path, load_int8

    try:
        qmodel, qmeta = load_int8(int8_path(path), path, model, activation_bits)
    except CheckpointError as e:
        if precision == "int8":
            raise
        logger.warning("%s Scoring in %s instead (precision auto).", e, auto_precision(device))
        return model, auto_precision(device), meta
    return qmodel, "int8", {**meta, "int8": qmeta}


class PatchScorer:
    """Scores pairs of 64×64 grayscale patches with a patch-comparison network.

    Scores are the network's raw outputs (unbounded float32), higher = more similar.

    One inference path per device and precision:

    - CPU ``"int8"``: a model quantised by :mod:`patchmatch.models.quantize` (use :meth:`load`),
      PyTorch's quantised kernels;
    - CPU ``"fp32"``: ONNX Runtime when it is installed and takes the model (a float 2-channel
      model, :mod:`patchmatch.models.onnx`; checked against PyTorch when built), else PyTorch;
    - CPU ``"bf16"``: PyTorch autocast, only when asked for (fast where the CPU has AMX or
      AVX512-BF16);
    - GPU ``"fp16"`` / ``"bf16"`` / ``"fp32"``: PyTorch (autocast for the first two).

    :attr:`backend` says which engine computes: ``"onnxruntime"`` or ``"torch"``.

    Args:
        model: a patchmatch model (see :mod:`patchmatch.models`); for ``"int8"`` already quantised.
        device: torch device; None = CUDA when available, else CPU.
        batch_size: pairs per forward pass (None: :data:`CPU_BATCH` on CPU, :data:`GPU_BATCH` on GPU).
        meta: checkpoint metadata, kept for reporting.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (GPU only), ``"int8"`` (CPU only) or
            ``"auto"`` (:func:`patchmatch.device.auto_precision`: fp16 on a GPU, fp32 on the CPU;
            :meth:`load` prefers int8 on the CPU). Lower precisions change the scores slightly
            (measured in the model card).
        tta: test-time augmentation. ``"none"`` (default, one pass); averaged over transformed
            copies of each pair (see :func:`tta_forms`): ``"swap"`` (2 passes), ``"rot90"`` (4) or
            ``"dihedral"`` (8); or ``"orient"`` (4): the highest score over the second patch turned
            by :data:`ORIENT_DEGREES`, for keypoints whose detected orientations disagree between
            views (measured in the model card; it does not help ``sfm``'s descriptor candidates).

    Raises:
        ValueError: a bad batch size, precision, test-time augmentation or device/precision combination.

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
        tta: str = "none",
    ):
        _check_arguments(batch_size, precision, tta)
        self.tta = tta
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size or (CPU_BATCH if self.device.type == "cpu" else GPU_BATCH)
        self.meta = meta or {}
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 autocast needs a CUDA device; use bf16 or fp32 on the CPU.")
        if precision == "int8" and self.device.type != "cpu":
            raise ValueError("int8 inference runs on the CPU; use fp16/bf16 on a GPU.")
        self.precision = auto_precision(self.device) if precision == "auto" else precision
        self._onnx = self._onnx_session()

    @property
    def backend(self) -> str:
        """The engine that computes the scores: ``"onnxruntime"`` (fp32 on the CPU, when installed) or ``"torch"``."""
        return "onnxruntime" if self._onnx is not None else "torch"

    def use_pytorch(self) -> "PatchScorer":
        """Scores with PyTorch from now on, also where ONNX Runtime would (fp32 on the CPU): for timing
        or checking the two against each other. Returns the scorer itself."""
        self._onnx = None
        return self

    def _onnx_session(self):
        """ONNX Runtime session of the model where it applies (fp32 on the CPU, installed, a float 2-channel
        model), else None (PyTorch; with a warning when ONNX Runtime is installed but fails)."""
        from .models import onnx as onnx_backend

        if self.device.type != "cpu" or self.precision != "fp32" or not onnx_backend.exportable(self.model):
            return None
        if not onnx_backend.available():
            return None
        try:
            return onnx_backend.OnnxRuntimeScorer(self.model)
        except (ImportError, RuntimeError, ValueError) as e:  # a broken install, a failed check: PyTorch instead
            logger.warning("ONNX Runtime not used (%s); scoring with PyTorch", e)
            return None

    @classmethod
    def load(
        cls,
        weights: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        precision: str = "auto",
        tta: str = "none",
        activation_bits: int | None = None,
    ) -> "PatchScorer":
        """Loads a checkpoint; ``weights=None`` loads the weights shipped in the package.

        ``precision="auto"`` (default): on an x86-64 CPU the int8 model when the checkpoint has
        one beside it (``W.int8.pt``, made by ``patchmatch quantize``; shipped for the default
        weights) with 7-bit activations, which every x86-64 CPU computes identically; fp32
        elsewhere (aarch64, no int8 file, or an int8 file that cannot be used, logged as a
        warning); fp16 autocast on a GPU. ``precision="int8"`` requires the int8 file.

        ``activation_bits`` (with ``precision="int8"`` only): 7 (None, the default) or 8, the
        opt-in variant closer to float32 that only CPUs with AVX512-VNNI or AMX compute correctly
        (:mod:`patchmatch.models.quantize`). ``tta``: see the class.

        Raises:
            patchmatch.models.CheckpointError: the file is not a valid checkpoint, or int8 was
                asked for and its file is missing, unreadable, made from other weights or without
                the variant.
            FileNotFoundError: no weights given and none shipped.
            ValueError: a bad precision, test-time augmentation, batch size or device combination
                (see the class); ``activation_bits`` without ``precision="int8"``, not 7 or 8, or 8
                on a CPU without AVX512-VNNI; int8 on a CPU without PyTorch's x86 quantised engines.
        """
        from .models.quantize import check_activation_bits, int8_path

        _check_arguments(batch_size, precision, tta)
        if activation_bits is not None:
            if precision != "int8":
                raise ValueError(f"activation_bits is for precision='int8', not {precision!r}.")
            check_activation_bits(activation_bits)
        path = shipped_weights_path() if weights is None else Path(weights)
        dev = resolve_device(device)
        model, meta = load_checkpoint(path, map_location="cpu")
        if precision == "int8" and not cpu_supports_int8():
            raise ValueError("int8 needs PyTorch's x86 quantised engines (an x86-64 CPU); use fp32.")
        auto_int8 = precision == "auto" and dev.type == "cpu" and cpu_supports_int8() and int8_path(path).is_file()
        if precision == "int8" or auto_int8:
            model, precision, meta = _load_int8(path, model, meta, precision, activation_bits, dev)
        return cls(model, device=dev, batch_size=batch_size, meta={**meta, "path": str(path)}, precision=precision, tta=tta)

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
            if self.tta == "orient":
                for degrees in ORIENT_DEGREES:
                    if degrees != 0:
                        self._score_batches(p0, turn_patches(p1, degrees), pairs, part)
                        np.maximum(out, part, out=out)
                return out
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
                s = self.model(x)
            out[start : start + len(i)] = s.float().cpu().numpy()

    def _describe(self, patches: np.ndarray, which: int) -> torch.Tensor:
        t = self._to_device(patches)
        chunks = [self.model.describe(t[s : s + self.batch_size].float(), which) for s in range(0, len(t), self.batch_size)]
        if not chunks:
            return torch.zeros((0, self.model.descriptor_dim), device=self.device)
        return torch.cat(chunks)
