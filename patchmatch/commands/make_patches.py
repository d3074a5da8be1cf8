"""``patchmatch make-patches SCENE OUT``: a ground-truth patch benchmark of a scene, in the Brown format.

SCENE is a scene folder with ``images/`` and ``cameras.json``, or a COLMAP sparse model folder
(``cameras``/``images``/``points3D`` .bin or .txt) with ``--image-dir`` (the model is undistorted
into ``OUT.undistorted/`` first). Keypoints are tied into tracks by the cameras alone (epipolar
distance, reprojection in every view, physical size, third-view support, uniqueness), never by a
descriptor. OUT gets ``oriented/`` and ``upright/`` Brown-format sets with the random-negative and
hard-negative pair files, and ``summary.json``.

SCENE may also be a folder of image pairs related by a homography (``<pair>/a.png``, ``b.png``,
``H.txt`` mapping pixels of a to pixels of b; e.g. the Oxford graf sequence) or one such pair:
keypoints are then tied by the homography (:mod:`patchmatch.datasets.homography`;
``--reprojection-px`` is the largest transfer error, ``--size-ratio`` the largest ratio of sizes).

With ``--warps N``, SCENE is any folder of photographs (no cameras needed): each image is warped N
times by a random homography and degraded photometrically (:mod:`patchmatch.datasets.warps`), the
pairs are written to ``OUT.pairs/`` (with ``warps.json``, the sources and settings: a rerun with the
same ones resumes, other ones need ``--overwrite``) and the set is built from them as from homography
pairs — training data from your own images. Its ``upright/`` variant holds in-plane rotations of up
to ±30° (the warps'), so only ``oriented/`` is a meaningful benchmark of such a set.

With ``--worlds N``, SCENE is a folder of photographs used as textures (training photographs only:
a test scene's are refused): N multi-view worlds are rendered with exact cameras and depth
(:mod:`patchmatch.datasets.worlds`: planes, boxes, cylinders, terrain; wide baselines, occlusion,
lighting, blur, noise, JPEG) into ``OUT.worlds/`` and their labelled pairs merged into OUT.
With ``--reconstruct``, SCENE is a photo collection without cameras: it is reconstructed
(``OUT.sfm/``) and fresh detections in every registered view are labelled by the model's cameras
(:mod:`patchmatch.datasets.photo_collections`, Brown's recipe).

Patches cover ``--magnification`` × the keypoint size (default 6, SIFT's descriptor support); a
network is trained and used at one magnification (its checkpoint records it). SCENE may also be a
patch set written by this command: with ``--magnification M`` its keypoints and pairs are cut again
at M (no detection, no tracks; seconds instead of minutes).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-patches", help="build a ground-truth patch set (Brown format) from a scene, COLMAP model, homography pairs or photographs",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("scene", type=Path,
                   help="scene folder (images/ + cameras.json), COLMAP sparse model folder, folder of homography pairs, "
                        "or (with --warps) folder of photographs")
    p.add_argument("out", type=Path, help="output folder (Brown-format oriented/ and upright/ sets, summary.json)")
    p.add_argument("--image-dir", type=Path, help="images of a COLMAP model (required with a model)")
    p.add_argument("--images", nargs="+", metavar="NAME", help="use only these images")
    p.add_argument("--exclude", nargs="+", metavar="NAME", default=[], help="leave these images out")
    p.add_argument("--max-keypoints", type=int, default=None, help="SIFT keypoints per image (default 4096)")
    p.add_argument("--epipolar-px", type=float, help="max distance to the epipolar line (pixels; default 1)")
    p.add_argument("--reprojection-px", type=float, default=None, help="max reprojection error in every view (pixels; default 1)")
    p.add_argument("--size-ratio", type=float, default=None, help="max ratio of physical keypoint sizes (default 1.4)")
    p.add_argument("--min-track-length", type=int,
                   help="views a track keeps after the geometric checks (the orientation step may leave 2; default 3)")
    p.add_argument("--positives-per-track", type=int, help="at most this many positive pairs per track (default 6)")
    p.add_argument("--detected-share", type=float,
                   help="share of tracks whose views keep their own detection, orientation unchosen (default 0.25; 0: all consistent)")
    p.add_argument("--warps", type=int, metavar="N",
                   help="SCENE is a folder of photographs: N random homography warps per image (training data)")
    p.add_argument("--worlds", type=int, metavar="N",
                   help="SCENE is a folder of training photographs: render N textured worlds with exact cameras (training data)")
    p.add_argument("--reconstruct", action="store_true",
                   help="SCENE is a photo collection without cameras: reconstruct it, label detections by the model's cameras")
    p.add_argument("--magnification", type=float, default=None,
                   help="patch side / keypoint size (default: patchmatch.patches.MAGNIFICATION, 6, SIFT's descriptor support); "
                        "a network is trained and used at one magnification (its checkpoint records it)")
    p.add_argument("--seed", type=int, default=None, help="seed of every random draw (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


#: build options left None on the command line: option → (attribute, default)
BUILD_DEFAULTS = {"--max-keypoints": ("max_keypoints", 4096), "--reprojection-px": ("reprojection_px", 1.0),
                  "--size-ratio": ("size_ratio", 1.4), "--seed": ("seed", 0)}  # fmt: skip


def _fill_defaults(args: argparse.Namespace) -> None:
    """Sets the :data:`BUILD_DEFAULTS` of the options not given (they stay None where they do not apply)."""
    for attr, default in BUILD_DEFAULTS.values():
        if getattr(args, attr) is None:
            setattr(args, attr, default)


def _is_colmap_model(path: Path) -> bool:
    """True when ``path`` holds a COLMAP sparse model (``cameras.bin`` or ``cameras.txt``)."""
    return any((path / f"cameras.{ext}").is_file() for ext in ("bin", "txt"))


def _is_homography_set(path: Path) -> bool:
    """True when ``path`` is a homography pair folder or holds some."""
    from ..datasets.homography import pair_folders

    return bool(pair_folders(path))


def _print_summary(out: Path, s: dict) -> None:
    """Prints one line of a written set's summary: images, tracks, patches and pair files."""
    pr = s["protocols"]
    print(
        f"{out}: scene {s['scene']}, {len(s['images'])} images, {s['num_tracks']} tracks, {s['num_observations']} "
        f"observations (mean track length {s['mean_track_length']:.2f}), {s['num_patches']} patches; "
        f"random {pr['random']['pairs']} pairs ({pr['random']['file']}), hard {pr['hard']['pairs']} pairs "
        f"({pr['hard']['file']}); oriented/ and upright/ in the Brown format"
    )


def _refuse_scene_options(args: argparse.Namespace, context: str, subset: bool) -> None:
    """Raises ValueError naming the given options that only scenes with cameras take (and, with
    ``subset``, ``--images`` / ``--exclude``)."""
    scene_only = {"--image-dir": args.image_dir, "--epipolar-px": args.epipolar_px is not None,
                  "--min-track-length": args.min_track_length is not None,
                  "--positives-per-track": args.positives_per_track is not None,
                  "--detected-share": args.detected_share is not None}  # fmt: skip
    if subset:
        scene_only = {"--images": args.images, "--exclude": args.exclude, **scene_only}
    given = [k for k, v in scene_only.items() if v]
    if given:
        raise ValueError(f"{context}: {', '.join(given)} do(es) not apply")


def _homography_config(args: argparse.Namespace):
    """The :class:`~patchmatch.datasets.homography.HomographyPairConfig` of the command line."""
    from ..datasets.homography import HomographyPairConfig

    return HomographyPairConfig(max_keypoints=args.max_keypoints, max_px=args.reprojection_px, size_ratio=args.size_ratio,
                                seed=args.seed, magnification=args.magnification)  # fmt: skip


def _run_warps(args: argparse.Namespace) -> int:
    """``--warps N``: warped pairs of the photographs in SCENE → OUT.pairs/ → the patch set OUT."""
    from ..datasets.warps import WarpConfig, write_warped_set
    from ..images import list_images

    if args.warps < 1:
        raise ValueError(f"--warps must be >= 1 (warped pairs per photograph), got {args.warps}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if not args.scene.is_dir():
        raise FileNotFoundError(f"{args.scene}: not a directory (--warps takes a folder of photographs)")
    _refuse_scene_options(args, f"--warps builds homography pairs from the photographs in {args.scene}", subset=False)
    out = args.out.resolve()
    pairs = out.with_name(out.name + ".pairs")  # where write_warped_set puts them
    photos = args.scene.resolve()
    for p in (out, pairs):
        if p == photos or p.is_relative_to(photos):
            raise ValueError(f"{p} lies inside the photographs' folder {photos}: a rerun would warp its own output; "
                             "choose an output folder outside it")  # fmt: skip
    config = WarpConfig(per_image=args.warps, seed=args.seed)
    hconf = _homography_config(args)  # checked before any work
    names = list_images(args.scene)
    unknown = [n for n in list(args.images or []) + list(args.exclude) if n not in names]
    if unknown:
        raise ValueError(f"{args.scene}: no image(s) {unknown}")
    twice = sorted({n for n in args.images or [] if list(args.images).count(n) > 1})
    if twice:
        raise ValueError(f"--images names {twice} more than once")
    names = [n for n in (args.images or names) if n not in set(args.exclude)]
    if not names:
        raise ValueError(f"{args.scene}: no images to warp")
    summary = write_warped_set([args.scene / n for n in names], out, config, hconf, overwrite=args.overwrite, photos=str(photos))
    _print_summary(args.out, summary)
    return 0


def run(args: argparse.Namespace) -> int:
    from .. import colmap
    from ..datasets.patchset import check_output, is_patch_set
    from ..datasets.scenes import load_scene
    from ..patches import MAGNIFICATION, check_magnification

    colmap.set_verbosity(bool(getattr(args, "verbose", False)))
    magnification_given = args.magnification
    args.magnification = MAGNIFICATION if args.magnification is None else check_magnification(args.magnification)
    if args.warps is not None and is_patch_set(args.scene):
        raise ValueError(f"{args.scene} is a patch set, not a folder of photographs: --warps does not apply "
                         "(re-cut it with --magnification alone)")  # fmt: skip
    # checked before any work (write_patch_set checks again against the scene it is given)
    check_output(args.out, args.overwrite, [args.scene] + ([args.image_dir] if args.image_dir else []))
    if sum(x for x in (args.warps is not None, args.worlds is not None, args.reconstruct)) > 1:
        raise ValueError("--warps, --worlds and --reconstruct are different sources: give one")
    if args.warps is not None:
        _fill_defaults(args)
        return _run_warps(args)
    if args.worlds is not None or args.reconstruct:
        _fill_defaults(args)
        return _run_engine_source(args)
    if not args.scene.is_dir():
        raise FileNotFoundError(f"{args.scene}: not a directory (a scene folder or a COLMAP sparse model)")
    if is_patch_set(args.scene):
        return _run_recut(args, magnification_given)
    _fill_defaults(args)
    if (args.scene / "cameras.json").is_file():
        return _run_scene(args, load_scene(args.scene), None)
    if _is_homography_set(args.scene):
        return _run_homography(args)
    if _is_colmap_model(args.scene):
        return _run_colmap(args)
    if any(args.scene.glob("patches*.bmp")) or any(args.scene.glob("*/patches*.bmp")):
        raise ValueError(f"{args.scene}: patch bitmaps but not a set written by make-patches (its summary.json); only such "
                         "sets can be re-cut (their keypoints and images are recorded)")  # fmt: skip
    raise FileNotFoundError(f"{args.scene}: neither cameras.json nor a COLMAP model (cameras.bin/.txt) found")


def _run_engine_source(args: argparse.Namespace) -> int:
    """``--worlds N`` (rendered worlds textured with SCENE's photographs) or ``--reconstruct`` (SCENE a collection)."""
    from ..datasets.photo_collections import write_collection_set
    from ..datasets.worlds import write_world_set
    from ..images import list_images

    if not args.scene.is_dir():
        raise FileNotFoundError(f"{args.scene}: not a directory of photographs")
    if args.image_dir or args.epipolar_px is not None:
        raise ValueError(f"{args.scene}: --image-dir and --epipolar-px do not apply to --worlds / --reconstruct")
    config = _pair_config(args)
    if args.reconstruct:
        summary = write_collection_set(args.scene, args.out, args.images, config, args.magnification,
                                       overwrite=args.overwrite, progress=not args.quiet)  # fmt: skip
    else:
        names = [n for n in (args.images or list_images(args.scene)) if n not in set(args.exclude)]
        summary = write_world_set([args.scene / n for n in names], args.out, args.worlds, args.seed, pair_config=config,
                                  magnification=args.magnification, overwrite=args.overwrite)  # fmt: skip
    _print_summary(args.out, summary)
    return 0


def _run_recut(args: argparse.Namespace, magnification_given: float | None) -> int:
    """SCENE is a patch set: its keypoints and pairs cut again at ``--magnification`` (no other option applies)."""
    from ..datasets.patchset import recut_patch_set

    context = f"{args.scene} is a patch set, re-cut at another magnification"
    _refuse_scene_options(args, context, subset=True)
    given = [k for k, v in BUILD_DEFAULTS.items() if getattr(args, v[0]) is not None]
    if given:
        raise ValueError(f"{context} (its keypoints and pairs kept): {', '.join(given)} do(es) not apply")
    if magnification_given is None:
        raise ValueError(f"{args.scene} is a patch set: pass --magnification M to re-cut its patches at M")
    _print_summary(args.out, recut_patch_set(args.scene, args.out, args.magnification, overwrite=args.overwrite))
    return 0


def _run_homography(args: argparse.Namespace) -> int:
    """SCENE is a folder of homography pairs (or one pair)."""
    from ..datasets.homography import write_homography_set

    _refuse_scene_options(args, f"{args.scene} is a folder of homography pairs", subset=True)
    _print_summary(args.out, write_homography_set(args.scene, args.out, _homography_config(args), overwrite=args.overwrite))
    return 0


def _run_colmap(args: argparse.Namespace) -> int:
    """SCENE is a COLMAP model: undistorted into ``OUT.undistorted/`` with ``--image-dir``, then built as a scene."""
    from ..datasets.scenes import scene_from_colmap

    if args.image_dir is None:
        raise ValueError(f"{args.scene} is a COLMAP model: pass --image-dir with its images")
    out = args.out.resolve()
    scene = scene_from_colmap(args.scene, args.image_dir, out.with_name(out.name + ".undistorted"),
                              overwrite=args.overwrite, names=list(args.images or []) + list(args.exclude))  # fmt: skip
    return _run_scene(args, scene, args.scene)


def _run_scene(args: argparse.Namespace, scene, source: Path | None) -> int:
    """Builds the set of a scene with cameras (its ``--images`` less ``--exclude``; ``source``: the COLMAP model, if any)."""
    from ..datasets.patchset import write_patch_set

    names = list(args.images) if args.images else scene.names
    unknown = [n for n in list(names) + list(args.exclude) if n not in scene.cameras]
    if unknown:
        raise ValueError(f"{scene.root / 'cameras.json'} has no image(s) {unknown}")
    names = [n for n in names if n not in set(args.exclude)]
    config = _pair_config(args)
    _print_summary(args.out, write_patch_set(scene, args.out, names, config, overwrite=args.overwrite,
                                             progress=not args.quiet, source=source, magnification=args.magnification))  # fmt: skip
    return 0


def _pair_config(args: argparse.Namespace):
    """The :class:`~patchmatch.datasets.tracks.PairSetConfig` of the command line (a share of as-detected positives included)."""
    from ..datasets.tracks import PairSetConfig, TrackConfig

    tracks = TrackConfig(
        max_keypoints=args.max_keypoints,
        epipolar_px=1.0 if args.epipolar_px is None else args.epipolar_px,
        reprojection_px=args.reprojection_px,
        size_ratio=args.size_ratio,
        min_track_length=3 if args.min_track_length is None else args.min_track_length,
        **({} if args.detected_share is None else {"detected_share": args.detected_share}),
    )
    per_track = 6 if args.positives_per_track is None else args.positives_per_track
    return PairSetConfig(tracks=tracks, max_positives_per_track=per_track, seed=args.seed)
