"""The code base stays readable: no function of the package or its pipelines is over 100 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 100


def long_functions(folders: list[Path], root: Path = ROOT, limit: int = MAX_LINES) -> list[tuple[int, str]]:
    """``(lines, "path:line name")`` of every function longer than ``limit`` lines (def to last line)."""
    rows = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        rows.append((lines, f"{path.relative_to(root)}:{node.lineno} {node.name}"))
    return sorted(rows, reverse=True)


def test_no_function_over_100_lines():
    assert long_functions([ROOT / "patchmatch", ROOT / "pipelines"]) == []


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n")
    assert long_functions([tmp_path], root=tmp_path) == [(MAX_LINES + 1, "long.py:1 long")]
