"""Writing predicted meshes to .obj / .ply / .glb with trimesh."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from key2mesh.errors import Key2MeshError
from key2mesh.safe_paths import atomic_write_bytes

MESH_FORMATS = ("obj", "ply", "glb")


def write_mesh(vertices: np.ndarray, faces: np.ndarray, path: str | Path) -> Path:
    """Write one mesh (V,3) metres / (F,3) to ``path`` (atomically); the format follows the suffix."""
    import trimesh

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in MESH_FORMATS:
        raise Key2MeshError(
            f"{path}: unknown mesh format {fmt!r}; use one of {', '.join(MESH_FORMATS)}"
        )
    data = trimesh.Trimesh(np.asarray(vertices), np.asarray(faces), process=False).export(
        file_type=fmt
    )
    return atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
