"""``patchmatch quantize``: calibrate on a real patch set, measure FPR95 fp32 vs int8, write W.int8.pt."""

from __future__ import annotations

import shutil

import pytest
import torch

from patchmatch.cli import main
from patchmatch.models.quantize import load_int8
from patchmatch.scoring import shipped_weights_path


@pytest.mark.skipif("x86" not in torch.backends.quantized.supported_engines, reason="no x86 int8 engine")
def test_quantize_command(pairset, tmp_path, capsys):
    weights = tmp_path / "net.pt"
    shutil.copy(shipped_weights_path(), weights)
    args = ["-q", "quantize", str(weights), "--data", str(pairset), "--pairs", "256", "--eval", str(pairset),
            "--eval-pairs", "400"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "entry3/oriented/random" in out and "wrote" in out
    model, meta = load_int8(tmp_path / "net.int8.pt", weights)
    assert meta["calibration"]["pairs"] == 256
    fpr = meta["fpr95"]["entry3/oriented/random"]
    assert abs(fpr["int8"] - fpr["fp32"]) < 0.05  # the int8 model ranks the pairs like fp32
    lo, hi = fpr["change_interval"]  # paired bootstrap interval of the change
    assert lo <= fpr["int8"] - fpr["fp32"] <= hi and "95% interval" in out
    assert main(args) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert main(["-q", "quantize", str(weights), "--data", str(pairset), "--pairs", "3", "--overwrite"]) == 2
    # 8-bit activations: a wider range of quantised values, the same ranking
    assert main(args + ["--full-range", "--out", str(tmp_path / "full.int8.pt")]) == 0
    _, full = load_int8(tmp_path / "full.int8.pt", weights)
    assert full["calibration"]["activation_bits"] == 8 and meta["calibration"]["activation_bits"] == 7
    f8 = full["fpr95"]["entry3/oriented/random"]
    assert abs(f8["int8"] - f8["fp32"]) < 0.05
