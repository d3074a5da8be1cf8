"""Run-to-run spread of the pose accuracy in `patchmatch compare`: both databases re-mapped with several seeds.

COLMAP's incremental mapper is chaotic in small changes (RANSAC samples, initial pair, multi-threaded
bundle adjustment): the same database mapped with another random seed can move the median relative
rotation error by a few hundredths of a degree, the size of the gaps between SIFT and patchmatch
on the easy scenes. This script maps the SIFT and the patchmatch database of a finished
`patchmatch compare` folder with each seed, each with its own mapper settings (COLMAP's for SIFT,
patchmatch's with its fallbacks), and prints the median rotation error per seed and their median.

Usage::

    python pipelines/mapper_seeds.py outputs/compare6/castle-P19 [--seeds 0 1 2] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

from patchmatch import colmap
from patchmatch.evaluation.pose import evaluate_poses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("compare_dir", type=Path, help="a finished `patchmatch compare` output folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    summary_path = args.compare_dir / "compare.json"
    if not summary_path.is_file():
        print(f"error: {summary_path} not found (run `patchmatch compare IMAGES {args.compare_dir}` first)", file=sys.stderr)
        return 2
    summary = json.loads(summary_path.read_text())
    images, ground_truth = Path(summary["images_dir"]), summary.get("ground_truth")
    if not ground_truth:
        print(f"error: {summary_path} has no ground truth to measure poses against", file=sys.stderr)
        return 2
    colmap.set_verbosity(False)
    ours = colmap.MapperConfig()
    sift = dataclasses.replace(ours, fixed_intrinsics_fallback=False, forward_motion_fallback=False, retry_seeds=0,
                               max_reproj_error=4.0)  # what `patchmatch compare` uses for its SIFT run
    rows = {}
    for method, database, config in [("colmap-sift", args.compare_dir / "colmap-sift" / "database.db", sift),
                                     ("patchmatch", args.compare_dir / "patchmatch" / "database.db", ours)]:
        errors = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                rec = colmap.incremental_mapping(database, images, Path(tmp), dataclasses.replace(config, random_seed=seed))
            poses = colmap.reconstruction_poses(rec) if rec is not None else {}
            errors.append(evaluate_poses(poses, ground_truth)["rotation_error_median_deg"])
            print(f"{method:<12} seed {seed}: registered {len(poses)}, rotation error median {errors[-1]:.3f}°", flush=True)
        rows[method] = {"seeds": args.seeds, "rotation_error_median_deg": errors, "median_over_seeds": statistics.median(errors)}
    print(f"\n{args.compare_dir}: median over seeds {args.seeds}: " + ", ".join(
        f"{m} {r['median_over_seeds']:.3f}° (range {min(r['rotation_error_median_deg']):.3f}–{max(r['rotation_error_median_deg']):.3f})"
        for m, r in rows.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
