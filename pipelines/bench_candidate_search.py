"""Times the descriptor search of every image pair of a scene (the candidate search that
``patchmatch sfm`` runs before the network): one search at a time on all PyTorch threads, against
the searches side by side, one per thread (``matching._search_pairs``, the default). Prints a
table and writes JSON.

Usage::

    python pipelines/bench_candidate_search.py [--scene castle-P19] [--data ../shared/data] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from patchmatch.features import detect
from patchmatch.images import list_images, read_gray
from patchmatch.matching import MatchConfig, _search_pairs, search_pair


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default="castle-P19")
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    ap.add_argument("--max-keypoints", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    images = args.data / "scenes" / args.scene / "images"
    if not images.is_dir():
        print(f"error: {images} not found (see shared/data/README.md)", file=sys.stderr)
        return 2
    names = list_images(images)
    features = {n: detect(read_gray(images / n, 3200)[0], max_keypoints=args.max_keypoints) for n in names}
    pairs = list(itertools.combinations(names, 2))
    config = MatchConfig()
    threads = torch.get_num_threads()
    rows = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        serial = [search_pair(features[a], features[b], config) for a, b in pairs]
        rows.append({"mode": f"one at a time, {threads} threads", "seconds": time.perf_counter() - t})
        t = time.perf_counter()
        side = [found for _, found in _search_pairs(iter(pairs), features, config)]
        rows.append({"mode": f"{threads} side by side, 1 thread each", "seconds": time.perf_counter() - t})
        assert all(np.array_equal(x.pairs, y.pairs) and x.overlap == y.overlap for x, y in zip(serial, side))
    print(f"{args.scene}: {len(names)} images, {len(pairs)} image pairs, {args.max_keypoints} keypoints; same candidates both ways")
    print("| mode | seconds |\n|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['seconds']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"scene": args.scene, "pairs": len(pairs), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
