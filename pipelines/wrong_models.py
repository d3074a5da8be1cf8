"""Wrongly registered images, with and without the model checks, on subsets of the ground-truth scenes.

For each scene, ``patchmatch sfm`` runs once on all its images (small images, few keypoints: this is
about the mapper, not the matches); then every subset (all images; every third image; random
halves, one per seed) gets a database of the full run's features and matches restricted to its images, is verified,
and is mapped twice, on one thread (COLMAP's mapper on more gives different models from the same
database): with the checks of ``patchmatch.colmap.check`` (the default) and without them
(``MapperConfig(check=False)``, the same fallback cascade). Each model is compared with the ground
truth: an image is wrongly registered when its relative rotations to most other registered images
of its model are off by more than 5° (:func:`patchmatch.evaluation.pose.wrongly_registered`).

Scenes: the ground-truth scenes of ``shared/data`` (lego as two subsets of 24 views: consecutive
views and every fourth), and ``render-dark``: the demo renderer with weak textures (20 texels per
metre) and its gray levels scaled by 0.3 (dark, low contrast).

Prints one Markdown table (per scene: runs, images per run, registered and wrongly registered
images with and without the checks, images the checks rejected) and writes ``OUT/wrong_models.json``.
A rerun reuses each scene's full run and each subset's result.

Usage::

    python pipelines/wrong_models.py OUT [--scenes temple-ring entry-P10 ...] [--seeds 20]
        [--max-image-size 640] [--max-keypoints 2048] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from patchmatch import colmap
from patchmatch.benchmark import machine
from patchmatch.evaluation.pose import evaluate_poses, load_cameras_json, relative_pose_errors, wrongly_registered
from patchmatch.scoring import PatchScorer
from patchmatch.sfm import SfmConfig, run_sfm
from patchmatch.stages import to_database, verify

ROOT = Path(__file__).resolve().parents[1]

#: the scenes with ground truth, and the two lego subsets (name, first view, step, count)
SCENES = ("temple-ring", "entry-P10", "Herz-Jesus-P8", "castle-P19", "mobilebrick", "vesta", "lego-consecutive",
          "lego-every-4th", "render-dark")  # fmt: skip
LEGO = {"lego-consecutive": (0, 1, 24), "lego-every-4th": (0, 4, 24)}


def scene_images(name: str, data: Path, work: Path) -> tuple[Path, Path, list[str]]:
    """``(image folder, cameras.json, image names)`` of a scene, made in ``work`` where needed."""
    if name == "render-dark":
        return render_dark(work / "render-dark")
    if name in LEGO:
        first, step, count = LEGO[name]
        images = data / "scenes" / "lego" / "images"
        names = sorted(p.name for p in images.iterdir())[first::step][:count]
        return images, data / "scenes" / "lego" / "cameras.json", names
    images = data / "scenes" / name / "images"
    return images, data / "scenes" / name / "cameras.json", sorted(load_cameras_json(data / "scenes" / name / "cameras.json"))


def render_dark(out: Path, num_images: int = 16) -> tuple[Path, Path, list[str]]:
    """The demo scene rendered with weak textures, then darkened (gray levels × 0.3)."""
    from patchmatch.synthetic import SceneConfig, render_scene

    if not (out / "cameras.json").is_file():
        render_scene(out, seed=0, num_images=num_images, config=SceneConfig(texels_per_meter=20.0, arc_degrees=100.0),
                     overwrite=True)  # fmt: skip
        for path in sorted((out / "images").iterdir()):
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(str(path), np.clip(image.astype(np.float32) * 0.3, 0, 255).astype(np.uint8))
    return out / "images", out / "cameras.json", sorted(load_cameras_json(out / "cameras.json"))


def subsets(names: list[str], seeds: int) -> dict[str, list[str]]:
    """All images, every third image, and one random half per seed."""
    out = {"all": list(names), "every-third": names[::3]}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        out[f"half-seed{seed}"] = sorted(rng.choice(names, len(names) // 2, replace=False).tolist())
    return out


def full_run(images: Path, names: list[str], cameras: Path, out: Path, config: SfmConfig, scorer: PatchScorer) -> dict:
    """``patchmatch sfm`` on the scene's images (a folder of links to them), resumed when done."""
    linked = out / "images"
    linked.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (linked / name).exists():
            (linked / name).symlink_to((images / name).resolve())
    return run_sfm(linked, out / "sfm", config, scorer=scorer, ground_truth=cameras)


def evaluate_models(models: list, cameras: Path, names: list[str]) -> dict:
    """Registered and wrongly registered images over every model (each model judged alone)."""
    gt = {n: (c.R, c.t) for n, c in load_cameras_json(cameras).items()}
    registered, wrong = 0, []
    for model in models:
        poses = colmap.reconstruction_poses(model)
        registered += len(poses)
        wrong += wrongly_registered(relative_pose_errors(gt, poses, sorted(poses)))
    largest = evaluate_poses(colmap.reconstruction_poses(models[0]) if models else {}, cameras, names)
    return {"registered": registered, "models": [m.num_reg_images() for m in models], "wrong": sorted(wrong),
            "rotation_error_median_deg": largest["rotation_error_median_deg"]}  # fmt: skip


def map_subset(full: Path, images: Path, cameras: Path, names: list[str], out: Path, mapper: colmap.MapperConfig) -> dict:
    """One subset: database of the full run's matches among ``names``, verified, mapped with and
    without the checks."""
    result_path = out / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    keep = set(names)
    pairs = [p for p in json.loads((full / "pairs.json").read_text()) if p[0] in keep and p[1] in keep]
    (out / "pairs.json").write_text(json.dumps(pairs))
    database = to_database.run(images, full / "features.h5", out / "pairs.json", full / "matches.h5",
                               out / "database.db", names)  # fmt: skip
    verify.run(database, colmap.VerificationConfig(num_threads=mapper.num_threads))
    result: dict = {"images": len(names)}
    for label, check in (("checked", True), ("unchecked", False)):
        attempts: list = []
        t0 = time.perf_counter()
        models = colmap.map_database(database, images, out / f"sparse-{label}", dataclasses.replace(mapper, check=check),
                                     attempts)  # fmt: skip
        kept = [a for a in attempts if a.kept]
        result[label] = {**evaluate_models(models, cameras, names), "seconds": round(time.perf_counter() - t0, 2),
                         "mapper_runs": len(attempts), "rejected": [item for a in kept for item in a.rejected]}  # fmt: skip
    result_path.write_text(json.dumps(result, indent=1))
    return result


def scene_row(scene: str, results: dict[str, dict]) -> str:
    """One Markdown row summing a scene's subsets."""
    runs = list(results.values())

    def total(label: str, key: str) -> int:
        return sum(len(r[label][key]) if isinstance(r[label][key], list) else r[label][key] for r in runs)

    sizes = sorted({r["images"] for r in runs})
    cells = [scene, str(len(runs)), "–".join(str(s) for s in (sizes[0], sizes[-1])) if len(sizes) > 1 else str(sizes[0]),
             str(sum(r["images"] for r in runs)), str(total("checked", "registered")), str(total("checked", "wrong")),
             str(total("checked", "rejected")), str(total("unchecked", "registered")), str(total("unchecked", "wrong"))]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


HEADER = ("| scene | runs | images per run | images (all runs) | registered, checked | wrongly registered, checked "
          "| rejected by the checks | registered, unchecked | wrongly registered, unchecked |")  # fmt: skip


def table_of_finished(out: Path, scenes: list[str]) -> list[str]:
    """The table's lines from the subsets of ``scenes`` already mapped in ``out`` (scenes without any left out)."""
    lines = [HEADER, "|---" * HEADER.count(" | ") + "|---|"]
    for scene in scenes:
        results = {p.parent.name: json.loads(p.read_text()) for p in sorted((out / scene).glob("*/result.json"))}
        if results:
            lines.append(scene_row(scene, results))
    return lines



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--scenes", nargs="+", default=list(SCENES))
    ap.add_argument("--seeds", type=int, default=20, help="random halves per scene")
    ap.add_argument("--max-image-size", type=int, default=640)
    ap.add_argument("--max-keypoints", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2, help="threads of the full runs' extraction and matching")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--table-only", action="store_true", help="print the table of the subsets already mapped")
    args = ap.parse_args(argv)
    if args.table_only:
        print("\n".join(table_of_finished(args.out, args.scenes)))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    colmap.set_verbosity(False)
    # the mapper and the subsets' verification on one thread (MapperConfig's default): on more,
    # COLMAP gives different models from the same database, and the checked and unchecked runs differ by chance
    config = SfmConfig(max_keypoints=args.max_keypoints, max_image_size=args.max_image_size, threads=args.threads)
    scorer = PatchScorer.load(device="cpu")
    summary: dict = {"settings": vars(args) | {"out": str(args.out), "data": str(args.data)}, "scenes": {}}
    lines = [HEADER, "|---" * HEADER.count(" | ") + "|---|"]
    for scene in args.scenes:
        images, cameras, names = scene_images(scene, args.data, args.out)
        work = args.out / scene
        full_run(images, names, cameras, work, config, scorer)
        results = {}
        for key, subset in subsets(names, args.seeds).items():
            results[key] = map_subset(work / "sfm", work / "images", cameras, subset, work / key, config.mapper)
            print(f"{scene} {key}: checked {results[key]['checked']['registered']}/{len(subset)} "
                  f"(wrong {len(results[key]['checked']['wrong'])}), unchecked {results[key]['unchecked']['registered']} "
                  f"(wrong {len(results[key]['unchecked']['wrong'])})", flush=True)  # fmt: skip
        summary["scenes"][scene] = results
        lines.append(scene_row(scene, results))
        (args.out / "wrong_models.json").write_text(json.dumps(summary, indent=1, default=str))
    print("\n".join(lines))
    print(f"\nmachine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
