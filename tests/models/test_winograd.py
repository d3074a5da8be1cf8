import numpy as np
import pytest
import torch
from torch import nn

from patchmatch.models import build_model
from patchmatch.models.winograd import WinogradTwoChannel2Stream, winograd_weights
from patchmatch.scoring import PatchScorer


def _patches(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 2, 64, 64) uint8: smooth random images (so the ReLUs do not zero whole streams), the
    second channel a noisy copy of the first for half of the pairs."""
    rng = np.random.default_rng(seed)
    low = rng.normal(size=(n, 2, 9, 9)).astype(np.float32)
    x = torch.nn.functional.interpolate(torch.from_numpy(low), size=(64, 64), mode="bicubic", align_corners=False)
    x[: n // 2, 1] = x[: n // 2, 0] + 0.1 * torch.randn(n // 2, 64, 64)
    return (x * 60 + 128).clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("batch", [1, 7, 40])
def test_winograd_equals_plain_model(batch):
    """Same scores as the direct convolutions, across chunk boundaries of both chunk sizes."""
    torch.manual_seed(batch)
    model = build_model("2ch2stream").eval()
    fast = WinogradTwoChannel2Stream(model, chunk=16, first_block_chunk=5)
    x = _patches(batch, seed=batch)
    with torch.inference_mode():
        ref, got = model(x), fast(x)
    assert got.shape == (batch,) and got.dtype == torch.float32
    assert ref.abs().max() > 0.1  # not a trivial all-zero case
    torch.testing.assert_close(got, ref, atol=1e-4 * float(ref.abs().max()), rtol=1e-4)


def test_winograd_weights_transform_is_exact_for_one_tile():
    """A single F(4×4,3×3) tile: Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A equals the 6×6 → 4×4 convolution."""
    from patchmatch.models.winograd import _AT4, _BT4, _G4, _kron2

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    d = torch.randn(1, 3, 6, 6)
    u = winograd_weights(conv, _G4)  # (36, 3, 4)
    v = _kron2(_BT4) @ d[0].reshape(3, 36).T  # (36, 3)
    y = _kron2(_AT4) @ torch.einsum("pi,pio->po", v, u)  # (16, 4)
    ref = nn.functional.conv2d(d, conv.weight, None)[0].reshape(4, 16).T
    torch.testing.assert_close(y, ref.detach(), atol=1e-5, rtol=1e-5)


def test_winograd_refuses_other_models_and_layers():
    with pytest.raises(TypeError, match="2ch2stream"):
        WinogradTwoChannel2Stream(build_model("2ch"))
    with pytest.raises(ValueError, match="3×3"):
        winograd_weights(nn.Conv2d(2, 4, 5), [[1, 0, 0]])
    with pytest.raises(ValueError, match="chunk"):
        WinogradTwoChannel2Stream(build_model("2ch2stream"), chunk=0)


def test_scorer_uses_winograd_for_fp32_cpu_2ch2stream():
    torch.manual_seed(0)
    model = build_model("2ch2stream").eval()
    auto = PatchScorer(model, device="cpu", precision="fp32", batch_size=16, backend="torch")
    plain = PatchScorer(model, device="cpu", precision="fp32", batch_size=16, backend="torch", winograd=False)
    assert auto.winograd and not plain.winograd
    x = _patches(30).numpy()
    pairs = np.stack([np.arange(30), np.arange(30)[::-1]], 1)
    s_auto, s_plain = auto.score_pairs(x[:, 0], x[:, 1], pairs), plain.score_pairs(x[:, 0], x[:, 1], pairs)
    np.testing.assert_allclose(s_auto, s_plain, atol=1e-4 * np.abs(s_plain).max(), rtol=1e-4)
    assert not PatchScorer(model, device="cpu", precision="bf16").winograd
    assert not PatchScorer(build_model("2ch"), device="cpu", precision="fp32").winograd
    with pytest.raises(ValueError, match="winograd=True"):
        PatchScorer(model, device="cpu", precision="bf16", winograd=True)
    with pytest.raises(ValueError, match="winograd=True"):
        PatchScorer(model, device="cpu", precision="fp32", winograd=True, compile=True)
    with pytest.raises(ValueError, match="winograd=True"):
        PatchScorer(build_model("siam"), device="cpu", precision="fp32", winograd=True)
