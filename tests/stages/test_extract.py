"""Stage 1: SIFT features → features.h5, resumed per image."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from patchmatch import storage
from patchmatch.images import ImageReadError
from patchmatch.stages import extract

CONFIG = extract.ExtractConfig(max_keypoints=256)


def _images(root, count=4):
    rng = np.random.default_rng(0)
    for i in range(count):
        img = cv2.GaussianBlur(rng.integers(0, 255, (240, 320), dtype=np.uint8), (0, 0), 2)
        cv2.imwrite(str(root / f"{i}.png"), img)
    (root / "bad.png").write_bytes(b"not an image")
    return ["0.png", "bad.png"] + [f"{i}.png" for i in range(1, count)]


def test_images_detected_side_by_side_in_order(tmp_path):
    """Two workers give the images back in order, a bad file as its error (the others still
    processed), with the same keypoints as one at a time."""
    names = _images(tmp_path)
    out = list(extract.detect_images(tmp_path, names, CONFIG, workers=2))
    assert [n for n, _ in out] == names
    assert isinstance(out[1][1], ImageReadError) and "bad.png" in str(out[1][1])
    for name, (feats, fingerprint) in [o for o in out if o[0] != "bad.png"]:
        alone, alone_fp = extract.detect_image(tmp_path, name, CONFIG)
        assert len(feats) > 0 and fingerprint == alone_fp
        np.testing.assert_array_equal(feats.keypoints, alone.keypoints)
        np.testing.assert_array_equal(feats.descriptors, alone.descriptors)
    gen = extract.detect_images(tmp_path, names, CONFIG, workers=2)
    next(gen)
    gen.close()  # e.g. Ctrl-C while the first image was written: no error, nothing left running


def test_run_stores_resumes_and_reports(tmp_path):
    names = _images(tmp_path)
    h5 = tmp_path / "out" / "features.h5"
    report: dict = {}
    assert extract.run(tmp_path, names, h5, CONFIG, workers=2, report=report) == h5
    assert report["features_computed"] == 4 and report["features_reused"] == 0
    assert [s["name"] for s in report["skipped"]] == ["bad.png"] and report["notes"] == []
    assert storage.list_features(h5) == ["0.png", "1.png", "2.png", "3.png"]
    again: dict = {}
    extract.run(tmp_path, names, h5, CONFIG, report=again)
    assert again["features_computed"] == 0 and again["features_reused"] == 4
    assert [s["name"] for s in again["skipped"]] == ["bad.png"]  # still reported: it is not stored


def test_changed_image_is_refused_and_corrupt_file_set_aside(tmp_path):
    names = _images(tmp_path, 2)
    h5 = tmp_path / "features.h5"
    extract.run(tmp_path, names, h5, CONFIG)
    stat = (tmp_path / "1.png").stat()
    os.utime(tmp_path / "1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: the same content
    report: dict = {}
    extract.run(tmp_path, names, h5, CONFIG, report=report)
    assert report["features_reused"] == 2 and report["features_computed"] == 0
    data = bytearray((tmp_path / "1.png").read_bytes())
    data[-20] ^= 0xFF  # the same size and a new time, other bytes
    (tmp_path / "1.png").write_bytes(bytes(data))
    with pytest.raises(FileExistsError, match=r"1.png changed since its features"):
        extract.run(tmp_path, names, h5, CONFIG)
    data[-20] ^= 0xFF
    (tmp_path / "1.png").write_bytes(bytes(data))  # back to the first bytes
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # killed mid-metadata
    report: dict = {}
    extract.run(tmp_path, names, h5, CONFIG, report=report)
    assert report["features_computed"] == 2 and "features.h5 was unreadable" in report["notes"][0]
    assert "delete or move" not in report["notes"][0]  # it was moved: no advice to do so
    assert len(list(tmp_path.glob("features.h5.corrupt-*"))) == 1


def test_file_left_open_by_a_killed_writer_is_reused(tmp_path):
    """A writer killed with the file open leaves HDF5's "open for write" mark: the mark is cleared
    (as h5clear -s does) and every stored image reused, not recomputed."""
    import subprocess
    import sys

    names = [n for n in _images(tmp_path, 3) if n != "bad.png"]
    h5 = tmp_path / "features.h5"
    extract.run(tmp_path, names[:2], h5, CONFIG)
    code = f"import h5py, os; f = h5py.File({str(h5)!r}, 'a', libver='latest'); f.create_group('x'); f.flush(); os._exit(0)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with pytest.raises(storage.StorageError, match="cannot open"):
        storage.list_features(h5)
    report: dict = {}
    extract.run(tmp_path, names, h5, CONFIG, report=report)
    assert report["features_reused"] == 2 and report["features_computed"] == 1
    assert "mark was cleared" in report["notes"][0] and list(tmp_path.glob("features.h5.corrupt-*")) == []
    assert storage.list_features(h5) == names


def test_clear_open_mark_leaves_other_files_unchanged(tmp_path):
    plain = tmp_path / "plain.h5"
    plain.write_bytes(b"\x89HDF\r\n\x1a\n\x00" + b"\0" * 64)  # superblock version 0: no mark
    bad_sum = tmp_path / "bad.h5"
    bad_sum.write_bytes(b"\x89HDF\r\n\x1a\n\x03\x08\x08\x01" + b"\0" * 40)  # marked, wrong checksum
    for path in (plain, bad_sum):
        before = path.read_bytes()
        assert not storage.clear_open_mark(path) and path.read_bytes() == before


def test_config_validation():
    with pytest.raises(ValueError, match="max_keypoints"):
        extract.ExtractConfig(max_keypoints=0)
    with pytest.raises(ValueError, match="max_image_size"):
        extract.ExtractConfig(max_image_size=8)


def test_file_locked_by_another_process_is_an_error_not_corruption(tmp_path):
    """HDF5 refuses a file another process holds open for writing: that file is busy, not
    damaged, and must never be moved aside (the other run would lose its work)."""
    import subprocess
    import sys

    names = _images(tmp_path, 2)
    h5 = tmp_path / "features.h5"
    extract.run(tmp_path, names, h5, CONFIG)
    code = f"import h5py, sys; f = h5py.File({str(h5)!r}, 'a'); print('open', flush=True); sys.stdin.readline(); f.close()"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(storage.StorageLockedError, match="in use by another process"):
            extract.run(tmp_path, names, h5, CONFIG)
    finally:
        holder.communicate("close\n", timeout=60)  # the other process finishes its work and closes the file
    assert list(tmp_path.glob("features.h5.corrupt-*")) == [] and storage.list_features(h5) == ["0.png", "1.png"]
    # a writer with HDF5's file locking off (common on network file systems) leaves no lock, only the
    # file's "open for write" mark: still in use, not corrupt
    holder = subprocess.Popen([sys.executable, "-c", code.replace("'a')", "'a', locking=False)")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(storage.StorageLockedError, match="in use by another process"):
            extract.run(tmp_path, names, h5, CONFIG)
    finally:
        holder.communicate("close\n", timeout=60)
    assert list(tmp_path.glob("features.h5.corrupt-*")) == [] and storage.list_features(h5) == ["0.png", "1.png"]
