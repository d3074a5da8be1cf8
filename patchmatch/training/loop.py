"""Training loop: balanced batches, hinge loss, validation FPR95 each epoch, resumable checkpoints.

Each epoch ends with a *training state* file next to the output (``<out stem>.state.pt``:
model, optimiser, epoch, step, training seconds, every random generator's state and the history), so
that ``resume=True`` continues exactly where the last finished epoch left off. The final weights
are written with :func:`patchmatch.models.save_checkpoint` (optionally in float16): those of the
epoch with the best validation FPR95 when a validation set is given, else of the last epoch. With
``TrainConfig.ema_decay`` the state also holds the moving average of the weights, and the average is
what is validated, kept and written.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..evaluation.fpr95 import fpr95
from ..models import build_model, save_checkpoint
from .augment import augment_pairs, jitter_patches
from .data import PairData, load_eval_pairs, load_pair_data
from .distill import distillation_loss, tta_mean_scores
from .losses import contrastive_loss, hinge_loss

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainResult", "train", "state_path", "evaluate_pairs", "TrainingStateError"]

OPTIMIZERS = ("adam", "sgd", "asgd")
LOSSES = ("hinge", "contrastive")
JITTERS = ("none", "photometric", "mild", "full", "wide")
#: Geometric jitter ranges (rotation degrees, natural-log scale, shift pixels) of each level.
JITTER_GEOMETRY = {"none": (0.0, 0.0, 0.0), "photometric": (0.0, 0.0, 0.0), "mild": (4.0, 0.05, 1.0), "full": (8.0, 0.1, 2.0), "wide": (10.0, 0.15, 3.0)}


class TrainingStateError(ValueError):
    """A training state cannot be resumed (missing, or made with another configuration)."""


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters.

    Attributes:
        model: registered model name (:data:`patchmatch.models.MODELS`).
        epochs: number of epochs.
        steps_per_epoch: optimiser steps per epoch.
        batch_size: pairs per step (even: half positive, half negative).
        optimizer: ``"adam"`` (AdamW; fastest to a usable model on CPU), ``"sgd"`` (momentum)
            or ``"asgd"`` (the paper's averaged SGD).
        lr: initial learning rate; decays with a cosine to ``lr * final_lr_fraction``.
        final_lr_fraction: learning rate at the last step, as a fraction of ``lr``.
        momentum: SGD momentum.
        weight_decay: 5e-4 in the paper (decoupled for AdamW).
        hard_fraction: share of each batch's negatives that are hard negatives.
        augment: flips / 90° rotations (same for both patches) and random pair order.
        jitter: independent jitter of each patch (:func:`~patchmatch.training.augment.jitter_patches`),
            beyond the paper: ``"none"``, ``"photometric"`` (contrast, gamma, noise), ``"mild"``
            (also rotation ±4°, scale ±5 %, shift ±1 px) ``"full"`` (±8°, ±10 %, ±2 px) or ``"wide"`` (±10°, ±15 %, ±3 px).
        mine_factor: hard-negative mining by the model being trained: each step draws
            ``mine_factor`` times the batch's random negatives, scores them with the current
            model (no gradient) and keeps the highest-scoring ones, i.e. those it confuses most
            with matches. 1 = no mining (plain random negatives); beyond the paper.
        upright: train on the upright patches instead of the oriented ones.
        loss: ``"hinge"`` on the network score (paper), or ``"contrastive"`` on the L2 distance
            of branch descriptors (siamese models only).
        margin: hinge / contrastive margin.
        val_pairs: validation pairs per kind (random / hard), drawn once with ``seed``.
        seed: seed of initialisation, batch sampling and augmentation.
        bf16: forward pass under bfloat16 autocast (weights and optimiser stay float32):
            faster steps on CPUs with AMX/AVX512-BF16 and on GPUs.
        schedule_minutes: when set, the cosine runs over this many minutes of training time
            (validation excluded) instead of over ``epochs * steps_per_epoch`` steps, and
            training ends at the first epoch boundary past it (``epochs`` is then an upper
            bound). For a fixed CPU budget on a shared machine; the number of steps then
            depends on the machine's speed, so a resumed run is no longer bit-identical.
        schedule_steps: when set, the cosine runs over this many optimiser steps instead of over
            ``epochs * steps_per_epoch``: a run that stops at an epoch chosen beforehand (fewer
            epochs than the schedule) follows the same learning rates as the full schedule up to
            there. Not with ``schedule_minutes``.
        init: checkpoint (:func:`patchmatch.models.save_checkpoint`) whose weights the model
            starts from instead of He initialisation (fine-tuning); its model must be ``model``.
        ema_decay: when > 0, an exponential moving average of the weights
            (``torch.optim.swa_utils.AveragedModel``) is updated after every step with this
            decay (0.999: a horizon of ~1,000 steps); validation, the kept epoch and the written
            checkpoint then use the averaged weights, and the live ones keep training. Beyond the
            paper (its effect: see the model card). 0 (default): off.
        distill: self-distillation of test-time augmentation (:mod:`patchmatch.training.distill`): a frozen copy of
            the ``init`` weights scores every training pair under this augmentation (``"swap"``, ``"rot90"`` or
            ``"dihedral"``: 2, 4 or 8 forward passes without gradient), and ``distill_weight`` times the mean squared
            difference to that score is added to the loss. Needs ``init``. ``"none"`` (default): off. Beyond the
            paper (its effect: see the model card).
        distill_weight: weight of the distillation term.
        source_weights: one share per training set (normalised): each batch draws its positives
            and negatives from the sets in these proportions (:func:`~patchmatch.training.data.load_pair_data`);
            None (default): in proportion to the sets' sizes.
    """

    model: str = "2ch2stream"
    epochs: int = 10
    steps_per_epoch: int = 100
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 1e-3
    final_lr_fraction: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    hard_fraction: float = 0.5
    augment: bool = True
    jitter: str = "none"
    mine_factor: int = 1
    upright: bool = False
    loss: str = "hinge"
    margin: float = 1.0
    val_pairs: int = 4000
    seed: int = 0
    schedule_minutes: float | None = None
    schedule_steps: int | None = None
    bf16: bool = False
    init: str | None = None
    ema_decay: float = 0.0
    distill: str = "none"
    distill_weight: float = 1.0
    source_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.epochs < 1 or self.steps_per_epoch < 1:
            raise ValueError("epochs and steps_per_epoch must be >= 1")
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(f"batch_size must be even and >= 2, got {self.batch_size}")
        if self.lr <= 0 or not 0 < self.final_lr_fraction <= 1:
            raise ValueError("lr must be > 0 and final_lr_fraction in (0, 1]")
        if self.schedule_minutes is not None and self.schedule_minutes <= 0:
            raise ValueError(f"schedule_minutes must be > 0, got {self.schedule_minutes}")
        if self.schedule_steps is not None and (self.schedule_steps < 1 or self.schedule_minutes is not None):
            raise ValueError(f"schedule_steps must be >= 1 and not given with schedule_minutes, got {self.schedule_steps}")
        if not 0 <= self.hard_fraction <= 1:
            raise ValueError(f"hard_fraction must be in [0, 1], got {self.hard_fraction}")
        if self.jitter not in JITTERS:
            raise ValueError(f"jitter must be one of {JITTERS}, got {self.jitter!r}")
        if not 1 <= self.mine_factor <= 64:
            raise ValueError(f"mine_factor (--mine-factor) must be in 1..64, got {self.mine_factor}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay (--ema) must be in [0, 1), got {self.ema_decay}")
        from ..scoring import AVERAGED_TTA

        if self.distill not in AVERAGED_TTA:
            raise ValueError(f"distill (--distill) must be one of {AVERAGED_TTA}, got {self.distill!r}")
        if not (math.isfinite(self.distill_weight) and self.distill_weight > 0):
            raise ValueError(f"distill_weight (--distill-weight) must be a finite number > 0, got {self.distill_weight}")
        if self.distill != "none" and (self.init is None or self.loss != "hinge"):
            raise ValueError("distill (--distill) needs init (--init: the teacher's weights) and the hinge loss "
                             f"(got init={self.init!r}, loss={self.loss!r})")
        if self.init is not None:
            object.__setattr__(self, "init", str(Path(self.init).resolve()))
            if not Path(self.init).is_file():
                raise ValueError(f"init (--init): {self.init}: not a checkpoint file (missing or a folder)")


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        checkpoint: the final weights (:func:`patchmatch.models.save_checkpoint`).
        state: the training state file (for ``resume``).
        history: one dict per epoch (loss, pairs/s, validation FPR95, learning rate, seconds).
        best_epoch: epoch (1-based) whose weights were saved.
    """

    checkpoint: Path
    state: Path
    history: list[dict[str, Any]]
    best_epoch: int


def _init_weights(path: str, model: torch.nn.Module, model_name: str, magnification: float | None = None) -> dict[str, torch.Tensor]:
    """Float32 weights of checkpoint ``path`` for fine-tuning ``model`` (built as ``model_name``) on sets
    cut at ``magnification`` (a change of magnification is logged: allowed, it is a fine-tuning to it).

    Raises:
        CheckpointError: unreadable checkpoint (names the file).
        ValueError: the checkpoint holds another model.
    """
    from ..models import load_checkpoint, trained_magnification

    loaded, meta = load_checkpoint(path)
    if type(loaded) is not type(model) or loaded.state_dict().keys() != model.state_dict().keys():
        raise ValueError(f"init (--init): {path} holds a {type(loaded).__name__} model, not {model_name!r}")
    before = trained_magnification(meta, path)
    if magnification is not None and magnification != before:
        logger.info("init %s was trained on patches at magnification %g; fine-tuning on sets at %g", path, before, magnification)
    return loaded.state_dict()


def _weight_average(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model``'s weights (starts as a copy of them)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def state_path(out: str | Path) -> Path:
    """Training-state file of an output checkpoint: ``runs/x.pt`` → ``runs/x.state.pt``."""
    out = Path(out)
    return out.with_name(out.stem + ".state.pt")


def _make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg.optimizer`` names (AdamW, SGD with momentum, or averaged SGD) over the trainable weights."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.ASGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, step: int, train_seconds: float) -> float:
    """Cosine learning-rate factor, from 1 down to ``cfg.final_lr_fraction``.

    Args:
        cfg: training configuration.
        step: optimiser steps done so far.
        train_seconds: seconds spent in training steps so far (validation excluded).

    Returns:
        The factor: over ``schedule_steps`` steps, over ``schedule_minutes`` of training time,
        or else over ``epochs * steps_per_epoch`` steps.
    """
    if cfg.schedule_minutes is not None:
        t = min(1.0, train_seconds / (60.0 * cfg.schedule_minutes))
    else:
        total = cfg.schedule_steps or cfg.epochs * cfg.steps_per_epoch
        t = min(step, total) / max(total, 1)
    return cfg.final_lr_fraction + (1 - cfg.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * t))


def _to_input(p0: np.ndarray, p1: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, 2, 64, 64) float32 network input on ``device`` from two (B, 64, 64) uint8 patch arrays (grey levels kept 0..255)."""
    return torch.from_numpy(np.stack([p0, p1], axis=1)).to(device=device, dtype=torch.float32)


@torch.no_grad()
def _mine_random_negatives(
    model: torch.nn.Module,
    data: PairData,
    pairs: np.ndarray,
    labels: np.ndarray,
    cfg: TrainConfig,
    rng: np.random.Generator,
    device: torch.device,
) -> np.ndarray:
    """Replace the batch's random negatives by the highest-scoring of ``mine_factor`` times as many.

    The random negatives are the last rows of a :meth:`PairData.sample_batch` batch (after the
    positives and the stored hard negatives). Returns the (B, 2) int64 batch with them replaced.
    """
    n_rand = len(pairs) // 2 - data.num_hard(len(pairs), cfg.hard_fraction)
    if n_rand == 0:
        return pairs
    pool = data.draw_random_negatives(cfg.mine_factor * n_rand, rng)
    was_training = model.training
    model.eval()
    x = _to_input(data.patches[pool[:, 0]], data.patches[pool[:, 1]], device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        scores = _pair_scores(model, x, cfg.loss).float().cpu().numpy()
    model.train(was_training)
    out = pairs.copy()
    out[len(pairs) - n_rand :] = pool[np.argsort(-scores, kind="stable")[:n_rand]]
    return out


def _pair_scores(model: torch.nn.Module, x: torch.Tensor, loss: str) -> torch.Tensor:
    """(B,) scores of (B, 2, 64, 64) pairs, higher = more similar: minus the descriptor distance for the
    contrastive loss, else the network output."""
    if loss == "contrastive":
        return -torch.linalg.vector_norm(model.describe(x[:, :1], 0) - model.describe(x[:, 1:], 1), dim=1)
    return model(x)


@torch.no_grad()
def evaluate_pairs(
    model: torch.nn.Module,
    patches: np.ndarray,
    pairs: np.ndarray,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    loss: str = "hinge",
) -> np.ndarray:
    """Score pairs of patches with a model (eval mode, no gradients).

    Args:
        model: a registered model.
        patches: (N, 64, 64) uint8.
        pairs: (M, 2) int indices into ``patches``.
        batch_size: pairs per forward pass.
        device: where to run.
        loss: ``"contrastive"`` scores by negative descriptor distance, else the model output.

    Returns:
        (M,) float32 scores, higher = more similar.
    """
    was_training = model.training
    model.eval()
    out = np.empty(len(pairs), np.float32)
    for s in range(0, len(pairs), batch_size):
        b = pairs[s : s + batch_size]
        x = _to_input(patches[b[:, 0]], patches[b[:, 1]], torch.device(device))
        out[s : s + len(b)] = _pair_scores(model, x, loss).float().cpu().numpy()
    model.train(was_training)
    return out


def _val_sets(val: Sequence[Path], cfg: TrainConfig) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Validation pairs pooled over the files, at most ``cfg.val_pairs`` per kind, drawn once."""
    sets = {}
    rng = np.random.default_rng(cfg.seed + 12345)
    for kind in ("random", "hard"):
        allp, allpairs, alllab, offset = [], [], [], 0
        for path in val:
            patches, pairs, labels = load_eval_pairs(path, kind, upright=cfg.upright)
            allp.append(patches)
            allpairs.append(pairs + offset)
            alllab.append(labels)
            offset += len(patches)
        patches, pairs, labels = np.concatenate(allp), np.concatenate(allpairs), np.concatenate(alllab)
        if len(pairs) > cfg.val_pairs:
            sel = np.sort(rng.choice(len(pairs), cfg.val_pairs, replace=False))
            pairs, labels = pairs[sel], labels[sel]
        sets[kind] = (patches, pairs, labels)
    return sets


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The state of a PCG64 generator in types a ``weights_only`` torch file holds."""
    st = rng.bit_generator.state
    # 128-bit PCG64 integers as strings: the state file loads with weights_only=True.
    return {"bit_generator": st["bit_generator"], "state": str(st["state"]["state"]), "inc": str(st["state"]["inc"]),
            "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}


def _set_rng_state(rng: np.random.Generator, d: dict[str, Any]) -> None:
    """Restores a generator from :func:`_rng_state`'s dict."""
    rng.bit_generator.state = {
        "bit_generator": d["bit_generator"],
        "state": {"state": int(d["state"]), "inc": int(d["inc"])},
        "has_uint32": int(d["has_uint32"]),
        "uinteger": int(d["uinteger"]),
    }


def _common_magnification(sets: Sequence[str | Path]) -> float | None:
    """The magnification the sets' patches were cut at (None when no set records one, e.g. Brown's own).

    Raises:
        ValueError: the sets were cut at different magnifications (each named).
    """
    from ..datasets.patchset import set_magnification

    found = {str(p): set_magnification(p) for p in sets}
    known = {m for m in found.values() if m is not None}
    if len(known) > 1:
        listed = ", ".join(f"{p} ({m:g})" for p, m in found.items() if m is not None)
        raise ValueError(f"the sets were cut at different magnifications: {listed}; "
                         "cut them at one (make-patches SET OUT --magnification M re-cuts a set)")
    return known.pop() if known else None


@dataclass
class _Run:
    """What one training run carries from epoch to epoch (and saves in its training state).

    Attributes:
        model: the live weights being trained.
        optimizer: their optimiser.
        ema: the moving average of the weights (None without ``ema_decay``).
        teacher: the frozen ``init`` weights of self-distillation (None without ``distill``).
        rng: the generator of batch sampling, augmentation and mining.
        jitter_gen: the torch generator of :func:`~patchmatch.training.augment.jitter_patches`.
        history: one record per finished epoch.
        epoch: epochs finished (0-based index of the next one).
        step: optimiser steps done.
        train_seconds: seconds spent in training steps (validation excluded).
        best: ``{"epoch", "fpr95", "model"}`` of the best epoch so far (``model``: its CPU weights).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: torch.optim.swa_utils.AveragedModel | None
    teacher: torch.nn.Module | None
    rng: np.random.Generator
    jitter_gen: torch.Generator
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    epoch: int = 0
    step: int = 0
    train_seconds: float = 0.0
    best: dict[str, Any] = dataclasses.field(default_factory=lambda: {"epoch": 0, "fpr95": math.inf, "model": None})

    @property
    def kept(self) -> torch.nn.Module:
        """The weights that are validated and written: the moving average when there is one."""
        return self.model if self.ema is None else self.ema.module


def _check_state_file(spath: Path, resume: bool) -> None:
    """Refuses to resume without a state file, and to start afresh over one.

    Raises:
        TrainingStateError: ``resume`` and no file at ``spath``, or a file there without ``resume``.
    """
    if resume and not spath.is_file():
        raise TrainingStateError(f"{spath}: no training state to resume from")
    if not resume and spath.exists():
        raise TrainingStateError(f"{spath} exists: pass resume=True (--resume) to continue, or delete it")


def _as_paths(val: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """The validation set folders of :func:`train`'s ``val`` argument (none, one or several)."""
    if val is None:
        return []
    if isinstance(val, (str, Path)):
        return [Path(val)]
    return [Path(v) for v in val]


def _new_run(config: TrainConfig, dev: torch.device, magnification: float | None, resume: bool) -> _Run:
    """The model (seeded He initialisation, or ``init``'s weights), teacher, optimiser, average and generators.

    The order of the draws from torch's global generator is part of the result: the model is built
    right after ``torch.manual_seed(config.seed)``.

    Raises:
        ValueError: the contrastive loss with a model without ``describe``, or ``init`` holding another model.
    """
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(dev)
    if config.init is not None and not resume:
        model.load_state_dict(_init_weights(config.init, model, config.model, magnification))
    if config.loss == "contrastive" and not hasattr(model, "describe"):
        raise ValueError(f"contrastive loss needs a siamese model with describe(), not {config.model!r}")
    teacher = None
    if config.distill != "none":  # the init weights, frozen (also on resume: init is part of the config)
        teacher = build_model(config.model).to(dev).eval()
        teacher.load_state_dict(_init_weights(config.init, teacher, config.model, magnification))
        teacher.requires_grad_(False)
    optimizer = _make_optimizer(model, config)
    ema = _weight_average(model, config.ema_decay) if config.ema_decay > 0 else None
    return _Run(model=model, optimizer=optimizer, ema=ema, teacher=teacher, rng=np.random.default_rng(config.seed),
                jitter_gen=torch.Generator().manual_seed(config.seed + 1))


def _check_saved_config(spath: Path, st: dict[str, Any], config: TrainConfig, magnification: float | None) -> None:
    """Refuses a training state made with another configuration or on sets of another magnification.

    Fields added to :class:`TrainConfig` after the state was written count as their defaults (the
    behaviour then).

    Raises:
        TrainingStateError: the configurations differ (the differing fields listed, with a hint for
            ``init`` and ``ema_decay``) or the magnifications do.
    """
    saved = {**asdict(TrainConfig(model=config.model)), **st.get("config", {})}
    if saved != asdict(config):
        diff = {k: (saved.get(k), v) for k, v in asdict(config).items() if saved.get(k) != v}
        hint = ""
        if "init" in diff:
            hint = " (pass the same --init again)" if diff["init"][0] else " (drop --init: the run started without it)"
        elif "ema_decay" in diff:
            hint = f" (pass --ema {diff['ema_decay'][0]:g} again)" if diff["ema_decay"][0] else " (drop --ema: the run started without it)"
        raise TrainingStateError(f"{spath}: made with another configuration (saved, given): {diff}{hint}")
    if st.get("magnification", magnification) != magnification:
        raise TrainingStateError(f"{spath}: trained on patches at magnification {st['magnification']:g}, the sets are now "
                                 f"at {magnification:g}; resume with the sets it started with")


def _restore_run(run: _Run, spath: Path, config: TrainConfig, magnification: float | None) -> None:
    """Loads the training state at ``spath`` into ``run``: weights, optimiser, average, generators, history.

    Raises:
        TrainingStateError: see :func:`_check_saved_config`.
    """
    st = torch.load(spath, map_location="cpu", weights_only=True)
    _check_saved_config(spath, st, config, magnification)
    run.model.load_state_dict(st["model"])
    run.optimizer.load_state_dict(st["optimizer"])
    if run.ema is not None:
        run.ema.load_state_dict(st["ema"])
    _set_rng_state(run.rng, st["rng"])
    torch.set_rng_state(st["torch_rng"])
    if "jitter_rng" in st:
        run.jitter_gen.set_state(st["jitter_rng"])
    run.history = list(st["history"])
    run.epoch = int(st["epoch"])
    run.step = int(st["step"])
    run.train_seconds = float(st["train_seconds"])
    run.best = {"epoch": int(st["best_epoch"]), "fpr95": float(st["best_fpr95"]), "model": st["best_model"]}
    logger.info("resuming from %s at epoch %d", spath, run.epoch)


def _out_of_time(run: _Run, config: TrainConfig, start_epoch: int, t_start: float, time_budget_s: float | None) -> bool:
    """True when no further epoch should start: the wall-clock budget of this call would be passed
    (judged by the mean epoch so far; the first epoch of a call always runs), or the
    ``schedule_minutes`` of training time are spent."""
    epoch = run.epoch
    if time_budget_s is not None and epoch > start_epoch:
        last = time.time() - t_start
        per_epoch = last / (epoch - start_epoch)
        if last + per_epoch > time_budget_s:
            logger.warning("time budget %.0f s reached after epoch %d of %d; resume to finish the schedule",
                           time_budget_s, epoch, config.epochs)  # fmt: skip
            return True
    if config.schedule_minutes is not None and run.train_seconds >= 60.0 * config.schedule_minutes:
        logger.info("schedule of %g min of training done after epoch %d", config.schedule_minutes, epoch)
        return True
    return False


def _batch_input(run: _Run, pair_data: PairData, config: TrainConfig, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One training batch: sampled (and mined), augmented and jittered.

    Returns:
        ``(x, y, n)``: (B, 2, 64, 64) float32 pairs on ``dev`` (grey levels 0..255), (B,) int64
        labels (1 = match) and the number of pairs B.
    """
    pairs, labels = pair_data.sample_batch(config.batch_size, run.rng, config.hard_fraction)
    if config.mine_factor > 1:
        pairs = _mine_random_negatives(run.model, pair_data, pairs, labels, config, run.rng, dev)
    p0 = pair_data.patches[pairs[:, 0]]
    p1 = pair_data.patches[pairs[:, 1]]
    if config.augment:
        p0, p1, _ = augment_pairs(p0, p1, run.rng)
    x = _to_input(p0, p1, dev)
    if config.jitter != "none":
        x = jitter_patches(x.cpu(), run.jitter_gen, *JITTER_GEOMETRY[config.jitter]).to(dev)
    return x, torch.from_numpy(labels).to(dev), len(pairs)


def _batch_loss(run: _Run, x: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The loss of one batch (scalar tensor with gradient): contrastive on branch descriptors, or
    hinge on the scores, plus the distillation term toward the teacher when there is one."""
    model = run.model
    if config.loss == "contrastive":
        return contrastive_loss(model.describe(x[:, :1], 0), model.describe(x[:, 1:], 1), y, config.margin)
    if run.teacher is not None:
        target = tta_mean_scores(run.teacher, x, config.distill)
        scores = model(x)
        return hinge_loss(scores, y, config.margin) + config.distill_weight * distillation_loss(scores, target)
    return hinge_loss(model(x), y, config.margin)


def _train_step(run: _Run, pair_data: PairData, config: TrainConfig, dev: torch.device, elapsed_s: float) -> tuple[float, int]:
    """One optimiser step (learning rate set from the schedule at ``elapsed_s`` seconds of training).

    Returns:
        ``(loss, pairs)``: the batch's loss and its number of pairs.
    """
    for g in run.optimizer.param_groups:
        g["lr"] = config.lr * lr_factor(config, run.step, elapsed_s)
    x, y, n = _batch_input(run, pair_data, config, dev)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.bf16):
        loss = _batch_loss(run, x, y, config)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    run.step += 1
    return float(loss.detach()), n


def _train_epoch(run: _Run, pair_data: PairData, config: TrainConfig, dev: torch.device, progress: bool) -> dict[str, Any]:
    """``steps_per_epoch`` optimiser steps; adds their seconds to ``run.train_seconds``.

    Returns:
        The epoch's record so far: ``epoch`` (1-based), mean ``loss``, ``pairs_per_s``, last ``lr``, ``train_s``.
    """
    t0 = time.time()
    losses: list[float] = []
    steps: Any = range(config.steps_per_epoch)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = steps = tqdm(steps, desc=f"epoch {run.epoch + 1}/{config.epochs}", unit="step", dynamic_ncols=True)
    n_pairs = 0
    for _ in steps:
        loss, n = _train_step(run, pair_data, config, dev, run.train_seconds + time.time() - t0)
        losses.append(loss)
        n_pairs += n
        if bar is not None:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", pairs_s=f"{n_pairs / (time.time() - t0):.0f}")
    train_s = time.time() - t0
    run.train_seconds += train_s
    return {"epoch": run.epoch + 1, "loss": float(np.mean(losses)), "pairs_per_s": n_pairs / max(train_s, 1e-9),
            "lr": float(run.optimizer.param_groups[0]["lr"]), "train_s": train_s}  # fmt: skip


def _validate(run: _Run, rec: dict[str, Any], val_sets: dict, config: TrainConfig, dev: torch.device) -> None:
    """Adds ``val_fpr95_<kind>`` (and their mean ``val_fpr95``) of the kept weights to ``rec``, and logs the epoch."""
    for kind, (vp, vpairs, vlab) in val_sets.items():
        scores = evaluate_pairs(run.kept, vp, vpairs, device=dev, loss=config.loss)
        rec[f"val_fpr95_{kind}"] = fpr95(scores, vlab)
    if val_sets:
        rec["val_fpr95"] = float(np.mean([rec[f"val_fpr95_{k}"] for k in val_sets]))
    logger.info(
        "epoch %d/%d: loss %.4f, %.0f pairs/s, lr %.2e%s",
        rec["epoch"],
        config.epochs,
        rec["loss"],
        rec["pairs_per_s"],
        rec["lr"],
        "".join(f", val FPR95 {k} {100 * rec[f'val_fpr95_{k}']:.2f}%" for k in val_sets)
        + (" (of the moving average)" if run.ema is not None and val_sets else ""),
    )


def _finish_epoch(run: _Run, rec: dict[str, Any]) -> None:
    """Appends the epoch's record, and keeps a copy of the weights when the epoch is the best so far
    (lowest mean validation FPR95; without validation, the last epoch)."""
    run.history.append(rec)
    run.epoch = rec["epoch"]
    score = rec.get("val_fpr95", -float(rec["epoch"]))
    if score <= run.best["fpr95"]:
        weights = {k: v.detach().cpu().clone() for k, v in run.kept.state_dict().items()}
        run.best = {"epoch": rec["epoch"], "fpr95": float(score), "model": weights}


def _save_state(run: _Run, spath: Path, config: TrainConfig, magnification: float | None) -> None:
    """Writes the training state (what :func:`_restore_run` reads) atomically: to a ``.tmp`` file, then renamed."""
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        **({} if run.ema is None else {"ema": run.ema.state_dict()}),
        "epoch": run.epoch,
        "step": run.step,
        "train_seconds": run.train_seconds,
        "rng": _rng_state(run.rng),
        "torch_rng": torch.get_rng_state(),
        "jitter_rng": run.jitter_gen.get_state(),
        "config": asdict(config),
        "history": run.history,
        "best_epoch": run.best["epoch"],
        "best_fpr95": run.best["fpr95"],
        "best_model": run.best["model"],
        **({} if magnification is None else {"magnification": magnification}),
    }
    spath.parent.mkdir(parents=True, exist_ok=True)
    tmp = spath.with_name(spath.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(spath)


def _write_final(run: _Run, out: Path, meta: dict[str, Any], half: bool) -> Path:
    """Writes the best epoch's kept weights (else the last ones) with ``meta``; returns the checkpoint path."""
    model = run.kept
    if run.best["model"] is not None:
        model.load_state_dict(run.best["model"])
    ckpt = save_checkpoint(out, model.cpu(), meta, half=half)
    logger.info("wrote %s (epoch %d weights%s%s)", ckpt, run.best["epoch"], ", moving average" if run.ema is not None else "",
                ", float16" if half else "")  # fmt: skip
    return ckpt


def train(
    config: TrainConfig,
    data: Sequence[str | Path] | PairData,
    out: str | Path,
    val: str | Path | Sequence[str | Path] | None = None,
    resume: bool = False,
    half: bool = False,
    device: str | torch.device | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
    stop_after: int | None = None,
    time_budget_s: float | None = None,
) -> TrainResult:
    """Train a patch-comparison model on Brown-format patch sets.

    Args:
        config: hyper-parameters.
        data: training sets (folders, see :func:`~patchmatch.training.data.load_pair_data`) or already loaded :class:`PairData`.
        out: final checkpoint path; the training state goes to :func:`state_path` ``(out)``.
        val: validation set(s) (folders); FPR95 on their pooled random and hard pairs after
            each epoch; the epoch with the best mean of the two is the one saved.
        resume: continue from the training state (which must exist and hold the same config).
        half: write the final checkpoint in float16.
        device: ``"cpu"``, ``"cuda"``... (default: CUDA when available).
        progress: tqdm bar with loss and pairs/s.
        meta: extra metadata stored in the final checkpoint (e.g. the command line).
        stop_after: run at most this many epochs in this call (time-sliced training: the
            state is saved, and a later ``resume=True`` call continues the same schedule).
        time_budget_s: wall-clock budget of this call in seconds: no new epoch is started when
            the last one suggests it would end past the budget (the state is saved; resume
            later to finish the schedule). The final checkpoint is written either way.

    Returns:
        :class:`TrainResult`.

    Raises:
        TrainingStateError: ``resume`` without a state file, a state made with another config,
            or a state file present without ``resume``.
        PairSetError: unreadable pair sets.
        ValueError: ``contrastive`` loss with a model that has no ``describe``, or sets cut at
            different magnifications (the one they share is recorded in the checkpoint's
            ``meta["magnification"]``).
    """
    from ..device import resolve_device

    dev = resolve_device(device)
    out = Path(out)
    spath = state_path(out)
    _check_state_file(spath, resume)
    pair_data = data if isinstance(data, PairData) else load_pair_data(list(data), upright=config.upright, weights=config.source_weights)
    val_paths = _as_paths(val)
    val_sets = _val_sets(val_paths, config) if val_paths else {}
    magnification = _common_magnification(list(pair_data.sources) + val_paths)
    run = _new_run(config, dev, magnification, resume)
    if resume:
        _restore_run(run, spath, config, magnification)
    run.model.train()
    start_epoch = run.epoch
    end_epoch = config.epochs if stop_after is None else min(config.epochs, start_epoch + max(0, stop_after))
    t_start = time.time()
    while run.epoch < end_epoch and not _out_of_time(run, config, start_epoch, t_start, time_budget_s):
        rec = _train_epoch(run, pair_data, config, dev, progress)
        _validate(run, rec, val_sets, config, dev)
        _finish_epoch(run, rec)
        _save_state(run, spath, config, magnification)
    final_meta = {
        "train_config": asdict(config),
        "data": [str(p) for p in pair_data.sources],
        "val": [str(v) for v in val_paths],
        "history": run.history,
        "best_epoch": run.best["epoch"],
        **({"magnification": magnification} if magnification is not None else {}),
        **(meta or {}),
    }
    ckpt = _write_final(run, out, final_meta, half)
    return TrainResult(checkpoint=ckpt, state=spath, history=run.history, best_epoch=run.best["epoch"])


def config_from_kwargs(**kwargs: Any) -> TrainConfig:
    """A :class:`TrainConfig` from keyword arguments, refusing unknown ones.

    Raises:
        TypeError: an unknown field (names listed).
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(kwargs) - fields
    if unknown:
        raise TypeError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(fields)}")
    return TrainConfig(**kwargs)
