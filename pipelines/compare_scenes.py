"""``patchmatch compare`` on every scene of the structure-from-motion table in docs/benchmarks.md, one table.

For each scene, runs ``python -m patchmatch.cli compare DATA/scenes/SCENE/images OUT/SCENE`` (pycolmap's own
SIFT pipeline and patchmatch on the same images, one scene after the other; a scene whose ``compare.json``
exists is read back, not run again; options after the known ones go to ``compare``, e.g. ``--precision fp32``)
and prints one Markdown table of the three methods per scene, with the machine it ran on.

Usage::

    python pipelines/compare_scenes.py OUT [--scenes castle-P19 entry-P10 ...] [--data ../shared/data]
        [--table-only] [compare options ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from patchmatch.benchmark import machine

#: the ground-truth scenes (test scenes, then the training scenes' twins, then the training scenes) and lund
SCENES = ("castle-P19", "entry-P10", "temple-ring", "Herz-Jesus-P8", "lund", "Herz-Jesus-P25", "castle-P30")
METHODS = {"colmap-sift": "pycolmap SIFT", "patchmatch": "patchmatch",
           "patchmatch-without-network": "patchmatch without the network"}
HEADER = ("| scene | method | registered images | points | mean track length (views) | mean reprojection error (px) "
          "| time (s) | rotation error median (°) | rotation AUC @0.5° / 1° / 2° |")  # fmt: skip



def table_rows(scene: str, result: dict) -> list[str]:
    """Markdown rows (pycolmap SIFT, patchmatch, patchmatch without the network) of one scene's
    ``compare.json`` (a method it lacks, from an older run, is left out)."""
    rows = []
    for key, label in METHODS.items():
        if key not in result["methods"]:
            continue
        m = result["methods"][key]
        pose = m.get("pose") or {}
        median = pose.get("rotation_error_median_deg")
        auc = pose.get("rotation_auc") or {}
        cells = [scene, label, f"{m['registered']}/{result['images']}", str(m["points"]), f"{m['mean_track_length']:.2f}",
                 f"{m['mean_reprojection_error']:.2f}", f"{float(m['seconds']):.1f}",
                 "–" if median is None else f"{median:.4g}",
                 " / ".join(f"{auc[t]:.2f}" for t in ("0.5", "1", "2")) if auc else "–"]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def run_scene(images: Path, out: Path, extra: list[str]) -> dict:
    """``compare.json`` of one scene, running ``patchmatch compare`` first where there is none."""
    result = out / "compare.json"
    if not result.is_file():
        command = [sys.executable, "-m", "patchmatch.cli", "compare", str(images), str(out), *extra]
        subprocess.run(command, check=True)
    return json.loads(result.read_text())


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="one compare folder per scene is made here")
    ap.add_argument("--scenes", nargs="+", default=list(SCENES))
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data", help="shared data folder")
    ap.add_argument("--table-only", action="store_true", help="print the table of the scenes already compared")
    args, extra = ap.parse_known_args(argv)
    lines = [HEADER, "|---" * HEADER.count(" | ") + "|---|"]
    for scene in args.scenes:
        images, out = args.data / "scenes" / scene / "images", args.out / scene
        if args.table_only and not (out / "compare.json").is_file():
            continue
        if not images.is_dir():
            print(f"error: {images} not found (see shared/data/README.md)", file=sys.stderr)
            return 2
        lines += table_rows(scene, run_scene(images, out, extra))
    print("\n".join(lines))
    print(f"\nmachine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
