"""How ``patchmatch sfm`` scales with the collection: time per stage, peak memory and pose
accuracy against the number of images N, for collections of N rendered views of the demo world
(exact cameras), exhaustive against retrieval pairs, on the local or a Ray executor.

A collection of N views is N / 50 rings of up to 50 cameras around the same world (same seed:
the same surfaces), each ring at its own distance and height, in ``ringR/`` subfolders. Each run
is a fresh process (its peak resident memory is the run's). Results accumulate in
``OUT/scaling.json`` (a run already there is not repeated); the table is printed (Markdown, as in
``docs/scaling.md``); ``--docs`` also writes ``docs/scaling.json`` and the plot ``docs/scaling.png``.
Each row holds the run's wall time per stage, its CPU seconds (this process and its children: on
a Ray executor the workers' are not counted) and its peak memory.

``--merged DATA`` instead runs ``sfm`` once on the shared scenes of ``DATA/scenes`` linked into one
folder (one subfolder each, :data:`MERGED`), and prints which scenes each model holds and, per
scene with cameras, the model holding most of it, its registered images, rotation error median and
wrongly registered images (``OUT/merged.json``).

    python pipelines/scale_bench.py OUT --sizes 50 100 200 400 --pairs retrieval:10 exhaustive \
        [--mapper incremental global auto] [--executor ray:ADDRESS --label NAME] [--max-keypoints 2048] [--docs]
    python pipelines/scale_bench.py OUT --merged ../shared/data --pairs retrieval:10 --mapper auto
    unshare -n python pipelines/ray_local_cluster.py --nodes 2 --cpus-per-node 1 -- \
        python pipelines/scale_bench.py OUT --sizes 50 100 --executor "ray:{address}" --label "ray, 2 nodes"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Cameras per ring of a rendered collection: the demo world's arc of 70° holds 50 views ~1.4° apart.
RING = 50
#: Image pairs beyond which an exhaustive run is not attempted: quadratic, 100 images are 4,950
#: pairs (about an hour of network time on 2 shared cores).
MAX_EXHAUSTIVE_PAIRS = 2000


def render_collection(root: Path, n: int, seed: int = 0) -> Path:
    """``root/images/ringR/*.png`` and ``root/cameras.json``: n views of one world in rings of :data:`RING`."""
    from patchmatch.synthetic import SceneConfig, render_scene

    if (root / "cameras.json").is_file():
        return root
    cameras = {"images": {}}
    for r, start in enumerate(range(0, n, RING)):
        count = min(RING, n - start)
        config = SceneConfig(num_images=max(count, 2), radius=8.0 + 1.2 * r, camera_height=2.4 + 0.4 * (r % 3))
        ring = render_scene(root / "render" / f"ring{r}", seed=seed, num_images=max(count, 2), config=config,
                            overwrite=True)  # fmt: skip
        gt = json.loads((ring / "cameras.json").read_text())
        cameras["convention"] = gt["convention"]
        (root / "images" / f"ring{r}").mkdir(parents=True, exist_ok=True)
        for name in sorted(gt["images"])[:count]:
            (ring / "images" / name).rename(root / "images" / f"ring{r}" / name)
            cameras["images"][f"ring{r}/{name}"] = gt["images"][name]
    (root / "cameras.json").write_text(json.dumps(cameras))
    return root


def run_child(spec: dict) -> dict:
    """One ``run_sfm`` in this process (the child): the report's times, counts and pose errors,
    and this process's peak resident memory."""
    from patchmatch.colmap import MapperConfig, set_verbosity
    from patchmatch.sfm import SfmConfig, run_sfm

    set_verbosity(False)
    config = SfmConfig(max_keypoints=spec["max_keypoints"], pairs=spec["pairs"], executor=spec["executor"],
                       device="cpu", mapper=MapperConfig(method=spec["mapper"]))  # fmt: skip
    t0 = time.perf_counter()
    report = run_sfm(spec["images"], spec["out"], config, overwrite=True, ground_truth=spec["ground_truth"])
    pose = report.get("pose", {})
    return {
        "wall_s": round(time.perf_counter() - t0, 1), "seconds": report["seconds"], "images": report["images"],
        "registered": report["registered"], "pairs": report["pairs"], "pairs_selected": report.get("pairs_selected"),
        "models": len(report.get("models", [])) or (1 if report["registered"] else 0),
        "rotation_error_median_deg": pose.get("rotation_error_median_deg"), "rotation_auc": pose.get("rotation_auc"),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpu_s": round(sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                           for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)), 1),
    }  # fmt: skip


def _run(out: Path, n: int, pairs: str, executor: str, mapper: str, max_keypoints: int, label: str | None = None) -> dict:
    scene = render_collection(out / "collections" / str(n), n)
    spec = {"images": str(scene / "images"), "out": str(out / "runs" / f"{n}-{pairs.replace(':', '')}-{(label or executor.split(':')[0]).replace(' ', '').replace(',', '')}-{mapper}"),
            "ground_truth": str(scene / "cameras.json"), "pairs": pairs, "executor": executor,
            "mapper": mapper, "max_keypoints": max_keypoints}  # fmt: skip
    return _child(spec)


def _child(spec: dict) -> dict:
    """:func:`run_child` of ``spec`` in a fresh process (its peak memory is the run's own)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT, capture_output=True,
                          text=True, env=env)  # fmt: skip
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


#: The shared scenes merged into one folder (one subfolder each) and the place each shows: scenes
#: of one place (a building photographed twice) may share a model.
MERGED = {"castle-P19": "castle", "castle-P30": "castle", "entry-P10": "entry", "Herz-Jesus-P8": "Herz-Jesus",
          "Herz-Jesus-P25": "Herz-Jesus", "temple-ring": "temple", "lund": "lund", "sacre-coeur": "sacre-coeur"}  # fmt: skip


def merged_collection(root: Path, data: Path) -> Path:
    """``root/images/SCENE`` linked to each scene of :data:`MERGED` under ``data/scenes``."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    for scene in MERGED:
        link = images / scene
        if not link.exists():
            if not (data / "scenes" / scene / "images").is_dir():
                raise FileNotFoundError(f"{data / 'scenes' / scene / 'images'} is missing: the merged collection needs it")
            link.symlink_to((data / "scenes" / scene / "images").resolve(), target_is_directory=True)
    return root


def merged_models(out: Path, data: Path) -> dict:
    """Per model of a merged run: its images per scene; per scene with cameras: the model holding
    most of its images, registered images, rotation error median and wrongly registered images."""
    import pycolmap

    from patchmatch.evaluation.pose import evaluate_poses
    from patchmatch.colmap import reconstruction_poses

    report = json.loads((out / "report.json").read_text())
    skipped = {s["name"] for s in report.get("skipped", [])}
    models = []
    for entry in report.get("models", []):
        rec = pycolmap.Reconstruction(out / "sparse" / entry["path"].split("/")[-1])
        poses = reconstruction_poses(rec)
        by_scene: dict[str, dict] = {}
        for name, pose in poses.items():
            scene, _, rest = name.partition("/")
            by_scene.setdefault(scene, {})[rest] = pose
        models.append({"path": entry["path"], "registered": len(poses), "points": entry["points"],
                       "scenes": {k: len(v) for k, v in sorted(by_scene.items())},
                       "places": sorted({MERGED.get(k, k) for k in by_scene}), "poses": by_scene})  # fmt: skip
    scenes = {}
    for scene in MERGED:
        cameras = data / "scenes" / scene / "cameras.json"
        names = sorted(p.name for p in (data / "scenes" / scene / "images").iterdir() if f"{scene}/{p.name}" not in skipped)
        holder = max(models, key=lambda m: len(m["poses"].get(scene, {})), default=None)
        poses = holder["poses"].get(scene, {}) if holder else {}
        row = {"images": len(names), "registered": len(poses), "model": holder["path"] if poses else None}
        if cameras.is_file() and names:
            pose = evaluate_poses(poses, cameras, names=names)
            row.update(rotation_error_median_deg=pose["rotation_error_median_deg"], wrongly_registered=pose["wrongly_registered_count"])
        scenes[scene] = row
    for m in models:
        del m["poses"]
    return {"wall_s": report.get("seconds_total"), "seconds": report["seconds"], "images": report["images"],
            "registered": report["registered"], "pairs": report["pairs"], "models": models, "scenes": scenes}


def run_merged(out: Path, data: Path, pairs: str, executor: str, mapper: str, max_keypoints: int) -> dict:
    """``sfm`` on the merged shared scenes (a fresh process), then :func:`merged_models`."""
    root = merged_collection(out / "merged", data)
    spec = {"images": str(root / "images"), "out": str(out / "runs" / f"merged-{pairs.replace(':', '')}-{mapper}"),
            "ground_truth": None, "pairs": pairs, "executor": executor, "mapper": mapper, "max_keypoints": max_keypoints}  # fmt: skip
    result = _child(spec)
    if "error" in result:
        return result
    return {**merged_models(Path(spec["out"]), data), "peak_rss_mib": result["peak_rss_mib"]}


def merged_table(result: dict) -> str:
    """Markdown: one row per model (its images per scene), then one row per scene."""
    lines = ["| model | registered | points | images per scene |", "|---|---|---|---|"]
    for m in result["models"]:
        lines.append(f"| {m['path']} | {m['registered']} | {m['points']} | "
                     + ", ".join(f"{k} {v}" for k, v in m["scenes"].items()) + " |")  # fmt: skip
    lines += ["", "| scene | images | registered | model | rotation error median (°) | wrongly registered |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for scene, r in result["scenes"].items():
        rot = r.get("rotation_error_median_deg")
        lines.append(f"| {scene} | {r['images']} | {r['registered']} | {r['model'] or '–'} | "
                     f"{'–' if rot is None else f'{rot:.3f}'} | {r.get('wrongly_registered', '–')} |")  # fmt: skip
    return "\n".join(lines)


def table(results: dict) -> str:
    """The Markdown table of ``results`` (``"N|pairs|executor|mapper"`` → row)."""
    lines = ["| images N | pairs | executor | mapper | image pairs | registered | time (s) | s per image | features (s) | "
             "matching (s) | verification (s) | mapping (s) | CPU (s) | CPU s per image | peak memory (MiB) | "
             "rotation error median (°) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key in sorted(results, key=lambda k: (*k.split("|")[1:], int(k.split("|")[0]))):
        n, pairs, executor, mapper = key.split("|")
        r = results[key]
        if "error" in r:
            lines.append(f"| {n} | {pairs} | {executor} | {mapper} | – | – | – | – | – | – | – | – | – | – | – | {r['error']} |")
            continue
        s = r["seconds"]
        cpu_per_image = f"{r['cpu_s'] / int(n):.2f}" if "cpu_s" in r else "–"
        lines.append(f"| {n} | {pairs} | {executor} | {mapper} | {r['pairs']} | {r['registered']}/{r['images']} | {r['wall_s']} | "
                     f"{r['wall_s'] / int(n):.2f} | {s.get('features', 0):.1f} | {s.get('matching', 0):.1f} | "
                     f"{s.get('verification', 0):.1f} | {s.get('mapping', 0):.1f} | {r.get('cpu_s', '–')} | "
                     f"{cpu_per_image} | {r['peak_rss_mib']:.0f} | "
                     f"{r['rotation_error_median_deg']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def plot(results: dict, path: Path) -> Path:
    """Seconds per image and peak memory against N, one line per pairs strategy (OpenCV drawing)."""
    import cv2

    size, margin = 480, 50
    canvas = np.full((size, 2 * size, 3), 255, np.uint8)
    series: dict[str, list[tuple[int, dict]]] = {}
    for key, r in results.items():
        if "error" not in r:
            n, pairs, executor, mapper = key.split("|")
            series.setdefault(f"{pairs} {executor} {mapper}", []).append((int(n), r))
    colours = [(200, 80, 0), (0, 120, 220), (0, 160, 0), (160, 0, 160), (0, 0, 200), (120, 120, 0)]
    for panel, (title, value) in enumerate([("s per image", lambda n, r: r["wall_s"] / n),
                                            ("peak memory MiB", lambda n, r: r["peak_rss_mib"])]):  # fmt: skip
        x0 = panel * size
        points = [(n, value(n, r)) for rows in series.values() for n, r in rows] or [(1, 1.0)]
        nmax, vmax = max(p[0] for p in points), max(p[1] for p in points) * 1.1
        cv2.rectangle(canvas, (x0 + margin, margin), (x0 + size - 20, size - margin), (0, 0, 0), 1)
        cv2.putText(canvas, f"{title} (max {vmax / 1.1:.1f}) vs images (max {nmax})", (x0 + margin, 30),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)  # fmt: skip
        for (label, rows), colour in zip(sorted(series.items()), colours):
            pts = [(x0 + margin + int(n / nmax * (size - margin - 20)), size - margin - int(value(n, r) / vmax * (size - 2 * margin)))
                   for n, r in sorted(rows, key=lambda t: t[0])]  # fmt: skip
            for a, b in zip(pts, pts[1:]):
                cv2.line(canvas, a, b, colour, 2)
            for p in pts:
                cv2.circle(canvas, p, 4, colour, -1)
            if panel == 0:
                cv2.putText(canvas, label, (x0 + margin + 10, margin + 20 + 18 * colours.index(colour)),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)  # fmt: skip
    cv2.imwrite(str(path), canvas)
    return path


def _count(text: str) -> int:
    """A collection size: 2 images at least."""
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value}: a collection holds 2 images at least")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--sizes", type=_count, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--pairs", nargs="+", default=["retrieval:10", "exhaustive"])
    parser.add_argument("--executor", default="local")
    parser.add_argument("--label", help="the executor column's name in the results (default: --executor)")
    parser.add_argument("--mapper", nargs="+", default=["incremental"], choices=["auto", "incremental", "global"])
    parser.add_argument("--max-keypoints", type=int, default=2048)
    parser.add_argument("--docs", action="store_true", help="also write docs/scaling.json and docs/scaling.png")
    parser.add_argument("--merged", type=Path, metavar="DATA",
                        help="instead: sfm on the shared scenes of DATA/scenes merged into one folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return
    if args.merged:
        result = run_merged(args.out, args.merged, args.pairs[0], args.executor, args.mapper[0], args.max_keypoints)
        (args.out / "merged.json").write_text(json.dumps(result, indent=1))
        print(merged_table(result) if "error" not in result else result["error"])
        return
    path = args.out / "scaling.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for n in args.sizes:
        for pairs, mapper in [(p, m) for p in args.pairs for m in args.mapper]:
            key = f"{n}|{pairs}|{args.label or args.executor}|{mapper}"
            if key in results and results[key].get("max_keypoints", args.max_keypoints) != args.max_keypoints:
                parser.error(f"{path} holds the row {key} at --max-keypoints {results[key]['max_keypoints']}; "
                             "choose another OUT for other settings")  # fmt: skip
            if key in results or (pairs == "exhaustive" and n * (n - 1) // 2 > MAX_EXHAUSTIVE_PAIRS):
                continue
            results[key] = {**_run(args.out, n, pairs, args.executor, mapper, args.max_keypoints, args.label),
                            "max_keypoints": args.max_keypoints, "machine": f"{platform.processor() or platform.machine()}"}  # fmt: skip
            path.write_text(json.dumps(results, indent=1))
            print(key, json.dumps(results[key]), flush=True)
    print(table(results))
    if args.docs:
        (ROOT / "docs" / "scaling.json").write_text(json.dumps(results, indent=1))
        plot(results, ROOT / "docs" / "scaling.png")


if __name__ == "__main__":
    main()
