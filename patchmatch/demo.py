"""``patchmatch demo OUT``: the whole pipeline on the embedded synthetic scene, checked against its ground truth.

Steps (all on the CPU by default; nothing is downloaded):

1. render the procedural scene of :mod:`patchmatch.synthetic` to ``OUT/scene``
   (``images/*.png`` and ``cameras.json``; nothing is downloaded);
2. reconstruct it with :func:`patchmatch.sfm.run_sfm` and the shipped 2ch-2stream weights
   into ``OUT/sfm`` (features, network matches, COLMAP model, ``report.json``);
3. compare with the ground truth: registered images, relative rotation errors
   (:mod:`patchmatch.evaluation.pose`) and the fraction of putative matches that are
   correct, i.e. land within ``correct_px`` pixels of where the ground-truth geometry
   (cameras and rendered depth, occlusions included) puts them;
4. draw the matches of one image pair (``OUT/matches.png``: correct green, wrong red),
   write ``OUT/summary.json`` and print a short table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .commands.options import positive_int, set_threads
from . import storage, viz
from .images import read_gray
from .matching import MatchConfig
from .pairs import make_pairs, parse_strategy
from .scoring import PatchScorer
from .synthetic import RenderedView, SceneConfig, make_scene, render_scene, render_view, transfer

logger = logging.getLogger(__name__)

#: What the demo writes in OUT (the only paths ``overwrite`` replaces).
OUTPUTS = ("scene", "sfm", "matches.png", "summary.json")
#: At most this many matches are drawn in matches.png (a seeded random subset).
DRAWN_MATCHES = 150


@dataclass(frozen=True)
class DemoConfig:
    """Settings of :func:`run_demo`.

    Attributes:
        seed: Seed of the synthetic scene.
        num_images: Number of views, 3..64 (the run time grows with it).
        max_keypoints: SIFT keypoints per image.
        pairs: Image pairs to match (see :mod:`patchmatch.pairs`); the cameras follow an arc
            in image order, so sequential pairs are the overlapping ones.
        k: Descriptor neighbours per keypoint and direction that the network scores.
        device: Torch device of the network (None = CUDA if available).
        correct_px: A match is correct when its keypoint in the second image lies within this
            many pixels of the ground-truth transfer of its first keypoint.
        threads: Worker threads of the pipeline (:attr:`patchmatch.sfm.SfmConfig.threads`;
            None: PyTorch's thread count).
    """

    seed: int = 0
    num_images: int = 10
    max_keypoints: int = 1024
    pairs: str = "sequential:2"
    k: int = 1
    device: str | None = None
    correct_px: float = 3.0
    threads: int | None = None

    def __post_init__(self) -> None:
        if not 3 <= self.num_images <= 64:
            raise ValueError(f"DemoConfig.num_images must be in [3, 64], got {self.num_images}")
        if self.max_keypoints < 16:
            raise ValueError(f"DemoConfig.max_keypoints must be >= 16, got {self.max_keypoints}")
        if self.correct_px <= 0:
            raise ValueError(f"DemoConfig.correct_px must be positive, got {self.correct_px}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"DemoConfig.threads must be >= 1 or None, got {self.threads}")
        MatchConfig(k=self.k)  # validates k
        parse_strategy(self.pairs)  # validates the pairs strategy


def _clear_outputs(out_dir: Path, overwrite: bool) -> None:
    """Deletes the :data:`OUTPUTS` of an earlier demo in ``out_dir`` (nothing else).

    Raises:
        FileExistsError: some are there and ``overwrite`` is False.
    """
    present = [out_dir / name for name in OUTPUTS if (out_dir / name).exists()]
    if present and not overwrite:
        raise FileExistsError(
            f"{present[0]} already exists; pass --overwrite (Python: overwrite=True) to replace the demo outputs"
        )
    for path in present:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def match_correctness(
    views: dict[int, RenderedView],
    scene,
    index0: int,
    index1: int,
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    matches: np.ndarray,
    correct_px: float,
) -> np.ndarray:
    """Ground-truth correctness of the matches of one image pair.

    Args:
        views: Rendered ground-truth maps by camera index (must hold ``index0`` and ``index1``).
        scene: The :class:`~patchmatch.synthetic.SyntheticScene`.
        index0: Camera index of the first image. index1: of the second.
        keypoints0: (N0, 2) keypoint positions in image 0, pixels (OpenCV convention).
        keypoints1: (N1, 2) keypoint positions in image 1.
        matches: (K, 2) int indices ``[i0, i1]``.
        correct_px: Tolerance in pixels.

    Returns:
        (K,) bool: True where the first keypoint's surface point is visible in image 1 and
        projects within ``correct_px`` of the second keypoint.
    """
    matches = np.asarray(matches, np.int64).reshape(-1, 2)
    if len(matches) == 0:
        return np.zeros(0, bool)
    p1, visible = transfer(scene, index0, views[index0], index1, views[index1], keypoints0[matches[:, 0]])
    with np.errstate(invalid="ignore"):
        error = np.linalg.norm(p1 - keypoints1[matches[:, 1]], axis=1)
    return visible & (error < correct_px)


@contextlib.contextmanager
def _timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    """Adds the wall-clock seconds of the ``with`` block to ``seconds[step]``."""
    start = time.perf_counter()
    yield
    seconds[step] = time.perf_counter() - start


def _reconstruct(scene_dir: Path, out_dir: Path, config: DemoConfig, scorer: PatchScorer, progress: bool) -> dict:
    """:func:`patchmatch.sfm.run_sfm` on the rendered images into ``out_dir/sfm``; returns its report."""
    from .sfm import SfmConfig, run_sfm  # pycolmap: imported when a demo runs, not when the CLI starts

    sfm_config = SfmConfig(
        max_keypoints=config.max_keypoints,
        device=config.device,
        match=MatchConfig(k=config.k),
        pairs=config.pairs,
        single_camera=True,  # every view is rendered by the same pinhole camera
        threads=config.threads,
    )
    return run_sfm(scene_dir / "images", out_dir / "sfm", sfm_config, scorer=scorer, progress=progress,
                   ground_truth=scene_dir / "cameras.json")  # fmt: skip


def _judge_matches(sfm_dir: Path, config: DemoConfig, scene_config: SceneConfig) -> tuple[dict, dict]:
    """Ground truth of every putative match of every matched pair (re-rendering the scene's depth).

    Args:
        sfm_dir: the reconstruction folder (``features.h5``, ``matches.h5``).
        config: the demo settings (seed, pairs, ``correct_px``).
        scene_config: the rendered scene's settings.

    Returns:
        ``(features, per_pair)``: (N, 2) float keypoint positions per image name (pixels, OpenCV
        convention), and per pair ``(a, b)`` its (K, 2) matches and (K,) bool correctness.
    """
    scene = make_scene(config.seed, scene_config)
    names = [cam.name for cam in scene.cameras]
    index = {name: i for i, name in enumerate(names)}
    views = {i: render_view(scene, i, image=False) for i in range(len(names))}
    feats = {name: storage.read_features(sfm_dir / "features.h5", name) for name in names}
    features = {name: f.xy for name, f in feats.items()}
    per_pair = {}
    for a, b in make_pairs(config.pairs, names, {n: f.descriptors for n, f in feats.items()}):
        matches, _ = storage.read_matches(sfm_dir / "matches.h5", a, b)
        correct = match_correctness(views, scene, index[a], index[b], features[a], features[b], matches, config.correct_px)
        per_pair[(a, b)] = (matches, correct)
    return features, per_pair


def _draw_pair(out_dir: Path, scene_dir: Path, features: dict, per_pair: dict) -> tuple[tuple[str, str], Path]:
    """Draws the matches of one pair into ``out_dir/matches.png`` (correct green, wrong red).

    The pair is two steps apart in the middle of the arc, or, when that pair was not matched,
    the pair with most correct matches; at most :data:`DRAWN_MATCHES` lines keep it legible.

    Returns:
        ``((a, b), picture)``: the pair drawn and the PNG written.
    """
    names = list(features)  # camera order: along the arc
    mid = len(names) // 2
    a, b = names[mid - 1], names[min(mid + 1, len(names) - 1)]
    if (a, b) not in per_pair:
        a, b = max(per_pair, key=lambda pair: int(per_pair[pair][1].sum()))
    matches, correct = per_pair[(a, b)]
    image_a, _ = read_gray(scene_dir / "images" / a)
    image_b, _ = read_gray(scene_dir / "images" / b)
    canvas = viz.draw_matches(image_a, image_b, features[a], features[b], matches, correct, max_lines=DRAWN_MATCHES,
                              title=f"{a} - {b}, green: correct by ground truth")  # fmt: skip
    return (a, b), viz.save_png(out_dir / "matches.png", canvas)


def _summary(config: DemoConfig, scene_config: SceneConfig, report: dict, per_pair: dict, drawn: tuple[str, str],
             seconds: dict[str, float], paths: dict[str, str]) -> dict:
    """The demo's summary (see :func:`run_demo`), NaN and infinity made None."""
    pose = report.get("pose", {})
    total = sum(len(m) for m, _ in per_pair.values())
    good = sum(int(c.sum()) for _, c in per_pair.values())
    matches, correct = per_pair[drawn]
    summary = {
        "scene": {"seed": config.seed, "images": config.num_images, "size": [scene_config.width, scene_config.height]},
        "config": dataclasses.asdict(config),
        "images": report["images"],
        "registered": report["registered"],
        "points": report["points"],
        "mean_reprojection_error": report["mean_reprojection_error"],
        "rotation_error_median_deg": pose.get("rotation_error_median_deg", float("nan")),
        "translation_error_median_deg": pose.get("translation_error_median_deg", float("nan")),
        "rotation_auc": pose.get("rotation_auc", {}),
        "pairs": report["pairs"],
        "verified_pairs": report["verified_pairs"],
        "candidates_scored": report["candidates_scored"],
        "putative_matches": total,
        "match_precision": good / total if total else float("nan"),
        "drawn_pair": {"pair": list(drawn), "matches": len(matches), "correct": int(correct.sum())},
        "sfm_seconds": report["seconds"],
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "paths": paths,
    }
    summary["seconds"]["total"] = round(sum(seconds.values()), 2)
    return _finite(summary)


def run_demo(
    out_dir: str | os.PathLike,
    config: DemoConfig = DemoConfig(),
    *,
    scorer: PatchScorer | None = None,
    weights: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Render the synthetic scene, reconstruct it, and compare with its ground truth.

    Args:
        out_dir: Output folder; the demo writes ``scene/``, ``sfm/``, ``matches.png`` and
            ``summary.json`` there (see the module doc).
        config: Demo settings.
        scorer: The patch network; default: ``PatchScorer.load(weights)``.
        weights: Checkpoint to load when ``scorer`` is None (None = the shipped weights).
        overwrite: Replace the outputs of an earlier demo in ``out_dir``.
        progress: Draw tqdm progress bars for the pipeline stages.

    Returns:
        The summary (also written to ``out_dir/summary.json``; NaN and infinity, e.g. the
        median error when most pairs failed, are None): ``scene`` (settings),
        ``images``, ``registered``, ``points``, ``mean_reprojection_error`` (px),
        ``rotation_error_median_deg``, ``translation_error_median_deg``, ``rotation_auc``,
        ``putative_matches``, ``match_precision`` (fraction correct vs ground truth, all
        matched pairs), ``verified_pairs``, ``pairs``, ``drawn_pair`` (with its counts),
        ``seconds`` (per step) and ``paths``.

    Raises:
        FileExistsError: Demo outputs exist in ``out_dir`` and ``overwrite`` is False.
        FileNotFoundError: No shipped weights and none given.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out_dir, overwrite)
    seconds: dict[str, float] = {}
    scene_config = SceneConfig(num_images=config.num_images)
    with _timed(seconds, "render"):
        scene_dir = render_scene(out_dir / "scene", seed=config.seed, num_images=config.num_images, config=scene_config)
    if scorer is None:
        scorer = PatchScorer.load(weights, device=config.device)
    with _timed(seconds, "sfm"):
        report = _reconstruct(scene_dir, out_dir, config, scorer, progress)
    with _timed(seconds, "ground_truth"):
        features, per_pair = _judge_matches(out_dir / "sfm", config, scene_config)
    with _timed(seconds, "picture"):
        drawn, picture = _draw_pair(out_dir, scene_dir, features, per_pair)
    paths = {"scene": str(scene_dir), "model": str(out_dir / "sfm" / "sparse" / "0"),
             "report": str(out_dir / "sfm" / "report.json"), "picture": str(picture)}  # fmt: skip
    summary = _summary(config, scene_config, report, per_pair, drawn, seconds, paths)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    logger.info("demo finished in %.1f s: %s", summary["seconds"]["total"], out_dir / "summary.json")
    return summary


def _finite(obj):
    """NaN and infinities → None, recursively (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _num(value, spec: str, scale: float = 1.0) -> str:
    """Format a number, or "n/a" for None, NaN or infinity (e.g. a failed reconstruction)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return format(value * scale, spec)


def format_summary(summary: dict) -> str:
    """The summary of :func:`run_demo` as a short plain-text table."""
    auc = summary["rotation_auc"] or {}
    sfm_s = summary["sfm_seconds"]
    rows = [
        ("scene", f"synthetic room, {summary['scene']['images']} views "
                  f"{summary['scene']['size'][0]}x{summary['scene']['size'][1]}, seed {summary['scene']['seed']}"),
        ("registered images", f"{summary['registered']} / {summary['images']}"),
        ("rotation error, median", f"{_num(summary['rotation_error_median_deg'], '.3f')} deg (all image pairs)"),
        ("rotation AUC", "  ".join(f"@{k} deg {_num(v, '.3f')}" for k, v in auc.items()) or "n/a"),
        ("translation dir. error, median", f"{_num(summary['translation_error_median_deg'], '.3f')} deg"),
        ("3D points", f"{summary['points']} (reprojection error {_num(summary['mean_reprojection_error'], '.2f')} px)"),
        ("putative matches", f"{summary['putative_matches']} ({summary['candidates_scored']} candidates scored by the network), "
                             f"{_num(summary['match_precision'], '.1f', 100)}% correct vs ground truth"),
        ("verified pairs", f"{summary['verified_pairs']} / {summary['pairs']}"),
        ("time", f"{summary['seconds']['total']:.1f} s (render {summary['seconds']['render']:.1f}, "
                 f"features {sfm_s.get('features', 0):.1f}, matching {sfm_s.get('matching', 0):.1f}, "
                 f"verification {sfm_s.get('verification', 0):.1f}, mapping {sfm_s.get('mapping', 0):.1f})"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    paths = summary["paths"]
    lines += ["", f"matches of {' - '.join(summary['drawn_pair']['pair'])}: {paths['picture']}",
              f"model: {paths['model']}   report: {paths['report']}"]  # fmt: skip
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="render the embedded synthetic scene, reconstruct it, compare with its ground truth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", type=Path, help="output folder (scene/, sfm/, matches.png, summary.json)")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo in OUT")
    p.add_argument("--seed", type=int, default=DemoConfig.seed, help="scene seed (default: 0)")
    p.add_argument("--num-images", type=int, default=DemoConfig.num_images, help="views (default: 10)")
    p.add_argument("--max-keypoints", type=int, default=DemoConfig.max_keypoints,
                   help=f"SIFT keypoints per image (default: {DemoConfig.max_keypoints})")  # fmt: skip
    p.add_argument("--pairs", default=DemoConfig.pairs, help=f"image pairs to match (default: {DemoConfig.pairs})")
    p.add_argument("--weights", type=Path, default=None, help="checkpoint (default: shipped 2ch2stream weights)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help="CPU threads (default: all cores)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import colmap

    colmap.set_verbosity(bool(getattr(args, "verbose", False)))  # COLMAP's own log lines only with -v
    set_threads(args.threads)
    config = DemoConfig(seed=args.seed, num_images=args.num_images, max_keypoints=args.max_keypoints,
                        pairs=args.pairs, device=args.device, threads=args.threads)  # fmt: skip
    summary = run_demo(args.out, config, weights=args.weights, overwrite=args.overwrite, progress=not args.quiet)
    print(format_summary(summary))
    return 0 if summary["registered"] >= 2 else 1
