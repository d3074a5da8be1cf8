import pytest
import torch

from patchmatch.models import MODELS, CheckpointError, build_model, load_checkpoint, save_checkpoint
from patchmatch.models.layers import central_surround, normalize_patches, normalized_central_surround


def test_2ch2stream_parameter_count_and_shape():
    model = build_model("2ch2stream")
    assert sum(p.numel() for p in model.parameters()) == 2_353_153  # CVPR 2015 architecture
    out = model(torch.rand(5, 2, 64, 64) * 255)
    assert out.shape == (5,) and out.dtype == torch.float32


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_forward(name):
    model = build_model(name).eval()
    x = torch.rand(3, 2, 64, 64) * 255
    with torch.no_grad():
        s = model(x)
    assert s.shape == (3,)
    assert torch.isfinite(s).all()


@pytest.mark.parametrize("name", ["siam", "pseudo-siam", "siam-2stream"])
def test_siamese_descriptor_branch_alone(name):
    model = build_model(name).eval()
    x = torch.rand(4, 2, 64, 64) * 255
    with torch.no_grad():
        d0, d1 = model.describe(x[:, 0]), model.describe(x[:, 1], which=1)
        assert d0.shape == (4, model.descriptor_dim)
        torch.testing.assert_close(model.compare(d0, d1), model(x))


def test_normalisation_inside_model():
    x = torch.rand(2, 2, 64, 64) * 255
    n = normalize_patches(x)
    assert n.mean(dim=(2, 3)).abs().max() < 1e-5
    model = build_model("2ch2stream").eval()
    with torch.no_grad():  # brightness offsets are removed by the per-patch mean
        torch.testing.assert_close(model(x * 0.5), model(x * 0.5 + 40), atol=1e-4, rtol=1e-4)
    for a, b in zip(normalized_central_surround(x.to(torch.uint8)), central_surround(normalize_patches(x.to(torch.uint8)))):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # the fused path of 2ch2stream, same values
        assert a.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="64×64"):
        normalized_central_surround(torch.zeros(1, 2, 32, 32))
    c, s = central_surround(torch.arange(64.0).repeat(64, 1)[None, None])
    assert c.shape == s.shape == (1, 1, 32, 32)
    assert c[0, 0, 0, 0] == 16 and s[0, 0, 0, 0] == 0.5


def test_build_model_errors():
    with pytest.raises(KeyError, match="available"):
        build_model("resnet")
    with pytest.raises(TypeError, match="hiddn"):
        build_model("2ch2stream", hiddn=3)


def test_checkpoint_roundtrip_and_errors(tmp_path):
    model = build_model("2ch", hidden=128)
    path = save_checkpoint(tmp_path / "m.pt", model, {"data": "test"}, half=True)
    loaded, meta = load_checkpoint(path)
    assert meta == {"data": "test"} and loaded.config.hidden == 128
    x = torch.rand(2, 2, 64, 64) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), atol=5e-2, rtol=5e-2)  # fp16 storage
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a patchmatch checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": "patchmatch-int8", "state_dict": {}}, tmp_path / "w.int8.pt")
    with pytest.raises(CheckpointError, match="int8 inference model .* use the float checkpoint"):
        load_checkpoint(tmp_path / "w.int8.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["decision.0.weight"] = torch.zeros(3, 3)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("name", ["2ch2stream", "2ch", "siam-2stream", "2chdeep"])
def test_chunked_first_block_is_exact(name):
    """CPU inference runs each stream's conv → ReLU → max-pool block in chunks with the pooling first:
    the same numbers as the plain stream, which training (autograd) and hooked streams still use."""
    from patchmatch.models.layers import run_stream

    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.rand(37, 2, 64, 64) * 255  # not a multiple of the chunk
    stream = next(m for m in model.modules() if isinstance(m, torch.nn.Sequential) and isinstance(m[0], torch.nn.Conv2d))
    inp = torch.randn(37, stream[0].in_channels, 32 if "2stream" in name else 64, 32 if "2stream" in name else 64)
    with torch.inference_mode():
        torch.testing.assert_close(run_stream(stream, inp, chunk=8), stream(inp), rtol=1e-6, atol=1e-6)
        chunked = model(x)
    calls = []
    handle = stream[0].register_forward_hook(lambda m, a, o: calls.append(len(a[0])))
    with torch.inference_mode():
        run_stream(stream, inp, chunk=8)
    handle.remove()
    assert calls == [37]  # a hooked stream runs whole
    plain = model(x)  # autograd on: the plain stream
    torch.testing.assert_close(chunked, plain.detach(), rtol=1e-6, atol=1e-6)
