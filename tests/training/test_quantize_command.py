"""``patchmatch quantize``: calibrate on a real patch set, measure FPR95 fp32 vs int8, write W.int8.pt."""

from __future__ import annotations

import shutil

import pytest
import torch

from patchmatch.cli import main
from patchmatch.models.quantize import load_int8
from patchmatch.scoring import shipped_weights_path


@pytest.mark.skipif("x86" not in torch.backends.quantized.supported_engines, reason="no x86 int8 engine")
@pytest.mark.parametrize("vnni", [True, False])
def test_quantize_command(pairset, tmp_path, capsys, monkeypatch, vnni):
    import patchmatch.device

    if not vnni:  # as on an x86 CPU without AVX512-VNNI: both variants written, only 7 bits evaluated
        monkeypatch.setattr(patchmatch.device, "int8_activation_bits", lambda: 7)
    evaluated = [b for b in ("8", "7") if int(b) <= patchmatch.device.int8_activation_bits()]
    weights = tmp_path / "net.pt"
    shutil.copy(shipped_weights_path(), weights)
    args = ["-q", "quantize", str(weights), "--data", str(pairset), "--pairs", "256", "--eval", str(pairset),
            "--eval-pairs", "400"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "entry3/oriented/random" in out and "wrote" in out
    model, meta = load_int8(tmp_path / "net.int8.pt", weights, activation_bits=7)
    assert meta["calibration"] == {**meta["calibration"], "pairs": 256, "activation_bits": [8, 7]} and meta["activation_bits"] == 7
    fpr = meta["fpr95"]["entry3/oriented/random"]
    assert list(fpr["int8"]) == evaluated and meta["evaluation"]["activation_bits"] == [int(b) for b in evaluated]
    for bits in evaluated:
        change = fpr["int8"][bits] - fpr["fp32"]
        assert abs(change) < 0.05  # each variant ranks the pairs like fp32
        lo, hi = fpr["change_interval"][bits]  # paired bootstrap interval of the change
        assert lo <= change <= hi and "95% interval (pp)" in out and "FPR95 int8 (%)" in out
        assert 0 < fpr["score_rms"][bits] < 0.2 and 0 <= fpr["sensitivity"][bits] <= 1
    assert main(args) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert main(["-q", "quantize", str(weights), "--data", str(pairset), "--pairs", "3", "--overwrite"]) == 2
    with pytest.raises(SystemExit):  # both variants are always written: no option
        main(args + ["--activation-bits", "7"])
    capsys.readouterr()
    # bad evaluation options fail before the calibration, nothing written
    bad = ["-q", "quantize", str(weights), "--data", str(pairset), "--pairs", "256", "--out", str(tmp_path / "bad.int8.pt")]
    assert main(bad + ["--eval", str(tmp_path / "nope")]) == 2 and "nope" in capsys.readouterr().err
    assert main(bad + ["--eval", str(pairset), "--eval-pairs", "1"]) == 2 and "--eval-pairs" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --eval without a set (argparse)
        main(bad + ["--eval"])
    assert main(bad[:3] + ["--data", str(tmp_path)] + bad[5:]) == 2 and "neither a patch set" in capsys.readouterr().err
    assert main(bad[:-1] + [str(tmp_path), "--overwrite"]) == 2 and "a folder; --out takes" in capsys.readouterr().err
    before = weights.read_bytes()
    assert main(bad[:-1] + [str(weights), "--overwrite"]) == 2 and "is the float checkpoint itself" in capsys.readouterr().err
    assert weights.read_bytes() == before
    assert not (tmp_path / "bad.int8.pt").exists()
    # two sets of one name are told apart by their paths
    twin = tmp_path / "twin" / pairset.name
    shutil.copytree(pairset, twin)
    assert main(bad + ["--eval", str(pairset), str(twin), "--eval-pairs", "200"]) == 0
    _, both = load_int8(tmp_path / "bad.int8.pt", weights)
    assert len(both["fpr95"]) == 8 and f"{twin}/oriented/random" in both["fpr95"]
    assert both["evaluation"]["max_pairs_per_protocol"] == 200
    # calibration or evaluation sets cut at another magnification than the weights' are refused by name
    import json

    wide = tmp_path / "wide"
    shutil.copytree(pairset, wide)
    summary = json.loads((wide / "summary.json").read_text())
    (wide / "summary.json").write_text(json.dumps({**summary, "magnification": 11.0}))
    assert main(["-q", "quantize", str(weights), "--data", str(wide), "--pairs", "256", "--out", str(tmp_path / "w.int8.pt")]) == 2
    assert f"{wide}: patches cut at magnification 11" in capsys.readouterr().err and not (tmp_path / "w.int8.pt").exists()
