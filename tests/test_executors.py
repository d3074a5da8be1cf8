"""The executors: a Ray run's features and matches equal the local run's, and a rerun resumes from
its shards. Ray is started on this machine (skipped where it is not installed); the Ray tests are
marked ``cluster`` (``make test`` leaves them to ``.ci/run``'s second step, for time)."""

from __future__ import annotations

import numpy as np
import pytest

from patchmatch import storage
from patchmatch.executors import LocalExecutor, make_executor, parse_executor
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


def _stages(image_dir, out, scorer, executor):
    features = extract.run(image_dir, NAMES, out / "features.h5", EXTRACT, executor=executor)
    pairs = select_pairs.run(features, NAMES, out / "pairs.json", "exhaustive")
    report = {}
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


@pytest.fixture(scope="module")
def ray_executor():
    """A Ray instance started on this machine for the module's tests."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'patchmatch[ray]')")
    with make_executor("ray") as executor:
        yield executor


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
    shards = sorted((tmp_path / "ray" / "shards").iterdir())
    assert len([s for s in shards if s.name.startswith("features-")]) == len(NAMES)
    assert len([s for s in shards if s.name.startswith("matches-")]) >= 2
    # the driver died before merging: a rerun merges the shards without computing them again
    (tmp_path / "ray" / "features.h5").unlink()
    (tmp_path / "ray" / "matches.h5").unlink()
    stamps = {s: s.stat().st_mtime_ns for s in shards}
    _, again = _stages(image_dir, tmp_path / "ray", scorer, executor)
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
