"""int8 quantisation of the 2-channel models (FX static quantisation, x86 engine)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from patchmatch.datasets.brown import read_patches
from patchmatch.models import CheckpointError, build_model, load_checkpoint
import patchmatch.device
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


@pytest.fixture(params=["this CPU", "AVX2 CPU"])
def cpu(request, monkeypatch) -> int:
    """Runs a test as it is on this CPU and as on an x86 CPU without AVX512-VNNI (the detection injected);
    returns the activation bits the CPU takes."""
    if request.param == "AVX2 CPU":
        monkeypatch.setattr(patchmatch.device, "int8_activation_bits", lambda: 7)
    return patchmatch.device.int8_activation_bits()


def test_int8_model_agrees_with_float32_and_round_trips(weights, real_pairs, tmp_path, cpu):
    model, _ = load_checkpoint(weights)
    engine = torch.backends.quantized.engine
    q = quantize_int8(model, real_pairs[:512])
    assert q.activation_bits == 7 and torch.backends.quantized.engine == engine  # the default variant; no global change
    with torch.inference_mode():
        s32, s7 = model(real_pairs.float()), q(real_pairs.float())
    assert torch.corrcoef(torch.stack([s32, s7]))[0, 1] > 0.99
    # ranking of the pairs (what FPR95 and the matcher use) is nearly unchanged
    r32, r7 = s32.argsort().argsort().float(), s7.argsort().argsort().float()
    assert torch.corrcoef(torch.stack([r32, r7]))[0, 1] > 0.99
    path = save_int8(int8_path(weights), q, weights, {"calibration": "test"})
    assert path.name == "net.int8.pt"
    loaded, meta = load_int8(path, weights)
    with torch.inference_mode():
        assert torch.equal(loaded(real_pairs.float()), s7)
    assert meta == {"calibration": "test", "activation_bits": 7} and loaded.activation_bits == 7
    # PatchScorer: explicit int8, and "auto" picks it on x86 once the file exists
    p0, p1 = real_pairs[:, 0].numpy(), real_pairs[:, 1].numpy()
    for precision in ("int8", "auto"):
        scorer = PatchScorer.load(weights, device="cpu", precision=precision)
        assert scorer.precision == "int8" and scorer.activation_bits == 7
        assert np.array_equal(scorer.score(p0, p1), s7.numpy())  # batches of 128 vs one of 1000: the same bits
    assert torch.backends.quantized.engine == engine


def test_int8_errors_name_the_file(weights, real_pairs, tmp_path, caplog):
    other = tmp_path / "other.pt"
    shutil.copy(weights, other)
    with pytest.raises(CheckpointError, match="patchmatch quantize"):
        PatchScorer.load(other, device="cpu", precision="int8")
    assert PatchScorer.load(other, device="cpu", precision="auto").precision == "fp32"
    q = quantize_int8(load_checkpoint(weights)[0], real_pairs[:64])
    save_int8(int8_path(other), q, weights)  # made from another file's bytes
    with open(other, "ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckpointError, match="other weights"):
        load_int8(int8_path(other), other)
    # under precision="auto" an unusable int8 file is a warning and a float precision, not a failure
    with caplog.at_level(logging.WARNING, logger="patchmatch.scoring"):
        assert PatchScorer.load(other, device="cpu", precision="auto").precision == "fp32"
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


def test_activation_variants_one_file_seven_bits_unless_asked(weights, real_pairs, tmp_path, cpu):
    model, _ = load_checkpoint(weights)
    calib, test = real_pairs[:512].float(), real_pairs[512:].float()
    q8, q7 = quantize_int8(model, calib, activation_bits=8), quantize_int8(model, calib, activation_bits=7)
    with torch.inference_mode():
        s32, s8, s7 = model(test), q8(test), q7(test)
    # both follow float32 (8 bits overflow a little on a real AVX2 CPU; their order there is the CPU's)
    for s in (s8, s7):
        assert (s - s32).pow(2).mean().sqrt() < 0.1 * s32.std()
    path = save_int8(tmp_path / "both.int8.pt", [q8, q7], weights)
    assert int8_variants(path, weights) == (8, 7)
    loaded, meta = load_int8(path, weights)  # the default on every CPU: 7 bits
    assert meta["activation_bits"] == loaded.activation_bits == 7
    with torch.inference_mode():
        assert torch.equal(loaded(test), s7)
    # a variant the file lacks: refused, naming the file and the way out
    only8 = save_int8(tmp_path / "only8.int8.pt", q8, weights)
    with pytest.raises(CheckpointError, match="only8.int8.pt: no 7-bit activation variant.*patchmatch quantize"):
        load_int8(only8, weights)
    for bad in (9, 0, True, "8", 8.0):
        with pytest.raises(ValueError, match="activation_bits"):
            load_int8(path, weights, activation_bits=bad)
    if cpu == 8:  # the 8-bit opt-in, where the CPU has VNNI
        loaded, meta = load_int8(path, weights, activation_bits=8)
        assert meta["activation_bits"] == loaded.activation_bits == 8
        with torch.inference_mode():
            assert torch.equal(loaded(test), s8)
    else:  # refused by name where int16 sums could overflow
        with pytest.raises(ValueError, match="activation_bits=8: this CPU's int8 kernels take at most 7.*AVX512-VNNI"):
            load_int8(path, weights, activation_bits=8)
    with pytest.raises(ValueError, match="activation_bits"):
        quantize_int8(model, calib, activation_bits=4)
    with pytest.raises(ValueError, match="one per activation variant"):
        save_int8(tmp_path / "two.int8.pt", [q8, q8], weights)
    # a file whose variant lacks entries would score with placeholder scales: refused
    payload = torch.load(path, weights_only=True)
    for variants, says in (({}, "holds no int8 variant"), ({"7": {}}, "the 7-bit variant lacks")):
        torch.save({**payload, "variants": variants}, tmp_path / "hollow.int8.pt")
        with pytest.raises(CheckpointError, match=f"hollow.int8.pt: {says}"):
            load_int8(tmp_path / "hollow.int8.pt", weights)


def test_scorer_takes_seven_bits_and_eight_only_when_asked(weights, real_pairs, tmp_path, cpu):
    model, _ = load_checkpoint(weights)
    calib, test = real_pairs[:512].float(), real_pairs[512:].float()
    q8, q7 = quantize_int8(model, calib, activation_bits=8), quantize_int8(model, calib, activation_bits=7)
    save_int8(int8_path(weights), [q8, q7], weights)
    p0, p1 = test[:, 0].byte().numpy(), test[:, 1].byte().numpy()
    for scorer in (PatchScorer.load(weights, device="cpu"), PatchScorer.load(weights, device="cpu", precision="int8")):
        assert scorer.activation_bits == 7 and "int8 (7-bit activations)" in describe_scorer(scorer)
        with torch.inference_mode():
            assert np.array_equal(scorer.score(p0, p1), q7(test).numpy())
    if cpu == 8:
        eight = PatchScorer.load(weights, device="cpu", precision="int8", activation_bits=8)
        assert eight.activation_bits == 8 and "int8 (8-bit activations)" in describe_scorer(eight)
    else:
        with pytest.raises(ValueError, match="activation_bits=8.*AVX512-VNNI"):
            PatchScorer.load(weights, device="cpu", precision="int8", activation_bits=8)
    assert PatchScorer.load(weights, device="cpu", precision="fp32").activation_bits is None
    for bad in (9, True, "8", 8.0):
        with pytest.raises(ValueError, match="activation_bits"):
            PatchScorer.load(weights, device="cpu", precision="int8", activation_bits=bad)
    for precision in ("fp32", "auto"):
        with pytest.raises(ValueError, match="activation_bits is for precision='int8'"):
            PatchScorer.load(weights, device="cpu", precision=precision, activation_bits=7)
    # an 8-bit-only file: "auto" scores in fp32 instead, with a warning; "int8" names the missing variant
    lone = tmp_path / "lone" / "net.pt"
    lone.parent.mkdir()
    shutil.copy(weights, lone)
    save_int8(int8_path(lone), q8, lone)
    assert PatchScorer.load(lone, device="cpu").precision == "fp32"
    with pytest.raises(CheckpointError, match="no 7-bit activation variant"):
        PatchScorer.load(lone, device="cpu", precision="int8")


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


#: Scores the shipped weights' default int8 model (7-bit activations) on real Notre Dame patches; prints their SHA-256.
_SCORE_SHIPPED_INT8 = """
import hashlib, sys
import numpy as np
from patchmatch.datasets.brown import read_patches
from patchmatch.scoring import PatchScorer
p = read_patches(sys.argv[1], count=1024)
rng = np.random.default_rng(0)
pairs = np.stack([np.arange(1000), np.r_[np.arange(1, 501), rng.permutation(1000)[:500]]], 1)
scorer = PatchScorer.load(device="cpu", precision="int8")
assert scorer.activation_bits == 7
import torch
print(torch.backends.cpu.get_cpu_capability(), hashlib.sha256(scorer.score_pairs(p, p, pairs).tobytes()).hexdigest())
"""
#: Environment that limits every CPU kernel library PyTorch uses to AVX2 (what an AVX2-only CPU runs).
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}  # fmt: skip


@pytest.mark.slow
def test_default_int8_scores_are_the_same_bits_with_avx2_kernels():
    """The default int8 form gives bit-identical scores whether the float and quantised kernels run
    their AVX2 or their widest (AVX-512/AMX) code on this CPU (oneDNN everywhere, float64 decision layers;
    with the x86 engine's choice or float32 decision layers they differ in a few scores)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patches = shared_path("brown", "notredame-sample")

    def digest(extra_env: dict[str, str]) -> tuple[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in AVX2_ONLY} | extra_env
        out = subprocess.run([sys.executable, "-c", _SCORE_SHIPPED_INT8, str(patches)], cwd=root, env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        capability, sha = out.stdout.split()[-2:]
        return capability, sha

    (limited, sha_avx2), (_, sha_default) = digest(AVX2_ONLY), digest({})
    assert limited == "AVX2" and sha_avx2 == sha_default
