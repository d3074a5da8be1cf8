"""partial_folder: an output appears whole or not at all."""

from __future__ import annotations

import pytest

from patchmatch.datasets.folders import partial_folder


def test_partial_folder_replaces_the_output_only_when_the_block_succeeds(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with partial_folder(out) as tmp:
            tmp.mkdir()
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert (out / "old.txt").read_text() == "old" and not (tmp_path / "set.partial").exists()
    (tmp_path / "set.partial").mkdir()  # a leftover of a killed run is emptied first
    (tmp_path / "set.partial" / "stale.txt").write_text("stale")
    with partial_folder(out) as tmp:
        assert not tmp.exists()
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"] and not (tmp_path / "set.partial").exists()
