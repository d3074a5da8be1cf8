"""Pictures for checking patch data by eye: real Brown patches as the reader returns them, and
positive pairs of a ground-truth patch set (random ones, and those whose SIFT descriptors are the
farthest apart: the ones a descriptor-made benchmark would have missed, or a geometry error).

Usage::

    python pipelines/patch_figures.py [--brown ../shared/data/brown/notredame-sample]
        [--set outputs/pairs/entry-P10-test] [--out outputs/figures]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from patchmatch.datasets.brown import read_patches
from patchmatch.datasets.patchset import SIFT_FILE, find_pair_files, variant_root
from patchmatch.viz import patch_pair_grid, save_png


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brown", type=Path, default=root.parent / "shared" / "data" / "brown" / "notredame-sample")
    ap.add_argument("--set", type=Path, action="append", help="patch set(s) (default: the test sets in outputs/pairs)")
    ap.add_argument("--out", type=Path, default=root / "outputs" / "figures")
    ap.add_argument("--count", type=int, default=24, help="pairs per picture")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    if not args.brown.is_dir():
        print(f"{args.brown}: not found, no picture of Brown patches")
    else:
        p = read_patches(args.brown)
        print(f"{args.brown}: {len(p)} patches read ({len(list(args.brown.glob('patches*.bmp')))} bitmaps)")
        first = save_png(args.out / "brown_first_patches.png", patch_pair_grid(p[:32], cols=8,
                         captions=[str(i) for i in range(32)]))  # fmt: skip
        print(f"  patches 0..31 -> {first}")
    sets = args.set or sorted((root / "outputs" / "pairs").glob("*-test"))
    for s in sets:
        from patchmatch.datasets.brown import BrownDataset, BrownFormatError

        try:
            ds = BrownDataset(variant_root(s))
        except (FileNotFoundError, BrownFormatError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        random_files = find_pair_files(ds.root)["random"]
        if not random_files:
            print(f"error: {ds.root}: no m50_*.txt pair file", file=sys.stderr)
            return 2
        pr = ds.pairs(random_files[0].name)
        pos = pr.index[pr.labels]
        sel = pos[rng.choice(len(pos), min(args.count, len(pos)), replace=False)]
        out = save_png(args.out / f"{s.name}_positives_random.png", patch_pair_grid(ds.patches, sel, cols=6))
        if not (ds.root / SIFT_FILE).is_file():
            print(f"{s.name}: {len(pos)} positives -> {out} (no {SIFT_FILE}: not a make-patches set, no SIFT picture)")
            continue
        desc = np.load(ds.root / SIFT_FILE).astype(np.float32)
        dist = np.linalg.norm(desc[pos[:, 0]] - desc[pos[:, 1]], axis=1)
        far = np.argsort(-dist)[: args.count]
        img = ds.interest[:, 0].astype(int)
        caps = [f"d={dist[k]:.0f} i{img[pos[k, 0]]}-{img[pos[k, 1]]}" for k in far]
        out2 = save_png(args.out / f"{s.name}_positives_far_sift.png", patch_pair_grid(ds.patches, pos[far], cols=6, captions=caps))
        summary = json.loads((s / "summary.json").read_text())
        print(f"{s.name}: {summary['num_tracks']} tracks, {len(pos)} positives; SIFT distance of positives "
              f"median {np.median(dist):.0f}, 95th pct {np.percentile(dist, 95):.0f}, max {dist.max():.0f} "
              f"-> {out}, {out2}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
