"""scripts/test.sh on a fresh clone: it installs first (scripts/setup.sh) when .venv is missing or broken."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-c" ]; then exit {import_rc}; fi
echo "PYTEST $*"
"""
FAKE_SETUP = """#!/usr/bin/env bash
set -e
cd "$(dirname "$0")/.."
touch setup_ran
mkdir -p .venv/bin
printf '%s' '{python}' > .venv/bin/python
chmod +x .venv/bin/python
"""


def _write_exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture()
def clone(tmp_path):
    """A stand-in checkout: the real scripts/test.sh, a fake setup.sh that installs a fake python."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    _write_exe(
        tmp_path / "scripts" / "setup.sh",
        FAKE_SETUP.replace("{python}", FAKE_PYTHON.format(import_rc=0)),
    )
    return tmp_path


def _run(clone: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "scripts/test.sh", "-q", "-x"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_fresh_clone_runs_setup_then_pytest(clone):
    r = _run(clone)
    assert r.returncode == 0, r.stderr
    assert (clone / "setup_ran").exists() and "PYTEST -m pytest -q -x" in r.stdout


def test_broken_venv_runs_setup(clone):
    _write_exe(
        clone / ".venv" / "bin" / "python", FAKE_PYTHON.format(import_rc=1)
    )  # cannot import key2mesh
    r = _run(clone)
    assert r.returncode == 0, r.stderr
    assert (clone / "setup_ran").exists() and "PYTEST -m pytest -q -x" in r.stdout


def test_working_venv_skips_setup(clone):
    _write_exe(clone / ".venv" / "bin" / "python", FAKE_PYTHON.format(import_rc=0))
    r = _run(clone)
    assert r.returncode == 0, r.stderr
    assert not (clone / "setup_ran").exists() and "PYTEST -m pytest -q -x" in r.stdout


def test_ci_runs_setup_then_tests():
    text = (ROOT / ".ci" / "run").read_text()
    assert text.index("scripts/setup.sh") < text.index("scripts/test.sh")
