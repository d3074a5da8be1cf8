"""Drop-in matching for an existing COLMAP project: its database, its keypoints.

For a database that already holds keypoints and descriptors (``colmap feature_extractor``,
SIFT with or without affine shapes), patches are cropped from the database's own keypoint
shapes (:func:`~patchmatch.patches.extract_patches_colmap`), candidates come from the stored
descriptors, the network decides the matches, and they are written into that database and
verified geometrically, so that ``colmap mapper`` (or pycolmap) continues from it.

Pairs that already hold matches or a two-view geometry are left alone unless ``overwrite`` (pairs
whose entries hold no match, as COLMAP's matchers leave the pairs they failed on, are matched);
each pair's matches are written in their own transaction, so an interrupted run resumes by
running the same command again. With ``DatabaseMatchConfig.guided``, the pairs matched and
verified in a run are matched again guided by their geometry (:mod:`patchmatch.stages.guided`)
and verified once more.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import colmap
from .colmap.convention import colmap_to_opencv
from .features import Features
from .images import ImageReadError, read_gray, stored_size
from .matching import MatchConfig
from .pairs import Pair, make_pairs
from .patches import extract_patches_colmap
from .scoring import PatchScorer, describe_scorer
from .stages import guided, match, verify

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseMatchConfig:
    """Settings of :func:`match_database`.

    Attributes:
        pairs: ``"exhaustive"``, ``"sequential:N"``, ``"retrieval:N"`` or ``"file:PATH"`` (hloc's pairs format).
        threads: worker threads of the candidate search; None: PyTorch's thread count.
        match: candidate search and match decision (policy, for experiments).
        verification: RANSAC settings of the geometric verification (policy).
        guided: geometry-guided matching of the pairs verified in this run
            (:class:`~patchmatch.stages.guided.GuidedConfig`); None (default): none.
    """

    pairs: str = "exhaustive"
    threads: int | None = None
    match: MatchConfig = field(default_factory=MatchConfig)
    verification: colmap.VerificationConfig = field(default_factory=colmap.VerificationConfig)
    guided: guided.GuidedConfig | None = None


def database_features(image: colmap.DatabaseImage) -> Features:
    """COLMAP keypoints and descriptors → :class:`Features` (OpenCV convention).

    ``size`` = 2σ with σ = sqrt|det A| of the affine shape, ``angle`` = atan2(a21, a11) in
    degrees; COLMAP's L1-root uint8 descriptors are squared back to SIFT's (L1-normalised)
    layout, so the candidate search's RootSIFT recovers them exactly up to scale.
    """
    k = image.keypoints.astype(np.float64)
    xy = colmap_to_opencv(k[:, :2])
    a = k[:, 2:6].reshape(-1, 2, 2)
    size = 2.0 * np.sqrt(np.abs(np.linalg.det(a)))
    angle = np.degrees(np.arctan2(a[:, 1, 0], a[:, 0, 0]))
    keypoints = np.column_stack([xy, size, angle]).astype(np.float32)
    descriptors = image.descriptors.astype(np.float32) ** 2
    return Features(keypoints, descriptors, np.zeros(len(k), np.float32), np.array([image.width, image.height], np.int64))


def _check_image_files(image_dir: Path, images: dict[str, colmap.DatabaseImage], names: list[str],
                       bad: dict[str, str]) -> None:  # fmt: skip
    """Adds to ``bad`` the images of ``names`` whose file is missing or unreadable, or whose stored
    size differs from their camera's in the database (a resized file, another folder): checked from
    the file headers before any pair is matched, whether or not the network will read the image."""
    for name in names:
        if name in bad:
            continue
        path, im = image_dir / name, images[name]
        try:
            size = stored_size(path)
        except ImageReadError as error:
            bad[name] = str(error)
        else:
            if size == (im.width, im.height):
                continue
            bad[name] = _size_mismatch(path, *size, im)
        logger.warning("%s", bad[name])


def _size_mismatch(path: Path, width: int, height: int, image: colmap.DatabaseImage) -> str:
    return (f"{path}: image is {width}×{height} px but its camera in the database is "
            f"{image.width}×{image.height} px (resized or a different file?)")  # fmt: skip


def _read_matching_frame(path: Path, image: colmap.DatabaseImage) -> np.ndarray:
    """Reads an image in COLMAP's frame and checks it against the database's camera size."""
    pixels, _ = read_gray(path)
    if pixels.shape != (image.height, image.width):
        raise ImageReadError(_size_mismatch(path, pixels.shape[1], pixels.shape[0], image))
    return pixels


@dataclass
class _PairStates:
    """The pairs of a database run, sorted by what happens to them.

    Attributes:
        todo: pairs to match. skipped: ``[name0, name1, reason]`` of pairs left alone.
        replace: image-id keys of pairs whose earlier entries new matches replace (``overwrite``,
            or entries without a single match).
        empty: of those, the pairs whose entries hold no match and no inlier (COLMAP's matchers
            record the pairs they tried and failed): matched as if new, without ``overwrite``.
        unverified: pairs holding matches but no two-view geometry (an interrupted run),
            verified as they are.
    """

    todo: list[Pair] = field(default_factory=list)
    skipped: list[list[str]] = field(default_factory=list)
    replace: set[tuple[int, int]] = field(default_factory=set)
    empty: set[tuple[int, int]] = field(default_factory=set)
    unverified: list[Pair] = field(default_factory=list)


def _sort_pairs(database: Path, images: dict[str, colmap.DatabaseImage], pairs: list[Pair], bad: dict[str, str],
                overwrite: bool) -> _PairStates:  # fmt: skip
    """Sorts ``pairs`` by what the database already holds (see :class:`_PairStates`)."""
    matched, geometries = colmap.pairs_with_matches(database)
    states = _PairStates()
    for a, b in pairs:
        key = _key(images, a, b)
        if a in bad or b in bad:
            culprit = a if a in bad else b
            states.skipped.append([a, b, f"{culprit}: {bad[culprit]}"])
        elif key not in matched and key not in geometries:
            states.todo.append((a, b))
        elif matched.get(key, 0) == 0 and geometries.get(key, 0) == 0:  # tried before, nothing found
            states.empty.add(key)
            states.replace.add(key)
            states.todo.append((a, b))
        elif overwrite:  # replaced only once new matches are there to write
            states.replace.add(key)
            states.todo.append((a, b))
        elif key not in geometries:  # matches without a two-view geometry: verification comes last
            states.unverified.append((a, b))
        else:
            what = "matches" if key in matched else "a two-view geometry"
            states.skipped.append([a, b, f"already holds {what} (--overwrite replaces them)"])
    return states


def _key(images: dict[str, colmap.DatabaseImage], a: str, b: str) -> tuple[int, int]:
    return tuple(sorted((images[a].image_id, images[b].image_id)))


def _read_images(database: Path, image_dir: Path) -> dict[str, colmap.DatabaseImage]:
    """The database's images, checked against the image folder.

    Raises:
        FileNotFoundError: the database or the folder is missing, or holds none of the images.
        IsADirectoryError, NotADirectoryError: the database is a folder, or the image folder a file.
        ValueError: the database holds no images.
    """
    if database.is_dir():
        raise IsADirectoryError(f"{database}: a folder, not a COLMAP database file (arguments: DATABASE IMAGES)")
    if not database.is_file():
        raise FileNotFoundError(f"COLMAP database {database} does not exist")
    if image_dir.exists() and not image_dir.is_dir():
        raise NotADirectoryError(f"{image_dir}: a file, not an image folder (arguments: DATABASE IMAGES)")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist")
    columns = colmap.peek_keypoint_columns(database)  # checked before pycolmap opens (and writes) the file
    if not columns:
        raise ValueError(f"{database} holds no images: run COLMAP's feature extraction first")
    if not any((image_dir / n).is_file() for n in columns):
        raise FileNotFoundError(f"none of the {len(columns)} images of {database} is in {image_dir}: wrong image folder?")
    positions_only = sorted(n for n, cols in columns.items() if cols == 2)
    if positions_only:
        raise ValueError(colmap.positions_only_message(database, positions_only[0]))
    return colmap.read_database_images(database)


def _unmatched(states: _PairStates, images: dict[str, colmap.DatabaseImage], summary: match.MatchSummary,
               written: set[Pair]) -> list[list[str]]:  # fmt: skip
    """``[name0, name1, reason]`` of the pairs to match that got no new matches, in order."""
    skipped = []
    for a, b in states.todo:
        key = _key(images, a, b)
        replaced = key in states.replace and key not in states.empty
        kept = "; its existing matches and two-view geometry were kept" if replaced else ""
        if (a, b) in summary.failed:
            skipped.append([a, b, summary.failed[(a, b)] + kept])
        elif (a, b) in written:
            continue
        elif (a, b) not in summary.plan.selected:
            overlap = summary.plan.overlaps.get((a, b), 0)
            skipped.append([a, b, f"descriptor overlap {overlap}: not selected for matching{kept}"])
        elif replaced:
            skipped.append([a, b, "no new matches" + kept])
    return skipped


def match_database(
    database: str | os.PathLike,
    image_dir: str | os.PathLike,
    config: DatabaseMatchConfig = DatabaseMatchConfig(),
    scorer: PatchScorer | None = None,
    overwrite: bool = False,
    progress: bool = False,
    executor=None,
    spec: dict | None = None,
) -> dict:
    """Matches the images of an existing COLMAP database with the patch network.

    Args:
        database: COLMAP database holding images, cameras, keypoints and descriptors.
        image_dir: the folder the database's image names are relative to.
        config: see :class:`DatabaseMatchConfig`.
        scorer: defaults to the shipped weights.
        overwrite: replace the matches and two-view geometries of pairs that already hold some,
            where this run finds new matches (the others keep theirs, noted in ``skipped_pairs``).
            Without it such pairs are left alone, except that pairs holding matches but no
            two-view geometry (an interrupted run: verification comes last) are verified.
        progress: show progress bars.
        executor: a distributed executor (:class:`~patchmatch.executors.RayExecutor`) runs the
            searches and the network on its workers (shards in ``DATABASE.shards/``); None: here.
        spec: the network the executor's workers load
            (:func:`patchmatch.stages.match.load_scorer`); None: ``scorer``'s own.

    Returns:
        A report: ``images``, ``pairs``, ``matched_pairs``, ``verified_existing_pairs``,
        ``descriptor_only_pairs``, ``matches``, ``candidates_scored`` (candidate keypoint pairs the
        network compared: 0 where every pair kept SIFT's own matches, e.g. strong pairs, and the
        images were not read), ``skipped_pairs`` (``[name0, name1, reason]``),
        ``bad_images`` (``[name, reason]``), ``database_after`` (its counts after
        verification), ``network``, ``precision``, ``backend``, ``tta``, ``scoring`` (what scored
        this run's matches, and where: :func:`patchmatch.stages.match.scoring_report`; a rerun
        keeps the pairs an earlier run matched, whatever its settings),
        ``guided`` (``pairs_guided``, ``candidates_scored``, ``matches_added``: the
        geometry-guided matching), ``seconds`` per stage.

    Raises:
        FileNotFoundError: the database or the image folder does not exist.
        ValueError: bad pairs specification or unknown names in a pairs file.
    """
    database, image_dir = Path(database), Path(image_dir)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    images = _read_images(database, image_dir)
    bad = {n: "no keypoints in the database" for n, im in images.items() if len(im.keypoints) == 0}
    names = sorted(images)
    pairs = make_pairs(config.pairs, names, {n: im.descriptors for n, im in images.items()})
    _check_image_files(image_dir, images, sorted({n for pair in pairs for n in pair}), bad)
    states = _sort_pairs(database, images, pairs, bad, overwrite)
    if states.unverified:
        logger.info("%s: %d pairs hold matches but no two-view geometry (an interrupted run?): verifying them",
                    database, len(states.unverified))  # fmt: skip
    logger.info("%s: %d images, %d pairs to match, %d skipped", database, len(images), len(states.todo), len(states.skipped))
    seconds["read"] = round(time.perf_counter() - t0, 3)
    scorer = scorer or PatchScorer.load()
    spec = spec or match.scorer_spec(scorer)
    logger.info("network: %s", describe_scorer(scorer))
    t0 = time.perf_counter()
    written, count = _match(database, image_dir, images, pairs, states, bad, scorer, spec, config, progress, executor)
    seconds["match"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    verify.run(database, config.verification, pairs=written + states.unverified)
    seconds["verify"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    guided_counts = _guide(database, image_dir, images, written, scorer, config, progress)
    seconds["guided"] = round(time.perf_counter() - t0, 3)
    backend = getattr(scorer, "backend", None) if spec["device"] == str(scorer.device) else "torch"  # else GPU actors
    return {
        "database": str(database), "images": len(images), "pairs": len(pairs), "matched_pairs": len(written),
        "verified_existing_pairs": len(states.unverified), "descriptor_only_pairs": count["descriptor_only"],
        "matches": count["matches"], "candidates_scored": count["candidates"], "skipped_pairs": states.skipped,
        "bad_images": sorted([n, r] for n, r in bad.items()),
        "database_after": vars(colmap.database_summary(database)),
        "network": describe_scorer(scorer),  # this run's pairs (earlier runs' matches are kept as they are)
        "precision": spec["precision"], "backend": backend, "tta": spec["tta"], "scoring": count["scoring"],
        "guided": guided_counts, "seconds": seconds,
    }  # fmt: skip


def _patch_loader(image_dir: Path, images: dict[str, colmap.DatabaseImage], scorer: PatchScorer):
    """``(image name, keep)`` → (N, 64, 64) uint8 patches of its database keypoints
    (:data:`~patchmatch.stages.match.PatchLoader`)."""

    def load_patches(name: str, keep: np.ndarray | None = None) -> np.ndarray:
        im = images[name]
        pixels = _read_matching_frame(image_dir / name, im)
        return extract_patches_colmap(pixels, im.keypoints, magnification=scorer.magnification, keep=keep)

    return load_patches


def _guide(database, image_dir, images, written, scorer, config, progress) -> dict:
    """Geometry-guided matching of the pairs ``written`` (and verified) in this run: their new
    matches join the stored ones and the pairs are verified again. Returns the report's counts."""
    if config.guided is None or not written:
        return {"pairs_guided": 0, "candidates_scored": 0, "matches_added": 0}
    features = {n: database_features(images[n]) for p in written for n in p}
    changed: dict[Pair, np.ndarray] = {}

    def write(a: str, b: str, new: np.ndarray, scores: np.ndarray, scored: int) -> None:
        if len(new):
            old = colmap.read_matches(database, images[a].image_id, images[b].image_id)
            changed[(a, b)] = guided.merge_matches(old, np.zeros(len(old), np.float32), new, scores)[0]

    summary = guided.guide_pairs(database, written, features, _patch_loader(image_dir, images, scorer), scorer,
                                 config.guided, write, progress)  # fmt: skip
    guided.update_database(database, changed, config.verification)
    return {"pairs_guided": len(summary.pairs), "candidates_scored": summary.candidates, "matches_added": summary.added}


@dataclass(frozen=True)
class DatabaseSource:
    """Where a Ray worker finds a database image's features and patches: the database's
    keypoints and descriptors in the cluster's object store (``handles``, name →
    :meth:`~patchmatch.executors.RayExecutor.put` of a :class:`colmap.DatabaseImage`) and the
    image folder on a shared file system; ``digest`` names the keypoints (shards of other
    keypoints are never read)."""

    image_dir: str
    handles: dict
    digest: str

    def key(self) -> str:
        return self.digest

    def settings(self) -> tuple:
        return (self.digest,)

    def open(self, magnification: float):
        """``(features by name, streamed; patch loader)``."""
        from .cache import LruMapping
        from .executors import fetch
        from .stages.match import FEATURE_CACHE_MB

        images = LruMapping(self.handles, lambda n: fetch(self.handles[n]), FEATURE_CACHE_MB * 2**20,
                            lambda im: im.keypoints.nbytes + im.descriptors.nbytes)  # fmt: skip
        features = LruMapping(self.handles, lambda n: database_features(images[n]), FEATURE_CACHE_MB * 2**20,
                              lambda f: f.keypoints.nbytes + f.descriptors.nbytes)  # fmt: skip

        def load_patches(name: str, keep: np.ndarray | None = None) -> np.ndarray:
            im = images[name]
            pixels = _read_matching_frame(Path(self.image_dir) / name, im)
            return extract_patches_colmap(pixels, im.keypoints, magnification=magnification, keep=keep)

        return features, load_patches


def _distributed(executor, database: Path, image_dir: Path, images, pairs, states, bad, scorer, spec, config, write):
    """The match loop on a distributed executor (:func:`patchmatch.stages.match.run_distributed`);
    shards go to ``DATABASE.shards/``."""
    import hashlib

    usable = sorted(n for n in images if n not in bad)
    digest = hashlib.sha256()
    for n in usable:
        digest.update(n.encode() + images[n].keypoints.tobytes())
    source = DatabaseSource(str(image_dir.resolve()), {n: executor.put(images[n]) for n in usable}, digest.hexdigest()[:24])
    ok = set(usable)
    shard_dir = database.with_name(database.name + ".shards")
    return match.run_distributed(executor, source, [p for p in pairs if p[0] in ok and p[1] in ok], states.todo,
                                 write, scorer, config.match, shard_dir, spec=spec)  # fmt: skip


def _match(database, image_dir, images, pairs, states, bad, scorer, spec, config, progress,
           executor=None) -> tuple[list[Pair], dict]:  # fmt: skip
    """Runs the match stage's loop on the database's keypoints, writing each pair's new matches
    (replacing what it held under ``overwrite``); adds the pairs left without new matches to
    ``states.skipped`` and unreadable images to ``bad``.

    Returns:
        ``(pairs written, {"matches": total, "descriptor_only": pairs kept with SIFT's matches,
        "scoring": where the network scored})``.
    """
    features = {n: database_features(images[n]) for n in images if n not in bad}
    written: list[Pair] = []
    count = {"matches": 0, "descriptor_only": 0}

    load_patches = _patch_loader(image_dir, images, scorer)

    def write(a: str, b: str, matches: np.ndarray, scores: np.ndarray, candidates: int) -> None:
        if not len(matches):
            return
        if _key(images, a, b) in states.replace:
            colmap.delete_pairs(database, [_key(images, a, b)])
        try:
            colmap.write_matches(database, {(images[a].image_id, images[b].image_id): matches})
        except colmap.MatchesExistError:  # the pair had none when this run began
            raise colmap.DatabaseInUseError(
                f"{database}: matches of {a} and {b} appeared while this run was matching them: another process is "
                "matching this database; let it finish, then rerun this command to continue") from None  # fmt: skip
        written.append((a, b))
        count["matches"] += len(matches)

    workers = config.threads or torch.get_num_threads()
    if executor is not None and executor.distributed:
        summary = _distributed(executor, database, image_dir, images, pairs, states, bad, scorer, spec, config, write)
    else:
        summary = match.match_pairs(pairs, states.todo, features, load_patches, scorer, config.match, write, workers,
                                    progress, bad)  # fmt: skip
        summary.scoring = match.scoring_report(spec)
    states.skipped += _unmatched(states, images, summary, set(written))
    count["descriptor_only"] = sum(p not in summary.plan.selected for p in written)
    count["scoring"] = summary.scoring
    count["candidates"] = summary.candidates
    return written, count
