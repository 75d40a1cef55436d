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


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory, anny_body):
    """A tiny training cache: 240 random poses (σ = 0.3 rad) in 4 clips of one source, 16 shapes."""
    import numpy as np
    import torch

    from key2mesh.data.cache import PoseBank
    from key2mesh.geometry.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(0)
    n = 240
    rot = axis_angle_to_matrix(0.3 * torch.randn(n, 24, 3, generator=g)).numpy().astype(np.float32)
    bank = PoseBank(
        rot,
        np.repeat(np.arange(4), n // 4).astype(np.int32),
        [f"c{i}" for i in range(4)],
        ["test"] * 4,
        anny_body.default_shape(16).numpy(),
        anny_body.config(),
    )
    return bank.save(tmp_path_factory.mktemp("bank") / "bank.npz")
