"""The docs site builds strictly (`mkdocs build --strict`: every page in the nav, every link and
every included results file resolves, the API pages import), and the README stays an entry page."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_EXTRA = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "pymdownx")


def _missing_docs_extra() -> list[str]:
    return [m for m in DOCS_EXTRA if importlib.util.find_spec(m.split(".")[0]) is None]


def test_docs_build_strictly(tmp_path):
    missing = _missing_docs_extra()
    if missing:
        pytest.skip(
            f"the docs extra is not installed ({', '.join(missing)} missing): "
            "pip install -e '.[docs]' (scripts/setup.sh installs it)"
        )
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    # the results files are included, not retyped: a number from compare.md reaches the page
    compare = (ROOT / "benchmarks" / "results" / "compare.md").read_text()
    first_row = next(line for line in compare.splitlines() if line.startswith("| Key2Mesh"))
    page = (tmp_path / "site" / "evaluation" / "index.html").read_text()
    assert first_row.split("|")[2].strip().split()[0] in page


def test_every_included_results_file_exists():
    """`--8<--` includes name files that exist (also checked without mkdocs installed)."""
    included = {
        m
        for page in (ROOT / "docs").rglob("*.md")
        for m in re.findall(r'--8<-- "([^"]+)"', page.read_text())
    }
    assert included, "the docs include no results file"
    assert all(name.startswith("benchmarks/results/") for name in included), included
    assert [name for name in included if not (ROOT / name).is_file()] == []


def test_readme_is_an_entry_page():
    """README ≤ 12 KB, keeps the one set-up command and the one test command, links the docs."""
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024, len(text.encode())
    assert "bash scripts/quickstart.sh" in text and "bash scripts/test.sh" in text
    for page in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / page).is_file(), page


def test_site_output_is_ignored():
    assert "/site/" in (ROOT / ".gitignore").read_text().split()
