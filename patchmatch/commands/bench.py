"""``patchmatch bench``: GEMM FLOP/s and scorer pairs/s per inference path and batch size, as a table and JSON.

Rows on the CPU: int8 (7-bit activations, the default), int8 (8-bit, the opt-in of CPUs with
AVX512-VNNI), fp32 through ONNX Runtime (when installed), fp32 in PyTorch eager, and bf16 where
the CPU computes it natively; on a GPU: fp32, bf16 and fp16.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure scoring throughput against the machine's GEMM bound", description=__doc__)
    p.add_argument("--weights", type=Path, default=None, help="checkpoint (default: shipped weights, else an untrained 2ch2stream)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available, else the CPU)")
    p.add_argument("--precision", action="append", choices=["fp32", "bf16", "fp16", "int8"],
                   help="time only these precisions (repeatable; default: every path of the device)")
    p.add_argument("--batch-size", type=int, action="append", help="batch sizes (repeatable; default 64 128 512)")
    p.add_argument("--pairs", type=int, default=2048, help="pairs per timed call")
    p.add_argument("--seconds", type=float, default=2.0, help="time per row (the GEMM is measured for half as long before each)")
    p.add_argument("--json", type=Path, default=Path("outputs/bench.json"), help="JSON results (default outputs/bench.json, replaced)")
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    if not 1 <= args.pairs <= 1_000_000 or not (math.isfinite(args.seconds) and args.seconds > 0):
        raise ValueError(f"--pairs must be in [1, 1000000] and --seconds a positive number, got {args.pairs} and {args.seconds}")
    if args.json.is_dir():
        raise ValueError(f"--json {args.json} is a folder; give a file name (e.g. {args.json / 'bench.json'})")
    parent = next((p for p in args.json.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise NotADirectoryError(f"--json {args.json}: {parent} is a file, not a folder")


def _int8_rows(source: str, asked: bool, notes: list[str]) -> list[tuple[str, dict]]:
    """The int8 rows: 7 bits, and 8 bits where the CPU takes them; a broken int8 file is a note (an error when asked)."""
    from ..device import int8_activation_bits
    from ..models import CheckpointError
    from ..models.quantize import int8_path, int8_variants

    try:
        variants = int8_variants(int8_path(source), source)
    except CheckpointError as e:
        if asked:
            raise
        notes.append(f"int8 not timed: {e}")
        return []
    bits = [b for b in (7, 8) if b in variants and b <= int8_activation_bits()]
    return [(f"int8 ({b}-bit)", {"precision": "int8", "activation_bits": b}) for b in bits]


def _rows(device, source: str, has_int8: bool, precisions: list[str], asked: bool, notes: list[str]) -> list[tuple[str, dict]]:
    """``(label, PatchScorer keywords)`` of each row; ``"torch_only"``: PyTorch even where ONNX Runtime is installed."""
    from ..device import cpu_has_native_bf16
    from ..models import onnx as onnx_backend

    rows: list[tuple[str, dict]] = []
    for p in precisions:
        if p == "int8":
            rows += _int8_rows(source, asked, notes)
        elif p == "fp32" and device.type == "cpu":
            if onnx_backend.available():
                rows.append(("fp32 onnxruntime", {"precision": "fp32"}))
            else:
                notes.append("fp32 onnxruntime not timed: onnxruntime not installed (pip install 'patchmatch[onnx]')")
            rows.append(("fp32 torch", {"precision": "fp32", "torch_only": True}))
        elif p == "bf16" and device.type == "cpu" and not (asked or cpu_has_native_bf16()):
            notes.append("bf16 not timed: this CPU emulates bfloat16 (no AMX or AVX512-BF16)")
        else:
            rows.append((p, {"precision": p}))
    return rows


def _scorer(base, source: str, device, batch_size: int, kwargs: dict):
    from ..scoring import PatchScorer

    kwargs = dict(kwargs)
    torch_only = kwargs.pop("torch_only", False)
    if kwargs["precision"] == "int8":
        return PatchScorer.load(source, device=device, batch_size=batch_size, **kwargs)
    scorer = PatchScorer(base.model, device=device, batch_size=batch_size, **kwargs)
    if torch_only:
        scorer.use_pytorch()  # time PyTorch eager even where ONNX Runtime is installed
    return scorer


def _print_table(rows: list[dict], device, source: str, flop: int, notes: list[str]) -> float:
    import numpy as np
    import torch

    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, model {source}")
    gemm = float(np.median([r["gemm_flops"] for r in rows])) if rows else 0.0
    print(f"dense fp32 GEMM: {gemm / 1e9:.1f} GFLOP/s (median of the run); {flop / 1e6:.1f} MFLOP per pair "
          f"→ bound {gemm / flop:,.0f} pairs/s")  # fmt: skip
    print("(÷ bound: pairs/s × FLOP per pair ÷ the GEMM FLOP/s measured just before the row; "
          "max |Δscore|: largest difference to fp32 torch's scores on the same pairs)")  # fmt: skip
    print(f"{'path':<18}{'batch':>7}{'pairs/s':>12}{'GEMM GFLOP/s':>14}{'÷ bound':>10}{'max |Δscore|':>14}")
    for r in rows:
        print(f"{r['path']:<18}{r['batch_size']:>7}{r['pairs_per_s']:>12,.0f}{r['gemm_flops'] / 1e9:>14.1f}"
              f"{r['ratio_to_fp32_gemm']:>10.2f}{r['max_abs_score_diff']:>14.1e}")  # fmt: skip
    for note in notes:
        print(note)
    return gemm


def run(args: argparse.Namespace) -> int:
    import torch

    from ..benchmark import bench_inputs, flops_per_pair, gemm_flops, time_scorer
    from ..device import resolve_device
    from ..models import build_model
    from ..models.quantize import int8_path
    from ..scoring import PatchScorer

    _check_args(args)
    device = resolve_device(args.device)
    try:
        base = PatchScorer.load(args.weights, device=device, precision="fp32")
        source = base.meta.get("path", "")
    except FileNotFoundError:
        base, source = PatchScorer(build_model(), device=device), "untrained 2ch2stream (no shipped weights)"
    has_int8 = bool(source) and int8_path(source).is_file() and device.type == "cpu"
    precisions = args.precision or ((["int8"] if has_int8 else []) + ["fp32", "bf16"] if device.type == "cpu" else ["fp32", "bf16", "fp16"])
    if "int8" in precisions and not has_int8:
        raise ValueError(f"no int8 model for {source or 'these weights'}: make one with `patchmatch quantize`")
    flop, notes = flops_per_pair(base.model), []
    patches, pairs = bench_inputs(args.pairs)  # time_scorer's inputs (same seed): every row against fp32 torch
    ref = _scorer(base, source, device, 128, {"precision": "fp32", "torch_only": True}).score_pairs(patches, patches, pairs)
    rows = []
    for label, kwargs in _rows(device, source, has_int8, precisions, bool(args.precision), notes):
        for bs in args.batch_size or [64, 128, 512]:
            sc = _scorer(base, source, device, bs, kwargs)
            gemm = gemm_flops(device, seconds=max(0.2, args.seconds / 2))  # just before the row: the machine's speed drifts
            pps, scores = time_scorer(sc, args.pairs, args.seconds)
            rows.append({"path": label, "precision": sc.precision, "backend": sc.backend, "activation_bits": sc.activation_bits,
                         "batch_size": bs, "pairs_per_s": pps, "gemm_flops": gemm, "ratio_to_fp32_gemm": pps * flop / gemm,
                         "max_abs_score_diff": float(abs(scores - ref).max())})  # fmt: skip
            logger.info("%s, batch %d: %.0f pairs/s", label, bs, pps)
    gemm = _print_table(rows, device, source, flop, notes)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": str(device), "machine": platform.processor() or platform.machine(),
                                     "threads": torch.get_num_threads(), "gemm_flops": gemm, "flops_per_pair": flop,
                                     "model": source, "rows": rows}, indent=2))  # fmt: skip
    print(f"JSON: {args.json}")
    return 0
