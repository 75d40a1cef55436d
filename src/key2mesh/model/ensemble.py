"""Several networks of the same recipe (e.g. training seeds) as one predictor: their rotations
are averaged and projected back onto SO(3) (the chordal mean), their shapes averaged.

Measured on the real pose2sim views (docs/training.md): two seeds of the shipped coco17
recipe score 90.8 and 88.4 mm PA-MPJPE alone and 88.3 as ``anny-coco17-ensemble``.
"""

from __future__ import annotations

import roma
import torch
from torch import nn


class EnsembleNet(nn.Module):
    """Members with the :meth:`Key2MeshNet.predict` interface → the same interface:
    normalised keypoints (B, K, 2) → (rotmats (B, 24, 3, 3), shape (B, S)), where the rotations
    are ``special_procrustes(mean_i R_i)`` per joint and the shape is ``mean_i clamp(s_i)``:
    each member's shape is first clamped to what the body model uses (``clamp_shape``, e.g.
    :meth:`BodyModel.clamp_shape`), so a member's out-of-range value does not pull the mean."""

    def __init__(self, members: list[nn.Module], clamp_shape=None):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one network")
        self.members = nn.ModuleList(members)
        self.clamp_shape = clamp_shape or (lambda s: s)

    def predict(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [m.predict(keypoints) for m in self.members]
        if len(outs) == 1:
            return outs[0]
        rot = torch.stack([r for r, _ in outs]).mean(0)
        shape = torch.stack([self.clamp_shape(s) for _, s in outs]).mean(0)
        return roma.special_procrustes(rot), shape

    forward = predict
