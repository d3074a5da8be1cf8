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
import sys
from pathlib import Path

import torch

from patchmatch.models import CheckpointError, load_checkpoint, model_name, save_checkpoint


def average_checkpoints(paths: list[Path]) -> tuple[torch.nn.Module, dict]:
    """The mean of the checkpoints' float weights, as a model of theirs, and metadata naming them.

    Raises:
        CheckpointError: an unreadable checkpoint.
        ValueError: fewer than two checkpoints, or checkpoints of different models or shapes.
    """
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    models = [load_checkpoint(p)[0] for p in paths]
    names = {model_name(m) for m in models}
    shapes = {tuple((k, tuple(v.shape)) for k, v in m.state_dict().items()) for m in models}
    if len(names) > 1 or len(shapes) > 1:
        raise ValueError(f"checkpoints of different models or configurations cannot be averaged: {sorted(names)}")
    states = [m.state_dict() for m in models]
    soup = models[0]
    soup.load_state_dict({k: sum(s[k] for s in states) / len(states) if v.is_floating_point() else v for k, v in states[0].items()})
    return soup, {"averaged_from": [str(p) for p in paths]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = ap.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        print(f"error: {args.out} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    try:
        soup, meta = average_checkpoints(args.checkpoints)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_checkpoint(args.out, soup, meta, half=True)
    print(f"wrote {args.out}: the mean of {len(args.checkpoints)} checkpoints of {model_name(soup)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
