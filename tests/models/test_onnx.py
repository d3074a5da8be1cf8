import numpy as np
import pytest
import torch

from patchmatch.cli import main
from patchmatch.models import build_model, save_checkpoint
from patchmatch.models import onnx as onnx_backend
from patchmatch.models.onnx import OnnxRuntimeScorer, check_pairs, export_onnx
from patchmatch.scoring import PatchScorer

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed (pip install 'patchmatch[onnx]')")
pytest.importorskip("onnx", reason="onnx not installed (pip install 'patchmatch[onnx]')")


def _pairs(n: int, seed: int) -> np.ndarray:
    x = np.concatenate([check_pairs()] * (n // 8 + 1))[:n].copy()
    x[:, 1] = np.roll(x[:, 1], seed, axis=0)  # other second patches: positives and negatives
    return x


@pytest.mark.parametrize("name", ["2ch2stream", "2ch", "2chdeep"])
def test_exported_file_scores_as_pytorch_for_any_batch_size(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 5, 40):  # one graph, dynamic batch (the CPU path's chunking is not traced in)
        x = _pairs(n, seed=n)
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        got = session.run(None, {"pairs": x})[0]
        assert got.shape == (n,) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, np.abs(ref).max()), rtol=1e-4)


def test_scorer_backend_choice_and_scores():
    """fp32 on the CPU runs through ONNX Runtime when it is installed (no option); every other path is PyTorch."""
    torch.manual_seed(0)
    model = build_model("2ch2stream").eval()
    auto = PatchScorer(model, device="cpu", precision="fp32", batch_size=16)
    assert auto.backend == "onnxruntime"
    x = _pairs(30, seed=3)
    pairs = np.stack([np.arange(30), np.arange(30)[::-1]], 1)
    with torch.inference_mode():
        ref = model(torch.from_numpy(np.stack([x[pairs[:, 0], 0], x[pairs[:, 1], 1]], 1))).numpy()
    np.testing.assert_allclose(auto.score_pairs(x[:, 0], x[:, 1], pairs), ref, atol=1e-4)
    assert PatchScorer(model, device="cpu", precision="bf16").backend == "torch"
    assert PatchScorer(build_model("siam"), device="cpu", precision="fp32").backend == "torch"
    with pytest.raises(ValueError, match="not 'siam'"):
        OnnxRuntimeScorer(build_model("siam"))


def test_session_checked_against_pytorch(monkeypatch):
    """A session whose scores disagree with PyTorch's is refused, not used."""
    monkeypatch.setattr(OnnxRuntimeScorer, "__call__", lambda self, pairs: np.zeros(len(pairs), np.float32) + 5)
    with pytest.raises(RuntimeError, match="differ from PyTorch"):
        OnnxRuntimeScorer(build_model("2ch").eval())


def test_without_onnxruntime(monkeypatch):
    model = build_model("2ch").eval()
    monkeypatch.setattr(onnx_backend, "available", lambda: False)
    assert PatchScorer(model, device="cpu", precision="fp32").backend == "torch"
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # import fails
    with pytest.raises(ImportError, match=r"patchmatch\[onnx\]"):
        OnnxRuntimeScorer(model)


def test_export_onnx_command(tmp_path, capsys):
    torch.manual_seed(0)
    weights = save_checkpoint(tmp_path / "w.pt", build_model("2ch"))
    out = tmp_path / "w.onnx"
    assert main(["export-onnx", str(weights), "--out", str(out)]) == 0
    assert out.is_file() and "max |score difference|" in capsys.readouterr().out
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props == {"patchmatch.magnification": "6"}  # the weights' (default) magnification, for whoever crops
    wide = save_checkpoint(tmp_path / "wide.pt", build_model("2ch"), {"magnification": 8.0})
    assert main(["export-onnx", str(wide), "--out", str(tmp_path / "wide.onnx")]) == 0
    assert {p.key: p.value for p in onnx.load(str(tmp_path / "wide.onnx")).metadata_props}["patchmatch.magnification"] == "8"
    assert main(["export-onnx", str(weights), "--out", str(out)]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export-onnx", str(weights), "--out", str(tmp_path / "missing" / "w.onnx")]) == 2
    siam = save_checkpoint(tmp_path / "s.pt", build_model("siam"))
    assert main(["export-onnx", str(siam), "--out", str(tmp_path / "s.onnx")]) == 2
    assert "not 'siam'" in capsys.readouterr().err and not (tmp_path / "s.onnx").exists()


def test_diverged_weights_are_named_not_blamed_on_onnxruntime(caplog):
    model = build_model("2ch").eval()
    with torch.no_grad():
        model.decision[-1].weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        OnnxRuntimeScorer(model)
    assert PatchScorer(model, device="cpu", precision="fp32").backend == "torch"  # auto: PyTorch, with a warning
    assert "ONNX Runtime not used" in caplog.text


def test_broken_onnxruntime_install_falls_back(tmp_path, monkeypatch, caplog):
    """An onnxruntime that is installed but fails to import: auto uses PyTorch; an explicit
    request says what failed (not 'pip install' what is already there)."""
    fake = tmp_path / "onnxruntime"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('libonnxruntime.so.1: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "onnxruntime", raising=False)
    model = build_model("2ch").eval()
    assert PatchScorer(model, device="cpu", precision="fp32").backend == "torch"
    assert "fails to import" in caplog.text
    with pytest.raises(ImportError, match="installed but fails to import.*libonnxruntime"):
        OnnxRuntimeScorer(model)


def test_quantised_and_unregistered_models_are_not_exported():
    from patchmatch.models.quantize import quantize_int8

    model = build_model("2ch").eval()
    int8 = quantize_int8(model, torch.from_numpy(check_pairs()))
    assert onnx_backend.exportable(model) and not onnx_backend.exportable(int8)
    with pytest.raises(ValueError, match="int8"):
        export_onnx(int8, __import__("io").BytesIO())

    class Other(torch.nn.Module):
        def forward(self, x):
            return x.float().mean((1, 2, 3))

    with pytest.raises(ValueError, match="not a registered model"):
        OnnxRuntimeScorer(Other())
    assert PatchScorer(Other(), device="cpu", precision="fp32").backend == "torch"


def test_batch_split_between_sessions_scores_the_same():
    torch.manual_seed(0)
    model = build_model("2ch2stream").eval()
    one, two = OnnxRuntimeScorer(model, threads=1), OnnxRuntimeScorer(model, threads=2)
    assert len(one.sessions) == 1 and len(two.sessions) == 2
    for n in (7, 40, 101):  # 7: below the split size, one session; 40 and 101: split in two
        x = _pairs(n, seed=n)
        np.testing.assert_allclose(two(x), one(x), atol=1e-5)
        assert two(x).shape == (n,)


def test_calls_of_at_most_chunk_pairs_score_as_one_call():
    torch.manual_seed(0)
    model = build_model("2ch2stream").eval()
    scorer = OnnxRuntimeScorer(model, threads=1)
    calls = []
    session = scorer.sessions[0]

    class Counting:
        def run(self, outputs, feeds):
            calls.append(len(feeds["pairs"]))
            return session.run(outputs, feeds)

    x = _pairs(75, seed=3)
    whole = session.run(None, {"pairs": x})[0]
    scorer.sessions[0] = Counting()
    np.testing.assert_allclose(scorer(x), whole, atol=1e-5)
    assert calls == [32, 32, 11]
    calls.clear()
    assert scorer(x[:0]).shape == (0,) and calls == [0]
