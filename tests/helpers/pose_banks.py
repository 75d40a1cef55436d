"""Small random pose banks (the MoCap cache format) for tests."""

from __future__ import annotations

import numpy as np
import torch

from key2mesh.data.cache import PoseBank
from key2mesh.geometry.rotations import axis_angle_to_matrix


def random_pose_bank(body, clips: int, per_clip: int, shapes: int, seed: int | None = None):
    """A :class:`PoseBank` of ``clips`` clips ("c0", ...) of ``per_clip`` random poses (rotation
    vectors of std 0.3 rad) for ``body``, with ``shapes`` copies of its default shape; ``seed``
    None draws from torch's global generator (whatever the test seeded)."""
    g = torch.Generator() if seed is None else torch.Generator().manual_seed(seed)
    rot = axis_angle_to_matrix(0.3 * torch.randn(clips * per_clip, 24, 3, generator=g))
    return PoseBank(
        rot.numpy().astype(np.float32),
        np.repeat(np.arange(clips), per_clip).astype(np.int32),
        [f"c{i}" for i in range(clips)],
        ["test"] * clips,
        body.default_shape(shapes).numpy(),
        body.config(),
    )
