"""key2mesh: 3D human meshes from 2D keypoints, with label-free domain adaptation (Key2Mesh)."""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: importing key2mesh stays cheap; the predictor pulls in torch and the body models.
    if name == "Key2Mesh":
        from key2mesh.inference.predictor import Key2Mesh

        return Key2Mesh
    raise AttributeError(name)


__all__ = ["Key2Mesh", "__version__"]
