import copy

import numpy as np
import pytest
import torch

from patchmatch.models import build_model, save_checkpoint
from patchmatch.scoring import TTA, PatchScorer


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(0)
    return PatchScorer(build_model("2ch2stream"), device="cpu", batch_size=64)


def test_score_pairs_equals_direct_forward(scorer):
    rng = np.random.default_rng(0)
    p0 = rng.integers(0, 256, (30, 64, 64), dtype=np.uint8)
    p1 = rng.integers(0, 256, (20, 64, 64), dtype=np.uint8)
    pairs = np.stack([rng.integers(0, 30, 150), rng.integers(0, 20, 150)], 1)
    s = scorer.score_pairs(p0, p1, pairs)
    x = torch.from_numpy(np.stack([p0[pairs[:, 0]], p1[pairs[:, 1]]], 1)).float()
    with torch.no_grad():
        ref = scorer.model(x).numpy()
    np.testing.assert_allclose(s, ref, atol=1e-4, rtol=1e-4)
    assert s.dtype == np.float32
    scorer.batch_size = 7  # independent of the batch size
    np.testing.assert_allclose(scorer.score_pairs(p0, p1, pairs), s, atol=1e-4, rtol=1e-4)
    scorer.batch_size = 64
    np.testing.assert_allclose(scorer.score(p0[:20], p1), scorer.score_pairs(p0, p1, np.stack([np.arange(20)] * 2, 1)), atol=1e-5)


def test_bad_scorer_arguments():
    model = build_model("2ch")
    for bad in (0, -1, 2.5, "8", True):
        with pytest.raises(ValueError, match="batch_size"):
            PatchScorer(model, device="cpu", batch_size=bad)
    with pytest.raises(ValueError, match="precision"):
        PatchScorer(model, device="cpu", precision="int4")
    for removed in ("backend", "winograd", "compile"):  # one inference path per device and precision: no engine options
        with pytest.raises(TypeError, match=removed):
            PatchScorer(model, device="cpu", **{removed: "torch"})
    scorer = PatchScorer(model, device="cpu")
    assert scorer.backend in ("onnxruntime", "torch")
    with pytest.raises(AttributeError):
        scorer.backend = "torch"  # read-only: it reports what computes


def test_empty_and_bad_input(scorer):
    p = np.zeros((3, 64, 64), np.uint8)
    assert scorer.score(p[:0], p[:0]).shape == (0,)
    assert scorer.score_pairs(p, p, np.zeros((0, 2), np.int64)).shape == (0,)
    with pytest.raises(ValueError, match=r"\(M, 2\)"):
        scorer.score_pairs(p, p, np.zeros((0, 3), np.int64))
    with pytest.raises(ValueError, match="uint8"):
        scorer.score(p.astype(np.float32), p)
    with pytest.raises(ValueError, match="same length"):
        scorer.score(p, p[:2])
    with pytest.raises(ValueError, match="out of range"):
        scorer.score_pairs(p, p, np.array([[0, 3]]))
    with pytest.raises(ValueError, match=r"\(N, 64, 64\)"):
        scorer.score(np.zeros((3, 32, 32), np.uint8), np.zeros((3, 32, 32), np.uint8))


def test_siamese_scorer_embeds_once(tmp_path):
    model = build_model("siam")
    sc = PatchScorer(model, device="cpu", batch_size=5)
    assert sc.is_siamese
    rng = np.random.default_rng(1)
    p0 = rng.integers(0, 256, (8, 64, 64), dtype=np.uint8)
    pairs = np.array([[0, 1], [3, 3], [7, 2]])
    x = torch.from_numpy(np.stack([p0[pairs[:, 0]], p0[pairs[:, 1]]], 1)).float()
    with torch.no_grad():
        np.testing.assert_allclose(sc.score_pairs(p0, p0, pairs), model.eval()(x).numpy(), atol=1e-4)


def test_load_from_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", build_model("2ch"), {"note": "x"})
    sc = PatchScorer.load(path, device="cpu")
    assert sc.meta["note"] == "x" and sc.device.type == "cpu"
    with pytest.raises(ValueError, match="CUDA"):
        if not torch.cuda.is_available():
            PatchScorer.load(path, device="cuda")
        else:
            raise ValueError("CUDA present")


def test_shipped_weights_load():
    from patchmatch.scoring import shipped_weights_path

    try:
        shipped_weights_path()
    except FileNotFoundError:
        pytest.skip("shipped weights not trained yet")
    sc = PatchScorer.load(precision="fp32")
    assert sc.meta and sum(p.numel() for p in sc.model.parameters()) == 2_353_153
    # the int8 model of the shipped weights ships too, and "auto" uses it on x86 CPUs
    if "x86" in torch.backends.quantized.supported_engines:
        auto = PatchScorer.load(device="cpu")
        assert auto.precision == "int8" and auto.activation_bits == 7 and "calibration" in auto.meta["int8"]


def test_auto_precision_choice(tmp_path):
    """Without an int8 file "auto" is fp32 on every CPU (bf16 only when asked for), fp16 on a GPU."""
    from patchmatch.device import auto_precision

    assert auto_precision(torch.device("cpu")) == "fp32" and auto_precision(torch.device("cuda")) == "fp16"
    path = save_checkpoint(tmp_path / "c.pt", build_model("2ch"))
    assert PatchScorer.load(path, device="cpu").precision == "fp32"
    assert PatchScorer.load(path, device="cpu", precision="bf16").precision == "bf16"


def test_magnification_comes_from_the_checkpoint(tmp_path):
    from patchmatch.patches import MAGNIFICATION
    from patchmatch.scoring import describe_scorer

    plain = PatchScorer.load(save_checkpoint(tmp_path / "a.pt", build_model("2ch"), {}), device="cpu")
    wide = PatchScorer.load(save_checkpoint(tmp_path / "b.pt", build_model("2ch"), {"magnification": 8.0}), device="cpu")
    assert plain.magnification == MAGNIFICATION == 6.0 and wide.magnification == 8.0
    assert describe_scorer(wide).endswith("patches at magnification 8")
    bad = PatchScorer.load(save_checkpoint(tmp_path / "c.pt", build_model("2ch"), {"magnification": -3}), device="cpu")
    with pytest.raises(ValueError, match=r"c\.pt: metadata: magnification must be a number in \[1, 32\].*got -3"):
        bad.magnification


def test_test_time_augmentation(scorer):
    """tta averages the network over the pair's transforms: the mean of the transformed pairs' plain scores,
    invariant to those transforms; other values are refused."""
    rng = np.random.default_rng(2)
    p0 = rng.integers(0, 256, (12, 64, 64), dtype=np.uint8)
    p1 = rng.integers(0, 256, (9, 64, 64), dtype=np.uint8)
    pairs = np.stack([rng.integers(0, 12, 40), rng.integers(0, 9, 40)], 1)
    model = scorer.model
    plain = PatchScorer(model, device="cpu")

    def transformed(k, mirror):
        a, b = np.rot90(p0, k, axes=(1, 2)), np.rot90(p1, k, axes=(1, 2))
        if mirror:
            a, b = a[:, :, ::-1], b[:, :, ::-1]
        return np.ascontiguousarray(a), np.ascontiguousarray(b)

    expected = {
        "swap": (plain.score_pairs(p0, p1, pairs) + plain.score_pairs(p1, p0, pairs[:, ::-1])) / 2,
        "rot90": np.mean([plain.score_pairs(*transformed(k, False), pairs) for k in range(4)], 0),
        "dihedral": np.mean([plain.score_pairs(*transformed(k, m), pairs) for k in range(4) for m in (False, True)], 0),
    }
    for tta, ref in expected.items():
        sc = PatchScorer(model, device="cpu", batch_size=16, tta=tta)
        s = sc.score_pairs(p0, p1, pairs)
        assert s.dtype == np.float32 and s.shape == (40,)
        np.testing.assert_allclose(s, ref, atol=1e-5)
        assert not np.allclose(s, plain.score_pairs(p0, p1, pairs), atol=1e-3)  # an untrained network is not invariant
    swap = PatchScorer(model, device="cpu", tta="swap")
    np.testing.assert_allclose(swap.score_pairs(p1, p0, pairs[:, ::-1]), swap.score_pairs(p0, p1, pairs), atol=1e-5)
    dihedral = PatchScorer(model, device="cpu", tta="dihedral")
    np.testing.assert_allclose(dihedral.score_pairs(*transformed(1, True), pairs), dihedral.score_pairs(p0, p1, pairs), atol=1e-4)
    idx = np.arange(9)
    np.testing.assert_allclose(dihedral.score(p0[:9], p1), dihedral.score_pairs(p0, p1, np.stack([idx, idx], 1)), atol=1e-5)
    assert dihedral.score_pairs(p0, p1, np.zeros((0, 2), np.int64)).shape == (0,)
    few = pairs[[5, 0, 5]]  # only the patches these use are transformed
    np.testing.assert_allclose(dihedral.score_pairs(p0, p1, few), dihedral.score_pairs(p0, p1, pairs)[[5, 0, 5]], atol=1e-5)
    for bad in ("mirror", "", None, 8, ["swap"]):
        with pytest.raises(ValueError, match="tta"):
            PatchScorer(model, device="cpu", tta=bad)


def test_orient_keeps_the_best_score_over_the_second_patch_turned(scorer):
    """tta="orient": the highest plain score over the second patch turned by ORIENT_DEGREES;
    quarter turns are exact, other angles keep the patch's centre."""
    from patchmatch.scoring import ORIENT_DEGREES, turn_patches

    rng = np.random.default_rng(4)
    p0 = rng.integers(0, 256, (7, 64, 64), dtype=np.uint8)
    p1 = rng.integers(0, 256, (5, 64, 64), dtype=np.uint8)
    pairs = np.stack([rng.integers(0, 7, 30), rng.integers(0, 5, 30)], 1)
    plain = PatchScorer(scorer.model, device="cpu")
    orient = PatchScorer(scorer.model, device="cpu", batch_size=8, tta="orient")
    assert TTA["orient"] == len(ORIENT_DEGREES) and 0.0 in ORIENT_DEGREES
    expected = np.max([plain.score_pairs(p0, turn_patches(p1, a), pairs) for a in ORIENT_DEGREES], 0)
    np.testing.assert_allclose(orient.score_pairs(p0, p1, pairs), expected, atol=1e-5)
    assert (orient.score_pairs(p0, p1, pairs) > plain.score_pairs(p0, p1, pairs) + 1e-4).any()
    few = pairs[[3, 1]]  # only the second patches these use are turned
    np.testing.assert_allclose(orient.score_pairs(p0, p1, few), expected[[3, 1]], atol=1e-5)
    # a smooth patch turned by 30 degrees and back is itself away from its corners
    yy, xx = np.mgrid[:64, :64]
    smooth = (127 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.uint8)[None]
    back = turn_patches(turn_patches(smooth, 30.0), -30.0)
    assert np.abs(back[0, 16:48, 16:48].astype(int) - smooth[0, 16:48, 16:48]).max() <= 3
    assert turn_patches(smooth, 0.0) is smooth and turn_patches(smooth, 15.0).dtype == np.uint8
    np.testing.assert_array_equal(turn_patches(p1, 90.0), np.rot90(p1, 1, axes=(1, 2)))
    np.testing.assert_array_equal(turn_patches(turn_patches(p1, 270.0), 90.0), p1)


def test_test_time_augmentation_of_siamese_and_loaded_scorers(tmp_path):
    rng = np.random.default_rng(3)
    p = rng.integers(0, 256, (6, 64, 64), dtype=np.uint8)
    pairs = np.array([[0, 1], [2, 2], [5, 3]])
    torch.manual_seed(0)
    siam = build_model("siam")
    plain = PatchScorer(siam, device="cpu")
    ref = (plain.score_pairs(p, p, pairs) + plain.score_pairs(p, p, pairs[:, ::-1])) / 2
    np.testing.assert_allclose(PatchScorer(siam, device="cpu", tta="swap").score_pairs(p, p, pairs), ref, atol=1e-5)
    ckpt = save_checkpoint(tmp_path / "w.pt", build_model("2ch"), {})
    loaded = PatchScorer.load(ckpt, device="cpu", precision="fp32", tta="rot90")
    assert loaded.tta == "rot90"
    from patchmatch.scoring import describe_scorer

    assert "test-time augmentation rot90 (4 passes)" in describe_scorer(loaded)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")
def test_cuda_scores_match_the_cpu():
    """The GPU path (pinned transfers, cuDNN, autocast) scores as the CPU does, test-time augmentation included."""
    rng = np.random.default_rng(4)
    p0 = rng.integers(0, 256, (70, 64, 64), dtype=np.uint8)
    p1 = rng.integers(0, 256, (50, 64, 64), dtype=np.uint8)
    pairs = np.stack([rng.integers(0, 70, 3000), rng.integers(0, 50, 3000)], 1)
    torch.manual_seed(0)
    model = build_model("2ch2stream")
    on_gpu = copy.deepcopy(model)  # a scorer moves its model to its device
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    for tta in ("none", "dihedral"):
        cpu = PatchScorer(model, device="cpu", tta=tta).score_pairs(p0, p1, pairs)
        gpu = PatchScorer(on_gpu, device="cuda", precision="fp32", batch_size=1024, tta=tta).score_pairs(p0, p1, pairs)
        np.testing.assert_allclose(gpu, cpu, atol=1e-3, rtol=1e-3)
        half = PatchScorer(on_gpu, device="cuda", precision="bf16", tta=tta).score_pairs(p0, p1, pairs)
        assert np.corrcoef(half, cpu)[0, 1] > 0.999
