"""Stage 2: image pairs → pairs.json."""

from __future__ import annotations

import logging

import pytest

from patchmatch.stages import select_pairs


def test_exhaustive_and_sequential_pairs_round_trip(tmp_path):
    names = ["a b.jpg", "c.jpg", "d.jpg"]  # a name with a space survives the file
    path = select_pairs.run(tmp_path / "f.h5", names, tmp_path / "pairs.json")
    assert path == tmp_path / "pairs.json"
    assert select_pairs.read(path) == [("a b.jpg", "c.jpg"), ("a b.jpg", "d.jpg"), ("c.jpg", "d.jpg")]
    report: dict = {}
    select_pairs.run(tmp_path / "f.h5", names, path, "sequential:1", report=report)  # rewritten on every run
    assert select_pairs.read(path) == [("a b.jpg", "c.jpg"), ("c.jpg", "d.jpg")]
    select_pairs.run(tmp_path / "f.h5", names, path, "auto", report=report)
    assert report["pairs_strategy"] == "exhaustive" and len(select_pairs.read(path)) == 3  # what auto chose


def test_pairs_file_drops_left_out_images_and_refuses_unknown_ones(tmp_path, caplog):
    listed = tmp_path / "listed.txt"
    listed.write_text("a.jpg b.jpg\nb.jpg broken.jpg\n")
    with caplog.at_level(logging.WARNING):
        path = select_pairs.run(tmp_path / "f.h5", ["a.jpg", "b.jpg"], tmp_path / "p.json", f"file:{listed}", ["broken.jpg"])
    assert select_pairs.read(path) == [("a.jpg", "b.jpg")] and "1 of the 2 pairs" in caplog.text
    with pytest.raises(ValueError, match="broken.jpg"):
        select_pairs.run(tmp_path / "f.h5", ["a.jpg", "b.jpg"], tmp_path / "p.json", f"file:{listed}")
