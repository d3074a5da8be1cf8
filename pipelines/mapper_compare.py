"""The incremental mapper beside the global one (GLOMAP) on the same matches, per scene.

For each scene, ``patchmatch sfm DATA/scenes/SCENE/images OUT/SCENE --ground-truth ...`` runs with
``--mapper incremental``, then again in the same OUT with ``--mapper global`` (features and matches are
reused; database, verification and mapping run again). Each run's report is kept as
``OUT/SCENE/report-<mapper>.json``; a scene whose two reports exist is read back, not run again.
Prints one Markdown table (mapping time, registered images, models, rotation error median, images
the checks rejected) with the machine it ran on. Options after the known ones go to ``sfm``.

Usage::

    python pipelines/mapper_compare.py OUT [--scenes temple-ring entry-P10] [--data ../shared/data] [sfm options ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from patchmatch.benchmark import machine

SCENES = ("temple-ring", "entry-P10")
MAPPERS = ("incremental", "global")
HEADER = ("| scene | mapper | registered images | models | rotation error median (°) | mapping time (s) "
          "| rejected by the checks |")  # fmt: skip


def run_scene(images: Path, cameras: Path, out: Path, extra: list[str]) -> dict[str, dict]:
    """The two reports of one scene, running ``sfm`` where one is missing."""
    reports = {}
    for mapper in MAPPERS:
        kept = out / f"report-{mapper}.json"
        if not kept.is_file():
            command = [sys.executable, "-m", "patchmatch.cli", "-q", "sfm", str(images), str(out / "sfm"),
                       "--mapper", mapper, "--ground-truth", str(cameras), *extra]  # fmt: skip
            subprocess.run(command, check=False)
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(out / "sfm" / "report.json", kept)
        reports[mapper] = json.loads(kept.read_text())
    return reports


def rows(scene: str, reports: dict[str, dict]) -> list[str]:
    lines = []
    for mapper, report in reports.items():
        median = (report.get("pose") or {}).get("rotation_error_median_deg")
        cells = [scene, mapper, f"{report['registered']}/{report['images_used']}",
                 str(len(report.get("models", []))), "–" if median is None else f"{median:.4g}",
                 f"{report['seconds']['mapping']:.1f}", str(len(report.get("rejected", [])))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines



def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--scenes", nargs="+", default=list(SCENES))
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    args, extra = ap.parse_known_args(argv)
    lines = [HEADER, "|---" * HEADER.count(" | ") + "|---|"]
    for scene in args.scenes:
        images, cameras = args.data / "scenes" / scene / "images", args.data / "scenes" / scene / "cameras.json"
        if not images.is_dir() or not cameras.is_file():
            print(f"error: {images} or {cameras} not found (see shared/data/README.md)", file=sys.stderr)
            return 2
        lines += rows(scene, run_scene(images, cameras, args.out / scene, extra))
    print("\n".join(lines))
    print(f"\nmachine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
