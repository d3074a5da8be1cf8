"""Tests of patchmatch.pairs: strategies, hloc pairs files, errors."""

from __future__ import annotations

import pytest

from patchmatch.pairs import (
    exhaustive_pairs,
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
    with pytest.raises(ValueError, match="whitespace"):
        write_pairs_file(tmp_path / "w.txt", [("a b.jpg", "c.jpg")])


def test_strategy_strings():
    assert parse_strategy("exhaustive") == ("exhaustive", None)
    assert parse_strategy("sequential:3") == ("sequential", 3)
    assert parse_strategy("file:/x/p.txt") == ("file", "/x/p.txt")
    assert make_pairs("sequential:1", NAMES) == [
        ("a.jpg", "b.jpg"), ("b.jpg", "d.jpg"), ("d.jpg", "sub/c.png")
    ]  # fmt: skip
    for bad in ["retrieval", "sequential:x", "sequential:0", "exhaustive:2", "file:", ""]:
        with pytest.raises(ValueError, match="pairs strategy"):
            parse_strategy(bad)
