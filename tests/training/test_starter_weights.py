"""The shipped starter weights: load, provenance, and better than chance on a test scene."""

from __future__ import annotations

import numpy as np
import pytest

from patchmatch.evaluation.fpr95 import fpr95
from patchmatch.models import load_checkpoint
from patchmatch.scoring import shipped_weights_path
from patchmatch.training.data import load_eval_pairs

TEST_SCENES = ("entry-P10", "castle-P19", "Herz-Jesus-P8", "temple-ring")


def _weights():
    path = shipped_weights_path()
    if not path.is_file():
        pytest.skip(f"{path} not shipped")
    return path


def test_shipped_weights_load_in_float16_and_never_saw_test_scenes():
    import torch

    path = _weights()
    assert path.stat().st_size < 8_000_000
    model, meta = load_checkpoint(path)
    assert type(model).__name__ == "TwoChannel2Stream"
    raw = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in raw["state_dict"].values() if v.is_floating_point())
    used = " ".join(meta["data"] + meta["val"])
    assert "castle-P30" in used and not any(s in used for s in TEST_SCENES)
    assert meta["history"] and meta["train_config"]["model"] == "2ch2stream"


def test_shipped_weights_separate_entry_pairs(pairset):
    from patchmatch.scoring import PatchScorer

    _weights()
    scorer = PatchScorer.load(None, device="cpu")
    res = {}
    for kind in ("random", "hard"):
        patches, p, labels = load_eval_pairs(pairset, kind)
        p, labels = p[:1200], labels[:1200]
        s = scorer.score(patches[p[:, 0]], patches[p[:, 1]])
        res[kind] = fpr95(s, labels)
    # Far from chance (0.95) on a scene it never saw; hard negatives are harder.
    assert res["random"] < 0.15 and res["hard"] < 0.9, res
