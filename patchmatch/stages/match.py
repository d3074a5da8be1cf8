"""Stage 3: the network's matches of every image pair → ``matches.h5``.

For all pairs at once, candidates are searched by descriptor and the pairs worth a network pass
selected (:func:`~patchmatch.matching.plan_pairs`); then each pair still to match gets its
matches (:func:`~patchmatch.matching.match_features`), patches cut once per image and kept in a
memory budget (:class:`~patchmatch.cache.LruArrayCache`). :func:`match_pairs` is that loop, the
one in the code base: ``patchmatch match`` runs it with a COLMAP database's keypoints and writes
into the database instead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import storage
from ..candidates import CandidateSet
from ..cache import LruArrayCache, LruMapping
from ..features import Features, axis_scales, to_working
from ..images import ImageReadError, read_gray
from ..matching import MatchConfig, PairPlan, match_features, needs_network, plan_pairs, scored_keypoints, search_pair
from ..matching import select_pairs as select_by_overlap
from ..pairs import Pair
from ..patches import extract_patches
from ..scoring import PatchScorer
from . import select_pairs
from .common import progress_bar, set_aside_if_unreadable

logger = logging.getLogger(__name__)

#: Memory for patches kept between pairs (MiB): 8192 patches of 64×64 bytes are 32 MiB an image,
#: so 2 GiB keeps ~60 images; an evicted image is re-read and re-cropped when needed again.
PATCH_CACHE_MB = 2048
#: Memory for features kept between pairs (MiB): 8192 SIFT keypoints are ~4.4 MiB, so 1 GiB holds
#: ~230 images; beyond that an image's features are read again from features.h5 (~10 ms).
FEATURE_CACHE_MB = 1024

#: ``write(name0, name1, matches (K, 2) int64, scores (K,) float32, candidates)``: where a pair's
#: matches go, with the number of candidate keypoint pairs the network compared for them.
Writer = Callable[[str, str, np.ndarray, np.ndarray, int], None]
#: ``load(name, keep)``: an image's (N, 64, 64) uint8 patches, only those of the (N,) bool mask
#: ``keep`` cut (the others zero; None: all).
PatchLoader = Callable[[str, "np.ndarray | None"], np.ndarray]


def _patch_cache(load_patches: PatchLoader, searches: Mapping[Pair, CandidateSet], features: Mapping[str, Features],
                 config: MatchConfig) -> LruArrayCache:  # fmt: skip
    """The patches of the pairs of ``searches``, each image's cut once (only the keypoints the
    network compares, :func:`~patchmatch.matching.scored_keypoints`) and kept in
    :data:`PATCH_CACHE_MB`."""
    names = {n for pair in searches for n in pair}
    keep = scored_keypoints(searches, {n: len(features[n]) for n in names}, config)
    return LruArrayCache(lambda name: load_patches(name, keep.get(name)), PATCH_CACHE_MB * 2**20)


@dataclass
class MatchSummary:
    """What :func:`match_pairs` did.

    Attributes:
        plan: the descriptor overlaps and the selection of every pair (:class:`PairPlan`).
        written: pairs handed to the writer, in order (empty matches included).
        candidates: candidate keypoint pairs scored by the network.
        failed: pair → reason, for pairs not matched because an image could not be read.
        bad_images: image → reason, the images found unreadable (each read once).
        scoring: where the network scored (:func:`scoring_report`).
    """

    plan: PairPlan
    written: list[Pair] = field(default_factory=list)
    candidates: int = 0
    failed: dict[Pair, str] = field(default_factory=dict)
    bad_images: dict[str, str] = field(default_factory=dict)
    scoring: dict = field(default_factory=dict)


def _patches(cache: LruArrayCache, pair: Pair, bad: dict[str, str]) -> tuple[np.ndarray, np.ndarray] | str:
    """Both images' patches, or the reason one is unreadable (recorded in ``bad``, warned once)."""
    for name in pair:
        if name in bad:
            return f"{name}: {bad[name]}"
        try:
            cache.get(name)
        except ImageReadError as error:
            bad[name] = str(error)
            logger.warning("%s", error)
            return f"{name}: {bad[name]}"  # as for the pairs of an image found unreadable before
    return cache.get(pair[0]), cache.get(pair[1])


def match_pairs(
    pairs: list[Pair],
    todo: list[Pair],
    features: Mapping[str, Features],
    load_patches: PatchLoader,
    scorer: PatchScorer,
    config: MatchConfig,
    write: Writer,
    workers: int = 1,
    progress: bool = False,
    bad_images: dict[str, str] | None = None,
) -> MatchSummary:
    """Matches the pairs of ``todo`` and hands each one's matches to ``write``.

    Args:
        pairs: every pair of the scene (the selection ranks each image's pairs among all).
        todo: the pairs to match now (a subset of ``pairs``), in the order they are matched.
        features: features per image; pairs with an image missing here are not matched.
        load_patches: ``(image name, keep)`` → (N, 64, 64) uint8 patches of its N keypoints, at the
            scorer's magnification, only those of the (N,) bool mask ``keep`` cut (:data:`PatchLoader`);
            may raise :class:`ImageReadError`.
        scorer: the network. config: candidate search, selection and decision.
        write: receives every matched pair (an unselected one with its descriptor matches or
            none, see :attr:`MatchConfig.unselected`); not called for failed pairs.
        workers: candidate searches side by side. progress: progress bars.
        bad_images: images already known to be unreadable (their pairs fail); updated.

    Returns:
        :class:`MatchSummary`.
    """
    pairs_bar = progress_bar(pairs, progress, "pair selection")
    summary = MatchSummary(plan_pairs(pairs_bar, features, todo, config, workers))
    summary.bad_images = bad_images if bad_images is not None else {}
    cache = _patch_cache(load_patches, summary.plan.searches, features, config)
    for a, b in progress_bar([p for p in todo if p[0] in features and p[1] in features], progress, "matching"):
        if (a, b) not in summary.plan.selected:  # SIFT's own matches or none (MatchConfig.unselected)
            write(a, b, *summary.plan.unselected_matches((a, b)), 0)
            summary.written.append((a, b))
            continue
        found = summary.plan.searches.pop((a, b))
        patches = (None, None)
        if needs_network(found, config):
            patches = _patches(cache, (a, b), summary.bad_images)
            if isinstance(patches, str):
                summary.failed[(a, b)] = patches
                continue
        result = match_features(features[a], patches[0], features[b], patches[1], scorer, config, found)
        summary.candidates += result.num_candidates
        write(a, b, result.matches, result.scores, result.num_candidates)
        summary.written.append((a, b))
    return summary


def patch_loader(
    image_dir: Path, features: Mapping[str, Features], max_image_size: int | None, upright: bool, magnification: float
) -> PatchLoader:
    """``(image name, keep)`` → patches of its stored keypoints (:data:`PatchLoader`): the image
    re-read at the working size its keypoints were detected at, cropped at the network's magnification."""

    def load(name: str, keep: np.ndarray | None = None) -> np.ndarray:
        image, _ = read_gray(image_dir / name, max_image_size)
        feats = features[name]
        working = to_working(feats, axis_scales(image.shape, feats.image_size), image.shape)
        return extract_patches(image, working.keypoints, upright=upright, magnification=magnification, keep=keep)

    return load


def stream_features(features_path: Path, names: list[str]) -> LruMapping:
    """Name → :class:`Features` read from ``features_path`` on demand, at most
    :data:`FEATURE_CACHE_MB` of them held (the collection's features are never all in memory)."""
    return LruMapping(names, lambda n: storage.read_features(features_path, n), FEATURE_CACHE_MB * 2**20,
                      lambda f: f.keypoints.nbytes + f.descriptors.nbytes + f.scores.nbytes)  # fmt: skip


@dataclass(frozen=True)
class H5Source:
    """Where a worker finds an image's features and patches: ``features.h5`` and the image
    folder, at the paths of a shared file system (picklable, sent to Ray workers)."""

    image_dir: str
    features_path: str
    max_image_size: int | None
    upright: bool

    def key(self) -> tuple:
        return (self.image_dir, self.features_path, self.max_image_size, self.upright)

    def settings(self) -> tuple:
        """What the matches depend on besides the pairs, the network and the match config."""
        return (self.max_image_size,)

    def open(self, magnification: float) -> tuple[Mapping[str, Features], PatchLoader]:
        """``(features by name, streamed; patch loader)``."""
        path = Path(self.features_path)
        features = stream_features(path, storage.list_features(path))
        return features, patch_loader(Path(self.image_dir), features, self.max_image_size, self.upright, magnification)


def match_block(
    pairs: list[Pair],
    selected: set[Pair],
    features: Mapping[str, Features],
    load_patches: PatchLoader,
    scorer: PatchScorer,
    config: MatchConfig,
    searches: Mapping[Pair, CandidateSet] | None = None,
) -> tuple[dict[Pair, tuple[np.ndarray, np.ndarray, int]], dict[Pair, str]]:
    """The matches of a block of pairs, as :func:`match_pairs` makes them, the scene-wide
    selection given (``selected``: the pairs the network scores; ``searches``: candidate sets
    already searched, by pair; the other pairs are searched here).

    Returns:
        ``({pair: (matches (K, 2) int64, scores (K,) float32, candidates scored)}, {failed pair: reason})``.
    """
    results, failed, bad = {}, {}, {}
    searches = searches or {}
    found_by_pair = {(a, b): searches.get((a, b)) or search_pair(features[a], features[b], config) for a, b in pairs}
    cache = _patch_cache(load_patches, {p: f for p, f in found_by_pair.items() if p in selected}, features, config)
    for a, b in pairs:
        found = found_by_pair.pop((a, b))
        if (a, b) not in selected:
            kept = found.accepted if config.unselected == "descriptor" else np.zeros((0, 2), np.int64)
            results[(a, b)] = (kept, np.full(len(kept), np.nan, np.float32), 0)
            continue
        patches = (None, None)
        if needs_network(found, config):
            patches = _patches(cache, (a, b), bad)
            if isinstance(patches, str):
                failed[(a, b)] = patches
                continue
        result = match_features(features[a], patches[0], features[b], patches[1], scorer, config, found)
        results[(a, b)] = (result.matches, result.scores, result.num_candidates)
    return results, failed


def run(
    image_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    pairs_path: str | os.PathLike,
    matches_path: str | os.PathLike,
    scorer: PatchScorer,
    config: MatchConfig = MatchConfig(),
    max_image_size: int | None = 3200,
    workers: int = 1,
    progress: bool = False,
    report: dict | None = None,
    executor=None,
    spec: dict | None = None,
) -> Path:
    """Matches the pairs of ``pairs_path`` that ``matches_path`` does not hold yet.

    Args:
        image_dir: the image folder (patches are cut from it).
        features_path: features of every image of the pairs (streamed, see :func:`stream_features`).
        pairs_path: the pairs (:func:`select_pairs.run`). matches_path: the file to complete.
        scorer: the network. config: candidate search and decision.
        max_image_size: the working size the features were detected at (patches are cut there).
        workers: candidate searches side by side. progress: progress bars.
        report: gets ``pairs``, ``pairs_matched`` (this call), ``pairs_reused``,
            ``candidates_scored`` (by the network, this call), ``candidates_reused`` (those of
            the reused pairs, scored by earlier calls), ``pairs_low_overlap`` (below ``min_overlap``),
            ``pairs_selected`` (scored by the network), ``pairs_not_selected``,
            ``pairs_descriptor_only`` (of this call's pairs); images unreadable here are added
            to its ``notes`` (their pairs stay unmatched: a rerun tries them again).
        executor: a distributed executor (:class:`~patchmatch.executors.RayExecutor`) runs the
            searches and the network in blocks of pairs on its workers, each block a shard
            under ``matches_path``'s folder (:func:`run_distributed`); None or a local one: here.
        spec: the network the executor's workers load (:func:`load_scorer`); None:
            ``scorer_spec(scorer)``, the driver's own.

    Returns:
        ``matches_path``.
    """
    image_dir, features_path, matches_path = Path(image_dir), Path(features_path), Path(matches_path)
    pairs = select_pairs.read(pairs_path)
    names = sorted({n for p in pairs for n in p})
    note = set_aside_if_unreadable(matches_path, lambda p: storage.missing_pairs(p, []))
    todo = storage.missing_pairs(matches_path, pairs)
    features = stream_features(features_path, names)

    def write(a: str, b: str, matches: np.ndarray, scores: np.ndarray, candidates: int) -> None:
        storage.write_matches(matches_path, a, b, matches, scores, len(features[a]), candidates)

    if executor is not None and executor.distributed:
        from ..shards import SHARDS_DIR

        source = H5Source(str(image_dir.resolve()), str(features_path.resolve()), max_image_size, config.upright)
        summary = run_distributed(executor, source, pairs, todo, write, scorer, config, matches_path.parent / SHARDS_DIR,
                                  lambda ps: set(storage.missing_pairs(matches_path, ps)), spec)  # fmt: skip
    else:
        load = patch_loader(image_dir, features, max_image_size, config.upright, scorer.magnification)
        summary = match_pairs(pairs, todo, features, load, scorer, config, write, workers, progress)
        summary.scoring = scoring_report(spec or scorer_spec(scorer))
    if report is not None:
        todo_set = set(todo)
        reused = storage.stored_candidates(matches_path, [p for p in pairs if p not in todo_set])
        _report(report, summary, config, pairs, todo, note, reused)
    return matches_path


def _report(report: dict, summary: MatchSummary, config: MatchConfig, pairs: list[Pair], todo: list[Pair], note,
            candidates_reused: int) -> None:  # fmt: skip
    report.setdefault("notes", []).extend([note] if note else [])
    report["scoring"] = summary.scoring
    plan = summary.plan
    low = sum(o < config.min_overlap for o in plan.overlaps.values())
    report.update(pairs=len(pairs), pairs_matched=len(summary.written), pairs_reused=len(pairs) - len(todo),
                  candidates_scored=summary.candidates, candidates_reused=candidates_reused, pairs_low_overlap=low,
                  pairs_selected=len(plan.selected),
                  pairs_not_selected=len(plan.overlaps) - low - len(plan.selected),
                  pairs_descriptor_only=len(plan.descriptor_matches))  # fmt: skip
    for name, reason in summary.bad_images.items():
        report.setdefault("notes", []).append(f"{name} unreadable at matching ({reason}): its pairs left unmatched")


def scorer_spec(scorer: PatchScorer, device: str | None = None, precision: str | None = None) -> dict:
    """What a worker needs to load the same network: the checkpoint path and its settings (the
    scorer object itself when it has no checkpoint path), and its fingerprint to check against.

    ``device`` and ``precision``: where and how the workers score, when not as ``scorer`` does
    (GPU actors of a driver holding the float network on its CPU, :func:`load_scorer`); the
    fingerprint is then ``scorer``'s, the float checkpoint's, which a float network has on
    every device.

    Raises:
        ValueError: another device asked for and ``scorer`` has no checkpoint file.
    """
    from ..sfm import weights_fingerprint

    path = (getattr(scorer, "meta", None) or {}).get("path")
    if device is not None and not path:
        raise ValueError("scoring on another device than the driver's loads the network from its checkpoint file, "
                         "and this scorer has none")  # fmt: skip
    return {"weights": path, "scorer": None if path else scorer, "device": device or str(scorer.device),
            "precision": precision or scorer.precision, "tta": getattr(scorer, "tta", "none"),
            "activation_bits": None if device else getattr(scorer, "activation_bits", None),
            "fingerprint": weights_fingerprint(scorer)}  # fmt: skip


def load_scorer(weights: str | os.PathLike | None = None, device: str | None = None, precision: str = "auto",
                tta: str = "none", executor=None) -> tuple[PatchScorer, dict]:  # fmt: skip
    """The network of a run: the scorer this process holds, and the spec of the one that
    scores the pairs (:func:`scorer_spec`), here or on the executor's workers.

    Local (``executor`` None or local): :meth:`PatchScorer.load` on ``device`` at ``precision``.
    Ray: the actors score where :func:`~patchmatch.executors.actor_device` says, on the
    cluster's GPUs by default when it has some (this machine needs no CUDA). On GPUs at
    ``precision`` (``"auto"``: fp16), with this process holding the float32 network on its CPU
    (the fingerprint the actors check; guided matching scores with it); else on CPUs at
    ``precision`` (``"auto"``: int8 on x86-64), this process holding that same network.

    Raises:
        ValueError: see :func:`~patchmatch.executors.actor_device` and :meth:`PatchScorer.load`.
    """
    from ..device import auto_precision
    from ..executors import actor_device

    if executor is None or not executor.distributed:
        scorer = PatchScorer.load(weights, device=device, precision=precision, tta=tta)
        return scorer, scorer_spec(scorer)
    if actor_device(device, precision, executor.gpus()) == "cpu":
        scorer = PatchScorer.load(weights, device="cpu", precision=precision, tta=tta)
        return scorer, scorer_spec(scorer)
    scorer = PatchScorer.load(weights, device="cpu", precision="fp32", tta=tta)
    gpu = torch.device("cuda")
    return scorer, scorer_spec(scorer, str(gpu), auto_precision(gpu) if precision == "auto" else precision)


def scoring_report(spec: dict, executor=None) -> dict:
    """Where and how the network scored, for the reports: ``executor``, ``device``, ``precision``,
    ``tta``, and on Ray ``actors`` (their number) and ``nodes``."""
    report = {"executor": getattr(executor, "name", "local"), "device": spec["device"], "precision": spec["precision"],
              "tta": spec.get("tta", "none")}  # fmt: skip
    if executor is not None and executor.distributed:
        started = [a for a in executor.actors if "node" in a]
        report.update(actors=len(started), nodes=sorted({a["node"] for a in started}))
    return report


def _blocks(pairs: list[Pair], parallelism: int) -> list[list[Pair]]:
    """``pairs`` cut in order into blocks of at most :data:`PAIRS_PER_BLOCK`, at least
    :data:`BLOCKS_PER_ACTOR` per actor (the same cut for the same pairs: shards are found again)."""
    from ..executors import BLOCKS_PER_ACTOR, PAIRS_PER_BLOCK

    size = max(1, min(PAIRS_PER_BLOCK, -(-len(pairs) // (BLOCKS_PER_ACTOR * parallelism))))
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


def run_distributed(executor, source, pairs: list[Pair], todo: list[Pair], write: Writer, scorer: PatchScorer,
                    config: MatchConfig, shard_dir: Path, missing: Callable[[list[Pair]], set[Pair]] | None = None,
                    spec: dict | None = None) -> MatchSummary:  # fmt: skip
    """The match loop on a distributed executor: the descriptor overlaps of every pair, the
    scene-wide selection (:func:`~patchmatch.matching.select_pairs`), then each block holding
    pairs of ``todo`` → a shard in ``shard_dir`` named by its pairs, the network and the settings
    (``source.settings()``); the driver hands each shard's pairs to ``write``, those that
    ``missing`` (default: all) says are not written yet (a pair is never written twice).

    Args:
        source: where workers find features and patches (:class:`H5Source`, or any picklable
            object with ``key()``, ``settings()`` and ``open(magnification)``).
        spec: the network the workers load (:func:`load_scorer`); None: ``scorer_spec(scorer)``.
    """
    from ..shards import read_shard, shard_name, unpack_matches

    spec = spec or scorer_spec(scorer)
    blocks = _blocks(pairs, executor.parallelism())
    todo_set = set(todo)
    overlaps: dict[Pair, int] = {}
    searches: dict[Pair, CandidateSet] = {}
    search_calls = [(source, block, config, [p for p in block if p in todo_set]) for block in blocks]
    for part, found in executor.run_blocks(spec, "search", search_calls):
        overlaps.update(part)
        searches.update(found)
    selected = select_by_overlap(overlaps, config)
    summary = MatchSummary(PairPlan(overlaps, selected, {}))
    settings = (spec["fingerprint"], spec["precision"], spec["activation_bits"], spec["tta"], dataclasses.asdict(config),
                source.settings(), spec["device"].partition(":")[0])  # fmt: skip
    calls = []
    for block in blocks:
        mine = [p for p in block if p in todo_set]
        if mine:
            name = shard_name("matches", block, mine, sorted(p for p in block if p in selected), settings)
            calls.append((source, mine, [p for p in mine if p in selected], config, str(shard_dir / name),
                          {p: searches.pop(p) for p in mine if p in searches}))  # fmt: skip
    for shard in executor.run_blocks(spec, "match", calls):
        results, failed = unpack_matches(read_shard(shard))
        summary.failed.update(failed)
        new = missing(list(results)) if missing is not None else set(results)
        for (a, b), (matches, scores, candidates) in results.items():
            if (a, b) in new:
                write(a, b, matches, scores, candidates)
                summary.written.append((a, b))
                summary.candidates += candidates
    summary.scoring = scoring_report(spec, executor)
    executor.release()
    summary.written.sort()
    return summary
