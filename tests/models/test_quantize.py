"""int8 quantisation of the 2-channel models (FX static quantisation, x86 engine)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from patchmatch.datasets.brown import read_patches
from patchmatch.models import CheckpointError, build_model, load_checkpoint
from patchmatch.models.quantize import int8_path, load_int8, quantize_int8, save_int8
from patchmatch.scoring import PatchScorer, shipped_weights_path
from tests.conftest import shared_path

pytestmark = pytest.mark.skipif("x86" not in torch.backends.quantized.supported_engines, reason="no x86 int8 engine")


@pytest.fixture(scope="module")
def real_pairs():
    """(B, 2, 64, 64) uint8 real Notre Dame patches: neighbours (often one 3D point) and shuffled pairs."""
    p = read_patches(shared_path("brown", "notredame-sample"), count=1024)
    rng = np.random.default_rng(0)
    a = np.arange(0, 1000)
    b = np.r_[a[:500] + 1, rng.permutation(1000)[:500]]
    return torch.from_numpy(np.stack([p[a], p[b]], 1))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = shipped_weights_path()
    dst = tmp_path_factory.mktemp("w") / "net.pt"
    shutil.copy(path, dst)
    return dst


def test_int8_model_agrees_with_float32_and_round_trips(weights, real_pairs, tmp_path):
    model, _ = load_checkpoint(weights)
    q = quantize_int8(model, real_pairs[:512])
    with torch.inference_mode():
        s32, s8 = model(real_pairs.float()), q(real_pairs.float())
    assert torch.corrcoef(torch.stack([s32, s8]))[0, 1] > 0.99
    # ranking of the pairs (what FPR95 and the matcher use) is nearly unchanged
    r32, r8 = s32.argsort().argsort().float(), s8.argsort().argsort().float()
    assert torch.corrcoef(torch.stack([r32, r8]))[0, 1] > 0.99
    path = save_int8(int8_path(weights), q, weights, {"calibration": "test"})
    assert path.name == "net.int8.pt"
    loaded, meta = load_int8(path, weights)
    with torch.inference_mode():
        assert torch.equal(loaded(real_pairs.float()), s8)
    assert meta == {"calibration": "test"}
    # PatchScorer: explicit int8, and "auto" picks it on x86 once the file exists
    for precision in ("int8", "auto"):
        scorer = PatchScorer.load(weights, device="cpu", precision=precision)
        assert scorer.precision == "int8"
        p0 = real_pairs[:, 0].numpy()
        p1 = real_pairs[:, 1].numpy()
        assert np.allclose(scorer.score(p0, p1), s8.numpy(), atol=1e-5)  # batches of 128 vs one of 1000


def test_int8_errors_name_the_file(weights, real_pairs, tmp_path):
    other = tmp_path / "other.pt"
    shutil.copy(weights, other)
    with pytest.raises(CheckpointError, match="patchmatch quantize"):
        PatchScorer.load(other, device="cpu", precision="int8")
    assert PatchScorer.load(other, device="cpu", precision="auto").precision in ("bf16", "fp32")
    q = quantize_int8(load_checkpoint(weights)[0], real_pairs[:64])
    save_int8(int8_path(other), q, weights)  # made from another file's bytes
    with open(other, "ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckpointError, match="other weights"):
        load_int8(int8_path(other), other)
    int8_path(other).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable int8 file"):
        load_int8(int8_path(other), other)
    with pytest.raises(ValueError, match="not 'siam'"):
        quantize_int8(build_model("siam"), real_pairs[:8])
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(build_model("2ch"), real_pairs[:8, 0])


@pytest.mark.parametrize("name", ["2ch", "2chdeep"])
def test_other_two_channel_models_quantize(name, real_pairs):
    torch.manual_seed(0)
    model = build_model(name).eval()
    q = quantize_int8(model, real_pairs[:256])
    with torch.inference_mode():
        a, b = model(real_pairs[256:512].float()), q(real_pairs[256:512].float())
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.95
