"""patchmatch.colmap.database: writes read back as COLMAP sees them, validation before pycolmap,
and the errors of a damaged file or a full disk."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from patchmatch import colmap
from patchmatch.colmap import database as database_module


def test_database_written_and_read_back(small_database):
    db, ids = small_database
    assert ids == {"img0.jpg": 1, "img1.jpg": 2}
    assert colmap.read_image_ids(db) == ids
    kp0 = np.array([[0.0, 0.0], [100.0, 50.0], [639.0, 479.0]], np.float32)  # OpenCV convention
    kp1 = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    colmap.write_keypoints(db, {ids["img0.jpg"]: kp0, ids["img1.jpg"]: kp1})
    colmap.write_matches(db, {(1, 2): np.array([[0, 1], [2, 0]])})

    with pycolmap.Database.open(str(db)) as raw:  # what COLMAP itself sees
        # +0.5 rule: the top-left pixel centre is (0.5, 0.5) in COLMAP
        np.testing.assert_allclose(np.asarray(raw.read_keypoints(1))[:, :2], kp0 + 0.5)
        cams = {c.camera_id: c for c in raw.read_all_cameras()}
        assert cams[1].model_name == "SIMPLE_RADIAL"
        assert (cams[1].width, cams[1].height) == (640, 480)
        np.testing.assert_allclose(cams[1].params, [1.2 * 640, 320, 240, 0])
        assert not cams[1].has_prior_focal_length
        assert cams[2].params[0] == 1000.0 and cams[2].has_prior_focal_length
        assert raw.num_frames() == 2 and raw.num_rigs() == 2
        np.testing.assert_array_equal(raw.read_matches(1, 2), [[0, 1], [2, 0]])
    np.testing.assert_allclose(colmap.read_keypoints(db, 1), kp0)
    np.testing.assert_array_equal(colmap.read_matches(db, 2, 1), [[1, 0], [0, 2]])
    summary = colmap.database_summary(db)
    assert (summary.images, summary.keypoints, summary.matched_pairs, summary.matches) == (2, 5, 1, 2)
    assert colmap.pairs_with_matches(db) == ({(1, 2): 2}, {})
    colmap.delete_pairs(db, [(2, 1)])
    assert colmap.pairs_with_matches(db) == ({}, {}) and len(colmap.read_matches(db, 1, 2)) == 0


def test_copy_with_shared_cameras(tmp_path):
    """Cameras of one prior become one camera in a copy (its rig and frames rewritten); the database
    itself, its other cameras, keypoints and matches are unchanged; rigs of several cameras are refused."""
    from patchmatch.colmap.mapping import prior_groups

    db = colmap.create_database(tmp_path / "database.db")
    infos = [colmap.CameraInfo(f"img{i}.jpg", 640, 480) for i in range(3)] + [colmap.CameraInfo("big.jpg", 800, 600)]
    ids = colmap.add_images(db, infos + [colmap.CameraInfo("exif.jpg", 640, 480, focal=500.0)])
    colmap.write_keypoints(db, {i: np.array([[1.0, 2.0], [3.0, 4.0]], np.float32) for i in ids.values()})
    colmap.write_matches(db, {(1, 2): np.array([[0, 1], [1, 0]])})
    with colmap.open_database(db) as raw:
        groups = prior_groups(raw)
    assert groups == {1: 1, 2: 1, 3: 1}  # same model, size and prior; not the 800x600 one, not the EXIF one
    copy = colmap.copy_with_shared_cameras(db, tmp_path / "shared.db", groups)
    with colmap.open_database(copy) as raw:
        assert sorted(c.camera_id for c in raw.read_all_cameras()) == [1, 4, 5]
        images = {im.name: im for im in raw.read_all_images()}
        assert {n: im.camera_id for n, im in images.items()} == {"img0.jpg": 1, "img1.jpg": 1, "img2.jpg": 1,
                                                                  "big.jpg": 4, "exif.jpg": 5}  # fmt: skip
        rigs = {r.rig_id: r for r in raw.read_all_rigs()}
        assert len(rigs) == 3 and all(r.num_sensors() == 1 for r in rigs.values())
        for frame in raw.read_all_frames():  # each image in its own frame, in the rig of its camera
            (data,) = frame.data_ids
            assert rigs[frame.rig_id].ref_sensor_id.id == images[next(n for n, im in images.items()
                                                                       if im.image_id == data.id)].camera_id  # fmt: skip
        assert raw.num_frames() == 5 and raw.num_inlier_matches() == 0 and raw.num_matches() == 2
        assert prior_groups(raw) == {}
    with colmap.open_database(db) as raw:  # the original untouched
        assert raw.num_cameras() == 5 and {im.camera_id for im in raw.read_all_images()} == {1, 2, 3, 4, 5}
    np.testing.assert_allclose(colmap.read_keypoints(copy, 2), colmap.read_keypoints(db, 2))
    with pycolmap.Database.open(str(db)) as raw:  # a rig of two cameras: nothing to share safely
        rig = raw.read_rig(1)
        rig.add_sensor(raw.read_camera(2).sensor_id, pycolmap.Rigid3d())
        raw.update_rig(rig)
        assert prior_groups(raw) == {}
    with pytest.raises(ValueError, match="rig"):
        colmap.copy_with_shared_cameras(db, tmp_path / "again.db", groups)


def test_refuses_to_overwrite(small_database):
    db, _ = small_database
    with pytest.raises(FileExistsError, match="database.db already exists"):
        colmap.create_database(db)
    colmap.create_database(db, overwrite=True)
    assert colmap.database_summary(db).images == 0


def test_validation_before_pycolmap(tmp_path, small_database):
    """Misuse that would abort inside pycolmap raises a clear Python error instead."""
    db, ids = small_database
    with pytest.raises(ValueError, match="already in"):
        colmap.add_images(db, [colmap.CameraInfo("img0.jpg", 10, 10)])
    with pytest.raises(ValueError, match="invalid size"):
        colmap.add_images(db, [colmap.CameraInfo("z.jpg", 0, 10)])
    with pytest.raises(ValueError, match=r"must be \(N, 2\)"):
        colmap.write_keypoints(db, {1: np.zeros((3, 4))})
    with pytest.raises(ValueError, match="image id 7 is not in"):
        colmap.write_keypoints(db, {7: np.zeros((3, 2))})
    colmap.write_keypoints(db, {1: np.zeros((3, 2)), 2: np.zeros((2, 2))})
    with pytest.raises(ValueError, match="already in"):
        colmap.write_keypoints(db, {1: np.zeros((3, 2))})
    with pytest.raises(ValueError, match="out of range"):
        colmap.write_matches(db, {(1, 2): np.array([[0, 2]])})
    with pytest.raises(ValueError, match="given twice"):
        colmap.write_matches(db, {(1, 2): np.array([[0, 1]]), (2, 1): np.array([[0, 1]])})
    colmap.write_matches(db, {(1, 2): np.array([[0, 1]])})
    with pytest.raises(ValueError, match="already in"):
        colmap.write_matches(db, {(2, 1): np.array([[1, 0]])})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        colmap.write_keypoints(tmp_path / "missing.db", {})


def _written_database(path: Path) -> Path:
    """A real database of 40 images with 2000 keypoints each (about 1 MB)."""
    db = colmap.create_database(path)
    ids = colmap.add_images(db, [colmap.CameraInfo(f"img{i:02d}.jpg", 640, 480) for i in range(40)])
    rng = np.random.default_rng(0)
    colmap.write_keypoints(db, {i: rng.random((2000, 2)) * 400 for i in ids.values()})
    return db


def _readers(db: Path, tmp_path: Path):
    """Every kind of access to a database a user's file can meet."""
    return {
        "database_summary": lambda: colmap.database_summary(db),
        "read_image_ids": lambda: colmap.read_image_ids(db),
        "read_database_images": lambda: colmap.read_database_images(db),
        "pairs_with_matches": lambda: colmap.pairs_with_matches(db),
        "write_keypoints": lambda: colmap.write_keypoints(db, {1: np.zeros((3, 2))}),
        "verify_matches": lambda: colmap.verify_matches(db),
        "incremental_mapping": lambda: colmap.incremental_mapping(db, tmp_path, tmp_path / "sparse"),
    }


@pytest.mark.parametrize("fraction", [0.0001, 0.3, 0.9, 0.999])
def test_truncated_database_is_named(tmp_path, fraction):
    """A database cut short (an interrupted copy or download) is refused with its path and the
    likely cause, not pycolmap's "No registered database factory succeeded"."""
    original = _written_database(tmp_path / "full.db")
    data = original.read_bytes()
    db = tmp_path / "database.db"
    db.write_bytes(data[: max(16, int(len(data) * fraction))])
    for name, read in _readers(db, tmp_path).items():
        with pytest.raises(colmap.NotADatabaseError, match="not a COLMAP database or truncated") as error:
            read()
        assert str(db) in str(error.value) and "\n" not in str(error.value), name
        assert isinstance(error.value, ValueError)  # the command line prints it as one line
    assert colmap.database_summary(original).keypoints == 40 * 2000  # the intact file still reads


def test_unreadable_database_behind_an_intact_header(tmp_path):
    """A file whose header says nothing about its length (an SQLite header of older writers)
    reaches pycolmap; its failure to open is said the same way."""
    data = bytearray(_written_database(tmp_path / "full.db").read_bytes())
    data[92:96] = (int.from_bytes(data[24:28], "big") + 1).to_bytes(4, "big")  # page count not trusted
    db = tmp_path / "database.db"
    db.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(colmap.NotADatabaseError, match="not a COLMAP database or truncated"):
        colmap.database_summary(db)


def test_text_file_is_not_a_database(tmp_path):
    db = tmp_path / "database.db"
    db.write_text("image_name camera_id\n0001.jpg 1\n")
    for name, read in _readers(db, tmp_path).items():
        with pytest.raises(ValueError, match=r"database\.db: not a COLMAP database or truncated \(no SQLite header\)"):
            read()
    assert db.read_text().startswith("image_name")  # left as it was


def test_foreign_sqlite_and_empty_files_are_refused_unchanged(tmp_path):
    """An SQLite file of another program, or an empty file, is not given COLMAP's tables."""
    foreign = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(foreign)) as con, con:
        con.execute("CREATE TABLE notes (text)")
    empty = tmp_path / "empty.db"
    empty.touch()
    before = foreign.read_bytes()
    for db, words in ((foreign, "not COLMAP's (no table cameras"), (empty, "an empty file")):
        for name, read in _readers(db, tmp_path).items():
            with pytest.raises(colmap.NotADatabaseError, match=re.escape(words)):
                read()
    assert foreign.read_bytes() == before and empty.stat().st_size == 0


def test_database_locked_by_another_process_is_said_so(small_database):
    """A database another process is writing is "in use", not "not a COLMAP database"."""
    small_database, _ = small_database
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"con = sqlite3.connect({str(small_database)!r}, isolation_level=None)\n"
        "con.execute('BEGIN EXCLUSIVE'); con.execute('DELETE FROM matches')\n"
        "print('locked', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(colmap.DatabaseInUseError, match="in use by another process") as error:
            colmap.database_summary(small_database)
        assert str(small_database) in str(error.value) and isinstance(error.value, OSError)
    finally:
        holder.kill()
        holder.wait()
    assert colmap.database_summary(small_database).images > 0  # free again: it reads


def test_low_free_space_is_refused_before_writing(small_database, monkeypatch):
    """COLMAP aborts the process when a transaction's commit finds the disk full: the free space
    is checked first and a full disk said with the file's name."""
    db, ids = small_database
    keypoints = {ids["img0.jpg"]: np.zeros((300_000, 2)), ids["img1.jpg"]: np.zeros((10, 2))}  # 2.4 MB as float32
    free = {"bytes": database_module.FREE_SPACE_MARGIN + (3 << 20)}
    monkeypatch.setattr(database_module, "_free_bytes", lambda path: free["bytes"])
    with pytest.raises(OSError, match="disk full: cannot write .*database.db") as error:
        colmap.write_keypoints(db, keypoints)
    assert error.value.errno == errno.ENOSPC and "\n" not in str(error.value)
    assert colmap.database_summary(db).keypoints == 0  # nothing half-written
    free["bytes"] = database_module.FREE_SPACE_MARGIN + (6 << 20)  # twice the data: the WAL, then the file
    colmap.write_keypoints(db, keypoints)
    assert colmap.database_summary(db).keypoints == 300_010
    free["bytes"] = 1000
    for write in (lambda: colmap.add_images(db, [colmap.CameraInfo("x.jpg", 10, 10)]),
                  lambda: colmap.write_matches(db, {(1, 2): np.array([[0, 1]])}),
                  lambda: colmap.delete_pairs(db, [(1, 2)]),
                  lambda: colmap.create_database(db.with_name("other.db"))):  # fmt: skip
        with pytest.raises(OSError, match="disk full") as error:
            write()
        assert error.value.errno == errno.ENOSPC


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs mounted at tmp_path/disk (needs root on Linux; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small file system needs root on Linux (mount -t tmpfs)")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _fill(disk: Path, leave: int) -> None:
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(shutil.disk_usage(disk).free - leave, 0))


def test_full_disk_is_named(small_disk):
    """On a real full file system: a write that does not fit, and opening a database (COLMAP's
    open writes), fail with the file's name and "disk full" instead of aborting the process."""
    db = colmap.create_database(small_disk / "database.db")
    ids = colmap.add_images(db, [colmap.CameraInfo(f"img{i}.jpg", 640, 480) for i in range(3)])
    _fill(small_disk, 1 << 20)
    with pytest.raises(OSError, match=f"disk full: cannot write {db}") as error:
        colmap.write_keypoints(db, {i: np.zeros((100_000, 2)) for i in ids.values()})
    assert error.value.errno == errno.ENOSPC
    (small_disk / "filler").unlink()
    (small_disk / "database.db-wal").unlink(missing_ok=True)  # as after a crash: the next open rebuilds it
    (small_disk / "database.db-shm").unlink(missing_ok=True)
    _fill(small_disk, 0)
    with pytest.raises(OSError, match="disk full") as error:
        colmap.database_summary(db)
    assert error.value.errno == errno.ENOSPC


def test_known_intrinsics_are_written_as_given(tmp_path):
    """Every camera gets the given model and parameters, flagged as a prior; a principal point outside an
    image is refused before anything is written, naming the image."""
    known = colmap.CameraIntrinsics.parse("pinhole", "1520.4, 1525.9,302.82,247.37")
    assert known.model == "PINHOLE" and known.params == (1520.4, 1525.9, 302.82, 247.37) and not known.refine
    db = colmap.create_database(tmp_path / "database.db")
    ids = colmap.add_images(db, [colmap.CameraInfo(f"img{i}.png", 640, 480, focal=900.0) for i in range(2)],
                            intrinsics=known)  # fmt: skip
    with colmap.open_database(db) as raw:
        cameras = raw.read_all_cameras()
        assert len(cameras) == 2 and all(c.model.name == "PINHOLE" and c.has_prior_focal_length for c in cameras)
        np.testing.assert_array_equal(cameras[0].params, [1520.4, 1525.9, 302.82, 247.37])  # not the EXIF focal
        assert sorted(im.image_id for im in raw.read_all_images()) == sorted(ids.values())
    db2 = colmap.create_database(tmp_path / "other.db")
    with pytest.raises(ValueError, match=r"image 'small.png' \(300x200 px\): the given camera's principal point lies outside"):
        colmap.add_images(db2, [colmap.CameraInfo("big.png", 640, 480), colmap.CameraInfo("small.png", 300, 200)],
                          intrinsics=known)  # fmt: skip
    assert colmap.database_summary(db2).images == 0


@pytest.mark.parametrize(
    "model, params, message",
    [
        ("PINHOL", "1,2,3", "unknown camera model 'PINHOL'; COLMAP's models: .*PINHOLE"),
        ("PINHOLE", "1520,302,247", r"PINHOLE takes 4 parameters \(fx, fy, cx, cy\), got 3"),
        ("SIMPLE_RADIAL", "-1000,320,240,0", r"focal length must be positive, got \[-1000.0\]"),
        ("SIMPLE_PINHOLE", "1000,nan,240", "must be finite"),
        ("SIMPLE_PINHOLE", "1000;320;240", "comma-separated numbers, got '1000;320;240'"),
    ],
)
def test_known_intrinsics_refuse_bad_values(model, params, message):
    with pytest.raises(ValueError, match=message):
        colmap.CameraIntrinsics.parse(model, params)


def test_a_database_that_cannot_be_written_is_named_as_such(tmp_path):
    """A database file that cannot be written is reported as such, not as a damaged database."""
    from tests.helpers import make_unwritable, make_writable

    db = colmap.create_database(tmp_path / "database.db")
    if not make_unwritable(db):
        pytest.skip("no way to make a file unwritable for this process here")
    try:
        with pytest.raises(PermissionError, match=r"database.db: cannot be written"):
            with colmap.open_database(db):
                pass
    finally:
        make_writable(db)
    with colmap.open_database(db):  # writable again: opens
        pass
    with contextlib.closing(sqlite3.connect(db)) as con:  # as pycolmap's extraction leaves it
        con.execute("PRAGMA journal_mode=WAL")
    if not make_unwritable(tmp_path):
        pytest.skip("no way to make a folder unwritable for this process here")
    try:  # SQLite cannot read a WAL database in a folder it cannot write
        with pytest.raises(PermissionError, match=r"its folder .* cannot be written"):
            colmap.peek_keypoint_columns(db)
    finally:
        make_writable(tmp_path)
