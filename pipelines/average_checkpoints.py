"""Averages the weights of checkpoints of one model ("model soup", Wortsman et al., ICML 2022).

Meaningful for runs fine-tuned from the same weights (they stay in one basin of the loss); the
average of independently initialised runs is not a working network. The model card's "Tried at
stop 16" section measured it. The output is an ordinary checkpoint (float16, like the shipped
weights) whose metadata lists its ingredients.

Usage::

    python pipelines/average_checkpoints.py A.pt B.pt [C.pt ...] --out soup.pt [--overwrite]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from patchmatch.models import CheckpointError, load_checkpoint, model_name, save_checkpoint, trained_magnification

logger = logging.getLogger("average_checkpoints")


def _describe(model: torch.nn.Module) -> str:
    config = getattr(model, "config", None)
    return model_name(model) + (f" {config}" if config is not None else "")


def average_checkpoints(paths: list[Path]) -> tuple[torch.nn.Module, dict]:
    """The mean of the checkpoints' float weights, as a model of theirs, and metadata naming them.

    Args:
        paths: two or more checkpoints (:func:`patchmatch.models.save_checkpoint`) of one model.

    Returns:
        ``(model, meta)``: the averaged model (float32) and metadata: the ingredients' resolved
        paths (``averaged_from``), their training configurations and kept epochs (``ingredients``)
        and the patch magnification they share.

    Raises:
        CheckpointError: an unreadable checkpoint (the message names it).
        ValueError: fewer than two checkpoints, one file given twice, or checkpoints of different
            models, configurations, weight shapes or patch magnifications (each file named).
    """
    resolved = [Path(p).resolve() for p in paths]
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    seen = {}
    for p, r in zip(paths, resolved):
        if r in seen:
            raise ValueError(f"{p}: given twice (also as {seen[r]}); each checkpoint counts once")
        seen[r] = p
    loaded = [load_checkpoint(p) for p in paths]
    models = [m for m, _ in loaded]
    states = [m.state_dict() for m in models]
    first = states[0]
    for p, m, other in zip(paths[1:], models[1:], states[1:]):
        if _describe(m) != _describe(models[0]):
            raise ValueError(f"{paths[0]} holds {_describe(models[0])}, {p} holds {_describe(m)}: checkpoints of different models or configurations cannot be averaged")
        bad = next((k for k in first if other[k].shape != first[k].shape), None)
        if bad is not None:
            raise ValueError(f"{paths[0]} and {p} differ in the shape of {bad}: {tuple(first[bad].shape)} vs {tuple(other[bad].shape)}")
    each = [trained_magnification(meta, p) for p, (_, meta) in zip(paths, loaded)]
    mags = set(each)
    if len(mags) > 1:
        listed = ", ".join(f"{p} ({m:g})" for p, m in zip(paths, each))
        raise ValueError(f"the checkpoints were trained on patches of different magnifications: {listed}")
    starts = {str(meta.get("train_config", {}).get("init")) for _, meta in loaded}
    if len(starts) > 1:
        logger.warning("the checkpoints did not start from the same weights (--init: %s): an average of runs from "
                       "different starting points is usually not a working network; evaluate it", ", ".join(sorted(starts)))  # fmt: skip
    soup = models[0]
    soup.load_state_dict({k: sum(s[k] for s in states) / len(states) if v.is_floating_point() else v for k, v in first.items()})
    ingredients = [{"path": str(r), "train_config": meta.get("train_config"), "best_epoch": meta.get("best_epoch"),
                    "data": meta.get("data")} for r, (_, meta) in zip(resolved, loaded)]  # fmt: skip
    return soup, {"averaged_from": [str(r) for r in resolved], "ingredients": ingredients, "magnification": mags.pop()}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path, help="two or more checkpoints of one model (patchmatch train outputs)")
    ap.add_argument("--out", type=Path, required=True, help="the averaged checkpoint (.pt; missing folders are created)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = ap.parse_args(argv)
    if args.out.is_dir():
        print(f"error: --out {args.out} is a folder; give a file name (e.g. {args.out / 'soup.pt'})", file=sys.stderr)
        return 2
    if args.out.exists() and not args.overwrite:
        print(f"error: {args.out} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    try:
        soup, meta = average_checkpoints(args.checkpoints)
        save_checkpoint(args.out, soup, meta, half=True)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # --out not writable, a file where a folder should be, a full disk
        print(f"error: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: the mean of {len(args.checkpoints)} checkpoints of {model_name(soup)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
