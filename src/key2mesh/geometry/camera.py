"""The fixed virtual pinhole camera of Key2Mesh.

World frame = SMPL's: y up, x to the body's left, the body faces +z at the origin. The camera
sits on the +z axis ``distance`` metres away and looks back at the origin, with the usual
computer-vision image axes (x right, y down). In camera coordinates this is

    X_cam = diag(1, -1, -1) · X + (0, 0, distance)

which is the paper's camera (R = I, |t| = 6 m) written for a y-up world. Pixels are
``u = f · X_cam.x / X_cam.z + cx`` (principal point 0 by default, as in the official code).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class VirtualCamera:
    """Fixed pinhole camera. ``focal`` in pixels, ``distance`` in metres."""

    focal: float = 256.0
    cx: float = 0.0
    cy: float = 0.0
    distance: float = 6.0

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points (..., N, 3) in metres → camera coordinates (..., N, 3)."""
        flip = points.new_tensor([1.0, -1.0, -1.0])
        offset = points.new_tensor([0.0, 0.0, self.distance])
        return points * flip + offset

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """World points (..., N, 3) in metres → pixels (..., N, 2)."""
        cam = self.to_camera(points)
        depth = cam[..., 2:3].clamp(min=1e-3)
        centre = points.new_tensor([self.cx, self.cy])
        return self.focal * cam[..., :2] / depth + centre

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
