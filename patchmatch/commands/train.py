"""``patchmatch train --data SET [SET ...] --out CKPT``: train a patch-comparison network.

Balanced batches (half positives, half negatives, ``--hard-fraction`` of them hard) from
Brown-format patch sets (``patchmatch make-patches`` output, or Liberty/Notre Dame/Yosemite); hinge loss (Zagoruyko & Komodakis, CVPR 2015);
validation FPR95 after each epoch; the training state is saved after each epoch next to
``--out`` (``<name>.state.pt``) so that ``--resume`` continues the same run.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from .options import check_output_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..training.loop import JITTERS, LOSSES, OPTIMIZERS, TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a patch-comparison network on Brown-format patch sets", description=__doc__)
    p.add_argument("--data", type=Path, nargs="+", required=True, help="training sets: make-patches output folders or Brown folders (liberty, ...); sets of one patch "
                        "magnification, recorded in the checkpoint (sfm and match then cut patches at it)")
    p.add_argument("--data-weights", type=float, nargs="+", metavar="W",
                   help="one share per --data set: batches draw from the sets in these proportions (default: by size)")
    p.add_argument("--val", type=Path, nargs="+", help="validation set(s), same formats: FPR95 each epoch, best epoch kept")
    p.add_argument("--out", type=Path, required=True, help="final checkpoint (.pt)")
    p.add_argument("--model", default=d.model, help="2ch2stream, 2ch, 2chdeep, siam, pseudo-siam, siam-2stream")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch)
    p.add_argument("--batch", type=int, default=d.batch_size, help="pairs per step (even)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--final-lr-fraction", type=float, default=d.final_lr_fraction)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--hard-fraction", type=float, default=d.hard_fraction, help="share of negatives that are hard")
    p.add_argument("--no-augment", action="store_true", help="no flips / rotations / swaps")
    p.add_argument(
        "--jitter",
        choices=JITTERS,
        default=d.jitter,
        help="independent jitter of each patch: photometric (contrast, gamma, noise), mild (also rotation ±4°, "
        "scale ±5%%, shift ±1 px), full (±8°, ±10%%, ±2 px) or wide (±10°, ±15%%, ±3 px)",
    )
    p.add_argument(
        "--mine-factor",
        type=int,
        default=d.mine_factor,
        help="hard-negative mining by the model: score this many times the random negatives, keep the highest (1 = off)",
    )
    p.add_argument("--ema", type=float, default=d.ema_decay, metavar="DECAY",
                   help="keep an exponential moving average of the weights with this decay (e.g. 0.999) and validate "
                        "and write it instead of the live weights (default 0: off; --resume needs the same value)")
    p.add_argument("--init", type=Path, help="start from this checkpoint's weights (fine-tuning; same --model)")
    p.add_argument("--distill", choices=["none", "swap", "rot90", "dihedral"], default=d.distill,
                   help="self-distillation: add the squared difference to the --init weights' scores averaged over this "
                        "test-time augmentation (2, 4 or 8 passes per training pair; default none)")
    p.add_argument("--distill-weight", type=float, default=d.distill_weight, help="weight of the distillation term, a finite number > 0 (default 1)")
    p.add_argument("--upright", action="store_true", help="train on upright patches")
    p.add_argument("--loss", choices=LOSSES, default=d.loss)
    p.add_argument("--val-pairs", type=int, default=d.val_pairs, help="validation pairs per kind")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--schedule-minutes", type=float, default=None,
                   help="cosine learning rate over this many minutes of training; stop after it (epochs = upper bound)")
    p.add_argument("--schedule-steps", type=int, default=None, metavar="N",
                   help="cosine learning rate over N steps instead of epochs x steps-per-epoch (stop early at a chosen epoch)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--fp16", action="store_true", help="write the final checkpoint in float16")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast forward (faster on AMX/AVX512-BF16 CPUs and GPUs)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.state.pt")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop after N epochs of this run (resume later)")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget of this run; stops between epochs (resume later)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..training.loop import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    from ..models.registry import MODELS

    if args.model not in MODELS:
        raise ValueError(f"--model {args.model!r}: unknown; available: {', '.join(MODELS)}")
    check_output_file(args.out, "--out", inputs=[*args.data, *(args.val or []), *([args.init] if args.init else [])])
    if args.out.exists() and not args.resume:
        raise FileExistsError(f"{args.out} exists; remove it or pass --resume.")
    both = sorted({str(v) for v in args.val or [] if any(v.resolve() == d.resolve() for d in args.data)})
    if both:
        logging.getLogger(__name__).warning(
            "validation set(s) %s are also training sets: their FPR95 measures fitting, not generalisation, and "
            "the epoch kept is chosen by it", ", ".join(both))  # fmt: skip
    config = TrainConfig(
        model=args.model,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch,
        optimizer=args.optimizer,
        lr=args.lr,
        final_lr_fraction=args.final_lr_fraction,
        weight_decay=args.weight_decay,
        hard_fraction=args.hard_fraction,
        augment=not args.no_augment,
        jitter=args.jitter,
        mine_factor=args.mine_factor,
        upright=args.upright,
        loss=args.loss,
        val_pairs=args.val_pairs,
        seed=args.seed,
        schedule_minutes=args.schedule_minutes,
        schedule_steps=args.schedule_steps,
        bf16=args.bf16,
        init=None if args.init is None else str(args.init),
        ema_decay=args.ema,
        distill=args.distill,
        distill_weight=args.distill_weight,
        source_weights=None if args.data_weights is None else tuple(args.data_weights),
    )
    meta = {"command": "patchmatch " + " ".join(shlex.quote(a) for a in sys.argv[1:]), "threads": torch.get_num_threads()}
    try:
        res = train(config, args.data, args.out, val=args.val, resume=args.resume, half=args.fp16,
                    device=args.device, progress=not args.quiet, meta=meta, stop_after=args.stop_after,
                    time_budget_s=None if args.max_minutes is None else 60.0 * args.max_minutes)
    except KeyboardInterrupt:
        from ..training.loop import state_path

        state = state_path(args.out)
        again = "the same command" if args.resume else "the same command with --resume"
        hint = (f"rerun {again} to continue from {state}'s last epoch" if state.is_file()
                else "no epoch had finished: rerun the same command to start again")  # fmt: skip
        print(f"Interrupted; {hint}.", file=sys.stderr)
        return 130
    last = res.history[-1] if res.history else {}
    print(f"wrote {res.checkpoint} (epoch {res.best_epoch}); last epoch: "
          + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float)))
    return 0
