"""Where extraction and matching run: this process (:class:`LocalExecutor`, the default, no Ray
needed) or a Ray cluster (:class:`RayExecutor`, ``pip install 'patchmatch[ray]'``).

On Ray, each image's feature extraction is a task and the image pairs are cut into blocks,
each block's descriptor search and network scoring a call on an actor that loads the network
once (one actor per CPU of the cluster, or per GPU when the run's device is CUDA). Every
result is a shard under ``OUT/shards`` (:mod:`patchmatch.shards`) written by the worker;
the driver alone writes ``features.h5``, ``matches.h5`` and the COLMAP database (SQLite takes
one writer). A task of a lost worker is run again (:data:`RETRIES`), a lost actor restarted;
a rerun merges the shards already written instead of computing them again.

The nodes must share the file system: workers read the images and ``features.h5`` and write
the shards at the paths the driver gives them.

Executor specification (``--executor``): ``local``; ``ray`` (a Ray instance started on this
machine, or the cluster of ``RAY_ADDRESS``); ``ray:ADDRESS`` (a running cluster, e.g.
``ray:127.0.0.1:6379`` or ``ray:auto``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Times a task of a lost worker is run again, and a lost actor restarted: a node lost once or
#: twice is recovered; a task failing on every try is a bug, reported after a few.
RETRIES = 3
#: Image pairs per block at most: a block's shard is the work lost with a worker and the
#: granularity of resuming; at ~0.3 s per pair on one core, 32 pairs are ~10 s of work.
PAIRS_PER_BLOCK = 32
#: Blocks per actor at least (blocks made smaller on small scenes): keeps every actor busy to
#: the end, and a lost worker's block short.
BLOCKS_PER_ACTOR = 4


class LocalExecutor:
    """Runs every stage in this process (the stages' own loops)."""

    name = "local"
    distributed = False

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_executor(spec: str) -> tuple[str, str | None]:
    """``"local"`` → ``("local", None)``, ``"ray"`` → ``("ray", None)``, ``"ray:ADDR"`` → ``("ray", "ADDR")``.

    Raises:
        ValueError: any other value.
    """
    kind, sep, address = spec.partition(":")
    if kind == "local" and not sep:
        return "local", None
    if kind == "ray" and (not sep or address):
        return "ray", address or None
    raise ValueError(f"unknown executor {spec!r}; expected 'local', 'ray' or 'ray:ADDRESS'")


def make_executor(spec: str = "local"):
    """The executor of a specification (see the module doc); use it as a context manager.

    Raises:
        ValueError: a bad specification. ImportError: Ray asked for and not installed.
    """
    kind, address = parse_executor(spec)
    return LocalExecutor() if kind == "local" else RayExecutor(address)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("--executor ray needs Ray: pip install 'patchmatch[ray]'") from None
    return ray


class RayExecutor:
    """Runs extraction and matching on a Ray cluster (see the module doc).

    Args:
        address: the cluster's address; None starts Ray on this machine (or joins ``RAY_ADDRESS``).
    """

    name = "ray"
    distributed = True

    def __init__(self, address: str | None = None):
        ray = _import_ray()
        self._ray = ray
        self._owned = not ray.is_initialized()
        if self._owned:
            package_root = str(Path(__file__).resolve().parent.parent)  # workers import this code, not another copy
            path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
            address = address or os.environ.get("RAY_ADDRESS") or "local"  # never a stale cluster of /tmp/ray
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})  # fmt: skip
        self._matchers, self._spec = [], None
        logger.info("Ray cluster: %d node(s), %s", len([n for n in ray.nodes() if n["Alive"]]), ray.cluster_resources())

    def close(self) -> None:
        """Stops the actors and disconnects from the cluster (stops the Ray instance this executor started)."""
        if self._ray.is_initialized():
            self.release()
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _wait_all(self, refs: dict) -> Iterator[tuple[Any, Any]]:
        """``(key, result)`` of ``{ref: key}`` as each finishes."""
        pending = list(refs)
        while pending:
            done, pending = self._ray.wait(pending, num_returns=1)
            for ref in done:
                yield refs[ref], self._ray.get(ref)

    def extract(self, image_dir: Path, names: list[str], config, shard_dir: Path) -> Iterator[tuple[str, Any]]:
        """``(name, (Features, fingerprint) or ImageReadError)`` per image, as the tasks finish;
        a shard already written (an interrupted run) is read instead of computed."""
        from .features import Features
        from .images import ImageReadError, file_fingerprint
        from .shards import read_shard, shard_name

        task = self._ray.remote(num_cpus=1, max_retries=RETRIES)(_extract_task)
        refs = {}
        for n in names:
            shard = shard_dir / shard_name("features", n, file_fingerprint(image_dir / n), config)
            refs[task.remote(str(image_dir.resolve()), n, config, str(shard))] = (n, shard)
        for (name, shard), error in self._wait_all(refs):
            if error is not None:
                yield name, ImageReadError(error)
                continue
            d = read_shard(shard)
            yield name, (Features(d["keypoints"], d["descriptors"], d["scores"], d["image_size"]), str(d["source"]))

    def run_blocks(self, scorer_spec: dict, method: str, calls: list[tuple]) -> Iterator[Any]:
        """The results of ``BlockMatcher.<method>(*args)`` for each ``args`` of ``calls``, as they
        finish, on actors holding the network of ``scorer_spec`` (started on the first call, kept
        until :meth:`release`)."""
        from ray.util import ActorPool

        if self._spec != scorer_spec:
            self.release()
            gpu = scorer_spec["device"].startswith("cuda")
            total = int(self._ray.cluster_resources().get("GPU" if gpu else "CPU", 1))
            actor = self._ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, max_restarts=RETRIES,
                                     max_task_retries=RETRIES)(BlockMatcher)  # fmt: skip
            self._matchers, self._spec = [actor.remote(scorer_spec) for _ in range(max(1, total))], scorer_spec
        pool = ActorPool(self._matchers)
        yield from pool.map_unordered(lambda a, args: getattr(a, method).remote(*args), calls)

    def release(self) -> None:
        """Stops the matching actors (their CPUs and GPUs go back to the cluster)."""
        for actor in getattr(self, "_matchers", []):
            self._ray.kill(actor)
        self._matchers, self._spec = [], None

    def put(self, value: Any) -> Any:
        """A handle of ``value`` in the cluster's object store (for :func:`fetch` on a worker)."""
        return self._ray.put(value)

    def parallelism(self) -> int:
        """CPUs of the cluster: the actors that run side by side, for sizing the blocks."""
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))


def fetch(handle: Any) -> Any:
    """The value of a :meth:`RayExecutor.put` handle, on a worker."""
    return _import_ray().get(handle)


def _extract_task(image_dir: str, name: str, config, shard: str) -> str | None:
    """Detects one image into its shard (unless written already); returns the read error, or None."""
    from .images import ImageReadError
    from .shards import write_shard
    from .stages.extract import detect_image

    if os.path.isfile(shard):
        return None
    result = detect_image(Path(image_dir), name, config)
    if isinstance(result, ImageReadError):
        return str(result)
    feats, fingerprint = result
    write_shard(shard, keypoints=feats.keypoints, descriptors=feats.descriptors, scores=feats.scores,
                image_size=feats.image_size, source=np.array(fingerprint))  # fmt: skip
    return None


class BlockMatcher:
    """A Ray actor's state: the network, loaded once, and the features and patches of recent
    images (the driver's :class:`~patchmatch.stages.match.H5Source` decides where they come from).

    Raises:
        ValueError: the network loaded here is not the driver's (other weights on this node).
    """

    def __init__(self, scorer_spec: dict):
        from .scoring import PatchScorer
        from .sfm import weights_fingerprint

        if scorer_spec.get("scorer") is not None:
            self.scorer = scorer_spec["scorer"]
        else:
            self.scorer = PatchScorer.load(scorer_spec["weights"], device=scorer_spec["device"],
                                           precision=scorer_spec["precision"], tta=scorer_spec["tta"],
                                           activation_bits=scorer_spec["activation_bits"])  # fmt: skip
        if weights_fingerprint(self.scorer) != scorer_spec["fingerprint"]:
            raise ValueError(f"the network loaded on this node ({scorer_spec['weights']}) is not the driver's")
        self._source_key = None

    def _open(self, source) -> None:
        if self._source_key != source.key():
            self.features, self.load_patches = source.open(self.scorer.magnification)
            self._source_key = source.key()

    def search(self, source, pairs: list, config) -> dict:
        """``{pair: descriptor overlap}`` of a block (no network)."""
        from .matching import search_pair

        self._open(source)
        return {(a, b): search_pair(self.features[a], self.features[b], config).overlap for a, b in pairs}

    def match(self, source, pairs: list, selected: list, config, shard: str) -> str:
        """The matches of a block's pairs (``selected``: those the network scores) → ``shard``."""
        from .shards import pack_matches, write_shard
        from .stages.match import match_block

        if not os.path.isfile(shard):
            self._open(source)
            results, failed = match_block([tuple(p) for p in pairs], {tuple(p) for p in selected}, self.features,
                                          self.load_patches, self.scorer, config)  # fmt: skip
            write_shard(shard, **pack_matches(results, failed))
        return shard
