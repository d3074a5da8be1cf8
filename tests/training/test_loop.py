"""Training loop on a small real pair set: loss goes down, resume reproduces the same run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchmatch.models import build_model, load_checkpoint
from patchmatch.training.data import PairSetError, load_pair_data
from patchmatch.training.loop import TrainConfig, TrainingStateError, evaluate_pairs, state_path, train
from patchmatch.training.losses import hinge_loss


def _cfg(**kw):
    base = dict(model="2ch", epochs=2, steps_per_epoch=3, batch_size=16, val_pairs=64, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def test_pair_data_batches_are_balanced(pairset):
    data = load_pair_data([pairset])
    assert data.patches.dtype == np.uint8 and data.patches.shape[1:] == (64, 64)
    pairs, labels = data.sample_batch(32, np.random.default_rng(0), hard_fraction=0.5)
    assert pairs.shape == (32, 2) and labels.sum() == 16
    t = data.track[pairs]
    assert (t[labels == 1, 0] == t[labels == 1, 1]).all() and (t[labels == 1] >= 0).all()
    neg = t[labels == 0]
    assert not ((neg[:, 0] == neg[:, 1]) & (neg[:, 0] >= 0)).any()
    with pytest.raises(ValueError, match="even"):
        data.sample_batch(15, np.random.default_rng(0))
    with pytest.raises(PairSetError, match="not a directory"):
        load_pair_data([pairset.with_name("missing")])


def test_training_decreases_loss(pairset, tmp_path):
    torch.set_num_threads(2)
    cfg = _cfg(epochs=1, steps_per_epoch=12, batch_size=32, augment=False, lr=5e-4)
    data = load_pair_data([pairset])
    pairs, labels = data.sample_batch(128, np.random.default_rng(99))

    def loss_of(model):
        s = evaluate_pairs(model, data.patches, pairs)
        return hinge_loss(torch.from_numpy(s), torch.from_numpy(labels)).item()

    torch.manual_seed(cfg.seed)
    before = loss_of(build_model(cfg.model))  # the very initialisation train() starts from
    res = train(cfg, data, tmp_path / "m.pt", val=pairset)
    model, meta = load_checkpoint(res.checkpoint)
    after = loss_of(model)
    assert after < 0.8 * before, (before, after)
    assert meta["train_config"]["model"] == "2ch" and len(meta["history"]) == 1
    assert meta["magnification"] == 6.0  # the sets' (patchmatch.patches.MAGNIFICATION)
    rec = meta["history"][0]
    assert 0 <= rec["val_fpr95_random"] <= 1 and 0 <= rec["val_fpr95_hard"] <= 1 and rec["pairs_per_s"] > 0


@pytest.mark.parametrize("extra", [{}, {"jitter": "full", "mine_factor": 3}, {"ema_decay": 0.9}], ids=["paper", "jitter+mining", "ema"])
def test_resume_reproduces_the_same_run(pairset, tmp_path, extra):
    torch.set_num_threads(2)
    cfg = _cfg(**extra)
    straight = train(cfg, [pairset], tmp_path / "a.pt")
    first = train(cfg, [pairset], tmp_path / "b.pt", stop_after=1)
    assert len(first.history) == 1 and state_path(tmp_path / "b.pt").is_file()
    with pytest.raises(TrainingStateError, match="exists"):
        train(cfg, [pairset], tmp_path / "b.pt")
    with pytest.raises(TrainingStateError, match="another configuration"):
        train(_cfg(lr=0.1), [pairset], tmp_path / "b.pt", resume=True)
    resumed = train(cfg, [pairset], tmp_path / "b.pt", resume=True, half=True)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-5)
    ma, _ = load_checkpoint(straight.checkpoint)
    mb, _ = load_checkpoint(resumed.checkpoint)
    for (k, a), (_, b) in zip(ma.state_dict().items(), mb.state_dict().items()):
        torch.testing.assert_close(b, a.half().float(), rtol=0, atol=0, msg=k)  # b was saved in float16
    with pytest.raises(TrainingStateError, match="no training state"):
        train(cfg, [pairset], tmp_path / "c.pt", resume=True)


def test_time_budget_stops_between_epochs_and_resume_finishes(pairset, tmp_path):
    cfg = _cfg(epochs=3, steps_per_epoch=1, batch_size=8)
    part = train(cfg, [pairset], tmp_path / "t.pt", time_budget_s=1e-3)
    assert len(part.history) == 1  # the first epoch always runs
    done = train(cfg, [pairset], tmp_path / "t.pt", resume=True)
    assert [h["epoch"] for h in done.history] == [1, 2, 3]


def test_train_cli_runs_and_resumes(pairset, tmp_path):
    from patchmatch.cli import main

    out = tmp_path / "cli.pt"
    args = ["-q", "train", "--data", str(pairset), "--val", str(pairset), "--out", str(out), "--model", "2ch",
            "--epochs", "2", "--steps-per-epoch", "1", "--batch", "8", "--val-pairs", "32", "--threads", "2"]
    assert main(args + ["--stop-after", "1"]) == 0
    assert main(args) == 2  # output exists without --resume
    assert main([*args[:7], str(tmp_path), *args[8:]]) == 2  # a folder as --out
    assert main([*args[:9], "resnet", *args[10:]]) == 2  # an unknown model: one line, no traceback
    assert main([*args[:7], str(out / "x.pt"), *args[8:]]) == 2  # its folder is a file
    assert main(args + ["--resume", "--fp16"]) == 0
    model, meta = load_checkpoint(out)
    assert len(meta["history"]) == 2 and meta["command"].startswith("patchmatch ")
    assert next(iter(torch.load(out, weights_only=True)["state_dict"].values())).dtype == torch.float16


def test_interrupted_training_says_how_to_resume(pairset, tmp_path, monkeypatch, capsys):
    """Ctrl-C: the command exits 130 and names --resume (the state file of the last finished
    epoch), or says that no epoch had finished."""
    import patchmatch.training.loop as loop
    from patchmatch.cli import main

    out = tmp_path / "stop.pt"
    args = ["-q", "train", "--data", str(pairset), "--out", str(out), "--model", "2ch", "--epochs", "3",
            "--steps-per-epoch", "1", "--batch", "8", "--threads", "2"]  # fmt: skip
    real = loop.train

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", stopped)
    assert main(args) == 130
    assert "no epoch had finished: rerun the same command" in capsys.readouterr().err
    monkeypatch.setattr(loop, "train", real)
    assert main(args + ["--stop-after", "1"]) == 0
    out.unlink()
    monkeypatch.setattr(loop, "train", stopped)
    assert main(args) == 130
    assert f"rerun the same command with --resume to continue from {loop.state_path(out)}" in capsys.readouterr().err


def test_lr_factor_follows_cosine_over_steps_or_time():
    from patchmatch.training.loop import lr_factor

    steps = _cfg(epochs=2, steps_per_epoch=5, final_lr_fraction=0.1)
    assert lr_factor(steps, 0, 999.0) == pytest.approx(1.0)
    assert lr_factor(steps, 5, 0.0) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(steps, 10, 0.0) == pytest.approx(0.1) == lr_factor(steps, 50, 0.0)
    timed = _cfg(final_lr_fraction=0.1, schedule_minutes=2.0)
    assert lr_factor(timed, 10_000, 0.0) == pytest.approx(1.0)
    assert lr_factor(timed, 0, 60.0) == pytest.approx(0.55)
    assert lr_factor(timed, 0, 600.0) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="schedule_minutes"):
        _cfg(schedule_minutes=0.0)
    # one epoch of a 10-step schedule: the rates of the full schedule's first epoch
    early = _cfg(epochs=1, steps_per_epoch=5, final_lr_fraction=0.1, schedule_steps=10)
    assert [lr_factor(early, k, 0.0) for k in range(5)] == pytest.approx([lr_factor(steps, k, 0.0) for k in range(5)])
    with pytest.raises(ValueError, match="schedule_steps"):
        _cfg(schedule_steps=10, schedule_minutes=1.0)
    with pytest.raises(ValueError, match="schedule_steps"):
        _cfg(schedule_steps=0)


def test_mining_keeps_the_negatives_the_model_scores_highest(pairset):
    from patchmatch.training.loop import _mine_random_negatives

    data = load_pair_data([pairset])
    cfg = _cfg(mine_factor=4, hard_fraction=0.5)
    model = build_model("2ch").eval()
    pairs, labels = data.sample_batch(32, np.random.default_rng(3), 0.5)
    mined = _mine_random_negatives(model, data, pairs, labels, cfg, np.random.default_rng(4), torch.device("cpu"))
    np.testing.assert_array_equal(mined[:24], pairs[:24])  # positives and stored hard negatives kept
    t = data.track[mined[24:]]
    assert (t[:, 0] != t[:, 1]).all()  # still negatives
    # the kept 8 are the top 8 of the 32 drawn from the same generator state
    pool = data.draw_random_negatives(32, np.random.default_rng(4))
    pool_scores = evaluate_pairs(model, data.patches, pool)
    kept_scores = evaluate_pairs(model, data.patches, mined[24:])
    np.testing.assert_allclose(np.sort(kept_scores), np.sort(pool_scores)[-8:], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mine_factor"):
        _cfg(mine_factor=0)
    with pytest.raises(ValueError, match="jitter"):
        _cfg(jitter="strong")


def test_resume_accepts_a_state_from_before_new_options(pairset, tmp_path):
    """A state saved before a config field existed resumes when the field has its default value."""
    cfg = _cfg(epochs=2, steps_per_epoch=1, batch_size=8)
    train(cfg, [pairset], tmp_path / "o.pt", stop_after=1)
    spath = state_path(tmp_path / "o.pt")
    st = torch.load(spath, weights_only=True)
    del st["config"]["jitter"], st["config"]["mine_factor"], st["jitter_rng"]
    torch.save(st, spath)
    done = train(cfg, [pairset], tmp_path / "o.pt", resume=True)
    assert [h["epoch"] for h in done.history] == [1, 2]
    with pytest.raises(TrainingStateError, match="mine_factor"):
        train(_cfg(epochs=3, steps_per_epoch=1, batch_size=8, mine_factor=2), [pairset], tmp_path / "o.pt", resume=True)


def test_init_starts_from_a_checkpoint_and_rejects_another_model(pairset, tmp_path):
    torch.set_num_threads(2)
    data = load_pair_data([pairset])
    pairs, _ = data.sample_batch(64, np.random.default_rng(3))
    first = train(_cfg(epochs=1, steps_per_epoch=4, augment=False), data, tmp_path / "a.pt")
    start, _ = load_checkpoint(first.checkpoint)
    # lr so small that one step barely moves the weights: the fine-tuned model scores like its start
    tuned = train(_cfg(epochs=1, steps_per_epoch=1, lr=1e-9, init=str(first.checkpoint)), data, tmp_path / "b.pt")
    model, meta = load_checkpoint(tuned.checkpoint)
    np.testing.assert_allclose(evaluate_pairs(model, data.patches, pairs), evaluate_pairs(start, data.patches, pairs), atol=1e-4)
    assert meta["train_config"]["init"] == str(first.checkpoint)
    fresh = train(_cfg(epochs=1, steps_per_epoch=1, lr=1e-9), data, tmp_path / "c.pt")
    other, _ = load_checkpoint(fresh.checkpoint)
    assert not np.allclose(evaluate_pairs(other, data.patches, pairs), evaluate_pairs(start, data.patches, pairs), atol=1e-3)
    with pytest.raises(ValueError, match="not '2chdeep'"):
        train(_cfg(model="2chdeep", init=str(first.checkpoint)), data, tmp_path / "d.pt")
    with pytest.raises(ValueError, match="not a checkpoint file"):
        _cfg(init=str(tmp_path / "missing.pt"))
    # the same file under another spelling is the same configuration (resume compares resolved paths)
    assert _cfg(init=str(first.checkpoint)) == _cfg(init=str(tmp_path / "." / "a.pt"))
    part = train(_cfg(epochs=2, steps_per_epoch=1, init=str(first.checkpoint)), data, tmp_path / "e.pt", stop_after=1)
    assert len(part.history) == 1
    with pytest.raises(TrainingStateError, match="pass the same --init again"):
        train(_cfg(epochs=2, steps_per_epoch=1), data, tmp_path / "e.pt", resume=True)
    plain = train(_cfg(epochs=2, steps_per_epoch=1), data, tmp_path / "f.pt", stop_after=1)
    assert len(plain.history) == 1
    with pytest.raises(TrainingStateError, match="drop --init"):
        train(_cfg(epochs=2, steps_per_epoch=1, init=str(first.checkpoint)), data, tmp_path / "f.pt", resume=True)
    done = train(_cfg(epochs=2, steps_per_epoch=1, init=str(tmp_path / "." / "a.pt")), data, tmp_path / "e.pt", resume=True)
    assert len(done.history) == 2


def test_jitter_levels_move_patches_increasingly():
    from patchmatch.training.augment import jitter_patches
    from patchmatch.training.loop import JITTER_GEOMETRY

    x = torch.zeros(64, 2, 64, 64)
    x[:, :, 24:40, 24:40] = 255.0  # a bright square: any geometric change moves its border
    moved = {}
    for level in ("photometric", "mild", "full", "wide"):
        out = jitter_patches(x, torch.Generator().manual_seed(0), *JITTER_GEOMETRY[level], max_log_contrast=0.0,
                             max_log_gamma=0.0, noise_std=0.0)
        moved[level] = (out - x).abs().mean().item()
    assert moved["photometric"] < 1e-3 < moved["mild"] < moved["full"] < moved["wide"]
    with pytest.raises(ValueError, match="jitter must be one of"):
        _cfg(jitter="strong")


def test_ema_writes_the_moving_average_of_the_weights(pairset, tmp_path):
    """With ``ema_decay`` the checkpoint holds e_1 = w_1, e_t = d e_(t-1) + (1 - d) w_t over the live weights w_t."""
    torch.set_num_threads(2)
    cfg = _cfg(epochs=3, steps_per_epoch=1, batch_size=8, ema_decay=0.5)
    out = tmp_path / "e.pt"
    live = []
    for _ in range(3):  # one step per epoch, one epoch per call: the live weights after every step
        train(cfg, [pairset], out, resume=bool(live), stop_after=1)
        live.append(torch.load(state_path(out), weights_only=True)["model"])
    expected = dict(live[0])
    for w in live[1:]:
        expected = {k: 0.5 * expected[k] + 0.5 * w[k] for k in w}
    model, meta = load_checkpoint(out)
    assert meta["train_config"]["ema_decay"] == 0.5
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, expected[k], msg=k)
    assert not all(torch.equal(v, live[-1][k]) for k, v in model.state_dict().items())  # not the live weights
    with pytest.raises(ValueError, match="ema_decay"):
        _cfg(ema_decay=1.0)
    with pytest.raises(TrainingStateError, match="pass --ema 0.5 again"):
        train(_cfg(epochs=3, steps_per_epoch=1, batch_size=8), [pairset], out, resume=True)


def test_sets_of_different_magnifications_are_refused_by_name(pairset, tmp_path):
    import json
    import shutil

    wide = tmp_path / "wide"
    shutil.copytree(pairset, wide)
    summary = json.loads((wide / "summary.json").read_text())
    (wide / "summary.json").write_text(json.dumps({**summary, "magnification": 8.0}))
    with pytest.raises(ValueError, match=rf"different magnifications: {pairset} \(6\), {wide} \(8\)"):
        train(_cfg(epochs=1, steps_per_epoch=1), [pairset], tmp_path / "m.pt", val=wide)
    assert not (tmp_path / "m.pt").exists() and not state_path(tmp_path / "m.pt").exists()
    res = train(_cfg(epochs=1, steps_per_epoch=1), [wide], tmp_path / "w.pt", val=wide)
    assert load_checkpoint(res.checkpoint)[1]["magnification"] == 8.0
    # a run interrupted at one magnification does not resume on sets re-cut at another
    cfg = _cfg(epochs=2, steps_per_epoch=1)
    train(cfg, [wide], tmp_path / "r.pt", val=wide, stop_after=1)
    (wide / "summary.json").write_text(json.dumps({**summary, "magnification": 10.0}))
    with pytest.raises(TrainingStateError, match="magnification 8, the sets are now at 10"):
        train(cfg, [wide], tmp_path / "r.pt", val=wide, resume=True)
