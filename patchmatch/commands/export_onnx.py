"""``patchmatch export-onnx [WEIGHTS] --out FILE``: a 2-channel checkpoint as an ONNX model.

The graph takes stacked patch pairs ``pairs``: (B, 2, 64, 64) uint8 pixel values (channel 0 the
first patch, 1 the second; 64×64 patches as ``patchmatch`` crops them, at the magnification the
weights were trained at, recorded in the file's ``metadata_props["patchmatch.magnification"]``) and returns ``scores``:
(B,) float32, higher = more similar; the input normalisation is inside (opset 17, any batch size).
The file's scores are checked against PyTorch's before it is kept.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-onnx", help="export a 2-channel checkpoint to ONNX (needs patchmatch[onnx])",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("weights", type=Path, nargs="?", default=None, help="checkpoint (default: the shipped 2ch2stream weights)")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import load_checkpoint, trained_magnification
    from ..models.onnx import import_onnxruntime, check_against_pytorch, export_onnx, write_atomic
    from ..scoring import shipped_weights_path

    if args.out.is_dir():
        raise IsADirectoryError(f"--out {args.out} is a folder; give a file name (e.g. {args.out / 'model.onnx'})")
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it.")
    if args.out.parent.exists() and not args.out.parent.is_dir():
        raise NotADirectoryError(f"--out {args.out}: {args.out.parent} is a file, not a folder")
    if not args.out.parent.is_dir():
        raise FileNotFoundError(f"--out {args.out}: folder {args.out.parent} does not exist")
    weights = args.weights or shipped_weights_path()
    model, meta = load_checkpoint(weights, map_location="cpu")
    ort = import_onnxruntime("export-onnx (it checks the written file with ONNX Runtime)")
    data = export_onnx(model, io.BytesIO(), trained_magnification(meta, weights)).getvalue()  # checked as the bytes the file will hold
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    try:
        err = check_against_pytorch(model, lambda x: session.run(None, {"pairs": x})[0])
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{weights}: {e}; not written") from e
    write_atomic(args.out, data)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) from {weights}; max |score difference| to PyTorch {err:.1e}")
    return 0
