"""The executors: a Ray run's features and matches equal the local run's, and a rerun resumes from
its shards; where the network scores on a cluster with GPUs. Ray is started on this machine
(skipped where it is not installed) declaring GPUs it may not have; the Ray tests are marked
``cluster`` (``make test`` leaves them to ``.ci/run``'s second step, for time)."""

from __future__ import annotations

import re
import socket
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from patchmatch import storage
from patchmatch.executors import LocalExecutor, WorkerSetupError, actor_device, make_executor, parse_executor
from patchmatch.shards import pack_matches, read_shard, unpack_matches, write_shard
from patchmatch.stages import extract, match, select_pairs
from tests.conftest import shared_path

NAMES = [f"templeSR{i:04d}.png" for i in (1, 2, 3, 4, 5)]
EXTRACT = extract.ExtractConfig(max_keypoints=512)


def test_parse_executor():
    assert parse_executor("local") == ("local", None)
    assert parse_executor("ray") == ("ray", None)
    assert parse_executor("ray:127.0.0.1:6379") == ("ray", "127.0.0.1:6379")
    for bad in ("ray:", "dask", "local:x"):
        with pytest.raises(ValueError, match="unknown executor"):
            parse_executor(bad)
    assert isinstance(make_executor("local"), LocalExecutor) and not LocalExecutor.distributed


def test_an_address_nothing_answers_at_fails_at_once_in_one_line():
    """``ray.init`` waits for minutes on a wrong address; the executor says so in seconds."""
    pytest.importorskip("ray", reason="Ray is not installed (the ray extra)")
    with socket.socket() as unused:  # a port this machine does not listen on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    t = time.perf_counter()
    with pytest.raises(ConnectionError, match=rf"ray:127\.0\.0\.1:{port}: no Ray cluster answers there") as error:
        make_executor(f"ray:127.0.0.1:{port}")
    assert time.perf_counter() - t < 10 and "\n" not in str(error.value)
    with pytest.raises(ValueError, match="a Ray address is HOST:PORT"):
        make_executor("ray:headnode")


def test_actor_device_follows_the_cluster_gpus_not_the_driver():
    assert actor_device(None, "auto", gpus=0) == "cpu"  # no GPU in the cluster: CPU actors, as before
    assert actor_device("auto", "auto", gpus=2) == actor_device(None, "fp32", gpus=1) == "cuda"
    assert actor_device("cuda", "auto", gpus=1) == actor_device("cuda:1", "bf16", gpus=4) == "cuda"
    assert actor_device("cpu", "auto", gpus=2) == actor_device(None, "int8", gpus=2) == "cpu"  # int8 runs on CPUs
    with pytest.raises(ValueError, match="this Ray cluster has none"):
        actor_device("cuda", "auto", gpus=0)
    with pytest.raises(ValueError, match="int8 scoring runs on CPUs"):
        actor_device("cuda", "int8", gpus=1)
    with pytest.raises(ValueError, match="unknown device 'mps'"):
        actor_device("mps", "auto", gpus=1)


def _cluster(gpus: int) -> SimpleNamespace:
    """What :func:`match.load_scorer` asks of a Ray executor: a cluster with ``gpus`` GPUs."""
    return SimpleNamespace(distributed=True, gpus=lambda: gpus)


def test_gpu_actors_check_the_float_checkpoint_and_the_run_records_the_device(tmp_path):
    """GPU actors load the float checkpoint: the driver (no CUDA needed) holds it on its CPU and
    sends its fingerprint; run.json names the device and precision, so a run scored on CPUs is
    never resumed on GPUs."""
    from patchmatch.scoring import PatchScorer
    from patchmatch.sfm import SfmConfig, prepare_output, run_identity, weights_fingerprint

    float32 = PatchScorer.load(device="cpu", precision="fp32")
    driver, spec = match.load_scorer(executor=_cluster(gpus=1))
    assert (driver.device.type, driver.precision) == ("cpu", "fp32")
    assert spec["device"] == "cuda" and spec["precision"] == "fp16" and spec["activation_bits"] is None
    assert spec["weights"] == float32.meta["path"] and spec["scorer"] is None
    assert spec["fingerprint"] == weights_fingerprint(float32)
    assert weights_fingerprint(PatchScorer.load(device="cpu", precision="bf16")) == spec["fingerprint"]  # autocast
    assert match.load_scorer(device="cuda", precision="bf16", executor=_cluster(gpus=2))[1]["precision"] == "bf16"
    with pytest.raises(ValueError, match="this Ray cluster has none"):
        match.load_scorer(device="cuda", executor=_cluster(gpus=0))
    cpu_driver, cpu_spec = match.load_scorer(executor=_cluster(gpus=0))  # no GPU: the driver's network, on CPUs
    assert cpu_spec == match.scorer_spec(cpu_driver) and cpu_spec["device"] == "cpu"
    assert cpu_spec["precision"] == PatchScorer.load(device="cpu").precision
    if cpu_spec["precision"] == "int8":  # the int8 network's own fingerprint: another network than the GPUs'
        assert cpu_spec["fingerprint"] != spec["fingerprint"]
    config = SfmConfig()
    prepare_output(tmp_path / "out", run_identity(tmp_path, config, cpu_spec), overwrite=False)
    gpu_identity = run_identity(tmp_path, config, spec)
    assert gpu_identity["matching"]["device"] == "cuda" and gpu_identity["matching"]["precision"] == "fp16"
    with pytest.raises(FileExistsError, match=r"matching\.device: 'cpu' -> 'cuda'.*matching\.precision"):
        prepare_output(tmp_path / "out", gpu_identity, overwrite=False)
    assert prepare_output(tmp_path / "out", run_identity(tmp_path, config, cpu_spec), overwrite=False)  # resumes


def test_matches_shard_round_trip(tmp_path):
    results = {("a.png", "b.png"): (np.array([[0, 3], [2, 1]]), np.array([0.5, np.nan], np.float32), 7),
               ("a.png", "c d.png"): (np.zeros((0, 2), np.int64), np.zeros(0, np.float32), 0)}  # fmt: skip
    failed = {("b.png", "c d.png"): "c d.png: truncated"}
    path = write_shard(tmp_path / "s" / "matches-x.npz", **pack_matches(results, failed))
    assert [p.name for p in path.parent.iterdir()] == ["matches-x.npz"]  # no temporary file left
    back, back_failed = unpack_matches(read_shard(path))
    assert back_failed == failed and list(back) == list(results)
    for pair, (m, s, c) in results.items():
        np.testing.assert_array_equal(back[pair][0], m)
        np.testing.assert_array_equal(back[pair][1], s)
        assert back[pair][2] == c



def test_a_block_is_searched_once_from_selection_to_matches(tmp_path, monkeypatch):
    """A Ray actor's search hands the candidate sets of the pairs still to match on to their
    match call: the matches are the same as searching again, and no pair is searched twice."""
    from patchmatch.executors import BlockMatcher

    image_dir = shared_path("scenes", "temple-ring", "images")
    extract.run(image_dir, NAMES[:3], tmp_path / "features.h5", EXTRACT)
    worker = BlockMatcher(match.load_scorer(device="cpu")[1])
    source = match.H5Source(str(image_dir), str(tmp_path / "features.h5"), None, False)
    pairs = [(NAMES[0], NAMES[1]), (NAMES[0], NAMES[2]), (NAMES[1], NAMES[2])]
    config = match.MatchConfig()
    overlaps, kept = worker.search(source, pairs, config, keep=pairs[:2])
    assert set(overlaps) == set(pairs) and set(kept) == set(pairs[:2]) and all(o > 0 for o in overlaps.values())
    again = worker.match(source, pairs, pairs, config, str(tmp_path / "a.npz"))
    calls = []
    original = match.search_pair
    monkeypatch.setattr(match, "search_pair", lambda *a: calls.append(a) or original(*a))
    once = worker.match(source, pairs, pairs, config, str(tmp_path / "b.npz"), kept)
    assert len(calls) == 1  # only the pair without a candidate set
    first, second = unpack_matches(read_shard(again))[0], unpack_matches(read_shard(once))[0]
    assert list(first) == list(second) == pairs and sum(c for _, _, c in first.values()) > 0  # the network ran
    for pair in pairs:
        for a, b in zip(first[pair], second[pair]):
            np.testing.assert_array_equal(a, b)

def _stages(image_dir, out, scorer, executor):
    report = {}
    features = extract.run(image_dir, NAMES, out / "features.h5", EXTRACT, report=report, executor=executor)
    pairs = select_pairs.run(features, NAMES, out / "pairs.json", "exhaustive")
    match.run(image_dir, features, pairs, out / "matches.h5", scorer, max_image_size=None, report=report,
              executor=executor)  # fmt: skip
    return select_pairs.read(pairs), report


def _assert_same(out_a, out_b, pairs):
    for n in NAMES:
        fa, fb = storage.read_features(out_a / "features.h5", n), storage.read_features(out_b / "features.h5", n)
        np.testing.assert_array_equal(fa.keypoints, fb.keypoints)
        np.testing.assert_array_equal(fa.descriptors, fb.descriptors)
    for a, b in pairs:
        ma, sa = storage.read_matches(out_a / "matches.h5", a, b)
        mb, sb = storage.read_matches(out_b / "matches.h5", a, b)
        np.testing.assert_array_equal(ma, mb)
        np.testing.assert_array_equal(sa, sb)


#: CPUs and GPUs the test's Ray instance declares, whatever the machine has (GPUs ≠ CPUs: actors per GPU, not per CPU)
DECLARED_CPUS, DECLARED_GPUS = 2, 3


@pytest.fixture(scope="module")
def ray_executor():
    """A Ray instance started on this machine for the module's tests, declaring
    :data:`DECLARED_GPUS` GPUs that this machine need not have."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'patchmatch[ray]')")
    with make_executor("ray", num_cpus=DECLARED_CPUS, num_gpus=DECLARED_GPUS) as executor:
        yield executor


@pytest.mark.cluster
def test_gpu_cluster_scores_on_one_cuda_actor_per_gpu(ray_executor):
    """``--device auto`` on a cluster declaring GPUs: one actor per GPU, each given its own GPU and
    told to score on CUDA; on nodes without a usable CUDA (this machine) they fail with one line
    naming the node and the problem."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the failure needs nodes that only declare GPUs")
    assert ray_executor.gpus() == DECLARED_GPUS and ray_executor.parallelism() == DECLARED_CPUS
    driver, spec = match.load_scorer(executor=ray_executor)  # this driver has no CUDA
    assert driver.device.type == "cpu" and (spec["device"], spec["precision"]) == ("cuda", "fp16")
    with pytest.raises(WorkerSetupError) as caught:
        list(ray_executor.run_blocks(spec, "search", []))
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith(f"node {socket.gethostname()} (") and "cannot score on cuda" in message, message
    assert f"{DECLARED_GPUS - 1} more of the {DECLARED_GPUS} actors failed too" in message, message
    assert "PyTorch" in message and ("CPU-only build" in message or "no usable CUDA" in message), message
    errors = [a["error"] for a in ray_executor.actors]
    assert len(errors) == DECLARED_GPUS  # one actor per GPU, each with a GPU of its own
    assert sorted(re.search(r"Ray's GPU (\d+)\)", e).group(1) for e in errors) == [str(i) for i in range(DECLARED_GPUS)]
    cpu_driver, cpu_spec = match.load_scorer(device="cpu", executor=ray_executor)  # the CPUs, asked for
    assert cpu_spec == match.scorer_spec(cpu_driver) and cpu_spec["device"] == "cpu"


@pytest.mark.cluster
def test_ray_matches_equal_local_and_resume_from_shards(tmp_path, ray_executor):
    from patchmatch.scoring import PatchScorer

    image_dir = shared_path("scenes", "temple-ring", "images")
    scorer = PatchScorer.load(device="cpu")
    pairs, local_report = _stages(image_dir, tmp_path / "local", scorer, LocalExecutor())
    executor = ray_executor
    _, ray_report = _stages(image_dir, tmp_path / "ray", scorer, executor)
    _assert_same(tmp_path / "local", tmp_path / "ray", pairs)
    for key in ("pairs", "pairs_matched", "candidates_scored", "pairs_selected", "pairs_low_overlap"):
        assert ray_report[key] == local_report[key], key
    assert local_report["candidates_scored"] > 0  # the network ran
    assert local_report["scoring"] == {"executor": "local", "device": "cpu", "precision": scorer.precision, "tta": "none"}
    # the scorer passed in decides (a CPU network), GPUs declared or not: one CPU actor per CPU
    assert ray_report["scoring"] == {"executor": "ray", "device": "cpu", "precision": scorer.precision, "tta": "none",
                                     "actors": executor.parallelism(), "nodes": [executor.actors[0]["node"]]}  # fmt: skip
    shards = sorted((tmp_path / "ray" / "shards").iterdir())
    assert len([s for s in shards if s.name.startswith("features-")]) == len(NAMES)
    assert len([s for s in shards if s.name.startswith("matches-")]) >= 2
    # the driver died before merging: a rerun merges the shards without computing them again
    (tmp_path / "ray" / "features.h5").unlink()
    (tmp_path / "ray" / "matches.h5").unlink()
    stamps = {s: s.stat().st_mtime_ns for s in shards}
    _, again = _stages(image_dir, tmp_path / "ray", scorer, executor)
    assert again["features_computed"] == 0 and again["features_reused"] == len(NAMES)  # read from the shards
    assert {s: s.stat().st_mtime_ns for s in sorted((tmp_path / "ray" / "shards").iterdir())} == stamps
    assert again["pairs_matched"] == len(pairs)
    _assert_same(tmp_path / "local", tmp_path / "ray", pairs)


@pytest.mark.cluster
def test_match_command_on_ray_equals_local(tmp_path, ray_executor):
    """``patchmatch match`` into a COLMAP database: the same matches through Ray."""
    import shutil

    from patchmatch import colmap
    from patchmatch.database_matching import DatabaseMatchConfig, match_database
    from patchmatch.matching import MatchConfig
    from patchmatch.scoring import PatchScorer

    temple = shared_path("scenes", "temple-ring", "images")
    config = DatabaseMatchConfig(match=MatchConfig(min_overlap=0))
    scorer = PatchScorer.load(device="cpu")
    colmap.set_verbosity(False)
    # one extraction copied for both runs: pycolmap's threaded SIFT may number the images differently
    images = tmp_path / "images"
    images.mkdir()
    for n in NAMES[:3]:
        shutil.copy(temple / n, images / n)
    extracted = colmap.create_database(tmp_path / "extracted.db")
    colmap.sift_extract(extracted, images, NAMES[:3], colmap.SiftBaselineConfig(max_num_features=1000), affine_shape=True)
    dbs = {}
    for kind in ("local", "ray"):
        (tmp_path / kind).mkdir()
        db = tmp_path / kind / "database.db"
        shutil.copy(extracted, db)
        report = match_database(db, images, config, scorer, executor=ray_executor if kind == "ray" else None)
        assert report["matched_pairs"] >= 2
        dbs[kind] = db
    ids = colmap.read_image_ids(dbs["local"])
    assert ids == colmap.read_image_ids(dbs["ray"])
    for i, a in enumerate(NAMES[:3]):
        for b in NAMES[i + 1 : 3]:
            np.testing.assert_array_equal(colmap.read_matches(dbs["local"], ids[a], ids[b]),
                                          colmap.read_matches(dbs["ray"], ids[a], ids[b]))  # fmt: skip
    assert list((tmp_path / "ray").glob("database.db.shards/matches-*.npz"))
