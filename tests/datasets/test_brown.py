import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import shared_path
from patchmatch.datasets.brown import (
    BrownDataset,
    BrownFormatError,
    bitmap_to_patches,
    patches_to_bitmap,
    read_patches,
    write_brown,
)


def test_read_real_notredame_bitmaps():
    root = shared_path("brown", "notredame-sample")
    p = read_patches(root)
    assert p.shape == (16 * 256, 64, 64) and p.dtype == np.uint8
    first = cv2.imread(str(root / "patches0000.bmp"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(p[17], first[64:128, 64:128])  # row 1, column 1 of the grid
    assert read_patches(root, count=300).shape == (300, 64, 64)
    with pytest.raises(BrownFormatError, match="hold only"):
        read_patches(root, count=16 * 256 + 1)


def test_dataset_on_real_bitmaps_with_written_labels(tmp_path):
    """Real Notre Dame bytes + label files written here: memmap cache, pairs, labels."""
    src = shared_path("brown", "notredame-sample")
    root = tmp_path / "notredame"
    root.mkdir()
    for f in sorted(src.glob("patches*.bmp"))[:3]:
        shutil.copy(f, root / f.name)
    n = 2 * 256 + 100  # last file partly used
    point_ids = np.arange(n) // 3
    np.savetxt(root / "info.txt", np.stack([point_ids, np.zeros(n, int)], 1), fmt="%d")
    pairs = np.array([[0, 0, 0, 2, 0, 0], [0, 0, 0, 3, 1, 0], [600, 200, 0, 601, 200, 0]])
    np.savetxt(root / "m50_3_3_0.txt", pairs, fmt="%d")
    ds = BrownDataset(root, cache_dir=tmp_path / "cache")
    assert len(ds) == n and isinstance(ds.patches, np.memmap)
    np.testing.assert_array_equal(ds.patches[:], read_patches(root, n))
    pr = ds.pairs("m50_3_3_0.txt")
    assert pr.index.tolist() == [[0, 2], [0, 3], [600, 601]] and pr.labels.tolist() == [True, False, True]
    again = BrownDataset(root, cache_dir=tmp_path / "cache")  # second open hits the cache
    assert again.patches.filename == ds.patches.filename
    np.savetxt(root / "m50_bad.txt", [[0, 5, 0, 1, 0, 0]], fmt="%d")
    with pytest.raises(BrownFormatError, match="disagree"):
        ds.pairs("m50_bad.txt")


def test_write_read_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (300, 64, 64), dtype=np.uint8)
    ids = np.repeat(np.arange(150), 2)
    write_brown(tmp_path / "set", patches, ids, pairs={"m50_2_2_0.txt": np.array([[0, 1], [0, 2]])})
    ds = BrownDataset(tmp_path / "set")
    np.testing.assert_array_equal(ds.patches, patches)
    np.testing.assert_array_equal(ds.point_ids, ids)
    assert ds.pairs("m50_2_2_0.txt").labels.tolist() == [True, False]
    with pytest.raises(FileExistsError, match="already holds"):
        write_brown(tmp_path / "set", patches, ids)
    np.testing.assert_array_equal(bitmap_to_patches(patches_to_bitmap(patches[:256])), patches[:256])


def test_bad_folders_name_the_file(tmp_path):
    patches = np.zeros((10, 64, 64), np.uint8)
    root = write_brown(tmp_path / "s", patches, np.arange(10))
    (root / "info.txt").unlink()
    with pytest.raises(BrownFormatError, match="info.txt: missing"):
        BrownDataset(root)
    np.savetxt(root / "info.txt", np.zeros((300, 2)), fmt="%d")
    with pytest.raises(BrownFormatError, match="hold only 256"):
        BrownDataset(root)
    np.savetxt(root / "info.txt", np.zeros((10, 2)), fmt="%d")
    cv2.imwrite(str(root / "patches0000.bmp"), np.zeros((512, 1024), np.uint8))
    with pytest.raises(BrownFormatError, match="patches0000.bmp: expected a 1024×1024"):
        BrownDataset(root, cache_dir=tmp_path / "c")
    (root / "patches0000.bmp").write_bytes(b"junk")
    with pytest.raises(BrownFormatError, match="not a readable bitmap"):
        read_patches(root)
    with pytest.raises(BrownFormatError, match="not a directory"):
        BrownDataset(tmp_path / "nope")
    np.savetxt(root / "interest.txt", np.zeros((4, 5)))
    with pytest.raises(BrownFormatError, match="interest.txt: 4 lines"):
        BrownDataset(root)


def test_label_files_must_hold_integers_and_pairs(tmp_path):
    root = write_brown(tmp_path / "s", np.zeros((10, 64, 64), np.uint8), np.arange(10) // 2,
                       pairs={"m50_2_2_0.txt": np.array([[0, 1], [0, 2]])})  # fmt: skip
    ds = BrownDataset(root)
    assert ds.pairs("m50_2_2_0.txt").labels.tolist() == [True, False]
    (root / "m50_empty.txt").write_text("")
    with pytest.raises(BrownFormatError, match="m50_empty.txt: empty"):
        ds.pairs("m50_empty.txt")
    (root / "m50_frac.txt").write_text("0 0 0 1.5 0 0\n")
    with pytest.raises(BrownFormatError, match="m50_frac.txt: line 1 holds a value that is not an integer"):
        ds.pairs("m50_frac.txt")
    (root / "info.txt").write_text("0 0\n" * 9 + "1.5 0\n")
    with pytest.raises(BrownFormatError, match="info.txt: line 10"):
        BrownDataset(root)


def test_two_writers_decoding_one_cache_at_once(tmp_path, monkeypatch):
    """A second process decoding the same cache while the first is at it (two training runs on one
    set) must not break either: each writes its own temporary file."""
    import patchmatch.datasets.brown as brown

    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (300, 64, 64), dtype=np.uint8)
    root = write_brown(tmp_path / "set", patches, np.repeat(np.arange(150), 2))
    real = brown.bitmap_to_patches
    nested = []

    def other_writer_meanwhile(bitmap):
        if not nested:  # the other writer decodes and renames its cache into place first
            nested.append(None)
            nested[0] = BrownDataset(root, cache_dir=tmp_path / "cache").patches.filename
        return real(bitmap)

    monkeypatch.setattr(brown, "bitmap_to_patches", other_writer_meanwhile)
    ds = BrownDataset(root, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(ds.patches, patches)
    assert nested == [ds.patches.filename]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(ds.patches.filename).name]  # no temporary file left
