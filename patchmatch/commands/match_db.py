"""``patchmatch match DATABASE IMAGES``: replace COLMAP's matching step in an existing project.

Reads the database's keypoints (with affine shapes) and descriptors, crops patches from them,
scores candidates with the network, writes matches and two-view geometries into the database.
Then run ``colmap mapper`` (or ``pycolmap.incremental_mapping``) on it as usual.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .options import add_executor_argument, add_scorer_arguments, check_output_file, is_report, pairs_spec, set_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("match", help="match an existing COLMAP database with the patch network", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("database", type=Path, help="COLMAP database with keypoints and descriptors")
    p.add_argument("images", type=Path, help="image folder the database's names are relative to")
    p.add_argument("--pairs", default="exhaustive", metavar="SPEC",
                   help="exhaustive|sequential:N|retrieval:N|PATH of pairs")
    add_scorer_arguments(p)
    add_executor_argument(p)
    p.add_argument("--overwrite", action="store_true", help="replace matches of pairs that already hold some (where new matches are found)")
    p.add_argument("--report", type=Path, default=None, metavar="JSON", help="write the report as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..colmap import set_verbosity
    from ..database_matching import DatabaseMatchConfig, match_database
    from ..executors import make_executor
    from ..stages.match import load_scorer

    set_verbosity(bool(getattr(args, "verbose", False)))  # COLMAP's own log lines only with -v
    set_threads(args.threads)
    if args.report is not None:
        check_output_file(args.report, "--report", inputs=(args.database, args.images), replaceable=is_report,
                          what="a patchmatch report")  # fmt: skip
    config = DatabaseMatchConfig(pairs=pairs_spec(args.pairs), threads=args.threads)
    try:
        with make_executor(args.executor) as executor:  # the executor decides where the network scores
            scorer, spec = load_scorer(args.weights, args.device, args.precision, args.tta, executor)
            report = match_database(args.database, args.images, config, scorer, overwrite=args.overwrite,
                                    progress=not args.quiet, executor=executor, spec=spec)  # fmt: skip
    except BaseException as error:  # the report says so: an earlier run's report never outlives a stopped one
        if args.report is not None:
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            args.report.write_text(json.dumps({"status": status, "database": str(args.database),
                                               "reason": f"{type(error).__name__}: {error}"}, indent=2))  # fmt: skip
        raise
    unusable = bool(report["images"]) and len(report["bad_images"]) == report["images"]
    report = {"status": "failed" if unusable else "complete", **report}
    if unusable:
        name, why = report["bad_images"][0]
        report["reason"] = (f"none of the {report['images']} images of {args.database} could be used in {args.images} "
                            f"(e.g. {name}: {why}); nothing was matched")  # fmt: skip
    after = report["database_after"]
    print(f"{report['matched_pairs']} of {report['pairs']} pairs matched ({report['matches']} matches, "
          f"{report['candidates_scored']} candidates compared by the network), "
          f"{report['verified_existing_pairs']} with earlier matches verified, {len(report['skipped_pairs'])} skipped; "
          f"database now: {after['verified_pairs']} two-view geometries, {after['inlier_matches']} inlier matches")
    for a, b, why in report["skipped_pairs"][:10]:
        print(f"  skipped {a} {b}: {why}")
    if len(report["skipped_pairs"]) > 10:
        more = f"in {args.report}" if args.report else "with --report JSON"
        print(f"  ... {len(report['skipped_pairs']) - 10} more (all of them {more})")
    if args.report:
        args.report.write_text(json.dumps(report, indent=2))
    if unusable:
        print(f"error: {report['reason']}", file=sys.stderr)
        return 1
    return 0
