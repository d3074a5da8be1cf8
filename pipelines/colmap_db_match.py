"""``patchmatch match`` inside COLMAP projects made by pycolmap's SIFT extraction, beside COLMAP's
own matching of the same database.

For each scene: pycolmap extracts SIFT (4096 keypoints, one camera per image) into a database,
which is copied; COLMAP's exhaustive SIFT matching runs on one copy, ``patchmatch match`` (its own
keypoints and descriptors, patches from COLMAP's keypoint shapes) on the other; both are mapped by
pycolmap's incremental mapper with patchmatch's mapper settings (2 px filter, fixed-intrinsics
fallback; :class:`patchmatch.colmap.MapperConfig`), and the SIFT matches also with COLMAP's own
settings. Prints registered images, points, track length, seconds and, for scenes with a
``cameras.json``, the median relative rotation error of all image pairs.

Usage::

    python pipelines/colmap_db_match.py OUT [--scenes lund sacre-coeur] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from patchmatch import colmap
from patchmatch.database_matching import match_database
from patchmatch.evaluation.pose import evaluate_poses
from patchmatch.images import list_images


def _deg(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    ap.add_argument("--scenes", nargs="+", default=["lund", "sacre-coeur"])
    ap.add_argument("--max-keypoints", type=int, default=4096)
    ap.add_argument("--affine-shape", action="store_true", help="COLMAP SIFT with affine keypoint shapes")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    colmap.set_verbosity(False)
    rows = []
    for scene in args.scenes:
        images = args.data / "scenes" / scene / "images"
        names = list_images(images)
        work = args.out / scene
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        t = time.perf_counter()
        db = colmap.create_database(work / "sift.db")
        sift = colmap.SiftBaselineConfig(max_num_features=args.max_keypoints)
        colmap.sift_extract(db, images, names, sift, affine_shape=args.affine_shape)
        t_extract = time.perf_counter() - t
        shutil.copy(db, work / "patchmatch.db")
        for method, database in (("COLMAP SIFT matching", work / "sift.db"), ("patchmatch match", work / "patchmatch.db")):
            t = time.perf_counter()
            if method.startswith("COLMAP"):
                colmap.sift_match_exhaustive(database, sift)
            else:
                match_database(database, images, progress=False)
            t_match = time.perf_counter() - t
            mappers = {"patchmatch's mapper": colmap.MapperConfig()}
            if method.startswith("COLMAP"):  # also COLMAP's own mapper settings, as `colmap mapper` runs
                mappers["COLMAP's mapper"] = colmap.MapperConfig(max_reproj_error=4.0, fixed_intrinsics_fallback=False,
                                                                         forward_motion_fallback=False, retry_seeds=0)
            for mapper_name, mapper in mappers.items():
                t = time.perf_counter()
                rec = colmap.incremental_mapping(database, images, work / f"sparse-{database.stem}", mapper)
                t_map = time.perf_counter() - t
                stats = colmap.reconstruction_stats(rec)
                stats.pop("registered_names")
                gt = images.parent / "cameras.json"
                if gt.is_file():
                    pose = evaluate_poses(colmap.reconstruction_poses(rec), gt, names)
                    stats["rotation_error_median_deg"] = pose["rotation_error_median_deg"]
                rows.append({"scene": scene, "method": f"{method}, {mapper_name}", "images": len(names), **stats,
                             "seconds_extraction": round(t_extract, 1), "seconds_matching": round(t_match, 1),
                             "seconds_mapping": round(t_map, 1)})  # fmt: skip
    print("| scene | matching | registered | points | track length | reproj. px | rot. median ° | extraction s | matching s | mapping s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scene']} | {r['method']} | {r['registered']}/{r['images']} | {r['points']} | "
              f"{r['mean_track_length']:.2f} | {r['mean_reprojection_error']:.2f} | "
              f"{_deg(r.get('rotation_error_median_deg'))} | {r['seconds_extraction']} | "
              f"{r['seconds_matching']} | {r['seconds_mapping']} |")
    (args.out / "colmap_db_match.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
