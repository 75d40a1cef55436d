"""Shared test fixtures.

The anny cache (~0.8 GB, ~35 s to build once) and the key2mesh cache are shared by every test:
``ANNY_CACHE_DIR`` / ``KEY2MESH_CACHE_DIR`` default to ``.cache/`` in the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ANNY_CACHE_DIR", str(ROOT / ".cache" / "anny"))
os.environ.setdefault("KEY2MESH_CACHE_DIR", str(ROOT / ".cache" / "key2mesh"))


@pytest.fixture(scope="session")
def anny_body():
    """The low-res training anny body (1,229 vertices), float32, CPU; built once per session."""
    from key2mesh.body import load_body_model

    return load_body_model("anny")
