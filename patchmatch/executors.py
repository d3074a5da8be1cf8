"""Where extraction and matching run: this process (:class:`LocalExecutor`, the default, no Ray
needed) or a Ray cluster (:class:`RayExecutor`, ``pip install 'patchmatch[ray]'``).

On Ray, each image's feature extraction is a task and the image pairs are cut into blocks,
each block's descriptor search and network scoring a call on an actor that loads the network
once: one actor per GPU of the cluster when the network scores on CUDA (:func:`actor_device`:
the default where the cluster has GPUs, whether or not this machine has one), else one per CPU.
Every result is a shard under ``OUT/shards`` (:mod:`patchmatch.shards`) written by the worker;
the driver alone writes ``features.h5``, ``matches.h5`` and the COLMAP database (SQLite takes
one writer). A task of a lost worker is run again (:data:`RETRIES`), a lost actor restarted;
a rerun merges the shards already written instead of computing them again. An actor that cannot
load the network on its node (CUDA not usable there, other weights) stops the run with a
:class:`WorkerSetupError` naming the node.

The nodes must share the file system: workers read the images and ``features.h5`` and write
the shards at the paths the driver gives them.

Executor specification (``--executor``): ``local``; ``ray`` (a Ray instance started on this
machine, or the cluster of ``RAY_ADDRESS``); ``ray:ADDRESS`` (a running cluster, e.g.
``ray:127.0.0.1:6379`` or ``ray:auto``).
"""

from __future__ import annotations

import logging
import os
import socket
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


class WorkerSetupError(OSError):
    """A worker cannot score as the driver asked (CUDA not usable on its node, another network
    there); the message is one line naming the node."""


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


def make_executor(spec: str = "local", **ray_options):
    """The executor of a specification (see the module doc); use it as a context manager.
    ``ray_options``: see :class:`RayExecutor`.

    Raises:
        ValueError: a bad specification. ImportError: Ray asked for and not installed.
    """
    kind, address = parse_executor(spec)
    return LocalExecutor() if kind == "local" else RayExecutor(address, **ray_options)


def actor_device(device: str | None, precision: str, gpus: int) -> str:
    """Where Ray's matching actors score, ``"cuda"`` or ``"cpu"``, for the run's device and
    precision and the cluster's GPUs (not the driver's: it may have none).

    ``device`` None or ``"auto"``: the GPUs where the cluster has some, unless the precision is
    int8 (CPU only). ``"cuda"`` (``"cuda:N"`` alike: Ray gives each actor its GPU): the cluster's
    GPUs. ``"cpu"``: the CPUs.

    Raises:
        ValueError: CUDA asked for with int8, or on a cluster without GPUs; an unknown device.
    """
    kind = "auto" if device in (None, "auto") else str(device).partition(":")[0]
    if kind not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r} for Ray actors; expected cpu, cuda or auto")
    if kind == "cpu" or (kind == "auto" and (precision == "int8" or not gpus)):
        return "cpu"
    if precision == "int8":
        raise ValueError("int8 scoring runs on CPUs: with --device cuda choose --precision fp16, bf16 or fp32")
    if not gpus:
        raise ValueError("--device cuda with Ray scores on the cluster's GPUs, and this Ray cluster has none "
                         "(start its GPU nodes with `ray start ... --num-gpus N`, or use --device cpu)")  # fmt: skip
    return "cuda"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("--executor ray needs Ray: pip install 'patchmatch[ray]'") from None
    return ray


#: Seconds a cluster's address has to accept a connection before ``ray.init`` is tried.
ADDRESS_TIMEOUT = 5.0


def check_ray_address(address: str) -> None:
    """Checks that a Ray cluster's head answers at ``address`` (``HOST:PORT`` or
    ``ray://HOST:PORT``; ``"local"`` and ``"auto"`` are Ray's to resolve) before ``ray.init``,
    which waits for minutes on an address nothing listens at.

    Raises:
        ValueError: the address has no port. ConnectionError: nothing accepts a connection there.
    """
    if address in ("local", "auto"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--executor ray:{address}: a Ray address is HOST:PORT (as `ray start --head` prints it)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_TIMEOUT).close()
    except OSError as error:
        raise ConnectionError(f"--executor ray:{address}: no Ray cluster answers there ({error.strerror or error}); "
                              "start one with `ray start --head` and pass the address it prints") from None  # fmt: skip


class RayExecutor:
    """Runs extraction and matching on a Ray cluster (see the module doc).

    Args:
        address: the cluster's address; None starts Ray on this machine (or joins ``RAY_ADDRESS``).
        ray_options: more ``ray.init`` arguments for a Ray instance started here (``num_cpus``,
            ``num_gpus``: the resources it declares).

    Attributes:
        actors: what each matching actor reported when it last started (:meth:`BlockMatcher.ready`).

    Raises:
        ImportError: Ray is not installed. ValueError, ConnectionError: see :func:`check_ray_address`.
    """

    name = "ray"
    distributed = True

    def __init__(self, address: str | None = None, **ray_options):
        ray = _import_ray()
        self._ray = ray
        self._owned = not ray.is_initialized()
        if self._owned:
            package_root = str(Path(__file__).resolve().parent.parent)  # workers import this code, not another copy
            path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
            address = address or os.environ.get("RAY_ADDRESS") or "local"  # never a stale cluster of /tmp/ray
            check_ray_address(address)
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}}, **ray_options)  # fmt: skip
        self._matchers, self._spec, self.actors = [], None, []
        self.shards_reused = 0  # features read from shards of an earlier run by the last extract()
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
        a shard already written (an interrupted run) is read instead of computed, and counted
        in :attr:`shards_reused`."""
        from .features import Features
        from .images import ImageReadError, file_stamp
        from .shards import read_shard, shard_name

        task = self._ray.remote(num_cpus=1, max_retries=RETRIES)(_extract_task)
        refs, stored = {}, []
        for n in names:
            shard = shard_dir / shard_name("features", n, file_stamp(image_dir / n), config)  # a stat, no read
            if shard.is_file():  # written whole (atomically) by an earlier run's task
                stored.append(((n, shard), None))
            else:
                refs[task.remote(str(image_dir.resolve()), n, config, str(shard))] = (n, shard)
        self.shards_reused = len(stored)
        for (name, shard), error in [*stored, *self._wait_all(refs)]:
            if error is not None:
                yield name, ImageReadError(error)
                continue
            d = read_shard(shard)
            yield name, (Features(d["keypoints"], d["descriptors"], d["scores"], d["image_size"]), str(d["source"]))

    def run_blocks(self, scorer_spec: dict, method: str, calls: list[tuple]) -> Iterator[Any]:
        """The results of ``BlockMatcher.<method>(*args)`` for each ``args`` of ``calls``, as they
        finish, on actors holding the network of ``scorer_spec`` (started on the first call, kept
        until :meth:`release`).

        Raises:
            WorkerSetupError: an actor could not load the network (one line naming its node).
        """
        from ray.util import ActorPool

        if self._spec != scorer_spec:
            self._start_matchers(scorer_spec)
        pool = ActorPool(self._matchers)
        yield from pool.map_unordered(lambda a, args: getattr(a, method).remote(*args), calls)

    def _start_matchers(self, scorer_spec: dict) -> None:
        """One actor per GPU of the cluster (a CUDA spec) or per CPU, each holding the network
        when this returns; :attr:`actors` gets what each reported.

        Raises:
            WorkerSetupError: an actor could not load the network (one line naming its node).
        """
        self.release()
        gpu = scorer_spec["device"].startswith("cuda")
        total = int(self._ray.cluster_resources().get("GPU" if gpu else "CPU", 1))
        actor = self._ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, max_restarts=RETRIES,
                                 max_task_retries=RETRIES)(BlockMatcher)  # fmt: skip
        self._matchers, self._spec = [actor.remote(scorer_spec) for _ in range(max(1, total))], scorer_spec
        self.actors = []
        for matcher in self._matchers:
            try:
                self.actors.append(self._ray.get(matcher.ready.remote()))
            except self._ray.exceptions.RayTaskError as error:  # its text is a traceback: keep the cause's line
                if not isinstance(error.cause, WorkerSetupError):
                    raise
                self.actors.append({"error": str(error.cause)})
        failed = [a["error"] for a in self.actors if "error" in a]
        if failed:
            self.release()
            more = f" ({len(failed) - 1} more of the {len(failed)} actors failed too)" if len(failed) > 1 else ""
            raise WorkerSetupError(failed[0] + more)

    def gpus(self) -> int:
        """GPUs of the cluster (declared by its nodes)."""
        return int(self._ray.cluster_resources().get("GPU", 0))

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

    An actor that cannot load the network (:func:`_load_network`) raises its
    :class:`WorkerSetupError` from every call, :meth:`ready` first: Ray hands the driver a
    constructor's error as text only, a method's as the exception.
    """

    def __init__(self, scorer_spec: dict):
        self._source_key, self._problem = None, None
        try:
            self.scorer = _load_network(scorer_spec)
        except WorkerSetupError as error:
            self.scorer, self._problem = None, error

    def ready(self) -> dict:
        """Where this actor scores: ``node``, ``device``, ``precision``, ``gpus`` (Ray's GPU ids)."""
        if self._problem is not None:
            raise self._problem
        return {"node": _node_name(), "device": str(self.scorer.device), "precision": self.scorer.precision,
                "gpus": [str(g) for g in _import_ray().get_gpu_ids()]}  # fmt: skip

    def _open(self, source) -> None:
        if self._problem is not None:
            raise self._problem
        if self._source_key != source.key():
            self.features, self.load_patches = source.open(self.scorer.magnification)
            self._source_key = source.key()

    def search(self, source, pairs: list, config, keep: list = ()) -> tuple[dict, dict]:
        """The descriptor search of a block's pairs (no network): ``({pair: overlap},
        {pair: CandidateSet})``, the candidate sets of the pairs in ``keep`` only (those still to
        match: they are handed back to :meth:`match`, so no pair is searched twice)."""
        from .matching import search_pair

        self._open(source)
        keep = {tuple(p) for p in keep}
        found = {(a, b): search_pair(self.features[a], self.features[b], config) for a, b in pairs}
        return {p: f.overlap for p, f in found.items()}, {p: f for p, f in found.items() if p in keep}

    def match(self, source, pairs: list, selected: list, config, shard: str, searches: dict | None = None) -> str:
        """The matches of a block's pairs (``selected``: those the network scores; ``searches``:
        their candidate sets from :meth:`search`, searched again where absent) → ``shard``."""
        from .shards import pack_matches, write_shard
        from .stages.match import match_block

        if not os.path.isfile(shard):
            self._open(source)
            results, failed = match_block([tuple(p) for p in pairs], {tuple(p) for p in selected}, self.features,
                                          self.load_patches, self.scorer, config, searches)  # fmt: skip
            write_shard(shard, **pack_matches(results, failed))
        return shard


def _node_name() -> str:
    """This worker's node: host name, the address Ray knows it by and the start of its node id
    (nodes on one machine share the first two)."""
    ray = _import_ray()
    return f"{socket.gethostname()} ({ray.util.get_node_ip_address()}, node {ray.get_runtime_context().get_node_id()[:8]})"


def _cuda_problem() -> str | None:
    """Why PyTorch cannot compute on CUDA in this process, or None when it can."""
    import torch

    if not torch.backends.cuda.is_built():
        return f"PyTorch {torch.__version__} there is a CPU-only build"
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return f"PyTorch {torch.__version__} finds no usable CUDA device (CUDA_VISIBLE_DEVICES={visible}; no driver?)"
    try:
        torch.zeros(1, device="cuda")
    except (RuntimeError, AssertionError) as error:
        return str(error).strip().splitlines()[0]
    return None


def _load_network(scorer_spec: dict):
    """The network of ``scorer_spec`` on this worker, checked against the driver's fingerprint.

    Raises:
        WorkerSetupError: CUDA asked for and not usable here; the checkpoint unreadable here,
            or not the driver's network (other weights on this node).
    """
    from .scoring import PatchScorer
    from .sfm import weights_fingerprint

    device = scorer_spec["device"]
    if device.startswith("cuda") and (problem := _cuda_problem()) is not None:
        gpus = ", ".join(str(g) for g in _import_ray().get_gpu_ids()) or "none"
        raise WorkerSetupError(f"node {_node_name()}: cannot score on {device} (Ray's GPU {gpus}): {problem}")
    if scorer_spec.get("scorer") is not None:
        scorer = scorer_spec["scorer"]
    else:
        try:
            scorer = PatchScorer.load(scorer_spec["weights"], device=device, precision=scorer_spec["precision"],
                                      tta=scorer_spec["tta"], activation_bits=scorer_spec["activation_bits"])  # fmt: skip
        except (OSError, ValueError) as error:  # a missing or other checkpoint file on this node
            raise WorkerSetupError(f"node {_node_name()}: cannot load {scorer_spec['weights']}: {error}") from error
    if weights_fingerprint(scorer) != scorer_spec["fingerprint"]:
        raise WorkerSetupError(f"node {_node_name()}: the network loaded here ({scorer_spec['weights']}) is not the "
                               "driver's (other weights on this node?)")  # fmt: skip
    return scorer
