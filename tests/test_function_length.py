"""Training loops read top to bottom as named steps (issue #23): no function in ``train/`` is
longer than ``MAX_LINES`` lines (``def`` line to last line, docstring included), read with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "key2mesh"
MAX_LINES = 80


def _long_functions(folder: Path, limit: int = MAX_LINES) -> list[str]:
    """``file:line name (n lines)`` of every function or method over ``limit`` lines under ``folder``."""
    long = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({n} lines)")
    return long


def test_training_functions_are_short():
    assert _long_functions(PACKAGE / "train") == []


def test_the_checker_finds_a_long_function(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(80))
    (tmp_path / "m.py").write_text(
        f"def short():\n    return 1\n\n\nclass C:\n    def long(self):\n{body}\n"
    )
    assert _long_functions(tmp_path) == ["m.py:6 long (81 lines)"]
    assert _long_functions(tmp_path, limit=81) == []
