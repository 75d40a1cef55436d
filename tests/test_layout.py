"""The package layout (README, "Design notes"): every module in the room its name promises.

Imports are read with ``ast`` (nothing is imported or run), so the rules hold for imports inside
functions too:

- ``eval/`` only scores and ``data/`` only builds datasets: neither imports ``inference/`` (the
  detector and video I/O they need live in ``media/``, shared with the demo);
- ``media/`` and ``paths.py`` depend on nothing above them (no data, model, inference, eval);
- nothing in the package imports the test-only synthetic SMPL writer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "key2mesh"


def _imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``; relative imports resolved against the package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = ["key2mesh", *path.relative_to(root).with_suffix("").parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _violations(folder: str, forbidden: tuple[str, ...], root: Path = PACKAGE) -> list[str]:
    files = sorted((root / folder).rglob("*.py")) if (root / folder).is_dir() else [root / folder]
    assert files, f"no Python files under {folder}"
    bad = []
    for path in files:
        for line, module in _imports(path, root):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(root)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("eval", ("key2mesh.inference",)),
        ("data", ("key2mesh.inference", "key2mesh.eval")),
        (
            "media",
            (
                "key2mesh.inference",
                "key2mesh.eval",
                "key2mesh.data",
                "key2mesh.model",
                "key2mesh.train",
            ),
        ),
        ("paths.py", ("key2mesh.body", "key2mesh.inference", "key2mesh.eval", "key2mesh.data")),
    ],
)
def test_import_direction(folder, forbidden):
    assert _violations(folder, forbidden) == []


def test_the_checker_sees_imports_inside_functions(tmp_path):
    """The rule is not vacuous: function-level, relative and plain imports are all found."""
    pkg = tmp_path / "key2mesh"
    (pkg / "eval").mkdir(parents=True)
    (pkg / "eval" / "x.py").write_text(
        "import key2mesh.inference.demo\n"
        "def f():\n    from key2mesh.inference import demo\n    from ..inference import render\n"
    )
    lines = {v.split(":")[1].split()[0] for v in _violations("eval", ("key2mesh.inference",), pkg)}
    assert lines == {"1", "3", "4"}


def test_no_test_helpers_in_the_package():
    assert not (PACKAGE / "body" / "synthetic_smpl.py").exists()
    bad = [
        f"{p.relative_to(PACKAGE)}:{line}"
        for p in PACKAGE.rglob("*.py")
        for line, module in _imports(p)
        if "synthetic_smpl" in module
    ]
    assert bad == []


def _ruff() -> str | None:
    import shutil
    import sys

    local = Path(sys.executable).with_name("ruff")
    return str(local) if local.exists() else shutil.which("ruff")


@pytest.mark.parametrize("check", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_tree_is_ruff_clean(check):
    """`ruff format --check` and `ruff check` pass on src, tests and benchmarks (no drift)."""
    import subprocess

    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (dev extra)")
    root = PACKAGE.parents[1]
    result = subprocess.run(
        [ruff, *check, "src", "tests", "benchmarks"], cwd=root, capture_output=True, text=True
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_detectors_are_reached_through_the_registry():
    """Outside media/, no module builds MediaPipe's PoseDetector directly (a new detector is one
    file registered in media/detectors.py, docs/design.md "Adding a detector")."""
    bad = [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "media" not in path.relative_to(PACKAGE).parts
        for line, module in _imports(path)
        if module == "key2mesh.media.detect.PoseDetector"
    ]
    assert bad == []


BODY_NAMES = ("anny", "smpl")


def _body_name_comparisons(path: Path, root: Path = PACKAGE) -> list[str]:
    """``file:line`` of every comparison of something with a body model's name as a string
    literal (``== "anny"``, ``!= "smpl"``, ``in ("anny", ...)``)."""
    tree = ast.parse(path.read_text(), filename=str(path))

    def names(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in BODY_NAMES
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(names(e) for e in node.elts)
        return False

    ops = (ast.Eq, ast.NotEq, ast.In, ast.NotIn, ast.Is, ast.IsNot)
    return [
        f"{path.relative_to(root)}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(isinstance(op, ops) for op in node.ops)
        and any(names(side) for side in [node.left, *node.comparators])
    ]


def test_no_branches_on_the_body_model_name_outside_body():
    """Body-model differences live behind ``BodyModel`` / ``body_traits`` (body/traits.py):
    no module outside body/ compares a body model's name to "anny" or "smpl"."""
    bad = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "body"
        for hit in _body_name_comparisons(path)
    ]
    assert bad == []


def test_the_body_name_checker_finds_comparisons(tmp_path):
    """The rule is not vacuous: ==, !=, in and reversed comparisons are all found; other strings
    (a keypoint set "smpl24", a checkpoint name) are not."""
    src = tmp_path / "x.py"
    src.write_text(
        'if body.name == "anny":\n    pass\n'
        'ok = cfg.get("name") != "smpl"\n'
        'x = "smpl" == name\n'
        'y = name in ("anny", "other")\n'
        'z = kset == "smpl24" or ckpt == "anny-body25"\n'
    )
    assert _body_name_comparisons(src, tmp_path) == ["x.py:1", "x.py:3", "x.py:4", "x.py:5"]
