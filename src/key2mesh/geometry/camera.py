"""The fixed virtual pinhole camera of Key2Mesh.

World frame = SMPL's: y up, x to the body's left, the body faces +z at the origin. The camera
sits on the +z axis ``distance`` metres away and looks back at the origin, with the usual
computer-vision image axes (x right, y down). In camera coordinates this is

    X_cam = diag(1, -1, -1) · X + (0, 0, distance)

which is the paper's camera (R = I, |t| = 6 m) written for a y-up world. Pixels are
``u = f · X_cam.x / X_cam.z + cx`` (principal point 0 by default, as in the official code).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from key2mesh.options import rule

NEAR = 1e-3  # metres: points closer to the image plane than this (or behind it) have no pixel


@dataclass(frozen=True)
class VirtualCamera:
    """Fixed pinhole camera. ``focal`` in pixels, ``distance`` in metres."""

    focal: float = field(default=256.0, metadata=rule(gt=0))
    cx: float = 0.0
    cy: float = 0.0
    distance: float = field(default=6.0, metadata=rule(gt=0))

    def to_camera(self, points: torch.Tensor, distance: torch.Tensor | None = None) -> torch.Tensor:
        """World points (..., N, 3) in metres → camera coordinates (..., N, 3); ``distance`` (...,)
        replaces the camera's distance per sample (distance augmentation)."""
        flip = points.new_tensor([1.0, -1.0, -1.0])
        if distance is None:
            return points * flip + points.new_tensor([0.0, 0.0, self.distance])
        out = points * flip
        return torch.cat([out[..., :2], out[..., 2:] + distance.to(out)[..., None, None]], -1)

    def in_front(self, points: torch.Tensor, distance: torch.Tensor | None = None) -> torch.Tensor:
        """(..., N) bool: world points (..., N, 3) in front of the camera (depth > ``NEAR``);
        :meth:`project` gives the others a meaningless pixel."""
        return self.to_camera(points, distance)[..., 2] > NEAR

    def project(self, points: torch.Tensor, distance: torch.Tensor | None = None) -> torch.Tensor:
        """World points (..., N, 3) in metres → pixels (..., N, 2) (``distance``: see :meth:`to_camera`).
        Depth is clamped to ``NEAR``: points not :meth:`in_front` get finite but meaningless pixels."""
        cam = self.to_camera(points, distance)
        depth = cam[..., 2:3].clamp(min=NEAR)
        centre = points.new_tensor([self.cx, self.cy])
        return self.focal * cam[..., :2] / depth + centre

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
