"""Ground-truth patch sets of real scenes, written in the Brown format.

Built the way the Brown "Multi-view Stereo Correspondence" sets were (Brown, Hua & Winder,
PAMI 2011): keypoints tied into tracks by known cameras alone
(:mod:`patchmatch.datasets.tracks`), one 64×64 patch per observation, and labelled pairs.
A set is a folder::

    OUT/
      summary.json       scene, images, thresholds, track and pair counts, file of each protocol,
                         the patches' magnification (patch side / keypoint size)
      oriented/          Brown set, patches normalised by the SIFT orientation (as Brown's)
        patches0000.bmp …  1024×1024, 16×16 patches of 64×64, row-major
        info.txt           3D point (track) id of each patch, then 0
        interest.txt       image index (into summary.json "images"), x, y (OpenCV pixels),
                           orientation (degrees), keypoint size (pixels)
        m50_<M>_<M>_0.txt       random protocol: M rows, half matches, negatives of two tracks
        m50_hard_<M>_<M>_0.txt  hard protocol: negatives = SIFT-nearest non-partner, same image pair
        sift_descriptors.npy    (N, 128) uint8 SIFT descriptors of the keypoints (baseline)
      upright/           the same patches at orientation 0 (COLMAP's upright SIFT), same pair files

Pair rows follow Brown's ``patch1 point1 0 patch2 point2 0``: a pair is a match when the point
ids agree. Keypoints that appear only as hard negatives belong to no track and get point ids of
their own (so they never match). torchvision's ``PhotoTour`` and HardNet's loaders read the
folders; :class:`patchmatch.datasets.brown.BrownDataset` reads them with their pair files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..patches import MAGNIFICATION, PATCH_SIZE, check_magnification, extract_patches
from .brown import write_bitmaps, write_brown
from .folders import partial_folder
from .scenes import Scene, load_scene
from .tracks import PairSet, PairSetConfig, Tracks, build_pair_set, build_tracks, detect_scene

logger = logging.getLogger(__name__)

__all__ = ["VARIANTS", "PROTOCOLS", "write_patch_set", "pair_file", "variant_root", "find_pair_files", "SIFT_FILE", "is_patch_set",
           "check_output", "set_magnification", "mismatched_magnification", "recut_patch_set", "merge_patch_sets"]

#: Patch variants: normalised by the detected orientation, or at orientation 0.
VARIANTS = ("oriented", "upright")
#: Negative protocols: Brown's random pairs of two tracks, and SIFT-nearest non-partners.
PROTOCOLS = ("random", "hard")
SIFT_FILE = "sift_descriptors.npy"
SUMMARY = "summary.json"
FORMAT = "patchmatch Brown-format patch set"
FORMAT_VERSION = 2


def pair_file(protocol: str, num_pairs: int) -> str:
    """File name of a protocol's pairs: ``m50_<M>_<M>_0.txt`` (Brown's naming) or ``m50_hard_<M>_<M>_0.txt``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return f"m50_{'hard_' if protocol == 'hard' else ''}{num_pairs}_{num_pairs}_0.txt"


def variant_root(root: str | os.PathLike, upright: bool = False) -> Path:
    """The Brown folder of one variant: ``root/oriented`` or ``root/upright`` for a set written
    by :func:`write_patch_set`, ``root`` itself for a plain Brown folder (e.g. liberty).

    Raises:
        FileNotFoundError: ``root`` is a patch set without the requested variant, or missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    if (root / SUMMARY).is_file() or (root / VARIANTS[0]).is_dir():
        sub = root / VARIANTS[1 if upright else 0]
        if not sub.is_dir():
            raise FileNotFoundError(f"{sub}: variant missing from the patch set {root}")
        return sub
    if upright:
        raise FileNotFoundError(f"{root}: a plain Brown folder has no upright variant")
    return root


def find_pair_files(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Pair files of a Brown folder by protocol: ``m50_hard_*.txt`` are hard, other ``m50_*.txt`` random."""
    root = Path(root)
    files = sorted(root.glob("m50_*.txt"))
    return {"random": [f for f in files if not f.name.startswith("m50_hard_")],
            "hard": [f for f in files if f.name.startswith("m50_hard_")]}  # fmt: skip


def is_patch_set(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder written by :func:`write_patch_set` (its summary says so)."""
    summary = Path(path) / SUMMARY
    try:
        return json.loads(summary.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def set_magnification(path: str | os.PathLike) -> float | None:
    """The magnification (patch side / keypoint size, :mod:`patchmatch.patches`) a set's patches were cut at.

    Args:
        path: a set folder written by :func:`write_patch_set` or one of its variant folders.

    Returns:
        The recorded magnification; :data:`~patchmatch.patches.MAGNIFICATION` for sets written before
        it was recorded; None for a folder that is not such a set (e.g. the real Brown data, cut by
        their own rule).

    Raises:
        ValueError: the summary records a magnification outside [1, 32] or not a number (the file named).
    """
    path = Path(path)
    for root in (path, path.parent):
        if is_patch_set(root):
            value = json.loads((root / SUMMARY).read_text()).get("magnification", MAGNIFICATION)
            try:
                return check_magnification(value)
            except ValueError as e:
                raise ValueError(f"{root / SUMMARY}: {e}") from None
    return None


def mismatched_magnification(path: str | os.PathLike, trained_at: float) -> float | None:
    """The magnification a set was cut at where it differs from ``trained_at`` (a network's); None when
    it is the same or the folder records none (:func:`set_magnification`)."""
    cut_at = set_magnification(path)
    return cut_at if cut_at is not None and cut_at != trained_at else None


def check_output(out: str | os.PathLike, overwrite: bool, protect: Sequence[str | os.PathLike] = ()) -> Path:
    """Resolves OUT and refuses outputs that would destroy anything but an earlier patch set.

    Raises:
        ValueError: OUT is or contains one of ``protect`` (the inputs).
        FileExistsError: OUT exists without ``overwrite``, is a file, or is not a patch set.
    """
    out = Path(out).resolve()
    for p in protect:
        p = Path(p).resolve()
        if p == out or p.is_relative_to(out):
            raise ValueError(f"{out}: the output would hold the input {p}; choose another output folder.")
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite (Python: overwrite=True) to replace it.")
        if not out.is_dir():
            raise FileExistsError(f"{out} is a file, not a patch set; refusing to replace it.")
        if any(out.iterdir()) and not is_patch_set(out):
            raise FileExistsError(f"{out} is not a patch set (no {SUMMARY} of ours); refusing to delete it.")
    out.parent.mkdir(parents=True, exist_ok=True)  # fails early, before the work, when it cannot be created
    return out


def write_patch_set(
    scene: Scene | str | os.PathLike,
    out: str | os.PathLike,
    images: Sequence[str] | None = None,
    config: PairSetConfig = PairSetConfig(),
    overwrite: bool = False,
    progress: bool = False,
    source: str | os.PathLike | None = None,
    magnification: float = MAGNIFICATION,
) -> dict:
    """Builds the tracks and pairs of a scene and writes them as a Brown-format patch set.

    Args:
        scene: a :class:`Scene` or a scene folder (``images/`` + ``cameras.json``); for a COLMAP
            model use :func:`patchmatch.datasets.scenes.scene_from_colmap` first.
        out: the set folder to write (layout in the module docstring). Written to
            ``out.partial`` and renamed, so an interrupted build leaves no half set.
        images: image names to use (default: all of the scene).
        config: track and sampling thresholds.
        overwrite: replace an existing ``out`` that is an earlier patch set (anything else is
            never deleted).
        progress: tqdm bars.
        source: where the scene came from (e.g. a COLMAP model), recorded in the summary.
        magnification: patch side / keypoint size (:func:`patchmatch.patches.extract_patches`);
            a network is trained and used at one magnification (it is recorded in its checkpoint).

    Returns:
        The summary (also written to ``out/summary.json``).

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is False, or it is not a patch set.
        SceneError: malformed scene.
        KeyError: an image name not in the scene.
        ValueError: ``out`` would contain the scene, repeated image names, no tracks found,
            an image's size differs from its camera's, or ``magnification`` is not positive.
    """
    check_magnification(magnification)
    t0 = time.perf_counter()
    scene = scene if isinstance(scene, Scene) else load_scene(scene)
    out = check_output(out, overwrite, [scene.root] + ([Path(source)] if source else []))
    names = scene.names if images is None else sorted(images)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"image(s) listed more than once: {repeated}")
    for n in names:
        if n not in scene.cameras:
            raise KeyError(f"{n!r} is not an image of {scene.root / 'cameras.json'}")
    feats, ims = detect_scene(scene, names, config.tracks.max_keypoints, progress=progress)
    tracks = build_tracks(scene, feats, names, config.tracks, progress=progress)
    ps = build_pair_set(scene, feats, tracks, config)
    return write_pair_set(out, ps, ims, tracks, {
        "scene": scene.name,
        "source": str(Path(source).resolve()) if source else str(Path(scene.root).resolve()),
        "scene_folder": str(Path(scene.root).resolve()),
        "config": asdict(config),
        "keypoints_per_image": {nm: int(len(feats[nm].keypoints)) for nm in ps.names},
    }, t0, magnification)  # fmt: skip


def write_pair_set(out: Path, ps: PairSet, images: dict[str, np.ndarray], tracks: Tracks, info: dict, t0: float,
                   magnification: float = MAGNIFICATION) -> dict:
    """Crops the patches of a :class:`PairSet` and writes the Brown-format set (module docstring).

    Args:
        out: the set folder (checked by :func:`check_output`); written to ``out.partial``, then renamed.
        ps: observations and labelled pairs.
        images: (H, W) uint8 image of each name in ``ps.names``.
        tracks: the tracks ``ps`` was drawn from (for the track statistics).
        info: summary fields describing the source (``scene``, ``source``, ``config``...).
        t0: ``time.perf_counter()`` at the start of the build (for ``seconds``).
        magnification: patch side / keypoint size the patches are cut at (recorded in the summary).

    Returns:
        The summary (also written to ``out/summary.json``).
    """
    check_magnification(magnification)
    n = len(ps.track_id)
    # Point ids: the track, or a fresh id per patch outside every track (never a match).
    point_ids = ps.track_id.astype(np.int64).copy()
    lone = np.flatnonzero(point_ids < 0)
    point_ids[lone] = tracks.num_tracks + np.arange(len(lone))
    variants = _cut_variants(ps, images, magnification)
    pairs = {"random": ps.pairs_random, "hard": ps.pairs_hard}
    files = {k: pair_file(k, len(v)) for k, v in pairs.items()}
    lengths = np.bincount(tracks.track_id) if len(tracks) else np.zeros(0, np.int64)
    with partial_folder(out) as tmp:
        for v, patches in variants.items():
            interest = np.c_[ps.image_index, ps.keypoints[:, :2], ps.keypoints[:, 3] if v == "oriented" else np.zeros(n),
                             ps.keypoints[:, 2]]  # fmt: skip
            write_brown(tmp / v, patches, point_ids, interest, {files[k]: pairs[k][:, :2] for k in PROTOCOLS})
        np.save(tmp / "oriented" / SIFT_FILE, np.clip(np.rint(ps.descriptors), 0, 255).astype(np.uint8))
        summary = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            **info,
            "images": list(ps.names),
            "num_tracks": int(tracks.num_tracks),
            "num_observations": int(len(tracks)),
            "mean_track_length": float(lengths.mean()) if len(lengths) else 0.0,
            "track_length_histogram": {str(k): int(c) for k, c in enumerate(np.bincount(lengths)) if c},
            "magnification": float(magnification),
            "num_patches": int(n),
            "num_patches_outside_tracks": int(len(lone)),
            "variants": list(VARIANTS),
            "protocols": {k: {"file": files[k], "pairs": int(len(pairs[k])), "positives": int(pairs[k][:, 2].sum())}
                          for k in PROTOCOLS},  # fmt: skip
            "interest_columns": ["image index", "x", "y", "orientation (deg)", "size"],
            "interest_units": "pixels of the images in scene_folder (undistorted ones for a COLMAP model), OpenCV convention",
            "seconds": round(time.perf_counter() - t0, 1),
        }
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1))
    logger.info("%s: %d tracks, %d patches, %d random pairs, %d hard pairs -> %s", info["scene"], tracks.num_tracks, n,
                len(ps.pairs_random), len(ps.pairs_hard), out)  # fmt: skip
    return summary


def _cut_variants(ps: PairSet, images: dict[str, np.ndarray], magnification: float) -> dict[str, np.ndarray]:
    """The (N, 64, 64) uint8 patches of every observation of ``ps``, per variant (oriented, upright)."""
    n = len(ps.track_id)
    variants = {v: np.zeros((n, PATCH_SIZE, PATCH_SIZE), np.uint8) for v in VARIANTS}
    for i, name in enumerate(ps.names):
        sel = np.flatnonzero(ps.image_index == i)
        if len(sel):
            variants["oriented"][sel] = extract_patches(images[name], ps.keypoints[sel], upright=False, magnification=magnification)
            variants["upright"][sel] = extract_patches(images[name], ps.keypoints[sel], upright=True, magnification=magnification)
    return variants


def _recut_image_folder(src: Path, summary: dict) -> Path:
    """Where the images of a set's ``interest.txt`` are: its ``scene_folder`` (``images/`` inside
    for a scene), else the package's own places beside the set (``SET.pairs/``, ``SET.undistorted/images/``)."""
    first = summary["images"][0]
    folders = [Path(summary[k]) / sub for k in ("scene_folder", "source") if summary.get(k) for sub in ("images", ".")]
    folders += [src.with_name(src.name + ".pairs"), src.with_name(src.name + ".undistorted") / "images"]
    for folder in folders:
        if (folder / first).is_file():
            return folder
    raise FileNotFoundError(f"{src}: the images it was cut from are not found (looked for {first} in "
                            f"{', '.join(str(f) for f in dict.fromkeys(folders))})")  # fmt: skip


def recut_patch_set(src: str | os.PathLike, out: str | os.PathLike, magnification: float, overwrite: bool = False) -> dict:
    """The same keypoints and pairs as a set of :func:`write_patch_set`, cut at another magnification.

    Faster than building the set again (no detection, no tracks): the patches are cropped again
    from the images the set was cut from, at the keypoints of its ``interest.txt`` (positions
    rounded to 1/1000 px there, so a re-cut at the set's own magnification equals it within a
    grey level or two on a fraction of a percent of the pixels).

    Args:
        src: a set written by :func:`write_patch_set` (any source: scene, COLMAP model, homography pairs, warps).
        out: the set folder to write (written to ``out.partial`` and renamed).
        magnification: patch side / keypoint size of the new patches.
        overwrite: replace an existing ``out`` that is a patch set.

    Returns:
        The new summary (``magnification``; ``recut_from`` names ``src``).

    Raises:
        ValueError: ``src`` is not such a set or is damaged (summary and ``interest.txt`` disagree), an
            image of a scene no longer has its camera's size, ``out`` is ``src``, or a bad magnification.
        FileNotFoundError: the images ``src`` was cut from are gone.
        FileExistsError: ``out`` exists and ``overwrite`` is False, or it is not a patch set.
    """
    t0 = time.perf_counter()
    magnification = check_magnification(magnification)
    src = Path(src)
    if not is_patch_set(src):
        raise ValueError(f"{src}: not a patch set of patchmatch make-patches (no {SUMMARY} of that format)")
    summary = json.loads((src / SUMMARY).read_text())
    if not isinstance(summary.get("images"), list) or not summary["images"]:
        raise ValueError(f"{src / SUMMARY}: no list of images; the set cannot be re-cut (build it again)")
    folder = _recut_image_folder(src, summary)
    out = check_output(out, overwrite, [src, folder])
    with partial_folder(out) as tmp:
        _recut_variants(src, tmp, summary, folder, magnification)
        summary.update({"magnification": magnification, "recut_from": str(src.resolve()),
                        "scene_folder": str(folder.resolve()), "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1))
    logger.info("%s: %d patches re-cut at magnification %g -> %s", src, summary.get("num_patches", 0), magnification, out)
    return summary


def _recut_variants(src: Path, tmp: Path, summary: dict, folder: Path, magnification: float) -> None:
    """Crops both variants of ``src`` again into ``tmp`` (see :func:`recut_patch_set`)."""
    from ..images import read_gray

    sizes = {}
    cameras = folder.parent / "cameras.json" if folder.name == "images" else folder / "cameras.json"
    if cameras.is_file():  # a scene: its images must still have the size the keypoints were found at
        entries = json.loads(cameras.read_text()).get("images", {})
        sizes = {n: (c.get("width"), c.get("height")) for n, c in entries.items() if isinstance(c, dict)}
    for variant in VARIANTS:
        (tmp / variant).mkdir(parents=True)
        for f in (src / variant).iterdir():
            if f.is_file() and not f.name.startswith(("patches", ".")):
                shutil.copy2(f, tmp / variant / f.name)
        interest = np.loadtxt(src / variant / "interest.txt", ndmin=2)
        if len(interest) != summary.get("num_patches", len(interest)) or (len(interest) and interest.shape[1] < 5):
            raise ValueError(f"{src / variant / 'interest.txt'}: {len(interest)} keypoints, the summary lists "
                             f"{summary.get('num_patches')} patches: the set is damaged (build it again)")
        patches = np.zeros((len(interest), PATCH_SIZE, PATCH_SIZE), np.uint8)
        for i, name in enumerate(summary["images"]):
            sel = np.flatnonzero(interest[:, 0] == i)
            if len(sel):
                image, _ = read_gray(folder / name)
                if name in sizes and sizes[name] != (image.shape[1], image.shape[0]):
                    raise ValueError(f"{folder / name}: {image.shape[1]}×{image.shape[0]} pixels, its camera says "
                                     f"{sizes[name][0]}×{sizes[name][1]}: the image changed since the set was cut")
                keypoints = np.c_[interest[sel, 1:3], interest[sel, 4], interest[sel, 3]]  # x, y, size, angle
                patches[sel] = extract_patches(image, keypoints, magnification=magnification)
        write_bitmaps(tmp / variant, patches)


def merge_patch_sets(sets: Sequence[str | os.PathLike], out: str | os.PathLike, info: dict, overwrite: bool = False,
                     image_prefixes: Sequence[str] | None = None) -> dict:  # fmt: skip
    """Several sets of :func:`write_patch_set` written as one (e.g. the views of many rendered worlds).

    Patches, keypoints and pairs are concatenated; point ids are offset so that no two sets share
    one (a pair across sets is never a match) and image indices so that each names its own image.

    Args:
        sets: the sets, all cut at one magnification.
        out: the merged set (written to ``out.partial`` and renamed).
        info: summary fields describing the source (``scene``, ``source``, ``scene_folder``...).
        overwrite: replace an existing ``out`` that is a patch set.
        image_prefixes: per set, a prefix of its image names in the merged summary (so that
            ``scene_folder / name`` is the image); default none.

    Returns:
        The merged summary (also written to ``out/summary.json``).

    Raises:
        ValueError: no sets, one that is not such a set, or sets cut at different magnifications.
        FileExistsError: as :func:`check_output`.
    """
    from .brown import BrownDataset

    t0 = time.perf_counter()
    sets = [Path(s) for s in sets]
    bad = [str(s) for s in sets if not is_patch_set(s)]
    if not sets or bad:
        raise ValueError(f"nothing to merge: not patch sets: {bad}" if bad else "nothing to merge: no sets given")
    summaries = [json.loads((s / SUMMARY).read_text()) for s in sets]
    mags = {float(s.get("magnification", MAGNIFICATION)) for s in summaries}
    if len(mags) > 1:
        raise ValueError(f"{', '.join(map(str, sets))}: cut at different magnifications {sorted(mags)}; re-cut them first")
    out = check_output(out, overwrite, sets)
    prefixes = list(image_prefixes) if image_prefixes is not None else [""] * len(sets)
    with partial_folder(out) as tmp:
        for v in VARIANTS:
            data = [BrownDataset(s / v) for s in sets]
            files = [find_pair_files(s / v) for s in sets]
            patch_off = np.cumsum([0] + [len(d) for d in data])
            point_off = np.cumsum([0] + [int(d.point_ids.max()) + 1 if len(d) else 0 for d in data])
            image_off = np.cumsum([0] + [len(s["images"]) for s in summaries])
            interest = np.concatenate([d.interest + np.r_[image_off[k], 0, 0, 0, 0] for k, d in enumerate(data)])
            pairs = {k: np.concatenate([d.pairs(f[k][0]).index + patch_off[i] for i, (d, f) in enumerate(zip(data, files))])
                     for k in PROTOCOLS}  # fmt: skip
            names = {k: pair_file(k, len(p)) for k, p in pairs.items()}
            write_brown(tmp / v, np.concatenate([np.asarray(d.patches) for d in data]),
                        np.concatenate([d.point_ids + point_off[k] for k, d in enumerate(data)]), interest,
                        {names[k]: pairs[k] for k in PROTOCOLS})  # fmt: skip
        np.save(tmp / "oriented" / SIFT_FILE, np.concatenate([np.load(s / "oriented" / SIFT_FILE) for s in sets]))
        summary = {"format": FORMAT, "version": FORMAT_VERSION, **info,
                   "images": [p + n for p, s in zip(prefixes, summaries) for n in s["images"]],
                   "merged_from": [str(s.resolve()) for s in sets],
                   "num_tracks": sum(s["num_tracks"] for s in summaries),
                   "num_observations": sum(s["num_observations"] for s in summaries),
                   "mean_track_length": sum(s["num_observations"] for s in summaries) / max(1, sum(s["num_tracks"] for s in summaries)),
                   "magnification": mags.pop(), "num_patches": int(patch_off[-1]),
                   "num_patches_outside_tracks": sum(s.get("num_patches_outside_tracks", 0) for s in summaries),
                   "variants": list(VARIANTS),
                   "protocols": {k: {"file": names[k], "pairs": int(len(pairs[k])),
                                     "positives": sum(s["protocols"][k]["positives"] for s in summaries)} for k in PROTOCOLS},
                   "interest_columns": summaries[0].get("interest_columns"), "interest_units": summaries[0].get("interest_units"),
                   "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1))
    logger.info("%d sets merged: %d patches -> %s", len(sets), summary["num_patches"], out)
    return summary
