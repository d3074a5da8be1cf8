"""Self-distillation of test-time augmentation (``TrainConfig.distill``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchmatch.models import build_model, load_checkpoint, save_checkpoint
from patchmatch.scoring import AVERAGED_TTA, TTA, PatchScorer
from patchmatch.training.data import load_eval_pairs
from patchmatch.training.distill import tta_mean_scores, tta_views
from patchmatch.training.loop import TrainConfig, train


def test_views_and_mean_scores_agree_with_the_scorer():
    """Training's teacher averages exactly what ``PatchScorer(tta=...)`` averages."""
    rng = np.random.default_rng(0)
    p0 = rng.integers(0, 256, (10, 64, 64), dtype=np.uint8)
    p1 = rng.integers(0, 256, (10, 64, 64), dtype=np.uint8)
    torch.manual_seed(0)
    model = build_model("2ch2stream").eval()
    x = torch.from_numpy(np.stack([p0, p1], 1)).float()
    for tta in AVERAGED_TTA:
        passes = TTA[tta]
        views = list(tta_views(x, tta))
        assert len(views) == passes and torch.equal(views[0], x)
        assert len({v.numpy().tobytes() for v in views}) == passes  # all different
        expected = PatchScorer(model, device="cpu", tta=tta).score(p0, p1)
        np.testing.assert_allclose(tta_mean_scores(model, x, tta).numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="tta"):
        list(tta_views(x, "rot45"))


def test_distillation_pulls_the_network_towards_the_teachers_average(pairset, tmp_path):
    torch.set_num_threads(2)
    torch.manual_seed(3)
    init = save_checkpoint(tmp_path / "init.pt", build_model("2ch"))
    teacher, _ = load_checkpoint(init)
    teacher.eval()
    patches, pairs, _ = load_eval_pairs(pairset, "random")
    x = torch.from_numpy(np.stack([patches[pairs[:300, 0]], patches[pairs[:300, 1]]], 1)).float()
    target = tta_mean_scores(teacher, x, "dihedral")

    def gap(path):
        model, _ = load_checkpoint(path)
        with torch.no_grad():
            return float(((model.eval()(x) - target) ** 2).mean())

    cfg = dict(model="2ch", epochs=1, steps_per_epoch=30, batch_size=32, lr=1e-3, seed=0, augment=True, init=str(init))
    plain = train(TrainConfig(**cfg), [pairset], tmp_path / "plain.pt").checkpoint
    distilled = train(TrainConfig(**cfg, distill="dihedral", distill_weight=100.0), [pairset], tmp_path / "d.pt").checkpoint
    assert gap(distilled) < 0.5 * gap(init) and gap(distilled) < 0.5 * gap(plain)
    assert load_checkpoint(distilled)[1]["train_config"]["distill"] == "dihedral"


def test_distillation_options_are_checked(tmp_path):
    init = save_checkpoint(tmp_path / "i.pt", build_model("siam"))
    with pytest.raises(ValueError, match="needs init"):
        TrainConfig(model="2ch", distill="swap")
    with pytest.raises(ValueError, match="distill"):
        TrainConfig(model="2ch", distill="mirror", init=str(init))
    with pytest.raises(ValueError, match="hinge loss"):
        TrainConfig(model="siam", distill="swap", init=str(init), loss="contrastive")
    for bad in (0.0, -5.0, float("nan"), float("inf")):  # inf would train to NaN weights
        with pytest.raises(ValueError, match="finite number > 0"):
            TrainConfig(model="siam", distill="swap", init=str(init), distill_weight=bad)
        with pytest.raises(ValueError, match="finite number > 0"):
            TrainConfig(model="siam", distill_weight=bad)
