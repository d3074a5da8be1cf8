"""int8 quantisation of the 2-channel models (FX static quantisation, x86 engine)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from patchmatch.datasets.brown import read_patches
from patchmatch.models import CheckpointError, build_model, load_checkpoint
from patchmatch.device import int8_activation_bits
from patchmatch.models.quantize import INT8_FORMAT, file_sha256, int8_path, int8_variants, load_int8, quantize_int8, save_int8
from patchmatch.scoring import PatchScorer, describe_scorer, shipped_weights_path
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
    assert meta == {"calibration": "test", "activation_bits": 8} and loaded.activation_bits == 8
    # PatchScorer: explicit int8, and "auto" picks it on x86 once the file exists
    for precision in ("int8", "auto"):
        scorer = PatchScorer.load(weights, device="cpu", precision=precision)
        assert scorer.precision == "int8"
        p0 = real_pairs[:, 0].numpy()
        p1 = real_pairs[:, 1].numpy()
        assert np.allclose(scorer.score(p0, p1), s8.numpy(), atol=1e-5)  # batches of 128 vs one of 1000


def test_int8_errors_name_the_file(weights, real_pairs, tmp_path, caplog):
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
    # under precision="auto" an unusable int8 file is a warning and a float precision, not a failure
    with caplog.at_level(logging.WARNING, logger="patchmatch.scoring"):
        assert PatchScorer.load(other, device="cpu", precision="auto").precision in ("bf16", "fp32")
    assert "other weights" in caplog.text and "instead (precision auto)" in caplog.text
    int8_path(other).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a (readable|patchmatch) int8 file"):
        load_int8(int8_path(other), other)
    int8_path(other).write_bytes(int8_path(weights).read_bytes()[:50_000] if int8_path(weights).is_file() else b"PK\x03\x04")
    with pytest.raises(CheckpointError) as err:
        load_int8(int8_path(other), other)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300 + len(str(other))
    with pytest.raises(ValueError, match="not 'siam'"):
        quantize_int8(build_model("siam"), real_pairs[:8])
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(build_model("2ch"), real_pairs[:8, 0])


def test_activation_variants_one_file_the_cpus_choice(weights, real_pairs, tmp_path, monkeypatch):
    model, _ = load_checkpoint(weights)
    calib, test = real_pairs[:512].float(), real_pairs[512:].float()
    q8, q7 = quantize_int8(model, calib, activation_bits=8), quantize_int8(model, calib, activation_bits=7)
    with torch.inference_mode():
        s32, s8, s7 = model(test), q8(test), q7(test)
    # 8-bit activations (min/max ranges) follow float32 more closely than 7-bit ones
    rms8, rms7 = (s8 - s32).pow(2).mean().sqrt(), (s7 - s32).pow(2).mean().sqrt()
    assert rms8 < rms7 < 0.1 * s32.std()
    path = save_int8(tmp_path / "both.int8.pt", [q8, q7], weights)
    for bits, expected in ((8, s8), (7, s7)):
        loaded, meta = load_int8(path, weights, activation_bits=bits)
        assert meta["activation_bits"] == loaded.activation_bits == bits
        with torch.inference_mode():
            assert torch.equal(loaded(test), expected)
    assert load_int8(path, weights)[1]["activation_bits"] == int8_activation_bits()
    # a variant the file lacks: refused, naming the file and the way out
    only8 = save_int8(tmp_path / "only8.int8.pt", q8, weights)
    with pytest.raises(CheckpointError, match="only8.int8.pt: no 7-bit activation variant.*patchmatch quantize"):
        load_int8(only8, weights, activation_bits=7)
    for bad in (9, 0, True, "8", 8.0):
        with pytest.raises(ValueError, match="activation_bits"):
            load_int8(path, weights, activation_bits=bad)
    # the scorer takes the CPU's variant and says which
    shutil.copy(path, int8_path(weights))
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: False)
    assert int8_activation_bits() == 7
    # without VNNI an 8-bit-only file is refused by name, and "auto" scores in a float precision instead
    with pytest.raises(CheckpointError, match="only8.int8.pt: int8 activations on \\[8\\] bits only.*no AVX512-VNNI"):
        load_int8(only8, weights)
    lone = tmp_path / "lone" / "net.pt"
    lone.parent.mkdir()
    shutil.copy(weights, lone)
    shutil.copy(only8, int8_path(lone))
    assert PatchScorer.load(lone, device="cpu").precision in ("bf16", "fp32")
    scorer = PatchScorer.load(weights, device="cpu", precision="int8")
    assert scorer.activation_bits == 7 and "7-bit activations" in describe_scorer(scorer)
    assert np.allclose(scorer.score(test[:, 0].byte().numpy(), test[:, 1].byte().numpy()), s7.numpy(), atol=1e-5)
    assert PatchScorer.load(weights, device="cpu", precision="fp32").activation_bits is None
    monkeypatch.undo()
    assert int8_variants(int8_path(weights), weights) == (8, 7) and int8_variants(only8, weights) == (8,)
    assert PatchScorer.load(weights, device="cpu", precision="int8", activation_bits=7).activation_bits == 7
    for bad in (9, True, "8", 8.0, 8 if int8_activation_bits() == 7 else 6):
        with pytest.raises(ValueError, match="activation_bits"):
            PatchScorer.load(weights, device="cpu", precision="int8", activation_bits=bad)
    for precision in ("fp32", "auto"):
        with pytest.raises(ValueError, match="activation_bits is for precision='int8'"):
            PatchScorer.load(weights, device="cpu", precision=precision, activation_bits=7)
    with pytest.raises(ValueError, match="activation_bits"):
        quantize_int8(model, calib, activation_bits=4)
    with pytest.raises(ValueError, match="one per activation variant"):
        save_int8(tmp_path / "two.int8.pt", [q8, q8], weights)
    # a file whose variant lacks entries would score with placeholder scales: refused
    payload = torch.load(path, weights_only=True)
    for variants, says in (({}, "holds no int8 variant"), ({"8": {}}, "the 8-bit variant lacks")):
        torch.save({**payload, "variants": variants}, tmp_path / "hollow.int8.pt")
        with pytest.raises(CheckpointError, match=f"hollow.int8.pt: {says}"):
            load_int8(tmp_path / "hollow.int8.pt", weights, activation_bits=8 if variants else None)


def test_version1_int8_files_still_load(weights, real_pairs, tmp_path):
    """Files written before the activation variants: one 7-bit state, its bits in the calibration metadata."""
    model, _ = load_checkpoint(weights)
    q7 = quantize_int8(model, real_pairs[:256].float(), activation_bits=7)
    path = tmp_path / "v1.int8.pt"
    torch.save({"format": INT8_FORMAT, "version": 1, "model": "2ch2stream", "source_sha256": file_sha256(weights),
                "streams": ["central", "surround"], "state_dict": {k: v for k, v in q7.state_dict().items()
                                                                  if k.split(".")[0] in ("central", "surround")},
                "meta": {"calibration": {"activation_bits": 7}}}, path)  # fmt: skip
    loaded, meta = load_int8(path, weights)
    assert meta["activation_bits"] == 7
    with pytest.raises(CheckpointError, match="no 8-bit activation variant"):
        load_int8(path, weights, activation_bits=8)
    with torch.inference_mode():
        assert torch.equal(loaded(real_pairs[256:].float()), q7(real_pairs[256:].float()))


@pytest.mark.parametrize("name", ["2ch", "2chdeep"])
def test_other_two_channel_models_quantize(name, real_pairs):
    torch.manual_seed(0)
    model = build_model(name).eval()
    q = quantize_int8(model, real_pairs[:256])
    with torch.inference_mode():
        a, b = model(real_pairs[256:512].float()), q(real_pairs[256:512].float())
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.95
