"""Command-line options shared by the commands that match images (``sfm``, ``compare``, ``match``, ``match-pair``)."""

from __future__ import annotations

import argparse
import dataclasses

from ..matching import MatchConfig
from ..scoring import PRECISIONS, TTA

_DEFAULTS = MatchConfig()


def add_network_arguments(p: argparse.ArgumentParser) -> None:
    """Adds ``--precision`` and ``--tta`` (see :class:`patchmatch.scoring.PatchScorer`)."""
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="network precision (default auto: int8 on x86 CPUs where the weights have an int8 file, "
                        "else fp32; fp16 on a GPU)")
    p.add_argument("--tta", default="none", choices=list(TTA),
                   help="test-time augmentation: score each pair as the mean over swap (2 passes), rot90 (4) or dihedral "
                        "(8: rotations and mirror images) transforms of both patches; costs that many times the network "
                        "time (default none; the model card measures each)")


def add_match_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the :class:`~patchmatch.matching.MatchConfig` options (defaults from the dataclass)."""
    g = p.add_argument_group("match decision")
    g.add_argument("-k", type=int, default=_DEFAULTS.k, help=f"descriptor neighbours per keypoint and direction scored by the network (default {_DEFAULTS.k})")
    g.add_argument("--max-ratio", type=float, default=_DEFAULTS.max_ratio, help=f"candidate if distance < ratio × (k+1)-th neighbour's (default {_DEFAULTS.max_ratio})")
    g.add_argument("--min-score", type=float, default=_DEFAULTS.min_score, help=f"minimum network score of a match (default {_DEFAULTS.min_score})")
    g.add_argument("--min-margin", type=float, default=_DEFAULTS.min_margin, help="minimum score gap to the second-best candidate (default: off)")
    g.add_argument("--no-mutual", action="store_true", help="do not require mutual best scores")
    g.add_argument("--min-overlap", type=int, default=_DEFAULTS.min_overlap, help=f"skip image pairs with fewer mutual ratio-test descriptor neighbours (default {_DEFAULTS.min_overlap}; 0 = score every pair)")
    g.add_argument("--upright", action="store_true", help="upright patches (ignore keypoint orientation)")
    g.add_argument("--strong-overlap", type=int, default=_DEFAULTS.strong_overlap,
                   help=f"score image pairs with at least this descriptor overlap (default {_DEFAULTS.strong_overlap})")
    g.add_argument("--min-partners", type=int, default=_DEFAULTS.min_partners,
                   help=f"... and each image's best pairs above --min-overlap, this many (default {_DEFAULTS.min_partners})")
    g.add_argument("--accept-ratio", type=float, default=_DEFAULTS.accept_ratio,
                   help="keep mutual descriptor neighbours passing this ratio test without the network; it decides the rest"
                        f" (default {_DEFAULTS.accept_ratio}; 0: the network decides every match)")
    g.add_argument("--unselected", choices=["descriptor", "none"], default=_DEFAULTS.unselected,
                   help="image pairs not scored by the network get their descriptor matches at --accept-ratio"
                        f" (SIFT's own) or none (default {_DEFAULTS.unselected})")
    g.add_argument("--strong-pair-accepted", type=int, default=_DEFAULTS.strong_pair_accepted,
                   help="image pairs with at least this many --accept-ratio matches keep them alone, without the network"
                        f" (default {_DEFAULTS.strong_pair_accepted}; 0: the network scores every selected pair)")


def match_config_from_args(args: argparse.Namespace) -> MatchConfig:
    """The :class:`MatchConfig` of parsed :func:`add_match_arguments` options.

    Raises:
        ValueError: an option out of range (named by its flag).
    """
    if not 0 <= args.accept_ratio <= 1 if args.accept_ratio is not None else False:
        raise ValueError(f"--accept-ratio must be in [0, 1] (0 = off), got {args.accept_ratio}")
    if args.strong_pair_accepted is not None and args.strong_pair_accepted < 0:
        raise ValueError(f"--strong-pair-accepted must be >= 0 (0 = off), got {args.strong_pair_accepted}")
    return dataclasses.replace(
        _DEFAULTS, k=args.k, max_ratio=args.max_ratio, min_score=args.min_score, min_margin=args.min_margin,
        mutual=not args.no_mutual, min_overlap=args.min_overlap, upright=args.upright, accept_ratio=args.accept_ratio or None,
        strong_overlap=args.strong_overlap, min_partners=args.min_partners, unselected=args.unselected,
        strong_pair_accepted=args.strong_pair_accepted or None,
    )


def pairs_spec(value: str) -> str:
    """A ``--pairs`` value as :func:`patchmatch.pairs.make_pairs` takes it: a bare path is a pairs file."""
    if value == "exhaustive" or value.startswith(("sequential:", "retrieval:", "file:")):
        return value
    return f"file:{value}"
