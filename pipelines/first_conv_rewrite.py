"""Measures the exact first-convolution rewrite of the 2-channel models on this machine.

The first convolution of each stream is linear in the two stacked patches:
``conv([p0; p1]) = conv_0(p0) + conv_1(p1) + b``, so its response could be computed once per
patch and summed per pair. This script checks that the rewrite is exact and times it against the
direct convolution for one batch of pairs drawn from 4096 patches per image (as ``patchmatch sfm``
scores them), and prints the memory the per-patch responses take.

Usage::

    python pipelines/first_conv_rewrite.py [--patches 4096] [--batch 128]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patches", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 96, 5).eval()  # the first convolution of a 2ch2stream stream (32×32 input)
    n, b = args.patches, args.batch
    p0, p1 = torch.randn(n, 1, 32, 32), torch.randn(n, 1, 32, 32)
    i, j = torch.randint(0, n, (b,)), torch.randint(0, n, (b,))
    with torch.inference_mode():
        r0 = torch.nn.functional.conv2d(p0, conv.weight[:, :1])  # (N, 96, 28, 28) per-patch responses
        r1 = torch.nn.functional.conv2d(p1, conv.weight[:, 1:])

        def direct():
            return conv(torch.cat([p0[i], p1[j]], 1).contiguous(memory_format=torch.channels_last))

        def rewrite():
            return r0[i] + r1[j] + conv.bias[None, :, None, None]

        print(f"max |direct - rewrite| = {(direct() - rewrite()).abs().max().item():.2e}")
        for f, name in ((direct, "direct first convolution"), (rewrite, "per-patch responses, gathered and summed")):
            f()
            t = time.perf_counter()
            for _ in range(args.repeats):
                f()
            print(f"{name}: {(time.perf_counter() - t) / args.repeats * 1000:.2f} ms per batch of {b} pairs")
    print(f"per-patch responses: {r0.numel() * 4 / 1e6:.0f} MB per stream and image for {n} patches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
