import json

import numpy as np
import pytest
import torch

from patchmatch.benchmark import flops_per_pair, gemm_flops, time_scorer
from patchmatch.cli import main
from patchmatch.device import resolve_device
from patchmatch.models import build_model
from patchmatch.scoring import PatchScorer


def test_flops_per_pair_hand_count():
    # per stream: conv1 2·(96·28·28)·(2·25) + conv2 2·(96·12·12)·(96·9) + conv3 2·(192·4·4)·(96·9)
    # + conv4 2·(192·2·2)·(192·9) = 39,376,896; two streams + FC 2·768·1536 + 2·768
    assert flops_per_pair(build_model("2ch2stream")) == 2 * 39_376_896 + 2 * 768 * 1536 + 2 * 768


def test_precision_backends():
    model = build_model("2ch2stream")
    rng = np.random.default_rng(0)
    p = rng.integers(0, 256, (50, 64, 64), dtype=np.uint8)
    pairs = rng.integers(0, 50, (200, 2))
    fp32 = PatchScorer(model, device="cpu").score_pairs(p, p, pairs)
    bf16 = PatchScorer(model, device="cpu", precision="bf16").score_pairs(p, p, pairs)
    assert np.corrcoef(fp32, bf16)[0, 1] > 0.99
    with pytest.raises(ValueError, match="precision"):
        PatchScorer(model, device="cpu", precision="int4")
    with pytest.raises(ValueError, match="fp16 autocast needs a CUDA"):
        PatchScorer(model, device="cpu", precision="fp16")


def test_bench_command_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--seconds", "0.05", "--pairs", "64", "--batch-size", "32", "--precision", "fp32", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["rows"][0]["pairs_per_s"] > 0 and data["gemm_flops"] > 0
    # fp32 through ONNX Runtime where installed, and in PyTorch eager (the reference: no difference)
    from patchmatch.models.onnx import available

    expected = (["fp32 onnxruntime"] if available() else []) + ["fp32 torch"]
    assert [r["path"] for r in data["rows"]] == expected
    assert [r["backend"] for r in data["rows"]] == [p.split()[1] for p in expected]
    assert data["rows"][-1]["max_abs_score_diff"] == 0 and all(r["max_abs_score_diff"] < 1e-3 for r in data["rows"])
    assert "pairs/s" in capsys.readouterr().out
    assert gemm_flops(resolve_device("cpu"), n=64, seconds=0.01) > 0
    pps, scores = time_scorer(PatchScorer(build_model("2ch"), device="cpu"), num_pairs=16, seconds=0.01)
    assert pps > 0 and scores.shape == (16,)


@pytest.mark.skipif("x86" not in torch.backends.quantized.supported_engines, reason="no x86 int8 engine")
@pytest.mark.parametrize("vnni", [True, False])
def test_bench_times_each_int8_variant_the_cpu_runs(tmp_path, capsys, monkeypatch, vnni):
    import patchmatch.device

    if not vnni:  # as on an x86 CPU without AVX512-VNNI: the 8-bit opt-in is not timed
        monkeypatch.setattr(patchmatch.device, "int8_activation_bits", lambda: 7)
    bits = [b for b in (7, 8) if b <= patchmatch.device.int8_activation_bits()]
    out = tmp_path / "b.json"
    assert main(["bench", "--seconds", "0.05", "--pairs", "64", "--batch-size", "32", "--precision", "int8", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["path"] for r in rows] == [f"int8 ({b}-bit)" for b in bits]
    assert [r["activation_bits"] for r in rows] == bits
    assert all(r["pairs_per_s"] > 0 and r["max_abs_score_diff"] < 1.0 for r in rows)
    # a corrupt int8 file: the default precisions time the others and say why int8 is not timed; asked for, an error
    import shutil

    from patchmatch.scoring import shipped_weights_path

    weights = tmp_path / "w.pt"
    shutil.copy(shipped_weights_path(), weights)
    (tmp_path / "w.int8.pt").write_bytes(b"junk")
    base = ["bench", "--weights", str(weights), "--seconds", "0.05", "--pairs", "64", "--batch-size", "32", "--json", str(out)]
    assert main(base) == 0
    assert not [r for r in json.loads(out.read_text())["rows"] if r["precision"].startswith("int8")]
    assert "int8 not timed" in capsys.readouterr().out
    assert main(base + ["--precision", "int8"]) == 2 and "w.int8.pt" in capsys.readouterr().err
