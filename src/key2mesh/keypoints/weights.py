"""Per-joint weights of the 2D re-projection loss (official Key2Mesh code):
wrists/ankles 8, elbows/knees 4, shoulders/hips 2, everything else 1."""

from __future__ import annotations

import torch

from key2mesh.keypoints.sets import keypoint_names

_WEIGHTS = (
    ("wrist", 8.0),
    ("ankle", 8.0),
    ("elbow", 4.0),
    ("knee", 4.0),
    ("shoulder", 2.0),
    ("hip", 2.0),
)


def joint_weights(keypoint_set: str) -> torch.Tensor:
    """(K,) float32 weights for the points of ``keypoint_set`` (``mid_hip`` counts as a hip)."""
    out = []
    for name in keypoint_names(keypoint_set):
        out.append(next((w for key, w in _WEIGHTS if key in name), 1.0))
    return torch.tensor(out, dtype=torch.float32)
