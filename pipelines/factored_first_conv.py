"""Measures the "first convolution once per patch" rewrite of 2ch2stream against the scorer's path.

The first convolution of each stream is linear in the two stacked patches: its response is the
response of the first patch to the channel-0 filters plus that of the second patch to the
channel-1 filters. This script computes those per unique patch of each batch, sums them per pair,
then runs the rest of the network (max-pool → ReLU in chunks of 32, as ``run_stream`` does), and
times it against the plain model on the same pairs. Measured (1 thread, 2,048 random pairs over
1,024 patches, batch 128): plain 1,448 / 1,417 pairs/s, factored 476 / 462, same scores: the
rewrite is not used (see the README, scoring speed).

Usage::

    python pipelines/factored_first_conv.py [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from patchmatch.models.layers import central_surround, normalize_patches
from patchmatch.scoring import PatchScorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = PatchScorer.load(precision="fp32").model.eval()
    rng = np.random.default_rng(0)
    num_patches, num_pairs, batch, chunk = 1024, 2048, 128, 32
    patches = torch.from_numpy(rng.integers(0, 256, (num_patches, 64, 64), dtype=np.uint8))
    pairs = rng.integers(0, num_patches, (num_pairs, 2))
    index = torch.from_numpy(pairs[np.argsort(pairs[:, 0])])

    def plain() -> torch.Tensor:
        out = []
        for s in range(0, num_pairs, batch):
            i, j = index[s : s + batch].unbind(1)
            out.append(model(torch.stack([patches[i], patches[j]], 1).float()))
        return torch.cat(out)

    def factored() -> torch.Tensor:
        out = []
        for s in range(0, num_pairs, batch):
            i, j = index[s : s + batch].unbind(1)
            ui, ii = torch.unique(i, return_inverse=True)
            uj, jj = torch.unique(j, return_inverse=True)
            c0, s0 = central_surround(normalize_patches(patches[ui][:, None].float()))
            c1, s1 = central_surround(normalize_patches(patches[uj][:, None].float()))
            feats = []
            for stream, a, b in [(model.central, c0, c1), (model.surround, s0, s1)]:
                conv = stream[0]
                ra = F.conv2d(a, conv.weight[:, 0:1])
                rb = F.conv2d(b, conv.weight[:, 1:2], conv.bias)
                parts = [torch.relu_(F.max_pool2d(ra[ii[k : k + chunk]] + rb[jj[k : k + chunk]], 2, 2))
                         for k in range(0, len(ii), chunk)]  # fmt: skip
                feats.append(stream[3:](torch.cat(parts)).flatten(1))
            out.append(model.decision(torch.cat(feats, 1)).squeeze(1))
        return torch.cat(out)

    with torch.inference_mode():
        print(f"max |score difference| {(plain() - factored()).abs().max().item():.2e}")
        for f in [plain, factored, plain, factored]:
            t = time.perf_counter()
            f()
            print(f"{f.__name__:<9} {num_pairs / (time.perf_counter() - t):8,.0f} pairs/s")


if __name__ == "__main__":
    main()
