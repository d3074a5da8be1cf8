"""Tests of patchmatch.pairs: strategies, hloc pairs files, errors."""

from __future__ import annotations

import numpy as np
import pytest

from patchmatch.pairs import (
    exhaustive_pairs,
    retrieval_pairs,
    make_pairs,
    parse_strategy,
    read_pairs_file,
    sequential_pairs,
    write_pairs_file,
)

NAMES = ["b.jpg", "a.jpg", "sub/c.png", "d.jpg"]


def test_exhaustive_counts_and_order():
    pairs = exhaustive_pairs(NAMES)
    assert len(pairs) == 4 * 3 // 2
    assert pairs == sorted(pairs)
    assert all(a < b for a, b in pairs)
    assert ("a.jpg", "sub/c.png") in pairs
    assert exhaustive_pairs(["x"]) == []


def test_sequential_window():
    names = [f"{i:04d}.jpg" for i in range(6)]
    pairs = sequential_pairs(names, 2)
    # each image with its 2 successors: 5 + 4 pairs minus the 2 that run off the end
    assert pairs == [
        ("0000.jpg", "0001.jpg"), ("0000.jpg", "0002.jpg"),
        ("0001.jpg", "0002.jpg"), ("0001.jpg", "0003.jpg"),
        ("0002.jpg", "0003.jpg"), ("0002.jpg", "0004.jpg"),
        ("0003.jpg", "0004.jpg"), ("0003.jpg", "0005.jpg"),
        ("0004.jpg", "0005.jpg"),
    ]  # fmt: skip
    assert sequential_pairs(names, 100) == exhaustive_pairs(names)
    with pytest.raises(ValueError, match=">= 1"):
        sequential_pairs(names, 0)


def test_duplicate_names_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        exhaustive_pairs(["a", "a"])


def test_pairs_file_round_trip_and_canonical(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("# hloc pairs\nb.jpg a.jpg\n\na.jpg b.jpg\nsub/c.png d.jpg\nd.jpg d.jpg\n")
    pairs = read_pairs_file(path, NAMES)
    assert pairs == [("a.jpg", "b.jpg"), ("d.jpg", "sub/c.png")]
    out = write_pairs_file(tmp_path / "out" / "p.txt", pairs)
    assert read_pairs_file(out) == pairs
    assert make_pairs(f"file:{path}", NAMES) == pairs


def test_pairs_file_errors(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("a.jpg b.jpg\na.jpg missing.jpg\n")
    with pytest.raises(ValueError, match=r"pairs.txt:2: unknown image name\(s\) \['missing.jpg'\]"):
        read_pairs_file(path, NAMES)
    path.write_text("a.jpg b.jpg d.jpg\n")
    with pytest.raises(ValueError, match="pairs.txt:1: expected"):
        read_pairs_file(path)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_pairs_file(tmp_path / "nope.txt")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        read_pairs_file(tmp_path)
    path.write_text("# only self pairs\na.jpg a.jpg\n\n")
    with pytest.raises(ValueError, match="no pair of distinct images"):
        read_pairs_file(path, NAMES)
    path.write_text("\ufeffa.jpg b.jpg\n", encoding="utf-8")  # a byte-order mark
    assert read_pairs_file(path, NAMES) == [("a.jpg", "b.jpg")]
    path.write_text("a.jpg " * 10_000 + "\n")
    with pytest.raises(ValueError) as long_line:
        read_pairs_file(path, NAMES)
    assert len(str(long_line.value)) < 400
    path.write_bytes(bytes(range(128, 256)))
    with pytest.raises(ValueError, match=r"pairs file .*pairs.txt: not UTF-8 text"):
        read_pairs_file(path, NAMES)
    with pytest.raises(ValueError, match="whitespace"):
        write_pairs_file(tmp_path / "w.txt", [("a b.jpg", "c.jpg")])


def test_strategy_strings():
    assert parse_strategy("exhaustive") == ("exhaustive", None)
    assert parse_strategy("sequential:3") == ("sequential", 3)
    assert parse_strategy("file:/x/p.txt") == ("file", "/x/p.txt")
    assert make_pairs("sequential:1", NAMES) == [
        ("a.jpg", "b.jpg"), ("b.jpg", "d.jpg"), ("d.jpg", "sub/c.png")
    ]  # fmt: skip
    assert parse_strategy("retrieval:5") == ("retrieval", 5)
    with pytest.raises(ValueError, match="needs the images' descriptors"):
        make_pairs("retrieval:2", NAMES)
    for bad in ["retrieval", "retrieval:0", "retrieval:x", "sequential:x", "sequential:0", "exhaustive:2", "file:", ""]:
        with pytest.raises(ValueError, match="pairs strategy"):
            parse_strategy(bad)


def test_retrieval_pairs_images_with_their_own_kind():
    """Three groups of images sharing descriptor statistics: VLAD pairs each image within its group."""
    import numpy as np

    from patchmatch.pairs import retrieval_pairs, vlad

    rng = np.random.default_rng(0)
    protos = [rng.random((300, 128)).astype(np.float32) * 255 for _ in range(3)]
    desc = {}
    for g in range(3):
        for k in range(4):
            keep = rng.random(300) < 0.7
            desc[f"g{g}_{k}.jpg"] = np.clip(protos[g][keep] + rng.normal(0, 8, (keep.sum(), 128)), 0, 255).astype(np.float32)
    desc["empty.jpg"] = np.zeros((0, 128), np.float32)
    g = vlad(desc, num_words=16)
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for n, v in g.items() if n != "empty.jpg")
    assert not g["empty.jpg"].any()
    pairs = retrieval_pairs(sorted(desc), desc, 3)
    assert all(a[:2] == b[:2] for a, b in pairs), pairs  # the image without keypoints is in no pair
    assert len(pairs) == 3 * 6  # each group of 4 fully connected
    none = {n: np.zeros((0, 128), np.float32) for n in ("a.jpg", "b.jpg", "c.jpg")}
    assert retrieval_pairs(sorted(none), none, 1) == exhaustive_pairs(sorted(none))
    with pytest.raises(ValueError, match="no descriptors for images"):
        retrieval_pairs(["x.jpg", "g0_0.jpg"], desc, 2)


def test_retrieval_on_a_real_sequence(entry_images):
    """entry-P10 is a sequence along a facade: retrieved partners are mostly neighbours in it."""
    from patchmatch.features import detect
    from patchmatch.images import read_gray
    from patchmatch.pairs import retrieval_pairs

    desc = {}
    for p in entry_images:
        image, _ = read_gray(p, 640)
        desc[p.name] = detect(image, max_keypoints=800).descriptors
    pairs = retrieval_pairs(sorted(desc), desc, 2)
    gaps = [abs(int(a[:4]) - int(b[:4])) for a, b in pairs]
    assert len(pairs) >= 10 and sum(g <= 2 for g in gaps) >= 0.8 * len(gaps), sorted(zip(gaps, pairs))


def test_auto_is_exhaustive_up_to_a_size_then_retrieval(caplog):
    import logging

    from patchmatch import pairs as pairs_module

    assert parse_strategy("auto") == ("auto", None)
    limit = pairs_module.AUTO_MAX_EXHAUSTIVE
    assert pairs_module.resolve_strategy("auto", limit) == "exhaustive"
    assert pairs_module.resolve_strategy("sequential:3", 10 * limit) == "sequential:3"
    with caplog.at_level(logging.INFO, logger="patchmatch.pairs"):
        assert pairs_module.resolve_strategy("auto", limit + 1) == f"retrieval:{pairs_module.AUTO_NEIGHBORS}"
    assert f"{limit + 1} images" in caplog.text and "retrieval" in caplog.text
    assert make_pairs("auto", NAMES) == make_pairs("exhaustive", NAMES)


def test_retrieval_reads_each_image_on_demand():
    """Retrieval takes any mapping and asks it for one image at a time: a collection's
    descriptors streamed from disk give the pairs a dict gives."""
    from collections.abc import Mapping

    rng = np.random.default_rng(3)
    descriptors = {f"{i}.png": rng.random((50 + 10 * i, 128)).astype(np.float32) for i in range(12)}

    class Counted(Mapping):
        reads = 0

        def __getitem__(self, key):
            Counted.reads += 1
            return descriptors[key].copy()

        def __iter__(self):
            return iter(descriptors)

        def __len__(self):
            return len(descriptors)

    assert retrieval_pairs(sorted(descriptors), Counted(), 3) == retrieval_pairs(sorted(descriptors), descriptors, 3)
    assert Counted.reads >= len(descriptors)
