import json
import shutil

import numpy as np
import pytest

from patchmatch import colmap
from patchmatch.cli import main
from patchmatch.database_matching import DatabaseMatchConfig, database_features, match_database
from patchmatch.matching import MatchConfig
from patchmatch.models import build_model, save_checkpoint
from patchmatch.scoring import PatchScorer
from tests.helpers import NCCScorer

NAMES = ["templeSR0001.png", "templeSR0002.png", "templeSR0003.png"]


@pytest.fixture
def project(tmp_path, temple_dir):
    """A COLMAP project as `colmap feature_extractor` leaves it: images, cameras, SIFT with affine shapes."""
    images = tmp_path / "images"
    images.mkdir()
    for n in NAMES:
        shutil.copy(temple_dir / "images" / n, images / n)
    colmap.set_verbosity(False)
    db = colmap.create_database(tmp_path / "database.db")
    colmap.sift_extract(db, images, NAMES, colmap.SiftBaselineConfig(max_num_features=1500), affine_shape=True)
    return db, images


CONFIG = DatabaseMatchConfig(match=MatchConfig(k=2, min_score=0.6, min_overlap=0))


def test_match_database_writes_verified_matches(project):
    db, images = project
    report = match_database(db, images, CONFIG, NCCScorer())
    assert report["pairs"] == 3 and report["matched_pairs"] >= 2 and not report["bad_images"]
    summary = colmap.database_summary(db)
    assert summary.verified_pairs >= 2 and summary.inlier_matches > 100
    ids = colmap.read_image_ids(db)
    m = colmap.read_verified_matches(db, ids[NAMES[0]], ids[NAMES[1]])
    assert len(m) > 50
    # resume / never touch existing pairs: a second run skips every matched pair
    again = match_database(db, images, CONFIG, NCCScorer())
    assert again["matched_pairs"] == 0 and len(again["skipped_pairs"]) == 3 and again["candidates_scored"] == 0
    assert report["candidates_scored"] > 0
    assert all("already holds" in why for *_, why in again["skipped_pairs"])
    assert colmap.database_summary(db) == summary
    replaced = match_database(db, images, CONFIG, NCCScorer(), overwrite=True)
    assert replaced["matched_pairs"] == report["matched_pairs"]
    assert colmap.database_summary(db).matches == summary.matches


def test_database_features_follow_colmap_shapes(project):
    db, _ = project
    im = colmap.read_database_images(db)[NAMES[0]]
    f = database_features(im)
    assert len(f) == len(im.keypoints) > 0
    np.testing.assert_allclose(f.xy, im.keypoints[:, :2] - 0.5, atol=1e-4)
    a = im.keypoints[:, 2:].reshape(-1, 2, 2)
    np.testing.assert_allclose(f.keypoints[:, 2], 2 * np.sqrt(np.abs(np.linalg.det(a))), rtol=1e-4)


def test_bad_image_is_listed_and_others_processed(project, caplog):
    db, images = project
    (images / NAMES[2]).write_bytes(b"broken")
    report = match_database(db, images, CONFIG, NCCScorer())
    assert [n for n, _ in report["bad_images"]] == [NAMES[2]]
    assert NAMES[2] in report["bad_images"][0][1]
    assert report["matched_pairs"] == 1  # the pair of the two good images
    bad_pairs = [s for s in report["skipped_pairs"] if NAMES[2] in s[:2]]
    assert len(bad_pairs) == 2 and all(NAMES[2] in why for *_, why in bad_pairs)
    assert caplog.text.count(f"{NAMES[2]}:") == 1  # read and warned about once, not once per pair


def test_missing_image_is_found_even_where_the_network_reads_none(project):
    """Strong pairs keep SIFT's matches without reading an image; a missing file is still named
    (checked from the headers first) and its pairs left alone, the others matched."""
    db, images = project
    (images / NAMES[2]).unlink()
    strong = DatabaseMatchConfig(match=MatchConfig(k=2, min_score=0.6, min_overlap=0, strong_pair_accepted=1))
    report = match_database(db, images, strong, NCCScorer())
    assert [n for n, _ in report["bad_images"]] == [NAMES[2]] and "cannot read it" in report["bad_images"][0][1]
    assert report["matched_pairs"] == 1 and report["candidates_scored"] == 0
    assert sorted(s[:2] for s in report["skipped_pairs"]) == sorted([[NAMES[0], NAMES[2]], [NAMES[1], NAMES[2]]])


def test_resized_image_is_a_clear_error(project):
    db, images = project
    import cv2

    img = cv2.imread(str(images / NAMES[1]))
    cv2.imwrite(str(images / NAMES[1]), cv2.resize(img, (320, 240)))
    report = match_database(db, images, CONFIG, NCCScorer())
    assert report["bad_images"] and "camera in the database is 640×480" in report["bad_images"][0][1]


def test_match_command(project, tmp_path, capsys, monkeypatch):
    db, images = project
    ckpt = save_checkpoint(tmp_path / "net.pt", build_model("2ch2stream"))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{NAMES[0]} {NAMES[1]}\n")
    rc = main(["match", str(db), str(images), "--weights", str(ckpt), "--pairs", str(pairs), "--precision", "fp32",
               "--report", str(tmp_path / "r.json")])
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "complete" and report["pairs"] == 1 and report["precision"] == "fp32"
    assert report["scoring"] == {"executor": "local", "device": report["scoring"]["device"], "precision": "fp32",
                                 "tta": "none"}
    assert "pairs matched" in capsys.readouterr().out
    pairs.write_text(f"{NAMES[0]} nope.png\n")
    assert main(["match", str(db), str(images), "--weights", str(ckpt), "--pairs", str(pairs)]) == 2
    assert "nope.png" in capsys.readouterr().err
    assert main(["match", str(tmp_path / "none.db"), str(images)]) == 2
    before = db.read_bytes()
    assert main(["match", str(db), str(images), "--report", str(db)]) == 2  # the report would replace the database
    assert "that is the input" in capsys.readouterr().err and db.read_bytes() == before
    assert main(["match", str(images), str(images)]) == 2  # the image folder given as the database
    assert "a folder, not a COLMAP database file" in capsys.readouterr().err
    # another folder with the same names, every image of another size: nothing usable is an error
    import cv2

    small = tmp_path / "small"
    small.mkdir()
    for name in NAMES:
        cv2.imwrite(str(small / name), cv2.resize(cv2.imread(str(images / name)), (320, 240)))
    assert main(["match", str(db), str(small), "--weights", str(ckpt), "--precision", "fp32",
                 "--report", str(tmp_path / "r.json")]) == 1  # fmt: skip
    assert f"none of the {len(NAMES)} images of {db} could be used in {small}" in capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "failed"
    # a stopped run leaves a report that says so, not an earlier run's
    import patchmatch.database_matching as dm

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dm, "match_database", stopped)
    assert main(["match", str(db), str(images), "--weights", str(ckpt), "--report", str(tmp_path / "r.json")]) == 130
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "interrupted"


def test_interrupted_run_is_verified_on_rerun_and_overwrite_keeps_unmatched_pairs(project):
    """Matches written without two-view geometries (a run killed before its verification) are
    verified by the next run, not skipped; --overwrite replaces only pairs that get new matches."""
    import pycolmap

    db, images = project
    first = match_database(db, images, CONFIG, NCCScorer())
    summary = colmap.database_summary(db)
    with pycolmap.Database.open(str(db)) as d:  # what a kill before verification leaves
        for a, b in colmap.pairs_with_matches(db)[1]:
            d.delete_two_view_geometry(a, b)
    assert colmap.database_summary(db).verified_pairs == 0
    again = match_database(db, images, CONFIG, NCCScorer())
    assert again["verified_existing_pairs"] == first["matched_pairs"] and again["matched_pairs"] == 0
    assert colmap.database_summary(db) == summary
    # nothing selected for matching (overlap threshold out of reach): --overwrite keeps every pair's matches
    unreachable = DatabaseMatchConfig(match=MatchConfig(k=2, min_score=0.6, min_overlap=10**6))
    kept = match_database(db, images, unreachable, NCCScorer(), overwrite=True)
    assert kept["matched_pairs"] == 0 and colmap.database_summary(db) == summary
    assert all("were kept" in why for *_, why in kept["skipped_pairs"]) and len(kept["skipped_pairs"]) == 3


def test_four_column_keypoints_become_similarity_shapes_and_two_columns_are_refused(tmp_path, temple_dir):
    """Databases whose keypoints are (x, y, scale, orientation) (older COLMAP) are read with
    the shapes COLMAP builds from them; positions-only keypoints are a clear error."""
    import pycolmap

    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(temple_dir / "images" / NAMES[0], images / NAMES[0])
    colmap.set_verbosity(False)
    db = colmap.create_database(tmp_path / "db6.db")
    colmap.sift_extract(db, images, NAMES[:1], colmap.SiftBaselineConfig(max_num_features=300), affine_shape=False)
    six = colmap.read_database_images(db)[NAMES[0]].keypoints
    a = six[:, 2:].reshape(-1, 2, 2)
    scale, angle = np.sqrt(np.abs(np.linalg.det(a))), np.arctan2(a[:, 1, 0], a[:, 0, 0])
    for cols, columns in ((4, np.c_[six[:, :2], scale, angle]), (2, six[:, :2])):
        path = tmp_path / f"db{cols}.db"
        shutil.copy(db, path)
        with pycolmap.Database.open(str(path)) as d:
            iid = next(iter(colmap.read_image_ids(path).values()))
            d.update_keypoints(iid, np.ascontiguousarray(columns, dtype=np.float32))
        if cols == 4:
            np.testing.assert_allclose(colmap.read_database_images(path)[NAMES[0]].keypoints, six, atol=1e-3)
        else:
            with pytest.raises(ValueError, match=f"{NAMES[0]} are positions only"):
                colmap.read_database_images(path)
            before = path.read_bytes()  # refused before pycolmap opens (and writes to) the file
            with pytest.raises(ValueError, match=f"{NAMES[0]} are positions only"):
                match_database(path, images, CONFIG, NCCScorer())
            with pytest.raises(FileNotFoundError, match="wrong image folder"):
                match_database(path, tmp_path, CONFIG, NCCScorer())
            assert path.read_bytes() == before


def test_pairs_colmap_tried_without_a_match_are_matched(project):
    """COLMAP records the pairs it tried with empty matches rows (and rejected pairs with empty
    two-view geometries): the very pairs the network is for, so they are matched without
    --overwrite, their empty entries replaced; a pair holding matches is still left alone."""
    import pycolmap

    db, images = project
    ids = colmap.read_image_ids(db)
    a, b = sorted((ids[NAMES[0]], ids[NAMES[1]]))
    c, d = sorted((ids[NAMES[1]], ids[NAMES[2]]))
    with pycolmap.Database.open(str(db)) as handle:
        handle.write_matches(a, b, np.zeros((0, 2), np.uint32))
        handle.write_two_view_geometry(a, b, pycolmap.TwoViewGeometry())
        handle.write_matches(c, d, np.stack([np.arange(100), np.arange(100)], 1).astype(np.uint32))
    matched, geometries = colmap.pairs_with_matches(db)
    assert matched[(a, b)] == 0 and geometries[(a, b)] == 0 and matched[(c, d)] == 100
    every = DatabaseMatchConfig(match=MatchConfig(k=2, min_score=0.6, min_overlap=0, strong_overlap=0))
    report = match_database(db, images, every, NCCScorer())
    assert report["matched_pairs"] == 2 and report["verified_existing_pairs"] == 1  # (c, d): as it is
    assert len(colmap.read_verified_matches(db, a, b)) > 50
    assert [NAMES[0], NAMES[1]] not in [s[:2] for s in report["skipped_pairs"]]
    assert len(colmap.read_matches(db, c, d)) == 100


def test_another_process_matching_the_same_database_is_named(project, monkeypatch):
    """Two runs started together on one database: the one that finds a pair's matches already
    written by the other stops with a message that says so (the pair named by its images)."""
    import patchmatch.database_matching as dm

    db, images = project
    sort = dm._sort_pairs

    def other_process_writes_first(database, imgs, pairs, bad, overwrite):
        states = sort(database, imgs, pairs, bad, overwrite)
        a, b = states.todo[0]
        colmap.write_matches(database, {(imgs[a].image_id, imgs[b].image_id): np.array([[0, 0]])})
        return states

    monkeypatch.setattr(dm, "_sort_pairs", other_process_writes_first)
    every = DatabaseMatchConfig(match=MatchConfig(k=2, min_score=0.6, min_overlap=0, strong_overlap=0))
    with pytest.raises(colmap.DatabaseInUseError, match=r"templeSR000\d.png and templeSR000\d.png appeared .* another process"):
        match_database(db, images, every, NCCScorer())


def test_patches_are_cut_at_the_scorers_magnification(project, monkeypatch):
    import patchmatch.database_matching as dm

    used = []

    def recording(pixels, keypoints, magnification, keep=None):
        used.append(magnification)
        return extract(pixels, keypoints, magnification=magnification, keep=keep)

    extract = dm.extract_patches_colmap
    monkeypatch.setattr(dm, "extract_patches_colmap", recording)
    db, images = project
    report = match_database(db, images, CONFIG, NCCScorer(magnification=9.0))
    assert report["matched_pairs"] >= 2 and used and set(used) == {9.0}


def test_guided_matching_adds_verified_matches_to_the_database(project):
    import dataclasses

    from patchmatch.stages.guided import GuidedConfig

    db, images = project
    plain = match_database(db, images, CONFIG, NCCScorer())
    before = colmap.database_summary(db)
    assert plain["guided"] == {"pairs_guided": 0, "candidates_scored": 0, "matches_added": 0}
    guided_config = dataclasses.replace(CONFIG, guided=GuidedConfig(min_score=0.6))
    report = match_database(db, images, guided_config, NCCScorer(), overwrite=True)
    after = colmap.database_summary(db)
    assert report["guided"]["pairs_guided"] >= 2 and report["guided"]["matches_added"] > 0
    assert report["guided"]["candidates_scored"] <= report["guided"]["pairs_guided"] * GuidedConfig().per_pair
    assert after.verified_pairs == before.verified_pairs and after.inlier_matches > before.inlier_matches
