"""The networks an evaluation scores with, and the folders it reads and writes."""

from __future__ import annotations

from pathlib import Path

from ..scoring import PatchScorer, describe_scorer, shipped_weights_path


def load_scorers(weights: list[Path] | None, device: str | None = None, precision: str = "auto", batch_size: int | None = None,
                 tta: str = "none") -> dict[str, PatchScorer]:  # fmt: skip
    """name → :class:`PatchScorer` of each checkpoint (default: the shipped weights, if present).

    Names are the checkpoint stems, made unique with their folder when two stems agree, with " tta=T" appended under
    test-time augmentation.

    Raises:
        As :meth:`PatchScorer.load`.
    """
    paths = list(weights or [])
    if not paths:
        try:
            paths = [shipped_weights_path()]
        except FileNotFoundError:
            paths = []
    stems = [Path(w).stem for w in paths]
    names = [f"{Path(w).parent.name}/{s}" if stems.count(s) > 1 else s for w, s in zip(paths, stems)]
    names = [n if tta == "none" else f"{n} tta={tta}" for n in names]  # the table, ROC and JSON say how it scored
    return {n: PatchScorer.load(w, device=device, batch_size=batch_size, precision=precision, tta=tta) for n, w in zip(names, paths)}


def describe_networks(scorers: dict[str, PatchScorer]) -> dict[str, dict]:
    """name → how each network scored (the ``networks.json`` of an evaluation)."""
    return {name: {"description": describe_scorer(sc), "path": sc.meta.get("path"), "precision": sc.precision,
                   "backend": sc.backend, "tta": sc.tta, "magnification": sc.magnification,
                   "activation_bits": sc.activation_bits}
            for name, sc in scorers.items()}  # fmt: skip


def check_set_folder(root: Path) -> None:
    """Raises FileNotFoundError unless ``root`` is a patch set of ours (its ``summary.json``, or
    only its ``oriented/`` or ``upright/`` Brown folders, as training takes it) or a Brown folder."""
    from ..datasets.patchset import VARIANTS, is_patch_set

    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (a patch set from make-patches or a Brown folder)")
    brown = [root, *(root / v for v in VARIANTS)]
    if not (is_patch_set(root) or any((folder / "info.txt").is_file() for folder in brown)):
        hint = f" (did you mean {root.with_suffix('')}?)" if root.suffix == ".pairs" else ""
        raise FileNotFoundError(f"{root}: neither a patch set from make-patches (summary.json) nor a Brown folder "
                                f"(info.txt){hint}")  # fmt: skip


def check_out_folder(out: Path, root: Path, overwrite: bool) -> None:
    """Raises unless ``out`` can take the results of evaluating ``root``: a folder (or none yet), not a
    patch set or Brown folder (the set being evaluated above all), no earlier results unless ``overwrite``.

    Raises:
        NotADirectoryError, FileExistsError, IsADirectoryError: as above.
    """
    from ..datasets.patchset import is_patch_set

    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: --out must be a folder, not a file.")
    if out.resolve() == root.resolve() or is_patch_set(out) or (out / "info.txt").is_file():
        raise FileExistsError(f"{out}: --out is a patch set; results go to a folder of their own (e.g. outputs/eval/{root.name}).")
    summary = out / "summary.json"
    if summary.exists() and not overwrite:
        raise FileExistsError(f"{out}: holds the results of an earlier evaluation (summary.json); pass --overwrite to replace them.")
    if summary.exists() and not summary.is_file():
        raise IsADirectoryError(f"{summary}: not a file, cannot write the results there.")


def magnification_warnings(root: Path, scorers: dict[str, PatchScorer]) -> list[str]:
    """One line per network trained at another magnification than the patch set ``root`` was cut at."""
    from ..datasets.patchset import is_patch_set, mismatched_magnification

    lines = []
    for name, sc in scorers.items():
        cut_at = mismatched_magnification(root, sc.magnification)
        if cut_at is not None:
            lines.append(f"{root} was cut at magnification {cut_at:g}, network {name} was trained at {sc.magnification:g}: "
                         f"re-cut the set (make-patches {root if is_patch_set(root) else root.parent} OUT "
                         f"--magnification {sc.magnification:g}) to evaluate it as it is used")  # fmt: skip
    return lines


def write_results(out_root: Path, rows: list[tuple[str, dict]], scorers: dict[str, PatchScorer]) -> None:
    """Writes ``summary.json`` (the rows of :func:`patchmatch.evaluation.patches.evaluate_set`) and
    ``networks.json`` (:func:`describe_networks`) into ``out_root``."""
    import json

    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "summary.json").write_text(json.dumps(dict(rows), indent=2))
    (out_root / "networks.json").write_text(json.dumps(describe_networks(scorers), indent=2))
