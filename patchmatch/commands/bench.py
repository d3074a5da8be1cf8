"""``patchmatch bench``: GEMM FLOP/s and scorer pairs/s per backend and batch size, as a table and JSON."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure scoring throughput against the machine's GEMM bound", description=__doc__)
    p.add_argument("--weights", type=Path, default=None, help="checkpoint (default: shipped weights, else an untrained 2ch2stream)")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", action="append", choices=["fp32", "bf16", "fp16", "int8"],
                   help="backends (repeatable; default on CPU fp32, bf16, and int8 when the weights have an int8 file; "
                        "fp32 is timed plain, with Winograd convolutions (2ch2stream on the CPU) and through ONNX Runtime "
                        "(when installed))")
    p.add_argument("--batch-size", type=int, action="append", help="batch sizes (repeatable; default 64 128 512)")
    p.add_argument("--compile", action="store_true", help="also time the float precisions through torch.compile")
    p.add_argument("--pairs", type=int, default=2048, help="pairs per timed call")
    p.add_argument("--seconds", type=float, default=2.0, help="time per scorer measurement (one per backend and batch size; the GEMM is measured for half as long before each)")
    p.add_argument("--json", type=Path, default=Path("outputs/bench.json"), help="JSON results (default outputs/bench.json, replaced)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..benchmark import bench_inputs, flops_per_pair, gemm_flops, time_scorer
    from ..device import resolve_device
    from ..models import build_model
    from ..models import onnx as onnx_backend
    from ..scoring import PatchScorer, winograd_applies

    import math

    if not 1 <= args.pairs <= 1_000_000 or not (math.isfinite(args.seconds) and args.seconds > 0):
        raise ValueError(f"--pairs must be in [1, 1000000] and --seconds a positive number, got {args.pairs} and {args.seconds}")
    if args.json.is_dir():
        raise ValueError(f"--json {args.json} is a folder; give a file name (e.g. {args.json / 'bench.json'})")
    parent = next((p for p in args.json.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise NotADirectoryError(f"--json {args.json}: {parent} is a file, not a folder")
    device = resolve_device(args.device)
    from ..device import int8_activation_bits
    from ..models import CheckpointError
    from ..models.quantize import int8_path, int8_variants

    try:
        base = PatchScorer.load(args.weights, device=device, precision="fp32", backend="torch")
        source = base.meta.get("path", "")
    except FileNotFoundError:
        base = PatchScorer(build_model(), device=device, backend="torch")
        source = "untrained 2ch2stream (no shipped weights)"
    has_int8 = bool(source) and int8_path(source).is_file() and device.type == "cpu"
    flop = flops_per_pair(base.model)
    precisions = args.precision or (["fp32", "bf16"] + (["int8"] if has_int8 else []) if device.type == "cpu"
                                    else ["fp32", "bf16", "fp16"])  # fmt: skip
    if "int8" in precisions and not has_int8:
        raise ValueError(f"no int8 model for {source or 'these weights'}: make one with `patchmatch quantize`")
    batches = args.batch_size or [64, 128, 512]
    rows = []
    # every backend's scores against eager fp32 on the same pairs (time_scorer's inputs: same seed)
    patches, pairs = bench_inputs(args.pairs)
    ref = PatchScorer(base.model, device=device, precision="fp32", backend="torch", winograd=False).score_pairs(patches, patches, pairs)
    # (label, PatchScorer keywords); fp32 is timed plain and, where they apply, with Winograd
    # convolutions and through ONNX Runtime
    backends, notes = [], []
    for p in precisions:
        if p == "fp32":
            backends.append(("fp32", {"precision": "fp32", "backend": "torch", "winograd": False}))
            if winograd_applies(base.model, device):
                backends.append(("fp32+winograd", {"precision": "fp32", "backend": "torch", "winograd": True}))
            if device.type == "cpu" and onnx_backend.exportable(base.model):
                if onnx_backend.available():
                    backends.append(("fp32+onnxruntime", {"precision": "fp32", "backend": "onnxruntime"}))
                else:
                    notes.append("fp32+onnxruntime not timed: onnxruntime not installed (pip install 'patchmatch[onnx]')")
        elif p == "int8":  # each activation variant of the int8 file this CPU runs
            try:
                bits = [b for b in int8_variants(int8_path(source), source) if b <= int8_activation_bits()]
                if not bits:
                    raise CheckpointError(f"{int8_path(source)}: no int8 variant this CPU runs (it takes {int8_activation_bits()}-bit "
                                          f"activations); `patchmatch quantize {source} --data SET` writes a 7-bit one too")  # fmt: skip
            except CheckpointError as e:
                if args.precision:  # asked for
                    raise
                notes.append(f"int8 not timed: {e}")
                bits = []
            backends += [(f"int8/{b}-bit", {"precision": "int8", "activation_bits": b}) for b in bits]
        else:
            backends.append((p, {"precision": p, "backend": "torch"}))
    if args.compile:
        backends += [(p + "+compile", {"precision": p, "backend": "torch", "compile": True}) for p in precisions if p != "int8"]
    for label, kwargs in backends:
        for bs in batches:
            if kwargs["precision"] == "int8":
                sc = PatchScorer.load(source, device=device, batch_size=bs, **kwargs)
            else:
                sc = PatchScorer(base.model, device=device, batch_size=bs, **kwargs)
            # the GEMM measured right before each row: this machine's speed drifts (other tenants,
            # clocks), so each ratio compares two measurements taken within seconds of each other
            gemm = gemm_flops(device, seconds=max(0.2, args.seconds / 2))
            pps, scores = time_scorer(sc, args.pairs, args.seconds)
            rows.append({"precision": label, "activation_bits": sc.activation_bits, "batch_size": bs, "pairs_per_s": pps, "gemm_flops": gemm,
                         "ratio_to_fp32_gemm": pps * flop / gemm, "max_abs_score_diff": float(abs(scores - ref).max())})
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, model {source}")
    gemm = float(np.median([r["gemm_flops"] for r in rows]))
    print(f"dense fp32 GEMM: {gemm / 1e9:.1f} GFLOP/s (median of the run; each row's own measurement in its GEMM column); "
          f"{flop / 1e6:.1f} MFLOP per pair → bound {gemm / flop:,.0f} pairs/s")  # fmt: skip
    print("(÷ bound: pairs/s × FLOP per pair ÷ the GEMM FLOP/s measured just before the row; "
          "max |Δscore|: largest difference to plain eager fp32's scores on the same pairs)")  # fmt: skip
    print(f"{'precision':<18}{'batch':>7}{'pairs/s':>12}{'GEMM GFLOP/s':>14}{'÷ bound':>10}{'max |Δscore|':>14}")
    for r in rows:
        print(f"{r['precision']:<18}{r['batch_size']:>7}{r['pairs_per_s']:>12,.0f}{r['gemm_flops'] / 1e9:>14.1f}"
              f"{r['ratio_to_fp32_gemm']:>10.2f}{r['max_abs_score_diff']:>14.1e}")  # fmt: skip
    for note in notes:
        print(note)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": str(device), "machine": platform.processor() or platform.machine(),
                                     "threads": torch.get_num_threads(), "gemm_flops": gemm, "flops_per_pair": flop,
                                     "model": source, "rows": rows}, indent=2))
    print(f"JSON: {args.json}")
    return 0
